"""Scores that match their configuration (issue 63): a sweep's eval.json files record their tasks, limit
and versions; a changed [eval] scores again the runs whose eval.json it does not match (`sweep status`
counts them as stale, not scored); `sweep export` (and so `report`) and `fit downstream` never mix
scores of different configurations. No lm-eval: the eval.json files are written by hand, the [eval]
job is a stub (tests/sweeps/test_status_scoring.py's)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from distillscale.sweeps.placement import Placement
from distillscale.sweeps.runner import SweepLayout, _Scheduler
from distillscale.sweeps.spec import resolve_sweep_spec
from distillscale.sweeps.store import RunStore
from tests.conftest import TEST_DATA
from tests.sweeps.test_status_scoring import EVAL, TABLE, EvalStub, _sweep, eval_json


def _scored_with_another_limit(root, runs):
    """The scratch student scored with all examples, where the spec's [eval] asks for limit 10."""
    path = SweepLayout(root).run_dir(runs["student"]) / "eval.json"
    path.write_text(json.dumps(eval_json(EVAL["tasks"], None, value=0.75)))
    return path


def test_status_counts_an_eval_json_of_another_eval_as_stale(cli, tmp_path):
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    _scored_with_another_limit(root, runs)
    code, out, err = cli("sweep", "status", root, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["scoring"] == {"scored": 1, "scoring": 0, "stale": 1, "pending": 0, "failed": 1}
    assert {run["run_id"]: run["scoring"] for run in status["runs"]}[runs["student"]] == "stale"
    code, out, err = cli("sweep", "status", root)
    said = " ".join(out.split())
    assert "1 scored, 1 stale (scored under another [eval]: `sweep run` scores them again)" in said


def test_the_runner_scores_again_a_run_whose_eval_json_does_not_match(tmp_path):
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    stale = _scored_with_another_limit(root, runs)
    spec = resolve_sweep_spec(TABLE | {"eval": EVAL})
    (SweepLayout(root).eval_log_path(runs["baseline"])).unlink()  # only the stale run and the waiting one left
    executor = EvalStub()
    executor.workers = 3
    with RunStore(root) as store:
        scheduler = _Scheduler(spec, SweepLayout(root), store, executor, 1, False,
                               Placement(slots=(None,) * 3, gpus=(), scheduler=True))
        scheduler._start_evals(scheduler._statuses())
        assert store.scoring() == {runs["student"], runs["baseline"]}  # not the teacher: its eval.json matches
        [job_args] = [future_args for future_args in _jobs(scheduler) if runs["student"] in future_args[1]]
        assert job_args[-1] == "--merge" and "--limit" in job_args  # the eval.json's other tasks' scores kept
        # a rescoring that fails leaves the eval.json of the other [eval]: the run is not scored
        future = next(f for f, run in scheduler.in_flight.items() if run.run_id == runs["student"])
        future.set_result(2)
        line = scheduler._record_eval(scheduler.in_flight[future], future, 1.0)
        assert line.plain.startswith(f"eval failed {runs['student']}") and stale.is_file()


def _jobs(scheduler):
    return [job.args for job in scheduler.executor.jobs]


@pytest.fixture(autouse=True)
def _record_jobs(monkeypatch):
    """EvalStub keeps the jobs it was given."""
    submit = EvalStub.submit

    def recording(self, job):
        self.__dict__.setdefault("jobs", []).append(job)
        return submit(self, job)

    monkeypatch.setattr(EvalStub, "submit", recording)


def test_export_leaves_out_the_scores_of_another_eval_and_says_so(cli, tmp_path):
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    _scored_with_another_limit(root, runs)
    code, out, err = cli("sweep", "export", root)
    assert code == 0, err
    rows = {row["run_id"]: row for row in csv.DictReader(io.StringIO(out))}
    column = f"eval:{EVAL['tasks'][0]}:acc"
    assert rows[runs["teacher"]][column] == "0.5" and rows[runs["student"]][column] == ""
    said = " ".join(err.split())
    assert f"the scores of {runs['student']} (1 of 2 scored runs) are of another [eval] (all examples, not limit 10)" \
        in said and "`sweep run` scores them again" in said


def test_fit_downstream_refuses_runs_scored_under_different_limits(cli, tmp_path):
    runs = tmp_path / "runs"
    records = TEST_DATA / "records"
    result = json.loads((records / "result-train-2026-11-23.json").read_text())
    for i, loss in enumerate([2.2, 2.5, 2.8, 3.1, 3.4, 3.7]):
        directory = runs / f"r{i}"
        directory.mkdir(parents=True)
        (directory / "config.json").write_text((records / "config-2026-11-23.json").read_text())
        (directory / "result.json").write_text(json.dumps({**result, "val_loss": loss}))
        record = eval_json(["a"], 10 if i in (1, 4) else None, value=0.9 - 0.1 * i)
        (directory / "eval.json").write_text(json.dumps(record))
    code, _, err = cli("fit", "downstream", runs, "--bootstrap", "0")
    said = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "were scored on a under different configurations" in said
    assert "r1, r4 (2 of 6) with limit 10, not all examples" in said and "--overwrite" in said


def test_a_request_says_how_an_eval_json_differs():
    from distillscale.evaluation.scores import EvalRecord, EvalRequest

    record = EvalRecord.from_json(eval_json(["a", "b"], 10))
    assert EvalRequest(tasks=("b", "a"), limit=10).mismatch(record) is None
    assert EvalRequest(tasks=("a",), limit=10).mismatch(record) is None  # b: scores of another task, kept
    assert EvalRequest(tasks=("a", "c"), limit=10).mismatch(record) == "no scores of task c"
    assert EvalRequest(tasks=("a", "b"), limit=None).mismatch(record) == "limit 10, not all examples"
    # issue 71: lm-eval's version is recorded, never compared (an upgrade rescores nothing)
    assert EvalRequest(tasks=("a", "b"), limit=10, lm_eval_version="0.4.14").mismatch(record) is None
    assert "no record of task a's config" in EvalRequest(("a", "b"), 10, "0.4.13", {"a": "1" * 64}).mismatch(record)
    round_trip = EvalRecord.from_json(json.loads(json.dumps(EvalRecord.from_json(
        eval_json(["a"], 10, task_sources={"a": "f" * 64}, task_versions={"a": "1.0"})).to_json())))
    assert round_trip.task_sources == {"a": "f" * 64} and round_trip.task_versions == {"a": "1.0"}
    assert round_trip.distillscale_version == "0.1.0"
