"""Where a sweep's runs execute: local subprocesses, or Slurm jobs submitted through submitit.

A job is a run's `distillscale train|distill` command, its output appended to a log file, in a child
process, so a crash of one run never touches the runner or the store. An executor's `submit(job)`
returns a `concurrent.futures.Future` of the exit status.

A Slurm job runs `run_logged(job)`: one process per run. The local executor keeps one long-lived
worker process per worker slot (`distillscale --sweep-worker`, `serve_jobs`) that runs job after job:
imports, CUDA initialisation and the corpus walk are paid once per slot instead of once per run, which
for a WSD sweep's cooldown forks (a few seconds of training each) was most of their time. A run in a
worker computes what it computes in a process of its own (tests/sweeps/test_worker.py): each run sets its
own seeds and deterministic mode, and torch.compile starts each run from an empty dynamo cache
(`cli._worker_run`; Inductor's caches keep that compile warm). A worker whose run failed is replaced
by a fresh process before the next run.

A local run's process dies with its runner: it stays in the runner's process group (Ctrl-C stops
both), and the runner names itself in `DISTILLSCALE_RUNNER_PID`, on which the run asks Linux to
SIGKILL it when the runner dies, whatever kills the runner (`die_with_runner`, PR_SET_PDEATHSIG).
A run left training by a dead runner would meet its own relaunch in one run directory; the run
directory's lock (run_dir.py) refuses such a second writer anyway.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Protocol


@dataclass(frozen=True)
class Job:
    """A `distillscale` command (its arguments), the log file of its output, the environment it adds
    (e.g. OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES), and the worker slot that runs it (local executor)."""

    args: tuple[str, ...]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    slot: int = 0

    @property
    def argv(self) -> tuple[str, ...]:
        """The command line of the job run as a process of its own."""
        return (sys.executable, "-m", "distillscale.cli", *self.args)


TIMED_OUT = 124  # the exit status of a run stopped at its time limit (as coreutils' `timeout`)
WORKER_COMMAND = "--sweep-worker"  # `distillscale --sweep-worker LOG_DIR` runs `serve_jobs` (cli.py)


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


def run_logged(job: Job, timeout: float | None = None) -> int:
    """Run `job` to its end (or `timeout` seconds: then TIMED_OUT) with stdout and stderr appended
    to its log; return the exit status."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as log:
        try:
            return subprocess.run(job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, **job.env}, check=False, timeout=timeout).returncode
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            pass
    return _timed_out(job, timeout)


def _timed_out(job: Job, timeout: float | None) -> int:
    """Say in the run's log (whose last line the sweep shows) that it was stopped at its limit."""
    with open(job.log_path, "a", encoding="utf-8") as log:
        log.write(f"\ndistillscale: stopped after {timeout:g} s, the sweep's --run-timeout: its last checkpoint "
                  f"is kept; run the sweep again with a longer --run-timeout to resume it\n")
    return TIMED_OUT


def serve_jobs(run_command: Callable[[list[str]], int]) -> None:
    """A local sweep's worker process: read jobs from stdin, one JSON line each ({"args": [...],
    "log_path": ...}); run each with `run_command` (the CLI's `main`) in this process, its stdout and
    stderr appended to its log as a process of its own would; answer its exit status on stdout, one
    JSON line ({"status": N}). Ends at the end of stdin, or after a job that did not exit 0: a failed
    run may leave state behind, so the executor starts a fresh worker for the next one."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # a run reads no input, as under run_logged (stdin=DEVNULL)
    os.dup2(devnull, 1)  # the protocol's channel is `replies` alone
    os.close(devnull)
    try:
        for line in requests:
            request = json.loads(line)
            status = _run_in_this_process(run_command, request["args"], Path(request["log_path"]))
            replies.write(json.dumps({"status": status}) + "\n")
            replies.flush()
            if status != 0:
                return
    except KeyboardInterrupt:  # Ctrl-C between runs: the runner stops too (one process group)
        return


def _run_in_this_process(run_command: Callable[[list[str]], int], args: list[str], log_path: Path) -> int:
    """Run one command with file descriptors 1 and 2 on its log; its exit status (1 after an
    uncaught exception, whose traceback goes to the log, as Python's own exit would)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                return run_command(args)
            except Exception:
                traceback.print_exc()
                return 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        for descriptor, original in zip((1, 2), saved):
            os.dup2(original, descriptor)
            os.close(original)


_worker_numbers = itertools.count()


class _Worker:
    """One `distillscale --sweep-worker` process (serve_jobs) and the environment it was started with.

    Its own output outside any run (start-up errors, anything printed between runs) goes to a log of
    its own, `worker-<runner pid>-<n>.stderr` beside the runs' logs (removed when empty), not into some
    run's log; when the worker dies during a run, what it wrote meanwhile is appended to that run's log,
    whose last line the sweep shows."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.stderr_path = log_path.parent / f"worker-{os.getpid()}-{next(_worker_numbers)}.stderr"
        # The sweep's log directory on its command line says whose worker it is (ps, /proc).
        with open(self.stderr_path, "ab") as log:
            self.process = subprocess.Popen(
                (sys.executable, "-m", "distillscale.cli", WORKER_COMMAND, str(log_path.parent)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **env},
                text=True, encoding="utf-8")
        self._requests: IO[str] = self.process.stdin  # type: ignore[assignment]
        self._replies: IO[str] = self.process.stdout  # type: ignore[assignment]
        self._shown = 0  # the worker's own output up to here came before a run it answered

    def run(self, job: Job, timeout: float | None = None) -> int | None:
        """The job's exit status (TIMED_OUT when it ran `timeout` seconds: the worker is killed), or
        None when the worker ended without answering (it crashed, was killed, or could not start)."""
        status = self._run(job, timeout)
        if status is None:
            self.process.wait()
            self._copy_own_output(job.log_path, self._shown)
        elif self.stderr_path.exists():
            self._shown = self.stderr_path.stat().st_size
        return status

    def _copy_own_output(self, log_path: Path, start: int) -> None:
        """Append what the worker itself wrote since `start` (e.g. why it could not start) to a run's log."""
        try:
            with open(self.stderr_path, "rb") as own:
                own.seek(start)
                written = own.read()
        except OSError:
            return
        if written:
            with open(log_path, "ab") as log:
                log.write(written)

    def _run(self, job: Job, timeout: float | None) -> int | None:
        try:
            self._requests.write(json.dumps({"args": list(job.args), "log_path": str(job.log_path)}) + "\n")
            self._requests.flush()
        except (BrokenPipeError, OSError):
            return None
        timer = threading.Timer(timeout, self.process.kill) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        line = self._replies.readline()
        if timer is not None:
            timer.cancel()
            if not line and timer.finished.is_set() and self.process.wait() < 0:
                return _timed_out(job, timeout)
        return json.loads(line)["status"] if line else None

    def close(self) -> int:
        """End the worker (end of its input) and return its exit status."""
        try:
            self._requests.close()
        except OSError:
            pass
        status = self.process.wait()
        self._replies.close()
        try:
            if self.stderr_path.stat().st_size == 0:
                self.stderr_path.unlink()
        except OSError:
            pass
        return status


class Executor(Protocol):
    workers: int

    def submit(self, job: Job) -> Future[int]: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Up to `workers` runs at once on this machine, each in the long-lived worker process of its
    slot (`reuse_processes`, the default), or each a process of its own (`reuse_processes=False`)."""

    def __init__(self, workers: int, reuse_processes: bool = True, run_timeout: float | None = None):
        self.workers = workers
        self.reuse_processes = reuse_processes
        self.run_timeout = run_timeout  # seconds a run may take (None: no limit); then TIMED_OUT
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="sweep-run")
        self._idle: dict[int, _Worker] = {}  # slot -> its worker, while it runs nothing
        self._lock = threading.Lock()
        self._closing = False  # shutdown() began: a worker that finishes its run ends

    def submit(self, job: Job) -> Future[int]:
        # The run dies with this process (die_with_runner); it stays in this process group by default.
        job = replace(job, env={**job.env, RUNNER_PID_ENV: str(os.getpid())})
        if self.reuse_processes:
            return self._threads.submit(self._run_in_worker, job)
        return self._threads.submit(run_logged, job, self.run_timeout)

    def _run_in_worker(self, job: Job) -> int:
        """Run `job` in its slot's worker, started (again) when there is none, it ended, or it was
        started with another environment."""
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            worker = self._idle.pop(job.slot, None)
        if worker is not None and (worker.env != job.env or worker.process.poll() is not None):
            worker.close()
            worker = None
        if worker is None:
            worker = _Worker(job.env, job.log_path)
        status = worker.run(job, self.run_timeout)
        if status is None:  # died during the run: its exit status (e.g. -9 when killed), never 0
            return worker.close() or 1
        if status != 0:  # it ends after a failed run (serve_jobs), or was killed at its time limit
            worker.close()
            return status
        with self._lock:
            if not self._closing:
                self._idle[job.slot], worker = worker, None
        if worker is not None:
            worker.close()
        return status

    def shutdown(self) -> None:
        """Wait for the runs in flight, and end every worker. Each worker ends before the thread that
        started it: the kernel kills a worker whose starting thread exits (PR_SET_PDEATHSIG)."""
        with self._lock:
            self._closing = True
            idle, self._idle = list(self._idle.values()), {}
        for worker in idle:
            worker.close()
        self._threads.shutdown(wait=True, cancel_futures=True)


class SlurmExecutor:
    """Each run a Slurm job (submitit), at most `workers` queued or running at once.

    `cluster=None` lets submitit pick Slurm when `sbatch` is available; `cluster="local"` runs the
    jobs as local processes through the same submitit machinery (how the tests check this path).
    Job scripts and submitit's own logs go to `folder`.

    A job outlives the runner that submitted it (the cluster runs it): `job_ids` names each job
    submitted (by its log path), for the runner to record, and `adopt(job_id)` waits on a job an earlier
    runner submitted, when it is still queued or running, instead of submitting the run again.
    """

    places_devices = True  # Slurm gives each job its GPUs (--slurm-gpus): the runner adds no device to a job

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
        self._folder = Path(folder)
        self._jobs: list = []
        self.job_ids: dict[Path, str] = {}  # each submitted job's id, by its log path
        self._waiters = ThreadPoolExecutor(workers, thread_name_prefix="sweep-slurm")

    def submit(self, job: Job) -> Future[int]:
        try:
            slurm_job = self._submitit.submit(run_logged, job)
        except Exception as exc:  # e.g. sbatch refused it: the run fails with the reason
            failed: Future[int] = Future()
            failed.set_exception(exc)
            return failed
        self._jobs.append(slurm_job)
        self.job_ids[job.log_path] = str(slurm_job.job_id)
        return self._waiters.submit(slurm_job.result)

    def adopt(self, job_id: str) -> Future[int] | None:
        """A Future of the job `job_id` that an earlier runner submitted, when it is still queued or
        running; None when it ended (or is unknown here): then its run is submitted again."""
        import submitit

        job_class = submitit.LocalJob if self._submitit.cluster == "local" else submitit.SlurmJob
        slurm_job = job_class(folder=self._folder, job_id=str(job_id))
        try:
            if slurm_job.done(force_check=True):
                return None
        except Exception:  # the cluster cannot say (e.g. sacct unavailable): not adopted
            return None
        self._jobs.append(slurm_job)
        return self._waiters.submit(slurm_job.result)

    def shutdown(self) -> None:
        """Cancel jobs still queued or running (the runner is stopping), then wait for the waiters."""
        for slurm_job in self._jobs:
            if not slurm_job.done():
                slurm_job.cancel(check=False)
        self._waiters.shutdown(wait=True, cancel_futures=True)
