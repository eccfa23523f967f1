"""The distillation law's intervals calibrated across corpora (`laws.distillation_interval`): the
calibrated interval is the law's own with its gaps scaled once; the scoring (bench/laws/
distillation_interval.py, left out a corpus at a time) reads the public prediction; a corpus's
own errors never set the interval it is scored with; a fit carries the shipped calibration only
where its teachers are too few for a backtest (its error the literature's). Small fixtures: the
preset's coefficients with a made-up fit record, no sweep trained."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws.distillation_interval import MODEL_FILE, IntervalScale, score, shipped_interval_scale
from distillscale.laws.lawset import load_laws
from distillscale.laws.record import FitRecord
from distillscale.laws.uncertainty import ExtrapolationError, Prediction
from tests.conftest import load_bench

# One start near the preset's coefficients (the fits here only need to end, not to be good).
ONE_START = {"log_A": (10.0,), "log_B": (10.0,), "gamma": (0.5,), "c0": (1.0,), "c1": (1.0,), "f1": (1.0,),
             "log_d1": (0.0,)}
RANGE = {"params": [1e8, 1e10], "tokens": [1e9, 1e12], "tokens_per_param": [1, 1e3]}


def bench():
    return load_bench("laws/distillation_interval.py")


def law_with_own_interval(q: float = 0.05):
    law = load_laws("busbridge2025").distillation
    law.fit = FitRecord(data_range=RANGE, extrapolation_error=ExtrapolationError(
        0.9, q, 40, "teacher strength (1 / teacher loss)", 1 / 3.5, 1 / 2.0))
    return law


def test_the_calibrated_interval_is_the_laws_own_with_both_gaps_scaled_once():
    law = law_with_own_interval()
    own = law.prediction(1e9, 2e10, 2.5)
    scale = IntervalScale.from_scores([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 0.9)
    law.fit = law.fit.model_copy(update={"interval_scale": scale})
    calibrated = law.prediction(1e9, 2e10, 2.5)
    factor = scale.factor(0.9)
    assert factor == pytest.approx(1.0)   # ceil(11 * 0.9) = 10th of 10 scores
    assert calibrated.value == own.value and calibrated.level == 0.9
    assert calibrated.value - calibrated.low == pytest.approx(factor * (own.value - own.low))
    assert calibrated.high - calibrated.value == pytest.approx(factor * (own.high - own.value))
    half = IntervalScale.from_scores([0.5] * 20, 0.9)
    law.fit = law.fit.model_copy(update={"interval_scale": half})
    narrower = law.prediction(1e9, 2e10, 2.5)
    assert narrower.high - narrower.value == pytest.approx(0.5 * (own.high - own.value))
    # Nothing is added on top: no noise part beside the calibrated whole.
    assert narrower.noise is None and narrower.extrapolation == pytest.approx((narrower.high - narrower.low) / 2)


def test_the_factor_at_another_level_is_the_scores_quantile_there_carried_by_normal_quantiles():
    scale = IntervalScale.from_scores(np.linspace(0.01, 1.0, 100), 0.9)
    assert scale.factor(0.9) == pytest.approx(0.91)
    # At 50%, the 51st score (0.51), times z(0.95) / z(0.75) since the law's own 50% gaps are narrower.
    assert scale.factor(0.5) == pytest.approx(0.51 * 1.6448536 / 0.6744898, rel=1e-6)


def test_a_score_is_the_error_over_the_gap_on_the_side_the_run_fell_or_over_the_noise():
    prediction = Prediction(np.array([3.0, 3.0]), np.array([2.8, 2.8]), np.array([3.4, 3.4]), 0.9,
                            noise=np.array([0.15, 0.15]), extrapolation=None, distance=None)
    assert score([2.9, 3.2], prediction) == pytest.approx([0.5, 0.5])
    assert score([2.9, 3.2], prediction, "noise") == pytest.approx([2 / 3, 4 / 3])
    noise = IntervalScale.from_scores([2.0] * 20, 0.9, "noise")
    assert noise.sides(prediction, 0.9)[1] == pytest.approx([0.1, 0.1])
    # A law without a bootstrap has no noise to scale: it keeps its own interval.
    law = law_with_own_interval()
    own = law.prediction(1e9, 2e10, 2.5)
    law.fit = law.fit.model_copy(update={"interval_scale": noise})
    assert own.noise is None and law.prediction(1e9, 2e10, 2.5) == own


def test_scores_are_checked_when_read():
    with pytest.raises(ValueError, match="finite and non-negative"):
        IntervalScale(scores=(0.1, float("nan")), level=0.9)
    with pytest.raises(ValueError):
        IntervalScale(scores=(0.1,), level=0.9)


def corpora(errors: dict[str, list[float]]) -> list[dict]:
    """Bench entries: the law with its own 5% interval, held-out students observed at these errors."""
    law = load_laws("busbridge2025")
    entries = []
    for name, errs in errors.items():
        distillation = law_with_own_interval()
        N, D, L_T = 1e9, 2e10, 2.5
        value = distillation.predict(N, D, L_T)
        entries.append({"corpus": name, "supervised": law.supervised.to_dict(), "law": distillation.to_dict(),
                        "held_out": [{"N": N, "D": D, "L_T": L_T, "observed": value * (1 + e)} for e in errs]})
    return entries


ERRORS = {"a": [0.01, -0.02, 0.015], "b": [-0.01, 0.02, 0.005], "c": [0.012, -0.008, 0.03]}


def test_the_scoring_reads_the_public_prediction_and_a_corpus_never_sets_its_own_width():
    module = bench()
    entries = corpora(ERRORS)
    lines, result = module.table(entries)
    assert len(lines) == 2 + 3 + 1
    # The rows are what DistillationLaw.prediction gives with the other corpora's calibration.
    law, runs = module.held_out(entries[0])
    others = IntervalScale.from_scores(np.concatenate([result["scores"]["b"], result["scores"]["c"]]), 0.9)
    direct = module.with_scale(law, others).prediction(runs["N"], runs["D"], runs["L_T"])
    half_width = (direct.high - direct.low) / 2 / direct.value
    assert module.rows_of(entries[0], others)["half_width"] == pytest.approx(half_width)
    # Poison corpus a: its own calibrated width does not move; the others' (which a calibrates) do.
    poisoned = corpora({**ERRORS, "a": [0.4, -0.3, 0.5]})
    before = {e["corpus"]: module.rows_of(e, None) for e in entries}
    _, again = module.table(poisoned)
    assert again["scores"]["b"] == result["scores"]["b"]
    def loco(data, name):
        scores = {n: np.asarray(s) for n, s in (result if data is entries else again)["scores"].items()}
        left_out = IntervalScale.from_scores(np.concatenate([s for n, s in scores.items() if n != name]), 0.9)
        return module.rows_of(next(e for e in data if e["corpus"] == name), left_out)

    assert loco(poisoned, "a")["half_width"] == pytest.approx(loco(entries, "a")["half_width"])
    assert loco(poisoned, "b")["half_width"].mean() > loco(entries, "b")["half_width"].mean()
    assert before["a"]["covered"].all()


def test_a_saved_law_keeps_its_calibration(tmp_path):
    law = law_with_own_interval()
    scale = IntervalScale.from_scores([0.3, 0.4, 0.5], 0.9, corpora=("x",), date="2026-11-27", command="made here")
    law.fit = law.fit.model_copy(update={"interval_scale": scale})
    record = FitRecord.from_json(json.loads(json.dumps(law.fit.to_json())))
    assert record.interval_scale == scale
    # A record written before the calibration existed (schema 7) still loads, without one.
    old = {k: v for k, v in law.fit.to_json().items() if k != "interval_scale"} | {"schema_version": 7}
    assert FitRecord.from_json(old).interval_scale is None


@pytest.mark.skipif(not MODEL_FILE.is_file(), reason="no calibration shipped")
def test_the_shipped_calibration_says_what_it_was_measured_on():
    scale = shipped_interval_scale()
    assert len(scale.corpora) >= 6 and scale.command.startswith("python bench/laws/distillation_interval.py")
    assert 0 < scale.factor(0.9) < 1   # the law's own interval is wider than its errors


def test_a_fit_carries_the_shipped_calibration_only_where_its_teachers_are_too_few_for_a_backtest(
        monkeypatch, capsys):
    import distillscale as ds
    from distillscale.laws import selection
    from distillscale.laws.render import _print_selection

    shipped = IntervalScale.from_scores([0.2, 0.3, 0.4], 0.9, corpora=("x",))
    monkeypatch.setattr(selection, "shipped_interval_scale", lambda: shipped)
    laws = load_laws("busbridge2025")

    def fit(teachers: int, **options):
        N_S = np.repeat([1e8, 3e8, 1e9, 3e9], teachers)
        L_T = np.tile(laws.supervised.predict(np.geomspace(1e9, 3e10, teachers), 2e11), 4)
        L_S = laws.distillation.predict(N_S, 20 * N_S, L_T) * (1 + 0.002 * np.sin(np.arange(len(N_S))))
        return ds.fit_distillation(params=N_S, tokens=20 * N_S, teacher_loss=L_T, loss=L_S, student_law=laws.supervised,
                                   form="tied", bootstrap=0, grid=ONE_START, backtest_grid=ONE_START, polish=False,
                                   max_iter=100, **options)

    three = fit(3)   # a backtest needs the students of 4 teachers: the literature's error stands in
    assert not three.law.fit.extrapolation_error.measured and three.law.fit.interval_scale == shipped
    assert fit(3, interval_scale=False).law.fit.interval_scale is None
    four = fit(4)    # measured by its own backtest: kept
    assert four.law.fit.extrapolation_error.measured and four.law.fit.interval_scale is None
    # `fit distillation` says what the intervals are.
    _print_selection(three)
    said = " ".join(capsys.readouterr().out.split())
    assert "the calibration below scales the interval it makes" in said
    assert "intervals calibrated on 3 held-out students of 1 corpus (x): the law's own 90% interval" in said
