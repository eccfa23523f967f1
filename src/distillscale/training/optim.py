"""Optimizer and learning-rate schedule: AdamW over the model's muP parameter groups, linear warmup then
cosine decay to a floor (Busbridge et al. 2025, docs/science.md §5), or warmup-stable-decay (Hägele et al.
2024, docs/science.md §8)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from distillscale.training.config import DEFAULT_COOLDOWN_SHAPE, TrainConfig


class WarmupCosine:
    """Learning-rate multiplier: linear warmup from 0 to 1, then cosine from 1 down to `min_ratio`.

    A picklable callable (its attributes are its parameters) so `LambdaLR.state_dict()` records it.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupStableDecay:
    """Learning-rate multiplier: linear warmup from 0 to 1, 1 until the last `cooldown_steps`, then
    down to `min_ratio` at the last step, linearly or as 1 - sqrt(progress).

    Before its cooldown it is the same function for every `total_steps`: what lets a shorter run
    fork from a longer one's stable phase. Picklable, as WarmupCosine.
    """

    def __init__(self, warmup_steps: int, total_steps: int, cooldown_steps: int, min_ratio: float,
                 shape: str):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.cooldown_steps = cooldown_steps
        self.min_ratio = min_ratio
        self.shape = shape

    @property
    def cooldown_start(self) -> int:
        return self.total_steps - self.cooldown_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step < self.cooldown_start:
            return 1.0
        progress = min(1.0, (step - self.cooldown_start + 1) / self.cooldown_steps)
        remaining = 1 - progress if self.shape == "linear" else 1 - math.sqrt(progress)
        return self.min_ratio + (1 - self.min_ratio) * remaining


def lr_schedule(config: TrainConfig, total_steps: int,
                non_embedding_params: int | None = None) -> WarmupCosine | WarmupStableDecay:
    """The schedule `config` asks for, over `total_steps` (a warmup in tokens per parameter needs the
    model's `non_embedding_params`)."""
    warmup_steps = config.resolved_warmup_steps(total_steps, non_embedding_params)
    if config.schedule == "wsd":
        return WarmupStableDecay(warmup_steps, total_steps, config.cooldown_steps(total_steps),
                                 config.min_lr_ratio, config.cooldown_shape or DEFAULT_COOLDOWN_SHAPE)
    return WarmupCosine(warmup_steps, total_steps, config.min_lr_ratio)


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95),
                    eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW (by default betas 0.9, 0.95 and eps 1e-8, TrainConfig's defaults) with the model's
    per-group (muP) learning rates; no decay on norms and gains.

    `weight_decay` is independent of the learning rate, as in the paper (Wortsman et al. 2024): each
    step shrinks weights by `weight_decay` times the schedule multiplier, whatever the group's lr.
    PyTorch's AdamW multiplies its coefficient by the lr, so each group gets `weight_decay / lr_group`.
    """
    groups = model.param_groups(lr, weight_decay)
    for group in groups:
        if group.get("weight_decay", 0.0) > 0:
            group["weight_decay"] = weight_decay / group["lr"]
    # The fused kernel (CPU and CUDA) updates each tensor in one pass: 2-3x faster than foreach on CPU.
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


def build_scheduler(optimizer: torch.optim.Optimizer,
                    schedule: WarmupCosine | WarmupStableDecay) -> LambdaLR:
    return LambdaLR(optimizer, schedule)
