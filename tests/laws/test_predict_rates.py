"""`predict hyperparameters` labels its rates as `plan` does: "peak lr" the hidden matrices' rate at
the model's width (the family's at N, or --d-model), "--lr" the rate `train` takes, for a law in muP
base units as for one in peak units; and it flags a recommendation that is no run to train."""

from __future__ import annotations

import json
import re

import pytest

import distillscale as ds
from distillscale.model.config import family_width
from tests.planning.test_rate_labels import _law_file, _printed

LAW = "busbridge2025"


def test_predict_hyperparameters_prints_the_peak_rate_and_the_lr_plan_does(cli, tmp_path):
    """A muP-base law: `predict hyperparameters`' "peak lr" is the hidden matrices' rate at the width
    (the family's at N, or --d-model) and its "--lr" the rate `train` takes, as the plan's sheet says."""
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case", hyperparameter_law="gpu-ladder-h200")
    recipe = plan.recipes["best-case"]
    code, out, err = cli("predict", "hyperparameters", "--law", "gpu-ladder-h200", "--params", "546M",
                         "--tokens", str(recipe.tokens))
    assert code == 0, err
    assert _printed(out, "peak lr") == [pytest.approx(recipe.lr, rel=2e-3)]
    assert _printed(out, "--lr") == [pytest.approx(recipe.train_lr, rel=2e-4)]
    code, out, _ = cli("predict", "hyperparameters", "--law", "gpu-ladder-h200", "--params", "546M",
                       "--tokens", str(recipe.tokens), "--json")
    record = json.loads(out)
    assert record["peak_lr"] == pytest.approx(recipe.lr) and record["train_lr"] == pytest.approx(recipe.train_lr)
    assert record["d_model"] == pytest.approx(family_width(546e6, 128))
    assert record["lr"] == pytest.approx(recipe.train_lr)   # the law's own rate, in its unit (lr_unit says which)
    # a width given: the peak rate at it
    code, out, _ = cli("predict", "hyperparameters", "--law", "gpu-ladder-h200", "--params", "546M",
                       "--tokens", str(recipe.tokens), "--d-model", "1024", "--json")
    record = json.loads(out)
    assert record["peak_lr"] == pytest.approx(record["lr"] * 256 / 1024) and record["d_model"] == 1024
    assert record["train_lr"] == pytest.approx(record["lr"])


def test_a_rate_above_one_or_a_batch_beyond_the_tokens_is_flagged(cli, tmp_path):
    law = _law_file(tmp_path, "peak", scale=2000.0, name="hot")
    code, out, err = cli("predict", "hyperparameters", "--law", law, "--params", "546M", "--tokens", "10B")
    assert code == 0 and "not a run to train" in err and "above 1, where training diverges" in err
    code, out, _ = cli("predict", "hyperparameters", "--law", law, "--params", "546M", "--tokens", "10B", "--json")
    assert any("above 1" in problem for problem in json.loads(out)["problems"])
    code, out, err = cli("predict", "hyperparameters", "--law", "steplaw2025", "--params", "546M", "--tokens", "10B",
                         "--batch-tokens", "1T")
    assert code == 0 and "tokens it trains on" in err
    code, out, err = cli("predict", "hyperparameters", "--law", "steplaw2025", "--params", "546M", "--tokens", "10B")
    assert code == 0 and "not a run to train" not in err and re.search(r"peak lr +0\.00", out)
