"""Next-token and distillation losses, with an optional memory-efficient chunked path.

The objective (Busbridge et al. 2025, Sec. 3) is, averaged over the valid target tokens:

    loss = (1 - lambda) * CE + lambda * KD + lambda_z * Z

- CE: next-token cross-entropy of the student against the data, -log softmax(z_S)[y].
- KD: tau^2 * D(p_T, p_S) with p = softmax(z / tau). D is one of
    - "forward-kl": KL(p_T || p_S) = sum_a p_T,a (log p_T,a - log p_S,a). The paper writes the
      cross-entropy -sum_a p_T,a log p_S,a; they differ by the teacher entropy, which has no
      gradient. We report the true KL so the number is interpretable (>= 0, 0 when the student
      matches the teacher).
    - "reverse-kl": KL(p_S || p_T).
    - "jsd": generalized Jensen-Shannon divergence with weight beta (Agarwal et al. 2024, "GKD"),
      with the mixture M = beta * p_T + (1 - beta) * p_S:
          JSD_beta = beta * KL(p_T || M) + (1 - beta) * KL(p_S || M).
      beta = 0.5 is the symmetric JSD (at most log 2); JSD_beta ~ beta * KL(p_T || p_S) as beta -> 0
      and ~ (1 - beta) * KL(p_S || p_T) as beta -> 1.
- Z: z-loss, (logsumexp z_S)^2, which keeps the student's log-normaliser near zero.

Top-k teacher (`top_k=k`): the teacher keeps only its k most likely tokens S (per position) and,
by default (`top_k_tail=True`), its tail: the probability mass outside S as one more category
("everything else"). Both distributions are compared over the k + 1 categories S + {tail}: the
teacher's p_T(a) for a in S and P_T = 1 - sum_S p_T, the student's p_S(a) and Q = 1 - sum_S p_S
(computed as logsumexp of log p_S over the ids outside S, which is exact and stable). D is then the
forward KL, reverse KL or JSD of those two (k + 1)-category distributions. Without the tail the
target would tell the student to put nothing outside S, and a pure-KD student collapses onto the
top k (at micro scale a top-20 student ended at 9.07 nats/token, above a uniform guess of 6.24).
- The teacher's tail is known when its top-k log-probabilities are normalised over the whole
  vocabulary (a live teacher; a vLLM-style server; a logit cache that stores the top-k mass); both
  log-masses are clamped below at LOG_TAIL_FLOOR, so that an empty tail (k = V) and rounding give
  finite numbers. `training.top_k` holds the estimate used where the values carry no
  normalisation.
- At temperature 1 a live teacher's targets are made as a server's are (`top_k.top_k_rows`: its
  normalised log-probabilities' top k, most likely first, and P_T from them), so the same teacher in
  process and behind `serve-teacher` trains the same student to the last bit, whatever the CPU.
- At temperature tau != 1 a live teacher's tail is exact (softmax(z / tau) over the ids outside S);
  sparse rows (cache, server) hold log-probabilities at tau = 1, and their tail is softened as one
  category (log P_T / tau, then renormalised over the k + 1): an estimate.
- d D / d u_j (u = student logits / tau) is p_S(j) (h_c(j) - <h>) where c(j) is j for j in S and the
  tail otherwise and h_c = dD/d(log q_c) / q_c; so the ids outside S move together, in proportion to
  the student's own p_S (forward KL: p_S(j) (1 - P_T / Q)).
`top_k_tail=False` is the former target, renormalised over S: p_T^k = softmax(z_T[S] / tau); forward
KL is KL(p_T^k || p_S), reverse KL compares p_S(. | S) with p_T^k, and the JSD extends p_T^k by zeros.
k larger than the vocabulary means no truncation.

Targets equal to `IGNORE_INDEX` (-100, PyTorch's convention) are left out of every term (CE, KD
and Z) and of the token count that the mean divides by.

Two implementations of the same objective:
- the naive path (`chunk_size=None`) is the reference: all [tokens, V] logits of both models at
  once, the formulas above written with PyTorch ops, gradients by autograd. It keeps several
  [tokens, V] tensors alive (log-probabilities, probabilities, their gradients).
- the chunked path walks the tokens in chunks. For each chunk it computes the logits with the
  heads, the loss components and d(loss)/d(logits) in closed form (`_fused_chunk`), backpropagates
  that through the student head at once (gradients for the chunk's hidden states and the head's
  parameters), then drops the chunk. Only one chunk's [chunk, V] buffers (about four) exist at a
  time, backward only scales the stored gradients, and nothing is recomputed (activation
  checkpointing would run both heads twice). The tests hold the two paths to each other.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.top_k import LOG_TAIL_FLOOR, tail_log_mass, top_k_rows

IGNORE_INDEX = -100
# Maps hidden states [n, d] to logits [n, V], e.g. `model.head`.
Head = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LossOutput:
    """`loss` is the tensor to backpropagate; the components are detached means per valid token
    (nats/token; `z_loss` in nats^2). `kd` is None for plain next-token training."""

    loss: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor | None
    z_loss: torch.Tensor
    tokens: torch.Tensor | None = None  # the valid targets the means divide by (None: not counted)


def cross_entropy_loss(hidden: torch.Tensor, head: Head, targets: torch.Tensor, *,
                       z_loss_weight: float = 0.0, chunk_size: int | None = None,
                       compile: bool = False) -> LossOutput:
    """Next-token cross-entropy (+ z_loss_weight * z-loss) of `head(hidden)` against `targets`.

    hidden: [..., d]; targets: [...] token ids, IGNORE_INDEX where there is nothing to predict.
    chunk_size: tokens per chunk for the memory-efficient path; None computes all logits at once.
    compile: with all logits at once, the loss's terms (the float32 upcast, log-normaliser, target
    logits, z-loss and their sums) and their backward run through torch.compile, fused into a few
    passes over the [tokens, V] logits as a compiled model's own loss is (HF's `labels=`); eager,
    they take a pass per operation, which is most of a small model's step at a large vocabulary.
    """
    objective = _Objective(ce_weight=1.0, kd_weight=0.0, z_loss_weight=z_loss_weight)
    return _compute(objective, hidden, head, None, None, targets, chunk_size, compile=compile)


def distillation_loss(student_hidden: torch.Tensor, student_head: Head,
                      teacher_hidden: torch.Tensor, teacher_head: Head,
                      targets: torch.Tensor, config: DistillationLossConfig) -> LossOutput:
    """(1 - lambda) CE + lambda KD + lambda_z Z of the student, with the teacher under no_grad.

    student_hidden: [..., d_S]; teacher_hidden: [..., d_T] for the same positions; both heads must
    produce logits over the same vocabulary (slice a padded teacher vocabulary in its head).
    """
    if teacher_hidden.shape[:-1] != student_hidden.shape[:-1]:
        raise ValueError(f"teacher hidden states {tuple(teacher_hidden.shape)} do not cover the same "
                         f"positions as the student's {tuple(student_hidden.shape)}")
    objective = _Objective(ce_weight=1.0 - config.kd_weight, kd_weight=config.kd_weight,
                           z_loss_weight=config.z_loss_weight, kd=config.kd,
                           temperature=config.temperature, top_k=config.top_k,
                           jsd_beta=config.jsd_beta, top_k_tail=config.top_k_tail)
    return _compute(objective, student_hidden, student_head, teacher_hidden, teacher_head,
                    targets, config.chunk_size)


def sparse_distillation_loss(student_hidden: torch.Tensor, student_head: Head, teacher_ids: torch.Tensor,
                             teacher_values: torch.Tensor, targets: torch.Tensor,
                             config: DistillationLossConfig, sampled: bool = False,
                             teacher_log_tail: torch.Tensor | None = None, compile: bool = False) -> LossOutput:
    """`distillation_loss` with the teacher given sparsely, as a logit cache stores it or a server
    sends it, without ever building [tokens, V] teacher logits:

    - top-k (`sampled=False`): ids [n, k] and their log-probabilities [n, k], normalised over the
      whole vocabulary, and the log of the teacher's mass outside the ids, `teacher_log_tail` [n]
      (default: log(1 - sum exp(values)), what normalised values imply). The loss compares the
      k + 1 categories (the ids and the tail, see the module docstring), over the `config.top_k`
      most likely ids when that is fewer than k (the others join the tail). With
      `config.top_k_tail=False` the values are renormalised over the ids and the tail is dropped;
    - sampled (`sampled=True`): K ids drawn from softmax(z_T / tau) [n, K] and that distribution's
      entropy H [n]; forward KL is estimated by tau^2 (-(1/K) sum_i log q(x_i) - H), whose gradient
      with respect to the student logits is tau (q - c / K) (c_a: how often a was drawn), both
      unbiased (see `training.logit_cache.objective`).

    compile: the loss's terms (per chunk, or over all tokens without `config.chunk_size`) through
    torch.compile: a few fused kernels where eager runs one per operation (dozens per chunk).
    """
    n = student_hidden.reshape(-1, student_hidden.shape[-1]).shape[0]
    rows_dtype = torch.promote_types(student_hidden.dtype, torch.float32)  # ids exact below 2^24
    ids, values = teacher_ids.reshape(n, -1), teacher_values.reshape(n, -1)
    if sampled:
        if config.kd != "forward-kl" or config.top_k is not None:
            raise ValueError("sampled teacher targets estimate forward KL over the full vocabulary: "
                             "use kd='forward-kl' and top_k=None")
        if values.shape[1] != 1:
            raise ValueError(f"expected one teacher entropy per position, got {values.shape[1]}")
        rows = "sampled"
        columns = [ids.to(rows_dtype), values.to(rows_dtype)]
    else:
        if values.shape != ids.shape:
            raise ValueError(f"teacher ids {tuple(ids.shape)} and log-probabilities {tuple(values.shape)} differ")
        rows = "top-k"
        values = values.to(rows_dtype)
        tail = (tail_log_mass(values) if teacher_log_tail is None
                else teacher_log_tail.reshape(n, 1).to(rows_dtype))
        columns = [ids.to(rows_dtype), values, tail]
    objective = _Objective(ce_weight=1.0 - config.kd_weight, kd_weight=config.kd_weight,
                           z_loss_weight=config.z_loss_weight, kd=config.kd,
                           temperature=config.temperature, top_k=config.top_k,
                           jsd_beta=config.jsd_beta, teacher_rows=rows, top_k_tail=config.top_k_tail)
    # The chunked loss walks rows of one teacher tensor: ids, values (and the tail) travel together.
    packed = torch.cat(columns, dim=-1)
    return _compute(objective, student_hidden, student_head, packed, _as_is, targets, config.chunk_size,
                    compile=compile)


def _as_is(rows: torch.Tensor) -> torch.Tensor:
    """The teacher 'head' of sparse teacher rows: the rows themselves (see `_Objective.teacher_rows`)."""
    return rows


@dataclass(frozen=True)
class _Objective:
    """The weighted objective. `sums` is the reference computation of its components (autograd
    gives the gradients); `_fused_chunk` computes the same with closed-form gradients."""

    ce_weight: float
    kd_weight: float
    z_loss_weight: float
    kd: str = "forward-kl"
    temperature: float = 1.0
    top_k: int | None = None
    jsd_beta: float = 0.5
    # What the teacher head returns: "logits" [n, V]; or sparse rows [n, 2k + 1] of top-k (ids,
    # log-probs, log tail mass), or [n, K + 1] of sampled ids and the teacher's entropy
    # (`sparse_distillation_loss`).
    teacher_rows: str = "logits"
    top_k_tail: bool = True  # keep the teacher's mass outside the top k as one category

    def sums(self, logits: torch.Tensor, targets: torch.Tensor,
             teacher_logits: torch.Tensor | None) -> torch.Tensor:
        """[CE, KD, Z] summed over the valid tokens of this block (KD is 0 without a teacher)."""
        logits = _at_least_float32(logits)
        valid = targets != IGNORE_INDEX
        log_normaliser = torch.logsumexp(logits, dim=-1)
        target_logits = logits.gather(-1, targets.where(valid, 0).unsqueeze(-1)).squeeze(-1)
        per_token = [log_normaliser - target_logits, log_normaliser.square()]
        if teacher_logits is not None and self.teacher_rows != "logits":
            student_log_probs = F.log_softmax(_soften(logits, self.temperature), dim=-1)
            per_token.insert(1, self.temperature ** 2 * self.sparse_kd(
                student_log_probs, teacher_logits.to(logits.dtype), with_grad=False)[0])
        elif teacher_logits is not None:
            if teacher_logits.shape != logits.shape:
                raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} do not match the "
                                 f"student's {tuple(logits.shape)}: the vocabularies must agree")
            teacher_logits = teacher_logits.to(logits.dtype)
            per_token.insert(1, self.temperature ** 2 * kd_divergence(
                logits, teacher_logits, self.kd, self.temperature, self.top_k, self.jsd_beta,
                self.top_k_tail))
        else:  # no teacher: KD's sum is exactly 0, without [tokens] zeros to mask and add up
            ce, z = (term.where(valid, 0.0).sum() for term in per_token)
            return torch.stack([ce, torch.zeros_like(ce), z])
        # where, not multiply: a garbage (inf/nan) row at an ignored position must not leak in.
        return torch.stack([term.where(valid, 0.0).sum() for term in per_token])

    def sparse_kd(self, s: torch.Tensor, rows: torch.Tensor,
                  with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token D and (if `with_grad`) dD/du, u = student logits / tau, from the student's
        log-probabilities `s` [n, V] at temperature tau and sparse teacher `rows`; overwrites `s`
        when `with_grad`. Only [n, k] teacher tensors are made."""
        if self.teacher_rows == "sampled":
            ids = rows[:, :-1].long()
            kd = -s.gather(-1, ids).mean(-1) - rows[:, -1]
            if not with_grad:
                return kd, None
            # d/du of -(1/K) sum_i log q(x_i) is q - c / K: scatter_add counts repeated draws.
            draw = torch.full(ids.shape, -1.0 / ids.shape[-1], dtype=s.dtype, device=s.device)
            return kd, s.exp_().scatter_add_(-1, ids, draw)
        k = (rows.shape[-1] - 1) // 2
        support, log_probs, log_tail = rows[:, :k].long(), rows[:, k:2 * k], rows[:, 2 * k]
        if self.top_k is not None and self.top_k < k:  # the top_k most likely of the k stored
            kept_log_probs, kept = log_probs.topk(self.top_k, dim=-1, sorted=False)
            dropped = log_probs.scatter(-1, kept, -math.inf).logsumexp(-1)  # they join the tail
            log_tail = torch.logaddexp(log_tail, dropped)
            log_probs, support = kept_log_probs, support.gather(-1, kept)
        if not self.top_k_tail:
            return _top_k_kd(s, F.log_softmax(_soften(log_probs, self.temperature), dim=-1), support, self,
                             with_grad)
        # Sparse rows hold log-probabilities at tau = 1: the tail is softened as one category.
        log_tail = torch.where(log_tail <= LOG_TAIL_FLOOR, LOG_TAIL_FLOOR, _soften(log_tail, self.temperature))
        categories = torch.cat([_soften(log_probs, self.temperature), log_tail.unsqueeze(-1)], dim=-1)
        categories = F.log_softmax(categories, dim=-1)
        return _tail_kd(s, categories[:, :-1], categories[:, -1], support, self, with_grad)

    def weights(self, like: torch.Tensor) -> torch.Tensor:
        """[CE, KD, Z] weights in `like`'s dtype and device: made once per device and kept (read only),
        not built and copied to the GPU at every step."""
        return _weights((self.ce_weight, self.kd_weight, self.z_loss_weight), like.dtype, like.device)


@functools.cache
def _compiled(function: Callable, dynamic: bool | None = None) -> Callable:
    """`function` through torch.compile, made once (its graphs are cached by shape and by the
    objective's weights, which a run keeps): `_Objective.sums`; `_chunk_values_and_grad` with a graph
    per chunk shape (`dynamic=False`: a run has its chunk and its last, shorter one)."""
    return torch.compile(function, dynamic=dynamic)


@functools.lru_cache(maxsize=64)
def _weights(values: tuple[float, float, float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  kind: str = "forward-kl", temperature: float = 1.0, top_k: int | None = None,
                  jsd_beta: float = 0.5, top_k_tail: bool = True) -> torch.Tensor:
    """Per-token divergence D(p_T, p_S) between softmax(logits / temperature), without the tau^2
    factor; logits [n, V] -> [n]. See the module docstring for the top-k semantics."""
    if kind not in ("forward-kl", "reverse-kl", "jsd"):
        raise ValueError(f"unknown KD divergence {kind!r}; use forward-kl, reverse-kl or jsd")
    student_log_probs = F.log_softmax(_soften(student_logits, temperature), dim=-1)
    if top_k is not None and top_k < teacher_logits.shape[-1] and top_k_tail and temperature == 1.0:
        # the teacher's top-k rows, as a server or a cache gives them (see the module docstring)
        objective = _Objective(ce_weight=0.0, kd_weight=1.0, z_loss_weight=0.0, kd=kind, top_k=top_k,
                               jsd_beta=jsd_beta, teacher_rows="top-k")
        return objective.sparse_kd(student_log_probs, top_k_rows(teacher_logits, top_k), with_grad=False)[0]
    if top_k is not None and top_k < teacher_logits.shape[-1] and top_k_tail:
        teacher_all = F.log_softmax(_soften(teacher_logits, temperature), dim=-1)
        teacher_top, support = teacher_all.topk(top_k, dim=-1, sorted=False)
        t_cat = torch.cat([teacher_top, _log_mass_outside(teacher_all, support).unsqueeze(-1)], -1)
        s_cat = torch.cat([student_log_probs.gather(-1, support),
                           _log_mass_outside(student_log_probs, support).unsqueeze(-1)], -1)
        if kind == "forward-kl":
            return _kl(t_cat, s_cat)
        if kind == "reverse-kl":
            return _kl(s_cat, t_cat)
        return _jsd(t_cat, s_cat, jsd_beta)
    if top_k is not None and top_k < teacher_logits.shape[-1]:
        top_logits, support = teacher_logits.topk(top_k, dim=-1, sorted=False)
        teacher_log_probs = F.log_softmax(_soften(top_logits, temperature), dim=-1)
        student_on_support = student_log_probs.gather(-1, support)
        if kind == "forward-kl":
            return _kl(teacher_log_probs, student_on_support)
        if kind == "reverse-kl":
            conditional = student_on_support - torch.logsumexp(student_on_support, -1, keepdim=True)
            return _kl(conditional, teacher_log_probs)
        student_mass_outside = -torch.expm1(torch.logsumexp(student_on_support, dim=-1))
        outside = -(1 - jsd_beta) * math.log1p(-jsd_beta) * student_mass_outside
        return _jsd(teacher_log_probs, student_on_support, jsd_beta) + outside
    teacher_log_probs = F.log_softmax(_soften(teacher_logits, temperature), dim=-1)
    if kind == "forward-kl":
        return _kl(teacher_log_probs, student_log_probs)
    if kind == "reverse-kl":
        return _kl(student_log_probs, teacher_log_probs)
    return _jsd(teacher_log_probs, student_log_probs, jsd_beta)


def _log_mass_outside(log_probs: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """log sum_{a not in support} exp(log_probs[a]) per row, >= LOG_TAIL_FLOOR, differentiable
    (the ids of the support are masked with a large finite negative, not -inf, so that an empty
    complement gives no NaN gradient)."""
    masked = log_probs.scatter(-1, support, -1e4)
    return masked.logsumexp(-1).clamp(min=LOG_TAIL_FLOOR)


def _soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # Dividing by 1 would still allocate another [n, V] tensor.
    return logits if temperature == 1.0 else logits / temperature


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """sum_a p_a (log p_a - log q_a) over the last dimension, from log-probabilities."""
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def _jsd(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor,
         beta: float) -> torch.Tensor:
    """beta KL(p_T || M) + (1 - beta) KL(p_S || M), M = beta p_T + (1 - beta) p_S, summed over
    the entries given (the caller adds what lies outside them)."""
    log_mixture = torch.logaddexp(teacher_log_probs + math.log(beta),
                                  student_log_probs + math.log1p(-beta))
    return (beta * _kl(teacher_log_probs, log_mixture)
            + (1 - beta) * _kl(student_log_probs, log_mixture))


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Softmax statistics over a large vocabulary need float32; keep float64 when given it."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _compute(objective: _Objective, hidden: torch.Tensor, head: Head,
             teacher_hidden: torch.Tensor | None, teacher_head: Head | None,
             targets: torch.Tensor, chunk_size: int | None, compile: bool = False) -> LossOutput:
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if teacher_hidden is not None:
        teacher_hidden = teacher_hidden.reshape(-1, teacher_hidden.shape[-1])
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states")
    n_valid = (targets != IGNORE_INDEX).sum().clamp(min=1)

    if chunk_size is None:
        logits = head(hidden)
        teacher_logits = None
        if teacher_head is not None:
            with torch.no_grad():
                teacher_logits = teacher_head(teacher_hidden)
        sums = (_compiled(_Objective.sums) if compile else _Objective.sums)(objective, logits, targets, teacher_logits)
        loss = (sums * objective.weights(sums)).sum() / n_valid
        components = sums.detach() / n_valid
    else:
        parameters = _head_parameters(head, hidden)
        if parameters or (torch.is_grad_enabled() and hidden.requires_grad):
            loss, components = _ChunkedLoss.apply(objective, hidden, head, teacher_hidden,
                                                  teacher_head, targets, n_valid, chunk_size,
                                                  compile, *parameters)
        else:
            loss, components, _ = _sum_over_chunks(objective, hidden, head, teacher_hidden,
                                                   teacher_head, targets, n_valid, chunk_size,
                                                   parameters=(), with_grads=False, compile=compile)
    return LossOutput(loss=loss, ce=components[0],
                      kd=components[1] if teacher_head is not None else None,
                      z_loss=components[2], tokens=n_valid)


def _head_parameters(head: Head, hidden: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors requiring grad that `head`'s output depends on (its weights, however the
    head is written: nn.Linear, a method, a lambda with an output multiplier), found by running it
    on one row and walking the autograd graph back to the leaves. Empty when grad is disabled."""
    if not torch.is_grad_enabled():
        return []
    with torch.enable_grad():
        probe = head(hidden[:1].detach())
    leaves, seen, stack = [], set(), [probe.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # an AccumulateGrad node: its variable is a leaf
            leaves.append(node.variable)
        stack.extend(parent for parent, _ in node.next_functions)
    return leaves


def _sum_over_chunks(objective: _Objective, hidden: torch.Tensor, head: Head,
                     teacher_hidden: torch.Tensor | None, teacher_head: Head | None,
                     targets: torch.Tensor, n_valid: torch.Tensor, chunk_size: int,
                     parameters: tuple[torch.Tensor, ...], with_grads: bool, compile: bool = False):
    """Loss, components and (if `with_grads`) the gradients of the loss with respect to `hidden`
    and `parameters`, computed chunk by chunk so that one chunk's logits live at a time (each
    chunk's loss terms through torch.compile when `compile`)."""
    loss = components = None
    grad_hidden = torch.zeros_like(hidden) if with_grads else None
    grad_parameters = [torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
                       for p in parameters]
    for start in range(0, hidden.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        with torch.set_grad_enabled(with_grads):
            hidden_chunk = hidden[rows].detach().requires_grad_(with_grads)
            logits = head(hidden_chunk)
        with torch.no_grad():
            teacher = None if teacher_head is None else (teacher_head, teacher_hidden[rows])
            sums, grad_logits = _fused_chunk(objective, logits, targets[rows], teacher, n_valid,
                                             with_grads, compile)
        if with_grads:
            grads = torch.autograd.grad(logits, [hidden_chunk, *parameters],
                                        grad_outputs=grad_logits.to(logits.dtype),
                                        allow_unused=True)
            grad_hidden[rows] = grads[0]
            for total, grad in zip(grad_parameters, grads[1:]):
                if grad is not None:
                    total += grad
        del logits, grad_logits
        sums = sums / n_valid
        chunk_loss = (sums * objective.weights(sums)).sum()
        loss = chunk_loss if loss is None else loss + chunk_loss
        components = sums if components is None else components + sums
    return loss, components, (grad_hidden, *grad_parameters)


def _fused_chunk(objective: _Objective, logits: torch.Tensor, targets: torch.Tensor,
                 teacher: tuple[Head, torch.Tensor] | None, n_valid: torch.Tensor,
                 with_grads: bool, compile: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`_chunk_values_and_grad` (through torch.compile when `compile`) of the teacher's logits made
    here from `teacher` = (head, the chunk's hidden states), so that it owns them and can overwrite
    them (copied when the head returns its input, e.g. an identity head over precomputed logits)."""
    teacher_logits = None
    if teacher is not None:
        teacher_head, teacher_hidden = teacher
        teacher_logits = teacher_head(teacher_hidden)
        if (objective.teacher_rows == "logits"
                and teacher_logits.untyped_storage().data_ptr() == teacher_hidden.untyped_storage().data_ptr()):
            teacher_logits = teacher_logits.clone()  # the head passed its input through: not ours to overwrite
    chunk = _compiled(_chunk_values_and_grad, dynamic=False) if compile else _chunk_values_and_grad
    return chunk(objective, logits, targets, teacher_logits, n_valid, with_grads)


def _chunk_values_and_grad(objective: _Objective, logits: torch.Tensor, targets: torch.Tensor,
                           teacher_logits: torch.Tensor | None, n_valid: torch.Tensor,
                           with_grads: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[CE, KD, Z] summed over the chunk's valid tokens, and (if `with_grads`) d(loss)/d(logits) in
    closed form, overwriting buffers (`teacher_logits` too) so that few [chunk, V] tensors exist at once.

    With p = softmax(z): dCE/dz = p - onehot(y), dZ/dz = 2 logsumexp(z) p, and
    d(tau^2 D)/dz = tau dD/du at u = z / tau (see `_kd_value_and_grad`).
    """
    logits = _at_least_float32(logits)
    valid = targets != IGNORE_INDEX
    safe_targets = targets.where(valid, 0).unsqueeze(-1)
    log_normaliser = logits.logsumexp(-1)
    ce = log_normaliser - logits.gather(-1, safe_targets).squeeze(-1)
    kd = torch.zeros_like(ce)
    token_weight = valid.to(logits.dtype) / n_valid
    grad = None
    if teacher_logits is not None:
        if objective.teacher_rows != "logits":
            s = F.log_softmax(_soften(logits, objective.temperature), dim=-1)
            kd, grad = objective.sparse_kd(s, teacher_logits.to(logits.dtype), with_grads)
        elif teacher_logits.shape != logits.shape:
            raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} do not match the "
                             f"student's {tuple(logits.shape)}: the vocabularies must agree")
        else:
            kd, grad = _kd_value_and_grad(logits, teacher_logits.to(logits.dtype), objective)
        del teacher_logits
        kd = objective.temperature ** 2 * kd
        if with_grads:
            grad.mul_((objective.kd_weight * objective.temperature * token_weight).unsqueeze(-1))
    if with_grads:
        softmax_weight = objective.ce_weight + 2 * objective.z_loss_weight * log_normaliser
        probs = (logits - log_normaliser.unsqueeze(-1)).exp_()
        probs.mul_((softmax_weight * token_weight).unsqueeze(-1))
        grad = probs if grad is None else grad.add_(probs)
        del probs
        grad.scatter_add_(-1, safe_targets, -(objective.ce_weight * token_weight).unsqueeze(-1))
        # Ignored rows have zero weight, but 0 * garbage (inf/nan) would not be zero.
        grad.masked_fill_(~valid.unsqueeze(-1), 0.0)
    per_token = torch.stack([ce, kd, log_normaliser.square()])
    return per_token.where(valid, 0.0).sum(-1), grad


def _kd_value_and_grad(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       objective: _Objective) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token D(p_T, p_S) as in `kd_divergence`, and dD/du with u = student_logits / tau.
    Overwrites `teacher_logits` (with the teacher's log-probabilities) to save a buffer.

    With s = log p_S, t = log p_T, the gradient through the softmax is dD/du = p_S (g - <p_S, g>)
    for g = dD/ds; it simplifies to p_S - p_T for forward KL, to p_S (s - t - D) for reverse KL,
    and g = (1 - beta)(s - log M) for the JSD.
    """
    tau, beta = objective.temperature, objective.jsd_beta
    s = F.log_softmax(_soften(student_logits, tau), dim=-1)
    teacher_logits = _soften(teacher_logits, tau)
    if objective.top_k is not None and objective.top_k < teacher_logits.shape[-1] and objective.top_k_tail:
        if tau == 1.0:  # the teacher's top-k rows, as a server or a cache gives them
            rows = top_k_rows(teacher_logits, objective.top_k, overwrite=True)
            return objective.sparse_kd(s, rows, with_grad=True)
        t = teacher_logits.sub_(teacher_logits.logsumexp(-1, keepdim=True))  # log_softmax, in place
        top, support = t.topk(objective.top_k, dim=-1, sorted=False)
        log_tail = _log_mass_outside_(t, support, top)
        del teacher_logits, t
        return _tail_kd(s, top, log_tail, support, objective, with_grad=True)
    if objective.top_k is not None and objective.top_k < teacher_logits.shape[-1]:
        top_logits, support = teacher_logits.topk(objective.top_k, dim=-1, sorted=False)
        del teacher_logits
        return _top_k_kd(s, F.log_softmax(top_logits, dim=-1), support, objective, with_grad=True)
    t = teacher_logits.sub_(teacher_logits.logsumexp(-1, keepdim=True))  # log_softmax, in place
    del teacher_logits
    if objective.kd == "forward-kl":
        p_t = t.exp()
        kd = _rowdot(p_t, t) - _rowdot(p_t, s)
        return kd, s.exp_().sub_(p_t)
    if objective.kd == "reverse-kl":
        p_s = s.exp()
        kd = _rowdot(p_s, s) - _rowdot(p_s, t)
        return kd, t.neg_().add_(s).sub_(kd.unsqueeze(-1)).mul_(p_s)
    log_m = torch.logaddexp(t + math.log(beta), s + math.log1p(-beta))
    p_t, p_s = t.exp(), s.exp()
    kd = (beta * (_rowdot(p_t, t) - _rowdot(p_t, log_m))
          + (1 - beta) * (_rowdot(p_s, s) - _rowdot(p_s, log_m)))
    del p_t, t
    g = s.sub_(log_m).mul_(1 - beta)
    return kd, g.sub_(_rowdot(p_s, g).unsqueeze(-1)).mul_(p_s)


def _top_k_kd(s: torch.Tensor, t: torch.Tensor, support: torch.Tensor, objective: _Objective,
              with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token D of the top-k teacher (log-probabilities `t` [n, k] renormalised over the ids
    `support` [n, k]) against the student's log-probabilities `s` [n, V], and (if `with_grad`)
    dD/du as in `_kd_value_and_grad`, overwriting `s`."""
    beta = objective.jsd_beta
    s_support = s.gather(-1, support)
    if objective.kd == "forward-kl":
        kd = _rowdot(t.exp(), t - s_support)
        return kd, s.exp_().scatter_add_(-1, support, -t.exp()) if with_grad else None
    if objective.kd == "reverse-kl":
        log_q = s_support - s_support.logsumexp(-1, keepdim=True)
        kd = _rowdot(log_q.exp(), log_q - t)
        on_support = log_q.exp() * (log_q - t - kd.unsqueeze(-1))
        return kd, s.zero_().scatter_(-1, support, on_support) if with_grad else None
    log_m = torch.logaddexp(t + math.log(beta), s_support + math.log1p(-beta))
    p_support = s_support.exp()
    # Outside the support M = (1 - beta) p_S, so g is the constant -(1 - beta) log(1 - beta).
    g_outside = -(1 - beta) * math.log1p(-beta)
    mass_outside = -torch.expm1(s_support.logsumexp(-1))
    kd = (beta * _rowdot(t.exp(), t - log_m) + (1 - beta) * _rowdot(p_support, s_support - log_m)
          + g_outside * mass_outside)
    g_support = (1 - beta) * (s_support - log_m)
    if not with_grad:
        return kd, None
    mean_g = _rowdot(p_support, g_support) + g_outside * mass_outside
    grad = s.exp_().mul_((g_outside - mean_g).unsqueeze(-1))
    return kd, grad.scatter_(-1, support, p_support * (g_support - mean_g.unsqueeze(-1)))


def _log_mass_outside_(log_probs: torch.Tensor, support: torch.Tensor, on_support: torch.Tensor) -> torch.Tensor:
    """`_log_mass_outside` without autograd or a copy: masks the support of `log_probs` in place,
    takes the logsumexp, and writes `on_support` (the gathered values) back."""
    log_probs.scatter_(-1, support, -math.inf)
    log_tail = log_probs.logsumexp(-1).clamp_(min=LOG_TAIL_FLOOR)  # an empty complement gives -inf
    log_probs.scatter_(-1, support, on_support)
    return log_tail


def _tail_kd(s: torch.Tensor, t: torch.Tensor, t_tail: torch.Tensor, support: torch.Tensor,
             objective: _Objective, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token D over the k + 1 categories (the ids `support` [n, k] and the tail) of the teacher's
    log-probabilities `t` [n, k] and tail log-mass `t_tail` [n] (normalised together) against the
    student's log-probabilities `s` [n, V], and (if `with_grad`) dD/du, overwriting `s`.
    Without `with_grad` only out-of-place ops are used, so autograd can differentiate the value."""
    beta = objective.jsd_beta
    s_support = s.gather(-1, support)
    s_tail = _log_mass_outside_(s, support, s_support) if with_grad else _log_mass_outside(s, support)
    s_cat = torch.cat([s_support, s_tail.unsqueeze(-1)], -1)
    t_cat = torch.cat([t, t_tail.unsqueeze(-1)], -1)
    if objective.kd == "forward-kl":
        kd = _kl(t_cat, s_cat)
        if not with_grad:
            return kd, None
        # on S: p_S - p_T; outside: p_S(j) (1 - P_T / Q) = exp(s_j - log Q) (Q - P_T)
        outside = s_tail.exp() - t_tail.exp()
        grad = s.sub_(s_tail.unsqueeze(-1)).exp_().mul_(outside.unsqueeze(-1))
        return kd, grad.scatter_(-1, support, s_support.exp() - t.exp())
    if objective.kd == "reverse-kl":
        kd = _kl(s_cat, t_cat)
        h = s_cat - t_cat - kd.unsqueeze(-1)  # dD/du_j = p_S(j) h_c(j)
    else:
        log_m = torch.logaddexp(t_cat + math.log(beta), s_cat + math.log1p(-beta))
        kd = beta * _kl(t_cat, log_m) + (1 - beta) * _kl(s_cat, log_m)
        h = (1 - beta) * (s_cat - log_m)
        h = h - _rowdot(s_cat.exp(), h).unsqueeze(-1)
    if not with_grad:
        return kd, None
    grad = s.exp_().mul_(h[:, -1:])
    return kd, grad.scatter_(-1, support, s_support.exp() * h[:, :-1])


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_a x_a y_a per row, as a batched matmul so that no [n, V] product is materialised."""
    return torch.einsum("nv,nv->n", a, b)


class _ChunkedLoss(torch.autograd.Function):
    """Chunked loss whose forward also computes the gradients (see `_sum_over_chunks`); backward
    scales them by the incoming gradient. `parameters` are the head's weights, passed as inputs so
    autograd routes their gradients."""

    @staticmethod
    def forward(ctx, objective, hidden, head, teacher_hidden, teacher_head, targets, n_valid,
                chunk_size, compile, *parameters):
        loss, components, ctx.grads = _sum_over_chunks(
            objective, hidden, head, teacher_hidden, teacher_head, targets, n_valid, chunk_size,
            parameters, with_grads=True, compile=compile)
        ctx.parameter_dtypes = [p.dtype for p in parameters]
        ctx.mark_non_differentiable(components)
        return loss, components

    @staticmethod
    def backward(ctx, grad_loss, _grad_components):
        if ctx.grads is None:
            raise RuntimeError("backward through a chunked loss can run only once: its gradients "
                               "are computed in forward and handed over, not kept")
        # Scale in place and hand the buffers over: no second [V, d] copy of the head's gradient.
        grad_hidden, *grad_parameters = (g.mul_(grad_loss) for g in ctx.grads)
        ctx.grads = None
        grad_parameters = [g.to(dtype) for g, dtype in zip(grad_parameters, ctx.parameter_dtypes)]
        return (None, grad_hidden, None, None, None, None, None, None, None, *grad_parameters)
