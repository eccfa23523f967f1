"""`sweep plan`, the dry run: its table of a small spec (steps, FLOPs as the engine counts them, forks
at their cooldown, wall time), its stated assumptions, bad input in one line, and the dry run of
examples/gpu_ladder.toml against the runs the runner then launches (through the runner's own
scheduler, with an executor that records each launch instead of training)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import pytest

from distillscale.planning.flops import run_flops
from distillscale.settings import load_config
from distillscale.sweeps import runner
from distillscale.sweeps.dry_run import Throughput, dry_run
from distillscale.sweeps.executors import Job
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from distillscale.sweeps.spec import load_sweep_spec
from distillscale.training.config import DistillConfig, TrainConfig
from distillscale.training.records import RunResult
from distillscale.training.run_dir import RunDirectory

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gpu_ladder.toml"

SMALL = """
name = "small"
[data]
vocab_size = 320
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
schedule = "wsd"
eval_tokens = "2k"
eval_every = 0
{extra}
[teachers]
n_layers = [1, 2]
tokens_per_param = [2, 8]
[students]
n_layers = [1]
tokens_per_param = [1, 4]
[distill]
teach_from = "longest"
"""


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


def small_spec(tmp_path, extra: str = "") -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(extra=extra), encoding="utf-8")
    return path


def test_the_dry_run_table_of_a_small_spec(cli, tmp_path):
    path = small_spec(tmp_path)
    spec = load_sweep_spec(path)
    code, out, err = cli("sweep", "plan", path, "--gpus", "none", "--workers", "1", "--json")
    assert code == 0, err
    plan = json.loads(out)
    runs = {run["run_id"]: run for run in plan["runs"]}
    assert sorted(runs) == sorted(run.run_id for run in spec.runs)         # every run, once
    assert plan["counts"] == {"train": 3, "distil": 2, "fork": 5}
    assert plan["device"] == "cpu" and plan["needs_gpu"] is False
    for planned in spec.runs:
        run = runs[planned.run_id]
        config = TrainConfig.model_validate({key: value for key, value in planned.settings.items()
                                             if key in TrainConfig.model_fields} | {"out": "."})
        steps = config.steps_for(planned.tokens)
        model = config.model_shape(320)
        teacher = 0.0
        if planned.teacher_id:
            teacher = (load_config(TrainConfig, None, {**runs_settings(spec, planned.teacher_id), "out": "."})
                       .model_shape(320).forward_flops_per_token(32))
        whole = run_flops(model, 32, steps * 256, teacher).total
        evaluation = 2000 * model.forward_flops_per_token(32)
        assert run["steps"] == steps and run["tokens"] == planned.tokens
        assert run["tokens_per_param"] == pytest.approx(planned.tokens / planned.non_embedding_params)
        assert run["run_flops"] == pytest.approx(whole, rel=1e-12)  # as result.json: no evaluations
        assert run["evaluation_flops"] == pytest.approx(evaluation, rel=1e-12)
        if planned.parent_id:  # a fork spends its cooldown only (20% of its steps by default)
            assert run["kind"] == "fork" and run["own_steps"] == config.cooldown_steps(steps) < steps
            assert run["flops"] == pytest.approx(whole * run["own_steps"] / steps, rel=1e-12)
        else:
            assert run["kind"] == ("distil" if planned.kind == "student" else "train")
            assert run["own_steps"] == steps and run["flops"] == pytest.approx(run["run_flops"])
        assert run["device_seconds"] == pytest.approx((run["flops"] + evaluation) / 32e9)
    assert plan["flops"] < plan["flops_separate"]
    # One worker: one run after another, in launch order, in one worker process: its start-up (5 s)
    # is paid by the first run only.
    assert plan["wall_seconds"] == pytest.approx(plan["device_seconds"] + 5.0)
    assert [run["startup_seconds"] for run in plan["runs"]] == [5.0] + [0.0] * (len(spec.runs) - 1)
    starts = [run["start_seconds"] for run in plan["runs"]]
    assert starts == sorted(starts)
    code, out, _ = cli("sweep", "plan", path, "--gpus", "none", "--workers", "2", "--json")
    assert json.loads(out)["wall_seconds"] < plan["wall_seconds"]          # two at a time
    code, out, _ = cli("sweep", "plan", path, "--gpus", "none")
    assert code == 0 and all(run.run_id in out for run in spec.runs)
    assert "10 runs (3 train, 2 distil, 5 fork)" in " ".join(out.split())
    assert "wall time on the CPU" in out


def runs_settings(spec, run_id: str) -> dict:
    run = next(run for run in spec.runs if run.run_id == run_id)
    return {key: value for key, value in run.settings.items() if key in TrainConfig.model_fields}


def test_the_dry_run_states_its_assumptions_and_that_the_spec_needs_gpus(cli, tmp_path):
    path = small_spec(tmp_path, extra="bf16 = true\ncompile = true")
    code, out, err = cli("sweep", "plan", path)
    text = " ".join(out.split())
    assert code == 0, err
    assert "GPU throughput estimated from the throughput table" in text and "wall time on 1 GPU, 1 run per GPU" in text
    assert "this spec needs GPUs (bf16 = true, compile = true) and none is visible here" in text
    assert "`sweep run` refuses it on this machine; planned for 1 GPU (--gpus N)" in text
    code, _, err = cli("sweep", "run", path, "--out", tmp_path / "sweep")  # as the dry run says
    assert code == 2 and "no GPU is visible here" in err and not (tmp_path / "sweep").exists()
    one, four = (json.loads(cli("sweep", "plan", path, "--gpus", "1", "--runs-per-gpu", str(k), "--json")[1])
                 for k in (1, 4))
    assert one["device_seconds"] == pytest.approx(four["device_seconds"])   # the same work on the GPU
    assert four["wall_seconds"] < one["wall_seconds"]                       # start-ups overlap
    # runs sharing a GPU share its throughput: the wall time is at least the GPU's work
    assert four["wall_seconds"] >= four["device_seconds"]
    fixed = json.loads(cli("sweep", "plan", path, "--gpus", "2", "--flops-per-second", "1e12",
                           "--startup-seconds", "0", "--compile-seconds", "0", "--json")[1])
    assert fixed["device_seconds"] == pytest.approx((fixed["flops"] + fixed["evaluation_flops"]) / 1e12)
    assert fixed["gpus"] == 2 and {run["device"] for run in fixed["runs"]} == {"0", "1"}


@pytest.mark.parametrize("args, message", [
    (["--gpus", "two"], "--gpus 'two' is not a number of GPUs"),
    (["--flops-per-second", "-1"], "--flops-per-second must be a positive number of FLOP/s"),
    (["--flops-per-second", "inf"], "--flops-per-second must be a positive number of FLOP/s"),
    (["--startup-seconds", "-2"], "--startup-seconds must be a number of seconds, at least 0"),
    (["--gpus", "none", "--runs-per-gpu", "2"], "--runs-per-gpu needs GPUs"),
    (["--gpu", "tpu9"], "unknown GPU 'tpu9' for --gpu"),
    (["--mfu", "3"], "--mfu must be a fraction of the peak"),
])
def test_bad_input_to_the_dry_run_is_one_line(cli, tmp_path, args, message):
    code, out, err = cli("sweep", "plan", small_spec(tmp_path), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


class RecordingExecutor:
    """Runs nothing: records each launch (its resolved config) and writes the result.json a
    completed run would, so the runner's scheduler goes on to the runs that depend on it."""

    workers = 1

    def __init__(self):
        self.launched = []

    def submit(self, job: Job) -> Future[int]:
        command, path = job.argv[3], Path(job.argv[5])
        config = load_config(DistillConfig if command == "distill" else TrainConfig, path)
        self.launched.append(config)
        steps = config.steps_for(config.tokens)
        RunDirectory(config.out).write_result(RunResult(
            status="completed", val_loss=3.0, steps=steps, lr=config.lr, schedule=config.schedule,
            tokens=steps * config.tokens_per_step, token_budget=config.tokens, non_embedding_params=1,
            total_params=1, forward_flops_per_token=1.0, flops=1.0, flops_6nd=1.0, flops_method="-",
            wall_seconds=0.0, train_seconds=0.0, tokens_per_second=None, config_hash="-", world_size=1,
            device="cpu"))
        future: Future[int] = Future()
        future.set_result(0)
        return future

    def shutdown(self) -> None:
        pass


def test_the_dry_run_of_the_gpu_ladder_matches_the_runs_the_sweep_launches(tmp_path, monkeypatch):
    spec = load_sweep_spec(EXAMPLE)
    monkeypatch.setattr("distillscale.data.sources.check_corpus", lambda *args: None)
    monkeypatch.setattr(runner, "repetition_check", lambda spec, progress=False: None)  # prepares the corpus
    executor = RecordingExecutor()
    counts = runner.run_sweep(spec, tmp_path / "sweep", executor, progress=False)
    assert counts["completed"] == len(spec.runs)
    plan = dry_run(spec, gpus=0, workers=1, throughput=Throughput())
    launched = [(Path(config.out).name, config.tokens, config.steps_for(config.tokens),
                 config.fork_from and Path(config.fork_from).name) for config in executor.launched]
    assert launched == [(run.run_id, run.tokens, run.steps, run.parent_id) for run in plan.runs]
    assert len(launched) == len(spec.runs) > 50
    # On GPUs, the same runs, each started only once its teacher and parent finished.
    on_gpu = dry_run(spec, gpus=1, runs_per_gpu=2)
    assert sorted(run.run_id for run in on_gpu.runs) == sorted(name for name, *_ in launched)
    ends = {run.run_id: run.end_seconds for run in on_gpu.runs}
    for run in on_gpu.runs:
        assert all(ends[needed] <= run.start_seconds for needed in (run.parent_id, run.teacher_id) if needed)
    assert {run.device for run in on_gpu.runs} == {"0"} and on_gpu.runs_per_gpu == 2
