"""A local sweep's worker process (sweeps/executors.py): run after run in one process, each computing
exactly what it computes in a process of its own, each with its own log; a failed run's worker replaced."""

from __future__ import annotations

import subprocess
import sys

import pytest
from safetensors.torch import load_file

from distillscale.sweeps import executors
from distillscale.sweeps.executors import Job, LocalExecutor
from distillscale.sweeps.runner import SweepLayout, run_sweep
from distillscale.sweeps.spec import load_sweep_spec
from distillscale.training.run_dir import RunDirectory

pytestmark = pytest.mark.usefixtures("cache_dir")

# One model of one layer, width 32, at 1 and 2 tokens per parameter under WSD: a parent (M = 2) and
# its cooldown fork.
WSD_SPEC = """
name = "tiny-wsd"
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
schedule = "wsd"
[teachers]
n_layers = [1]
tokens_per_param = [1, 2]
"""


@pytest.fixture
def started_workers(monkeypatch):
    """The environment of every worker process the executors start."""
    started = []
    original = executors._Worker.__init__

    def counting(self, env, log_path):
        started.append(env)
        original(self, env, log_path)

    monkeypatch.setattr(executors._Worker, "__init__", counting)
    return started


def test_a_fork_run_in_its_parents_worker_process_equals_the_fork_launched_alone(tmp_path, started_workers):
    (tmp_path / "spec.toml").write_text(WSD_SPEC)
    spec = load_sweep_spec(tmp_path / "spec.toml")
    layout = SweepLayout(tmp_path / "sweep")
    assert run_sweep(spec, layout.root, LocalExecutor(1), progress=False)["completed"] == 2
    assert len(started_workers) == 1  # the parent, then its fork, in one process
    (fork,) = [run for run in spec.runs if run.parent_id]
    alone = RunDirectory(tmp_path / "alone")  # the same fork, launched as `train` in a process of its own
    launched = subprocess.run([sys.executable, "-m", "distillscale.cli", "train", "--config",
                               str(layout.config_path(fork.run_id)), "--out", str(alone.path)],
                              capture_output=True, text=True, check=False)
    assert launched.returncode == 0, launched.stderr
    together = RunDirectory(layout.run_dir(fork.run_id))
    expected, result = alone.read_result(), together.read_result()
    assert result.fork is not None and result.fork == expected.fork and result.fork.branch_step > 0
    assert result.val_loss == expected.val_loss and result.steps == expected.steps
    weights, expected_weights = (load_file(run.path / "model.safetensors") for run in (together, alone))
    assert weights.keys() == expected_weights.keys()
    assert all(weights[name].equal(expected_weights[name]) for name in weights)
    for run in spec.runs:  # each run's output in its own log
        assert "nats/token" in layout.log_path(run.run_id).read_text()


def test_a_worker_runs_job_after_job_each_into_its_own_log_and_is_replaced_after_a_failure(
        tmp_path, started_workers):
    executor = LocalExecutor(1)
    jobs = [Job(args=args, log_path=tmp_path / f"{name}.log") for name, args in
            [("first", ("--version",)), ("second", ("--version",)), ("bad", ("plan", "--no-such-flag")),
             ("after", ("--version",))]]
    try:
        statuses = [executor.submit(job).result() for job in jobs]
    finally:
        executor.shutdown()
    assert statuses == [0, 0, 2, 0]
    assert len(started_workers) == 2  # the first served three jobs and ended with the failed one
    for job in jobs:
        text = job.log_path.read_text()
        if job.args[0] == "--version":
            assert text.startswith("distillscale ") and len(text.splitlines()) == 1, job.log_path
        else:
            assert text.startswith("distillscale: error: No such option: --no-such-flag"), text
            assert len(text.splitlines()) == 1


def test_a_worker_walks_its_corpus_once_and_other_processes_at_every_call(monkeypatch):
    from distillscale.data import prepare
    from distillscale.training.config import TrainConfig

    walks = []
    original = prepare._prepare_data
    monkeypatch.setattr(prepare, "_prepare_data",
                        lambda config, progress: walks.append(config) or original(config, progress))
    config = TrainConfig.model_validate({"n_layers": 1, "tokens": "2k", "vocab_size": 320, "max_bytes": "200k",
                                         "out": "."}).data_config()
    with prepare.reusing_prepared():  # as in a sweep's worker
        first = prepare.prepare_data(config, progress=False)
        assert prepare.prepare_data(config, progress=False) is first and len(walks) == 1
        other = config.model_copy(update={"seed": config.seed + 1})
        assert prepare.prepare_data(other, progress=False).fingerprint != first.fingerprint and len(walks) == 2
    prepare.prepare_data(config, progress=False)
    assert len(walks) == 3  # outside a worker, each call checks its corpus anew


@pytest.mark.parametrize("reuse_processes", [True, False])
def test_a_run_past_its_time_limit_is_stopped_and_says_so_in_its_log(tmp_path, reuse_processes):
    """A per-run timeout (issue 33): a run that would train for minutes is stopped at its limit, counted
    failed (exit status 124), and the next run gets a fresh worker."""
    executor = LocalExecutor(1, reuse_processes=reuse_processes, run_timeout=3.0)
    long = Job(args=("train", "--out", str(tmp_path / "long"), "--n-layers", "1", "--aspect-ratio", "32",
                     "--head-dim", "16", "--vocab-size", "320", "--max-bytes", "200k", "--seq-len", "32",
                     "--batch-size", "8", "--tokens", "100M", "--eval-every", "0", "--device", "cpu"),
               log_path=tmp_path / "long.log")
    after = Job(args=("--version",), log_path=tmp_path / "after.log")
    try:
        statuses = [executor.submit(job).result(timeout=120) for job in (long, after)]
    finally:
        executor.shutdown()
    assert statuses == [executors.TIMED_OUT, 0]
    assert "stopped after 3 s, the sweep's --run-timeout" in long.log_path.read_text().splitlines()[-1]
    assert after.log_path.read_text().startswith("distillscale ")
    assert not (tmp_path / "long" / "result.json").exists()


def test_sweep_run_refuses_a_bad_run_timeout_in_one_line(cli, tmp_path):
    (tmp_path / "spec.toml").write_text(WSD_SPEC)
    for value, words in (("0", "--run-timeout must be a positive number of seconds"),
                         ("inf", "--run-timeout must be a positive number of seconds")):
        code, _, err = cli("sweep", "run", tmp_path / "spec.toml", "--out", tmp_path / "s", "--run-timeout", value)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_a_workers_own_output_stays_out_of_the_runs_logs_unless_it_dies_in_one(tmp_path):
    """What a worker prints outside its runs (here Python's verbose import lines at its start and its
    clean-up at exit) used to land in the log of the first run it served; now in a file of its own. A
    worker that cannot start still explains itself in the log of the run it was started for."""
    executor = LocalExecutor(1)
    jobs = [Job(args=("--version",), log_path=tmp_path / f"{name}.log", env={"PYTHONVERBOSE": "1"})
            for name in ("first", "second")]
    try:
        assert [executor.submit(job).result() for job in jobs] == [0, 0]
    finally:
        executor.shutdown()
    first, second = (job.log_path.read_text() for job in jobs)
    assert "import _frozen_importlib" not in first and "# cleanup" not in first
    assert "distillscale " in first and second.startswith("distillscale ") and len(second.splitlines()) == 1
    (own,) = tmp_path.glob("worker-*.stderr")
    assert "import _frozen_importlib" in own.read_text()

    broken = tmp_path / "broken"
    (broken / "distillscale").mkdir(parents=True)
    (broken / "distillscale" / "__init__.py").write_text("raise SystemExit('this worker cannot start')\n")
    executor = LocalExecutor(1)
    job = Job(args=("--version",), log_path=tmp_path / "failed.log", env={"PYTHONPATH": str(broken)})
    try:
        assert executor.submit(job).result() != 0
    finally:
        executor.shutdown()
    assert job.log_path.read_text().splitlines()[-1] == "this worker cannot start"
