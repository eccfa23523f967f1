"""A local sweep's worker process (sweeps/executors.py): run after run in one process, each computing
exactly what it computes in a process of its own, each with its own log; a failed run's worker replaced."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from distillscale.sweeps import executors
from distillscale.sweeps.executors import Job, LocalExecutor
from distillscale.sweeps.runner import SweepLayout, run_sweep
from distillscale.sweeps.spec import load_sweep_spec
from distillscale.training.run_dir import RunDirectory

pytestmark = pytest.mark.usefixtures("cache_dir")

# One model of one layer, width 32, at 0.5, 1 and 2 tokens per parameter under WSD: a parent (M = 2)
# and two cooldown forks.
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
tokens_per_param = [0.5, 1, 2]
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


def test_a_wsd_sweep_run_in_one_worker_process_equals_one_process_per_run(tmp_path, started_workers):
    (tmp_path / "spec.toml").write_text(WSD_SPEC)
    spec = load_sweep_spec(tmp_path / "spec.toml")
    separate, shared = tmp_path / "separate", tmp_path / "shared"
    assert run_sweep(spec, separate, LocalExecutor(1, reuse_processes=False), progress=False)["completed"] == 3
    assert started_workers == []
    assert run_sweep(spec, shared, LocalExecutor(1), progress=False)["completed"] == 3
    assert len(started_workers) == 1  # the parent and both forks in one process
    forks = 0
    for run in spec.runs:
        alone, together = (RunDirectory(SweepLayout(root).run_dir(run.run_id)) for root in (separate, shared))
        expected, result = alone.read_result(), together.read_result()
        assert result.val_loss == expected.val_loss and result.steps == expected.steps, run.run_id
        assert (result.fork is None) == (expected.fork is None)
        if result.fork is not None:
            forks += 1
            assert result.fork.branch_step == expected.fork.branch_step > 0
            assert result.fork.parent == str(SweepLayout(shared.absolute()).run_dir(run.parent_id))
        weights, expected_weights = (load_file(d.path / "model.safetensors") for d in (together, alone))
        assert weights.keys() == expected_weights.keys()
        assert all(weights[name].equal(expected_weights[name]) for name in weights), run.run_id
        assert "nats/token" in SweepLayout(shared).log_path(run.run_id).read_text()  # its own log
    assert forks == 2


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
