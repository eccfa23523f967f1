"""`train` and `distill` warn in one line when the run's peak learning rate or batch lies outside the
hyperparameter law's 90% interval at its N and D (issue 53; `planning.recipes.hyperparameter_warning`),
and stay quiet where the law would be extrapolated (a micro-scale run, outside its data)."""

import pytest

from distillscale.laws.hyperparameters import HYPERPARAMETER_PRESETS, load_hyperparameter_law
from distillscale.planning.recipes import hyperparameter_warning

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

TINY = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", "320",
        "--max-bytes", "300k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "4k",
        "--eval-every", "0", "--device", "cpu")


def test_a_rate_or_batch_outside_the_laws_interval_is_named_and_one_inside_is_not():
    law = load_hyperparameter_law("steplaw2025")
    N, D, batch = 5e8, 2e10, 5e5  # inside Step Law's data (60M-1.07B parameters, 2B-100B tokens)
    at_batch = law.recommend(N, D, batch_tokens=batch)
    assert hyperparameter_warning(N, D, at_batch.lr, batch) is None
    # under muP the hidden matrices train at --lr x multiplier: the base rate that gives lr* is quiet
    assert hyperparameter_warning(N, D, at_batch.lr * 6, batch, mup_multiplier=1 / 6) is None
    high = hyperparameter_warning(N, D, at_batch.lr * 3, batch)
    assert high.startswith("hyperparameter law steplaw2025 at N 500M, D 20B tokens: the hidden matrices' peak lr ")
    assert "is outside its 90% interval" in high and "tokens is outside" not in high  # the batch is fine
    wide = hyperparameter_warning(N, D, law.recommend(N, D, batch_tokens=16e6).lr, 16e6)
    assert "batch 16M tokens is outside its 90% interval" in wide and "peak lr" not in wide  # the rate follows it
    assert "\n" not in wide and "distillscale predict hyperparameters --law steplaw2025" in wide
    assert hyperparameter_warning(5e4, 1e4, 1.0, 256) is None  # outside the law's data: no opinion


def test_train_warns_in_one_line_when_its_lr_and_batch_are_far_from_the_laws(cli, tmp_path, monkeypatch):
    # steplaw2025 as if its data reached down to this micro run, which it would otherwise leave alone
    wide = HYPERPARAMETER_PRESETS["steplaw2025"].model_copy(
        update={"data_range": {"params": (1e3, 1e12), "tokens": (1e3, 1e15)}})
    monkeypatch.setitem(HYPERPARAMETER_PRESETS, "steplaw2025", wide)
    code, out, err = cli("train", "--out", tmp_path / "run", "--tokens", "10k", *TINY, "--lr", "0.05")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "hyperparameter law steplaw2025" in line]
    assert len(lines) == 1 and "peak lr 0.2 (--lr 0.05 x muP's 4 at this width) is outside" in lines[0]
    assert "batch 256 tokens is outside its 90% interval" in lines[0]
