"""Offline teacher logits: run a teacher once, store its top-k predictions compactly, and distil
students from the store without the teacher in memory.

    manifest = cache_logits(CacheConfig(teacher="runs/teacher", out="caches/t128", top_k=128))
    cache = LogitCache("caches/t128")          # verified, memory-mapped
    ids, relative_log_probs = cache.teacher_predictions(windows)

`distillscale cache-logits` writes a cache, `distillscale distill --teacher-cache` trains from one.
Modules: `encoding` (the record format and its quantisation bound), `store` (files, checksums,
`LogitCache`), `writer` (`cache_logits`), `distill` (sampler and objective for training).
"""

from distillscale.lazy import lazy_exports

_EXPORTS = {
    "TopKEncoding": "distillscale.training.logit_cache.encoding",
    "LogitCache": "distillscale.training.logit_cache.store",
    "CacheConfig": "distillscale.training.config",
    "cache_logits": "distillscale.training.logit_cache.writer",
    "CachedWindowSampler": "distillscale.training.logit_cache.distill",
    "CachedDistillationObjective": "distillscale.training.logit_cache.distill",
    "distill_from_cache": "distillscale.training.logit_cache.distill",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
