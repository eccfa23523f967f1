"""A sweep's state at a glance: runs per status, an ETA, and one row per run; with [eval], which runs
are scored."""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from distillscale.sweeps.compute import sweep_compute
from distillscale.evaluation.scores import EVAL_FILE, EvalRequest, record_mismatch
from distillscale.sweeps.runner import SweepLayout
from distillscale.sweeps.scoring import eval_request
from distillscale.sweeps.spec_sections import EVALUATED_KINDS
from distillscale.sweeps.store import RunStore, StoredRun

# A run's scoring under [eval]: its eval.json matches the [eval] (`EvalRequest.mismatch`); an [eval] job
# of the live `sweep run` scores it now; its eval.json does not (scores of another [eval]: other tasks, a
# limit, another task config, or data files changed since: the next `sweep run` scores it again); it
# completed and waits for its first scoring; or its last scoring failed (its logs/<run_id>.eval.log is
# there, no eval.json): the next `sweep run` retries it.
SCORING_STATES = ("scored", "scoring", "stale", "pending", "failed")


def runner_alive(sweep_dir: str | Path) -> bool:
    """Whether a `sweep run` is working on the sweep now: it holds an exclusive lock on runner.lock
    for as long as it runs, and the kernel drops the lock when the process dies, even by kill -9."""
    lock_path = SweepLayout(Path(sweep_dir)).lock_path
    try:
        fd = os.open(lock_path, os.O_RDONLY)  # read-only: never creates the lock file
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases our shared lock
    return False


def _device(device: str | None) -> str | None:
    """How a run's device reads: "GPU 1", "cpu", or None before it started."""
    return device if device in (None, "cpu") else f"GPU {device}"


def scoring_state(record: StoredRun, layout: SweepLayout, request: EvalRequest, scoring: bool = False) -> str | None:
    """One of SCORING_STATES for a completed run that [eval] scores (its kind in EVALUATED_KINDS),
    read from its files as the runner reads them (`request`: what [eval] asks of its eval.json;
    `scoring`: a live runner's [eval] job scores it now, its log being written); None for any other run."""
    if record.status != "completed" or record.kind not in EVALUATED_KINDS:
        return None
    path = layout.run_dir(record.id) / EVAL_FILE
    if path.is_file() and record_mismatch(path, request) is None:  # the runner does not score it again
        return "scored"
    if scoring:
        return "scoring"
    if path.is_file():
        return "stale"
    return "failed" if layout.eval_log_path(record.id).is_file() else "pending"


def sweep_status(sweep_dir: str | Path) -> dict[str, Any]:
    """Counts per status, `eta_seconds` (mean wall time of the completed runs x the runs left / the
    workers of the last `sweep run`; None before any run completed), `compute` (FLOPs spent and as
    separate runs, see compute.py) and a row per run. With [eval] in the sweep's spec.toml, each row's
    `scoring` (`scoring_state`) and their counts, `scoring` (every state, zero when none); without it
    neither key.

    Read-only. A run the store says is running while no `sweep run` is alive was interrupted (its
    worker died with the runner): it shows as `interrupted`, and the next `sweep run` resumes it."""
    alive = runner_alive(sweep_dir)
    with RunStore(sweep_dir, read_only=True, runner_alive=alive) as store:
        records = [record if alive or record.status != "running" else replace(record, status="interrupted")
                   for record in store.records()]
        counts = store.counts()
        workers = store.meta("workers", 1)
        devices = store.devices()
        scoring = store.scoring() if alive else set()  # a dead runner's jobs score nothing
        request = eval_request(SweepLayout(Path(sweep_dir)).spec_sections(), store)  # the latest `sweep run`'s
    layout = SweepLayout(Path(sweep_dir))
    evaluated = request is not None
    counts["interrupted"] = 0 if alive else counts["running"]
    counts["running"] -= counts["interrupted"]
    now = time.time()
    walls = [record.finished_at - record.started_at for record in records
             if record.status == "completed" and record.started_at and record.finished_at]
    left = counts["pending"] + counts["running"]
    eta = sum(walls) / len(walls) * left / workers if walls else None
    runs = []
    for record in records:
        result = record.result or {}
        if record.status == "running":
            wall = now - record.started_at
        elif record.started_at and record.finished_at:
            wall = record.finished_at - record.started_at
        else:
            wall = None
        runs.append({"run_id": record.id, "kind": record.kind, "status": record.status,
                     "non_embedding_params": record.config["non_embedding_params"],
                     "tokens": record.config["tokens"], "val_loss": result.get("val_loss"),
                     "attempts": record.attempts, "wall_seconds": wall, "error": record.error,
                     "device": _device(devices.get(record.id)), "epochs": result.get("epochs")})
        if evaluated:
            runs[-1]["scoring"] = scoring_state(record, layout, request, record.id in scoring)
    status = {"total": len(records), "counts": counts, "workers": workers,
              "eta_seconds": eta, "compute": sweep_compute(record.result for record in records).to_dict(),
              "runs": runs}
    if evaluated:
        status["scoring"] = {state: sum(run["scoring"] == state for run in runs) for state in SCORING_STATES}
    return status
