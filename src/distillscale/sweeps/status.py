"""A sweep's state at a glance: runs per status, an ETA, and one row per run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distillscale.sweeps.store import RunStore


def sweep_status(sweep_dir: str | Path) -> dict[str, Any]:
    """Counts per status, `eta_seconds` (mean wall time of the completed runs x the runs left / the
    workers of the last `sweep run`; None before any run completed) and a row per run."""
    with RunStore(sweep_dir) as store:
        records = store.records()
        counts = store.counts()
        workers = store.meta("workers", 1)
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
                     "attempts": record.attempts, "wall_seconds": wall, "error": record.error})
    return {"total": len(records), "counts": counts, "workers": workers,
            "eta_seconds": eta, "runs": runs}
