"""One optimizer step: gradient accumulation over micro-batches, clipping, the AdamW update."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from distillscale.training.distributed import Distributed, TrainingModel
from distillscale.training.objective import Objective
from distillscale.training.parallel import full_tensor


@dataclass(frozen=True)
class StepResult:
    loss: float       # the objective, averaged over the step's tokens on all processes
    ce: float         # its cross-entropy part (nats/token)
    grad_norm: float  # global L2 norm before clipping
    kd: float | None = None  # its distillation part (nats/token), when the objective has one

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


def train_step(model: TrainingModel, objective: Objective, optimizer: torch.optim.Optimizer,
               micro_batches: list[tuple[torch.Tensor, ...]], grad_clip: float,
               group: Distributed, autocast: contextlib.AbstractContextManager) -> StepResult:
    """Accumulate gradients over `micro_batches` (equal sizes), clip, and update unless the loss or
    the gradient is not finite (then the weights are left as they were, for the caller to stop).
    A micro-batch is (inputs, targets, *extras); the extras (e.g. cached teacher predictions) are
    passed on to the objective."""
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, dtype=torch.float64)  # loss, ce, kd
    for index, (inputs, targets, *extras) in enumerate(micro_batches):
        # Gradients are all-reduced only once, on the last micro-batch.
        is_last = index == len(micro_batches) - 1
        with contextlib.nullcontext() if is_last else model.no_sync():
            with autocast:
                output = objective(model, inputs, targets, *extras)
            (output.loss / len(micro_batches)).backward()
        kd = output.kd if output.kd is not None else torch.zeros_like(output.ce)
        totals += torch.stack([output.loss.detach(), output.ce.detach(), kd.detach()]).double().cpu()
    totals = group.mean(totals / len(micro_batches))
    parameters = [p for group_ in optimizer.param_groups for p in group_["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf)
    grad_norm = full_tensor(grad_norm)  # under FSDP, a DTensor over the sharded gradients
    result = StepResult(loss=totals[0].item(), ce=totals[1].item(), grad_norm=grad_norm.item(),
                        kd=totals[2].item() if output.kd is not None else None)
    if result.finite:
        optimizer.step()
    return result
