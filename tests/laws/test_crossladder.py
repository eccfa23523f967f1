"""The cross-ladder bias model (issue 64, `laws.crossladder`): it recovers a bias planted across
synthetic ladders and finds none where there is none, leave-one-ladder-out never lets the ladder it
scores into what scores it, and a law that carries a correction applies it (and only beyond its
runs) in every prediction, its interval widened by the correction's own uncertainty."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws import LawSet, SupervisedLaw
from distillscale.laws.crossladder import BiasCorrection, BiasModel, FitSummary, shipped_model
from distillscale.laws.crossladder_fit import (ErrorTable, fit_bias_model, fit_with_spread, leave_one_ladder_out,
                                               predict_rows)
from distillscale.laws.record import FitRecord

LAW = SupervisedLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)


def _summary(rng, top: float, sizes: int) -> FitSummary:
    return FitSummary(params_max=top, params_min=top / 2 ** (sizes - 1), tokens_max=top * 40, sizes=sizes,
                      runs=sizes * 4, log_ratio_median=float(np.log(20)), alpha=0.3 + rng.normal(0, 0.03),
                      beta=0.3 + rng.normal(0, 0.03))


def synthetic_table(slope: float, ladders: int = 8, seed: int = 0, offset_sd: float = 0.002) -> ErrorTable:
    """Ladders of fits at a few cuts, each predicting runs 1.5-12x beyond: y = ln(observed / raw)
    = slope x dN / span, plus a per-ladder slope departure and run noise."""
    rng = np.random.default_rng(seed)
    names, summaries, N, D, y = [], [], [], [], []
    for k in range(ladders):
        own = slope + rng.normal(0, offset_sd)
        for cut in range(3):
            s = _summary(rng, 1e8 * 2 ** cut, 3 + cut + k % 3)
            for distance in (1.5, 2.5, 3, 5, 8, 12):
                n = s.params_max * distance
                d = n * float(rng.choice([5, 20, 80]))
                lever = np.log(distance) / s.span
                names.append(f"ladder{k}")
                summaries.append(s)
                N.append(n)
                D.append(d)
                y.append(own * lever + rng.normal(0, 0.002))
    return ErrorTable(np.array(names), summaries, np.array(N), np.array(D), np.array(y))


@pytest.mark.slow
def test_recovers_a_planted_bias_and_corrects_the_left_out_ladders():
    table = synthetic_table(slope=-0.02)
    model = fit_with_spread(table, ("dN/span", "dN"))
    lever = dict(zip(model.features, model.coefficients))
    assert lever["dN/span"] == pytest.approx(-0.02, abs=0.004)
    assert abs(lever["dN"]) < 0.004
    left = leave_one_ladder_out(table, ("dN/span",))
    raw, fixed = np.abs(table.y), np.abs(table.y - left.predicted)
    assert fixed.mean() < 0.5 * raw.mean()           # most of the bias is gone on ladders it did not see
    assert 0.3 < np.mean(table.y - left.predicted > 0) < 0.7   # the signs balanced
    assert 0 < model.slope_sd < 0.01                  # its spread: the ladders' own departures


def test_no_bias_where_there_is_none():
    table = synthetic_table(slope=0.0, seed=1)
    model = fit_with_spread(table, ("dN/span", "dN", "dN*ratio"))
    assert np.max(np.abs(model.coefficients)) < 0.003
    left = leave_one_ladder_out(table, ("dN/span",))
    assert np.max(np.abs(left.predicted)) < 0.01     # nothing to correct: corrections of a few tenths of %


@pytest.mark.slow
def test_leave_one_ladder_out_never_sees_the_ladder_it_scores():
    """Poison one ladder's errors: what scores it (its model's coefficients, penalty, spread and its
    predictions) must not move; the other ladders' must."""
    table = synthetic_table(slope=-0.02, seed=2)
    poisoned_y = table.y.copy()
    victim = table.ladder == "ladder3"
    poisoned_y[victim] = 5.0
    poisoned = ErrorTable(table.ladder, table.summaries, table.N, table.D, poisoned_y)
    clean = leave_one_ladder_out(table, ("dN/span", "dN*ratio"))
    dirty = leave_one_ladder_out(poisoned, ("dN/span", "dN*ratio"))
    assert dirty.models["ladder3"] == clean.models["ladder3"]
    np.testing.assert_array_equal(dirty.predicted[victim], clean.predicted[victim])
    assert "ladder3" not in clean.models["ladder3"].ladders
    assert dirty.models["ladder0"] != clean.models["ladder0"]   # the poison reaches the others: the test can fail


def test_leave_one_family_out_never_sees_the_family_it_scores():
    """Families of ladders leave together: poison one ladder, and nothing that scores it or its
    siblings (their model, penalty, spread, predictions) moves; the other families' models do."""
    table = synthetic_table(slope=-0.02, seed=3)
    family = {f"ladder{k}": f"family{k // 3}" for k in range(8)}.get      # 0-2, 3-5, 6-7
    poisoned_y = table.y.copy()
    poisoned_y[table.ladder == "ladder4"] = 5.0
    poisoned = ErrorTable(table.ladder, table.summaries, table.N, table.D, poisoned_y)
    clean = leave_one_ladder_out(table, ("dN/span", "dN"), group=family)
    dirty = leave_one_ladder_out(poisoned, ("dN/span", "dN"), group=family)
    siblings = np.isin(table.ladder, ["ladder3", "ladder4", "ladder5"])
    for name in ("ladder3", "ladder4", "ladder5"):
        assert dirty.models[name] == clean.models[name]
        assert not {"ladder3", "ladder4", "ladder5"} & set(clean.models[name].ladders)
    np.testing.assert_array_equal(dirty.predicted[siblings], clean.predicted[siblings])
    assert clean.models["ladder0"] == clean.models["ladder2"]                # one model per family
    assert dirty.models["ladder0"] != clean.models["ladder0"]
    assert dirty.models["ladder6"] != clean.models["ladder6"]


def test_correction_vanishes_inside_the_runs_and_grows_beyond():
    rng = np.random.default_rng(0)
    summary = _summary(rng, 1e8, 4)
    model = BiasModel(features=("dN/span", "dD"), coefficients=(-0.03, -0.01), centres={}, penalty=0.0,
                      slope_sd=0.01)
    correction = BiasCorrection(model=model, summary=summary)
    inside = correction.factor([1e7, 1e8], [1e9, summary.tokens_max])
    np.testing.assert_array_equal(inside, [1.0, 1.0])
    far = correction.factor([2e8, 8e8], [2e8 * 20, 8e8 * 20])
    assert far[0] < 1.0 and far[1] < far[0]
    assert correction.half_width(1e8, 1e9, 0.9) == 0.0
    assert correction.half_width(8e8, 1e9, 0.9) > correction.half_width(2e8, 1e9, 0.9) > 0


def _corrected_law(model: BiasModel) -> SupervisedLaw:
    summary = FitSummary.of_runs([1e7, 2e7, 4e7, 8e7], [2e8, 4e8, 8e8, 1.6e9], LAW)
    from distillscale.laws.uncertainty import ExtrapolationError

    error = ExtrapolationError(0.9, 0.02, 30, "params", 1e7, 8e7)
    record = FitRecord(extrapolation_error=error, bias_correction=BiasCorrection(model=model, summary=summary))
    return SupervisedLaw(**LAW.coefficients(), fit=record)


MODEL = BiasModel(features=("dN/span",), coefficients=(-0.03,), centres={}, penalty=0.1, slope_sd=0.01)


def test_a_law_applies_its_correction_in_predict_prediction_and_inversion():
    law = _corrected_law(MODEL)
    raw = law.without_bias_correction()
    assert law.predict(4e7, 8e8) == raw.predict(4e7, 8e8)            # inside the runs: unchanged
    assert law.predict(6.4e8, 1.3e10) < raw.predict(6.4e8, 1.3e10)   # beyond: lower, as the model says
    expected = raw.predict(6.4e8, 1.3e10) * np.exp(-0.03 * np.log(8) / np.log(8))
    assert law.predict(6.4e8, 1.3e10) == pytest.approx(expected, rel=1e-12)
    corrected, plain = law.prediction(6.4e8, 1.3e10), raw.prediction(6.4e8, 1.3e10)
    assert corrected.value == pytest.approx(law.predict(6.4e8, 1.3e10))
    # the raw interval (its backtest's 2% x lever 2 = 4%) is wider than the correction's own 1.645%:
    # the same relative interval, moved with the value
    assert (corrected.high - corrected.low) / corrected.value == pytest.approx((plain.high - plain.low) / plain.value)
    # a correction more uncertain than the law's own backtest error widens it to its own half-width
    wide = _corrected_law(MODEL.model_copy(update={"slope_sd": 0.05})).prediction(6.4e8, 1.3e10)
    assert (wide.high - wide.value) / wide.value == pytest.approx(1.6449 * 0.05, rel=1e-3)
    assert wide.extrapolation / wide.value == pytest.approx(1.6449 * 0.05, rel=1e-3)
    # the inversion follows the corrected law
    tokens = law.tokens_reaching(np.array([6.4e8]), float(law.predict(6.4e8, 1.3e10)))
    assert tokens[0] == pytest.approx(1.3e10, rel=1e-6)


def test_a_law_file_keeps_its_correction_and_loads_without_it_on_request(tmp_path):
    path = tmp_path / "law.json"
    LawSet("mine", _corrected_law(MODEL)).save(path)
    from distillscale.laws.lawset import load_laws

    loaded = load_laws(path)
    assert loaded.bias_correction is not None and "bias-corrected" in loaded.bias_note()
    assert loaded.supervised.predict(6.4e8, 1.3e10) == pytest.approx(_corrected_law(MODEL).predict(6.4e8, 1.3e10))
    raw = load_laws(path, bias_correction=False)
    assert raw.bias_correction is None and raw.bias_note() is None
    assert raw.supervised.predict(6.4e8, 1.3e10) > loaded.supervised.predict(6.4e8, 1.3e10)


def test_the_shipped_model_loads_without_torch_and_says_where_it_came_from():
    import subprocess
    import sys

    code = ("import sys, builtins\n"
            "real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] == 'torch': raise ImportError('no torch here')\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "from distillscale.laws.crossladder import shipped_model\n"
            "m = shipped_model(); print(len(m.ladders), m.command)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    ladders, command = out.split(" ", 1)
    assert int(ladders) >= 10 and "bench/laws/crossladder.py" in command
    model = shipped_model()
    assert model.date and model.features and len(model.features) == len(model.coefficients)


def test_a_malformed_bias_model_in_a_law_file_is_one_line(tmp_path):
    from distillscale.errors import UserError
    from distillscale.laws.lawset import load_laws

    path = tmp_path / "law.json"
    LawSet("mine", _corrected_law(MODEL)).save(path)
    data = json.loads(path.read_text())
    data["supervised"]["fit"]["bias_correction"]["model"]["features"] = ["dN/span", "nonsense"]
    data["supervised"]["fit"]["bias_correction"]["model"]["coefficients"] = [0.1, 0.2]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="nonsense"):
        load_laws(path)


def test_fit_and_predict_rows_agree():
    table = synthetic_table(slope=-0.01, seed=3)
    model = fit_bias_model(table, ("dN/span", "dN*ratio"), penalty=0.1)
    first = table.subset(np.arange(5))
    expected = [float(BiasCorrection(model=model, summary=s).log_factor(n, d))
                for s, n, d in zip(first.summaries, first.N, first.D)]
    np.testing.assert_allclose(predict_rows(model, first), expected, rtol=1e-12)
