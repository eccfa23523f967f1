"""Where a sweep's runs execute: local subprocesses, or Slurm jobs submitted through submitit.

Both run the same job, `run_logged(job)`: the run's `distillscale train|distill` command as a child
process with its output in a log file, so a crash of one run never touches the runner or the store.
An executor's `submit(job)` returns a `concurrent.futures.Future` of the exit status.

A local run's process dies with its runner: it stays in the runner's process group (Ctrl-C stops
both), and the runner names itself in `DISTILLSCALE_RUNNER_PID`, on which the run asks Linux to
SIGKILL it when the runner dies, whatever kills the runner (`die_with_runner`, PR_SET_PDEATHSIG).
A run left training by a dead runner would meet its own relaunch in one run directory; the run
directory's lock (run_dir.py) refuses such a second writer anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Job:
    """A command line, the environment it adds (e.g. OMP_NUM_THREADS), and the log file of its output."""

    argv: tuple[str, ...]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)


RUNNER_PID_ENV = "DISTILLSCALE_RUNNER_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_runner() -> None:
    """In a run launched by a local sweep (RUNNER_PID_ENV set): have the kernel SIGKILL this process
    when the runner dies; exit at once if it already has (this process then has another parent).
    Nothing elsewhere, or where prctl is missing (not Linux): the process group still carries
    Ctrl-C, and the run directory's lock still refuses a second writer."""
    runner = os.environ.pop(RUNNER_PID_ENV, None)  # popped: the run's own children are not ours
    if runner is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != runner:  # the runner died before prctl: nobody would signal us
        os._exit(1)


def run_logged(job: Job) -> int:
    """Run `job` to its end with stdout and stderr appended to its log; return the exit status."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as log:
        return subprocess.run(job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env={**os.environ, **job.env}, check=False).returncode


class Executor(Protocol):
    workers: int

    def submit(self, job: Job) -> Future[int]: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Up to `workers` runs at once, each a subprocess of this machine."""

    def __init__(self, workers: int):
        self.workers = workers
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="sweep-run")

    def submit(self, job: Job) -> Future[int]:
        # The run dies with this process (die_with_runner); it stays in this process group by default.
        job = Job(job.argv, job.log_path, {**job.env, RUNNER_PID_ENV: str(os.getpid())})
        return self._threads.submit(run_logged, job)

    def shutdown(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)


class SlurmExecutor:
    """Each run a Slurm job (submitit), at most `workers` queued or running at once.

    `cluster=None` lets submitit pick Slurm when `sbatch` is available; `cluster="local"` runs the
    jobs as local processes through the same submitit machinery (how the tests check this path).
    Job scripts and submitit's own logs go to `folder`.
    """

    def __init__(self, workers: int, folder: Path, *, cluster: str | None = None,
                 partition: str | None = None, timeout_min: int = 24 * 60, cpus_per_task: int = 1,
                 gpus_per_node: int = 0):
        try:
            import submitit
        except ImportError:
            from distillscale.errors import UserError

            raise UserError("--executor slurm needs submitit: pip install 'distillscale[slurm]'") from None
        self.workers = workers
        self._submitit = submitit.AutoExecutor(folder=folder, cluster=cluster)
        parameters = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task, "name": "distillscale-sweep"}
        if gpus_per_node:
            parameters["gpus_per_node"] = gpus_per_node
        if partition:
            parameters["slurm_partition"] = partition
        self._submitit.update_parameters(**parameters)
        self._jobs: list = []
        self._waiters = ThreadPoolExecutor(workers, thread_name_prefix="sweep-slurm")

    def submit(self, job: Job) -> Future[int]:
        return self._waiters.submit(self._submit_and_wait, job)

    def _submit_and_wait(self, job: Job) -> int:
        slurm_job = self._submitit.submit(run_logged, job)
        self._jobs.append(slurm_job)
        return slurm_job.result()

    def shutdown(self) -> None:
        """Cancel jobs still queued or running (the runner is stopping), then wait for the waiters."""
        for slurm_job in self._jobs:
            if not slurm_job.done():
                slurm_job.cancel(check=False)
        self._waiters.shutdown(wait=True, cancel_futures=True)
