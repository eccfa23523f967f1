"""Sharded, resumable checkpoints of FSDP runs: torch.distributed.checkpoint (DCP).

Every rank writes its own shards of the weights and AdamW moments (nothing is gathered on one rank);
DCP's metadata maps each tensor's pieces to their place in the whole tensor, so a checkpoint written
by N ranks loads on M (1 included: a process without a process group reads all the pieces).

    state/sharded/step-000000200/   one checkpoint: DCP files (.metadata, __<rank>_0.distcp) and
                                    trainer.pt (scheduler, progress, RNG; written by rank 0)
    state/sharded/latest            the name of the last complete checkpoint

Atomic like `RunDirectory.save_state`: a checkpoint is written into a hidden temporary directory,
renamed into place once every rank has finished, and only then named in `latest` (itself replaced
atomically); older checkpoints are removed after that. A run killed at any moment resumes from what
`latest` names, which is always whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from distillscale.errors import UserError
from distillscale.io import atomic_write, atomic_write_text, unreadable
from distillscale.training.checkpoint import Progress
from distillscale.training.distributed import Distributed
from distillscale.training.student import StudentModel

LATEST = "latest"
TRAINER_FILE = "trainer.pt"


def save_sharded(state_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: LRScheduler, progress: Progress, group: Distributed) -> None:
    """Write this rank's shards of the training state (a collective: every rank calls it)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    name = f"step-{progress.step:09d}"
    staging, final = state_dir / f".{name}.tmp", state_dir / name
    if group.is_main:  # leftovers of a run killed while saving this step are incomplete: start over
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    group.barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    with _one_process_is_intended():
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=staging)
    group.barrier()  # every rank's shards are on disk
    if group.is_main:
        trainer = {"scheduler": scheduler.state_dict(), "progress": asdict(progress),
                   "rng": torch.get_rng_state()}
        atomic_write(staging / TRAINER_FILE, partial(_torch_save, trainer))
        shutil.rmtree(final, ignore_errors=True)  # an unnamed leftover of a killed run
        os.replace(staging, final)
        atomic_write_text(state_dir / LATEST, name + "\n")
        for old in state_dir.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    group.barrier()  # no rank goes on (or exits) before the checkpoint is named


def load_sharded(state_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: LRScheduler) -> Progress | None:
    """Restore the last complete checkpoint into this rank's shards, or None when there is none
    (a collective under a process group).

    Every rank ends the same way: when one rank cannot read its part (a damaged shard, a file its
    node does not see, another `latest` than the others), every rank raises that rank's error, so
    the job exits with it instead of the others going on into collectives that never complete."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    latest = state_dir / LATEST
    name = latest.read_text().strip() if latest.is_file() else None
    _agree("checkpoint", name, state_dir)
    if name is None:
        return None
    path = state_dir / name
    error = None
    try:
        model_state, optimizer_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        with _one_process_is_intended():
            dcp.load(state, checkpoint_id=path)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        trainer = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:
        error = str(unreadable("sharded training state", path, exc))
    except CheckpointException as exc:  # DCP's (a BaseException): every rank's failures, gathered
        error = str(unreadable("sharded training state", path, _first_failure(exc)))
    _raise_if_any(error)
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["rng"])
    return Progress(**trainer["progress"])


def _first_failure(exc: BaseException) -> BaseException:
    """The exception of the first rank that failed inside DCP, named with its rank, in place of DCP's
    CheckpointException (whose first line names only the ranks)."""
    failures = getattr(exc, "failures", None) or {}
    for rank, (error, _trace) in sorted(failures.items()):
        detail = str(error).strip().splitlines()
        return RuntimeError(f"on rank {rank}: {type(error).__name__}" + (f": {detail[0]}" if detail else ""))
    return exc


def _gathered(value: object) -> list[object]:
    """`value` of every rank (rank order); [value] without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def _agree(what: str, value: str | None, state_dir: Path) -> None:
    """Every rank sees the same `value`, or every rank raises (a collective)."""
    values = _gathered(value)
    if len(set(values)) > 1:
        seen = ", ".join(f"rank {rank}: {seen or 'none'}" for rank, seen in enumerate(values))
        raise UserError(f"the ranks see different {what}s in {state_dir} ({seen}): every node must see the "
                        f"same run directory (a shared file system)")


def _raise_if_any(error: str | None) -> None:
    """Raise the first failing rank's error on every rank (a collective)."""
    errors = _gathered(error)
    for rank, message in enumerate(errors):
        if message is not None:
            raise UserError(message if len(errors) == 1 else f"rank {rank}: {message}")


def save_full_model(model: StudentModel, directory: Path, group: Distributed) -> None:
    """model.safetensors + model_config.json of the whole model, as an unsharded run writes them: the
    full state dict is gathered to rank 0's CPU memory (a collective) and rank 0 writes it."""
    if not group.enabled:
        model.save(directory)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if group.is_main:
        # on CPU; load_state_dict copies, keeping tied weights tied
        whole = model.unsharded_copy()
        whole.load_state_dict(weights)
        whole.save(directory)


@contextlib.contextmanager
def _one_process_is_intended():
    """Without a process group DCP reads and writes every shard itself, and warns that it assumes so:
    for us that is the point (a run moving to or from one process), not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _torch_save(value: object, path: str) -> None:
    with open(path, "wb") as file:  # a file object: torch.save rejects the dot-names of temporary files
        torch.save(value, file)
