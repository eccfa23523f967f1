"""`distillscale eval RUN_OR_HF_DIR --tasks T1,T2`: a model's lm-eval-harness scores, as eval.json
beside the run's result.json (evaluation/lm_eval_run.py does the work); `distillscale fit downstream RUNS`:
the loss-to-error law (laws/downstream.py) fitted to runs' eval.json scores or to a table. Here, not in
laws/commands.py, because reading a directory of runs is the training layer's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Literal

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import Table, console, print_json
from distillscale.errors import ParameterError, UserError



class EvalSettings(CommandSettings):
    """`distillscale eval`."""

    command_path: ClassVar[str] = "eval"

    model_dir: Path = argument(help="a finished `distillscale train`/`distill` run (exported to a temporary "
                                    "Hugging Face directory first) or a Hugging Face model directory")
    tasks: str = option(..., help="lm-eval task names separated by commas, e.g. arc_easy,hellaswag (local ones "
                                  "from --include-path too)")
    limit: int | None = option(None, min=1, help="score only the first N examples of each task (a quick check; "
                                                 "the scores are then not the benchmark's)")
    batch_size: int = option(1, min=1, help="examples per forward pass")
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="auto, cpu or cuda")
    include_path: Path | None = option(None, help="a directory of lm-eval task YAML files (your own tasks, "
                                                  "offline), lm-eval's --include_path")
    out: Path | None = option(None, help="where to write the scores (default: eval.json in the model directory)")
    overwrite: bool = option(False, help="replace an eval.json written by an earlier `distillscale eval`")
    merge: bool = option(False, help="add these tasks' scores to an eval.json written by an earlier `distillscale "
                                     "eval`, keeping its other tasks' scores (theirs replaced where it has these "
                                     "tasks)")
    as_json: bool = option(False, flag="--json", help="print JSON")


@command(EvalSettings)
def eval_command(s: EvalSettings) -> None:
    """Score a run or a Hugging Face model on lm-eval-harness tasks (the eval extra), in this process.

    The scores are those `lm_eval --model hf --model_args pretrained=DIR` gives for the exported model. eval.json holds, per task and metric: the value, its standard error, the examples scored, the lm-eval version and a hash of the task's config.
    """
    from distillscale.io import atomic_write_json
    from distillscale.training.distributed import resolve_device
    from distillscale.evaluation.lm_eval_run import check_model_dir, parse_tasks, run_lm_eval

    tasks = parse_tasks(s.tasks)
    import lm_eval  # noqa: F401  (the eval extra: named in one line before any work when missing)

    check_model_dir(s.model_dir)
    out, earlier = _output(s)
    record = run_lm_eval(s.model_dir, tasks, limit=s.limit, batch_size=s.batch_size,
                         device=resolve_device(s.device).type, include_path=s.include_path)
    record = record if earlier is None else record.merged_into(earlier)
    atomic_write_json(out, record.to_json())
    if s.as_json:
        print_json(record.to_json())
    else:
        console.print(_scores_table(record, s.model_dir, out))


def _output(s: EvalSettings):
    """(where the scores go, the eval.json there whose other tasks' scores --merge keeps, or None),
    checked before any work."""
    from dataclasses import replace

    from distillscale.evaluation.lm_eval_run import default_output, weights_fingerprint
    from distillscale.evaluation.scores import is_eval_file, read_eval
    from distillscale.io import check_output_file

    if s.merge and s.overwrite:
        raise UserError("give --merge (keep the other tasks' scores) or --overwrite (replace the file), not both")
    out = check_output_file(s.out or default_output(s.model_dir), overwrite=s.overwrite or s.merge,
                            is_ours=is_eval_file, inputs=[s.model_dir], what="file written by `distillscale eval`",
                            overwrite_flag="--merge" if s.merge else "--overwrite")
    keep = s.merge and out.is_file() and out.stat().st_size > 0
    earlier = read_eval(out) if keep else None
    if earlier is not None:  # another model's scores: refused before any task is scored
        replace(earlier, model=str(s.model_dir), model_fingerprint=weights_fingerprint(s.model_dir)).merged_into(earlier)
    return out, earlier


def _scores_table(record, model_dir: Path, out: Path) -> Table:
    """eval.json's scores: a row per task and metric."""
    table = Table(title=f"lm-eval {record.lm_eval_version} on {model_dir} (written to {out})")
    for column in ("task", "metric", "value", "stderr", "n"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for score in record.scores:
        stderr = "-" if score.stderr is None else f"{score.stderr:.4f}"
        table.add_row(score.task, score.metric, f"{score.value:.4f}", stderr, str(score.n))
    return table


class FitDownstreamSettings(CommandSettings):
    """`distillscale fit downstream`."""

    command_path: ClassVar[str] = "fit downstream"

    file: Path = argument(help="runs: a directory of finished runs, each with the eval.json of `distillscale "
                               "eval` (the error: 1 - the mean of --metric over --tasks), or a CSV/JSONL table with "
                               "each run's loss and error (or accuracy)")
    tasks: str | None = option(None, help="with a directory of runs: the task set, lm-eval task names separated by "
                                          "commas (default: every task of the first run's eval.json)")
    metric: str = option("acc", help="with a directory of runs: the metric of each task (acc, acc_norm, ...)")
    loss_col: str = option("loss", help="column of validation loss (nats/token)")
    error_col: str | None = option(None, help="column of the task set's average top-1 error, 0-1 (default: error)")
    accuracy_col: str | None = option(None, help="column of the task set's average accuracy, 0-1, instead of "
                                                 "--error-col (error = 1 - accuracy)")
    task_set: str = option("", help="name of the task set, kept in the law file (e.g. arc_easy,hellaswag)")
    holdout: int | None = option(None, help="runs of lowest loss held out of the backtest fit and predicted by "
                                            "it (default: a quarter of the runs; 0: no backtest)")
    bootstrap: int = option(200, help="bootstrap resamples of the runs (0: no intervals)")
    level: float = option(0.9, help="interval level")
    seed: int = option(0, help="seed of the bootstrap resampling")
    drop_invalid: bool = option(False, help="skip table rows with a missing, NaN or non-positive value instead "
                                            "of failing")
    out: Path | None = option(None, help="save the law as JSON, for `predict downstream --law FILE`")
    overwrite: bool = option(False, help="replace the --out file if `fit downstream` wrote it (never another file)")
    as_json: bool = option(False, flag="--json", help="print JSON")


@command(FitDownstreamSettings)
def fit_downstream_command(s: FitDownstreamSettings) -> None:
    """Fit Gadre et al. (2024)'s loss-to-error law Err(L) = epsilon - k exp(-gamma L) for one task set, with
    bootstrap intervals and a backtest on the runs of lowest loss."""
    from distillscale.io import check_output_file
    from distillscale.laws.downstream import is_downstream_law_file

    if s.error_col and s.accuracy_col:
        raise UserError("give either --error-col or --accuracy-col, not both")
    if s.out:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=is_downstream_law_file, inputs=[s.file],
                          what="downstream law file")
    losses, errors, task_set, source = _downstream_data(s)
    law = _fit_downstream(s, losses, errors, task_set, source)
    if s.out:
        law.save(s.out)
    if s.as_json:
        print_json(law.to_json())
        return
    console.print(_downstream_table(law, len(losses), s.file.name))
    if s.out:
        console.print(f"saved to {s.out}: use it with predict downstream --law {s.out}")


def _downstream_data(s: FitDownstreamSettings) -> tuple[list[float], list[float], str, dict]:
    """(losses, errors, the task set, where they came from): a directory's runs, or a table's rows."""
    from distillscale.evaluation.lm_eval_run import downstream_runs

    if s.file.is_dir():
        losses, errors, task_set = downstream_runs(s.file, s.tasks, s.metric)
        return losses, errors, s.task_set or task_set, {"runs": str(s.file), "tasks": task_set, "metric": s.metric}
    losses, errors, score_col = _table_runs(s)
    return losses, errors, s.task_set, {"file": str(s.file), "loss_col": s.loss_col, "score_col": score_col}


def _fit_downstream(s: FitDownstreamSettings, losses, errors, task_set: str, source: dict):
    """`laws.downstream.fit_downstream` with the command's options; errors named by flag or column."""
    from distillscale.laws.downstream import fit_downstream

    try:
        return fit_downstream(losses, errors, task_set=task_set, holdout=s.holdout, bootstrap=s.bootstrap,
                              level=s.level, seed=s.seed, source=source)
    except ParameterError as exc:
        table, score_col = "file" in source, source.get("score_col")
        raise UserError(exc.for_cli({
            "holdout": "--holdout", "bootstrap": "--bootstrap", "level": "--level",
            "losses": f"column {s.loss_col!r}" if table else "the runs' validation losses",
            "errors": ((f"the errors (1 - column {score_col!r})" if s.accuracy_col else f"column {score_col!r}")
                       if table else "the runs' errors")})) from None


def _downstream_table(law, runs: int, name: str) -> Table:
    """The fitted coefficients with their intervals, and the backtest."""
    intervals = law.coefficient_intervals()
    table = Table(title=f"Err(L) = epsilon - k exp(-gamma L), fitted to {runs} runs of {name}", show_header=False)
    for coefficient in ("epsilon", "k", "gamma"):
        low, high = intervals.get(coefficient, (math.nan, math.nan))
        table.add_row(coefficient, f"{getattr(law, coefficient):.4g}", f"[{low:.4g}, {high:.4g}] ({law.level:.0%})")
    if law.backtest is not None:
        table.add_row("backtest", f"{len(law.backtest.losses)} lowest-loss runs held out",
                      f"mean |error| {law.backtest.mean_abs_error:.4f}")
    return table


def _table_runs(s: FitDownstreamSettings):
    """(losses, errors, the score column) from a CSV/JSONL table of runs."""
    from distillscale.tables import NON_NEGATIVE, read_table

    score_col = s.accuracy_col or s.error_col or "error"
    # an accuracy (or error) of exactly 0 is a score like any other: only the loss must be positive
    rows = read_table(s.file).numeric([s.loss_col, score_col], drop_invalid=s.drop_invalid,
                                      rules={score_col: NON_NEGATIVE},
                                      flags=["--loss-col", "--accuracy-col" if s.accuracy_col else "--error-col"])
    scores = rows[score_col]
    if (scores > 1).any():
        raise UserError(f"column {score_col!r} in {s.file} has values above 1: give fractions (0.42, not 42%)")
    return rows[s.loss_col], (1 - scores if s.accuracy_col else scores), score_col
