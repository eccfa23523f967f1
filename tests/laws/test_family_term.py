"""A builtin design's family term (issue 64, `laws.crossladder.FamilyTerm`): learned on the design's
members leaving one out at a time (the member it scores never enters its term), 0 inside the
fitted runs, held beyond the distance its members measured it at while its spread keeps growing,
carried by a law only when asked for and only with the pack's correction; the shipped term says
where it came from and was fitted after the shipped pack model."""

from __future__ import annotations

import numpy as np
import pytest

from distillscale.laws import SupervisedLaw
from distillscale.laws.crossladder import BiasCorrection, FamilyTerm, FitSummary, shipped_family, shipped_model
from distillscale.laws.crossladder_fit import ErrorTable, fit_family_term, leave_one_member_out
from distillscale.laws.selection import fit_supervised

LAW = SupervisedLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
# The demo's held-out check: 3 sizes fitted (6.9K-187K), the 443K size predicted at 1-4 tokens/parameter.
FITTED = FitSummary(params_max=187272.0, params_min=6912.0, tokens_max=1.8e6, sizes=3, runs=20,
                    log_ratio_median=2.0, alpha=0.3, beta=0.3)
HELD = 443424.0


def members(bias: float = -0.05, n: int = 6, seed: int = 0) -> ErrorTable:
    """n members of one design (the same fitted sizes, the same held-out size), each with its own
    departure from the family's bias per e-fold and seed noise: y = ln(observed / pack-corrected)."""
    rng = np.random.default_rng(seed)
    dN = float(np.log(HELD / FITTED.params_max))
    names, N, D, y = [], [], [], []
    for k in range(n):
        own = bias + rng.normal(0, 0.01)
        for M in (1, 2, 4, 1, 2, 4):
            names.append(f"corpus{k}")
            N.append(HELD)
            D.append(M * HELD)
            y.append(own * dN + rng.normal(0, 0.01))
    return ErrorTable(np.array(names), [FITTED] * len(y), np.array(N), np.array(D), np.array(y))


def test_leave_one_member_out_never_sees_the_member_it_scores():
    """Poison one member's errors: its term (coefficients, penalty, spread, reach) and its corrections
    must not move; every other member's term must."""
    table = members()
    poisoned_y = table.y.copy()
    victim = table.ladder == "corpus3"
    poisoned_y[victim] = 5.0
    poisoned = ErrorTable(table.ladder, table.summaries, table.N, table.D, poisoned_y)
    clean, clean_predicted = leave_one_member_out(table, ("dN",))
    dirty, dirty_predicted = leave_one_member_out(poisoned, ("dN",))
    assert dirty["corpus3"] == clean["corpus3"]
    np.testing.assert_array_equal(dirty_predicted[victim], clean_predicted[victim])
    assert "corpus3" not in clean["corpus3"].model.ladders and len(clean["corpus3"].model.ladders) == 5
    assert dirty["corpus0"] != clean["corpus0"]   # the poison reaches the others: the test can fail


def test_the_term_recovers_the_family_bias_and_balances_the_signs_left_out():
    table = members(bias=-0.05, seed=1)
    terms, predicted = leave_one_member_out(table, ("dN",))
    for term in terms.values():
        assert term.model.coefficients[0] == pytest.approx(-0.05, abs=0.015)
        assert term.reach == pytest.approx(np.log(HELD / FITTED.params_max))
        assert 0 < term.model.slope_sd < 0.05
    assert np.abs(table.y - predicted).mean() < 0.5 * np.abs(table.y).mean()
    assert 0.3 < np.mean(table.y - predicted > 0) < 0.7


def test_no_term_where_the_family_has_no_bias():
    term = fit_family_term(members(bias=0.0, seed=2), ("dN",), "none", "design")
    assert abs(term.model.coefficients[0]) < 0.012


TERM = FamilyTerm(name="micro-demo", design="builtin micro demo design",
                  model=shipped_model().model_copy(update={"features": ("dN",), "coefficients": (-0.06,),
                                                           "spread_on": "dN", "slope_sd": 0.02}),
                  reach=float(np.log(2.0)))


def test_the_term_vanishes_inside_the_runs_is_held_beyond_its_reach_and_its_spread_keeps_growing():
    pack = shipped_model()
    plain = BiasCorrection(model=pack, summary=FITTED)
    both = BiasCorrection(model=pack, summary=FITTED, family=TERM)
    inside_N, inside_D = [FITTED.params_min, FITTED.params_max], [1e5, FITTED.tokens_max]
    np.testing.assert_array_equal(both.factor(inside_N, inside_D), [1.0, 1.0])
    np.testing.assert_array_equal(both.half_width(inside_N, inside_D, 0.9), [0.0, 0.0])
    top = FITTED.params_max
    # at its reach (2x): the pack's log factor plus -0.06 ln 2; at 8x: held at -0.06 ln 2
    for distance in (2.0, 8.0):
        extra = both.log_factor(top * distance, 1e6) - plain.log_factor(top * distance, 1e6)
        assert extra == pytest.approx(-0.06 * np.log(2.0), rel=1e-12)
    # half way to its reach: proportional to the distance
    assert both.log_factor(top * 2 ** 0.5, 1e6) - plain.log_factor(top * 2 ** 0.5, 1e6) == \
        pytest.approx(-0.03 * np.log(2.0), rel=1e-12)
    # its spread adds to the pack's in quadrature and keeps growing beyond its reach
    near, far = both.half_width(top * 2, 1e6, 0.9), both.half_width(top * 8, 1e6, 0.9)
    assert near == pytest.approx(np.hypot(plain.half_width(top * 2, 1e6, 0.9), 1.6449 * 0.02 * np.log(2)), rel=1e-4)
    assert far > 2.5 * near
    assert "builtin micro demo design" in both.describe() and "--no-bias-correction" in both.describe()
    assert "design" not in plain.describe()


def test_a_family_term_uses_distances_in_size_only():
    with pytest.raises(ValueError, match="distances in size"):
        FamilyTerm(name="x", design="y", model=TERM.model.model_copy(update={"features": ("dD",)}), reach=1.0)


def test_no_term_ships_for_the_micro_demo_whose_raw_law_holds():
    """The micro demo's runs take 500 or more optimizer steps, and its raw supervised law predicts the
    held-out size within 3% on each demo corpus, both ways (docs/demo_corpora.md): no design term ships."""
    from distillscale.report.design import FAMILY_DESIGNS, design_family
    from distillscale.report.demo import builtin_sweep

    assert shipped_family("micro-demo") is None and FAMILY_DESIGNS == {}
    assert builtin_sweep().sections["teachers"]["min_steps"] == 500


def test_an_installed_term_says_where_it_came_from(family_term):
    term = shipped_family("micro-demo")
    assert term == family_term and shipped_family("no such design") is None
    assert term.after == pytest.approx(shipped_model().coefficients, rel=1e-12)


def _runs():
    rng = np.random.default_rng(0)
    N = np.repeat([1e6, 2e6, 4e6, 8e6], 3)
    D = N * np.tile([10.0, 20.0, 40.0], 4)
    return N, D, LAW.predict(N, D) * (1 + 0.002 * rng.standard_normal(len(N)))


def test_a_law_carries_the_term_only_when_asked_with_the_pack_model_it_was_learned_after(family_term):
    """The pack's correction alone is opt-in (`bias_correction=True`); a design's term comes with the
    pack model whose residuals it was learned on, whether the pack's correction was asked for or not."""
    N, D, loss = _runs()
    options = {"backtest": False, "bootstrap": 0, "form": "chinchilla"}
    asked = fit_supervised(N, D, loss, family="micro-demo", **options).law
    plain = fit_supervised(N, D, loss, bias_correction=True, **options).law
    raw = fit_supervised(N, D, loss, **options).law
    assert asked.bias_correction.family == shipped_family("micro-demo")
    assert asked.bias_correction.model == shipped_model()
    assert fit_supervised(N, D, loss, family="micro-demo", bias_correction=True, **options).law.bias_correction == \
        asked.bias_correction
    assert plain.bias_correction is not None and plain.bias_correction.family is None
    assert raw.bias_correction is None
    # inside the runs nothing moves; beyond, the term lowers the prediction
    assert asked.predict(4e6, 1.6e8) == plain.predict(4e6, 1.6e8)
    assert asked.predict(2e7, 4e8) < plain.predict(2e7, 4e8)
    assert asked.without_bias_correction().predict(2e7, 4e8) == raw.predict(2e7, 4e8)
