"""The difference of two predicted losses and its interval (`laws.difference`): what every verdict
reads, and what the pairs bench scores."""

import math

import pytest

from distillscale.laws import difference
from distillscale.laws.difference import (INDEPENDENT, DifferenceCalibration, LossDifference, Pair, fit_calibration,
                                          loss_difference, score_pairs, shipped_calibration)
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.uncertainty import Prediction
from distillscale.planning.results import decide_verdict

pytestmark = pytest.mark.fast


def loss(value: float, half: float, distance: float | None = None, beyond: bool = False) -> Prediction:
    return Prediction(value, value - half, value + half, 0.9, None, None, distance, beyond)


def test_fully_correlated_errors_give_a_difference_narrower_than_either_loss():
    distilled, alone = loss(2.50, 0.05), loss(2.55, 0.05)
    correlated = DifferenceCalibration(correlation=1.0, factor=1.0, level=0.9)
    delta = loss_difference(distilled, alone, correlated)
    assert delta.value == pytest.approx(-0.05)
    assert (delta.high - delta.low) / 2 < 0.05            # narrower than either loss's half-width
    assert delta.verdict == "distill"
    # the same pair under the independent rule straddles 0: too close to call
    assert loss_difference(distilled, alone, INDEPENDENT).verdict == "too close to call"


def test_no_correlation_recovers_the_independent_rule():
    distilled, alone = loss(2.50, 0.03), loss(2.55, 0.04)
    delta = loss_difference(distilled, alone, DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9))
    assert delta.high - delta.value == pytest.approx(math.hypot(0.03, 0.04))
    assert delta.value - delta.low == pytest.approx(math.hypot(0.03, 0.04))


def test_the_verdict_reads_the_interval_of_the_difference():
    half = DifferenceCalibration(correlation=0.5, factor=1.0, level=0.9)
    assert loss_difference(loss(2.40, 0.02), loss(2.50, 0.02), half).verdict == "distill"
    assert loss_difference(loss(2.60, 0.02), loss(2.50, 0.02), half).verdict == "pretrain"
    assert loss_difference(loss(2.50, 0.05), loss(2.51, 0.05), half).verdict == "too close to call"
    # straddling 0 beyond the calibrated reach, a loss beyond its own backtest: cannot tell
    reach = DifferenceCalibration(correlation=0.5, factor=1.0, level=0.9, reach=2.0)
    far = loss_difference(loss(2.50, 0.05, distance=5.0, beyond=True), loss(2.51, 0.05, distance=5.0), reach)
    assert far.verdict == CANNOT_TELL
    near = loss_difference(loss(2.50, 0.05, distance=1.5, beyond=True), loss(2.51, 0.05, distance=1.5), reach)
    assert near.verdict == "too close to call"


def test_a_difference_says_its_value_interval_and_share():
    delta = LossDifference(-0.041, -0.068, -0.015, 0.9, 2.929)
    assert delta.describe() == "-0.0410 nats/token (-1.4%) [-0.0680, -0.0150]"
    assert LossDifference.from_dict(delta.to_dict()) == delta


def test_the_planners_verdict_and_the_pair_scoring_call_one_function(monkeypatch):
    """The scored number is the printed number: `decide_verdict` (every plan's) and `score_pairs`
    (the calibration's bench) both go through `loss_difference`; a test fails if they part."""
    calls = []
    real = difference.loss_difference

    def spy(distilled, alone, calibration=None):
        calls.append((float(distilled.value), float(alone.value)))
        return real(distilled, alone, calibration)

    monkeypatch.setattr(difference, "loss_difference", spy)
    distilled, alone = loss(2.40, 0.02), loss(2.50, 0.02)
    verdict = decide_verdict(2.40, distilled, 2.50, alone)
    assert calls == [(2.40, 2.50)]
    score = score_pairs([Pair("c", distilled, alone, 2.41, 2.52)], shipped_calibration())
    assert calls == [(2.40, 2.50)] * 2
    assert (score.given == 1) == (verdict in ("distill", "pretrain"))


def test_calibration_on_pairs_whose_errors_move_together():
    """Pairs whose two errors share one cause (the supervised law off by the same share for both):
    the fitted correlation is high, the factor keeps coverage, and more verdicts are given than by
    the independent rule, none wrong."""
    pairs = []
    for corpus in range(6):
        for k in range(8):
            shared = 0.03 * math.sin(1.7 * k + corpus)            # both losses off together
            own = 0.004 * math.cos(2.3 * k + 0.5 * corpus)        # a little of each on its own
            d, a = 2.40 + 0.01 * k, 2.47 + 0.006 * k
            pairs.append(Pair(f"c{corpus}", loss(d, 0.05), loss(a, 0.05), d * (1 + shared + own), a * (1 + shared)))
    calibration = fit_calibration(pairs)
    assert calibration.correlation > 0.8
    fitted, independent = score_pairs(pairs, calibration), score_pairs(pairs, INDEPENDENT)
    assert fitted.coverage >= 0.85
    assert fitted.given > independent.given and fitted.wrong == 0


def test_the_shipped_calibration_reads():
    calibration = shipped_calibration()
    assert -1.0 <= calibration.correlation <= 1.0 and calibration.factor > 0


def test_a_plan_record_written_before_the_difference_had_an_interval_reads():
    delta = LossDifference.from_dict({"student_loss": 2.40, "supervised_loss": 2.50, "verdict": "distill",
                                      "loss_difference": 0.10})   # the old sign: supervised - distilled
    assert delta.value == pytest.approx(-0.10) and not delta.has_interval and delta.verdict == "distill"
