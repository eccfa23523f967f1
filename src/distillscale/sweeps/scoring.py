"""A sweep's [eval]: what it asks of each run's eval.json (`EvalRequest`: its tasks, limit and task
fingerprints, kept in the store's meta as "eval" for `sweep status` and `export`), which runs it
scores, and the `distillscale eval` job that scores one.

A run's eval.json is rescored only in the tasks whose scores do not stand (none yet, another limit,
another config of the task, or local data files that changed since: `EvalRequest.tasks_to_score`), and
the job adds them to the file (`eval --merge`): scores of other tasks already there, a user's own
`distillscale eval`, are kept. Neither lm-eval's nor distillscale's version is compared, so an
upgrade rescores nothing whose task did not change."""

from __future__ import annotations

from pathlib import Path

from distillscale.errors import UserError
from distillscale.evaluation.scores import EVAL_FILE, EvalRecord, EvalRequest, read_eval
from distillscale.sweeps.spec import SweepSpec
from distillscale.sweeps.spec_sections import EVALUATED_KINDS
from distillscale.sweeps.store import RunStore

# The store's meta key of the [eval] request of the latest `sweep run` (`EvalRequest.to_json()`).
EVAL_META = "eval"


def check_evaluation(spec: SweepSpec) -> EvalRequest | None:
    """Before any run: [eval]'s tasks are lm-eval's or its include_path's (a one-line UserError names an
    unknown one, or a local task's field its documents lack), and the `eval` extra is installed (the
    CLI names it in one line when it is not). Returns what [eval] asks of each run's eval.json (None
    without [eval]), with each task's fingerprint as its config and files are now."""
    if spec.evaluation is None:
        return None
    import lm_eval  # noqa: F401

    from distillscale.evaluation.fingerprint import task_fingerprints
    from distillscale.evaluation.lm_eval_run import installed_lm_eval_version, task_manager, task_sources

    include = spec.evaluation.include_path
    tasks = list(spec.evaluation.tasks)
    manager = task_manager(tasks, None if include is None else Path(include))
    return EvalRequest(tasks=tuple(tasks), limit=spec.evaluation.limit, lm_eval_version=installed_lm_eval_version(),
                       task_sources=task_sources(manager, tasks), fingerprints=task_fingerprints(manager, tasks))


def eval_request(sections: dict | None, store: RunStore) -> EvalRequest | None:
    """What the [eval] of the latest `sweep run` asks of each run's eval.json (`sections`: the sweep's
    spec.toml as data): the request it kept in the store, else (a sweep run before it kept one) the
    tasks and limit of its spec; None for a sweep without [eval]."""
    section = (sections or {}).get("eval")
    if section is None:
        return None
    kept = store.meta(EVAL_META)
    if kept is not None:
        request = EvalRequest.from_json(kept)
        if set(request.tasks) == set(section.get("tasks", ())) and request.limit == section.get("limit"):
            return request
    return EvalRequest(tasks=tuple(section.get("tasks", ())), limit=section.get("limit"))


def evaluated_ids(spec: SweepSpec) -> list[str]:
    """The runs [eval] scores (`spec_sections.EVALUATED_KINDS`)."""
    return [run.run_id for run in spec.runs if run.kind in EVALUATED_KINDS] if spec.evaluation is not None else []


def scored_record(run_dir: Path) -> EvalRecord | None:
    """The run's eval.json, None where it has none (or one that is no eval.json `distillscale eval` wrote)."""
    try:
        return read_eval(run_dir / EVAL_FILE) if (run_dir / EVAL_FILE).is_file() else None
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None


def eval_args(spec: SweepSpec, run_dir: Path, request: EvalRequest) -> tuple[str, ...]:
    """The `distillscale eval` command line that scores the run under [eval]: the tasks its eval.json has
    no standing scores of, added to the file (`--merge`: its other tasks' scores kept)."""
    tasks = request.tasks_to_score(scored_record(run_dir)) or list(request.tasks)
    return ("eval", str(run_dir), *spec.evaluation.args(tasks), "--merge")
