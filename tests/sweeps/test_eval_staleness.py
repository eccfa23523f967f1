"""Scores that stand for what they claim (issue 71), without lm-eval (eval.json files written by hand, the
[eval] job a stub): a task's scores made on a data file that changed since are stale everywhere (`sweep
status`, `sweep export`, `fit downstream`) and the runner scores them again; a sweep's [eval] adds its
tasks' scores to a run's eval.json and keeps a user's scores of other tasks (`eval --merge`, never
`--overwrite`); an lm-eval or distillscale upgrade rescores nothing whose task did not change."""

from __future__ import annotations

import csv
import io
import json

import pytest

from distillscale.evaluation.fingerprint import local_digest
from distillscale.sweeps.placement import Placement
from distillscale.sweeps.runner import SweepLayout, _Scheduler
from distillscale.sweeps.scoring import EVAL_META
from distillscale.sweeps.spec import resolve_sweep_spec
from distillscale.sweeps.store import RunStore
from tests.sweeps.test_status_scoring import EVAL, TABLE, EvalStub, _sweep, eval_json

TASK = EVAL["tasks"][0]
FINGERPRINT = "f" * 64


@pytest.fixture
def scored(tmp_path):
    """A sweep whose [eval] task reads tmp_path/questions.jsonl: the request `sweep run` kept, and the
    teacher's eval.json, scored on that file as it is."""
    data = tmp_path / "questions.jsonl"
    data.write_text('{"question": "2 + 2", "choices": ["3", "4"], "answer": 1}\n')
    files = {str(data): local_digest(str(data))}
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    scoring = {"limit": EVAL["limit"], "lm_eval_version": "0.4.13", "fingerprint": FINGERPRINT, "files": files}
    write_eval(root, runs["teacher"], eval_json([TASK], EVAL["limit"], scorings={TASK: scoring}))
    with RunStore(root) as store:
        store.set_meta(EVAL_META, {"tasks": [TASK], "limit": EVAL["limit"], "lm_eval_version": "0.4.13",
                                   "fingerprints": {TASK: {"fingerprint": FINGERPRINT, "files": files}}})
    return root, runs, data


def write_eval(root, run_id, record):
    (SweepLayout(root).run_dir(run_id) / "eval.json").write_text(json.dumps(record))


def scoring_of(cli, root):
    code, out, err = cli("sweep", "status", root, "--json")
    assert code == 0, err
    return {run["run_id"]: run["scoring"] for run in json.loads(out)["runs"]}


def eval_jobs(root, request_json=None):
    """The [eval] jobs a runner starts now, by run: their `distillscale eval` arguments."""
    spec = resolve_sweep_spec(TABLE | {"eval": EVAL})
    executor = EvalStub()
    executor.workers = 4
    jobs = {}
    submit = executor.submit

    def recording(job):
        jobs[job.args[1].rsplit("/", 1)[-1]] = job.args
        return submit(job)

    executor.submit = recording
    with RunStore(root) as store:
        from distillscale.sweeps.scoring import eval_request

        request = eval_request(SweepLayout(root).spec_sections(), store)
        scheduler = _Scheduler(spec, SweepLayout(root), store, executor, 1, False,
                               Placement(slots=(None,) * 4, gpus=(), scheduler=True), request=request)
        scheduler._start_evals(scheduler._statuses())
    return jobs


def test_scores_of_a_data_file_edited_since_are_stale_everywhere(cli, scored):
    root, runs, data = scored
    assert scoring_of(cli, root)[runs["teacher"]] == "scored"
    assert runs["teacher"] not in eval_jobs(root)
    data.write_text(data.read_text().replace('"answer": 1', '"answer": 0'))  # the YAML unchanged

    assert scoring_of(cli, root)[runs["teacher"]] == "stale"
    code, out, err = cli("sweep", "export", root)
    assert code == 0, err
    rows = {row["run_id"]: row for row in csv.DictReader(io.StringIO(out))}
    assert rows[runs["teacher"]][f"eval:{TASK}:acc"] == ""  # never exported as scored
    said = " ".join(err.split())
    assert f"the scores of {runs['teacher']}" in said and f"{data} changed since" in said
    job = eval_jobs(root)[runs["teacher"]]
    assert job[job.index("--tasks") + 1] == TASK and job[-1] == "--merge"


def test_scores_stand_where_the_data_moved_unchanged(cli, scored, tmp_path):
    """The sweep (or its data) on another machine: a file not here cannot say the scores are stale, and a
    request made here, the same content at another path, rescores nothing."""
    root, runs, data = scored
    moved = tmp_path / "elsewhere.jsonl"
    data.rename(moved)
    assert scoring_of(cli, root)[runs["teacher"]] == "scored"
    with RunStore(root) as store:
        request = store.meta(EVAL_META)
        request["fingerprints"][TASK]["files"] = {str(moved): local_digest(str(moved))}
        store.set_meta(EVAL_META, request)
    assert scoring_of(cli, root)[runs["teacher"]] == "scored" and runs["teacher"] not in eval_jobs(root)
    moved.write_text(moved.read_text() + '{"question": "1 + 1", "choices": ["2"], "answer": 0}\n')
    assert scoring_of(cli, root)[runs["teacher"]] == "stale"


def test_a_users_own_scores_of_other_tasks_are_kept(cli, scored):
    """A run the user scored on another task (`distillscale eval RUN --tasks hellaswag`): the sweep adds
    its [eval] task to the file (--merge), never replaces the file (--overwrite)."""
    root, runs, _ = scored
    write_eval(root, runs["student"], eval_json(["hellaswag"], None, value=0.61))
    job = eval_jobs(root)[runs["student"]]
    assert "--overwrite" not in job and job[-1] == "--merge"
    assert job[job.index("--tasks") + 1] == TASK  # only the [eval]'s task is scored

    # a run scored on the [eval] task and on the user's own: scored, not rescored, both exported
    teacher = json.loads((SweepLayout(root).run_dir(runs["teacher"]) / "eval.json").read_text())
    user = eval_json(["hellaswag"], None, value=0.61)
    teacher |= {"tasks": [TASK, "hellaswag"], "scores": teacher["scores"] + user["scores"]}
    write_eval(root, runs["teacher"], teacher)
    assert scoring_of(cli, root)[runs["teacher"]] == "scored"
    assert runs["teacher"] not in eval_jobs(root)
    rows = {row["run_id"]: row for row in csv.DictReader(io.StringIO(cli("sweep", "export", root)[1]))}
    assert (rows[runs["teacher"]][f"eval:{TASK}:acc"], rows[runs["teacher"]]["eval:hellaswag:acc"]) == ("0.5", "0.61")


def test_an_upgrade_rescores_nothing(cli, scored):
    """Scored under lm-eval 0.4.13 and distillscale 0.1.0; the [eval] now runs under 0.4.14 and another
    distillscale: the task's fingerprint is the same, so are its scores."""
    root, runs, _ = scored
    with RunStore(root) as store:
        store.set_meta(EVAL_META, store.meta(EVAL_META) | {"lm_eval_version": "0.4.14"})
    assert scoring_of(cli, root)[runs["teacher"]] == "scored"
    assert runs["teacher"] not in eval_jobs(root)


def test_fit_downstream_refuses_runs_scored_on_data_changed_since(cli, tmp_path):
    from tests.conftest import TEST_DATA

    records = TEST_DATA / "records"
    result = json.loads((records / "result-train-2026-11-23.json").read_text())
    data = tmp_path / "questions.jsonl"
    data.write_text("{}\n")
    files = {str(data): local_digest(str(data))}
    runs = tmp_path / "runs"
    for i, loss in enumerate([2.2, 2.5, 2.8, 3.1, 3.4, 3.7]):
        directory = runs / f"r{i}"
        directory.mkdir(parents=True)
        (directory / "config.json").write_text((records / "config-2026-11-23.json").read_text())
        (directory / "result.json").write_text(json.dumps({**result, "val_loss": loss}))
        scoring = {"limit": None, "lm_eval_version": "0.4.13", "fingerprint": FINGERPRINT, "files": files}
        (directory / "eval.json").write_text(json.dumps(eval_json(["a"], None, value=0.9 - 0.1 * i,
                                                                  scorings={"a": scoring})))
    assert cli("fit", "downstream", runs, "--bootstrap", "0")[0] == 0
    data.write_text("{\"edited\": 1}\n")
    code, _, err = cli("fit", "downstream", runs, "--bootstrap", "0")
    said = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "r0, r1, r2 and 3 more (6 of 6) with data that changed since" in said and f"{data} changed since" in said
