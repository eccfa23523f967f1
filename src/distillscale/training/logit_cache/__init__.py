"""Offline teacher logits: run a teacher once, store its top-k predictions (or K samples of its
distribution) compactly, and distil students from the store without the teacher in memory.

    manifest = cache_logits(CacheConfig(teacher="runs/teacher", out="caches/t128", top_k=128))
    cache = LogitCache("caches/t128")          # verified, memory-mapped
    ids, relative_log_probs = cache.teacher_predictions(windows)

`distillscale cache-logits` writes a cache, `distillscale distill --teacher-cache` trains from one.
Components: `encoding` (the record formats, the quantisation bound), `store` (files, checksums,
`LogitCache`), `sampler` (`CachedWindowSampler`), `objective` (the top-k and the unbiased sampled
losses). Recipes: `writer` (`cache_logits`), `distill` (`distill_from_cache`).
"""

from distillscale.lazy import lazy_exports

_EXPORTS = {
    "TopKEncoding": "distillscale.training.logit_cache.encoding",
    "SampledEncoding": "distillscale.training.logit_cache.encoding",
    "LogitCache": "distillscale.training.logit_cache.store",
    "CacheConfig": "distillscale.training.logit_cache.config",
    "cache_logits": "distillscale.training.logit_cache.writer",
    "CachedWindowSampler": "distillscale.training.logit_cache.sampler",
    "CachedDistillationObjective": "distillscale.training.logit_cache.objective",
    "sampled_kd_loss": "distillscale.training.logit_cache.objective",
    "distill_from_cache": "distillscale.training.logit_cache.distill",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
