"""Where training metrics go: `metrics.jsonl` (always), TensorBoard (when installed), a rich progress bar
when stderr is a terminal, else plain progress lines (logs, CI, Slurm)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from distillscale.console import err_console
from distillscale.jsontext import json_text


class MetricLogger:
    """Appends one JSON object per record to `metrics.jsonl` and mirrors scalars to TensorBoard.

    On resume from step `resume_step`, records logged after that step by the interrupted process are
    dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(self, path: Path, tensorboard_dir: Path | None = None, resume_step: int = 0):
        self.path = Path(path)
        self._drop_records_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        self._writer = _tensorboard_writer(tensorboard_dir, resume_step) if tensorboard_dir else None

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json_text(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, record["step"])

    def __enter__(self) -> "MetricLogger":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def _drop_records_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                break  # a line cut short by kill -9: nothing after it can be trusted
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _tensorboard_writer(directory: Path, resume_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    # purge_step hides events the interrupted process wrote after the checkpoint we resume from.
    return SummaryWriter(log_dir=str(directory), purge_step=resume_step or None)


FIELDS = {"loss": "loss {} nats/token", "tokens_per_second": "{} tokens/s"}  # how a plain line shows a field


class PlainProgress:
    """Progress as plain lines on a stream that is not a terminal (a log file, CI, a Slurm job):
    what a rich bar shows, one line every `every_fraction` of the work or every `every_seconds`,
    whichever comes first, and at the end. Has the part of rich's Progress that the loops use."""

    def __init__(self, name: str, unit: str, stream: TextIO | None = None, every_fraction: float = 0.1,
                 every_seconds: float = 30.0) -> None:
        self.name, self.unit, self.stream = name, unit, stream
        self.every_fraction, self.every_seconds = every_fraction, every_seconds
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        task = len(self._tasks)
        self._tasks[task] = {"total": total, "completed": completed, "start": completed, "fields": fields,
                             "started": time.perf_counter(), "printed_at": completed, "printed_time": None}
        return task

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, completed=self._tasks[task]["completed"] + advance)

    def update(self, task: int, completed: float | None = None, **fields) -> None:
        state = self._tasks[task]
        if completed is not None:
            state["completed"] = completed
        state["fields"].update(fields)
        now, total, done = time.perf_counter(), state["total"], state["completed"]
        last_time = state["printed_time"] if state["printed_time"] is not None else state["started"]
        step = max(1.0, (total or 0) * self.every_fraction)
        if done - state["printed_at"] >= step or now - last_time >= self.every_seconds or                 (total is not None and done >= total and state["printed_at"] < total):
            state["printed_at"], state["printed_time"] = done, now
            print(self._line(state, now), file=self.stream or sys.stderr, flush=True)

    def _line(self, state: dict[str, Any], now: float) -> str:
        total, done, elapsed = state["total"], state["completed"], now - state["started"]
        parts = [f"{self.name}: {self.unit} {done:,.0f}" + (f"/{total:,.0f} ({done / total:.0%})" if total else "")]
        parts += [FIELDS.get(key, key.replace("_", " ") + " {}").format(value)
                  for key, value in state["fields"].items() if value != "-"]
        parts.append(f"elapsed {_duration(elapsed)}")
        if total and done > state["start"] and done < total:
            rate = (done - state["start"]) / max(elapsed, 1e-9)
            parts.append(f"ETA {_duration((total - done) / rate)}")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def training_progress(total_steps: int, enabled: bool) -> Progress | PlainProgress:
    """Step bar with loss, tokens/s and ETA on stderr; plain lines when stderr is not a terminal."""
    if enabled and not err_console.is_terminal:
        return PlainProgress("train", "step")
    return Progress(
        TextColumn("[bold]train[/bold]"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tokens_per_second]} tokens/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not (enabled and err_console.is_terminal),
        transient=False,
    )
