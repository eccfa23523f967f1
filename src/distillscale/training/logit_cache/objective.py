"""The distillation objective fed by a logit cache: the cached predictions go to
`losses.sparse_distillation_loss`, which computes the same loss as `distillation_loss` with a live
teacher from [tokens, k] teacher tensors, never building [tokens, V] teacher logits.

Top-k caches: the cached log-probabilities on the k ids, normalised with the stored top-k mass, and
the tail mass 1 - sum(top-k) as one more category, as the live top-k loss does, so the two agree up
to the quantisation bound of `encoding` (caches made before the mass was stored: `training.top_k`).

Sampled caches (Anshumann et al. 2025, "Sparse Logit Sampling"): with x_1..x_K drawn from the
teacher's p = softmax(z_T / tau) and q = softmax(z_S / tau), forward KL is estimated by

    KD_hat = tau^2 (-(1/K) sum_i log q(x_i) - H(p))

H(p) is cached, so E[KD_hat] = tau^2 (-sum_a p_a log q_a - H(p)) = tau^2 KL(p || q): the value is
unbiased. So is its gradient, tau (q - c / K) with respect to z_S (c_a: how often a was drawn),
because it is linear in the counts and E[c_a / K] = p_a. One position's estimate can be negative;
the mean over many is the KL. Unlike the top-k targets, nothing is renormalised away: the tail is
reached in proportion to its mass. Only forward KL has this estimator (reverse KL and JSD need p_T
where nothing was drawn).

(Speed: an earlier version built dense [tokens, V] teacher logits from the cached rows, log(0)
clamped to -1e30 where nothing was drawn; their log/exp hit the slow special-value path of the
vectorised math and made a cache-fed step ~2.5x slower than a supervised one on CPU.)
"""

from __future__ import annotations

import torch

from distillscale.training.logit_cache.store import LogitCache
from distillscale.training.losses import (
    DistillationLossConfig,
    Head,
    LossOutput,
    sparse_distillation_loss,
)
from distillscale.training.objective import ObjectiveRecord
from distillscale.training.records import CacheRecord, DistillationRecord, TeacherRecord


def empirical_entropy(ids: torch.Tensor) -> torch.Tensor:
    """H(c / K) of each row of sampled ids [n, K] -> [n]: -(1/K) sum_i log(c(x_i) / K)."""
    samples = ids.shape[-1]
    counts = (ids.unsqueeze(-1) == ids.unsqueeze(-2)).sum(-1)
    return -(counts.double() / samples).log().mean(-1)


def sampled_kd_loss(student_hidden: torch.Tensor, student_head: Head, ids: torch.Tensor,
                    entropy: torch.Tensor, targets: torch.Tensor,
                    config: DistillationLossConfig) -> LossOutput:
    """`distillation_loss` with forward KL estimated from K samples of the teacher per position
    (ids [n, K], the teacher's entropy at the sampling temperature [n]); unbiased in value and
    gradient (see the module docstring). `config.temperature` must be the sampling temperature."""
    return sparse_distillation_loss(student_hidden, student_head, ids, entropy, targets, config, sampled=True)


class CachedDistillationObjective:
    """The distillation objective with the teacher's predictions read from a logit cache; `compile`:
    the sparse loss's terms through torch.compile (`sparse_distillation_loss`), as `--compile` runs."""

    extra_flops_per_token = 0  # the cache's one-time teacher cost is in its cache.json

    def __init__(self, cache: LogitCache, loss_config: DistillationLossConfig, flops_method: str,
                 compile: bool = False):
        self.cache = cache
        self.compile = compile
        self.loss_config = loss_config
        self.flops_method = flops_method
        self.top_k_targets = None  # the top-k check's record (`distill.check_cached_top_k`)

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, *cached: torch.Tensor) -> LossOutput:
        """`cached`: the teacher's decoded ids and values, or the records' bytes to decode here, on the
        device (`CachedWindowSampler(decode="device")`)."""
        if len(cached) == 1:
            teacher_ids, teacher_values = self.cache.predictions_from_bytes(cached[0])
        else:
            teacher_ids, teacher_values = cached
        student_hidden = model.hidden_states(inputs).flatten(0, 1)
        return sparse_distillation_loss(student_hidden, model.head, teacher_ids, teacher_values,
                                        targets.flatten(), self.loss_config,
                                        sampled=self.cache.targets == "sampled", compile=self.compile)

    def record(self, tokens: int) -> ObjectiveRecord:
        manifest = self.cache.manifest
        targets = ({"samples": self.cache.top_k, "temperature": self.cache.temperature}
                   if self.cache.targets == "sampled" else
                   {"top_k": self.cache.top_k, "max_log_prob_error": manifest["quantisation"]["max_log_prob_error"]})
        cache = CacheRecord(path=str(self.cache.path), identity_hash=manifest["identity_hash"],
                            targets=self.cache.targets, tokens=self.cache.tokens,
                            encoding=manifest["encoding"]["name"], bytes_per_token=manifest["bytes_per_token"],
                            flops=manifest["flops"], flops_method=manifest["flops_method"], **targets)
        return ObjectiveRecord(
            teacher=TeacherRecord(**manifest["teacher"] | {"flops": 0, "cache": str(self.cache.path)}),
            teacher_cache=cache, distillation=DistillationRecord(**self.loss_config.model_dump()),
            top_k_targets=self.top_k_targets,
            flops_method=f"{self.flops_method}; the teacher's predictions were read from the logit cache: "
                         f"no teacher FLOPs in this run (the cache's one-time cost is teacher_cache.flops)")
