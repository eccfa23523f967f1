"""The model family: `ModelConfig` (sizes from a depth x aspect-ratio ladder, exact parameter and
FLOP counts), the `Transformer`, and `save_pretrained` / `load_pretrained` checkpoints.

Torch is imported on first use of `Transformer` or the checkpoint functions, so that importing the
config (or the CLI) stays fast.
"""

from distillscale.model.config import ModelConfig

__all__ = ["ModelConfig", "Transformer", "save_pretrained", "load_pretrained"]

_LAZY = {
    "Transformer": "distillscale.model.transformer",
    "save_pretrained": "distillscale.model.checkpoint",
    "load_pretrained": "distillscale.model.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
