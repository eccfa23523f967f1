"""Records of a sweep's finished runs, the table the law fitter and the report read.

One record per finished run (completed, diverged or failed) with the columns of `RECORD_COLUMNS`:
- kind: "teacher" (supervised, of the teacher ladder), "baseline" (supervised, a student size on the
  student's tokens) or "student" (distilled); teachers and baselines feed the supervised-law fit, students
  the distillation-law fit.
- non_embedding_params, tokens, flops, val_loss (nats/token, against the data; empty unless completed):
  from the run's result.json, or the planned size and tokens for a run that failed.
- teacher_id, teacher_params, teacher_tokens, teacher_loss: student rows only; teacher_loss is the teacher's
  validation loss on the same validation split.
- budget: the FLOP budget of an IsoFLOP-profile run (6 N D convention), else empty.
- unique_tokens, epochs: the unique tokens of the run's training split and tokens / unique_tokens
  (above 1: the run repeated its data); empty for runs recorded before they were counted.
- on_policy_fraction: student rows only, the share of batches the student generated (`distill
  --on-policy-fraction`; 0 for off-policy distillation, which the distillation law is fitted on).
- student_init: student rows only, where the student started (`distill --student-init DIR`, e.g. a
  `distillscale prune` output; for a sweep's pruned student, the directory of its "pruned" run); empty
  for a student from scratch, the only kind the law is fitted on.

The sweep's "pruned" runs (models cut from a teacher, which pruned students start from) train nothing
and have no loss: they are not records.

- eval:<task>:<metric> (after the columns above, one per task and metric): the run's scores from the
  eval.json in its run directory (a sweep's [eval], or `distillscale eval RUN`), empty for a run without
  one; e.g. `distillscale fit downstream runs.csv --loss-col val_loss --accuracy-col eval:arc_easy:acc`.
  One column holds scores of one configuration only (tasks, limit, task config, lm-eval version): that
  of the sweep's [eval], or without one, the one most runs were scored under; a run scored otherwise
  has empty cells there, and a warning names it (`sweep run` scores it again under the [eval]).
- lr, batch_tokens: the run's peak `--lr` and its tokens per optimizer step (from result.json, else
  its planned settings): with the `[tune]` grid of a sweep spec, the table `distillscale fit
  hyperparameters` fits (diverged runs have no val_loss: `--drop-invalid` counts and skips them).
- lr_unit, hidden_lr: what `lr` is ('mup-base:256', muP's base rate, for the family; 'peak' for a
  model without muP), which the hyperparameter fit reads (`laws.hyperparameters.rates`), and the
  peak rate the run's hidden matrices trained at (empty for runs recorded before it was kept).

    distillscale fit supervised runs.csv --params-col non_embedding_params --tokens-col tokens \\
        --loss-col val_loss --fit-where "kind != 'student'"
    distillscale fit hyperparameters runs.csv --params-col non_embedding_params --loss-col val_loss \\
        --drop-invalid
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

from distillscale.console import warn
from distillscale.io import atomic_write_text
from distillscale.jsontext import json_text
from distillscale.evaluation.scores import (
    EVAL_FILE,
    EvalRecord,
    EvalRequest,
    mixed_configuration_message,
    read_eval,
    score_column_parts,
    score_columns,
    scored_otherwise,
)
from distillscale.sweeps.runner import SweepLayout, runs_on_other_data, some_of
from distillscale.sweeps.scoring import eval_request
from distillscale.sweeps.store import FINISHED, RunStore, StoredRun

RECORD_COLUMNS = ("run_id", "kind", "status", "n_layers", "non_embedding_params", "tokens", "tokens_per_param",
                  "flops", "val_loss", "teacher_id", "teacher_params", "teacher_tokens", "teacher_loss",
                  "budget", "run_dir", "wall_seconds", "unique_tokens", "epochs", "on_policy_fraction",
                  "student_init", "lr", "batch_tokens", "lr_unit", "hidden_lr")
# Headers of exports written by earlier versions, still recognised (and read: missing columns are empty).
EARLIER_COLUMNS = (RECORD_COLUMNS[:-2], RECORD_COLUMNS[:-4], RECORD_COLUMNS[:-5], RECORD_COLUMNS[:-6])


def export_records(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per finished run of the sweep in `sweep_dir`, in the order the runs were planned."""
    layout = SweepLayout(Path(sweep_dir).resolve())
    from distillscale.sweeps.status import runner_alive

    with RunStore(layout.root, read_only=True, runner_alive=runner_alive(layout.root)) as store:
        records = store.records()
        request = eval_request(layout.spec_sections(), store)
    by_id = {record.id: record for record in records}
    exported = [_record(record, by_id, layout) for record in records
                if record.status in FINISHED and record.kind != "pruned"]
    scored = {row["run_id"]: read_eval(layout.run_dir(row["run_id"]) / EVAL_FILE) for row in exported
              if row["status"] == "completed" and (layout.run_dir(row["run_id"]) / EVAL_FILE).is_file()}
    for row in exported:
        row.update(score_columns(scored[row["run_id"]]) if row["run_id"] in scored else {})
    _leave_out_other_configurations(exported, scored, request)
    other, checked = runs_on_other_data(layout, records)
    if other and len(other) < checked:  # a sweep continued across a data format change before it was refused
        warn(f"{len(other)} of the {checked} finished runs trained on other data than the rest "
             f"({next(iter(other.values()))}): {some_of(other)}; their losses are on another split, whose validation "
             f"text the others trained on, and mixing them biases the fits: rerun the sweep in a new directory")
    return exported


def _leave_out_other_configurations(rows: list[dict[str, Any]], scored: dict[str, EvalRecord],
                                    request: EvalRequest | None) -> None:
    """Empty the score cells of runs scored under another configuration than the column's (for a task
    of the sweep's [eval] `request`, its; for any other task, the one most runs share) or on data files
    that changed since, and say which, in one line per task."""
    for task in dict.fromkeys(task for record in scored.values() for task in record.tasks):
        if request is not None and task in request.tasks:
            other = {run_id: how for run_id, record in scored.items()
                     if task in record.tasks and (how := request.task_mismatch(record, task)) is not None}
            if other:
                _empty_scores(rows, other, tasks={task})
                runs = ", ".join(list(other)[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
                warn(f"the scores of {runs} ({len(other)} of {len(scored)} scored runs) are of another [eval] "
                     f"({next(iter(other.values()))}) than the sweep's: left out of the eval: columns; `sweep run` "
                     f"scores them again under its [eval]")
            continue
        mixed = scored_otherwise(scored, task)[1]
        if mixed:
            _empty_scores(rows, mixed, tasks={task})
            warn(mixed_configuration_message(mixed, task, len(scored), "the runs") + "; their scores of it are "
                 "left out of the eval: columns")


def _empty_scores(rows: list[dict[str, Any]], runs: dict[str, str], tasks: set[str] | None) -> None:
    for row in rows:
        if row["run_id"] in runs:
            for column in [column for column in row if score_column_parts(column)]:
                if tasks is None or score_column_parts(column)[0] in tasks:
                    row[column] = None


def _record(run: StoredRun, by_id: dict[str, StoredRun], layout: SweepLayout) -> dict[str, Any]:
    result = run.result or {}
    params = result.get("non_embedding_params", run.config["non_embedding_params"])
    tokens = result.get("tokens", run.config["tokens"])
    wall_seconds = result.get("wall_seconds")
    if wall_seconds is None and run.started_at is not None and run.finished_at is not None:
        wall_seconds = run.finished_at - run.started_at
    record = {
        "run_id": run.id, "kind": run.kind, "status": run.status, "n_layers": run.config["n_layers"],
        "non_embedding_params": params, "tokens": tokens, "tokens_per_param": tokens / params,
        "flops": result.get("flops"), "val_loss": result.get("val_loss") if run.status == "completed" else None,
        "teacher_id": None, "teacher_params": None, "teacher_tokens": None, "teacher_loss": None,
        "budget": run.config["budget"], "run_dir": str(layout.run_dir(run.id)), "wall_seconds": wall_seconds,
        "unique_tokens": result.get("unique_tokens"), "epochs": result.get("epochs"), "on_policy_fraction": None,
        "student_init": None, "lr": result.get("lr", run.config.get("settings", {}).get("lr")),
        "batch_tokens": _batch_tokens(run), "lr_unit": _lr_unit(run), "hidden_lr": result.get("hidden_lr"),
    }
    if run.kind == "student":
        teacher = by_id[run.config["teacher_id"]]
        teacher_result = teacher.result or {}
        # The distilled run measures its teacher on its own validation split; fall back to the
        # teacher run's own result (the same split: teacher and student share the corpus).
        teacher_loss = (result.get("teacher") or {}).get("teacher_val_loss", teacher_result.get("val_loss"))
        record.update(teacher_id=teacher.id,
                      teacher_params=teacher_result.get("non_embedding_params",
                                                        teacher.config["non_embedding_params"]),
                      teacher_tokens=teacher_result.get("tokens", teacher.config["tokens"]),
                      teacher_loss=teacher_loss, on_policy_fraction=_on_policy_fraction(run),
                      student_init=run.config["settings"].get("student_init")
                      or (str(layout.run_dir(run.config["init_id"])) if run.config.get("init_id") else None))
    return record


def _lr_unit(run: StoredRun) -> str:
    """What the run's `lr` is (`RunResult.lr_unit`); a run recorded before it was kept: muP's base
    rate at the family's base width unless its settings turned muP off."""
    result = run.result or {}
    if result.get("lr_unit"):
        return result["lr_unit"]
    return "mup-base:256" if run.config.get("settings", {}).get("mup", True) else "peak"


def _batch_tokens(run: StoredRun) -> int | None:
    """Tokens per optimizer step: the run's own (its tokens over its steps, whole steps each), else
    its planned settings' (sequences x micro-batches x context)."""
    result = run.result or {}
    if result.get("steps") and result.get("tokens"):
        return round(result["tokens"] / result["steps"])
    settings = run.config.get("settings", {})
    if "batch_size" not in settings or "seq_len" not in settings:  # a prune run: no batches
        return None
    return settings["batch_size"] * settings.get("grad_accum", 1) * settings["seq_len"]


def _on_policy_fraction(run: StoredRun) -> float:
    """The student's share of on-policy batches: from its result.json, else its planned settings."""
    on_policy = (run.result or {}).get("on_policy")
    if on_policy is not None:
        return float(on_policy["fraction"])
    return float(run.config["settings"].get("on_policy_fraction", 0.0))


def format_records(records: list[dict[str, Any]], fmt: Literal["csv", "jsonl"]) -> str:
    """CSV (header row; empty cells for missing values) or JSONL (null for missing values); every
    record has the score columns any record has, after `RECORD_COLUMNS`."""
    scores = dict.fromkeys(key for record in records for key in record if key not in RECORD_COLUMNS)
    records = [{**record, **{key: record.get(key) for key in scores}} for record in records]
    if fmt == "jsonl":
        return "".join(json_text(record) + "\n" for record in records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_COLUMNS + tuple(scores), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in record.items()}
                     for record in records)
    return buffer.getvalue()


def is_export(path: str | Path) -> bool:
    """`is_ours` of an export (the output rule's --overwrite replaces nothing else): a CSV whose
    header is `RECORD_COLUMNS` (or an earlier version's), or JSONL whose first line is a record with
    those keys."""
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16).decode("utf-8", errors="replace").rstrip("\r\n")
    headers = (RECORD_COLUMNS, *EARLIER_COLUMNS)
    if first in (",".join(columns) for columns in headers):
        return True
    if first.startswith(",".join(RECORD_COLUMNS) + ","):  # with score columns after them
        return all(score_column_parts(column) for column in next(csv.reader([first]))[len(RECORD_COLUMNS):])
    try:
        record = json.loads(first)
    except ValueError:
        return False
    if not isinstance(record, dict):
        return False
    keys = tuple(record)
    return keys in headers or (keys[:len(RECORD_COLUMNS)] == RECORD_COLUMNS
                               and all(score_column_parts(key) for key in keys[len(RECORD_COLUMNS):]))


def write_records(records: list[dict[str, Any]], path: str | Path, fmt: Literal["csv", "jsonl"]) -> None:
    atomic_write_text(path, format_records(records, fmt))
