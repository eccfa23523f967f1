"""One optimizer step: gradient accumulation over micro-batches, clipping, the AdamW update.

The step never waits for the device: its numbers stay in a device tensor (`StepResult.values`)
until the caller reads one, and a non-finite loss or gradient skips the update on the device (the
fused AdamW kernel's `found_inf`, as `torch.amp.GradScaler` uses it), so the host can look at
logging steps only. `halted` carries "an earlier step was not finite" from step to step, so every
update after the first bad step is skipped too until the host looks (see `DivergenceWatch`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from distillscale.training.distributed import Distributed
from distillscale.training.objective import Objective
from distillscale.training.parallel import TrainingModel, full_tensor
from distillscale.training.sharded_step import adam_step_local_, clip_local_, local_shards_apply


@dataclass(frozen=True)
class StepResult:
    """[loss, ce, kd, grad_norm] (float64, on the step's device); reading a number waits for it.

    loss: the objective, averaged over the step's trained tokens (`train_step`) and over the
    processes; ce: its cross-entropy part (nats/token); kd: its distillation part (nats/token; None
    without one); grad_norm: the global L2 norm before clipping."""

    values: torch.Tensor
    has_kd: bool = False

    @cached_property
    def _host(self) -> list[float]:
        return self.values.tolist()

    @property
    def loss(self) -> float:
        return self._host[0]

    @property
    def ce(self) -> float:
        return self._host[1]

    @property
    def kd(self) -> float | None:
        return self._host[2] if self.has_kd else None

    @property
    def grad_norm(self) -> float:
        return self._host[3]

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)

    @cached_property
    def finite_on_device(self) -> torch.Tensor:
        """Whether the loss and the gradient norm are finite: a device bool, computed once (the step and
        the watch both ask); values[0::3] is [loss, grad_norm], a view (a list index would build an index
        tensor, and copy it to the GPU, each time)."""
        return torch.isfinite(self.values[0::3]).all()


def train_step(model: TrainingModel, objective: Objective, optimizer: torch.optim.Optimizer,
               micro_batches: list[tuple[torch.Tensor, ...]], grad_clip: float,
               group: Distributed, autocast: contextlib.AbstractContextManager,
               halted: torch.Tensor | None = None) -> StepResult:
    """Accumulate gradients over `micro_batches` (equal sizes), clip, and update unless the loss or
    the gradient is not finite, or `halted` (a device bool) is true: then the weights and the
    optimizer state are left as they were, for the caller to stop.
    A micro-batch is (inputs, targets, *extras); the extras (e.g. cached teacher predictions) are
    passed on to the objective.

    The step's loss is a plain average over its trained tokens, as one batch of all of them would
    give (and as Hugging Face's Trainer normalises gradient accumulation, by the items of the whole
    accumulated batch): each micro-batch's mean weighs its count of trained tokens
    (`LossOutput.tokens`). Micro-batches differ in it when targets are masked, e.g. on-policy
    batches, which train on the C sampled tokens of each window only (training/on_policy.py), next
    to corpus batches that train on all seq_len positions. Steps are weighted alike, as in GKD
    (each batch its own token mean). With equal counts every weight is exactly 1.0 and the numbers
    are those of a plain mean of the micro-batches."""
    optimizer.zero_grad(set_to_none=True)
    if len(micro_batches) == 1:  # no accumulation: every weight below would be exactly 1.0
        return _one_micro_batch(model, objective, optimizer, micro_batches[0], grad_clip, group, autocast, halted)
    totals = None  # loss, ce, kd summed over the micro-batches (weighted), float64 on the device
    first_tokens = weight_sum = None  # the first micro-batch's trained tokens; the weights' sum
    for index, (inputs, targets, *extras) in enumerate(micro_batches):
        # Gradients are all-reduced only once, on the last micro-batch.
        is_last = index == len(micro_batches) - 1
        with contextlib.nullcontext() if is_last else model.no_sync():
            with autocast:
                output = objective(model, inputs, targets, *extras)
            # weight: this micro-batch's trained tokens relative to the first's (exactly 1.0 when equal)
            tokens = (output.tokens if output.tokens is not None
                      else torch.ones((), device=output.loss.device)).detach().double()
            first_tokens = tokens if first_tokens is None else first_tokens
            weight = tokens / first_tokens
            (output.loss * weight.to(output.loss.dtype) / len(micro_batches)).backward()
        weight_sum = weight if weight_sum is None else weight_sum + weight
        kd = output.kd if output.kd is not None else torch.zeros_like(output.ce)
        micro = torch.stack([output.loss.detach(), output.ce.detach(), kd.detach()]).double() * weight
        totals = micro if totals is None else totals + micro
    totals = group.mean(totals / weight_sum)
    parameters = [p for group_ in optimizer.param_groups for p in group_["params"]]
    if len(micro_batches) > 1:  # the backward passes divided by len(micro_batches), the weights by their sum
        _scale_gradients(parameters, len(micro_batches) / weight_sum)
    return _clip_and_update(optimizer, parameters, totals, grad_clip, output.kd is not None, halted)


def _one_micro_batch(model: TrainingModel, objective: Objective, optimizer: torch.optim.Optimizer,
                     batch: tuple[torch.Tensor, ...], grad_clip: float, group: Distributed,
                     autocast: contextlib.AbstractContextManager, halted: torch.Tensor | None) -> StepResult:
    """`train_step` of one micro-batch: the same numbers bit for bit (its weight would be exactly 1.0,
    and x * 1.0 / 1 is x), without the weights' operations, which a small model's step pays for in
    Python and kernel launches."""
    inputs, targets, *extras = batch
    with autocast:
        output = objective(model, inputs, targets, *extras)
    output.loss.backward()
    kd = output.kd if output.kd is not None else torch.zeros_like(output.ce)
    totals = group.mean(torch.stack([output.loss.detach(), output.ce.detach(), kd.detach()]).double())
    parameters = [p for group_ in optimizer.param_groups for p in group_["params"]]
    return _clip_and_update(optimizer, parameters, totals, grad_clip, output.kd is not None, halted)


def _clip_and_update(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor], totals: torch.Tensor,
                     grad_clip: float, has_kd: bool, halted: torch.Tensor | None) -> StepResult:
    """Clip the gradients, then update unless the step (or an earlier one: `halted`) was not finite.
    FSDP's sharded parameters are clipped and updated on their local shards (`sharded_step`)."""
    max_norm = grad_clip if grad_clip > 0 else math.inf
    local = local_shards_apply(optimizer, parameters)
    if local:
        grad_norm = clip_local_(parameters, max_norm)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        grad_norm = full_tensor(grad_norm)  # under FSDP, a DTensor over the sharded gradients
    result = StepResult(torch.cat([totals, grad_norm.detach().double().reshape(1).to(totals.device)]),
                        has_kd=has_kd)
    skip = ~result.finite_on_device if halted is None else halted | ~result.finite_on_device
    if local:
        adam_step_local_(optimizer, skip.float())
    elif _skips_on_device(optimizer, parameters):
        optimizer.found_inf = skip.float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not skip.item():  # other optimizers: the host decides (one sync)
        optimizer.step()
    return result


def _scale_gradients(parameters: list[torch.Tensor], factor: torch.Tensor) -> None:
    """Multiply the gradients by `factor` (a device scalar, exactly 1.0 when the micro-batches'
    weights are equal: then the gradients keep their bits), on the device (DTensor gradients of FSDP:
    their local shards)."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in parameters if p.grad is not None]
    if any(isinstance(g, DTensor) for g in grads):  # on their local shards, as the sharded step runs
        grads = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    if grads:
        torch._foreach_mul_(grads, factor.to(grads[0].device, torch.float32))


def _skips_on_device(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor]) -> bool:
    """Whether the optimizer's kernel takes `found_inf` (fused Adam/AdamW), on plain tensors (DTensor
    parameters under FSDP keep the host's decision)."""
    from torch.distributed.tensor import DTensor

    return (isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) and bool(optimizer.defaults.get("fused"))
            and not any(isinstance(p, DTensor) for p in parameters))


class DivergenceWatch:
    """Remembers, on the device, the first step whose loss or gradient was not finite (and its
    numbers), so the training loop can look only at logging steps: `halted` makes every later
    update a no-op until then, so the weights are those of the last good step when it looks."""

    def __init__(self, device: torch.device):
        self.first_bad_step = torch.zeros((), dtype=torch.int64, device=device)  # 0: none yet
        self.bad_values = torch.zeros(4, dtype=torch.float64, device=device)
        self.has_kd = False

    @property
    def halted(self) -> torch.Tensor:
        return self.first_bad_step > 0

    def record(self, step: int, result: StepResult) -> None:
        """Note the result of `step` (1-based): device operations only."""
        new = ~self.halted & ~result.finite_on_device
        self.first_bad_step = torch.where(new, step, self.first_bad_step)
        self.bad_values = torch.where(new, result.values, self.bad_values)
        self.has_kd = result.has_kd

    def first_bad(self) -> tuple[int, StepResult] | None:
        """(the first non-finite step, its result), or None; waits for the device."""
        step = int(self.first_bad_step)
        return (step, StepResult(self.bad_values, self.has_kd)) if step else None
