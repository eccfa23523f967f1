"""Top-k teacher targets: where their tail mass comes from, and the check of the teacher's top-k mass
that a top-k run makes before it trains.

The loss (`losses.py`) compares the teacher's k most likely ids plus one "everything else" category
with the student's. The tail mass P_T = 1 - sum(top-k probabilities) is

- known when the top-k log-probabilities are normalised over the whole vocabulary: a live teacher
  (`--teacher --top-k`), a vLLM-style server (its log-probabilities are log-softmax outputs), and a
  logit cache made since the top-k mass is stored in its records;
- estimated where the values carry no normalisation:
  - a logit cache made before (it kept log-probabilities relative to the most likely id only):
    every position gets the cache's mean top-k mass, which `cache-logits` measured exactly and
    wrote to cache.json (`TAIL_FROM_MEAN_MASS`).

What "rounding" means, in one place (`MASS_ROUNDING`, `without_rounding`): a server rounds each
log-probability (bf16 on a GPU, then JSON), so the top-k probabilities of a confident position can
add up to a little more than 1. Up to 1 + MASS_ROUNDING that is rounding: the row is divided by its
sum (its tail is empty, as the teacher's is to the server's precision); beyond, the values are not
log-probabilities and the answer is refused (`remote_teacher.validated_answer`).

Before the first step, a top-k run measures the teacher's top-k mass on the first `CHECK_TOKENS`
of its data, records it in result.json (`top_k_targets`) and warns in one line when the mean is
below `LOW_TOP_K_MASS`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from distillscale.console import warn
from distillscale.training.records import TopKTargetsRecord

CHECK_TOKENS = 4096  # tokens whose top-k mass is measured before training
LOW_TOP_K_MASS = 0.9  # a mean top-k mass below this warns
MASS_ROUNDING = 0.02  # top-k probabilities summing to at most 1 + this are rounded log-probabilities

# Log-masses of the tail category are clamped here (e^-30 ~ 1e-13): k = V leaves an empty tail, and a
# teacher's 1 - sum(top-k) rounds to 0 or below; reverse KL and JSD stay finite.
LOG_TAIL_FLOOR = -30.0

TAIL_KNOWN = "known: the teacher's top-k log-probabilities are normalised over its vocabulary, tail = 1 - sum"
TAIL_FROM_MEAN_MASS = ("estimated: the logit cache stores log-probabilities relative to the most likely id only "
                       "(made before the top-k mass was stored); every position gets the cache's mean top-k "
                       "mass from cache.json; make the cache again for known tails")


def normalise_relative(relative: np.ndarray, log_mass: np.ndarray | None,
                       mean_mass: float | None) -> np.ndarray:
    """Top-k log-probabilities [n, k] normalised over the whole vocabulary from log-probabilities
    relative to any constant per row: to each row's stored log top-k mass [n], or without it to the
    mean top-k mass (`TAIL_FROM_MEAN_MASS`; 1 when not even that is known)."""
    relative = relative.astype(np.float32, copy=False)
    top = relative.max(axis=1, keepdims=True)
    buffer = relative - top  # one [n, k] buffer for exp and the result: the same operations, the same bits
    log_sum = top + np.log(np.exp(buffer, out=buffer).sum(axis=1, keepdims=True))
    if log_mass is not None:
        target = log_mass.reshape(-1, 1)
    else:
        target = np.float32(math.log(min(1.0, mean_mass)) if mean_mass else 0.0)
    out = np.subtract(relative, log_sum, out=buffer)
    out += target
    return out


def normalise_relative_tensor(relative: torch.Tensor, log_mass: torch.Tensor | None,
                              mean_mass: float | None) -> torch.Tensor:
    """`normalise_relative` in torch, on the device the values are on (a logit cache decoded on the GPU):
    the same formula; its float32 exp, log and sums are torch's, so the values agree with numpy's to
    float32 rounding, not bit for bit."""
    top = relative.amax(dim=1, keepdim=True)
    log_sum = top + (relative - top).exp().sum(dim=1, keepdim=True).log()
    if log_mass is not None:
        target = log_mass.reshape(-1, 1)
    else:
        target = torch.tensor(math.log(min(1.0, mean_mass)) if mean_mass else 0.0, dtype=relative.dtype,
                              device=relative.device)
    return relative - log_sum + target


def without_rounding(log_probs: list[float], mass: float) -> list[float]:
    """One position's top-k log-probabilities whose probabilities sum to `mass` (at most
    1 + MASS_ROUNDING: the caller refuses more), divided by that sum where it is above 1 (rounding:
    an empty tail); unchanged otherwise."""
    return [value - math.log(mass) for value in log_probs] if mass > 1 else log_probs


def check_top_k_mass(log_probs: torch.Tensor, top_k: int, path: str, tail: str, tail_source: str,
                     tail_in_loss: bool, report: bool = True) -> TopKTargetsRecord:
    """The record of the teacher's top-k mass on the positions of `log_probs` [..., k] (normalised),
    with one warning line (when `report`) if its mean is below `LOW_TOP_K_MASS`."""
    mass = log_probs.double().logsumexp(-1).exp().clamp(max=1.0).flatten()
    mean = mass.mean().item()
    message = None
    if mean < LOW_TOP_K_MASS:
        fate = ("reaches the student as one 'everything else' category" if tail_in_loss else
                "is dropped (--no-top-k-tail)")
        message = (f"the teacher's top-{top_k} holds {mean:.0%} of its probability on the first "
                   f"{mass.numel():,} tokens: the other {1 - mean:.0%} {fate}, so the student learns little "
                   f"of the rest; raise --top-k, use a sampled cache (cache-logits --targets sampled), or "
                   f"give the data a larger share with a lower --kd-weight (top-k runs default to 0.5)")
        if report:
            warn(message)
    return TopKTargetsRecord(top_k=top_k, path=path, checked_tokens=mass.numel(), mean_top_k_mass=mean,
                             min_top_k_mass=mass.min().item(), tail_in_loss=tail_in_loss, tail=tail,
                             tail_source=tail_source, warning=message)


def teacher_log_probs(logits: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
    """The teacher's log-probabilities over the whole vocabulary from its logits [..., V] (float32 at
    least): the one computation behind every top-k target made from logits (the live teacher's loss
    and its top-k check, `serve-teacher`'s answers), so that a teacher in process and the same teacher
    behind its server give the student the same numbers to the last bit, on any CPU's kernels.
    `overwrite`: the logits' own buffer (float32 or wider) becomes the log-probabilities."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    normaliser = logits.logsumexp(-1, keepdim=True)
    return logits.sub_(normaliser) if overwrite else logits - normaliser


def top_k_rows(logits: torch.Tensor, k: int, overwrite: bool = False) -> torch.Tensor:
    """The sparse top-k rows [n, 2k + 1] (ids, log-probabilities, log tail mass) of teacher logits
    [n, V], as a server's answer or a top-k cache gives them to `sparse_distillation_loss`: the k most
    likely ids, most likely first, and the tail 1 - sum(top-k probabilities) (`tail_log_mass`)."""
    values, ids = teacher_log_probs(logits, overwrite).topk(k, dim=-1)
    return torch.cat([ids.to(values.dtype), values, tail_log_mass(values)], dim=-1)


def tail_log_mass(log_probs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum_k exp(log_probs)) [..., 1] of normalised top-k log-probabilities [..., k]: the
    log-mass of everything else, clamped to LOG_TAIL_FLOOR where the k hold (numerically) all of it."""
    covered = log_probs.logsumexp(-1, keepdim=True).clamp(max=-1e-30)
    return torch.log(-torch.expm1(covered)).clamp(min=LOG_TAIL_FLOOR)
