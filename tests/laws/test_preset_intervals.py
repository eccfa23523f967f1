"""Every preset carries an interval: its own error inside its runs (stated, or measured on its public
runs), its coefficients' bootstrap where one can be had, widened beyond the runs (`laws.preset_error`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws import PRESETS, published
from distillscale.laws.pack_interval import CalibratedInterval, StatedError, shipped_interval
from distillscale.laws.preset_error import FILE, preset_record


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_presets_predict_json_has_an_interval_and_says_what_it_is(cli, name):
    code, out, _ = cli("predict", "supervised", "--law", name, "--params", "546M", "--tokens", "10.92B", "--json")
    assert code == 0
    record = json.loads(out)
    low, high = record["interval"]
    assert low < record["loss"] < high and record["level"] == 0.9
    # inside the runs: the law's own error, a few percent at most
    assert 0.005 < (high - low) / 2 / record["loss"] < 0.05
    assert name in record["interval_note"] and "coefficients" in record["interval_note"]


def test_the_distillation_preset_has_an_interval(cli):
    code, out, _ = cli("predict", "distillation", "--law", "busbridge2025", "--student-params", "546M",
                       "--student-tokens", "10.92B", "--teacher-params", "7.75B", "--teacher-tokens", "155B",
                       "--json")
    assert code == 0
    record = json.loads(out)
    low, high = record["interval"]
    assert low < record["student_loss"] < high and record["level"] == 0.9
    assert "stated fit error" in record["interval_note"]


def test_beyond_the_runs_a_presets_interval_widens_and_farther_than_any_calibration_it_says_so():
    law = PRESETS["busbridge2025"]().supervised
    inside, beyond = law.prediction(1e9, 2e10), law.prediction(126e9, 2.5e12)
    width = [(p.high - p.low) / 2 / p.value for p in (inside, beyond)]
    assert width[1] > 1.5 * width[0]
    assert not inside.beyond_backtest
    assert law.prediction(12.6e9 * 100, 2e13).beyond_backtest


def test_a_preset_with_a_bootstrap_adds_its_coefficients_noise_once_and_one_without_adds_none():
    epoch, chinchilla = (PRESETS[name]().supervised for name in ("epoch2024", "chinchilla2022"))
    assert epoch.fit.bootstrap is not None and len(epoch.fit.bootstrap.samples) == 1000
    assert chinchilla.fit.bootstrap is None
    far = epoch.prediction(1e11, 2e12)
    assert far.noise is not None and far.noise > 0
    stated_only = chinchilla.prediction(1e11, 2e12)
    assert stated_only.noise is None
    # the noise in quadrature with the stated part: wider than the stated part, narrower than their sum
    half = (far.high - far.low) / 2
    assert max(far.noise, far.extrapolation) < half < far.noise + far.extrapolation


def test_the_bootstrap_scatters_about_the_preset_not_about_another_fit():
    law = PRESETS["epoch2024"]().supervised
    samples = np.array(law.fit.bootstrap.samples)
    names = law.fit.bootstrap.coefficients
    medians = dict(zip(names, np.median(samples, axis=0)))
    for name in ("E", "alpha", "beta"):
        assert medians[name] == pytest.approx(getattr(law, name), rel=0.02)


def test_a_stated_error_is_the_same_at_the_runs_and_grows_with_the_calibrations_distance():
    model = shipped_interval()
    record = preset_record("busbridge2025")
    interval = CalibratedInterval(model=model, summary=record.interval.summary,
                                  stated=StatedError(half_width=0.02, level=0.9, source="test"))
    summary = record.interval.summary
    low, high = interval.sides(np.array([summary.params_max / 4, summary.params_max, summary.params_max * 8]),
                               summary.tokens_max, 0.9)
    assert low[0] == pytest.approx(0.02) and low[1] == pytest.approx(0.02) and high[1] == pytest.approx(0.02)
    # a preset's runs are not at hand: it grows as a fit of the calibration's median misfit does
    typical = model.misfit_reference
    scale = model.scale(summary, summary.params_max * 8, summary.tokens_max, typical) / model.scale(
        summary, summary.params_max, summary.tokens_max, typical)
    assert high[2] == pytest.approx(0.02 * float(scale))
    assert 1.2 < scale < 4.0
    # at another level, the normal quantiles' ratio
    assert interval.sides(summary.params_max, summary.tokens_max, 0.5)[1] == pytest.approx(0.02 * 0.6745 / 1.6449,
                                                                                            rel=1e-3)


def test_the_shipped_errors_are_those_of_the_presets_on_their_public_runs(shared_data):
    """preset_error.json's measured numbers are remade from the runs (its bootstrap is not refitted here)."""
    runs = published.load("epoch2024_chinchilla").runs
    shipped = json.loads(FILE.read_text())
    assert "bench/laws/preset_intervals.py" in shipped["command"]
    for name in ("chinchilla2022", "epoch2024"):
        law = PRESETS[name]().supervised
        error = np.abs(runs["loss"].to_numpy() / law.predict(runs["params"].to_numpy(), runs["tokens"].to_numpy()) - 1)
        assert shipped["presets"][name]["stated"]["half_width"] == pytest.approx(np.quantile(error, 0.9), rel=1e-12)
