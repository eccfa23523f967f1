"""The difference of two predicted losses and its interval (`laws.difference`): what every verdict
reads, and what the pairs bench scores."""

import math

import numpy as np
import pytest

from distillscale.laws import difference
from distillscale.laws.difference import (INDEPENDENT, SAME_LAW, DifferenceCalibration, LawScale, LossDifference, Pair,
                                          band_of, compare, corpus_quantile, effective_sample_size, fit_calibration,
                                          score_pairs, shipped_calibration)
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.uncertainty import Prediction
from distillscale.planning.results import verdict_difference

pytestmark = pytest.mark.fast


def loss(value: float, half: float, distance: float | None = None, beyond: bool = False,
         outside: str | None = None) -> Prediction:
    return Prediction(value, value - half, value + half, 0.9, None, None, distance, beyond, outside=outside)


def measured(pairs: int = 10) -> tuple[int, ...]:
    return (pairs,) * 5


def test_fully_correlated_errors_give_a_difference_narrower_than_either_loss():
    distilled, alone = loss(2.50, 0.05), loss(2.55, 0.05)
    correlated = DifferenceCalibration(correlation=1.0, factor=1.0, level=0.9)
    delta = compare(distilled, alone, correlated)
    assert delta.value == pytest.approx(-0.05)
    assert (delta.high - delta.low) / 2 < 0.05            # narrower than either loss's half-width
    assert delta.verdict == "distill"
    # the same pair under the independent rule straddles 0: too close to call
    assert compare(distilled, alone, INDEPENDENT).verdict == "too close to call"


def test_no_correlation_recovers_the_independent_rule():
    distilled, alone = loss(2.50, 0.03), loss(2.55, 0.04)
    delta = compare(distilled, alone, DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9))
    assert delta.high - delta.value == pytest.approx(math.hypot(0.03, 0.04))
    assert delta.value - delta.low == pytest.approx(math.hypot(0.03, 0.04))


def test_each_law_is_rescaled_at_its_own_distance_and_its_reach_tells():
    """A law's interval is scaled by its band's scale; past the farthest distance its pairs measured a
    straddling interval cannot tell; each law has its own reach."""
    wide = LawScale(scales=(1.5, 2.0, 1.2, None, None), pairs=(10, 10, 10, 0, 0), reach=3.0)
    calibration = DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9, distilled=wide, alone=wide,
                                        pairs=30)
    inside = compare(loss(2.50, 0.10, 1.0), loss(2.80, 0.10, 1.0), calibration)
    assert inside.high - inside.value == pytest.approx(math.hypot(0.15, 0.15))
    assert (inside.distilled_scale, inside.alone_scale) == (1.5, 1.5) and inside.verdict == "distill"
    band = compare(loss(2.50, 0.10, 2.5), loss(2.60, 0.10, 1.5), calibration)
    assert band.distilled_scale == 1.2 and band.alone_scale == 2.0
    far = compare(loss(2.50, 0.10, 6.0), loss(2.52, 0.10, 1.0), calibration)
    assert far.distilled_scale == 1.2 and far.beyond and far.verdict == CANNOT_TELL   # the farthest band's
    # the alone law's own reach: the distilled loss inside its reach, the alone loss beyond its own
    alone_near = LawScale(scales=(1.5, None, None, None, None), pairs=(10, 0, 0, 0, 0), reach=1.0)
    per_law = calibration.model_copy(update={"alone": alone_near})
    delta = compare(loss(2.50, 0.10, 1.5), loss(2.52, 0.10, 1.4), per_law)
    assert delta.alone_scale == 1.5 and delta.beyond and delta.verdict == CANNOT_TELL
    assert LawScale().at(5.0) == 1.0


def test_a_laws_interval_is_never_narrowed_and_a_band_without_pairs_is_no_narrower_than_its_neighbours():
    """A scale below 1 (pairs on one design found the interval wider than its errors) is recorded,
    never applied: the law's interval is never narrowed below what it says; a band no pair measured
    takes the larger of its measured neighbours' scales (between bands measured at 2.21 and 2.18 it is
    2.21, not the law's interval as it says)."""
    narrow = LawScale(scales=(None, 0.35, None, 1.6, None), pairs=(0, 64, 0, 16, 0), reach=6.0)
    assert narrow.at(1.5) == 1.0            # measured 0.35: not applied
    assert narrow.at(1.0) == 1.0            # inside the runs, no pairs: its neighbour's 0.35, never below 1
    assert narrow.at(3.0) == 1.6            # 2-4x, no pairs: the larger of 0.35 and 1.6
    assert narrow.at(5.0) == 1.6
    assert narrow.at(12.0) == 1.6           # beyond 8x: the farthest measured band's
    alone = LawScale(scales=(2.2128, None, 2.1839, None, None), pairs=(72, 0, 16, 0, 0), reach=2.37)
    assert alone.at(1.5) == 2.2128 and alone.at(3.0) == 2.1839 and alone.at(6.0) == 2.1839
    calibration = DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9, distilled=narrow, alone=narrow,
                                        pairs=80)
    delta = compare(loss(2.50, 0.10, 1.5), loss(2.60, 0.10, 1.0), calibration)
    assert delta.high - delta.value == pytest.approx(math.hypot(0.10, 0.10))
    assert "0.35, never narrowed" in calibration.describe()
    assert "a band without pairs as the larger of its measured neighbours" in calibration.describe()


def test_the_verdict_reads_the_interval_of_the_difference():
    half = DifferenceCalibration(correlation=0.5, factor=1.0, level=0.9)
    assert compare(loss(2.40, 0.02), loss(2.50, 0.02), half).verdict == "distill"
    assert compare(loss(2.60, 0.02), loss(2.50, 0.02), half).verdict == "pretrain"
    assert compare(loss(2.50, 0.05), loss(2.51, 0.05), half).verdict == "too close to call"


def test_where_a_loss_means_nothing_no_interval_gives_a_verdict():
    """A loss no better than a uniform guess, or far outside its law's data on a side the distance
    does not measure: cannot tell, however far from 0 the interval lies."""
    far = loss(2.0, 0.05, outside="1 parameters is 1.4e+08x below the data behind law 'x'")
    delta = compare(far, loss(40.0, 0.5), shipped_calibration())
    assert delta.high < 0 and delta.verdict == CANNOT_TELL and delta.outside
    assert verdict_difference(2.0, far, 40.0, loss(40.0, 0.5)).verdict == CANNOT_TELL


def test_two_losses_of_one_law_are_compared_as_shown():
    """The rule for two distilled predictions is not the one calibrated for (distilled, alone): their
    intervals combine as shown, independently, whatever the shipped calibration says."""
    first, second = loss(2.40, 0.04, 2.0), loss(2.44, 0.03, 2.0)
    same = compare(first, second, SAME_LAW)
    assert same.high - same.value == pytest.approx(math.hypot(0.04, 0.03))
    assert same.rule == "two predictions of one law" and not same.separated


def test_a_difference_says_its_value_interval_and_what_recomputes_it():
    delta = LossDifference(-0.041, -0.068, -0.015, 0.9, 2.929)
    assert delta.describe() == "-0.0410 nats/token (-1.4%) [-0.0680, -0.0150]"
    assert LossDifference.from_dict(delta.to_dict()) == delta
    computed = compare(loss(2.40, 0.02, 1.5), loss(2.50, 0.03), shipped_calibration())
    record = computed.to_dict()
    assert record["distilled_minus_alone"] == pytest.approx(-0.10)
    assert "loss_difference" not in record   # the old key, whose sign changed, is gone: an old reader fails
    rule = record["difference_interval"]
    assert rule["version"] == 2 and rule["distilled_distance"] == 1.5
    assert LossDifference.from_dict(record) == computed


def test_the_interval_is_recomputed_from_what_json_carries():
    """--json carries each law's scale, distance and reach, rho and q: Delta's interval from them."""
    distilled, alone = loss(2.40, 0.03, 2.5), loss(2.47, 0.05, 1.0)
    d = compare(distilled, alone, shipped_calibration())
    rule = d.to_dict()["difference_interval"]

    def half(s_d: float, s_a: float) -> float:
        s_d, s_a = s_d * rule["distilled_scale"], s_a * rule["alone_scale"]
        return rule["factor"] * math.sqrt(s_d ** 2 + s_a ** 2 - 2 * rule["correlation"] * s_d * s_a)

    assert d.high == pytest.approx(d.value + half(0.03, 0.05)) and d.low == pytest.approx(d.value - half(0.03, 0.05))


def test_the_planners_verdict_and_the_pair_scoring_call_one_function(monkeypatch):
    """The scored number is the printed number: `verdict_difference` (every plan's) and `score_pairs`
    (the calibration's bench) both go through `compare`; a test fails if they part."""
    calls = []
    real = difference.compare

    def spy(first, second, calibration=None):
        calls.append((float(first.value), float(second.value)))
        return real(first, second, calibration)

    monkeypatch.setattr(difference, "compare", spy)
    distilled, alone = loss(2.40, 0.02), loss(2.50, 0.02)
    verdict = verdict_difference(2.40, distilled, 2.50, alone).verdict
    assert calls == [(2.40, 2.50)]
    score = score_pairs([Pair("c", distilled, alone, 2.41, 2.52)], shipped_calibration())
    assert calls == [(2.40, 2.50)] * 2
    assert (score.given == 1) == (verdict in ("distill", "pretrain"))


def _pairs(corpora: int = 8, per: int = 8, far: bool = False) -> list[Pair]:
    pairs = []
    for corpus in range(corpora):
        for k in range(per):
            shared = 0.03 * math.sin(1.7 * k + corpus)            # both losses off together
            own = 0.004 * math.cos(2.3 * k + 0.5 * corpus)        # a little of each on its own
            d, a = 2.40 + 0.01 * k, 2.47 + 0.006 * k
            distance = 1.0 + (k % 4) if far else 1.0
            pairs.append(Pair(f"c{corpus}", loss(d, 0.05, distance), loss(a, 0.05), d * (1 + shared + own),
                              a * (1 + shared)))
    return pairs


def test_calibration_on_pairs_whose_errors_move_together():
    """Pairs whose two errors share one cause (the supervised law off by the same share for both):
    the fitted correlation is high, the factor keeps coverage, and more verdicts are given than by
    the independent rule, none wrong."""
    pairs = _pairs()
    calibration = fit_calibration(pairs)
    assert calibration.correlation > 0.8
    fitted, independent = score_pairs(pairs, calibration), score_pairs(pairs, INDEPENDENT)
    assert fitted.coverage >= 0.85
    assert fitted.given > independent.given and fitted.wrong == 0


def test_a_laws_scale_is_measured_per_distance_band_and_its_reach_is_its_farthest_pair():
    calibration = fit_calibration(_pairs(far=True))
    assert calibration.distilled.reach == pytest.approx(4.0)
    assert [n > 0 for n in calibration.distilled.pairs] == [True, True, True, False, False]
    assert calibration.alone.reach == 1.0 and calibration.alone.pairs[0] == 64
    assert band_of(1.0) == 0 and band_of(1.5) == 1 and band_of(4.0) == 2 and band_of(9.0) == 4


def test_the_conformal_correction_counts_corpora_not_pairs():
    """(K + 1) / K with K corpora: with 8 corpora the 90% quantile needs more than every corpus's
    share, so it is the largest score; with 20 corpora, a score below it."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 200)
    few = np.array([f"c{i % 8}" for i in range(200)])
    many = np.array([f"c{i % 20}" for i in range(200)])
    assert corpus_quantile(scores, few, 0.9) == scores.max()
    assert corpus_quantile(scores, many, 0.9) < scores.max()


def test_the_correction_counts_what_the_pairs_are_worth_between_corpora_and_pairs():
    """Pairs of one corpus that share their errors count as one corpus; pairs whose errors corpora do
    not share count as pairs; the quantile's correction counts that effective number."""
    rng = np.random.default_rng(1)
    corpora = np.repeat([f"c{i}" for i in range(8)], 15)
    shared = np.repeat(rng.normal(0, 1, 8), 15) + rng.normal(0, 1e-3, 120)
    size, icc = effective_sample_size(shared, corpora)
    assert icc > 0.99 and size == pytest.approx(8, rel=0.05)
    size, icc = effective_sample_size(rng.normal(0, 1, 120), corpora)
    assert icc < 0.1 and size > 60
    scores = rng.uniform(0, 1, 120)
    assert corpus_quantile(scores, corpora, 0.9, 8.0) == corpus_quantile(scores, corpora, 0.9, "corpora") \
        == scores.max()
    assert corpus_quantile(scores, corpora, 0.9, 120.0) == corpus_quantile(scores, corpora, 0.9, "pairs") < scores.max()
    calibration = fit_calibration(_pairs())
    assert len(calibration.corpora) <= calibration.sample_size <= calibration.pairs
    assert 0.0 <= calibration.within_corpus <= 1.0


def test_pairs_rescale_a_fitted_laws_interval_not_one_calibrated_across_corpora_or_stated():
    """A fitted law's interval, its own or with the extrapolation part calibrated across published
    ladders, is rescaled at its distance; one calibrated across corpora on held-out runs, or a preset's
    stated error, is compared as it is."""
    wide = LawScale(scales=(1.5, 1.5, None, None, None), pairs=(10, 10, 0, 0, 0), reach=2.0)
    calibration = DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9, distilled=wide, alone=wide,
                                        pairs=20)

    def source(kind: str) -> Prediction:
        return Prediction(2.5, 2.4, 2.6, 0.9, None, None, 1.0, calibrated=kind != "own", source=kind)

    scales = {kind: compare(source(kind), source(kind), calibration).distilled_scale
              for kind in ("own", "ladders", "corpora", "stated")}
    assert scales == {"own": 1.5, "ladders": 1.5, "corpora": 1.0, "stated": 1.0}
    import distillscale as ds

    preset = ds.load_laws("busbridge2025")
    assert preset.supervised.prediction(546e6, 10.92e9).interval_source == "stated"
    assert preset.distillation.prediction(546e6, 10.92e9, 2.3).interval_source == "stated"
    # a record without its source: calibrated reads as a preset's stated error
    assert Prediction(2.5, 2.4, 2.6, 0.9, None, None, 1.0, calibrated=True).interval_source == "stated"


def test_the_shipped_calibration_reads():
    calibration = shipped_calibration()
    assert -1.0 <= calibration.correlation <= 1.0 and calibration.factor > 0
    assert calibration.describe()


def test_a_plan_record_written_before_the_difference_had_its_own_key_reads_without_its_sign():
    """A record of an earlier version (`loss_difference`, one sign then the other) gives the two losses'
    difference from the losses themselves."""
    delta = LossDifference.from_dict({"student_loss": 2.40, "supervised_loss": 2.50, "verdict": "distill",
                                      "loss_difference": 0.10})
    assert delta.value == pytest.approx(-0.10) and not delta.has_interval and delta.verdict == "distill"


def test_an_interval_no_pair_measured_is_combined_as_shown():
    """The pairs measured rho and q on fitted laws' intervals (and ones calibrated across corpora): a
    preset's stated error is combined as shown, independently, whatever q the pairs found for the
    others (a q below 1 narrows Δ only where it was measured)."""
    from distillscale.laws.difference import AS_SHOWN

    calibration = DifferenceCalibration(correlation=0.9, factor=0.5, level=0.9, pairs=20)
    stated = Prediction(2.5, 2.4, 2.6, 0.9, None, None, 1.0, calibrated=True)
    alone = loss(2.7, 0.1, 1.0)
    shown = compare(stated, alone, calibration)
    assert (shown.correlation, shown.factor, shown.rule) == (0.0, 1.0, AS_SHOWN)
    assert shown.high - shown.value == pytest.approx(math.hypot(0.1, 0.1))
    fitted = compare(loss(2.5, 0.1, 1.0), alone, calibration)
    assert (fitted.correlation, fitted.factor) == (0.9, 0.5)
