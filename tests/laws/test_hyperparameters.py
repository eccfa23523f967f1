"""Hyperparameter laws (laws/hyperparameters): a cell's surface finds its optimum, the laws across
cells recover the optima of held-out cells, the presets load with intervals, and the commands refuse
bad tables in one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import distillscale as ds
from distillscale.errors import UserError
from distillscale.laws.hyperparameters import HYPERPARAMETER_PRESETS, HyperparameterLaw, load_hyperparameter_law
from distillscale.laws.hyperparameters.surface import CellRuns, cell_optimum

LRS = 1e-3 * 2.0 ** np.arange(-2.5, 3.0, 0.5)      # 11 rates, factor sqrt(2) apart
BATCHES = 2.0 ** np.arange(16, 22)                  # 64K-2M tokens
EXPONENT = 0.4                                      # d ln lr* / d ln B of the synthetic surfaces


def true_lr(n, d):
    return 2.0 * n ** -0.7 * d ** 0.3


def true_batch(n, d):
    return 0.5 * d ** 0.57


def surface_loss(n, d, lr, batch):
    """A convex quadratic in (ln lr, ln B) with a cross term, its minimum at (true_lr, true_batch)
    and its ridge at slope EXPONENT; the best loss falls with N and D."""
    x, y = np.log(lr / true_lr(n, d)), np.log(batch / true_batch(n, d))
    a, b = 0.02, 0.01
    return 1.7 + 400 / n ** 0.34 + 400 / d ** 0.28 + a * x * x - 2 * a * EXPONENT * x * y + b * y * y


def grid(sizes=(1e8, 2e8, 4e8), tokens=(4e9, 1.2e10), noise=0.0, seed=0, batches=BATCHES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for d in tokens:
            for lr in LRS:
                for batch in batches:
                    loss = surface_loss(n, d, lr, batch) * (1 + noise * rng.standard_normal())
                    rows.append({"params": n, "tokens": d, "lr": lr, "batch_tokens": batch, "loss": loss})
    return pd.DataFrame(rows)


def test_surface_fit_recovers_a_known_optimum_from_noisy_runs():
    n, d = 3e8, 1e10
    runs = grid(sizes=(n,), tokens=(d,), noise=0.0005, seed=1)
    cell = CellRuns(n, d, runs.lr.to_numpy(), runs.batch_tokens.to_numpy(), runs.loss.to_numpy())
    fit = cell_optimum(cell, 0.02)
    assert fit.surface is not None and not fit.at_edge
    assert fit.lr == pytest.approx(true_lr(n, d), rel=0.1)
    assert fit.batch_tokens == pytest.approx(true_batch(n, d), rel=0.15)
    assert fit.surface.lr_batch_exponent == pytest.approx(EXPONENT, abs=0.1)
    best_run = runs.loc[runs.loss.idxmin()]   # the grid's best run is a coarser answer than the surface's
    assert abs(math.log(fit.lr / true_lr(n, d))) < abs(math.log(best_run.lr / true_lr(n, d))) + 0.05


def test_the_backtest_leaves_the_largest_cells_out_and_recovers_their_optima():
    fit = ds.fit_hyperparameters(grid(noise=0.0002), bootstrap=20)
    law = fit.law
    assert [(s.params, s.tokens) for s in fit.backtest] == [(4e8, 4e9), (4e8, 1.2e10)]
    for score in fit.backtest:   # fitted on 1e8 and 2e8 only
        assert score.lr == pytest.approx(true_lr(score.params, score.tokens), rel=0.15)
        assert score.batch_tokens == pytest.approx(true_batch(score.params, score.tokens), rel=0.2)
        assert score.penalty < 0.001
    assert law.lr.exponents == pytest.approx((-0.7, 0.3), abs=0.1)
    assert law.lr_batch_exponent == pytest.approx(EXPONENT, abs=0.1)
    rec = law.recommend(8e8, 3e10)
    assert rec.lr_interval[0] < rec.lr < rec.lr_interval[1]
    assert rec.batch_interval[0] < rec.batch_tokens < rec.batch_interval[1]
    # an open end (None): a resample reached the grid's edge (the 1e8, 1.2e10 cell: lr* 0.0053, the grid's largest 0.0057)
    assert [(c.lr_interval[0] or 0) < c.lr < (c.lr_interval[1] or math.inf) for c in fit.cells] == [True] * 6


def test_the_rate_at_a_fixed_batch_uses_the_fitted_exponent_and_prices_the_batch(tmp_path):
    law = ds.fit_hyperparameters(grid(), bootstrap=0).law
    optimal = law.recommend(4e8, 1e10)
    adapted = law.at_batch(4e8, 1e10, 8 * optimal.batch_tokens)
    assert adapted.lr == pytest.approx(optimal.lr * 8 ** law.lr_batch_exponent)
    assert law.lr_batch_exponent != 0.5 and adapted.loss_penalty > 0
    assert adapted.extra_tokens_factor > 1 and adapted.extra_tokens > 0
    loaded = HyperparameterLaw.load(law.save(tmp_path / "hp.json"))
    assert loaded.recommend(4e8, 1e10, 2e6) == law.recommend(4e8, 1e10, 2e6)


def test_one_batch_size_fits_the_lr_law_alone_and_says_so():
    fit = ds.fit_hyperparameters(grid(batches=(2.0 ** 19,)), bootstrap=0)
    assert fit.law.batch is None and any("batch was not varied" in note for note in fit.notes)
    rec = fit.law.recommend(3e8, 1e10)
    assert rec.batch_tokens == 2.0 ** 19 and rec.lr > 0 and rec.notes
    with pytest.raises(UserError, match="did not vary the batch"):
        fit.law.recommend(3e8, 1e10, batch_tokens=2.0 ** 21)


def test_every_preset_is_tested_below():
    assert sorted(HYPERPARAMETER_PRESETS) == ["deepseek2024", "gpu-ladder-h200", "steplaw2025"]


def test_the_gpu_ladders_own_law_is_a_fixed_batch_fit_with_an_interval_that_grows_outside_its_data():
    law = load_hyperparameter_law("gpu-ladder-h200")
    assert law.fixed_batch_tokens == 64 * 512 and law.batch is None
    inside, far = law.recommend(5e6, 3e7), law.recommend(1e9, 2e10)
    assert inside.lr == pytest.approx(law.lr.coefficient * 5e6 ** law.lr.exponents[0] * 3e7 ** law.lr.exponents[1])
    assert 0.003 < inside.lr < 0.005 and inside.extrapolation <= 2
    width = lambda rec: rec.lr_interval[1] / rec.lr_interval[0]
    assert 1.2 < width(inside) < width(far) and far.extrapolation > 100 and far.notes


@pytest.mark.parametrize("name", ["deepseek2024", "steplaw2025"])
def test_presets_load_with_intervals_that_are_not_zero_width(name):
    rec = load_hyperparameter_law(name).recommend(1e9, 2e10)
    assert rec.lr_interval[0] < 0.9 * rec.lr and rec.lr_interval[1] > 1.1 * rec.lr
    assert rec.batch_interval[0] < 0.9 * rec.batch_tokens and rec.batch_interval[1] > 1.1 * rec.batch_tokens
    if name == "steplaw2025":   # 1.79 N^-0.713 D^0.307, 0.58 D^0.571
        assert rec.lr == pytest.approx(1.79 * 1e9 ** -0.713 * 2e10 ** 0.307)
        assert rec.batch_tokens == pytest.approx(0.58 * 2e10 ** 0.571)
    else:                        # DeepSeek's C taken as 6 N D
        assert rec.lr == pytest.approx(0.3118 * (6 * 1e9 * 2e10) ** -0.125)


def test_predict_hyperparameters_json_keys(cli, tmp_path):
    code, out, err = cli("predict", "hyperparameters", "--law", "steplaw2025", "--params", "1B", "--tokens", "20B",
                         "--json")
    assert code == 0, err
    record = json.loads(out)
    assert {"lr", "lr_interval", "batch_tokens", "batch_interval"} <= set(record)
    code, out, err = cli("predict", "hyperparameters", "--params", "1B", "--tokens", "20B", "--batch-tokens", "4M",
                         "--json")
    record = json.loads(out)
    assert code == 0 and record["batch_tokens"] == 4e6 and record["adaptation"]["loss_penalty"] > 0


def test_fit_hyperparameters_command_saves_a_law_predict_reads(cli, tmp_path):
    grid(sizes=(1e8, 2e8), tokens=(4e9, 1.2e10)).to_csv(tmp_path / "runs.csv", index=False)
    code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--bootstrap", "10",
                         "--out", tmp_path / "hp.json")
    assert code == 0, err
    assert "lr* = " in out and "B*  = " in out
    code, out, err = cli("predict", "hyperparameters", "--law", tmp_path / "hp.json", "--params", "300M",
                         "--tokens", "10B", "--json")
    assert code == 0 and json.loads(out)["law"] == "runs"


def _one_line_error(cli, *args) -> str:
    code, out, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("drop, needle", [("lr", "--lr-col"), ("batch_tokens", "--batch-col")])
def test_a_table_without_lr_or_batch_is_refused_in_one_line(cli, tmp_path, drop, needle):
    grid(sizes=(1e8,), tokens=(4e9,)).drop(columns=[drop]).to_csv(tmp_path / "runs.csv", index=False)
    assert needle in _one_line_error(cli, "fit", "hyperparameters", tmp_path / "runs.csv")


def test_a_cell_with_a_single_lr_is_refused_in_one_line(cli, tmp_path):
    runs = grid(sizes=(1e8, 2e8), tokens=(4e9,))
    runs = runs[(runs.params == 1e8) | (runs.lr == LRS[4])]
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert "1 learning rate(s)" in _one_line_error(cli, "fit", "hyperparameters", tmp_path / "runs.csv")


@pytest.mark.parametrize("column", ["lr", "batch_tokens", "loss"])
def test_non_positive_values_are_refused_in_one_line(cli, tmp_path, column):
    runs = grid(sizes=(1e8,), tokens=(4e9,))
    runs.loc[3, column] = -1
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert "lines 5" in _one_line_error(cli, "fit", "hyperparameters", tmp_path / "runs.csv")


def test_an_unknown_law_and_a_newer_file_are_refused_in_one_line(cli, tmp_path):
    assert "preset" in _one_line_error(cli, "predict", "hyperparameters", "--law", "nope", "--params", "1B",
                                       "--tokens", "1B")
    newer = HYPERPARAMETER_PRESETS["steplaw2025"].model_dump(mode="json") | {"schema_version": 99}
    (tmp_path / "new.json").write_text(json.dumps(newer))
    assert "newer" in _one_line_error(cli, "predict", "hyperparameters", "--law", tmp_path / "new.json",
                                      "--params", "1B", "--tokens", "1B")


def test_a_law_file_with_a_negative_coefficient_is_refused_in_one_line(cli, tmp_path):
    law = HYPERPARAMETER_PRESETS["steplaw2025"].model_dump(mode="json")
    law["lr"]["coefficient"] = -1.79
    (tmp_path / "bad.json").write_text(json.dumps(law))
    assert "coefficient positive" in _one_line_error(cli, "predict", "hyperparameters", "--law", tmp_path / "bad.json",
                                                     "--params", "1B", "--tokens", "1B")



def test_each_size_at_its_own_batch_fits_the_lr_law_for_the_batch_the_runs_used():
    runs = pd.concat([grid(sizes=(n,), batches=(batch,)) for n, batch in ((1e8, 2.0 ** 18), (2e8, 2.0 ** 19),
                                                                           (4e8, 2.0 ** 20))])
    fit = ds.fit_hyperparameters(runs, bootstrap=0)
    assert fit.law.batch is None and fit.law.fixed_batch_tokens is None
    assert any("each size ran its own" in note for note in fit.notes)
    rec = fit.law.recommend(2e8, 4e9)
    assert rec.batch_tokens == pytest.approx(2.0 ** 19, rel=0.01) and "not an optimum" in rec.notes[0]
    assert rec.lr == pytest.approx(runs[(runs.params == 2e8) & (runs.tokens == 4e9)].sort_values("loss").lr.iloc[0],
                                   rel=0.5)
    with pytest.raises(UserError, match="did not vary the batch"):
        fit.law.recommend(2e8, 4e9, batch_tokens=2.0 ** 22)


def test_one_tokens_per_param_rounded_to_whole_steps_fits_no_data_exponent():
    """A sweep at one M = D/N rounds each budget up to whole steps (sweep [tune]): ln D is ln M + ln N
    up to the rounding, which says nothing of lr*'s dependence on D; the law's D exponent stays 0
    and it predicts the rate at the next size (it fitted D^-3.8 N^3.5 to the rounding before)."""
    step = 2.0 ** 26
    runs = pd.concat([grid(sizes=(n,), tokens=(math.ceil(5 * n / step) * step,), noise=0.0002, seed=i)
                      for i, n in enumerate((1e8, 2e8, 4e8))])
    law = ds.fit_hyperparameters(runs, bootstrap=0, backtest=False).law
    assert law.lr.exponents[1] == 0 and law.lr.exponents[0] == pytest.approx(-0.4, abs=0.1)
    assert law.recommend(8e8, 4e9).lr == pytest.approx(true_lr(8e8, 4e9), rel=0.2)
