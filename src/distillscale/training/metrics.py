"""Where training metrics go: `metrics.jsonl` (always), TensorBoard (when installed), a rich progress bar
(when stderr is a terminal)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from distillscale.console import err_console


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
        self._file.write(json.dumps(record) + "\n")
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


def training_progress(total_steps: int, enabled: bool) -> Progress:
    """Step bar with loss, tokens/s and ETA, on stderr; silent when not a terminal."""
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
