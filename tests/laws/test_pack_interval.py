"""The supervised law's interval calibrated on published ladders (`laws.pack_interval`): it covers
its level where the errors' scale follows the distance, it is scored leaving a family out (a
poisoned family moves nothing that scores it), and coverage and width come from one function."""

from __future__ import annotations

import numpy as np
import pytest

from distillscale.laws.crossladder import FitSummary
from distillscale.laws.pack_interval import (POOLED, QUANTILE_LEVELS, CalibratedInterval, IntervalTable, PackInterval,
                                             fit_pack_interval, interval_scores, leave_one_family_out,
                                             shipped_interval, weighted_quantile)


def _summary(top: float, sizes: int, runs: int) -> FitSummary:
    return FitSummary(params_max=top, params_min=top / 2 ** (sizes - 1), tokens_max=top * 40, sizes=sizes,
                      runs=runs, log_ratio_median=float(np.log(20)), alpha=0.3, beta=0.3)


def synthetic(ladders: int = 9, seed: int = 0, per_lever: float = 0.01, floor: float = 0.003) -> IntervalTable:
    """Ladders (three to a family) of fits at three cuts, each predicting runs 1.5-12x beyond, their
    signed errors Laplace with scale floor + per_lever x dN / span, a ladder's own bias on top."""
    rng = np.random.default_rng(seed)
    names, summaries, N, D, y = [], [], [], [], []
    for k in range(ladders):
        bias = rng.normal(0, 0.002)
        for cut in range(3):
            s = _summary(1e8 * 2 ** cut, 3 + cut + k % 3, 12 + 8 * cut)
            for distance in (1.5, 2.5, 3, 5, 8, 12):
                for ratio in (5, 20, 80):
                    n = s.params_max * distance
                    scale = floor + per_lever * np.log(distance) / s.span
                    names.append(f"ladder{k}")
                    summaries.append(s)
                    N.append(n)
                    D.append(min(n * ratio, s.tokens_max))
                    y.append(bias + rng.laplace(0, scale))
    return IntervalTable(np.array(names), summaries, np.array(N), np.array(D), np.array(y))


def family(name: str) -> str:
    return f"family{int(name.removeprefix('ladder')) // 3}"


def test_the_calibration_covers_its_level_on_ladders_it_did_not_see_and_is_not_padded():
    models = leave_one_family_out(synthetic(), family)
    fresh = synthetic(seed=1)
    low, high = np.empty(len(fresh)), np.empty(len(fresh))
    for i, (name, s, n, d) in enumerate(zip(fresh.ladder, fresh.summaries, fresh.N, fresh.D)):
        lo, hi = models[name].sides(s, n, d, 0.9)
        low[i], high[i] = lo[0], hi[0]
    observed = np.exp(fresh.y)                     # predicted = 1: the errors are the observations'
    table = interval_scores(fresh.ladder, observed, np.ones(len(fresh)), 1 - low, 1 + high)
    assert 0.85 <= table[POOLED].coverage <= 0.95
    assert min(s.coverage for s in table.values()) >= 0.75     # 54 runs a ladder: one run is 2 points
    # Laplace errors: a calibrated 90% half-width is 2.3x their mean |error|; a worst case is far more
    assert table[POOLED].ratio < 2.8
    model = fit_pack_interval(synthetic())
    assert model.per_lever > model.per_efold        # the scale follows the lever it was drawn with
    assert list(model.quantiles) == sorted(model.quantiles) and len(model.quantiles) == len(QUANTILE_LEVELS)


def test_a_poisoned_family_moves_nothing_that_scores_it():
    table = synthetic(seed=2)
    poisoned_y = table.y.copy()
    poisoned_y[table.ladder == "ladder4"] *= 40.0                    # family1 is ladders 3-5
    poisoned = IntervalTable(table.ladder, table.summaries, table.N, table.D, poisoned_y)
    clean, dirty = leave_one_family_out(table, family), leave_one_family_out(poisoned, family)
    for name in ("ladder3", "ladder4", "ladder5"):
        assert dirty[name] == clean[name]
        assert not {"ladder3", "ladder4", "ladder5"} & set(clean[name].ladders)
    assert dirty["ladder0"] != clean["ladder0"] and dirty["ladder8"] != clean["ladder8"]   # it reaches the others



def test_weighing_families_counts_a_family_once_however_many_ladders_it_has():
    table = synthetic(ladders=4, seed=3)              # family0: ladders 0-2, family1: ladder 3 alone
    w = table.weights(family)
    assert np.sum(w[table.ladder == "ladder3"]) == pytest.approx(np.sum(w[table.ladder != "ladder3"]))
    assert np.sum(w[table.ladder == "ladder0"]) == pytest.approx(np.sum(w[table.ladder == "ladder2"]))
    # by ladder, the lone ladder is a quarter of the rows' weight; by family, half
    assert np.sum(table.weights()[table.ladder == "ladder3"]) / np.sum(table.weights()) == pytest.approx(0.25)
    # the loud family weighs less when each family counts once: a narrower interval than by ladder
    loud = IntervalTable(table.ladder, table.summaries, table.N, table.D,
                         np.where(table.ladder == "ladder3", table.y, table.y * 4))
    by_ladder, by_family = fit_pack_interval(loud), fit_pack_interval(loud, group=family)
    target = (table.summaries[0], 4e8, 4e9, 0.9)
    assert sum(by_family.sides(*target))[0] < 0.95 * sum(by_ladder.sides(*target))[0]
    # and a poisoned family still moves nothing that scores it
    poisoned = IntervalTable(table.ladder, table.summaries, table.N, table.D,
                             np.where(table.ladder == "ladder3", table.y * 40, table.y))
    clean = leave_one_family_out(table, family, weigh_families=True)
    dirty = leave_one_family_out(poisoned, family, weigh_families=True)
    assert dirty["ladder3"] == clean["ladder3"] and dirty["ladder0"] != clean["ladder0"]

def test_quantiles_across_families_are_those_of_errors_on_a_family_the_scale_did_not_see():
    table = synthetic(seed=4)
    inside, across = fit_pack_interval(table, group=family), fit_pack_interval(table, group=family, across=family)
    # the scale is the fit on every family; only the quantiles change
    assert (across.floor, across.per_efold, across.per_lever) == (inside.floor, inside.per_efold, inside.per_lever)
    # families alike: their errors standardized by a scale that did not see them are much the same
    assert np.allclose(across.ends(0.9), inside.ends(0.9), rtol=0.25)
    # one family errs three times as much far out: a scale fitted without it standardizes its errors
    # as a user's unseen ladder is, and the interval widens for that
    loud = np.where((table.ladder == "ladder6") | (table.ladder == "ladder7") | (table.ladder == "ladder8"),
                    table.y * np.where(table.N / np.array([s.params_max for s in table.summaries]) > 4, 3.0, 1.0),
                    table.y)
    loud = IntervalTable(table.ladder, table.summaries, table.N, table.D, loud)
    wide, narrow = fit_pack_interval(loud, group=family, across=family), fit_pack_interval(loud, group=family)
    assert np.diff(wide.ends(0.9))[0] > 1.03 * np.diff(narrow.ends(0.9))[0]     # 1.07 measured
    # and leaving a family out still leaves it out of the quantiles' inner fits too
    poisoned = IntervalTable(table.ladder, table.summaries, table.N, table.D,
                             np.where(table.ladder == "ladder4", table.y * 40, table.y))
    clean = leave_one_family_out(table, family, weigh_families=True, across=True)
    dirty = leave_one_family_out(poisoned, family, weigh_families=True, across=True)
    assert dirty["ladder3"] == clean["ladder3"] and dirty["ladder0"] != clean["ladder0"]


def test_a_fits_misfit_widens_its_interval_and_the_calibration_keeps_the_median_misfit_for_laws_without_one():
    table = synthetic(seed=5)
    rng = np.random.default_rng(5)
    misfit = rng.uniform(0.002, 0.02, len(table))
    loud = IntervalTable(table.ladder, table.summaries, table.N, table.D, table.y * (1 + misfit / 0.005), misfit)
    model = fit_pack_interval(loud, terms=("floor", "per_efold", "per_misfit"), group=family, across=family)
    assert model.per_misfit > 0
    assert model.misfit_reference == pytest.approx(float(weighted_quantile(misfit, loud.weights(family), 0.5)[0]))
    s = table.summaries[0]
    assert float(model.scale(s, 4e8, 4e9, 0.02)) > 1.5 * float(model.scale(s, 4e8, 4e9, 0.002))


def test_the_ratio_term_widens_only_beyond_the_runs_and_with_the_distance_from_the_runs_tokens_per_parameter():
    s = _summary(1e8, 4, 30)                                 # the runs' median: 20 tokens per parameter
    assert s.ratio_distance(1e8, 2e9) == pytest.approx(0.0) and s.ratio_distance(1e8, 2e11) == pytest.approx(np.log(100))
    model = PackInterval(floor=0.5, per_efold=0.5, per_lever=0.0, per_token=0.0, per_ratio=0.3, runs_power=0.0,
                         quantiles=tuple(np.linspace(-0.05, 0.05, len(QUANTILE_LEVELS))))
    plain = model.model_copy(update={"per_ratio": 0.0})
    # inside the fitted sizes the ratio does not matter
    assert model.scale(s, 1e8, 1e9) == pytest.approx(plain.scale(s, 1e8, 1e9))
    # beyond them, a target far from the runs' ratio (either way) is wider than one at it
    at, short, long = (float(model.scale(s, 4e8, 4e8 * r)) for r in (20, 20 / np.e ** 2, 20 * np.e ** 2))
    assert at == pytest.approx(float(plain.scale(s, 4e8, 8e9)))
    assert short == pytest.approx(long) and short > at


def test_interval_scores_is_the_pack_tables_arithmetic():
    ladder = np.array(["a", "a", "b", "b"])
    observed = np.array([1.0, 1.0, 2.0, 2.0])
    predicted = np.array([1.02, 0.99, 2.0, 2.1])
    low, high = predicted * 0.97, predicted * 1.03
    table = interval_scores(ladder, observed, predicted, low, high)
    assert table["a"].coverage == 1.0 and table["b"].coverage == 0.5
    assert table["a"].error == pytest.approx(0.015) and table["a"].signed == pytest.approx(0.005)
    assert table["b"].half_width == pytest.approx(0.03) and table["b"].over == 0.5
    pooled = table[POOLED]
    assert pooled.n == 4 and pooled.coverage == 0.75
    assert pooled.error == pytest.approx((0.015 + 0.025) / 2)
    assert pooled.ratio == pytest.approx(0.03 / 0.02)


def test_the_interval_grows_with_the_distance_and_never_leaves_out_the_prediction():
    model = PackInterval(floor=0.2, per_efold=0.3, per_lever=0.4, per_token=0.1, runs_power=0.5,
                         quantiles=(-0.08, -0.07, -0.05, -0.04, -0.03, -0.01, 0.005, 0.012, 0.02, 0.025, 0.03, 0.04,
                                    0.05))
    s = _summary(1e8, 4, 30)
    low, high = CalibratedInterval(model=model, summary=s).sides(np.array([1e8, 2e8, 8e8]), 4e9, 0.9)
    assert np.all(np.diff(low) > 0) and np.all(np.diff(high) > 0)
    assert low[0] == pytest.approx(1 - np.exp(-0.04 * 0.2)) and high[0] == pytest.approx(np.exp(0.025 * 0.2) - 1)
    biased = model.model_copy(update={"quantiles": tuple(abs(q) + 0.01 for q in model.quantiles)})
    low, _ = biased.sides(s, 2e8, 4e9, 0.9)
    assert low[0] == 0.0                                            # the prediction stays inside
    more_runs = _summary(1e8, 4, 120)
    assert model.scale(more_runs, 4e8, 4e9) < model.scale(s, 4e8, 4e9)
    # a law whose own backtest erred less gets a narrower interval; without one, the pack's alone
    own = model.model_copy(update={"backtest_power": 0.5, "backtest_reference": 0.04})
    assert own.scale(s, 4e8, 4e9, backtest=0.01) == pytest.approx(0.5 * model.scale(s, 4e8, 4e9))
    assert own.scale(s, 4e8, 4e9) == model.scale(s, 4e8, 4e9) == own.scale(s, 4e8, 4e9, backtest=0.04)


def test_weighted_quantile():
    values, weights = np.array([3.0, 1.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0, 1.0])
    assert list(weighted_quantile(values, weights, [0.25, 0.5, 1.0])) == [1.0, 2.0, 4.0]
    assert weighted_quantile(values, np.array([0.0, 0.0, 0.0, 1.0]), 0.1)[0] == 4.0


def test_the_shipped_calibration_says_where_it_came_from():
    model = shipped_interval()
    if model is None:
        pytest.skip("no calibration ships")
    assert len(model.ladders) >= 10 and "bench/laws/pack_intervals.py" in model.command and model.date


@pytest.mark.slow
def test_the_default_law_carries_the_shipped_calibration_and_other_laws_their_backtest(tmp_path):
    from distillscale.laws import load_laws
    from distillscale.laws.selection import fit_supervised

    model = shipped_interval()
    if model is None:
        pytest.skip("no calibration ships")
    N = np.repeat(1e7 * 2.0 ** np.arange(5), 3)
    D = N * np.tile([10.0, 20.0, 40.0], 5)
    loss = 1.8 + 400 / N ** 0.34 + 1500 / D ** 0.3
    default = fit_supervised(N, D, loss, bootstrap=0, backtest=False)
    carried = default.law.fit.interval
    assert carried is not None and carried.model == model and carried.summary.params_max == N.max()
    # no bootstrap: the interval is the calibration's sides around the prediction, beyond the runs only as
    # far as the calibration measured
    target = np.array([4 * N.max(), 64 * N.max()])
    p = default.law.prediction(target, 20 * target)
    own = default.law.fit.extrapolation_error   # its own backtest's half-width there scales it too
    low, high = carried.sides(target, 20 * target, p.level,
                              np.hypot(own.half_width(target / own.fitted_max), own.seed_half_width()))
    assert p.low == pytest.approx(p.value * (1 - low)) and p.high == pytest.approx(p.value * (1 + high))
    assert carried.beyond(target, 20 * target).tolist() == [False, True]
    # a law file keeps it; a law of one form keeps its own backtest's
    path = tmp_path / "law.json"
    default.save(path)
    assert load_laws(path).supervised.fit.interval == carried
    assert fit_supervised(N, D, loss, bootstrap=0, backtest=False, form="chinchilla").law.fit.interval is None


@pytest.mark.slow
def test_a_law_with_a_designs_family_term_keeps_its_backtests_interval(family_term):
    """A builtin design with a family term: its interval with its term was scored on its own corpora,
    the pack's calibration never was."""
    from distillscale.laws.crossladder import shipped_family
    from distillscale.laws.selection import fit_supervised

    if shipped_interval() is None:
        pytest.skip("no calibration ships")
    assert shipped_family("micro-demo") is not None   # the fixture's term
    N = np.repeat(1e7 * 2.0 ** np.arange(5), 3)
    D = N * np.tile([10.0, 20.0, 40.0], 5)
    loss = 1.8 + 400 / N ** 0.34 + 1500 / D ** 0.3
    law = fit_supervised(N, D, loss, bootstrap=0, backtest=False, family="micro-demo").law
    assert law.fit.interval is None and law.bias_correction.family is not None


@pytest.mark.slow
def test_the_interval_a_user_is_shown_is_the_one_the_pack_scores():
    """One interval: a default fit's `prediction`, with its bootstrap, is the calibration's sides around
    the value (the calibrated errors already hold the fit's noise and the runs' seed noise: neither is
    added again), and `predicted_with`, what the leave-one-family-out scoring calls, is that same
    function with the scoring's model; a target beyond the fitted tokens farther than any calibration
    row is said to be an extrapolation, as one beyond the fitted sizes is."""
    from distillscale.laws.pack_interval import predicted_with
    from distillscale.laws.selection import fit_supervised

    if shipped_interval() is None:
        pytest.skip("no calibration ships")
    N = np.repeat(1e7 * 2.0 ** np.arange(5), 3)
    D = N * np.tile([10.0, 20.0, 40.0], 5)
    loss = (1.8 + 400 / N ** 0.34 + 1500 / D ** 0.3) * np.exp(np.random.default_rng(0).normal(0, 0.003, N.size))
    law = fit_supervised(N, D, loss, bootstrap=20, backtest=False).law
    assert law.fit.bootstrap is not None and law.fit.interval is not None
    target = np.array([2.0, 4.0, 8.0]) * N.max()
    shown = law.prediction(target, 20 * target)
    low, high = law.fit.interval.sides(target, 20 * target, shown.level, law.backtest_half_width(target))
    assert shown.low == pytest.approx(shown.value * (1 - low)) and shown.high == pytest.approx(shown.value * (1 + high))
    scored = predicted_with(law, law.fit.interval.model, target, 20 * target)
    assert np.array_equal(scored.low, shown.low) and np.array_equal(scored.high, shown.high)
    wider = law.fit.interval.model.model_copy(update={"floor": 2 * law.fit.interval.model.floor + 0.01})
    assert np.all(predicted_with(law, wider, target, 20 * target).high > shown.high)  # the scoring's model, used
    inside = law.prediction(N.max(), D.max())
    far = law.prediction(N.max(), D.max() * 1e4)  # the fitted sizes, 10,000x their tokens
    assert not inside.beyond_backtest and far.beyond_backtest


def test_a_fits_misfit_beyond_the_calibrations_rows_is_taken_at_their_end_and_said():
    """The misfit term is not extrapolated: a fit's misfit beyond every calibration row's is taken at
    the rows' end, and the interval's description says so (a calibration that did not keep the rows'
    range says it cannot tell)."""
    table = synthetic(seed=5)
    misfit = np.random.default_rng(5).uniform(0.002, 0.02, len(table))
    loud = IntervalTable(table.ladder, table.summaries, table.N, table.D, table.y * (1 + misfit / 0.005), misfit)
    model = fit_pack_interval(loud, terms=("floor", "per_efold", "per_misfit"), group=family, across=family)
    assert model.misfit_range == (pytest.approx(misfit.min()), pytest.approx(misfit.max()))
    s, top = table.summaries[0], float(misfit.max())
    assert float(model.scale(s, 4e8, 4e9, 0.5)) == pytest.approx(float(model.scale(s, 4e8, 4e9, top)))
    assert float(model.scale(s, 4e8, 4e9, 0.01)) < float(model.scale(s, 4e8, 4e9, top))
    far = CalibratedInterval(model=model, summary=s, misfit=0.5).describe(0.9)
    assert f"the fit's misfit (50.00% RMS, outside the calibration's" in far and f"taken at {top:.2%}" in far
    assert "outside" not in CalibratedInterval(model=model, summary=s, misfit=0.01).describe(0.9)
    unknown = model.model_copy(update={"misfit_range": None})
    assert float(unknown.scale(s, 4e8, 4e9, 0.5)) > 5 * float(model.scale(s, 4e8, 4e9, 0.5))
    assert "did not keep its rows' range of misfits" in CalibratedInterval(model=unknown, summary=s,
                                                                           misfit=0.5).describe(0.9)
