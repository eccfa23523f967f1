"""fit hyperparameters --beta2-col / --warmup-col (issue 53): a cell whose runs vary beta2 is fitted at
the setting of its best run, the law carries the setting most cells chose (or the one every run
used, as a condition), predict and the plan's recipes say it, bad values are refused in one line, and
a law file written before these columns existed still loads."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.laws.hyperparameters import HyperparameterLaw
from distillscale.planning.recipes import run_recipe
from distillscale.rules import WARMUP_RULE

LRS = 1e-3 * 2.0 ** np.arange(-2.5, 3.0, 0.5)      # 11 rates, sqrt(2) apart
BATCHES = 2.0 ** np.arange(16, 21)                  # 64K-1M tokens
SIZES, TOKENS = (1e8, 2e8, 4e8), (4e9, 1.2e10)


def true_lr(n, d, beta2):
    """The optimal rate at beta2: at 0.99 half the rate at 0.95."""
    return 2.0 * n ** -0.7 * d ** 0.3 * (0.5 if beta2 == 0.99 else 1.0)


def loss(n, d, lr, batch, beta2):
    """A convex bowl in (ln lr, ln B) per beta2; beta2 0.95 is 0.5% better below N = 3e8, 0.99 above."""
    x, y = np.log(lr / true_lr(n, d, beta2)), np.log(batch / (0.5 * d ** 0.57))
    level = 1.7 + 400 / n ** 0.34 + 400 / d ** 0.28
    better = (beta2 == 0.95) == (n < 3e8)
    return level * (1.0 if better else 1.005) + 0.02 * x * x - 0.016 * x * y + 0.01 * y * y


def runs(warmup=2000) -> pd.DataFrame:
    return pd.DataFrame([{"params": n, "tokens": d, "lr": lr, "batch_tokens": b, "beta2": beta2, "warmup": float(warmup),
                          "loss": loss(n, d, lr, b, beta2)}
                         for n in SIZES for d in TOKENS for beta2 in (0.95, 0.99) for lr in LRS for b in BATCHES])


@pytest.fixture(scope="module")
def fit():
    return ds.fit_hyperparameters(runs(), beta2="beta2", warmup="warmup", window=0.02, bootstrap=0)


def test_each_cell_is_fitted_at_its_better_beta2_and_recovers_the_lr_optimum_there(fit):
    for cell in fit.cells:
        beta2 = 0.95 if cell.params < 3e8 else 0.99
        assert (cell.beta2, cell.warmup, cell.settings) == (beta2, 2000, 2)
        assert cell.runs == LRS.size * BATCHES.size           # the surface saw its own slice only
        assert cell.lr == pytest.approx(true_lr(cell.params, cell.tokens, beta2), rel=0.05)
    # the value most cells chose (4 of 6), and how many chose it
    assert fit.law.beta2.model_dump() == {"value": 0.95, "cells": 4, "of_cells": 6, "varied": True}
    rec = fit.law.recommend(3e8, 1e10)
    assert (rec.beta2, rec.warmup) == (0.95, 2000)


def test_the_backtest_scores_a_held_out_cell_at_the_setting_the_law_carries(fit):
    """The 4e8 cells (held out) run best at beta2 0.99; the law of the smaller cells says 0.95: scored
    there, the recommendation's rate is the 0.95 slice's optimum and its loss pays the setting's 0.5%."""
    for score in fit.backtest:
        assert (score.params, score.beta2, score.warmup) == (4e8, 0.95, 2000)
        assert score.lr_ratio == pytest.approx(1.0, abs=0.05)
        assert score.penalty == pytest.approx(0.005, abs=5e-4)


def test_a_constant_column_is_recorded_as_the_laws_condition(fit, tmp_path, cli):
    assert fit.law.warmup.model_dump() == {"value": 2000, "cells": 6, "of_cells": 6, "varied": False}
    assert "warmup 2000 steps (every run: the law holds at it)" in fit.law.conditions
    loaded = HyperparameterLaw.load(fit.save(tmp_path / "hp.json"))
    assert loaded.warmup == fit.law.warmup and loaded.fit.cells[0].beta2 == 0.95
    code, out, err = cli("predict", "hyperparameters", "--law", tmp_path / "hp.json", "--params", "300M",
                         "--tokens", "10B", "--json")
    assert code == 0, err
    assert (json.loads(out)["beta2"], json.loads(out)["warmup"]) == (0.95, 2000)
    code, out, err = cli("predict", "hyperparameters", "--law", tmp_path / "hp.json", "--params", "300M",
                         "--tokens", "10B")
    assert "beta2        0.95  (the best in 4 of 6" in out and "the law holds at it" in out
    code, out, err = cli("predict", "hyperparameters", "--params", "1B", "--tokens", "20B", "--json")
    assert (json.loads(out)["beta2"], json.loads(out)["warmup"]) == (None, None)   # the preset does not say


def test_the_plans_recipe_carries_the_laws_beta2_and_warmup(fit):
    law = fit.law
    recipe = run_recipe(law, "student", 3e8, 1e10, 2048, 64)
    assert recipe.beta2 == 0.95 and recipe.warmup_steps == 2000 and recipe.warmup_rule != WARMUP_RULE
    record = recipe.to_dict()
    assert record["beta2"] == 0.95 and record["warmup_steps"] == 2000
    short = run_recipe(law, "student", 3e8, 1e10, 2048, 64, batch_tokens=8e6)   # fewer steps than its warmup
    assert short.steps < 2000 and short.warmup_steps == short.steps and short.warmup_rule != WARMUP_RULE
    # a run far outside the law's data does not take warmup steps measured at the law's scale (issue 63)
    far = run_recipe(law, "student", 3e8, 2e6, 2048, 64)
    assert far.warmup_rule == WARMUP_RULE and far.warmup_steps == math.ceil(0.1 * far.steps)
    assert any("warmup (2000 steps) was measured on runs" in note for note in far.notes)
    plain = run_recipe(law.model_copy(update={"beta2": None, "warmup": None}), "student", 3e8, 1e10, 2048, 64)
    assert plain.beta2 is None and plain.warmup_rule == WARMUP_RULE and plain.warmup_steps == 2000


def _one_line_error(cli, *args) -> str:
    code, out, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_missing_named_column_is_refused_in_one_line(cli, tmp_path):
    runs().to_csv(tmp_path / "runs.csv", index=False)
    for flag in ("--beta2-col", "--warmup-col"):
        err = _one_line_error(cli, "fit", "hyperparameters", tmp_path / "runs.csv", flag, "adam_b2")
        assert f"{flag} 'adam_b2' is not a column" in err
    with pytest.raises(ParameterError, match="beta2='adam_b2' is not a column"):
        ds.fit_hyperparameters(runs(), beta2="adam_b2")


@pytest.mark.parametrize("column, value", [("beta2", 1.0), ("beta2", -0.9), ("warmup", -1), ("warmup", 0.1)])
def test_invalid_beta2_or_warmup_refused_in_one_line_or_dropped(cli, tmp_path, column, value):
    table = runs()
    table = table[table.params < 2e8].reset_index(drop=True)
    table.loc[3, column] = value
    table.to_csv(tmp_path / "runs.csv", index=False)
    args = ("fit", "hyperparameters", tmp_path / "runs.csv", "--beta2-col", "beta2", "--warmup-col", "warmup",
            "--bootstrap", "0", "--no-backtest")
    err = _one_line_error(cli, *args)
    assert f"column {column!r}" in err and "lines 5" in err and "--drop-invalid" in err
    code, out, err = cli(*args, "--drop-invalid", "--json")
    assert code == 0, err
    assert json.loads(out)["n_dropped"] == 1
    with pytest.raises(ParameterError, match=f"{column} must be"):
        ds.fit_hyperparameters(table, beta2="beta2", warmup="warmup", bootstrap=0, backtest=False)


def test_no_warmup_is_a_valid_warmup():
    table = runs(warmup=0)
    fit = ds.fit_hyperparameters(table[table.params < 2e8], warmup="warmup", window=0.02, bootstrap=0,
                                 backtest=False)
    assert fit.law.warmup.value == 0 and not fit.law.warmup.varied and fit.law.beta2 is None


def test_a_best_run_at_a_setting_with_too_few_rates_fits_the_best_setting_that_has_enough():
    table = runs()
    table = table[(table.params < 2e8) & ((table.beta2 == 0.95) | (table.lr == LRS[5]))]
    table.loc[table.beta2 == 0.99, "loss"] -= 0.5          # a one-rate ablation at 0.99 beats every 0.95 run
    fit = ds.fit_hyperparameters(table, beta2="beta2", window=0.02, bootstrap=0, backtest=False)
    assert [cell.beta2 for cell in fit.cells] == [0.95, 0.95]
    assert any("1 rate(s), too few for a surface; fitted at beta2 0.95" in note for note in fit.notes)


def test_a_law_file_written_before_beta2_and_warmup_existed_loads(fit, tmp_path, cli):
    record = fit.law.model_dump(mode="json")
    for key in ("beta2", "warmup"):
        del record[key]
    for cell in record["fit"]["cells"]:
        for key in ("beta2", "warmup", "settings"):
            del cell[key]
    (tmp_path / "old.json").write_text(json.dumps(record))
    loaded = HyperparameterLaw.load(tmp_path / "old.json")
    assert loaded.beta2 is None and loaded.warmup is None and loaded.fit.cells[0].settings == 1
    assert loaded.recommend(3e8, 1e10).lr == fit.law.recommend(3e8, 1e10).lr
    code, out, err = cli("predict", "hyperparameters", "--law", tmp_path / "old.json", "--params", "300M",
                         "--tokens", "10B", "--json")
    assert code == 0 and json.loads(out)["beta2"] is None
