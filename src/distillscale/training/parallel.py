"""How a model trains on several processes: `TrainingModel` wraps it for DDP (the default) or shards
it with FSDP2 (`torch.distributed.fsdp.fully_shard`), for students and teachers alike.

Under `--parallel fsdp` every block of the model is its own FSDP unit: its parameters, gradients and
AdamW moments live 1/world_size on each rank, and a block's full weights exist only while it runs
(all-gathered before, freed after its forward and again after its backward). The root unit is a
`HiddenStates` module around the whole model and holds what is left: embedding, final norm and output head.

Why a root around the model rather than the model itself: objectives call `hidden_states(idx)` and
then apply `head` chunk by chunk *outside* any forward (the chunked KD loss). FSDP gathers parameters
in forward hooks, so `hidden_states` must be a module's forward; the root unit's parameters then stay
gathered after its forward (FSDP never frees the root's after forward, as backward needs them at once),
so the head's weights are whole when the loss calls it. Gradients of the head reach the root's
reduce-scatter in FSDP's end-of-backward callback, like every other root gradient.

One process (no process group) runs the plain model: there is nothing to shard, and its sharded
checkpoints are the same DCP directories, so a run can move between 1 and N ranks.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from distillscale.training.distributed import Distributed


class HiddenStates(nn.Module):
    """`model.hidden_states` as a module's forward, so DDP, FSDP (and torch.compile) can wrap the trunk,
    with the model's `head` beside it: what objectives, `evaluate` and teachers call.

    The loss then applies `head` chunk by chunk outside this forward; under DDP the head's gradients
    still reach the reducer because every parameter gets its gradient in the same backward; under FSDP
    see below.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.hidden_states(idx)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        return self(idx)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.head(h)


class TrainingModel:
    """What an objective calls: `hidden_states(idx)` through the (compiled; DDP-wrapped or FSDP-sharded)
    trunk and the plain `head`. `no_sync()` skips the gradient reduction on micro-batches before the last.

    Under FSDP the model's parameters are sharded in place when this is built, so build it before
    the optimizer (which must see the sharded parameters)."""

    def __init__(self, model: nn.Module, group: Distributed, compile: bool = False, parallel: str = "ddp",
                 bf16: bool = False, activation_checkpointing: bool = False):
        self.model = model
        self.sharded = parallel == "fsdp"
        if self.sharded:
            trunk: nn.Module = shard(model, group, bf16=bf16, activation_checkpointing=activation_checkpointing)
            self.evaluated: nn.Module = trunk  # FSDP gathers parameters in the trunk's forward only
        else:
            trunk = HiddenStates(model)
            self.evaluated = model
        self._unwrapped_trunk = trunk
        if compile:
            trunk = torch.compile(trunk)
        if group.enabled and not self.sharded:
            trunk = nn.parallel.DistributedDataParallel(
                trunk, device_ids=[group.device.index] if group.device.type == "cuda" else None)
        self.trunk = trunk
        self.head = model.head

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        return self.trunk(idx)

    @contextlib.contextmanager
    def no_sync(self):
        if isinstance(self.trunk, nn.parallel.DistributedDataParallel):
            with self.trunk.no_sync():
                yield
        elif self.sharded:
            set_gradient_sync(self._unwrapped_trunk, False)
            try:
                yield
            finally:
                set_gradient_sync(self._unwrapped_trunk, True)
        else:
            yield


def blocks_of(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: the `nn.ModuleList` holding the most parameters (our `blocks`, a Hugging
    Face model's `layers`/`h`), whatever the architecture calls it."""
    lists = [module for module in model.modules() if isinstance(module, nn.ModuleList) and len(module)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of blocks to shard")
    return max(lists, key=lambda blocks: sum(p.numel() for p in blocks.parameters()))


def shard(model: nn.Module, group: Distributed, *, bf16: bool = False,
          activation_checkpointing: bool = False) -> HiddenStates:
    """Wrap `model` in `HiddenStates` and shard it over the ranks of `group`, one FSDP unit per block.

    Every rank must hold the same initial weights (same seed), as for DDP. `bf16` (CUDA only): blocks
    compute in bf16 with fp32 gradient reduction and fp32 master weights and optimizer state.
    Activation checkpointing recomputes each block's forward in backward. One process: the plain trunk.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    trunk = HiddenStates(model)
    blocks = blocks_of(model)
    if activation_checkpointing:
        for block in blocks:
            checkpoint_block(block)
    if not group.enabled:
        return trunk
    options = {}
    if bf16 and group.device.type == "cuda":  # bf16 reductions on gloo/CPU are neither needed nor exact
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, **options)
    fully_shard(trunk, **options)
    return trunk


def checkpoint_block(block: nn.Module) -> None:
    """Recompute `block`'s forward in the backward pass: its forward becomes a non-reentrant
    `torch.utils.checkpoint` of itself (the module, its hooks and its parameter names unchanged).

    Not the hook-based `torch.distributed._composable.checkpoint`: under torch.compile the compiled
    forward saved other tensors than its eager recomputation made, and the first backward died with
    "CheckpointError: Recomputed values ... have different metadata". A checkpoint *function* is
    traced by torch.compile as one region, recomputed the way it was compiled.
    """
    forward = block.forward

    def checkpointed(*args, **kwargs):
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed


def set_gradient_sync(trunk: nn.Module, enabled: bool) -> None:
    """FSDP's `no_sync`: skip the reduce-scatter on micro-batches before the last (gradients then
    accumulate unsharded on each rank until the last micro-batch reduces them)."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(trunk, FSDPModule):
        trunk.set_requires_gradient_sync(enabled)


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` (or a module in it) is sharded with FSDP, so its forward is a collective."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor (e.g. the gradient norm over sharded gradients) as the whole tensor, on every rank."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


class ShardedTeacher(HiddenStates):
    """A frozen teacher sharded block by block over the ranks (inference only: no gradients, no
    optimizer state), seen through the teacher interface: `hidden_states`, `head`, `info`."""

    def __init__(self, teacher: nn.Module):
        super().__init__(teacher)
        self.info = teacher.info

    def train(self, mode: bool = True) -> "ShardedTeacher":
        return super().train(False)  # a teacher never leaves eval mode


def shard_teacher(teacher: nn.Module, group: Distributed) -> nn.Module:
    """The teacher sharded over `group` (blocks freed after their forward), or itself on one process."""
    if not group.enabled:
        return teacher
    from torch.distributed.fsdp import fully_shard

    sharded = ShardedTeacher(teacher)
    for block in blocks_of(teacher):
        fully_shard(block)
    fully_shard(sharded)
    return sharded.eval()
