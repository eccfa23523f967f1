"""The ways of fitting hyperparameter laws across cells (laws/hyperparameters/across.py): the joint
fit over every run recovers a known optimum law, each way is a candidate of the leave-one-cell-out
selection, and a left-out cell's own runs never enter the law that scores it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import distillscale as ds
from distillscale.laws.hyperparameters.across import METHODS, across_cells, cell_evidence, loco_scores
from distillscale.laws.hyperparameters.surface import split_cells

LRS = 1e-3 * 2.0 ** np.arange(-2.5, 3.0, 0.5)      # 11 rates, factor sqrt(2) apart
BATCHES = 2.0 ** np.arange(16, 22)                  # 64K-2M tokens
WINDOWS = (0.01, 0.04)


def true_lr(n, d):
    return 2.0 * n ** -0.7 * d ** 0.3


def true_batch(n, d):
    return 0.5 * d ** 0.57


def grid(sizes=(1e8, 2e8, 4e8), tokens=(4e9, 1.2e10, 3.6e10), noise=0.0, seed=0, shift=None,
         curvature_exponent=0.2) -> pd.DataFrame:
    """Runs on convex bowls in (ln lr, ln B) with a cross term, their relative curvature growing as
    N^curvature_exponent, their minima on the power laws above; `shift` = (N, D, factor) moves that
    cell's optimal rate."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for d in tokens:
            lr_star = true_lr(n, d) * (shift[2] if shift and (n, d) == shift[:2] else 1.0)
            level = 1.7 + 400 / n ** 0.34 + 400 / d ** 0.28
            curvature = 0.01 * (n / 1e8) ** curvature_exponent
            for lr in LRS:
                for batch in BATCHES:
                    x, y = np.log(lr / lr_star), np.log(batch / true_batch(n, d))
                    loss = level * (1 + curvature * (x * x - 0.8 * x * y + y * y))
                    rows.append({"params": n, "tokens": d, "lr": lr, "batch_tokens": batch,
                                 "loss": loss * (1 + noise * rng.standard_normal())})
    return pd.DataFrame(rows)


def evidence_of(runs: pd.DataFrame, resamples=0):
    cells = split_cells(*(runs[k].to_numpy(float) for k in ("params", "tokens", "lr", "batch_tokens", "loss")))
    return [cell_evidence(cell, WINDOWS, resamples, np.random.default_rng(k)) for k, cell in enumerate(cells)]


@pytest.mark.parametrize("method, curvature_exponent", [("joint", 0.0), ("joint per size", 0.2)])
def test_the_joint_fit_recovers_a_known_optimum_law_from_noisy_runs_of_many_cells(method, curvature_exponent):
    """One bowl shape for every cell ("joint"), or one per model size ("joint per size")."""
    evidence = evidence_of(grid(noise=0.0005, seed=3, curvature_exponent=curvature_exponent))
    lr_law, batch_law = across_cells(evidence, method, 0.04, "N,D")
    assert lr_law.exponents == pytest.approx((-0.7, 0.3), abs=0.02)
    assert batch_law.exponents == pytest.approx((0.0, 0.57), abs=0.02)
    for n, d in ((8e8, 2e10), (1e8, 4e9)):   # beyond the cells and at one of them
        assert lr_law(n, d) == pytest.approx(true_lr(n, d), rel=0.03)
        assert batch_law(n, d) == pytest.approx(true_batch(n, d), rel=0.03)


def test_a_left_out_cells_recommendation_does_not_depend_on_its_own_runs():
    """Moving one cell's optimal rate 1.5x (inside its grid: an optimum beyond it enters no law)
    changes the others' held-out recommendations (its runs enter their laws) but not its own, for
    every method."""
    plain = evidence_of(grid(), resamples=20)
    moved = evidence_of(grid(shift=(2e8, 1.2e10, 1.5)), resamples=20)
    k = 4                                      # the cell (2e8, 1.2e10)
    assert (moved[k].cell.params, moved[k].cell.tokens) == (2e8, 1.2e10)
    for method in METHODS:
        before, after = loco_scores(plain, method, 0.04, "N,D"), loco_scores(moved, method, 0.04, "N,D")
        assert after[k].lr == pytest.approx(before[k].lr, rel=1e-9), method
        assert after[k].batch_tokens == pytest.approx(before[k].batch_tokens, rel=1e-9), method
        assert any(abs(a.lr / b.lr - 1) > 1e-3 for i, (a, b) in enumerate(zip(after, before)) if i != k), method


@pytest.mark.slow
def test_every_method_is_a_candidate_of_the_selection_and_the_choice_is_recorded(tmp_path):
    fit = ds.fit_hyperparameters(grid(sizes=(1e8, 2e8, 4e8, 8e8), tokens=(4e9, 3.6e10), noise=0.0005, seed=2),
                                 bootstrap=20)
    methods = {c.method for c in fit.selection.candidates}
    assert methods == set(METHODS)
    best = min(fit.selection.candidates, key=lambda c: c.mean_penalty)
    assert fit.law.fit.method == fit.selection.method
    assert round(best.mean_penalty, 7) == round(next(
        c.mean_penalty for c in fit.selection.candidates if (c.method, c.window, c.batch_form)
        == (fit.selection.method, fit.selection.window, fit.selection.batch_form)), 7)
    loaded = ds.load_hyperparameter_law(fit.save(tmp_path / "hp.json"))
    assert loaded.fit.method == fit.law.fit.method
    assert all(s.penalty < 0.01 for s in fit.backtest)


def test_a_law_file_written_before_the_methods_existed_loads_as_fitted_through_the_optima(tmp_path):
    fit = ds.fit_hyperparameters(grid(), bootstrap=0, backtest=False, window=0.04)
    path = fit.save(tmp_path / "hp.json")
    text = json.loads(path.read_text())
    for record in [text["fit"], text["fit"]["selection"], *text["fit"]["selection"]["candidates"]]:
        del record["method"]
    path.write_text(json.dumps(text))
    loaded = ds.load_hyperparameter_law(path)
    assert loaded.fit.method == loaded.fit.selection.method == "optima"
    assert loaded.recommend(3e8, 1e10).lr == pytest.approx(fit.law.recommend(3e8, 1e10).lr)
