"""The benchmark scores in a report: each usable run's score on each task and metric (the
"eval:<task>:<metric>" columns `sweep export` writes from the runs' eval.json, `training.lm_eval_run`),
beside its validation loss, in report.json (`downstream`) and as a figure of loss against each metric.

    scores = task_scores(calibration.runs)   # [] when no run was scored
    report["downstream"] = scores_record(scores); plot_scores(scores)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from distillscale.report.runs import SweepRuns
from distillscale.evaluation.scores import score_column_parts


@dataclass(frozen=True)
class ScoredRun:
    run_id: str
    kind: str
    val_loss: float
    value: float


@dataclass(frozen=True)
class TaskScores:
    """One metric of one task across the runs that were scored on it, lowest loss first."""

    task: str
    metric: str
    runs: tuple[ScoredRun, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric,
                "runs": [{"run_id": r.run_id, "kind": r.kind, "val_loss": r.val_loss, "value": r.value}
                         for r in self.runs]}


def task_scores(runs: SweepRuns) -> list[TaskScores]:
    """Every (task, metric) some usable run (one with a validation loss: every list of `runs`, the fits'
    and the others') was scored on, in the order the columns first appear."""
    records = [record for f in fields(runs) if isinstance(getattr(runs, f.name), list)
               for record in getattr(runs, f.name)]
    found: dict[tuple[str, str], list[ScoredRun]] = {}
    for record in records:
        for column, value in record.items():
            parts = score_column_parts(column)
            number = _number(value)
            if parts is not None and number is not None:
                found.setdefault(parts, []).append(ScoredRun(str(record["run_id"]), str(record["kind"]),
                                                             float(record["val_loss"]), number))
    return [TaskScores(task, metric, tuple(sorted(scored, key=lambda r: (r.val_loss, r.run_id))))
            for (task, metric), scored in found.items()]


def scores_record(scores: list[TaskScores]) -> list[dict[str, Any]]:
    """report.json's `downstream`."""
    return [score.to_dict() for score in scores]


def plot_scores(scores: list[TaskScores]):
    """Validation loss against each task's metric, a panel each, runs marked by kind."""
    from distillscale.planning.plots import pyplot

    plt = pyplot()
    columns = min(len(scores), 3)
    rows = math.ceil(len(scores) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    markers = {"teacher": "o", "baseline": "s", "student": "^"}
    for ax, score in zip(axes.flat, scores):
        for kind, marker in markers.items():
            members = [r for r in score.runs if r.kind == kind]
            if members:
                ax.scatter([r.val_loss for r in members], [r.value for r in members], marker=marker, label=kind)
        ax.set_xlabel("validation loss (nats/token)")
        ax.set_ylabel(score.metric)
        ax.set_title(score.task, fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(scores):]:
        ax.set_visible(False)
    figure.tight_layout()
    return figure


def _number(value: Any) -> float | None:
    """A score as a number: a CSV export's cell is text, empty when the run was not scored."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
