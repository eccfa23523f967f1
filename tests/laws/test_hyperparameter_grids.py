"""What an lr x batch grid can tell (issue 63, Build 2): a fit says what its grid cannot locate.

Every grid here is made from a known convex surface in (ln lr, ln B) (`surface_loss`), so each cell's
true optimum, lr*(N, D) and B*(N, D), and the ridge (the best rate at each batch, slope EXPONENT) are
known: an optimum beyond the grid gets a one-sided interval and is counted, never a zero-width one; a
grid with 2 batch sizes fits the rate at one batch and no B*; a flat surface is refused; token counts
rounded to whole steps stay one cell; the law's intervals carry every uncertainty it stores."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import distillscale as ds
from distillscale.errors import UserError
from distillscale.laws.hyperparameters import HYPERPARAMETER_PRESETS, load_hyperparameter_law

EXPONENT = 0.4                                      # d ln lr* / d ln B of the synthetic surfaces
BATCHES = 2.0 ** np.arange(16, 22)                  # 64K-2M tokens


def true_lr(n, d):
    return 2.0 * n ** -0.7 * d ** 0.3


def true_batch(n, d):
    return 0.5 * d ** 0.57


def ridge_lr(n, d, batch):
    """The best rate at `batch` (the surface's ridge)."""
    return true_lr(n, d) * (batch / true_batch(n, d)) ** EXPONENT


def surface_loss(n, d, lr, batch):
    x, y = np.log(lr / true_lr(n, d)), np.log(batch / true_batch(n, d))
    a, b = 0.02, 0.01
    return 1.7 + 400 / n ** 0.34 + 400 / d ** 0.28 + a * x * x - 2 * a * EXPONENT * x * y + b * y * y


def grid(lrs, batches=BATCHES, sizes=(1e8, 2e8, 4e8), tokens=(4e9, 1.2e10), noise=0.0, seed=0,
         run_tokens=None) -> pd.DataFrame:
    """Runs on the surface; `run_tokens(d, batch)`: the D a run records (a trainer's whole steps)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for d in tokens:
            for lr in lrs:
                for batch in batches:
                    loss = surface_loss(n, d, lr, batch) * (1 + noise * rng.standard_normal())
                    rows.append({"params": n, "tokens": d if run_tokens is None else run_tokens(d, batch),
                                 "lr": lr, "batch_tokens": batch, "loss": loss})
    return pd.DataFrame(rows)


def rates(low, high, count=9):
    return np.geomspace(low, high, count)


def one_line_error(cli, *args) -> str:
    code, out, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# Silent 1: an optimum beyond the grid


@pytest.mark.slow
def test_an_lr_optimum_beyond_the_grid_is_one_sided_counted_and_left_out_of_the_law():
    """Rates 1.6e-3 to 8e-3: the optimum of the 4e8/4e9 cell (1.45e-3) and both 8e8 cells lie below
    the smallest rate. Their records say lr* <= 1.6e-3 (no lower bound), a note counts them, and the
    law fitted without them recovers the true exponents; through their clamped edges it did not."""
    sizes = (1e8, 2e8, 4e8, 8e8)
    fit = ds.fit_hyperparameters(grid(rates(1.6e-3, 8e-3), sizes=sizes), bootstrap=30, backtest=False)
    below = {(c.params, c.tokens) for c in fit.cells if c.lr_edge == "below"}
    assert below == {(n, d) for n in sizes for d in (4e9, 1.2e10) if true_lr(n, d) < 1.6e-3}
    assert len(below) == 3
    for cell in fit.cells:
        if (cell.params, cell.tokens) in below:
            assert cell.lr_interval[0] is None and cell.lr_interval[1] == pytest.approx(1.6e-3)
            assert not cell.located
        else:
            assert cell.lr_edge is None and cell.located
            low, high = cell.lr_interval
            assert low < true_lr(cell.params, cell.tokens) * 1.02 and high > true_lr(cell.params, cell.tokens) * 0.98
    assert any("3 of 8 cells have lr* below the grid's smallest rate" in note and "extend the grid" in note
               for note in fit.notes)
    law = fit.law
    assert law.lr.exponents == pytest.approx((-0.7, 0.3), abs=0.05)
    assert law.recommend(8e8, 1.2e10).lr == pytest.approx(true_lr(8e8, 1.2e10), rel=0.1)


@pytest.mark.slow
def test_fit_hyperparameters_prints_one_sided_optima_and_the_edge_count(cli, tmp_path):
    grid(rates(1.6e-3, 8e-3), sizes=(1e8, 2e8, 4e8, 8e8)).to_csv(tmp_path / "runs.csv", index=False)
    code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--bootstrap", "10", "--no-backtest")
    assert code == 0, err
    text = " ".join((out + err).split())
    assert "3 of 8 cells have lr* below the grid's smallest rate" in text
    assert "lr* <= 0.0016 (beyond the grid's smallest rate)" in text
    code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--bootstrap", "10", "--no-backtest",
                         "--json")
    cells = json.loads(out)["law"]["fit"]["cells"]
    edge = [c for c in cells if c["lr_edge"] == "below"]
    assert len(edge) == 3 and all(c["lr_interval"][0] is None and c["located"] is False for c in edge)


def test_a_batch_optimum_beyond_the_grid_reads_the_rate_on_the_ridge_at_the_grids_edge():
    """Batches 512K-4M, every cell's B* (149K-278K) below them: B* is not located anywhere, each
    cell's rate is the ridge's at 512K (the best rate the grid measured there), not the unconstrained
    optimum's (1.7-2x off), and the law is the rate at that batch, saying B* lies below the grid."""
    batches = 2.0 ** np.arange(19, 23)
    fit = ds.fit_hyperparameters(grid(rates(5e-4, 2e-2, 12), batches=batches), bootstrap=20, backtest=False)
    for cell in fit.cells:
        assert cell.batch_edge == "below" and cell.batch_interval == (None, 2.0 ** 19)
        assert cell.lr == pytest.approx(ridge_lr(cell.params, cell.tokens, 2.0 ** 19), rel=0.05)
    law = fit.law
    assert law.batch is None and law.fixed_batch_tokens == 2.0 ** 19
    assert any("B* lies below the grid's smallest batch" in note for note in fit.notes)
    assert law.recommend(3e8, 8e9).lr == pytest.approx(ridge_lr(3e8, 8e9, 2.0 ** 19), rel=0.1)


# Silent 2: two batch sizes per cell


def test_two_batch_sizes_fit_the_rate_at_one_batch_and_no_b_star():
    """A quadratic in ln B through 2 points has no minimum to locate: the law is the rate at one of
    the two batches, each cell's rate fitted on that batch's runs alone (pooling both put lr* 11-41%
    off), and a sweep's lr_law can use it at that batch."""
    batches = (2.0 ** 17, 2.0 ** 18)
    fit = ds.fit_hyperparameters(grid(rates(5e-4, 2e-2, 12), batches=batches), bootstrap=20, backtest=False)
    law = fit.law
    assert law.batch is None and law.fixed_batch_tokens in batches
    assert any("2 batch sizes" in note and "B*" in note for note in fit.notes)
    for cell in fit.cells:
        assert cell.batch_edge is None and not cell.batch_located and cell.batch_interval is None
        assert cell.lr == pytest.approx(ridge_lr(cell.params, cell.tokens, law.fixed_batch_tokens), rel=0.03)
    rec = law.recommend(3e8, 8e9, batch_tokens=law.fixed_batch_tokens)   # what a ladder's lr_law asks
    assert rec.lr == pytest.approx(ridge_lr(3e8, 8e9, law.fixed_batch_tokens), rel=0.05)


# Silent 3: a flat surface


def test_a_flat_surface_is_refused_in_one_line(cli, tmp_path):
    runs = grid(rates(1e-3, 1e-2, 5))
    runs["loss"] = 3.0
    with pytest.raises(UserError, match="no cell's loss surface is convex"):
        ds.fit_hyperparameters(runs, bootstrap=0)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert "locates no optimum" in one_line_error(cli, "fit", "hyperparameters", tmp_path / "runs.csv")


def test_cells_whose_surface_is_not_convex_are_counted():
    runs = grid(rates(5e-4, 2e-2, 12))
    flat = (runs.params == 1e8) & (runs.tokens == 4e9)
    runs.loc[flat, "loss"] = 3.0
    fit = ds.fit_hyperparameters(runs, bootstrap=0, backtest=False)
    assert [c.convex for c in fit.cells].count(False) == 1
    assert any("1 of 6 cells" in note and "not convex" in note for note in fit.notes)


# Silent 4: token counts, duplicates, units


def test_token_counts_rounded_to_whole_steps_stay_one_cell():
    """A trainer records D = steps x batch: each batch rounds the budget up to its own whole steps.
    The runs stay 6 cells (not 36 one-batch cells) and B* is the truth's."""
    def whole_steps(d, batch):
        return math.ceil(d / batch) * batch

    runs = grid(rates(5e-4, 2e-2, 12), tokens=(4e9, 1.2e10), run_tokens=whole_steps)
    assert runs.groupby(["params", "tokens"]).ngroups > 6
    fit = ds.fit_hyperparameters(runs, bootstrap=0, backtest=False)
    assert len(fit.cells) == 6
    assert any("within 5%" in note for note in fit.notes)
    for cell in fit.cells:
        assert cell.batch_tokens == pytest.approx(true_batch(cell.params, cell.tokens), rel=0.1)


@pytest.mark.slow
def test_duplicate_runs_are_reported_and_counted_once():
    runs = grid(rates(5e-4, 2e-2, 12), noise=0.0003, seed=2)
    seeds = grid(rates(5e-4, 2e-2, 12), noise=0.0003, seed=3)      # the same points, another seed
    fit = ds.fit_hyperparameters(pd.concat([runs, runs.iloc[:10]]), bootstrap=0, backtest=False)
    assert any("10 rows repeat another" in note for note in fit.notes)
    assert fit.cells[0].runs == 12 * 6
    fit = ds.fit_hyperparameters(pd.concat([runs, seeds]), bootstrap=0, backtest=False)
    assert any("run more than once" in note and "mean" in note for note in fit.notes)
    assert all(cell.runs == 12 * 6 for cell in fit.cells)


@pytest.mark.slow
def test_an_lr_column_in_other_units_is_refused_or_warned(cli, tmp_path):
    runs = grid(rates(5e-4, 2e-2, 12))
    scaled = runs.assign(lr=runs.lr * 1000)                         # x1000: rates up to 20
    with pytest.raises(UserError, match="units"):
        ds.fit_hyperparameters(scaled, bootstrap=0)
    scaled.to_csv(tmp_path / "runs.csv", index=False)
    assert "units" in one_line_error(cli, "fit", "hyperparameters", tmp_path / "runs.csv")
    tiny = ds.fit_hyperparameters(runs.assign(lr=runs.lr * 1e-4), bootstrap=0, backtest=False)
    assert any("units" in note for note in tiny.notes)


# Silent 5 and 11: the law's intervals


def test_the_rate_at_a_fixed_batch_carries_the_batch_exponents_uncertainty():
    law = load_hyperparameter_law("steplaw2025")
    optimal = law.recommend(1e9, 2e10)
    batch = 8 * optimal.batch_tokens
    rec = law.recommend(1e9, 2e10, batch_tokens=batch)
    low, high = law.lr_batch_exponent_interval
    exponent_alone = sorted(optimal.lr * 8 ** s for s in (low, high))
    assert rec.lr_interval[0] <= exponent_alone[0] and rec.lr_interval[1] >= exponent_alone[1]
    assert rec.lr_interval[0] < rec.lr < rec.lr_interval[1]


def test_a_batch_beyond_the_batches_the_law_measured_says_so():
    law = load_hyperparameter_law("steplaw2025")
    inside = law.recommend(3e8, 2e10, batch_tokens=1e6)
    far = law.recommend(3e8, 2e10, batch_tokens=64e6)
    assert not any("batches" in note for note in inside.notes)
    assert any("above the batches" in note and "extrapolated" in note for note in far.notes)
    fitted = ds.fit_hyperparameters(grid(rates(5e-4, 2e-2, 12)), bootstrap=0).law
    assert fitted.data_range["batch_tokens"] == (BATCHES[0], BATCHES[-1])
    assert any("above the batches" in note for note in fitted.recommend(3e8, 8e9, batch_tokens=64e6).notes)


def test_an_exponent_one_cell_cannot_identify_gets_a_prior_spread_that_grows_with_distance():
    runs = grid(rates(5e-4, 2e-2, 12), sizes=(2e8,), tokens=(4e9,), noise=0.0002)
    law = ds.fit_hyperparameters(runs, bootstrap=30).law
    assert set(law.lr.not_identified) == {"N", "D"} and set(law.batch.not_identified) == {"N", "D"}
    width = lambda rec: rec.lr_interval[1] / rec.lr_interval[0]
    near, far = law.recommend(2e8, 4e9), law.recommend(2e10, 4e11)
    assert width(far) > 5 and width(far) > 2 * width(near)
    lo, hi = far.lr_interval
    assert lo < true_lr(2e10, 4e11) < hi


def test_deepseek_says_when_it_is_read_beyond_the_compute_its_grid_covered():
    law = load_hyperparameter_law("deepseek2024")
    inside = law.recommend(1e8, 4e9)                  # 6ND = 2.4e18, inside 1e17-2e19
    far = law.recommend(1e12, 1e14)
    assert inside.extrapolation == 1.0
    assert far.extrapolation > 1e6 and any("FLOPs" in note for note in far.notes)


# Tracebacks: a law file that loads must be usable


@pytest.mark.parametrize("field, value, needle", [
    ("ridge_curvature", -0.005, "ridge_curvature"),
    ("lr_batch_exponent_interval", [0.67, 0.22], "lr_batch_exponent_interval"),
    ("data_range", {"params": [1e9, 6e7], "tokens": [2e9, 1e11]}, "data_range"),
    ("data_range", {"params": [-1, 6e7]}, "data_range"),
    ("lr_batch_exponent", float("nan"), "lr_batch_exponent"),
])
def test_a_law_file_with_an_impossible_field_is_refused_when_it_loads(cli, tmp_path, field, value, needle):
    law = HYPERPARAMETER_PRESETS["steplaw2025"].model_dump(mode="json") | {field: value}
    (tmp_path / "bad.json").write_text(json.dumps(law))
    err = one_line_error(cli, "predict", "hyperparameters", "--law", tmp_path / "bad.json", "--params", "1B",
                         "--tokens", "20B", "--batch-tokens", "8M")
    assert needle in err


def test_a_sweeps_lr_law_runs_a_two_batch_grids_law_at_the_batch_it_gives(tmp_path):
    """The law of a [tune] grid of 2 batch sizes (128 and 256 tokens: batch_size 4 and 8 at seq_len
    32) is the rate at one of them; a ladder at that batch reads it (it refused before: a B* law
    with no batch exponent cannot adapt the rate, even to its own B*)."""
    from distillscale.sweeps.spec import load_sweep_spec

    def small_lr(n, d):
        return 0.2 * n ** -0.3 * d ** 0.1

    rows = []
    for n in (2e4, 5e4, 1.2e5):
        for d in (4e5, 1.6e6):
            for lr in rates(1e-3, 1e-1, 9):
                for batch in (128.0, 256.0):
                    x, y = math.log(lr / small_lr(n, d)), math.log(batch / 200.0)
                    rows.append({"params": n, "tokens": d, "lr": lr, "batch_tokens": batch,
                                 "loss": 3.0 + 0.02 * x * x - 0.016 * x * y + 0.01 * y * y})
    law = ds.fit_hyperparameters(pd.DataFrame(rows), bootstrap=0, lr_unit="mup-base:256").law
    assert law.batch is None and law.fixed_batch_tokens in (128.0, 256.0)
    law.save(tmp_path / "hp.json")
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
name = "lawful"
[data]
vocab_size = 320
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = {int(law.fixed_batch_tokens) // 32}
lr_law = "hp.json"
eval_tokens = "2k"
eval_every = 0
[teachers]
n_layers = [1, 2]
tokens_per_param = [8]
""", encoding="utf-8")
    runs = load_sweep_spec(spec).runs
    assert len(runs) == 2 and all(0 < run.settings["lr"] < 1 for run in runs)
