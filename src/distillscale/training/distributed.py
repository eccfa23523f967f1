"""Devices and data-parallel training under `torchrun`.

One process per device. `torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK; without them the run is a
single process. The backend is NCCL on CUDA and gloo on CPU. Rank 0 alone writes files (but under
`--parallel fsdp` every rank writes its checkpoint shards: sharded_checkpoint.py). How the model is
wrapped for DDP (the default) or sharded with FSDP is parallel.py's `TrainingModel`.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from distillscale.errors import UserError


# Where `--device auto` runs when this is set ("cpu" or "cuda"): e.g. DISTILLSCALE_DEVICE=cpu keeps a
# GPU machine's runs (and the test suite, whose conftest sets it) on the CPU, whose results are exact.
DEVICE_ENV = "DISTILLSCALE_DEVICE"


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when available (unless DISTILLSCALE_DEVICE says cpu or cuda); `cuda` without
    a GPU is a clear error."""
    from_env = choice == "auto" and bool(os.environ.get(DEVICE_ENV))
    if from_env:
        choice = os.environ[DEVICE_ENV].strip().lower()
        if choice not in ("cpu", "cuda"):
            raise UserError(f"{DEVICE_ENV}={os.environ[DEVICE_ENV]!r} is not a device: set it to cpu or cuda, "
                            f"or unset it to let --device auto choose")
    if choice == "cuda" and not torch.cuda.is_available():
        if from_env:  # e.g. a sweep gave this run a GPU (placement.py): training on the CPU would be silent
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            given = f"GPU {visible} (CUDA_VISIBLE_DEVICES)" if visible is not None else "a GPU"
            raise UserError(f"this run was given {given} with {DEVICE_ENV}=cuda, but CUDA cannot use it "
                            f"(torch.cuda.is_available() is False): check the driver and the GPU "
                            f"(nvidia-smi), or run on the CPU (sweep run --gpus none)")
        raise UserError("--device cuda was asked for but no CUDA GPU is available: use --device cpu or auto")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def check_batch_size(self, batch_size: int) -> None:
        """The global batch is split into equal slices, one per process."""
        if batch_size % self.world_size:
            raise UserError(f"--batch-size {batch_size} must be a multiple of the number of "
                            f"processes ({self.world_size}): each process takes an equal slice")

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes, on the input's device (the input is not modified)."""
        if not self.enabled:
            return tensor
        total = tensor.to(self.device, copy=True)  # NCCL reduces CUDA tensors only
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.to(tensor.device)

    def main_says(self, flag: bool) -> bool:
        """The main process's `flag`, on every process (what the others pass is ignored)."""
        if not self.enabled:
            return flag
        said = torch.tensor([1.0 if flag and self.is_main else 0.0])
        return bool(self.sum(said).item() > 0)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum(tensor) / self.world_size

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device_choice: str) -> Distributed:
    """Join the process group when launched by `torchrun`, and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=resolve_device(device_choice))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return Distributed(rank=dist.get_rank(), world_size=world_size, local_rank=local_rank, device=device)
