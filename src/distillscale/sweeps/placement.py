"""Which GPU each run of a local sweep uses: `place_runs` turns the visible GPUs and the `--gpus`,
`--runs-per-gpu` and `--workers` choices into one device per worker slot.

A sweep runs up to `workers` runs at once; each run takes a free slot and is launched with
`CUDA_VISIBLE_DEVICES` set to that slot's GPU, so inside the run the GPU is `cuda:0` and no two
runs of one slot ever overlap. Slot i gets GPU i mod (number of GPUs): with 2 GPUs and 4 workers,
each GPU runs 2 runs at a time. A slot whose device is None runs on the CPU (no GPU visible, or
`--gpus none`): the run is launched with `CUDA_VISIBLE_DEVICES=""` and `DISTILLSCALE_DEVICE=cpu`, so
that `--device auto` inside it cannot pick a GPU the sweep did not give it (the store records "cpu").

The GPUs visible to this process are those CUDA itself counts (`torch.cuda.device_count()`, 0 when
CUDA is not usable), named as `CUDA_VISIBLE_DEVICES` names them when it is set, read by CUDA's own
rule (`cuda_visible_devices`): "-1" hides every GPU, "0,0" is no GPU, "0,x,1" is GPU 0 alone.
`DISTILLSCALE_VISIBLE_GPUS` (e.g. "0,1", or "" for none) stands for both, for tests on machines
without a GPU. Nothing here imports torch until a sweep asks which GPUs exist.

A slot with a GPU also sets `DISTILLSCALE_DEVICE=cuda` for its run, so that a run given a GPU
that it cannot use stops with one line instead of training on the CPU (`resolve_device`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from distillscale.errors import ParameterError

VISIBLE_GPUS_ENV = "DISTILLSCALE_VISIBLE_GPUS"  # a stub of the GPU list (tests, CPU machines)
CUDA_ENV = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class Placement:
    """The device of each worker slot (None: CPU) and the GPUs they share; with `scheduler`, a cluster's
    scheduler (Slurm) gives each job its devices, and a slot adds nothing to a run's environment."""

    slots: tuple[str | None, ...]
    gpus: tuple[str, ...]
    scheduler: bool = False

    @property
    def workers(self) -> int:
        return len(self.slots)

    def env(self, slot: int) -> dict[str, str]:
        """What a run launched in `slot` adds to its environment: its GPU and `cuda`, or no GPU and `cpu`."""
        from distillscale.training.distributed import DEVICE_ENV  # with torch: only when a run is launched

        device = self.slots[slot]
        if self.scheduler:
            return {}
        return {CUDA_ENV: "", DEVICE_ENV: "cpu"} if device is None else {CUDA_ENV: device, DEVICE_ENV: "cuda"}

    def describe(self) -> str:
        if not self.gpus:
            return "on the CPU"
        per_gpu = -(-self.workers // len(self.gpus))
        return (f"on GPU{'s' if len(self.gpus) > 1 else ''} {','.join(self.gpus)} "
                f"({per_gpu} run{'s' if per_gpu > 1 else ''} per GPU)")


def choose_slot(placement: Placement, free: list[int], busy: list[int]) -> int:
    """The free worker slot a ready run takes: the one on the device running the fewest runs now
    (`busy`: the slots running one), the lowest-numbered among equals, so the runs spread over the
    GPUs. The runner and the dry run (dry_run.py) both place runs by it."""
    running = [placement.slots[slot] for slot in busy]
    return min(free, key=lambda slot: (running.count(placement.slots[slot]), slot))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA counts them, named as `CUDA_VISIBLE_DEVICES` names
    them; [] when CUDA is not usable here, whatever CUDA_VISIBLE_DEVICES says."""
    if VISIBLE_GPUS_ENV in os.environ:
        return cuda_visible_devices(os.environ[VISIBLE_GPUS_ENV])
    import torch  # only here: `--help` and CPU-only specs never pay for it

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if CUDA_ENV in os.environ:
        return cuda_visible_devices(os.environ[CUDA_ENV])[:count]
    return [str(index) for index in range(count)]


def cuda_visible_devices(value: str) -> list[str]:
    """The GPUs a `CUDA_VISIBLE_DEVICES` value makes visible, by CUDA's rule (as PyTorch's own
    `torch.cuda._parse_visible_devices` reads it): the entries in order up to the first that is not
    a GPU (a negative or empty entry, or one not starting with a digit); a number may be followed by
    other characters, which are ignored ("1gpu" is GPU 1); an entry repeated makes no GPU visible
    at all; a list of UUIDs ("GPU-...", "MIG-...") is read the same way, without the numbers."""
    entries = value.split(",")
    if value.startswith(("GPU-", "MIG-")):
        prefix = value[:4]
        names: list[str] = []
        for entry in entries:
            if entry in names:
                return []
            if not entry.startswith(prefix):
                break
            names.append(entry)
        return names
    ordinals: list[int] = []
    for entry in entries:
        match = re.match(r"[+-]?\d+", entry.strip())
        ordinal = int(match.group()) if match else -1
        if ordinal in ordinals:
            return []
        if ordinal < 0:
            break
        ordinals.append(ordinal)
    return [str(ordinal) for ordinal in ordinals]


def parse_gpus(value: str | None, visible: list[str]) -> list[str]:
    """`--gpus`: None or "all" (every visible GPU), "none", or a comma-separated list of visible GPUs."""
    if value is None or value.strip().lower() == "all":
        return list(visible)
    if value.strip().lower() == "none":
        return []
    chosen = _split(value)
    if not chosen:
        raise ParameterError("gpus", "{} {value!r} names no GPU: give all, none or ids such as 0,1", value=value)
    repeated = sorted({gpu for gpu in chosen if chosen.count(gpu) > 1})
    if repeated:
        raise ParameterError("gpus", "{} lists GPU {gpu} twice: to run several runs on one GPU use "
                                     "--runs-per-gpu", gpu=repeated[0])
    missing = [gpu for gpu in chosen if gpu not in visible]
    if missing:
        seen = ",".join(visible) if visible else "none"
        raise ParameterError("gpus", "{}: GPU {gpu} is not visible to this process (visible: {seen}): "
                                     "choose among them, or use all or none", gpu=missing[0], seen=seen)
    return chosen


def place_runs(visible: list[str], gpus: str | None = None, runs_per_gpu: int | None = None,
               workers: int | None = None, cpu_workers: int = 1) -> Placement:
    """The worker slots of a local sweep.

    With GPUs: `runs_per_gpu` runs share each GPU (default 1), so `workers` defaults to GPUs x
    runs_per_gpu; a `workers` given alone spreads over the GPUs round robin (more workers than GPUs
    share them); given with `runs_per_gpu`, it may not exceed GPUs x runs_per_gpu. Without GPUs,
    `workers` (default `cpu_workers`) runs share the CPU and `runs_per_gpu` is refused.
    """
    if runs_per_gpu is not None and runs_per_gpu < 1:
        raise ParameterError("runs_per_gpu", f"{{}} must be at least 1, got {runs_per_gpu}")
    if workers is not None and workers < 1:
        raise ParameterError("workers", f"{{}} must be at least 1, got {workers}")
    chosen = parse_gpus(gpus, visible)
    if not chosen:
        if runs_per_gpu is not None:
            chose_none = gpus is not None and gpus.strip().lower() == "none"
            why = "none were chosen" if chose_none or visible else "no GPU is visible"
            raise ParameterError("runs_per_gpu", f"{{}} needs GPUs, but {why}: leave it out (the runs share "
                                                 f"the CPU, as many at once as the workers)")
        return Placement(slots=(None,) * (workers or cpu_workers), gpus=())
    if workers is None:
        workers = len(chosen) * (runs_per_gpu or 1)
    elif runs_per_gpu is not None and workers > len(chosen) * runs_per_gpu:
        raise ParameterError(("workers", "runs_per_gpu"),
                             f"{{}} {workers} exceeds {len(chosen)} GPU{'s' if len(chosen) > 1 else ''} x "
                             f"{{}} {runs_per_gpu}: raise --runs-per-gpu or lower --workers")
    return Placement(slots=tuple(chosen[slot % len(chosen)] for slot in range(workers)), gpus=tuple(chosen))


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
