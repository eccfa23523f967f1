"""eval.json: a model's lm-eval scores and, for each task, what they depend on besides the model (the
examples scored and the task's fingerprint: its config and the content of the local files it reads,
`evaluation.fingerprint`). `distillscale eval` writes it (evaluation/lm_eval_run.py); `--merge` adds
or replaces the scores of its tasks and keeps the others' (`EvalRecord.merged_into`), which is how a
sweep's [eval] scores a run that holds scores of other tasks (a user's own `distillscale eval`).

Scores of different configurations are not comparable (a `--limit 10` accuracy is not the benchmark's,
a task whose data changed is another task): `EvalRequest.mismatch` says how an eval.json differs from
what a sweep's [eval] asks (the sweep rescores those tasks), `stale_tasks` which of its scores were
made on files that changed since, and `scored_otherwise` which runs were scored differently where they
would be mixed. Neither lm-eval's nor distillscale's version is compared: an upgrade rescores nothing
whose task did not change."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from distillscale.errors import UserError
from distillscale.evaluation.fingerprint import TaskFingerprint, changed_files
from distillscale.io import json_format_is

# 2: task_sources, task_versions, distillscale_version; 3: `scorings` (each task's limit, versions,
# fingerprint and files: a file may hold tasks scored by several calls, `--merge`)
EVAL_FORMAT = "distillscale eval 3"
EVAL_FILE = "eval.json"
is_eval_file = json_format_is("distillscale eval")


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
class TaskScoring:
    """How one task of an eval.json was scored: the examples (`limit`, None: all), the versions of
    lm-eval and distillscale, and its `fingerprint` with the local `files` it read (path -> sha256;
    `evaluation.fingerprint`). An eval.json of format 1 or 2 recorded no fingerprint (None)."""

    limit: int | None
    lm_eval_version: str
    distillscale_version: str | None = None
    fingerprint: str | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalRecord:
    """eval.json: the scores of `tasks` on one model and, per task, how it was scored (`scoring`).
    `limit`, `lm_eval_version` and `distillscale_version` are the latest call's; `task_sources` (task ->
    sha256 of its config as lm-eval's index held it) and `task_versions` (the task's version lm-eval
    reports) are kept for comparison with eval.json files of format 2."""

    model: str
    tasks: tuple[str, ...]
    limit: int | None
    lm_eval_version: str
    scores: tuple[TaskScore, ...]
    task_sources: dict[str, str] = field(default_factory=dict)
    task_versions: dict[str, str | None] = field(default_factory=dict)
    distillscale_version: str | None = None
    scorings: dict[str, TaskScoring] = field(default_factory=dict)
    # The weights scored (`data.loss_record.model_fingerprint` of its weight files; None: an eval.json
    # written before it was kept): `--merge` adds scores only to a file of the same weights.
    model_fingerprint: str | None = None

    def to_json(self) -> dict:
        return {"format": EVAL_FORMAT, **asdict(self), "tasks": list(self.tasks),
                "scores": [asdict(score) for score in self.scores]}

    @classmethod
    def from_json(cls, data: dict) -> "EvalRecord":
        return cls(model=data["model"], tasks=tuple(data["tasks"]), limit=data["limit"],
                   lm_eval_version=data["lm_eval_version"],
                   scores=tuple(TaskScore(**score) for score in data["scores"]),
                   task_sources=dict(data.get("task_sources") or {}),
                   task_versions=dict(data.get("task_versions") or {}),
                   distillscale_version=data.get("distillscale_version"),
                   scorings={task: TaskScoring(**scoring) for task, scoring in (data.get("scorings") or {}).items()},
                   model_fingerprint=data.get("model_fingerprint"))

    def scoring(self, task: str) -> TaskScoring:
        """How `task` was scored (an eval.json of format 1 or 2: the file's limit and versions)."""
        return self.scorings.get(task) or TaskScoring(self.limit, self.lm_eval_version, self.distillscale_version)

    def configuration(self, task: str) -> "TaskConfiguration":
        """What this record's scores of `task` depend on besides the model."""
        scoring = self.scoring(task)
        hashes = sorted({score.config_hash for score in self.scores if score.task == task})
        return TaskConfiguration(limit=scoring.limit, config_hash=",".join(hashes) or None,
                                 source=self.task_sources.get(task), fingerprint=scoring.fingerprint)

    def other_model(self, earlier: "EvalRecord") -> str | None:
        """Why `earlier`'s scores are of another model than this record's (None: the same files, or a
        file that did not record them and names the same model)."""
        if earlier.model_fingerprint is not None and self.model_fingerprint is not None:
            if earlier.model_fingerprint != self.model_fingerprint:
                return (f"model {earlier.model} (weights {earlier.model_fingerprint[:12]}), not these weights "
                        f"({self.model_fingerprint[:12]})")
            return None
        if Path(earlier.model).expanduser().resolve() != Path(self.model).expanduser().resolve():
            return f"model {earlier.model}"
        return None

    def merged_into(self, earlier: "EvalRecord") -> "EvalRecord":
        """`earlier` (the eval.json already there) with this record's tasks scored as here: the scores
        of its other tasks kept as they were, in its order, this record's after them; another model's
        file is refused (`other_model`)."""
        why = self.other_model(earlier)
        if why is not None:
            raise UserError(f"--merge: the file holds the scores of {why}: write these to another --out, "
                            "or replace it with --overwrite")
        kept = [task for task in earlier.tasks if task not in self.tasks]

        def only_kept(mapping: dict) -> dict:
            return {task: value for task, value in mapping.items() if task in kept}

        return replace(self, tasks=(*kept, *self.tasks),
                       scores=(*(s for s in earlier.scores if s.task in kept), *self.scores),
                       task_sources=only_kept(earlier.task_sources) | self.task_sources,
                       task_versions=only_kept(earlier.task_versions) | self.task_versions,
                       scorings={task: earlier.scoring(task) for task in kept} | self.scorings)


@dataclass(frozen=True)
class TaskConfiguration:
    """What one task's scores depend on besides the model: the examples scored (`limit`, None: all),
    the task's fingerprint (None: an eval.json of format 1 or 2), and, for those, its config as lm-eval
    resolved it (`config_hash`, None: no score of it) and as its index held it (`source`)."""

    limit: int | None
    config_hash: str | None
    source: str | None
    fingerprint: str | None = None

    def difference(self, other: "TaskConfiguration") -> str | None:
        """How this configuration differs from `other`, in words ("limit 10, not all examples"); None
        when their scores are comparable. Two fingerprints are compared alone; without one, the
        resolved configs (`config_hash`) and the sources where both are recorded."""
        if self.limit != other.limit:
            return f"{limit_text(self.limit)}, not {limit_text(other.limit)}"
        if None not in (self.fingerprint, other.fingerprint):
            return None if self.fingerprint == other.fingerprint else "another config or data of the task"
        if self.config_hash != other.config_hash or (None not in (self.source, other.source)
                                                     and self.source != other.source):
            return "another config of the task"
        return None


def limit_text(limit: int | None) -> str:
    return "all examples" if limit is None else f"limit {limit}"


@dataclass(frozen=True)
class EvalRequest:
    """What a sweep's [eval] asks of each run's eval.json: scores of these tasks, with this limit and,
    where known, these task fingerprints (`fingerprint.task_fingerprints`) and, for an eval.json of an
    earlier format, these sources. A request read back from a spec.toml alone knows the tasks and the
    limit. `lm_eval_version` is what it was computed under (said, never compared)."""

    tasks: tuple[str, ...]
    limit: int | None
    lm_eval_version: str | None = None
    task_sources: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, TaskFingerprint] = field(default_factory=dict)

    def task_mismatch(self, record: EvalRecord, task: str) -> str | None:
        """How `record`'s scores of `task` differ from the request, in words; None when they stand."""
        if task not in record.tasks:
            return f"no scores of task {task}"
        scoring = record.scoring(task)
        if scoring.limit != self.limit:
            return f"{limit_text(scoring.limit)}, not {limit_text(self.limit)}"
        wanted = self.fingerprints.get(task)
        same = wanted is not None and scoring.fingerprint == wanted.fingerprint
        if wanted is not None and scoring.fingerprint is not None and not same:
            return f"another config or data of task {task}"
        # edited since: the files where the request found them (the same content, maybe another place)
        stale = changed_files(wanted.files if same else scoring.files)
        if stale is not None:
            return f"task {task} read {stale}"
        if same:
            return None
        if wanted is not None and wanted.files:  # an earlier format fingerprinted no data file
            return f"no record of the data files task {task} reads (an eval.json of an earlier version)"
        source = self.task_sources.get(task)
        if source is not None and record.task_sources.get(task) != source:
            return (f"another config of task {task}" if task in record.task_sources
                    else f"no record of task {task}'s config (an eval.json of an earlier version)")
        return None

    def mismatch(self, record: EvalRecord) -> str | None:
        """How `record` differs from the request, in words; None when every task's scores stand (the
        scores of tasks the request does not ask are no part of it: a user's own are kept)."""
        return next((how for task in self.tasks if (how := self.task_mismatch(record, task)) is not None), None)

    def tasks_to_score(self, record: EvalRecord | None) -> list[str]:
        """The tasks whose scores in `record` (None: no eval.json) do not stand: what a rescoring scores."""
        return [task for task in self.tasks if record is None or self.task_mismatch(record, task) is not None]

    def to_json(self) -> dict:
        return {"tasks": list(self.tasks), "limit": self.limit, "lm_eval_version": self.lm_eval_version,
                "task_sources": dict(self.task_sources),
                "fingerprints": {task: asdict(found) for task, found in self.fingerprints.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "EvalRequest":
        return cls(tasks=tuple(data["tasks"]), limit=data.get("limit"), lm_eval_version=data.get("lm_eval_version"),
                   task_sources=dict(data.get("task_sources") or {}),
                   fingerprints={task: TaskFingerprint(**found)
                                 for task, found in (data.get("fingerprints") or {}).items()})


def read_eval(path: str | os.PathLike) -> EvalRecord:
    """An eval.json written by `distillscale eval`, or a one-line UserError."""
    path = Path(path)
    if not is_eval_file(path):
        raise UserError(f"{path} is not an eval.json written by `distillscale eval`: give the file it wrote")
    return EvalRecord.from_json(json.loads(path.read_text(encoding="utf-8")))


def record_mismatch(path: Path, request: EvalRequest) -> str | None:
    """How the eval.json at `path` differs from `request` (see `EvalRequest.mismatch`); "unreadable"
    for a file that is no eval.json `distillscale eval` wrote."""
    try:
        return request.mismatch(read_eval(path))
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return "unreadable"


def stale_tasks(record: EvalRecord) -> dict[str, str]:
    """task -> which file it read changed since, for each task of `record` scored on local files that
    are no longer what they were (its scores are of another task now)."""
    stale = {task: changed_files(record.scoring(task).files) for task in record.tasks}
    return {task: why for task, why in stale.items() if why is not None}


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


def scored_otherwise(records: dict[str, EvalRecord], task: str, reference: TaskConfiguration | None = None
                     ) -> tuple[TaskConfiguration | None, dict[str, str]]:
    """(the configuration the scores of `task` are read under, the runs scored on it otherwise: run ->
    how their configuration differs, or which of its files changed since). `records`: run -> its
    eval.json, in the runs' order (those without `task` left aside). The configuration is `reference`
    when given (a sweep's [eval]), else the one the most runs share (the first run's among equals: the
    same choice on every machine)."""
    scored = {run: record for run, record in records.items() if task in record.tasks}
    stale = {run: f"data that changed since ({why})" for run, record in scored.items()
             if (why := changed_files(record.scoring(task).files)) is not None}
    configurations = {run: record.configuration(task) for run, record in scored.items() if run not in stale}
    if not configurations:
        return reference, stale
    if reference is None:
        shared = {run: sum(other.difference(config) is None for other in configurations.values())
                  for run, config in configurations.items()}
        reference = configurations[max(shared, key=shared.get)]  # max keeps the first among equals
    differ = {run: config.difference(reference) for run, config in configurations.items()}
    return reference, stale | {run: how for run, how in differ.items() if how is not None}


def mixed_configuration_message(mixed: dict[str, str], task: str, of: int, where: str) -> str:
    """One line naming the runs of `mixed` (run -> how it was scored otherwise) and the fix."""
    runs = ", ".join(list(mixed)[:3]) + (f" and {len(mixed) - 3} more" if len(mixed) > 3 else "")
    how = next(iter(mixed.values()))
    return (f"{where} were scored on {task} under different configurations, not comparable: {runs} "
            f"({len(mixed)} of {of}) with {how} (eval.json); score every run alike (`distillscale eval RUN "
            f"--overwrite` with the same --tasks and --limit, or `sweep run` under one [eval])")
