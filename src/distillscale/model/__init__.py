"""The model family: `ModelConfig` (sizes from a depth x aspect-ratio ladder, exact parameter and
FLOP counts), the `Transformer`, `generate` (sampling with a KV cache), and `save_pretrained` /
`load_pretrained` checkpoints.

Names are imported on first use, so that importing the config (or the CLI) loads no torch.
"""

from distillscale.lazy import lazy_exports

_EXPORTS = {
    "ModelConfig": "distillscale.model.config",
    "Transformer": "distillscale.model.transformer",
    "generate": "distillscale.model.generation",
    "save_pretrained": "distillscale.model.checkpoint",
    "load_pretrained": "distillscale.model.checkpoint",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
