"""The runner's live display: runs finished out of the total, and a line per run in flight with its
training step, read from the run directory the child process writes (config.json, metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from distillscale.console import console
from distillscale.errors import UserError
from distillscale.sweeps.store import FINISHED
from distillscale.training.records import RunRecord

_TAIL_BYTES = 4096  # enough for the last metrics line


class SweepProgress:
    def __init__(self, total_runs: int, enabled: bool = True):
        self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[detail]}", markup=False), TimeElapsedColumn(),
                                  console=console, disable=not enabled)
        self._overall = self._progress.add_task("runs", total=total_runs, detail="")
        self._runs: dict[str, TaskID] = {}
        self.enabled = enabled

    def __enter__(self) -> "SweepProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def log(self, message: "str | Text") -> None:
        if self.enabled:
            self._progress.console.print(message, highlight=False, soft_wrap=True)

    def update(self, statuses: dict[str, str], running: dict[str, Path]) -> None:
        """`statuses`: every run's status; `running`: the run directory of each run in flight."""
        done = sum(status in FINISHED + ("blocked",) for status in statuses.values())
        counts = {name: sum(status == name for status in statuses.values())
                  for name in ("failed", "diverged", "blocked")}
        trouble = ", ".join(f"{count} {name}" for name, count in counts.items() if count)
        self._progress.update(self._overall, completed=done, detail=trouble)
        for run_id in [run_id for run_id in self._runs if run_id not in running]:
            self._progress.remove_task(self._runs.pop(run_id))
        for run_id, run_dir in running.items():
            step, total_steps, loss = _training_state(run_dir)
            if run_id not in self._runs:
                self._runs[run_id] = self._progress.add_task(f"  {run_id}", total=None, detail="starting")
            detail = f"loss {loss:.3f}" if loss is not None else "preparing"
            self._progress.update(self._runs[run_id], completed=step, total=total_steps, detail=detail)


def _training_state(run_dir: Path) -> tuple[int, int | None, float | None]:
    """(last logged step, total steps, last training loss) of a run in progress, as far as known."""
    try:
        total_steps = RunRecord.load(run_dir / "config.json").plan.total_steps
    except UserError:  # not written yet
        return 0, None, None
    try:
        with open(run_dir / "metrics.jsonl", "rb") as metrics:
            metrics.seek(0, 2)
            metrics.seek(max(0, metrics.tell() - _TAIL_BYTES))
            last = json.loads(metrics.read().splitlines()[-1])
        return last["step"], total_steps, last["loss"]
    except (OSError, ValueError, KeyError, IndexError):
        return 0, total_steps, None
