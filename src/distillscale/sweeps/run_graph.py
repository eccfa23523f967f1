"""Runs that wait for other runs: each run of a graph starts once every run it needs has completed, a
few at a time on the local executor (long-lived worker processes, `executors.LocalExecutor`).

A run is a key and the keys it needs. The caller says whether a run has completed (e.g. its run
directory holds a result.json), and what starting one means: the `Job` to run, or a line saying it
completed in place (a link to another run, a step found not to be needed). What a run starts with is
decided only when it starts, so a run can take what the runs it needs found (a grid's best value).
A run that completed before is never started again; one whose job fails, or that cannot be started,
is failed, and every run that needs it, directly or not, is blocked. Runs start in the order given
among those ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace

from distillscale.sweeps.executors import Job, LocalExecutor

COMPLETED, FAILED, BLOCKED = "completed", "failed", "blocked"


@dataclass(frozen=True)
class GraphRun:
    """One run of a graph: its key and the keys of the runs that must complete before it starts."""

    key: str
    needs: tuple[str, ...] = ()


def run_graph(runs: Sequence[GraphRun], completed: Callable[[str], bool], start: Callable[[str], Job | str],
              workers: int, progress: Callable[[str], None] = lambda message: None,
              finished: Callable[[str], str] = lambda key: "") -> dict[str, str]:
    """Run every run of `runs` that has not `completed`, `workers` at a time, each once the runs it needs
    have completed; `start(key)` gives its job (the slot is filled in here) or a line when it completed
    in place. `finished(key)` adds to the line said when a run completes (e.g. its loss). Returns each
    run's status: completed (now or before), failed, or blocked (a run it needs did not complete)."""
    status = {run.key: COMPLETED for run in runs if completed(run.key)}
    pending = [run for run in runs if run.key not in status]
    executor, active, free = LocalExecutor(workers), {}, list(range(workers))
    started = time.perf_counter()

    def tally() -> str:
        done = sum(value == COMPLETED for value in status.values())
        return f"({done}/{len(runs)} done, {time.perf_counter() - started:.0f} s)"

    try:
        while pending or active:
            for run in [run for run in pending if any(status.get(n) in (FAILED, BLOCKED) for n in run.needs)]:
                pending.remove(run)
                status[run.key] = BLOCKED
                progress(f"{run.key} blocked: a run it needs did not complete")
            for run in [run for run in pending if all(status.get(n) == COMPLETED for n in run.needs)]:
                if not free:
                    break
                pending.remove(run)
                try:
                    job = start(run.key)
                except Exception as error:  # noqa: BLE001 - one run that cannot start must not stop the others
                    status[run.key] = FAILED
                    progress(f"{run.key} failed: it could not start ({type(error).__name__}: {error}) {tally()}")
                    continue
                if isinstance(job, str):
                    status[run.key] = COMPLETED
                    progress(f"{run.key}: {job}")
                    continue
                slot = free.pop(0)
                active[executor.submit(replace(job, slot=slot))] = (run.key, slot, job)
            if not active:
                if pending and any(all(status.get(n) == COMPLETED for n in run.needs) for run in pending):
                    continue  # runs completed in place made others ready
                break
            done, _ = wait(list(active), return_when=FIRST_COMPLETED)
            for future in done:
                key, slot, job = active.pop(future)
                free.append(slot)
                status[key] = COMPLETED if _exited_0(future) and completed(key) else FAILED
                said = finished(key) if status[key] == COMPLETED else f": see {job.log_path}"
                progress(f"{key} {status[key]}{said} {tally()}")
    finally:
        executor.shutdown()
    for run in pending:  # needs that name no run of the graph (or wait on each other): never ready
        status[run.key] = BLOCKED
        progress(f"{run.key} blocked: it needs {', '.join(n for n in run.needs if n not in status)}, "
                 "which never completed")
    return status


def _exited_0(future: Future) -> bool:
    return future.exception() is None and future.result() == 0
