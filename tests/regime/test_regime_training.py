"""Large-batch settings in `train` and `distill` (Hoffer et al. 2017): the learning rate scaled from a
reference batch size, regime adaptation of the number of steps, and ||w_t - w_0|| in metrics.jsonl,
kept exact across a resume."""

from __future__ import annotations

import json
import math

import pytest
import safetensors.torch
import torch

from distillscale.model import ModelConfig, Transformer
from distillscale.training import recipe
from distillscale.settings import load_config
from distillscale.training.config import TrainConfig

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

# Global batch 8 sequences of 32 tokens (256 tokens per step), tuned at a reference batch of 2.
ARGS = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--vocab-size", "300",
        "--max-bytes", "60k", "--seq-len", "32", "--batch-size", "8", "--lr", "0.01",
        "--eval-tokens", "256", "--eval-every", "0", "--log-every", "1", "--device", "cpu",
        "--reference-batch-size", "2")
ADAPTED = ("--tokens", "512", "--regime-adaptation", "--save-every", "4")  # 2 steps at B, 8 at B_ref


@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory):
    from distillscale.cli import main

    out = tmp_path_factory.mktemp("runs") / "adapted"
    assert main(["train", "--out", str(out), *ARGS, *ADAPTED]) == 0
    return out


def read_json(path):
    return json.loads(path.read_text())


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def embedding_lr(run) -> float:
    """The base learning rate the optimizer was built with (the embedding group has no muP factor)."""
    state = torch.load(run / "state" / "checkpoint.pt", weights_only=True)
    return next(g["initial_lr"] for g in state["optimizer"]["param_groups"] if g["name"] == "embeddings")


def test_regime_adaptation_makes_the_reference_number_of_updates_on_more_tokens(adapted_run):
    result = read_json(adapted_run / "result.json")
    # 512 tokens at a reference batch of 2 x 32 tokens take 8 steps; at batch 8 they are 2048 tokens.
    assert (result["steps"], result["tokens"], result["token_budget"]) == (8, 2048, 512)
    plan = read_json(adapted_run / "config.json")["plan"]
    assert plan["total_steps"] == 8
    assert plan["warmup_steps"] == math.ceil(0.1 * 8)  # the reference run's default warmup
    assert [record["step"] for record in metrics(adapted_run)] == list(range(1, 9))


def test_sqrt_scaling_is_the_default_and_reaches_result_metrics_and_optimizer(adapted_run):
    peak = 0.01 * math.sqrt(8 / 2)
    assert read_json(adapted_run / "result.json")["lr"] == pytest.approx(peak)
    assert read_json(adapted_run / "config.json")["plan"]["lr"] == pytest.approx(peak)
    assert embedding_lr(adapted_run) == pytest.approx(peak)
    logged = [record["lr"] for record in metrics(adapted_run)]
    assert max(logged) == pytest.approx(peak)  # one warmup step, then cosine decay from the peak
    assert logged == sorted(logged, reverse=True)


def test_linear_scaling_without_regime_adaptation(cli, tmp_path):
    out = tmp_path / "linear"
    code, _, err = cli("train", "--out", out, *ARGS, "--tokens", "512", "--lr-scaling", "linear",
                       "--warmup-steps", "0")
    assert code == 0, err
    result = read_json(out / "result.json")
    assert (result["steps"], result["tokens"]) == (2, 512)  # the budget, at batch 8
    assert result["lr"] == pytest.approx(0.01 * 8 / 2)
    assert embedding_lr(out) == pytest.approx(0.04)
    assert metrics(out)[0]["lr"] == pytest.approx(0.04)  # no warmup: step 1 runs at the peak


def test_weight_distance_starts_from_zero_and_grows(adapted_run):
    records = metrics(adapted_run)
    distances = [record["weight_distance"] for record in records]
    assert 0 < distances[0] < distances[-1]
    for record in records:  # the global distance is the root of the sum of the layers' squares
        layers = [value for key, value in record.items() if key.startswith("weight_distance/")]
        assert "weight_distance/blocks.0.ffn.down" in record and "weight_distance/embed" in record
        assert math.sqrt(sum(d * d for d in layers)) == pytest.approx(record["weight_distance"])


def test_initial_weights_are_saved_with_the_run(adapted_run):
    saved = safetensors.torch.load_file(adapted_run / "state" / "initial_weights.safetensors")
    torch.manual_seed(0)  # --seed 0: the run's initialisation
    model = Transformer(ModelConfig(**read_json(adapted_run / "model_config.json")))
    assert saved.keys() == dict(model.named_parameters()).keys()
    for name, parameter in model.named_parameters():
        assert torch.equal(saved[name], parameter.detach())


def test_resume_continues_the_weight_distance_from_the_first_initialisation(cli, tmp_path, adapted_run,
                                                                            monkeypatch):
    steps_taken = 0

    def interrupt_after_six_steps(*args, **kwargs):
        nonlocal steps_taken
        if steps_taken == 6:
            raise KeyboardInterrupt
        steps_taken += 1
        return train_step(*args, **kwargs)

    train_step = recipe.train_step
    monkeypatch.setattr(recipe, "train_step", interrupt_after_six_steps)
    out = tmp_path / "interrupted"
    code, _, _ = cli("train", "--out", out, *ARGS, *ADAPTED)
    assert code == 130 and not (out / "result.json").exists()
    assert torch.load(out / "state" / "checkpoint.pt", weights_only=True)["progress"]["step"] == 4

    monkeypatch.setattr(recipe, "train_step", train_step)
    code, _, err = cli("train", "--out", out, *ARGS, *ADAPTED)
    assert code == 0 and "resuming" in err and "from step 4/8" in err

    def distances(run):
        return [{key: value for key, value in record.items() if key.startswith("weight_distance")}
                for record in metrics(run)]

    assert distances(out) == distances(adapted_run)


@pytest.mark.parametrize("flags, message", [
    (("--lr-scaling", "cube", "--reference-batch-size", "2"),
     "invalid --lr-scaling: Input should be 'sqrt', 'linear' or 'none' (got 'cube')"),
    (("--reference-batch-size", "0"),
     "invalid --reference-batch-size: Input should be greater than or equal to 1 (got 0)"),
    (("--regime-adaptation",),
     "invalid --regime-adaptation: needs --reference-batch-size, the global batch size (sequences) "
     "that lr and the schedule were tuned at (got True)"),
    (("--lr-scaling", "linear"), "invalid --lr-scaling: needs --reference-batch-size"),
])
# distill takes train's options: the flags reach its config, checked before the teacher is looked up.
@pytest.mark.parametrize("command", [("train",), ("distill", "--teacher", "no-such-teacher")])
def test_bad_large_batch_flags_are_one_line_errors(cli, tmp_path, command, flags, message):
    out = tmp_path / "run"
    code, _, err = cli(*command, "--out", out, "--n-layers", "1", "--tokens", "1M", *flags)
    assert code == 2
    assert err.startswith(f"distillscale: error: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_toml_settings_and_effective_lr(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('out = "r"\nn_layers = 1\ntokens = "1M"\nbatch_size = 4\ngrad_accum = 4\n'
                    'reference-batch-size = 64\nlr_scaling = "sqrt"\nregime_adaptation = true\n')
    config = load_config(TrainConfig, path)
    assert config.global_batch_size == 16
    assert config.effective_lr == pytest.approx(1e-2 * math.sqrt(16 / 64))  # a smaller batch: lower lr
    assert config.steps_for(config.token_budget(non_embedding_params=1)) == math.ceil(1e6 / (64 * 256))
    none = load_config(TrainConfig, path, {"lr_scaling": "none", "regime_adaptation": False})
    assert none.effective_lr == 1e-2
    assert none.steps_for(none.token_budget(non_embedding_params=1)) == math.ceil(1e6 / (16 * 256))


def test_config_hash_of_runs_without_the_large_batch_settings_is_unchanged():
    # Computed before these settings existed: unfinished runs of that time still resume.
    config = TrainConfig(out="run", n_layers=2, tokens="1M", batch_size=8, lr=0.02)
    assert config.hash() == "8dc7d6344ed2b7be"
    assert TrainConfig(out="run", n_layers=2, tokens="1M", batch_size=8, lr=0.02,
                       reference_batch_size=8).hash() != config.hash()
