"""A sweep's [eval] section (issue 56), end to end on CPU: a tiny sweep whose runs are each scored by
`distillscale eval` on a local lm-eval task after they train; `sweep plan` counts them, a run with an
eval.json of its [eval] is not scored again, one of another [eval] is (issue 63; and [eval] added to a
sweep that already ran retrains nothing), `sweep export` carries each task's metric as a column, and
`report` carries the scores and plots them."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

pytest.importorskip("lm_eval")

from distillscale.sweeps.export import is_export  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

TASK = "distillscale_tiny_mc"
COLUMN = f"eval:{TASK}:acc"
DATA = REPO_ROOT / "tests" / "data" / "lm_eval_tiny"
SPEC = """
name = "tiny-eval"
[data]
vocab_size = 320
max_bytes = "50k"
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
eval_tokens = "1k"
eval_every = 0
device = "cpu"
[teachers]
n_layers = [1]
tokens_per_param = [0.25, 0.5]
"""
EVAL = """
[eval]
tasks = ["{task}"]
include_path = "tasks"
"""

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread", "offline_datasets")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two 1-layer teachers trained without [eval], then the same sweep run again with it."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("sweep")
    (root / "tasks").mkdir()  # the task YAML, its data file by absolute path (datasets reads from the cwd)
    (root / "tasks" / "questions.jsonl").write_text((DATA / "questions.jsonl").read_text())
    (root / "tasks" / "tiny_mc.yaml").write_text(
        (DATA / "tiny_mc.yaml").read_text().replace("questions.jsonl", str(root / "tasks" / "questions.jsonl")))
    (root / "spec.toml").write_text(SPEC)
    out = root / "out"
    assert main(["sweep", "run", str(root / "spec.toml"), "--out", str(out), "--workers", "2"]) == 0
    trained = {path.parent.name: path.stat().st_mtime_ns for path in (out / "runs").glob("*/result.json")}
    (root / "spec.toml").write_text(SPEC + EVAL.format(task=TASK))
    return {"root": root, "spec": root / "spec.toml", "out": out, "trained": trained}


def _eval_mtimes(out):
    return {path.parent.name: path.stat().st_mtime_ns for path in (out / "runs").glob("*/eval.json")}


def test_sweep_plan_counts_the_runs_it_scores(cli, tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC + EVAL.format(task=TASK))
    code, out, err = cli("sweep", "plan", str(tmp_path / "spec.toml"), "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["counts"]["eval"] == 2
    assert any(note.startswith(f"[eval]: {TASK}: 2 runs scored by `distillscale eval`") for note in plan["assumptions"])


@pytest.fixture(scope="module")
def scored(sweep, cache_dir, one_thread, offline_datasets):
    """The sweep run again with its [eval]: each run scored. The tests below read it in order; each
    later one changes it (a score deleted, weights gone, the [eval] and the task's data edited)."""
    from distillscale.cli import main

    printed, err = io.StringIO(), io.StringIO()
    with redirect_stdout(printed), redirect_stderr(err):
        code = main(["sweep", "run", str(sweep["spec"]), "--out", str(sweep["out"]), "--workers", "2", "--json"])
    assert code == 0, err.getvalue()[-3000:]
    return {**sweep, "counts": json.loads(printed.getvalue())}


@pytest.mark.slow  # the module's sweep scored, 2 exports and 2 reports
def test_each_run_is_scored_once_and_the_export_and_report_carry_the_scores(scored, cli, tmp_path):
    sweep, out, counts = scored, scored["out"], scored["counts"]
    assert counts["completed"] == 2 and counts["evaluated"] == 2 and counts["eval_failed"] == 0
    # [eval] changes no run: nothing was trained again
    assert {path.parent.name: path.stat().st_mtime_ns for path in (out / "runs").glob("*/result.json")} == sweep["trained"]
    scores = {}
    for run_id in sweep["trained"]:
        record = json.loads((out / "runs" / run_id / "eval.json").read_text())
        assert record["tasks"] == [TASK] and (out / "logs" / f"{run_id}.eval.log").is_file()
        scores[run_id] = {s["metric"]: s["value"] for s in record["scores"]}["acc"]
    status = json.loads(cli("sweep", "status", str(out), "--json")[1])  # what `sweep status` says of it
    assert status["scoring"] == {"scored": 2, "scoring": 0, "stale": 0, "pending": 0, "failed": 0}

    # the export: a column per task and metric, each run's score from its eval.json
    export = tmp_path / "runs.csv"
    code, _, err = cli("sweep", "export", str(out), "--out", str(export))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(export.read_text())))
    assert {row["run_id"]: float(row[COLUMN]) for row in rows} == scores
    assert is_export(export)  # an export with score columns is still one `--overwrite` may replace
    code, _, err = cli("sweep", "export", str(out), "--out", str(export), "--overwrite", "--format", "jsonl")
    assert code == 0, err
    assert is_export(export)
    assert {json.loads(line)["run_id"]: json.loads(line)[COLUMN] for line in export.read_text().splitlines()} == scores

    # the report: the scores in report.json, their figure in report.html, from the sweep or its export
    for source in (out, tmp_path / "runs.jsonl"):
        if source.suffix:
            export.rename(source)
        report_dir = tmp_path / f"report-{source.name}"
        code, _, err = cli("report", str(source), "--out", str(report_dir), "--bootstrap", "0")
        assert code == 0, err
        downstream = json.loads((report_dir / "report.json").read_text())["downstream"]
        assert [(d["task"], d["metric"]) for d in downstream] == [(TASK, "acc")]
        assert {r["run_id"]: r["value"] for r in downstream[0]["runs"]} == scores
        assert all(r["val_loss"] > 0 for r in downstream[0]["runs"])
        page = (report_dir / "report.html").read_text()
        assert "Benchmark scores" in page and f"<th>{TASK} (acc)</th>" in page
        assert all(f"<td>{run_id}</td>" in page and f"<td>{value:.4g}</td>" in page for run_id, value in scores.items())


@pytest.mark.slow  # two sweep runs scoring
def test_a_run_is_scored_again_only_when_its_score_is_gone_and_a_failed_scoring_is_counted(scored, cli):
    sweep, out = scored, scored["out"]
    # resumable: a run with an eval.json is not scored again; one whose eval.json is gone is
    before = _eval_mtimes(out)
    gone = sorted(before)[0]
    (out / "runs" / gone / "eval.json").unlink()
    code, printed, err = cli("sweep", "run", str(sweep["spec"]), "--out", str(out), "--workers", "2", "--json")
    assert code == 0, err
    assert json.loads(printed)["evaluated"] == 2
    after = _eval_mtimes(out)
    assert set(after) == set(before)
    assert {run_id: t for run_id, t in after.items() if run_id != gone} == \
        {run_id: t for run_id, t in before.items() if run_id != gone}

    # a scoring that fails (the run's weights are gone) is counted, exits 1, and is tried again next time
    (out / "runs" / gone / "eval.json").unlink()
    weights = out / "runs" / gone / "model.safetensors"
    kept = weights.read_bytes()
    weights.unlink()
    code, printed, err = cli("sweep", "run", str(sweep["spec"]), "--out", str(out), "--workers", "2", "--json")
    assert code == 1 and "1 runs could not be scored ([eval])" in err
    assert json.loads(printed)["eval_failed"] == 1 and json.loads(printed)["evaluated"] == 1
    assert "distillscale: error:" in (out / "logs" / f"{gone}.eval.log").read_text()
    status = json.loads(cli("sweep", "status", str(out), "--json")[1])
    assert {run["run_id"]: run["scoring"] for run in status["runs"]} == {
        run_id: "failed" if run_id == gone else "scored" for run_id in sweep["trained"]}
    weights.write_bytes(kept)


@pytest.mark.slow  # two sweep runs scoring
def test_a_changed_eval_or_task_data_scores_every_run_again_and_keeps_a_users_own_scores(scored, cli):
    sweep, out = scored, scored["out"]
    gone = sorted(sweep["trained"])[0]
    # issue 63: a changed [eval] (here its limit) scores every run again under it; nothing is trained again
    sweep["spec"].write_text(SPEC + EVAL.format(task=TASK) + "limit = 3\n")
    code, printed, err = cli("sweep", "run", str(sweep["spec"]), "--out", str(out), "--workers", "2", "--json")
    assert code == 0, err
    assert json.loads(printed)["evaluated"] == 2 and json.loads(printed)["eval_failed"] == 0
    for run_id in sweep["trained"]:
        record = json.loads((out / "runs" / run_id / "eval.json").read_text())
        assert record["limit"] == 3 and {score["n"] for score in record["scores"]} == {3}
    trained = {path.parent.name: path.stat().st_mtime_ns for path in (out / "runs").glob("*/result.json")}
    assert trained == sweep["trained"]
    status = json.loads(cli("sweep", "status", str(out), "--json")[1])
    assert status["scoring"] == {"scored": 2, "scoring": 0, "stale": 0, "pending": 0, "failed": 0}

    # issue 71: the task's data file edited, its YAML unchanged: every score is stale, none exported, and the
    # next `sweep run` scores them again; a user's own scores of another task in a run's eval.json are kept
    questions = sweep["root"] / "tasks" / "questions.jsonl"
    questions.write_text(questions.read_text().replace('"answer": 0}', '"answer": 2}', 1))
    status = json.loads(cli("sweep", "status", str(out), "--json")[1])
    assert status["scoring"] == {"scored": 0, "scoring": 0, "stale": 2, "pending": 0, "failed": 0}
    code, printed, err = cli("sweep", "export", str(out))
    assert code == 0 and "changed since" in " ".join(err.split())
    assert {row[COLUMN] for row in csv.DictReader(io.StringIO(printed))} == {""}
    mine = out / "runs" / gone / "eval.json"
    record = json.loads(mine.read_text())
    theirs = {**record["scores"][0], "task": "my_task", "value": 0.125}
    mine.write_text(json.dumps({**record, "tasks": [*record["tasks"], "my_task"],
                                "scores": [*record["scores"], theirs]}))
    code, printed, err = cli("sweep", "run", str(sweep["spec"]), "--out", str(out), "--workers", "2", "--json")
    assert code == 0, err
    assert json.loads(printed)["evaluated"] == 2
    kept = json.loads(mine.read_text())
    assert kept["tasks"] == ["my_task", TASK] and theirs in kept["scores"]
    status = json.loads(cli("sweep", "status", str(out), "--json")[1])
    assert status["scoring"] == {"scored": 2, "scoring": 0, "stale": 0, "pending": 0, "failed": 0}


@pytest.mark.slow  # lm-eval indexes its few thousand task files to look the name up (about 10 s)
def test_an_unknown_task_is_refused_before_any_run(sweep, cli, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + EVAL.format(task="no_such_task").replace('"tasks"', f'"{sweep["root"] / "tasks"}"'))
    code, out, err = cli("sweep", "run", str(spec), "--out", str(tmp_path / "out"))
    assert code == 2 and "unknown lm-eval task no_such_task" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("section, says", [
    ("tasks = []", "invalid 'eval': tasks must list lm-eval task names"),
    ('tasks = ["a", "a"]', "tasks lists a task twice"),
    ('tasks = ["a"]\nlimit = 0', "invalid 'eval.limit'"),
    ('tasks = ["a"]\ntask = "b"', "unknown key 'eval.task'"),
])
def test_a_bad_eval_section_is_one_line(cli, tmp_path, section, says):
    (tmp_path / "spec.toml").write_text(SPEC + "[eval]\n" + section + "\n")
    code, out, err = cli("sweep", "plan", str(tmp_path / "spec.toml"))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
