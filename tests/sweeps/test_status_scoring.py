"""`sweep status` with [eval] (issue 56): each completed run that [eval] scores is scored (its eval.json),
waits for scoring, or failed to score (its logs/<run_id>.eval.log without an eval.json), read from the
files the runner reads, or is being scored by a live runner's [eval] job (the store says which); a
"scored" column and one summary line, the same keys in --json. A sweep without [eval] shows what it
always did. No lm-eval: the files of a scoring are written by hand, its job is a stub."""

from __future__ import annotations

import json
from concurrent.futures import Future

import pytest
from filelock import FileLock

from distillscale.sweeps.placement import Placement
from distillscale.sweeps.runner import SweepLayout, _Scheduler
from distillscale.sweeps.spec import resolve_sweep_spec
from distillscale.sweeps.store import RunStore

TABLE = {"name": "scored", "data": {"vocab_size": 320, "max_bytes": "50k", "seq_len": 32},
         "model": {"aspect_ratio": 32, "head_dim": 16, "batch_size": 8, "device": "cpu"},
         "teachers": {"n_layers": [1], "tokens_per_param": 4},
         "students": {"n_layers": [1], "tokens_per_param": 2, "student_init": ["scratch", "pruned"]},
         "distill": {"supervised_baselines": True}}
EVAL = {"tasks": ["arc_easy"], "limit": 10}
HEADERS = ["run", "kind", "status", "params", "tokens", "val", "loss", "wall"]


def eval_json(tasks, limit, value=0.5, **more):
    """An eval.json as `distillscale eval` writes it (format 2), scored on `tasks` with `limit`."""
    from distillscale.evaluation.scores import EVAL_FORMAT

    scores = [{"task": task, "metric": "acc", "value": value, "stderr": 0.01, "n": limit or 100,
               "config_hash": "0" * 64, "lm_eval_version": "0.4.13"} for task in tasks]
    return {"format": EVAL_FORMAT, "model": "run", "tasks": list(tasks), "limit": limit, "lm_eval_version": "0.4.13",
            "scores": scores, "task_sources": {}, "task_versions": {}, "distillscale_version": "0.1.0", **more}


def _sweep(root, evaluation: bool):
    """A sweep directory as `sweep run` leaves it, without training: a teacher scored, a baseline whose
    scoring failed, a scratch student waiting for scoring, the pruned start (a kind [eval] does not
    score) completed, and the pruned student not run yet. Returns the runs by kind."""
    spec = resolve_sweep_spec(TABLE | ({"eval": EVAL} if evaluation else {}))
    layout = SweepLayout(root)
    root.mkdir()
    layout.spec_path.write_text(spec.to_toml())
    runs = {}
    for run in spec.runs:
        runs.setdefault(run.kind, []).append(run.run_id)
    teacher, = runs["teacher"]
    baseline, = runs["baseline"]
    pruned, = runs["pruned"]
    scratch, waiting = runs["student"]  # the scratch student, then the one from the pruned start
    with RunStore(root, create=True) as store:
        store.add((run.run_id, run.kind, run.to_config(), run.depends_on) for run in spec.runs)
        for run_id in (teacher, baseline, pruned, scratch):
            store.claim(run_id)
            store.finish(run_id, "completed", result={"val_loss": 5.0})
    for run_id in (teacher, baseline, pruned, scratch):
        layout.run_dir(run_id).mkdir(parents=True)
    layout.eval_log_path(teacher).parent.mkdir()
    (layout.run_dir(teacher) / "eval.json").write_text(json.dumps(eval_json(EVAL["tasks"], EVAL["limit"])))
    layout.eval_log_path(teacher).write_text("scored\n")  # a scoring that succeeded leaves its log too
    layout.eval_log_path(baseline).write_text("Traceback ...\nRuntimeError: out of memory\n")
    return {"teacher": teacher, "baseline": baseline, "pruned": pruned, "student": scratch, "waiting": waiting}


@pytest.mark.parametrize("as_json", [True, False])
def test_status_shows_which_runs_are_scored_waiting_or_failed(cli, tmp_path, as_json):
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    if as_json:
        code, out, err = cli("sweep", "status", root, "--json")
        assert code == 0, err
        status = json.loads(out)
        assert status["scoring"] == {"scored": 1, "scoring": 0, "stale": 0, "pending": 1, "failed": 1}
        by_id = {run["run_id"]: run["scoring"] for run in status["runs"]}
        assert by_id == {runs["teacher"]: "scored", runs["baseline"]: "failed", runs["pruned"]: None,
                         runs["student"]: "pending", runs["waiting"]: None}
    else:
        code, out, err = cli("sweep", "status", root)
        assert code == 0, err
        lines = out.splitlines()
        # at 80 columns the table may come in parts, each under the run column again; ids are never cut
        headers = [line.split() for line in lines if line.startswith("run ")]
        assert [word for header in headers for word in header[1:]] == HEADERS[1:-1] + ["scored", "wall"]
        cells = {}
        for line in lines:
            if line.split() and line.split()[0] in runs.values():
                cells.setdefault(line.split()[0], []).extend(line.split()[1:])
        assert len(cells) == len(runs)
        assert "yes" in cells[runs["teacher"]] and "failed" in cells[runs["baseline"]]
        assert "waiting" in cells[runs["student"]]
        assert not {"yes", "failed", "waiting"} & set(cells[runs["pruned"]] + cells[runs["waiting"]])
        log = root / "logs" / f"{runs['baseline']}.eval.log"
        said = "".join(out.split())  # a long line folds at the terminal's width
        assert "".join(f"scoring ([eval]): 1 scored, 1 waiting for scoring, 1 failed (see {log}; "
                       f"`sweep run` retries it)".split()) in said
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before  # read-only


def test_two_failed_scorings_are_one_line(cli, tmp_path):
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    SweepLayout(root).eval_log_path(runs["student"]).write_text("killed\n")
    code, out, err = cli("sweep", "status", root)
    assert code == 0, err
    said = "".join(out.split())
    assert "".join(f"1 scored, 0 waiting for scoring, 2 failed (see {root / 'logs'}/<run_id>.eval.log of each; "
                   "`sweep run` retries them)".split()) in said


def test_a_sweep_without_eval_shows_no_scoring(cli, tmp_path):
    root = tmp_path / "sweep"
    _sweep(root, evaluation=False)  # even with the files of a scoring in its directories
    code, out, err = cli("sweep", "status", root, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert "scoring" not in status and all("scoring" not in run for run in status["runs"])
    code, out, err = cli("sweep", "status", root)
    assert code == 0, err
    header, = [line for line in out.splitlines() if line.startswith("run ")]
    assert header.split() == HEADERS
    assert "scor" not in out and "waiting" not in out


def test_a_damaged_spec_is_one_line(cli, tmp_path):
    root = tmp_path / "sweep"
    _sweep(root, evaluation=True)
    SweepLayout(root).spec_path.write_text("[eval\n")
    code, out, err = cli("sweep", "status", root)
    assert code == 2 and "spec.toml is not valid TOML" in err and err.strip().endswith("restore it")
    assert len(err.strip().splitlines()) == 1


class EvalStub:
    """An executor whose [eval] job writes a line to its log and runs until the test ends it."""

    workers = 1

    def __init__(self):
        self.futures = []

    def submit(self, job):
        assert job.args[0] == "eval"
        job.log_path.write_text("Running loglikelihood requests\n")
        self.futures.append(Future())
        return self.futures[-1]


def _scoring_of(cli, root, run_id, live: bool):
    """The run's scoring as `sweep status --json` says it, with a live runner (its lock held) or none."""
    if not live:
        return next(run["scoring"] for run in json.loads(cli("sweep", "status", root, "--json")[1])["runs"]
                    if run["run_id"] == run_id)
    with FileLock(SweepLayout(root).lock_path):
        return _scoring_of(cli, root, run_id, live=False)


def test_a_run_being_scored_is_not_failed(cli, tmp_path):
    """The [eval] job's log exists from its start (and a retried run's from its failed try): while the
    live runner's job scores the run, status says `scoring`; once the job ends without an eval.json,
    `failed`; a dead runner's jobs score nothing."""
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=True)
    spec = resolve_sweep_spec(TABLE | {"eval": EVAL})
    retried = runs["baseline"]  # its earlier scoring failed: the runner's one worker tries it first
    executor = EvalStub()
    with RunStore(root) as store:
        scheduler = _Scheduler(spec, SweepLayout(root), store, executor, 1, False,
                               Placement(slots=(None,), gpus=(), scheduler=True))
        scheduler._start_evals(scheduler._statuses())
        assert store.scoring() == {retried}
        assert _scoring_of(cli, root, retried, live=True) == "scoring"
        with FileLock(SweepLayout(root).lock_path):
            out = " ".join(cli("sweep", "status", root)[1].split())
        assert "1 scored, 1 being scored, 1 waiting for scoring, 0 failed" in out
        assert _scoring_of(cli, root, retried, live=False) == "failed"  # no runner: nothing scores it
        future, = executor.futures
        future.set_result(1)
        line = scheduler._record_eval(next(run for run in spec.runs if run.run_id == retried), future, 1.0)
        assert line.plain.startswith(f"eval failed {retried}") and store.scoring() == set()
        assert _scoring_of(cli, root, retried, live=True) == "failed"
        store.set_scoring(retried, True)  # a runner killed while scoring it
        assert _scoring_of(cli, root, retried, live=False) == "failed"
        assert store.reset_unfinished() == 0 and store.scoring() == set()  # the next runner starts afresh
