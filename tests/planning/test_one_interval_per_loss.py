"""One interval per loss: the interval shown beside each loss (a plan's text, its --json, the Python
plan objects, `teacher`'s ranking, `predict distillation`) is the one a verdict's Δ is built from
(`laws.difference.used_interval`): Δ's interval recomputes from the two shown intervals with the
calibration's correlation and factor alone, no scale applied again."""

from __future__ import annotations

import json
import math

import pytest

import distillscale as ds
from distillscale.laws import difference
from distillscale.laws.difference import DifferenceCalibration, LawScale

pytestmark = pytest.mark.fast

# a calibration that widens each law's interval by a scale no preset's interval is near
ALONE, DISTILLED = 2.0, 1.5
WIDE = DifferenceCalibration(correlation=0.3, factor=0.9, level=0.9, pairs=40, corpora=("a", "b"),
                             distilled=LawScale(scales=(DISTILLED,) * 5, pairs=(10,) * 5, reach=100.0),
                             alone=LawScale(scales=(ALONE,) * 5, pairs=(10,) * 5, reach=100.0))


@pytest.fixture
def scaled(monkeypatch):
    """The shipped calibration replaced by WIDE, and a preset's stated intervals rescaled as a fitted
    law's are (so a preset plans as a fitted law would)."""
    monkeypatch.setattr(difference, "shipped_calibration", lambda: WIDE)
    monkeypatch.setattr(difference, "rescaled", lambda prediction: True)
    monkeypatch.setattr(difference, "measured", lambda prediction: True)


def halves(interval: list[float], value: float) -> tuple[float, float]:
    return value - interval[0], interval[1] - value


def delta_from_shown(distilled: tuple[float, float], alone: tuple[float, float]) -> tuple[float, float]:
    """Δ's (down, up) half-widths from the two shown intervals' (below, above) sides: no scale."""
    def half(s_d: float, s_a: float) -> float:
        return WIDE.factor * math.sqrt(s_d ** 2 + s_a ** 2 - 2 * WIDE.correlation * s_d * s_a)
    return half(distilled[0], alone[1]), half(distilled[1], alone[0])


def check(record: dict, student: list[float], alone: list[float]) -> None:
    d, a = record["student_loss"], record["supervised_loss"]
    down, up = delta_from_shown(halves(student, d), halves(alone, a))
    low, high = record["distilled_minus_alone_interval"]
    assert low == pytest.approx(d - a - down, rel=1e-9, abs=1e-12)
    assert high == pytest.approx(d - a + up, rel=1e-9, abs=1e-12)


def test_a_plans_json_and_objects_show_the_intervals_its_delta_is_built_from(scaled):
    plan = ds.plan("busbridge2025", student_params=546e6, compute=1e21)
    records = json.loads(plan.to_json())["plans"]
    assert len(records) == 4
    for record in records.values():
        check(record, record["student_loss_interval"]["interval"], record["supervised_loss_interval"]["interval"])
        assert record["supervised_loss_interval"]["interval_scale"] == ALONE
        assert record["student_loss_interval"]["interval_scale"] == DISTILLED
    one = plan.plans[1]                                               # the Python objects show them too
    raw = ds.load_laws("busbridge2025").supervised.prediction(one.supervised.student_params, one.supervised.tokens)
    shown = one.supervised.interval
    assert float(shown.high) - float(shown.value) == pytest.approx(ALONE * (float(raw.high) - float(raw.value)))


def test_a_plans_text_prints_the_intervals_its_delta_is_built_from(scaled):
    plan = ds.plan("busbridge2025", student_params=546e6, compute=1e21, scenario="teacher-inference")
    text = plan.as_text()
    one = plan.plans[0]
    for interval in (one.student_interval, one.supervised.interval):
        assert f"{float(interval.low):.3f}–{float(interval.high):.3f}" in text
    assert "x1.50, x2.00): the intervals Δ is built from" in text.replace("\n", " ")


def test_predict_distillation_shows_the_intervals_its_delta_is_built_from(scaled):
    from distillscale.laws.predict import predict_distillation

    result = predict_distillation(ds.load_laws("busbridge2025"), 546e6, 20e9, teacher_loss=2.0)
    record = result.to_dict()
    d, a = result.prediction, result.supervised
    check({**record, "supervised_loss": float(a.value)}, [float(d.low), float(d.high)], [float(a.low), float(a.high)])
    assert record["interval_scale"] == DISTILLED


def test_teacher_ranking_shows_the_intervals_its_delta_is_built_from(scaled):
    ranking = ds.rank_teachers_for("busbridge2025", student_params=546e6, student_tokens=20e9)
    alone = ranking.supervised_interval
    assert alone.pairs_scale == ALONE
    for i, delta in enumerate(ranking.differences()):
        shown = ranking._one(i)
        record = {"student_loss": float(shown.value), "supervised_loss": float(alone.value),
                  "distilled_minus_alone_interval": [delta.low, delta.high]}
        check(record, [float(shown.low), float(shown.high)], [float(alone.low), float(alone.high)])


def test_a_loss_is_rescaled_once_whatever_reads_it():
    """`used_interval` of a loss already shown is that loss: compare reads the same interval again."""
    loss = ds.load_laws("busbridge2025").supervised.prediction(546e6, 20e9)
    own = loss.__class__(**{**loss.__dict__, "source": "own", "calibrated": False})
    once = difference.used_interval(own, "alone", WIDE)
    assert once.pairs_scale == ALONE
    assert difference.used_interval(once, "alone", WIDE) is once
    assert float(once.high) - float(once.value) == pytest.approx(ALONE * (float(own.high) - float(own.value)))


def test_the_planner_pages_student_loss_band_is_the_one_delta_uses(scaled):
    """The planner page's curve of the student loss against the teacher's carries each point's interval
    as a verdict's Δ uses it, as the plan shows it."""
    import numpy as np

    from distillscale.serve.api import _u_curve

    plan = ds.plan("busbridge2025", student_params=546e6, compute=1e21, scenario="teacher-inference")
    curve = _u_curve(plan)
    p = plan.headline
    raw = plan.planner.distillation.prediction(p.student_params, p.student_tokens, np.array(curve["teacher_loss"]))
    assert np.allclose(np.array(curve["high"]) - np.array(curve["student_loss"]),
                       DISTILLED * (np.asarray(raw.high) - np.asarray(raw.value)))
