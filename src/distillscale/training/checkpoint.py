"""The resumable training state: everything needed to continue a run bit for bit.

The data position is the step itself: `TokenSampler.batch(step, ...)` is a pure function of
(seed, step, rank), so restoring the step restores the stream of batches.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from distillscale.training.distributed import Distributed


@dataclass
class Progress:
    """How far the run has got, and what it has cost so far (summed over resumed segments)."""

    step: int = 0
    wall_seconds: float = 0.0   # up to the last checkpoint of interrupted segments, then to the end
    train_seconds: float = 0.0  # time spent in training steps only (no evaluation, no saving)


def capture_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
                  progress: Progress) -> dict[str, Any]:
    """A dict of tensors and plain values that `torch.load(weights_only=True)` reads back."""
    return {
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": asdict(progress),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }


def restore_state(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: LRScheduler) -> Progress:
    _restore_weights(state, model, optimizer)
    scheduler.load_state_dict(state["scheduler"])
    return Progress(**state["progress"])


def restore_branch(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: LRScheduler) -> Progress:
    """Continue another run's state (a fork's parent) under this run's own schedule: weights,
    optimizer moments, RNG and step are the other run's; the learning rate is this schedule's at that
    step (loading the other scheduler would bring its cooldown). Times start at zero: they count the
    work of this run only."""
    _restore_weights(state, model, optimizer)
    step = state["progress"]["step"]
    scheduler.last_epoch = step
    for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(step)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
    return Progress(step=step)


def _restore_weights(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


class CheckpointClock:
    """When a checkpoint is due by time: `seconds` (0: never) after the last one, or after the start of
    training. Bookkeeping only: the steps and their results do not depend on it.

    Every rank must agree (under FSDP every rank writes its shards): with several processes the main
    rank decides and tells the others, at every `DISTRIBUTED_CHECK_STEPS`-th step only (one small
    collective, not one per step); a single process asks its own clock before every step."""

    DISTRIBUTED_CHECK_STEPS = 10

    def __init__(self, seconds: float, group: Distributed):
        self.seconds = seconds
        self.group = group
        self.last = time.perf_counter()

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after step `step` (1-based), the same answer on every rank."""
        if self.seconds <= 0:
            return False
        if not self.group.enabled:
            return time.perf_counter() - self.last >= self.seconds
        if step % self.DISTRIBUTED_CHECK_STEPS:
            return False
        return self.group.main_says(self.group.is_main and time.perf_counter() - self.last >= self.seconds)

    def saved(self) -> None:
        self.last = time.perf_counter()
