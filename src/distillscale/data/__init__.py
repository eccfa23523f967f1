"""Corpora for training: read text sources, tokenise them once into memory-mapped val / teacher /
student splits, and sample batches of token windows from them.

    data = prepare_data(DataConfig(vocab_size=4096, max_bytes="20M"))
    sampler = TokenSampler(data.split("teacher"), seq_len=256, batch_size=32, seed=0)
    inputs, targets = sampler.batch(step)

Names are imported on first use, so that `distillscale.data.commands` (and `distillscale --help`)
load neither torch nor tokenizers.
"""

from distillscale.lazy import lazy_exports

_EXPORTS = {
    "DataConfig": "distillscale.data.config",
    "PreparedData": "distillscale.data.prepared",
    "prepare_data": "distillscale.data.prepare",
    "TokenSampler": "distillscale.data.sampler",
    "iter_eval_batches": "distillscale.data.sampler",
    "eval_windows": "distillscale.data.sampler",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
