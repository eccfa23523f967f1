"""The distillation objective fed by a logit cache: the cached predictions play the teacher's
hidden states and a sparse head its head, so the loss is the same `distillation_loss` as with a
live teacher.

Top-k caches: the head returns the cached relative log-probabilities on the k ids and -inf
elsewhere; the loss's top-k branch renormalises over exactly those ids, as the live top-k loss
does, so the two agree up to the quantisation bound of `encoding`.

Sampled caches (Anshumann et al. 2025, "Sparse Logit Sampling"): with x_1..x_K drawn from the
teacher's p = softmax(z_T / tau) and q = softmax(z_S / tau), forward KL is estimated by

    KD_hat = tau^2 (-(1/K) sum_i log q(x_i) - H(p))

H(p) is cached, so E[KD_hat] = tau^2 (-sum_a p_a log q_a - H(p)) = tau^2 KL(p || q): the value is
unbiased. So is its gradient, tau (q - c / K) with respect to z_S (c_a: how often a was drawn),
because it is linear in the counts and E[c_a / K] = p_a. The head returns tau log(c / K) (a large
negative number where c = 0), so the full-vocabulary forward-KL branch computes KL(c / K || q),
whose gradient is exactly that; its value differs from KD_hat by tau^2 (H(c / K) - H(p)), which
does not depend on the student and is added here (one position's estimate can be negative; the
mean over many is the KL). Unlike the top-k targets, nothing is
renormalised away: the tail is reached in proportion to its mass. Only forward KL has this
estimator (reverse KL and JSD need p_T where nothing was drawn).
"""

from __future__ import annotations

import torch

from distillscale.training.logit_cache.store import LogitCache
from distillscale.training.losses import (
    IGNORE_INDEX,
    DistillationLossConfig,
    Head,
    LossOutput,
    distillation_loss,
)
from distillscale.training.objective import ObjectiveRecord
from distillscale.training.records import CacheRecord, DistillationRecord, TeacherRecord

# log(0) for the empirical distribution: finite, so 0 * log 0 terms stay 0, and exp() of it is 0.
NEVER_DRAWN = -1e30


def sparse_teacher_head(vocab_size: int, top_k: int) -> Head:
    """A teacher head over cached top-k predictions: rows [n, 2k] of (ids as floats,
    log-probabilities) -> logits [n, vocab_size], the log-probabilities on the ids and -inf elsewhere."""

    def head(packed: torch.Tensor) -> torch.Tensor:
        ids, log_probs = packed[:, :top_k].long(), packed[:, top_k:]
        logits = log_probs.new_full((len(packed), vocab_size), -torch.inf)
        return logits.scatter_(1, ids, log_probs)

    return head


def sampled_teacher_head(vocab_size: int, samples: int, temperature: float) -> Head:
    """A teacher head over cached samples: rows [n, K] of ids (as floats) -> logits [n, vocab_size]
    whose softmax at `temperature` is the empirical distribution c / K of the samples."""

    def head(ids: torch.Tensor) -> torch.Tensor:
        counts = ids.new_zeros((len(ids), vocab_size)).scatter_add_(1, ids.long(), torch.ones_like(ids))
        return (counts / samples).log_().clamp_(min=NEVER_DRAWN / temperature).mul_(temperature)

    return head


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
    if config.kd != "forward-kl" or config.top_k is not None:
        raise ValueError("sampled teacher targets estimate forward KL over the full vocabulary: "
                         "use kd='forward-kl' and top_k=None")
    with torch.no_grad():
        vocab_size = student_head(student_hidden[:1]).shape[-1]
    head = sampled_teacher_head(vocab_size, ids.shape[-1], config.temperature)
    # ids travel as floats (exact below 2^24, which cache-logits checks) in the teacher's place
    ids_as_rows = ids.to(torch.promote_types(student_hidden.dtype, torch.float32))
    out = distillation_loss(student_hidden, student_head, ids_as_rows, head, targets, config)
    valid = targets.reshape(-1) != IGNORE_INDEX
    offset = ((empirical_entropy(ids.reshape(len(valid), -1)) - entropy.reshape(-1).double())[valid].sum()
              / valid.sum().clamp(min=1) * config.temperature ** 2).to(out.loss.dtype)
    return LossOutput(loss=out.loss + config.kd_weight * offset, ce=out.ce, kd=out.kd + offset,
                      z_loss=out.z_loss)


class CachedDistillationObjective:
    """The distillation objective with the teacher's predictions read from a logit cache."""

    extra_flops_per_token = 0  # the cache's one-time teacher cost is in its cache.json

    def __init__(self, cache: LogitCache, loss_config: DistillationLossConfig, flops_method: str):
        self.cache = cache
        self.loss_config = loss_config
        self.teacher_head = sparse_teacher_head(cache.encoding.vocab_size, cache.top_k)
        self.flops_method = flops_method

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, teacher_ids: torch.Tensor,
                 teacher_values: torch.Tensor) -> LossOutput:
        student_hidden = model.hidden_states(inputs).flatten(0, 1)
        if self.cache.targets == "sampled":
            return sampled_kd_loss(student_hidden, model.head, teacher_ids.flatten(0, 1),
                                   teacher_values.flatten(), targets.flatten(), self.loss_config)
        # The loss walks rows of one teacher tensor, so ids and values travel together (as float32:
        # exact for ids below 2^24, which cache-logits checks).
        packed = torch.cat([teacher_ids.float(), teacher_values.float()], dim=-1)
        return distillation_loss(student_hidden, model.head, packed.flatten(0, 1),
                                 self.teacher_head, targets.flatten(), self.loss_config)

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
            flops_method=f"{self.flops_method}; the teacher's predictions were read from the logit cache: "
                         f"no teacher FLOPs in this run (the cache's one-time cost is teacher_cache.flops)")
