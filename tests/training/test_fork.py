"""WSD forks: a cooldown forked from a longer run's stable phase equals a WSD run of its length from
scratch; forks and parents resume after SIGKILL; the FLOPs a run records are the planner's accounting."""

from __future__ import annotations

import json

import pytest

from distillscale.model import ModelConfig
from distillscale.planning.flops import run_flops
from distillscale.training.optim import WarmupStableDecay

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

COMMON = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", "320",
          "--max-bytes", "300k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "4k",
          "--eval-every", "0", "--save-every", "10", "--log-every", "5", "--device", "cpu",
          "--schedule", "wsd", "--warmup-steps", "5")
TOKENS_PER_STEP = 256
PARENT = ("--tokens", "38400", "--fork-tokens", "19200")  # 150 steps, keeps the state at step 60
FORK = ("--tokens", "19200")  # 75 steps: the cooldown is the last 15, from step 60


def read_json(path):
    return json.loads(path.read_text())


def metric_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def train(out, *args):
    from distillscale.cli import main

    assert main(["train", "--out", str(out), *COMMON, *args]) == 0
    return read_json(out / "result.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    parent = train(root / "parent", *PARENT)
    fork = train(root / "fork", *FORK, "--fork-from", str(root / "parent"))
    scratch = train(root / "scratch", *FORK)
    return {"root": root, "parent": parent, "fork": fork, "scratch": scratch}


def test_a_fork_equals_a_wsd_run_of_its_length_from_scratch(runs):
    fork, scratch = runs["fork"], runs["scratch"]
    assert fork["status"] == "completed" and fork["steps"] == scratch["steps"] == 75
    assert abs(fork["val_loss"] - scratch["val_loss"]) < 1e-4
    assert fork["val_loss"] != runs["parent"]["val_loss"]
    assert fork["fork"] == {"parent": str(runs["root"] / "parent"), "branch_step": 60,
                            "shared_tokens": 60 * TOKENS_PER_STEP,
                            "shared_flops": pytest.approx(fork["flops"] * 60 / 75)}
    assert fork["tokens"] == scratch["tokens"] and fork["flops"] == scratch["flops"]
    assert metric_steps(runs["root"] / "fork")[0] == 65  # its own steps only: the cooldown


def test_recorded_flops_are_the_planners_accounting(runs):
    result = runs["scratch"]
    config = ModelConfig(**read_json(runs["root"] / "scratch" / "config.json")["plan"]["model"])
    assert result["flops"] == run_flops(config, 32, result["tokens"]).total
    assert result["flops"] == 3 * config.forward_flops_per_token(32) * result["tokens"]
    assert result["total_params"] == config.total_params > result["non_embedding_params"]


def test_wsd_holds_the_peak_then_cools_down_to_the_floor():
    schedule = WarmupStableDecay(warmup_steps=10, total_steps=110, cooldown_steps=20, min_ratio=0.01,
                                 shape="1-sqrt")
    assert [schedule(s) for s in (0, 9, 10, 89)] == pytest.approx([0.1, 1.0, 1.0, 1.0])
    assert schedule(109) == pytest.approx(0.01)
    decay = [schedule(s) for s in range(89, 110)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    linear = WarmupStableDecay(10, 110, 20, 0.0, "linear")
    assert linear(99) == pytest.approx(0.5)


def test_a_fork_must_repeat_its_parents_settings(cli, runs, tmp_path):
    parent = runs["root"] / "parent"
    code, _, err = cli("train", "--out", tmp_path / "a", *COMMON, *FORK, "--fork-from", parent, "--lr", "0.02")
    assert code == 2 and "differs from this run in lr" in err
    code, _, err = cli("train", "--out", tmp_path / "b", *COMMON, "--tokens", "25600", "--fork-from", parent)
    assert code == 2 and "does not keep step 80" in err and "list 25600 in the parent's --fork-tokens" in err
    code, _, err = cli("train", "--out", tmp_path / "c", "--n-layers", "1", "--tokens", "1M",
                       "--fork-from", parent)
    assert code == 2 and "--fork-from needs --schedule wsd" in err
    assert not any(tmp_path.iterdir())


def test_killed_parent_and_killed_fork_resume_to_the_same_results(runs, tmp_path, capsys, kill_after_checkpoint):
    parent, fork = tmp_path / "parent", tmp_path / "fork"

    def kill_train_after_checkpoint(out, *args) -> int:
        return kill_after_checkpoint(out, "train", "--out", out, *COMMON, *args)

    killed_at = kill_train_after_checkpoint(parent, *PARENT)
    assert killed_at < 150
    assert train(parent, *PARENT)["val_loss"] == runs["parent"]["val_loss"]
    assert "resuming" in capsys.readouterr().err
    fork_args = (*FORK, "--fork-from", str(parent))
    killed_at = kill_train_after_checkpoint(fork, *fork_args)
    assert 60 < killed_at < 75
    resumed = train(fork, *fork_args)
    assert f"resuming {fork} from step {killed_at}/75" in capsys.readouterr().err
    assert abs(resumed["val_loss"] - runs["fork"]["val_loss"]) < 1e-6
    assert metric_steps(fork) == metric_steps(runs["root"] / "fork")


def test_a_distillation_run_forks_the_same_way(runs):
    from distillscale.cli import main

    teacher = runs["root"] / "parent"
    results = {}
    for name, args in (("d-parent", PARENT), ("d-fork", (*FORK, "--fork-from", str(runs["root"] / "d-parent"))),
                       ("d-scratch", FORK)):
        out = runs["root"] / name
        assert main(["distill", "--teacher", str(teacher), "--out", str(out), "--top-k", "32",
                     *[a for a in COMMON if a not in ("--vocab-size", "320")], *args]) == 0
        results[name] = read_json(out / "result.json")
    fork, scratch = results["d-fork"], results["d-scratch"]
    assert abs(fork["val_loss"] - scratch["val_loss"]) < 1e-4
    assert fork["fork"]["branch_step"] == 60 and fork["flops"] == scratch["flops"]
    assert fork["flops"] > 3 * fork["forward_flops_per_token"] * fork["tokens"]  # the teacher's share
