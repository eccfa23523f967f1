"""Intervals that mean their level: conformal by distance band, and seed noise from repeated runs."""

import numpy as np
import pytest

from distillscale.laws import LawSet, load_laws
from distillscale.laws.calibrate import calibrate
from distillscale.laws.selection import fit_supervised
from distillscale.laws.uncertainty import ExtrapolationError, combine, lever, seed_noise


def one_sided_backtest(rng):
    """Backtest errors whose bias grows faster than the lever: near predictions (1-2x, most of them) err by about
    0.3%, far ones (4-8x) over-predict by 2.5-6%, as a law with too flat an exponent does."""
    distances = np.concatenate([rng.uniform(1.1, 2.0, 100), rng.uniform(2.1, 4.0, 20), rng.uniform(4.1, 8.0, 20)])
    errors = np.where(distances <= 2, rng.normal(0, 0.003, distances.size),
                      0.006 * distances + rng.uniform(0, 0.01, distances.size))
    return errors, distances, np.full(distances.size, 8.0)


def covered(errors, half_widths) -> float:
    return float(np.mean(np.abs(errors) <= half_widths))


def test_the_interval_widens_in_a_band_where_the_pooled_quantile_under_covers():
    rng = np.random.default_rng(0)
    errors, distances, spans = one_sided_backtest(rng)
    band = ExtrapolationError.from_backtest(errors, distances, spans, 0.9, "params", 1e7, 8e7)
    far = distances > 4
    pooled = band.q * lever(distances, spans)
    assert covered(errors[far], pooled[far]) < 0.8          # one q for every distance misses the far runs
    by_band = band.half_width(distances)
    assert covered(errors[far], by_band[far]) >= 0.9        # the band's own quantile covers them
    assert np.all(by_band >= band.half_width(distances, by_band=False) - 1e-15)   # never narrower
    # beyond the farthest band measured, the largest band quantile holds; inside the runs, the pooled q
    assert band.half_width(16.0) >= band.band_q[2] * lever(16.0, 8.0)
    assert band.half_width(1.0) == band.q
    # new draws of the same process: the banded interval covers them at 4-8x, the pooled one does not
    errors2, distances2, _ = one_sided_backtest(np.random.default_rng(1))
    far2 = distances2 > 4
    assert covered(errors2[far2], band.half_width(distances2)[far2]) >= 0.8
    assert covered(errors2[far2], band.half_width(distances2, by_band=False)[far2]) < 0.8


def test_a_backtest_without_a_band_bias_keeps_the_pooled_interval():
    rng = np.random.default_rng(2)
    distances = rng.uniform(1.1, 8.0, 300)
    spans = np.full(300, 8.0)
    errors = rng.normal(0, 0.004, 300) * lever(distances, spans)   # error in proportion to the lever
    band = ExtrapolationError.from_backtest(errors, distances, spans, 0.9, "params", 1e7, 8e7)
    ratio = band.half_width(np.array([1.5, 3.0, 6.0])) / band.half_width(np.array([1.5, 3.0, 6.0]), by_band=False)
    assert np.all(ratio < 1.25)


def sweep(seeds: int, rng, noise: float = 0.01):
    """Runs at 5 sizes x 3 token ratios, each setting run `seeds` times with `noise` relative seed noise."""
    N, D = np.meshgrid(1e6 * 2.0 ** np.arange(5), np.array([5.0, 20.0, 80.0]))
    N, D = np.repeat(N.ravel(), seeds), np.repeat((N * D).ravel(), seeds)
    loss = (1.8 + 400 / N ** 0.34 + 1500 / D ** 0.28) * np.exp(rng.normal(0, noise, N.size))
    return N, D, loss


def test_seed_noise_is_the_pooled_spread_of_repeated_settings():
    N, D, loss = sweep(3, np.random.default_rng(3))
    noise, settings = seed_noise(np.column_stack([N, D]), loss)
    assert settings == 15
    by_hand = np.sqrt(sum(np.sum((np.log(loss[i:i + 3]) - np.log(loss[i:i + 3]).mean()) ** 2)
                          for i in range(0, 45, 3)) / 30)
    assert np.isclose(noise, by_hand)
    assert 0.006 < noise < 0.014
    assert seed_noise(np.column_stack([N[::3], D[::3]]), loss[::3]) == (0.0, 0)


@pytest.mark.slow
def test_repeated_seeds_widen_the_interval_of_a_held_out_run(tmp_path):
    rng = np.random.default_rng(4)
    N, D, loss = sweep(2, rng, noise=0.02)
    # E given: no profile of an unidentified E widens the interval, so its parts add up exactly
    fit = fit_supervised(N, D, loss, form="chinchilla", backtest=False, bootstrap=0, irreducible_loss=1.8)
    extrapolation = fit.extrapolation_error
    assert extrapolation.seed_settings == 15 and extrapolation.seed_noise > 0.005
    single = fit_supervised(N[::2], D[::2], loss[::2], form="chinchilla", backtest=False,
                            bootstrap=0, irreducible_loss=1.8).extrapolation_error
    assert single.seed_noise == 0.0
    # the seed noise adds to the extrapolation part in quadrature (no bootstrap here)
    prediction = fit.predict(4e6, 4e6 * 20)
    half = (prediction.high - prediction.low) / 2 / prediction.value
    extra = float(extrapolation.half_width(4e6 / extrapolation.fitted_max))
    assert np.isclose(half, np.hypot(extra, extrapolation.seed_half_width()), rtol=1e-6)
    assert np.isclose(prediction.noise / prediction.value, extrapolation.seed_half_width(), rtol=1e-6)
    without = combine(prediction.value, None, single, 4e6 / single.fitted_max, 0.9)
    assert without.high - without.low < prediction.high - prediction.low
    # the seed noise and the band quantiles are kept in law.json
    path = tmp_path / "law.json"
    fit.save(path)
    kept = load_laws(str(path)).supervised.fit.extrapolation_error
    assert kept.seed_noise == extrapolation.seed_noise and kept.band_q == extrapolation.band_q
    assert isinstance(load_laws(str(path)), LawSet)


@pytest.mark.slow
@pytest.mark.last_bits
def test_the_held_out_check_includes_the_seed_noise_of_the_held_out_size():
    """Seeds only at the held-out size (as a micro design that repeats its largest model): the refit
    cannot see them, yet their spread is the noise of each held-out run, so it enters their intervals."""
    rng = np.random.default_rng(5)
    N, D, loss = sweep(1, rng, noise=0.002)
    top = N == N.max()
    N, D = np.concatenate([N, N[top]]), np.concatenate([D, D[top]])
    loss = np.concatenate([loss, loss[top] * np.exp(rng.normal(0, 0.03, top.sum()))])
    check = calibrate(params=N, tokens=D, loss=loss, holdout="largest", form="chinchilla",
                      supervised_options={"bootstrap": 0, "max_folds": 2}).holdout["supervised"]
    seeds, _ = seed_noise(np.column_stack([N, D]), loss)
    assert len(check.runs) == 6 and seeds > 0.01
    for run in check.runs:
        low, high = run.interval
        assert (high - low) / 2 >= 1.6 * seeds * run.predicted * 0.99


@pytest.mark.slow
def test_fit_prints_the_seed_noise_it_measured(cli, tmp_path):
    N, D, loss = sweep(2, np.random.default_rng(6), noise=0.02)
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "".join(f"{n},{d},{x}\n" for n, d, x in zip(N, D, loss)))
    code, stdout, _ = cli("fit", "supervised", path, "--form", "chinchilla", "--no-backtest", "--bootstrap", "0")
    assert code == 0
    assert "seed noise: ±" in stdout and "from 15 settings run with several seeds" in stdout


def test_the_report_page_names_the_band_quantiles_and_the_seed_noise():
    from dataclasses import replace

    from distillscale.report.page import _candidates

    errors, distances, spans = one_sided_backtest(np.random.default_rng(0))
    band = replace(ExtrapolationError.from_backtest(errors, distances, spans, 0.9, "params", 1e7, 8e7),
                   seed_noise=0.012, seed_settings=3)
    candidate = {"name": "median", "n_parameters": 6, "score": 0.01, "note": None,
                 "bands": [{"label": "1-2x", "mean_abs_error": 0.01, "worst_error": 0.02}]}
    html = _candidates("supervised", {"candidates": [candidate], "form": "median",
                                      "record": {"extrapolation_error": band.to_dict()}})
    assert "in a distance band whose own backtest errors are larger" in html
    assert "±1.20% (1 sd), measured on 3 settings" in html
