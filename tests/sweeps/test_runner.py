"""The sweep runner end to end on tiny models: teachers, baselines and students; a failed run recorded and
retried; a runner killed mid-sweep and started again; status and export; the Slurm path via submitit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from filelock import FileLock

from distillscale.cli import main
from distillscale.sweeps.executors import SlurmExecutor
from distillscale.sweeps.export import RECORD_COLUMNS, export_records
from distillscale.sweeps.runner import SweepLayout, run_sweep
from distillscale.sweeps.spec import load_sweep_spec
from distillscale.sweeps.store import RunStore
from distillscale.settings import load_config
from distillscale.training.config import CorpusSettings, DistillConfig, TrainConfig
from distillscale.training.run_dir import RunDirectory
from distillscale.tables import parse_filter, read_table

pytestmark = pytest.mark.usefixtures("cache_dir")

# One layer of width 32: 16,512 non-embedding parameters; M = 1 is 65 steps of 256 tokens.
TEACHERS = """
name = "tiny"
[data]
vocab_size = 320
max_bytes = "200k"
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
eval_tokens = "2k"
eval_every = 0
save_every = 10
device = "cpu"
[teachers]
n_layers = [1]
tokens_per_param = {teacher_m}
"""
STUDENTS = """
[students]
n_layers = [1]
tokens_per_param = 0.5
[distill]
kd_weight = 0.5
supervised_baselines = {baselines}
"""


def write_spec(path, teacher_m="[1, 2]", baselines: str | None = "true"):
    """A spec with one or more teachers, and one student size unless `baselines` is None."""
    text = TEACHERS.format(teacher_m=teacher_m)
    path.write_text(text if baselines is None else text + STUDENTS.format(baselines=baselines))
    return path


def records_by_id(sweep_dir):
    with RunStore(sweep_dir) as store:
        return {record.id: record for record in store.records()}


def result_mtimes(sweep_dir):
    return {path.parent.name: path.stat().st_mtime_ns for path in (sweep_dir / "runs").glob("*/result.json")}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two teachers (M = 1, 2), a baseline and two students. First one teacher's run directory holds a
    stray file, so that run fails and its student is blocked; then the file is removed and the same
    command runs again."""
    root = tmp_path_factory.mktemp("sweep")
    spec = write_spec(root / "spec.toml")
    sweep_dir = root / "out"
    plan = load_sweep_spec(spec)
    broken = plan.runs[0]
    sweep_dir.mkdir()
    (sweep_dir / "runner.lock").touch()  # the runner's own directory, as if it had started here before
    stray = SweepLayout(sweep_dir).run_dir(broken.run_id) / "notes.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("not a run")

    first_code = main(["sweep", "run", str(spec), "--out", str(sweep_dir), "--workers", "2"])
    first = records_by_id(sweep_dir)
    first_mtimes = result_mtimes(sweep_dir)
    stray.unlink()
    second_code = main(["sweep", "run", str(spec), "--out", str(sweep_dir), "--workers", "2"])
    return {"spec": spec, "dir": sweep_dir, "plan": plan, "broken": broken, "first_code": first_code,
            "first": first, "first_mtimes": first_mtimes, "second_code": second_code}


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_a_failed_run_is_recorded_and_blocks_only_its_students(sweep):
    first, broken = sweep["first"], sweep["broken"]
    assert sweep["first_code"] == 1
    assert first[broken.run_id].status == "failed"
    assert "exit status 2" in first[broken.run_id].error
    assert "is not a distillscale run directory" in first[broken.run_id].error  # the run's own last lines
    for run in sweep["plan"].runs:
        if run.teacher_id == broken.run_id:
            assert first[run.run_id].status == "blocked"
            assert first[run.run_id].error == f"teacher {broken.run_id} failed"
            assert first[run.run_id].attempts == 0
        elif run.run_id != broken.run_id:
            assert first[run.run_id].status == "completed" and first[run.run_id].attempts == 1


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_running_again_retries_failures_and_recomputes_nothing(sweep):
    assert sweep["second_code"] == 0
    second = records_by_id(sweep["dir"])
    assert {record.status for record in second.values()} == {"completed"}
    for run_id, record in second.items():
        was = sweep["first"][run_id]
        expected_attempts = 2 if was.status == "failed" else 1
        assert record.attempts == expected_attempts, run_id
    mtimes = result_mtimes(sweep["dir"])
    assert set(mtimes) == set(second)
    for run_id, mtime in sweep["first_mtimes"].items():
        assert mtimes[run_id] == mtime, f"{run_id} was recomputed"


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_students_learn_from_their_teachers(sweep):
    records = {record["run_id"]: record for record in export_records(sweep["dir"])}
    assert len(records) == 5 and all(list(record) == list(RECORD_COLUMNS) for record in records.values())
    teachers = [r for r in records.values() if r["kind"] == "teacher"]
    students = [r for r in records.values() if r["kind"] == "student"]
    baseline, = [r for r in records.values() if r["kind"] == "baseline"]
    assert len(teachers) == 2 and len(students) == 2
    for student in students:
        teacher = records[student["teacher_id"]]
        # the teacher measured on the same validation split by the distillation run
        assert student["teacher_loss"] == pytest.approx(teacher["val_loss"], rel=1e-4)
        assert student["teacher_params"] == teacher["non_embedding_params"]
        assert student["teacher_tokens"] == teacher["tokens"]
        assert student["tokens"] == baseline["tokens"] and student["flops"] > baseline["flops"]
        assert student["val_loss"] > 0 and student["wall_seconds"] > 0
    for record in teachers + [baseline]:
        assert record["teacher_id"] is None and record["teacher_loss"] is None and record["budget"] is None
    assert sorted(t["tokens_per_param"] for t in teachers) == pytest.approx([1, 2], rel=0.02)


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_export_feeds_the_law_fitter(sweep, cli, tmp_path):
    code, out, _ = cli("sweep", "export", sweep["dir"], "--format", "csv", "--out", tmp_path / "runs.csv")
    assert code == 0 and "wrote 5 runs" in out
    table = read_table(tmp_path / "runs.csv")
    assert table.columns == RECORD_COLUMNS
    runs = table.numeric(["non_embedding_params", "tokens", "val_loss"])
    supervised = parse_filter("kind != 'student'").mask({name: table.values(name) for name in table.columns})
    assert len(runs) == 5 and supervised.sum() == 3
    assert table.numeric(["teacher_loss"], drop_invalid=True).n_dropped == 3
    code, out, _ = cli("sweep", "export", sweep["dir"], "--format", "jsonl")
    assert [json.loads(line) for line in out.splitlines()] == export_records(sweep["dir"])


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_status_counts_runs(sweep, cli):
    code, out, _ = cli("sweep", "status", sweep["dir"], "--json")
    status = json.loads(out)
    assert code == 0 and status["total"] == 5 and status["counts"]["completed"] == 5
    assert status["eta_seconds"] == 0 and status["workers"] == 2
    assert {run["status"] for run in status["runs"]} == {"completed"}
    code, out, _ = cli("sweep", "status", sweep["dir"])
    assert code == 0 and "5 runs: 5 done" in out and "ETA 00:00:00" in out


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_a_sweep_directory_takes_one_spec_and_one_runner(sweep, cli, tmp_path):
    other = write_spec(tmp_path / "other.toml", teacher_m="[3]")
    code, _, err = cli("sweep", "run", other, "--out", sweep["dir"])
    assert code == 2 and "holds a sweep of a different spec" in err
    with FileLock(SweepLayout(sweep["dir"]).lock_path):
        code, _, err = cli("sweep", "run", sweep["spec"], "--out", sweep["dir"])
    assert code == 2 and "another `distillscale sweep run` is working on" in err


@pytest.mark.slow  # a sweep killed and run again (30-40 s)
def test_killed_runner_resumes_and_runs_everything_exactly_once(tmp_path):
    spec = write_spec(tmp_path / "spec.toml", teacher_m="[1, 4]", baselines="false")
    sweep_dir = tmp_path / "out"
    runner = subprocess.Popen([sys.executable, "-m", "distillscale.cli", "sweep", "run", str(spec),
                               "--out", str(sweep_dir), "--workers", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until a run has finished and another has a checkpoint
            if (sweep_dir / "runs.sqlite").exists():
                records = records_by_id(sweep_dir)
                checkpointed = [r for r in records.values() if r.status == "running" and
                                (SweepLayout(sweep_dir).run_dir(r.id) / "state" / "checkpoint.pt").exists()]
                if checkpointed and any(r.status == "completed" for r in records.values()):
                    break
            assert runner.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.2)
        else:
            pytest.fail("no run finished within 120 s")
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and every run it started
        runner.wait()
    before = records_by_id(sweep_dir)
    mtimes = result_mtimes(sweep_dir)

    assert main(["sweep", "run", str(spec), "--out", str(sweep_dir), "--workers", "2"]) == 0
    after = records_by_id(sweep_dir)
    assert len(after) == 4 and {record.status for record in after.values()} == {"completed"}
    for run_id, record in after.items():  # a run finished at the kill is not started again; others once more
        assert record.attempts == before[run_id].attempts + (0 if run_id in mtimes else 1), run_id
    assert {run_id: mtime for run_id, mtime in result_mtimes(sweep_dir).items() if run_id in mtimes} == mtimes
    assert any(record.attempts == 2 for record in after.values())  # something was interrupted
    resumed = [run_id for run_id in after if "resuming" in SweepLayout(sweep_dir).log_path(run_id).read_text()]
    # A checkpointed run may still have finished before the kill landed; the others resumed.
    assert set(resumed) >= {record.id for record in checkpointed if record.id not in mtimes}


def test_slurm_executor_runs_each_run_as_a_submitit_job(tmp_path):
    spec = load_sweep_spec(write_spec(tmp_path / "spec.toml", teacher_m="0.5", baselines=None))
    executor = SlurmExecutor(1, tmp_path / "out" / "slurm", cluster="local")
    counts = run_sweep(spec, tmp_path / "out", executor, progress=False)
    assert counts["completed"] == 1
    assert list((tmp_path / "out" / "slurm").glob("*_submitted.pkl"))  # went through submitit
    (job_id,) = executor.job_ids.values()  # recorded, for a later runner to adopt while the job runs
    with RunStore(tmp_path / "out") as store:
        assert store.meta(f"job/{spec.runs[0].run_id}") == job_id
    assert SlurmExecutor(1, tmp_path / "out" / "slurm", cluster="local").adopt(job_id) is None  # it ended


class ClusterStub:
    """An executor whose jobs outlive the runner, as Slurm's do: each submission gets a job id; `adopt`
    answers for the jobs in `still_running`."""

    places_devices = True

    def __init__(self, still_running=()):
        self.workers, self.job_ids, self.submitted, self.adopted = 1, {}, [], []
        self.still_running = set(still_running)

    def submit(self, job):
        from concurrent.futures import Future

        self.submitted.append(job)
        self.job_ids[job.log_path] = f"job-{len(self.submitted)}"
        future = Future()
        future.set_result(1)
        return future

    def adopt(self, job_id):
        from concurrent.futures import Future

        self.adopted.append(job_id)
        if job_id not in self.still_running:
            return None
        future = Future()
        future.set_result(1)
        return future

    def shutdown(self):
        pass


def test_a_new_runner_waits_on_the_cluster_jobs_of_a_killed_one_instead_of_submitting_them_again(tmp_path):
    spec = load_sweep_spec(write_spec(tmp_path / "spec.toml", teacher_m="0.5", baselines=None))
    (run,) = spec.runs
    first = ClusterStub()
    run_sweep(spec, tmp_path / "out", first, progress=False)
    assert len(first.submitted) == 1 and records_by_id(tmp_path / "out")[run.run_id].attempts == 1
    # the cluster gives the job its devices (--slurm-gpus): no CPU slot's CUDA_VISIBLE_DEVICES="" on it
    assert not {"CUDA_VISIBLE_DEVICES", "DISTILLSCALE_DEVICE"} & set(first.submitted[0].env)
    with RunStore(tmp_path / "out") as store:  # as if the runner was killed with the job still running
        store._db.execute("UPDATE runs SET status = 'running'")
    again = ClusterStub(still_running={"job-1"})
    run_sweep(spec, tmp_path / "out", again, progress=False)
    assert again.adopted == ["job-1"] and again.submitted == []  # waited on, not submitted a second time
    assert records_by_id(tmp_path / "out")[run.run_id].attempts == 1
    with RunStore(tmp_path / "out") as store:
        store._db.execute("UPDATE runs SET status = 'running'")
    ended = ClusterStub()  # the job ended meanwhile: the run is submitted again
    run_sweep(spec, tmp_path / "out", ended, progress=False)
    assert ended.adopted == ["job-1"] and len(ended.submitted) == 1


@pytest.mark.slow  # the module's sweep (about 25 s)
def test_each_run_is_launched_from_its_resolved_config_file(sweep):
    """The runner writes each run's config as a TOML file and runs `train|distill --config` on it: the
    run directory's config is that file's, teacher and fork links included."""
    layout = SweepLayout(sweep["dir"])
    for run in sweep["plan"].runs:
        config_class = DistillConfig if run.command == "distill" else TrainConfig
        from_file = load_config(config_class, layout.config_path(run.run_id), None)
        assert from_file.out == layout.run_dir(run.run_id)
        assert (from_file.teacher == layout.run_dir(run.teacher_id)) if run.teacher_id else True
        if run.run_id == sweep["broken"].run_id:
            continue
        started = RunDirectory(layout.run_dir(run.run_id)).stored_config(config_class)
        resolved_from_teacher = set(CorpusSettings.model_fields) | {"teacher"}  # its corpus and tokenizer
        assert set(started.differing_keys(from_file)) <= resolved_from_teacher, run.run_id


@pytest.mark.parametrize("args, message", [
    (["status", "{tmp}"], "holds no sweep (runs.sqlite not found)"),
    (["export", "{tmp}"], "holds no sweep (runs.sqlite not found)"),
    (["export", "{tmp}", "--format", "xml"], "unknown --format 'xml': use csv or jsonl"),
    (["run", "{spec}", "--executor", "pbs"], "unknown --executor 'pbs': use local or slurm"),
])
def test_bad_sweep_commands(cli, tmp_path, args, message):
    spec = write_spec(tmp_path / "spec.toml")
    code, _, err = cli("sweep", *[a.format(tmp=tmp_path, spec=spec) for a in args])
    assert code == 2 and err.startswith("distillscale: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs.sqlite").exists()


def write_wsd_spec(path):
    text = TEACHERS.format(teacher_m="[0.5, 1, 2]").replace('device = "cpu"', 'device = "cpu"\nschedule = "wsd"')
    path.write_text(text)
    return path


def test_a_wsd_sweep_forks_every_budget_from_one_run_and_counts_the_compute_saved(tmp_path, cli):
    spec = write_wsd_spec(tmp_path / "spec.toml")
    sweep_dir = tmp_path / "out"
    assert cli("sweep", "run", spec, "--out", sweep_dir, "--workers", "2")[0] == 0
    records = records_by_id(sweep_dir)
    assert len(records) == 3 and {record.status for record in records.values()} == {"completed"}
    parent, = [record for record in records.values() if not record.config["parent_id"]]
    forks = [record for record in records.values() if record.config["parent_id"]]
    assert parent.config["tokens_per_param"] == 2 and len(forks) == 2
    for fork in forks:
        assert fork.result["fork"]["parent"] == str(SweepLayout(sweep_dir.absolute()).run_dir(parent.id))
        assert fork.started_at >= parent.finished_at
    assert sorted(r["tokens_per_param"] for r in export_records(sweep_dir)) == pytest.approx([0.5, 1, 2], rel=0.03)
    code, out, _ = cli("sweep", "status", sweep_dir, "--json")
    compute = json.loads(out)["compute"]
    separate = sum(record.result["flops"] for record in records.values())
    shared = sum(fork.result["fork"]["shared_flops"] for fork in forks)
    assert compute["flops_separate"] == pytest.approx(separate) and compute["forks"] == 2
    assert compute["flops_spent"] == pytest.approx(separate - shared)
    assert 0.3 < compute["saved_fraction"] < 0.4  # 2 + 20% of (0.5 + 1) instead of 3.5 parameters' worth
    code, out, _ = cli("sweep", "status", sweep_dir)
    assert "saved by 2 WSD forks" in out


@pytest.mark.slow  # a sweep killed and run again (30-40 s)
def test_a_wsd_sweep_killed_during_its_forks_completes_each_run_exactly_once(tmp_path):
    spec = write_wsd_spec(tmp_path / "spec.toml")
    sweep_dir = tmp_path / "out"
    runner = subprocess.Popen([sys.executable, "-m", "distillscale.cli", "sweep", "run", str(spec),
                               "--out", str(sweep_dir), "--workers", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until a fork has a checkpoint of its own
            if (sweep_dir / "runs.sqlite").exists():
                records = records_by_id(sweep_dir)
                checkpointed = [r for r in records.values() if r.status == "running" and r.config["parent_id"]
                                and (SweepLayout(sweep_dir).run_dir(r.id) / "state" / "checkpoint.pt").exists()]
                if checkpointed:
                    break
            assert runner.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.05)
        else:
            pytest.fail("no fork started within 120 s")
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    before = records_by_id(sweep_dir)
    mtimes = result_mtimes(sweep_dir)
    assert main(["sweep", "run", str(spec), "--out", str(sweep_dir), "--workers", "2"]) == 0
    after = records_by_id(sweep_dir)
    assert {record.status for record in after.values()} == {"completed"}
    for run_id, record in after.items():
        assert record.attempts == before[run_id].attempts + (0 if run_id in mtimes else 1), run_id
    assert {run_id: mtime for run_id, mtime in result_mtimes(sweep_dir).items() if run_id in mtimes} == mtimes
    assert after[checkpointed[0].id].result["fork"]["branch_step"] > 0


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text` (zombies count as gone)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat", "rb") as file:
                state = file.read().decode(errors="replace").rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


@pytest.mark.slow  # a sweep killed and run again (30-40 s)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
def test_a_runner_killed_alone_leaves_no_run_training_and_its_sweep_resumes_exactly(tmp_path):
    """SIGKILL of the runner process only (not its group): its `train` child dies with it, instead of
    training on re-parented to init and meeting its own relaunch in one run directory; the sweep
    started again resumes the run from its checkpoint to the uninterrupted run's loss."""
    spec = write_spec(tmp_path / "spec.toml", teacher_m="[4]", baselines=None)
    reference = tmp_path / "reference"
    assert main(["sweep", "run", str(spec), "--out", str(reference), "--workers", "1"]) == 0
    sweep_dir = tmp_path / "out"
    runner = subprocess.Popen([sys.executable, "-m", "distillscale.cli", "sweep", "run", str(spec),
                               "--out", str(sweep_dir), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    (run_id,) = [run.run_id for run in load_sweep_spec(spec).runs]
    checkpoint = SweepLayout(sweep_dir).run_dir(run_id) / "state" / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline:
            assert runner.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.02)
        assert checkpoint.exists(), "no checkpoint within 120 s"
        os.kill(runner.pid, signal.SIGKILL)  # the runner alone
        runner.wait()
        deadline = time.monotonic() + 10
        while _processes_mentioning(str(sweep_dir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = _processes_mentioning(str(sweep_dir))
        assert not orphans, f"the killed runner left {len(orphans)} process(es) running its sweep"
    finally:
        for pid in _processes_mentioning(str(sweep_dir)):
            os.kill(pid, signal.SIGKILL)
    assert not (SweepLayout(sweep_dir).run_dir(run_id) / "result.json").exists()

    assert main(["sweep", "run", str(spec), "--out", str(sweep_dir), "--workers", "1"]) == 0
    assert "resuming" in SweepLayout(sweep_dir).log_path(run_id).read_text()
    resumed = RunDirectory(SweepLayout(sweep_dir).run_dir(run_id)).read_result()
    expected = RunDirectory(SweepLayout(reference).run_dir(run_id)).read_result()
    assert resumed.steps == expected.steps and resumed.val_loss == expected.val_loss


def test_a_second_writer_of_a_run_directory_is_refused_in_one_line(tmp_path, cli):
    out = tmp_path / "run"
    with RunDirectory(out).writing():  # as a `train` still running would hold it
        code, _, err = cli("train", "--out", out, "--n-layers", "1", "--tokens", "2k", "--device", "cpu")
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"another process is writing the run in {out}" in err
        assert list(out.iterdir()) == []  # the refused writer wrote nothing
    assert not out.exists()  # the directory made for the lock alone is gone with it
    code, _, err = cli("train", "--out", tmp_path / "new" / "run", "--data", tmp_path / "no-such-corpus",
                       "--n-layers", "1", "--tokens", "2k")
    assert code == 2 and not (tmp_path / "new").exists()  # a refused run leaves no directory behind


def test_a_finished_run_is_logged_with_the_time_its_process_took(tmp_path):
    """A tiny run's training loop takes a fraction of a second, its process seconds: the progress log
    says the latter (it said "in 0 s" of runs that took 4-7 s)."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    from distillscale.sweeps.runner import _Scheduler
    from distillscale.training.records import RunResult

    layout = SweepLayout(tmp_path)
    run = SimpleNamespace(run_id="t1", kind="teacher")
    layout.run_dir("t1").mkdir(parents=True)
    RunResult(status="completed", val_loss=3.25, steps=3, lr=0.01, schedule="cosine", tokens=768,
              token_budget=1000, non_embedding_params=16512, total_params=37056, forward_flops_per_token=4.5e4,
              flops=1e8, flops_6nd=7.6e7, flops_method="-", wall_seconds=0.3, train_seconds=0.3,
              tokens_per_second=768, config_hash="0" * 16, world_size=1,
              device="cpu").save(layout.run_dir("t1") / "result.json")
    finished = []
    scheduler = SimpleNamespace(layout=layout, store=SimpleNamespace(finish=lambda *a, **k: finished.append(a)))
    future: Future = Future()
    future.set_result(0)
    line = _Scheduler._record_end(scheduler, run, future, 5.26).plain
    assert line == "completed t1: 3.2500 nats/token in 5.3 s" and finished == [("t1", "completed")]
    assert _Scheduler._record_end(scheduler, run, future, 73.4).plain.endswith("in 73 s")
