"""Gradient clipping and the fused AdamW update of FSDP-sharded parameters, on their local shards.

Under `--parallel fsdp` every parameter, gradient and AdamW moment is a DTensor sharded along its first
dimension. Run through DTensor, `clip_grad_norm_` and the optimizer's step are dispatched tensor by
tensor on the host (sharding propagation for each operand of each operation: tens of milliseconds a
step for a model of a few hundred tensors), and the found-inf skip of the fused kernel is not used, so
the host waits for the device to decide whether to update.

Here the same arithmetic runs on the plain local tensors behind them: one `_foreach_norm` over the
local gradients, one all-reduce of the sum of squares over the shards' process group, one
`_foreach_mul_` to clip, and one fused AdamW kernel over the local parameters, gradients and moments,
which skips on the device when `found_inf` is set. The optimizer state stays the DTensors that
`torch.optim` made (the local tensors are views of them), so sharded checkpoints are unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def local_shards_apply(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor]) -> bool:
    """Whether `clip_local_` and `adam_step_local_` apply: a fused Adam/AdamW over parameters that are
    all DTensors sharded over one 1-D mesh (what `parallel.shard` makes)."""
    from torch.distributed.tensor import DTensor, Shard

    if not (isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) and optimizer.defaults.get("fused")):
        return False
    if not parameters or not all(isinstance(p, DTensor) for p in parameters):
        return False
    mesh = parameters[0].device_mesh
    return all(p.device_mesh == mesh and p.device_mesh.ndim == 1 and isinstance(p.placements[0], Shard)
               for p in parameters)


def _local(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The local shards of DTensors: views sharing their storage, so writes reach the DTensors."""
    return [t.to_local() for t in tensors]


@torch.no_grad()
def clip_local_(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` of sharded parameters (`local_shards_apply`) on their local
    gradients: the global L2 norm (a plain scalar tensor, the same on every rank) before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), device=parameters[0].to_local().device)
    local = _local(grads)
    # As DTensor reduces a sharded tensor's norm (local norm ** 2 summed over the shards, ** 0.5), for
    # all parameters in one all-reduce; then clip_grad_norm_'s norm of the parameters' norms.
    squares = torch.stack(torch._foreach_norm(local)) ** 2
    dist.all_reduce(squares, group=grads[0].device_mesh.get_group())
    total = torch.linalg.vector_norm(squares ** 0.5, 2.0)
    if math.isfinite(max_norm):  # the same coefficient as clip_grad_norm_'s (1 when the norm is below)
        torch._foreach_mul_(local, (max_norm / (total + 1e-6)).clamp(max=1.0))
    return total


@torch.no_grad()
def adam_step_local_(optimizer: torch.optim.Adam, found_inf: torch.Tensor | None) -> None:
    """`optimizer.step()` of a fused Adam/AdamW over sharded parameters (`local_shards_apply`), run on
    the local shards: per parameter group one fused kernel, skipped on the device where `found_inf`
    (a float scalar, 1.0 to skip) is set, step counters included, as the optimizer's own fused path
    does. The state is made as the optimizer makes it, so its own step and checkpoints read it."""
    decoupled = isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        if group.get("decoupled_weight_decay"):
            decoupled = True
        states = [optimizer.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.to_local().device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        steps = [state["step"] for state in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        kernel(_local(params), _local([p.grad for p in params]), _local([s["exp_avg"] for s in states]),
               _local([s["exp_avg_sq"] for s in states]),
               _local([s["max_exp_avg_sq"] for s in states]) if group["amsgrad"] else [],
               steps, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
               eps=group["eps"], amsgrad=group["amsgrad"], maximize=group["maximize"], grad_scale=None,
               found_inf=found_inf)
        if found_inf is not None:
            torch._foreach_sub_(steps, [found_inf] * len(steps))
