"""Several teachers, one target: the weighted mixture of their distributions (issue 37).

`distill --teacher A --teacher B --teacher-weight 0.7 --teacher-weight 0.3` distils the student towards

    p_mix = sum_i w_i softmax(z_i / tau)          (weights normalised to sum 1)

in probability space, not a mixture of logits. The mixture is seen through the interface of one teacher
(`hidden_states(idx)`, `head(h)`), so the chunked loss, top-k targets (the top k of the mixture, on the
union of the teachers' ids) and on-policy batches take it unchanged:

- `hidden_states` concatenates the teachers' hidden states along the last axis;
- `head` splits them again and returns tau * logsumexp_i(log w_i + log_softmax(z_i / tau)), logits whose
  softened distribution softmax(. / tau) is exactly p_mix. A zero-weight teacher adds no mass and is
  left out of the sum; with one teacher of positive weight left (weights (1, 0)) the head is that
  teacher's own logits, so the mixture equals distilling from the first teacher alone, bit for bit
  (tests/training/test_mixture.py; the zero-weight teacher is still run and counted).

Routing (`--teacher NAME=PATH ... --teacher-route FIELD`): each position is distilled from the teacher
named by the FIELD of the jsonl/parquet row of its document (prepared per token, `data.prepare`): the
position's log-weights (0 for its teacher, -inf for the others) ride along with the hidden states, and
a window that spans two documents gives each position its own document's teacher (no per-sequence
choice to make). Every teacher still runs on every position (their FLOPs are counted so).

Every teacher speaks the student's tokenizer (a mixture across tokenizers is refused). Its cost is
every teacher's forward pass on every training token (zero-weight teachers included: they are run);
result.json's `teacher` is the mixture (kind "mixture", its validation loss the mixture's
cross-entropy on the student's validation tokens) with each teacher, its weight, loss and FLOPs, in
`teacher.teachers`. The distillation law was fitted for one teacher: `plan` applies it to a mixture with
the mixture's measured cross-entropy as L_T, marked outside its fit (planning/plan.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from distillscale.data.sampler import TokenSampler, iter_eval_batches
from distillscale.training.losses import cross_entropy_loss
from distillscale.training.records import TeacherRecord
from distillscale.training.teachers import Teacher

MIXTURE_FLOPS_METHOD = "the sum of the teachers' forward FLOPs per token (each teacher runs on every token)"


def normalised_weights(weights: list[float] | None, count: int) -> list[float]:
    """The mixture's weights summing to 1 (equal when not given); the config has checked them."""
    weights = list(weights) if weights is not None else [1.0] * count
    total = math.fsum(weights)
    return [weight / total for weight in weights]


@dataclass(frozen=True)
class MixtureInfo:
    """What result.json records about a mixture: each teacher's info, weight and validation loss (kept
    in `TeacherRecord`'s extra keys `teachers`, and `weight` and `name` in each, so that a single
    teacher's record is as it was)."""

    teachers: list[Any]           # each teacher's `TeacherInfo`
    weights: list[float]          # normalised (routed: each teacher's share of the training tokens)
    teacher_val_losses: list[float]
    names: list[str | None]
    route: str | None = None      # routed: the data field naming each document's teacher (weights: token shares)

    path = "mixture"
    kind = "mixture"
    flops_method = MIXTURE_FLOPS_METHOD

    @property
    def forward_flops_per_token(self) -> int:
        return sum(info.forward_flops_per_token for info in self.teachers)

    @property
    def non_embedding_params(self) -> int:
        """The largest teacher's (the size a student is compared with)."""
        return max(info.non_embedding_params for info in self.teachers)

    def record(self, teacher_val_loss: float, tokens: int, **more: Any) -> TeacherRecord:
        """result.json's `teacher`: the mixture (its cross-entropy `teacher_val_loss`, the FLOPs of all
        teachers) and `teachers`, each teacher's own record with its weight."""
        teachers = [info.record(loss, tokens, weight=weight, **({"name": name} if name else {}))
                    for info, weight, loss, name in zip(self.teachers, self.weights, self.teacher_val_losses,
                                                        self.names)]
        return TeacherRecord(path=self.path, kind=self.kind, teacher_val_loss=teacher_val_loss,
                             non_embedding_params=None, total_params=None,
                             forward_flops_per_token=self.forward_flops_per_token,
                             flops=float(sum(teacher.flops for teacher in teachers)),
                             flops_method=self.flops_method,
                             teachers=[teacher.model_dump(mode="json") for teacher in teachers],
                             **({"route": self.route} if self.route is not None else {}), **more)


class MixtureTeacher(nn.Module):
    """Frozen teachers seen as one: `head` returns logits whose softmax at `temperature` is the weighted
    mixture of the teachers' softmaxes at that temperature (module docstring)."""

    def __init__(self, teachers: list[Teacher], weights: list[float], temperature: float = 1.0,
                 info: MixtureInfo | None = None):
        super().__init__()
        if len(teachers) != len(weights) or len(teachers) < 2:
            raise ValueError("a mixture needs two teachers or more and one weight per teacher")
        self.teachers = nn.ModuleList(teachers)
        self.weights = list(weights)
        self.temperature = temperature
        self.vocab_size = teachers[0].vocab_size
        self.info = info
        # not a buffer: `.to(bf16)` of the teachers must leave the weights in float32
        self.log_weights = torch.tensor([math.log(w) if w > 0 else -math.inf for w in weights])
        self._widths: list[int] = []
        # routed (`--teacher-route`): the teacher index of each position of the next batch, [B, T]
        self.route: torch.Tensor | None = None
        self._routed = False

    def at_temperature(self, temperature: float) -> MixtureTeacher:
        """The same teachers and weights at another temperature (1: the mixture's own distribution)."""
        return MixtureTeacher(list(self.teachers), self.weights, temperature, self.info)

    def train(self, mode: bool = True) -> MixtureTeacher:
        return super().train(False)

    def compile_trunk(self) -> MixtureTeacher:
        for teacher in self.teachers:
            teacher.compile_trunk()
        return self

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        states = [teacher.hidden_states(idx) for teacher in self.teachers]
        self._widths = [state.shape[-1] for state in states]
        dtype = states[0].dtype
        self._routed = self.route is not None
        if self._routed:  # each position's log-weights ride along: 0 for its teacher, -inf for the others
            if self.route.shape != idx.shape:
                raise ValueError(f"routes {tuple(self.route.shape)} for a batch of {tuple(idx.shape)}")
            log_weights = torch.full((*idx.shape, len(self.teachers)), -math.inf, dtype=dtype, device=idx.device)
            log_weights.scatter_(-1, self.route.to(idx.device).long().unsqueeze(-1), 0.0)
            states.append(log_weights)
            self._widths.append(len(self.teachers))
        return torch.cat([state.to(dtype) for state in states], dim=-1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        if sum(self._widths) != h.shape[-1]:
            raise ValueError(f"mixture hidden states of width {h.shape[-1]}, expected {sum(self._widths)} "
                             f"(call hidden_states first)")
        tau = self.temperature
        parts = torch.split(h, self._widths, dim=-1)
        if self._routed:  # each row its own teacher: the log-weights are the last columns
            log_probs = torch.stack([(teacher.head(part).float() / tau).log_softmax(-1)
                                     for teacher, part in zip(self.teachers, parts)])
            row_weights = parts[-1].float().movedim(-1, 0).unsqueeze(-1)  # [K, ..., 1]
            return tau * torch.logsumexp(log_probs + row_weights, dim=0)
        # a zero-weight teacher adds no mass: left out, and one teacher left is its own logits (exactly)
        kept = [i for i, weight in enumerate(self.weights) if weight > 0]
        if len(kept) == 1:
            return self.teachers[kept[0]].head(parts[kept[0]])
        log_probs = torch.stack([(self.teachers[i].head(parts[i]).float() / tau).log_softmax(-1) for i in kept])
        log_weights = self.log_weights[kept].to(log_probs.device).view(-1, *([1] * (log_probs.dim() - 1)))
        return tau * torch.logsumexp(log_probs + log_weights, dim=0)


class RoutedSampler(TokenSampler):
    """`TokenSampler`'s batches with the teacher index of every input position: the route of its
    document, read from the prepared corpus's per-token routes."""

    def __init__(self, tokens: np.ndarray, routes: np.ndarray, teacher_of: np.ndarray, seq_len: int,
                 batch_size: int, seed: int):
        super().__init__(tokens, seq_len, batch_size, seed)
        if len(routes) != len(tokens):
            raise RuntimeError(f"{len(routes)} routes for {len(tokens)} tokens")
        self.routes = routes
        self.teacher_of = teacher_of

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        inputs, targets = super().batch(step, rank, world_size)
        per_rank = self.batch_size // world_size
        starts = self.window_starts(step)[rank * per_rank:(rank + 1) * per_rank]
        route_ids = self.routes[starts[:, None] + np.arange(self.seq_len)]
        return inputs, targets, torch.from_numpy(self.teacher_of[route_ids])


@torch.no_grad()
def routed_loss(mixture: MixtureTeacher, tokens: np.ndarray, teacher_ids: np.ndarray, seq_len: int,
                batch_size: int, max_tokens: int | None, device: torch.device, autocast) -> float:
    """The routed mixture's cross-entropy on the validation windows `evaluate` reads (every process
    computes all of them: the same number everywhere)."""
    total, count = 0.0, 0
    batches = zip(iter_eval_batches(tokens, seq_len, batch_size, max_tokens),
                  iter_eval_batches(teacher_ids, seq_len, batch_size, max_tokens))
    for (inputs, targets), (routes, _) in batches:
        mixture.route = routes
        with autocast:
            output = cross_entropy_loss(mixture.hidden_states(inputs.to(device)), mixture.head, targets.to(device))
        mixture.route = None
        total += output.ce.double().item() * targets.numel()
        count += targets.numel()
    return total / count
