"""Supervised training on the default corpus: the loss falls, the run directory is complete and
protected, divergence is caught; plus the components (schedule, optimizer groups, accumulation)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import shutil

import pytest
import torch

from distillscale.model import ModelConfig, Transformer, load_pretrained
from distillscale.training.distributed import Distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import WarmupCosine, build_optimizer
from distillscale.training.step import train_step

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

VOCAB = 320
TINY = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", str(VOCAB),
        "--max-bytes", "300k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "4k",
        "--device", "cpu")


def train_args(out, *extra: str, tokens: str = "10k") -> list:
    return ["train", "--out", out, "--tokens", tokens, *TINY, *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    """A 40-step run, evaluated every 20 steps."""
    from distillscale.cli import main

    out = tmp_path_factory.mktemp("runs") / "finished"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(a) for a in train_args(out, "--eval-every", "20", "--save-every", "15",
                                                 "--log-every", "5")]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def read_metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss(finished_run):
    metrics = read_metrics(finished_run)
    result = json.loads((finished_run / "result.json").read_text())
    assert result["status"] == "completed"
    # An untrained model predicts nearly uniformly: about log(VOCAB) = 5.77 nats/token.
    assert result["val_loss"] < math.log(VOCAB) - 1.0
    assert metrics[-1]["loss"] < metrics[0]["loss"] < math.log(VOCAB)
    val_losses = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert len(val_losses) == 2 and val_losses[1] < val_losses[0]
    assert result["val_loss"] == val_losses[-1]


def test_run_directory_holds_every_artifact(finished_run):
    for name in ("config.json", "model.safetensors", "model_config.json", "tokenizer.json",
                 "state/checkpoint.pt", "metrics.jsonl", "result.json"):
        assert (finished_run / name).is_file(), name
    # TensorBoard is an optional extra: its event files exist exactly when it is installed.
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    tensorboard_dir = finished_run / "tensorboard"
    assert (tensorboard_dir.is_dir() and any(tensorboard_dir.iterdir())) == has_tensorboard
    config = json.loads((finished_run / "config.json").read_text())
    result = json.loads((finished_run / "result.json").read_text())
    assert config["config_hash"] == result["config_hash"]
    assert config["config"]["lr"] == 0.01 and config["plan"]["total_steps"] == 40

    model_config = ModelConfig(**config["plan"]["model"])
    assert result["steps"] == math.ceil(10_000 / (8 * 32)) == 40
    assert result["tokens"] == 40 * 8 * 32
    assert result["non_embedding_params"] == model_config.non_embedding_params
    assert result["total_params"] == model_config.total_params
    assert result["flops"] == 3 * model_config.forward_flops_per_token(32) * result["tokens"]
    assert result["flops_6nd"] == 6 * model_config.non_embedding_params * result["tokens"]
    assert result["tokens_per_second"] > 0 and result["wall_seconds"] >= result["train_seconds"] > 0

    metrics = read_metrics(finished_run)
    assert [m["step"] for m in metrics] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert {"step", "tokens", "loss", "ce", "lr", "grad_norm", "tokens_per_second"} <= set(metrics[0])
    assert metrics[-1]["lr"] < metrics[1]["lr"]  # cosine decay

    state = torch.load(finished_run / "state" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == 40
    saved = load_pretrained(finished_run)
    assert all(torch.equal(saved.state_dict()[k], v) for k, v in state["model"].items())


def test_a_finished_run_is_kept_unless_overwrite(cli, finished_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("mine")
    before = {name: (run / name).read_bytes() for name in ("result.json", "model.safetensors")}

    code, _, err = cli(*train_args(run, "--seed", "1"))
    assert code == 2
    assert "holds a finished run (status completed" in err and "pass --overwrite" in err
    assert before == {name: (run / name).read_bytes() for name in before}

    code, _, _ = cli(*train_args(run, "--seed", "1", "--tokens", "2k", "--overwrite"))
    assert code == 0
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 8 and (run / "notes.txt").read_text() == "mine"
    assert [m["step"] for m in read_metrics(run)] == [8]


def test_overwrite_with_bad_data_keeps_the_finished_run(cli, finished_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = cli(*train_args(run, "--data", tmp_path / "no-such-corpus", "--overwrite"))
    assert code == 2 and "no-such-corpus" in err
    assert before == {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_tokens_per_param_budget_counts_non_embedding_parameters(cli, tmp_path):
    code, out, _ = cli("train", "--out", tmp_path / "run", "--tokens-per-param", "0.05", *TINY, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["steps"] == math.ceil(0.05 * result["non_embedding_params"] / 256)


@pytest.mark.parametrize("make_target, message", [
    (lambda p: p.write_text("x"), "is a file: give a directory"),
    (lambda p: (p.mkdir(), (p / "data.csv").write_text("keep")), "is not a distillscale run directory"),
])
def test_refuses_an_out_that_is_not_a_run_directory(cli, tmp_path, make_target, message):
    target = tmp_path / "target"
    make_target(target)
    code, _, err = cli(*train_args(target, "--overwrite"))
    assert code == 2 and message in err
    assert not target.is_dir() or sorted(p.name for p in target.iterdir()) == ["data.csv"]


def test_bad_data_is_a_clear_error_and_writes_nothing(cli, tmp_path):
    code, _, err = cli(*train_args(tmp_path / "run", "--data", tmp_path / "no-such-corpus"))
    assert code == 2 and err.startswith("distillscale: error:") and "no-such-corpus" in err
    assert not (tmp_path / "run").exists()


def test_bad_model_shape_is_reported_before_the_data_is_read(cli, tmp_path):
    code, _, err = cli(*train_args(tmp_path / "run", "--head-dim", "48"))
    assert code == 2 and "is not a multiple of head_dim 48" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(cli, tmp_path):
    code, _, err = cli(*train_args(tmp_path / "run", "--device", "cuda"))
    assert code == 2 and "no CUDA GPU is available" in err


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli(*train_args(run, "--lr", "1e5", "--warmup-steps", "0", "--save-every", "1"))
    assert code == 1 and "training diverged at step" in err
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "diverged" and result["val_loss"] is None
    assert result["checkpoint_step"] == result["diverged_at_step"] - 1 >= 1
    state = torch.load(run / "state" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == result["checkpoint_step"]
    assert all(torch.isfinite(p).all() for p in load_pretrained(run).parameters())


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    schedule = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.01)
    assert [schedule(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert schedule(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert schedule(110) == pytest.approx(0.01) and schedule(500) == pytest.approx(0.01)
    decay = [schedule(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def tiny_model(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{"n_layers": 1, "aspect_ratio": 64, "head_dim": 32,
                                      "vocab_size": 300, "max_seq_len": 16, **overrides}))


def test_weight_decay_does_not_depend_on_the_learning_rate():
    optimizer = build_optimizer(tiny_model(), lr=0.01, weight_decay=1e-4)
    decayed = [g for g in optimizer.param_groups if g["weight_decay"] > 0]
    assert len(decayed) == 2 and len({g["lr"] for g in decayed}) == 2  # muP gives different lrs
    for group in decayed:  # torch's AdamW shrinks weights by lr * weight_decay per step
        assert group["lr"] * group["weight_decay"] == pytest.approx(1e-4)
    gains = [g for g in optimizer.param_groups if all(p.ndim == 1 for p in g["params"])]
    assert gains and all(g["weight_decay"] == 0 for g in gains)


def test_gradient_accumulation_equals_one_large_batch():
    inputs = torch.randint(0, 300, (8, 16))
    targets = torch.randint(0, 300, (8, 16))
    updated = []
    for micro_batches in ([(inputs, targets)], [(inputs[:4], targets[:4]), (inputs[4:], targets[4:])]):
        model = tiny_model()
        # Plain SGD, so the weights after one step compare the gradients (Adam's first step is
        # about lr * sign(gradient), which magnifies rounding in near-zero gradients).
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        result = train_step(TrainingModel(model, Distributed()), SupervisedObjective(1e-4), optimizer,
                            micro_batches, grad_clip=1.0, group=Distributed(),
                            autocast=contextlib.nullcontext())
        updated.append((result, model.state_dict()))
    (whole, whole_weights), (accumulated, accumulated_weights) = updated
    assert accumulated.loss == pytest.approx(whole.loss, abs=1e-6)
    assert accumulated.grad_norm == pytest.approx(whole.grad_norm, rel=1e-5)
    for name, tensor in whole_weights.items():
        torch.testing.assert_close(accumulated_weights[name], tensor, atol=1e-6, rtol=1e-5)


def test_only_rank_zero_reports_a_finished_run(monkeypatch, capsys):
    """train and distill finish through one `report`: under torchrun rank 0 alone prints, every rank
    returns the run's status."""
    from types import SimpleNamespace

    from distillscale.training.commands import report

    printed = []
    done = SimpleNamespace(completed=True, to_json=lambda: {"val_loss": 1.0})
    for rank, expected in (("1", []), ("0", [done])):
        monkeypatch.setenv("RANK", rank)
        assert report(done, False, printed.append) == 0
        assert printed == expected
        printed.clear()
    monkeypatch.setenv("RANK", "1")
    assert report(done, True, printed.append) == 0 and capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert report(done, True, printed.append) == 0 and '"val_loss": 1.0' in capsys.readouterr().out
