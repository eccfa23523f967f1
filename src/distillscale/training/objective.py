"""Objectives: what one training step minimises, as `objective(model, inputs, targets) -> LossOutput`.

`model` is anything with `hidden_states(idx) -> [B, T, d]` and `head(h) -> logits` (a `Transformer`, or
the DDP-wrapped `TrainingModel`). The recipe owns everything else (optimizer, accumulation, resume,
DDP, metrics), so a distillation objective that also holds a teacher drops in unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from distillscale.training.losses import LossOutput, cross_entropy_loss
from distillscale.training.records import (
    CacheRecord,
    DistillationRecord,
    OnPolicyRecord,
    TeacherRecord,
    TeacherServerRecord,
    TopKTargetsRecord,
)


@dataclass(frozen=True)
class ObjectiveRecord:
    """What an objective adds to result.json after a run: its teacher, KD settings, the logit cache or
    teacher server it read the teacher's predictions from, and its on-policy generation (None for
    supervised training), how its FLOPs were counted when a teacher adds to them, and the FLOPs it
    spent beyond the per-token ones (added to the run's `flops`)."""

    teacher: TeacherRecord | None = None
    distillation: DistillationRecord | None = None
    teacher_cache: CacheRecord | None = None
    teacher_server: TeacherServerRecord | None = None
    on_policy: OnPolicyRecord | None = None
    top_k_targets: TopKTargetsRecord | None = None  # a top-k teacher's measured mass and tail
    flops_method: str | None = None  # None: the recipe's own
    extra_flops: float = 0.0  # FLOPs outside the per-token accounting (an on-policy student's generation)


class Objective(Protocol):
    # Forward FLOPs per training token spent outside the trained model (a teacher's forward pass).
    extra_flops_per_token: int

    # Extra tensors come with each batch when the sampler provides them (cached teacher predictions).
    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, *extras: torch.Tensor) -> LossOutput: ...

    def record(self, tokens: int) -> ObjectiveRecord:
        """What this objective adds to result.json after `tokens` training tokens."""


class SupervisedObjective:
    """Next-token cross-entropy against the data, with an optional z-loss (docs/science.md §5);
    `compile`: the loss's terms through torch.compile (`cross_entropy_loss`), as `--compile` runs."""

    extra_flops_per_token = 0

    def __init__(self, z_loss_weight: float = 0.0, chunk_size: int | None = None, compile: bool = False):
        self.z_loss_weight = z_loss_weight
        self.chunk_size = chunk_size
        self.compile = compile

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        hidden = model.hidden_states(inputs)
        return cross_entropy_loss(hidden.flatten(0, 1), model.head, targets.flatten(),
                                  z_loss_weight=self.z_loss_weight, chunk_size=self.chunk_size,
                                  compile=self.compile)

    def record(self, tokens: int) -> ObjectiveRecord:
        return ObjectiveRecord()
