"""Benchmark scores of a model from lm-eval-harness (the `lm-eval` package, the `eval` extra), run in
this process through its Python API (`lm_eval.simple_evaluate` on an `HFLM`), so the numbers are the
ones `lm_eval --model hf --model_args pretrained=DIR` prints for the same model directory.

A run trained by distillscale is first exported (model/hf_export.py) into a temporary directory; a
Hugging Face model directory is evaluated as it is. The scores are an `EvalRecord` (evaluation/scores.py),
written as eval.json beside the run's result.json, with what they depend on besides the model: each
task's fingerprint (its config and the local files it reads, evaluation/fingerprint.py), the example
limit and the versions of lm-eval and distillscale. `downstream_runs` reads the scores of a directory
of runs, refusing runs scored differently (or on data that changed since) where they would be mixed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import distillscale
from distillscale.errors import UserError, path_kind
from distillscale.evaluation.fingerprint import task_fingerprints
from distillscale.evaluation.scores import (
    EVAL_FILE,
    EvalRecord,
    TaskScore,
    TaskScoring,
    mixed_configuration_message,
    read_eval,
    scored_otherwise,
)
from distillscale.model.hf_export import export_hf
from distillscale.training.run_dir import completed_result, is_run_dir, read_config_json

# The keys of a task's results that are not metrics (lm-eval writes them beside "acc,none").
_NOT_METRICS = {"name", "alias", "sample_len", "samples"}


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


def weights_fingerprint(model_dir: Path) -> str:
    """The identity of the weights in `model_dir` (`EvalRecord.model_fingerprint`): `--merge` adds
    scores only to a file of the same weights."""
    from distillscale.data.loss_record import WEIGHT_FILES, model_fingerprint

    return model_fingerprint(model_dir, WEIGHT_FILES)


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
    read_config_json(model_dir)   # garbage or unreadable: said as such
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
    if include_path is not None:
        check_local_task_fields(manager, tasks, include_path)
    return manager


def task_sources(manager, tasks: list[str]) -> dict[str, str]:
    """task -> sha256 of its config as lm-eval's task index holds it (the YAML as loaded), for each task
    whose index entry has one: a task edited under the same name has another source."""
    sources = {}
    for task in tasks:
        entry = manager.task_index.get(task)
        config = getattr(entry, "cfg", None) if entry is not None else None
        if config is None and isinstance(entry, dict):  # lm-eval before 0.4.10 indexed plain dicts
            config = {"yaml_path": str(entry.get("yaml_path"))}
        if config is not None:
            sources[task] = _config_hash(config)
    return sources


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOC_FIELDS = ("doc_to_text", "doc_to_target", "doc_to_choice")


def check_local_task_fields(manager, tasks: list[str], include_path: Path) -> None:
    """Each of `tasks` defined under `include_path` (the user's own YAML), loaded: where its doc_to_text,
    doc_to_target or doc_to_choice is a bare name (no Jinja), its documents must have that field, or a
    one-line UserError. lm-eval renders a missing field as the literal name: every target is then
    wrong, and the task scores 0 with a zero standard error instead of failing (a missing choices
    field fails inside lm-eval instead: named the same way, else in one line)."""
    root = include_path.expanduser().resolve()
    for task in tasks:
        entry = manager.task_index.get(task)
        where = getattr(entry, "yaml_path", None)
        if not _is_under(where, root):
            continue
        with _task_data_errors([task]), _quiet_datasets():
            try:
                loaded = _load_tasks(manager, [task])
            except (ValueError, KeyError, TypeError, IndexError, SyntaxError) as exc:
                config = getattr(entry, "cfg", None) or {}
                document = _first_document(config)
                if document is not None:
                    _check_fields(task, where, config.get, document)
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(f"lm-eval could not build task {task} ({where}): {type(exc).__name__}: {reason}; "
                                "check its YAML (doc_to_text, doc_to_target, doc_to_choice: fields of its "
                                "documents or Jinja templates)") from None
            for name, built in _leaf_tasks(loaded):
                document = next(iter(built.eval_docs), None)
                if isinstance(document, dict):
                    _check_fields(name, where, lambda key: getattr(built.config, key, None), document)


def _load_tasks(manager, tasks: list[str]) -> dict:
    """The built tasks (name -> task, groups holding theirs): lm-eval's `TaskManager.load` where it has
    one (its flat "tasks"), else its older `load_task_or_group`."""
    if hasattr(manager, "load"):
        return dict(manager.load(tasks)["tasks"])
    return manager.load_task_or_group(tasks)


def _check_fields(task: str, where, setting, document: dict) -> None:
    """Refuse a doc_to_* `setting(key)` that is a bare name `document` has no field of."""
    for key in _DOC_FIELDS:
        value = setting(key)
        if isinstance(value, str) and _FIELD_NAME.fullmatch(value) and value not in document:
            raise UserError(f"task {task} ({where}): {key} names the field {value!r}, which its documents do not "
                            f"have (they have {', '.join(map(str, document))}): give one of their fields or a "
                            "Jinja template; as it is, every example would score 0")


def _first_document(config: dict) -> dict | None:
    """The first document of a task's evaluation split, read from its config as lm-eval reads it
    (datasets' load_dataset); None when that cannot be done here."""
    try:
        import datasets

        split = config.get("test_split") or config.get("validation_split") or config.get("training_split")
        data = datasets.load_dataset(config["dataset_path"], config.get("dataset_name"),
                                     **(config.get("dataset_kwargs") or {}))
        document = data[split][0]
    except Exception:  # noqa: BLE001 - any failure: the caller says what lm-eval said instead
        return None
    return document if isinstance(document, dict) else None


@contextmanager
def _quiet_datasets():
    """datasets' progress bars off for the block (a check's loading is not the user's work)."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


def _is_under(path, root: Path) -> bool:
    if not isinstance(path, (str, os.PathLike)):
        return False
    path = Path(path).expanduser().resolve()
    return path == root or root in path.parents


def _leaf_tasks(loaded: dict):
    """(name, task) of every task in lm-eval's loaded dict of tasks and groups (groups hold dicts)."""
    for key, value in loaded.items():
        if isinstance(value, dict):
            yield from _leaf_tasks(value)
        elif hasattr(value, "config") and hasattr(value, "eval_docs"):
            yield getattr(value.config, "task", None) or str(key), value


class _task_data_errors:
    """Within the block, a task's data that cannot be loaded (datasets' errors derive from these) is a
    one-line UserError naming the tasks."""

    def __init__(self, tasks: list[str]):
        self.tasks = tasks

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if kind is not None and issubclass(kind, (FileNotFoundError, ConnectionError)):
            reason = (str(exc).strip().splitlines() or [kind.__name__])[0]
            raise UserError(f"lm-eval could not load the data of {', '.join(self.tasks)}: {reason}; check the task's "
                            "dataset_path and data_files (offline, its data must be on this machine)") from None
        return False


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
    """lm-eval's scores of the model in `hf_dir`, with each task's scoring (its fingerprint taken from
    the files before they are read)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    fingerprints = task_fingerprints(manager, tasks)
    model = HFLM(pretrained=str(hf_dir), batch_size=batch_size, device=device)
    with _task_data_errors(tasks):
        results = lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=manager, limit=limit,
                                          log_samples=False)
    version = installed_lm_eval_version()
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
    versions = results.get("versions") or {}
    return EvalRecord(model=str(model_dir), model_fingerprint=weights_fingerprint(model_dir), tasks=tuple(tasks),
                      limit=limit, lm_eval_version=version,
                      scores=tuple(scores), task_sources=task_sources(manager, tasks),
                      task_versions={task: None if versions.get(task) is None else str(versions[task])
                                     for task in results["results"]},
                      distillscale_version=distillscale.__version__,
                      scorings={task: TaskScoring(limit, version, distillscale.__version__,
                                                  *((found.fingerprint, found.files) if (found := fingerprints.get(task))
                                                    else (None, {})))
                                for task in tasks})


def _config_hash(config: dict) -> str:
    """sha256 of the task's resolved config (as lm-eval reports it), keys sorted."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def installed_lm_eval_version() -> str:
    """The version of lm-eval in this environment, as eval.json records it (and a sweep's [eval] asks)."""
    import lm_eval

    return str(lm_eval.__version__)


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
    records = {run: read_eval(run / EVAL_FILE) for run in runs}
    losses, errors = [], []
    for run, record in records.items():
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
    for task in wanted:
        mixed = scored_otherwise({str(run.relative_to(runs_dir)) or str(run): record
                                  for run, record in records.items()}, task)[1]
        if mixed:
            raise UserError(mixed_configuration_message(mixed, task, len(records), f"the runs of {runs_dir}")
                            + ", or --tasks they were scored on alike")
    return losses, errors, ",".join(wanted)
