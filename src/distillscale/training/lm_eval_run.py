"""Benchmark scores of a model from lm-eval-harness (the `lm-eval` package, the `eval` extra), run in
this process through its Python API (`lm_eval.simple_evaluate` on an `HFLM`), so the numbers are the
ones `lm_eval --model hf --model_args pretrained=DIR` prints for the same model directory.

A run trained by distillscale is first exported (model/hf_export.py) into a temporary directory; a
Hugging Face model directory is evaluated as it is. The scores are an `EvalRecord`, written as
eval.json beside the run's result.json."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from distillscale.errors import UserError, path_kind
from distillscale.io import json_format_is
from distillscale.model.hf_export import export_hf
from distillscale.training.run_dir import completed_result, is_run_dir

EVAL_FORMAT = "distillscale eval 1"
EVAL_FILE = "eval.json"
is_eval_file = json_format_is("distillscale eval")
# The keys of a task's results that are not metrics (lm-eval writes them beside "acc,none").
_NOT_METRICS = {"name", "alias", "sample_len", "samples"}


@dataclass(frozen=True)
class TaskScore:
    """One metric of one task: its value, its standard error (None where lm-eval gives none, e.g. with
    a single example), the examples scored and the hash of the task's resolved lm-eval config."""

    task: str
    metric: str
    value: float
    stderr: float | None
    n: int
    config_hash: str
    lm_eval_version: str


@dataclass(frozen=True)
class EvalRecord:
    """eval.json: what `distillscale eval` measured on one model."""

    model: str
    tasks: tuple[str, ...]
    limit: int | None
    lm_eval_version: str
    scores: tuple[TaskScore, ...]

    def to_json(self) -> dict:
        return {"format": EVAL_FORMAT, **asdict(self), "tasks": list(self.tasks),
                "scores": [asdict(score) for score in self.scores]}

    @classmethod
    def from_json(cls, data: dict) -> "EvalRecord":
        return cls(model=data["model"], tasks=tuple(data["tasks"]), limit=data["limit"],
                   lm_eval_version=data["lm_eval_version"],
                   scores=tuple(TaskScore(**score) for score in data["scores"]))


def parse_tasks(text: str) -> list[str]:
    """`--tasks a,b`: the task names, in order, without repeats; none at all is an error."""
    tasks = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not tasks:
        raise UserError("--tasks names no task: give lm-eval task names separated by commas, e.g. "
                        "--tasks arc_easy,hellaswag")
    return tasks


def default_output(model_dir: Path) -> Path:
    """eval.json in the run directory (beside result.json), or in the Hugging Face directory."""
    return model_dir / EVAL_FILE


def check_model_dir(model_dir: Path) -> bool:
    """Whether `model_dir` is a distillscale run (True, to be exported) or a Hugging Face model
    directory (False); anything else, or a run that did not complete, is a one-line UserError."""
    if not model_dir.is_dir():
        raise UserError(f"{model_dir} {path_kind(model_dir)}: give a run directory or a Hugging Face model "
                        "directory (config.json and weights)")
    if is_run_dir(model_dir):
        completed_result(model_dir, "run", then=", then evaluate it")
        return True
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir} is neither a distillscale run nor a Hugging Face model directory (no "
                        "config.json): give a directory written by `distillscale train` or `export-hf`")
    return False


def task_manager(tasks: list[str], include_path: Path | None):
    """lm-eval's task index with `include_path`'s YAML tasks; an unknown task is a one-line
    UserError. When every task is a local one, lm-eval's own few thousand task files are not
    indexed (seconds saved on each call)."""
    from lm_eval.tasks import TaskManager

    if include_path is not None and not include_path.is_dir():
        raise UserError(f"--include-path {include_path} {path_kind(include_path)}: give a directory of lm-eval "
                        "task YAML files")
    include = None if include_path is None else str(include_path)
    manager = None
    if include is not None:
        manager = TaskManager(include_path=include, include_defaults=False)
        if not all(task in manager.all_tasks for task in tasks):
            manager = None
    if manager is None:
        manager = TaskManager(include_path=include)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        where = f" nor in --include-path {include_path}" if include_path is not None else ""
        raise UserError(f"unknown lm-eval task {', '.join(unknown)}: not one of lm-eval's tasks{where}; "
                        "`lm_eval ls tasks` lists them, or give a directory of task YAMLs with --include-path")
    return manager


def run_lm_eval(model_dir: Path, tasks: list[str], *, limit: int | None = None, batch_size: int = 1,
                device: str = "cpu", include_path: Path | None = None) -> EvalRecord:
    """Score `model_dir` (a run, exported first, or a Hugging Face directory) on `tasks`."""
    import lm_eval  # noqa: F401  (a missing `eval` extra is named before any work is done)

    is_run = check_model_dir(model_dir)
    manager = task_manager(tasks, include_path)
    if not is_run:
        return _evaluate(model_dir, model_dir, tasks, manager, limit, batch_size, device)
    with tempfile.TemporaryDirectory(prefix="distillscale-eval-") as scratch:
        exported = Path(scratch) / "hf"
        export_hf(model_dir, exported)
        return _evaluate(model_dir, exported, tasks, manager, limit, batch_size, device)


def _evaluate(model_dir: Path, hf_dir: Path, tasks: list[str], manager, limit: int | None, batch_size: int,
              device: str) -> EvalRecord:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    model = HFLM(pretrained=str(hf_dir), batch_size=batch_size, device=device)
    try:
        results = lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=manager, limit=limit,
                                          log_samples=False)
    except (FileNotFoundError, ConnectionError) as exc:  # a task's data (datasets' errors derive from these)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"lm-eval could not load the data of {', '.join(tasks)}: {reason}; check the task's "
                        "dataset_path and data_files (offline, its data must be on this machine)") from None
    version = str(results.get("lm_eval_version") or _installed_version())
    scores = []
    for task, values in results["results"].items():
        config_hash = _config_hash(results["configs"].get(task, {}))
        n = int(results.get("n-samples", {}).get(task, {}).get("effective", values.get("sample_len", 0)) or 0)
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if key in _NOT_METRICS or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            name = metric if filter_name in ("", "none") else f"{metric},{filter_name}"
            stderr = values.get(f"{metric}_stderr,{filter_name}" if filter_name else f"{metric}_stderr")
            scores.append(TaskScore(task=task, metric=name, value=float(value),
                                    stderr=float(stderr) if isinstance(stderr, (int, float)) else None,
                                    n=n, config_hash=config_hash, lm_eval_version=version))
    return EvalRecord(model=str(model_dir), tasks=tuple(tasks), limit=limit, lm_eval_version=version,
                      scores=tuple(scores))


def _config_hash(config: dict) -> str:
    """sha256 of the task's resolved config (as lm-eval reports it), keys sorted."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _installed_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def read_eval(path: str | os.PathLike) -> EvalRecord:
    """An eval.json written by `distillscale eval`, or a one-line UserError."""
    path = Path(path)
    if not is_eval_file(path):
        raise UserError(f"{path} is not an eval.json written by `distillscale eval`: give the file it wrote")
    return EvalRecord.from_json(json.loads(path.read_text(encoding="utf-8")))


# The columns of a sweep export (and the report) that carry a run's scores: "eval:<task>:<metric>".
SCORE_COLUMN_PREFIX = "eval:"


def score_columns(record: EvalRecord) -> dict[str, float]:
    """Each task's metrics of `record` as the columns `sweep export` writes ("eval:<task>:<metric>")."""
    return {f"{SCORE_COLUMN_PREFIX}{score.task}:{score.metric}": score.value for score in record.scores}


def score_column_parts(column: str) -> tuple[str, str] | None:
    """(task, metric) of a score column; None for any other column."""
    if not column.startswith(SCORE_COLUMN_PREFIX):
        return None
    task, _, metric = column[len(SCORE_COLUMN_PREFIX):].partition(":")
    return (task, metric) if task and metric else None


def downstream_runs(runs_dir: Path, tasks: str | None, metric: str) -> tuple[list[float], list[float], str]:
    """(validation losses, errors, the task set) of the finished runs under `runs_dir` that have an
    eval.json: a run's error is 1 - the mean of `metric` over the task set (`tasks`, or every task of
    the first run's eval.json). A run without some task's score is a one-line UserError."""
    from distillscale.training.run_dir import RunDirectory

    runs = sorted(path.parent for path in runs_dir.rglob(EVAL_FILE) if is_run_dir(path.parent))
    if not runs:
        raise UserError(f"{runs_dir} holds no run with an eval.json: run `distillscale eval RUN --tasks ...` on "
                        "each run first, or give a table of losses and errors")
    wanted = parse_tasks(tasks) if tasks else None
    losses, errors = [], []
    for run in runs:
        record = read_eval(run / EVAL_FILE)
        wanted = wanted or list(record.tasks)
        values = {score.task: score.value for score in record.scores if score.metric == metric}
        missing = [task for task in wanted if task not in values]
        if missing:
            raise UserError(f"{run / EVAL_FILE} has no {metric} score of {', '.join(missing)}: evaluate the run on "
                            "them (distillscale eval --overwrite), or choose --tasks/--metric it has")
        result = RunDirectory(run).read_result()
        if result.val_loss is None:
            raise UserError(f"{run} has no validation loss in result.json: the law maps a validation loss to an "
                            "error; evaluate runs trained with validation (--eval-tokens)")
        losses.append(float(result.val_loss))
        errors.append(1 - sum(values[task] for task in wanted) / len(wanted))
    return losses, errors, ",".join(wanted)
