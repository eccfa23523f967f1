"""Issue 33's recipe settings: AdamW's betas and eps, warmup in tokens or tokens per parameter (in the
config, its flags and sweep specs, left out of the hash at their defaults), and checkpoints by time."""

from __future__ import annotations

import pytest
import torch

from distillscale.errors import ParameterError
from distillscale.sweeps.spec import resolve_sweep_spec
from distillscale.training.config import TrainConfig

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

REQUIRED = {"out": "run", "n_layers": 2, "tokens": "1M"}
TINY = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", "320",
        "--max-bytes", "300k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "4k",
        "--eval-every", "0", "--device", "cpu")


def test_recipe_settings_enter_the_hash_only_when_set():
    base = TrainConfig(**REQUIRED)
    # The defaults are the former hard-coded AdamW(betas=(0.9, 0.95), eps=1e-8): the same hash as before.
    assert (base.adam_beta1, base.adam_beta2, base.adam_eps) == (0.9, 0.95, 1e-8)
    assert TrainConfig(**REQUIRED, adam_beta2=0.95, save_every_seconds=5).hash() == base.hash()
    changed = {TrainConfig(**REQUIRED, **setting).hash() for setting in
               ({"adam_beta1": 0.8}, {"adam_beta2": 0.99}, {"adam_eps": 1e-6}, {"warmup_tokens": "100k"},
                {"warmup_tokens_per_param": 0.5})}
    assert len(changed) == 5 and base.hash() not in changed
    assert base.differing_keys(TrainConfig(**REQUIRED, adam_beta2=0.99)) == ["adam_beta2"]


def test_warmup_in_tokens_or_tokens_per_param_and_conflicts_refused():
    config = TrainConfig(**REQUIRED, seq_len=32, batch_size=8, warmup_tokens="1000")  # 256 tokens per step
    assert config.resolved_warmup_steps(500) == 4
    per_param = TrainConfig(**REQUIRED, seq_len=32, batch_size=8, warmup_tokens_per_param=0.5)
    assert per_param.resolved_warmup_steps(500, non_embedding_params=10_000) == 20  # 5000 tokens
    with pytest.raises(ParameterError, match="give one warmup, not --warmup-steps and --warmup-tokens"):
        TrainConfig(**REQUIRED, warmup_steps=3, warmup_tokens="1k")


def test_cli_refuses_two_warmups_in_one_line(cli, tmp_path):
    code, out, err = cli("train", "--out", tmp_path / "run", "--tokens", "10k", *TINY, "--warmup-tokens", "1k",
                         "--warmup-tokens-per-param", "0.1", "--adam-beta2", "0.99")
    assert code == 2
    assert err.strip().splitlines() == ["distillscale: error: invalid settings: give one warmup, not --warmup-tokens and "
                                        "--warmup-tokens-per-param: warmup in steps, in tokens or in tokens per "
                                        "parameter"]
    assert not (tmp_path / "run").exists()


def test_a_spec_passes_the_recipe_on_and_keeps_its_ids_at_the_defaults():
    spec = {"name": "s", "data": {"vocab_size": 320}, "model": {"schedule": "wsd"},
            "teachers": {"n_layers": [1], "tokens_per_param": [20, 40]}}
    before = resolve_sweep_spec(spec)
    assert all(key not in run.settings for run in before.runs
               for key in ("adam_beta2", "warmup_tokens", "save_every_seconds"))
    at_defaults = resolve_sweep_spec({**spec, "model": {"schedule": "wsd", "adam_beta2": 0.95,
                                                        "save_every_seconds": 60}})
    assert [run.run_id for run in at_defaults.runs] == [run.run_id for run in before.runs]
    tuned = resolve_sweep_spec({**spec, "model": {"schedule": "wsd", "adam_beta2": 0.99,
                                                  "warmup_tokens_per_param": 1, "save_every_seconds": 5}})
    assert all(run.settings["adam_beta2"] == 0.99 and run.settings["warmup_tokens_per_param"] == 1
               and run.settings["warmup_steps"] is None for run in tuned.runs)  # forks share the warmup
    assert {run.run_id for run in tuned.runs}.isdisjoint(run.run_id for run in before.runs)
    with pytest.raises(Exception, match="give one warmup"):
        resolve_sweep_spec({**spec, "model": {"schedule": "wsd", "warmup_steps": 2, "warmup_tokens": "1k"}})


def test_checkpoints_by_time_and_the_settings_reach_the_optimizer(tmp_path, monkeypatch):
    from distillscale.cli import main
    from distillscale.training.run_dir import RunDirectory

    saved: list[int] = []
    save_state = RunDirectory.save_state
    monkeypatch.setattr(RunDirectory, "save_state",
                        lambda self, state: (saved.append(state["progress"]["step"]), save_state(self, state)))
    common = ["--tokens", "2560", *TINY, "--save-every", "100000", "--log-every", "100000",
              "--adam-beta1", "0.8", "--adam-beta2", "0.99", "--adam-eps", "1e-6", "--warmup-tokens", "512"]
    assert main(["train", "--out", str(tmp_path / "by-steps"), *common, "--save-every-seconds", "0"]) == 0
    assert saved == [10]  # 10 steps: by steps, only the last
    saved.clear()
    assert main(["train", "--out", str(tmp_path / "by-time"), *common, "--save-every-seconds", "1e-9"]) == 0
    assert saved == list(range(1, 11))  # every step is a second's billionth after the last checkpoint
    state = torch.load(tmp_path / "by-time" / "state" / "checkpoint.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert {(tuple(group["betas"]), group["eps"]) for group in groups} == {((0.8, 0.99), 1e-6)}
    plan = RunDirectory(tmp_path / "by-time").stored_plan()
    assert plan.warmup_steps == 2  # 512 tokens of 256-token steps
    # Bookkeeping: the same result whenever the checkpoints were taken.
    by_steps, by_time = (RunDirectory(tmp_path / name).read_result() for name in ("by-steps", "by-time"))
    assert by_time.val_loss == by_steps.val_loss and by_time.config_hash == by_steps.config_hash
