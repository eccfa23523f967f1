"""The planner: FLOP accounting, the four scenarios against the published findings and a dense
brute-force search, existing teachers, student-size sweeps, teacher ranking and the capacity gap."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.laws import load_laws
from distillscale.laws.extrapolation import data_range, extrapolation_warnings
from distillscale.planning.flops import SCENARIOS, ForwardFlops, distillation_flops, get_scenario
from distillscale.laws.difference import SAME_LAW, compare
from distillscale.planning.results import verdict_difference
from distillscale.planning.solver import DistillationPlanner, tokens_reaching_loss
from distillscale.planning.teacher import (
    LinearCapacityGap,
    TeacherCandidate,
    rank_teachers,
    teacher_ladder,
)
from tests.conftest import point_laws

M, B = 1e6, 1e9
PAID = ("teacher-inference", "teacher-pretraining", "teacher-pretraining-inference")


@pytest.fixture(scope="module")
def planner():
    return DistillationPlanner(load_laws("busbridge2025"))


def test_forward_flops_corrected_spot_value_and_simple_form():
    flops = ForwardFlops.from_settings(load_laws("busbridge2025").compute)
    assert flops(546 * M) == pytest.approx(1.415e9, rel=1e-3)
    assert flops.sigma1 * 4096 == pytest.approx(155.06, abs=0.01)
    assert flops.sigma2 * 32168 == pytest.approx(70811, rel=1e-4)
    assert ForwardFlops("simple")(546 * M) == 2 * 546 * M
    assert flops(np.array([1e8, 1e9])).shape == (2,)


def test_exact_flops_of_a_model_config_feed_the_planner(planner):
    from distillscale.model import ModelConfig

    config = ModelConfig(n_layers=14, vocab_size=32168, max_seq_len=4096)
    exact = float(config.forward_flops_per_token())
    plan = planner.plan(config.non_embedding_params, 1e21, "best-case", exact)
    assert 3 * exact * plan.student_tokens == pytest.approx(1e21, rel=1e-9)


def test_flop_breakdown_follows_the_scenario_indicators():
    parts = distillation_flops(SCENARIOS["teacher-pretraining-inference"], 10.0, 100.0, 50.0, 7.0)
    assert (parts.student, parts.teacher_inference, parts.teacher_pretraining) == (3000, 5000, 1050)
    assert distillation_flops(SCENARIOS["best-case"], 10.0, 100.0, 50.0, 7.0).total == 3000
    with pytest.raises(UserError, match="unknown scenario 'cheap'"):
        get_scenario("cheap")


@pytest.mark.parametrize("budget", [1e19, 1e21, 1e23])
def test_every_plan_spends_the_budget_and_respects_the_bounds(planner, budget):
    for name in SCENARIOS:
        plan = planner.plan(546 * M, budget, name)
        assert plan.flops.total == pytest.approx(budget, rel=1e-3)
        for value in (plan.student_tokens, plan.teacher_params, plan.teacher_tokens):
            assert 1e6 * (1 - 1e-9) <= value <= 1e17 * (1 + 1e-9)
        assert plan.student_loss == pytest.approx(
            planner.distillation.predict(546 * M, plan.student_tokens, plan.teacher_loss))


@pytest.mark.parametrize("budget", [1e19, 1e21, 1e23])
def test_published_findings_hold(planner, budget):
    plans = {name: planner.plan(546 * M, budget, name) for name in SCENARIOS}
    # A teacher trained for one student never beats training that student directly (by the laws'
    # values; the verdict says so where the difference exceeds the preset's intervals).
    single = plans["teacher-pretraining-inference"]
    assert single.student_loss > single.supervised.loss
    assert single.verdict in ("pretrain", "too close to call")
    # With free teacher pre-training the optimal teacher is overtrained to the token cap.
    assert plans["teacher-inference"].teacher_tokens == pytest.approx(1e17, rel=1e-6)
    # The free teacher is a lower bound on every scenario.
    for name in PAID:
        assert plans["best-case"].student_loss <= plans[name].student_loss + 1e-9


def test_losses_fall_as_the_budget_grows(planner):
    budgets = np.geomspace(1e19, 1e24, 6)
    for name in SCENARIOS:
        losses = [planner.plan(546 * M, c, name).student_loss for c in budgets]
        assert np.all(np.diff(losses) < 0), name


def _brute_force(planner, student_params, budget, scenario, points=700):
    """Dense grid over a different parametrisation than the solver's: (D_S, N_T) with D_T
    taking the remainder when the teacher is trained, (N_T, D_T) otherwise."""
    F, sup, dist = planner.flops, planner.supervised_law, planner.distillation
    F_S, axis = F(student_params), np.geomspace(1e6, 1e17, points)
    if scenario.teacher_pretraining:
        D_S, N_T = np.meshgrid(axis, axis, indexing="ij")
        D_T = (budget - (3 * F_S + scenario.teacher_inference * F(N_T)) * D_S) / (3 * F(N_T))
    else:
        N_T, D_T = np.meshgrid(axis, axis, indexing="ij")
        D_S = budget / (3 * F_S + F(N_T))
    ok = (D_S >= 1e6) & (D_S <= 1e17) & (D_T >= 1e6) & (D_T <= 1e17)
    losses = dist.predict(student_params, np.where(ok, D_S, 1e6),
                          sup.predict(N_T, np.where(ok, D_T, 1e6)))
    return float(np.where(ok, losses, np.inf).min())


@pytest.mark.parametrize("student_params, budget", [(100 * M, 1e20), (546 * M, 1e22), (7 * B, 1e21)])
def test_optimum_matches_a_dense_brute_force_search(planner, student_params, budget):
    for name in PAID:
        plan = planner.plan(student_params, budget, name)
        assert plan.convergence.success
        brute = _brute_force(planner, student_params, budget, SCENARIOS[name])
        assert plan.student_loss <= brute + 1e-3, name


def test_best_case_is_the_bottom_of_the_u_curve_and_reports_the_teacher_family(planner):
    plan = planner.plan(546 * M, 1e21, "best-case")
    law = planner.supervised_law
    teacher_losses = np.linspace(law.predict(1e17, 1e17), 4.0, 20001)
    dense = planner.distillation.predict(546 * M, plan.student_tokens, teacher_losses).min()
    assert plan.student_loss <= dense + 1e-6
    family = plan.teacher_family
    assert len(family.params) > 10
    assert np.allclose(law.predict(family.params, family.tokens), plan.teacher_loss, atol=1e-9)
    cheapest = planner.flops(family.compute_optimal_params) * family.compute_optimal_tokens
    assert cheapest <= (planner.flops(family.params) * family.tokens).min() * (1 + 1e-6)
    assert (plan.teacher_params, plan.teacher_tokens) == (
        family.compute_optimal_params, family.compute_optimal_tokens)


def test_tokens_reaching_loss_inverts_the_supervised_law(planner):
    law = planner.supervised_law
    params = np.array([1e8, 1e9, 1e10])
    tokens = tokens_reaching_loss(law, params, 2.3)
    assert np.isnan(tokens[0])  # 100M parameters cannot reach 2.3 nats/token at any data size
    assert law.predict(params[1:], tokens[1:]) == pytest.approx([2.3, 2.3])


def test_existing_teacher_spends_everything_on_distillation_tokens(planner):
    plan = planner.plan_with_teacher(546 * M, 1e21, 7.75 * B, teacher_tokens=155 * B)
    assert plan.scenario.name == "teacher-inference"
    assert plan.teacher_loss == pytest.approx(2.004, abs=1e-3)
    assert plan.flops.total == pytest.approx(1e21)
    by_loss = planner.plan_with_teacher(546 * M, 1e21, 7.75 * B, teacher_loss=plan.teacher_loss)
    assert by_loss.student_loss == pytest.approx(plan.student_loss)
    # Fewer tokens (an unspent budget) could only be worse.
    assert planner.distillation.predict(546 * M, 0.9 * plan.student_tokens,
                                        plan.teacher_loss) > plan.student_loss
    with pytest.raises(UserError, match="exactly one"):
        planner.plan_with_teacher(546 * M, 1e21, 7.75 * B)


@pytest.mark.last_bits
def test_supervised_baseline_and_verdict(planner):
    baseline = planner.supervised(546 * M, 1e21)
    assert baseline.tokens == pytest.approx(1e21 / (3 * planner.flops(546 * M)))
    plan = planner.plan(546 * M, 1e21, "teacher-pretraining-inference")
    assert plan.distilled_minus_alone == pytest.approx(plan.student_loss - baseline.loss)
    assert plan.verdict == verdict_difference(plan.student_loss, plan.student_interval, baseline.loss,
                                          plan.supervised.interval).verdict
    assert plan.distilled_minus_alone > 0 and plan.verdict in ("pretrain", "too close to call")


def test_sweep_finds_a_student_no_worse_than_any_grid_size(planner):
    sweep = planner.sweep(1e21, "teacher-pretraining", size_range=(14.3 * M, 126 * B), count=9)
    assert len(sweep.plans) == 9
    assert sweep.best.student_loss <= min(p.student_loss for p in sweep.plans)
    optimal = sweep.supervised_best
    for size in (optimal.student_params / 2, optimal.student_params * 2):
        assert planner.supervised(size, 1e21).loss >= optimal.loss


@pytest.mark.parametrize("budget", [1e19, 1e21, 1e23])
def test_sweep_stays_inside_the_published_data_range(planner, budget):
    known = data_range(planner.laws, students=True)
    assert known.tokens_per_param == (1.0, 5000.0)
    for name in SCENARIOS:
        sweep = planner.sweep(budget, name, known.params, known.tokens_per_param, count=7)
        for plan in (*sweep.plans, sweep.best):
            assert known.params[0] * (1 - 1e-9) <= plan.student_params <= known.params[1] * (1 + 1e-9)
            assert (known.tokens_per_param[0] * (1 - 1e-6) <= plan.student_tokens / plan.student_params
                    <= known.tokens_per_param[1] * (1 + 1e-6)), name


def test_sweep_flags_a_best_student_on_the_edge_of_the_search(planner):
    # At 1e21 FLOPs a free teacher favours the largest student the budget can feed 1 token per
    # parameter; widening the floor moves the optimum, so the edge is the search's, not the law's.
    sweep = planner.sweep(1e21, "best-case", (143 * M, 12.6 * B), (1.0, 5000.0), count=7)
    assert sweep.region.largest_limit == "min_tokens_per_param"
    assert sweep.edges == ["min_tokens_per_param"]
    assert sweep.best.student_tokens / sweep.best.student_params == pytest.approx(1.0, rel=1e-2)
    wider = planner.sweep(1e21, "best-case", (143 * M, 12.6 * B), (0.1, 5000.0), count=7)
    assert wider.best.student_params > sweep.best.student_params
    record = sweep.to_dict()
    assert record["best_on_edge"] and record["edges"] == ["min_tokens_per_param"]
    assert record["searched"]["limits"] == ["max_tokens_per_param", "min_tokens_per_param"]
    # Training a teacher for the student costs enough that the best student is inside the range.
    interior = planner.sweep(1e21, "teacher-pretraining", (143 * M, 12.6 * B), (1.0, 5000.0), count=7)
    assert interior.edges == [] and not interior.to_dict()["best_on_edge"]


def test_sweep_students_get_the_fewest_tokens_per_parameter_even_with_a_paid_teacher(planner):
    floor = planner.plan(8 * B, 1e21, "teacher-inference", min_student_tokens=8 * B)
    assert floor.student_tokens >= 8 * B * (1 - 1e-9)
    assert floor.flops.total == pytest.approx(1e21, rel=1e-3)
    free = planner.plan(8 * B, 1e21, "teacher-inference")
    assert free.student_tokens < 8 * B  # unconstrained, the teacher's logits take more
    with pytest.raises(UserError, match="fewer than the 1T asked for"):
        planner.plan(8 * B, 1e21, "best-case", min_student_tokens=1e12)


@pytest.mark.parametrize("call, fragment", [
    (lambda p: p.plan(546 * M, 1e10, "best-case"), "budget 1e+10 FLOPs is too small"),
    (lambda p: p.plan(1e6, 1e30, "best-case"), "beyond the planner's 1e+17-token bound"),
    (lambda p: p.plan(546 * M, 4.25e15, "teacher-pretraining-inference"),
     "too small for scenario teacher-pretraining-inference"),
    (lambda p: p.sweep(1.0, "best-case"), "cannot train any model"),
    (lambda p: p.sweep(1e21, "best-case", (143 * M, 12.6 * B), (1e6, 1e7)),
     "at 1M to 10M tokens per parameter: change compute"),
])
def test_impossible_budgets_are_user_errors(planner, call, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        call(planner)


def test_extrapolation_warnings_only_far_outside_the_data():
    laws = load_laws("busbridge2025")
    assert extrapolation_warnings(laws, {"N": 546 * M}, {"D": 11 * B}) == []
    messages = extrapolation_warnings(laws, {"N": 10e12}, {"D": 1e6})
    assert len(messages) == 2
    assert "far above the largest (12.6B)" in messages[0]
    teacher_at_cap = extrapolation_warnings(laws, {}, {"D_T": 1e17})[0]
    assert "(1T) in the data behind law 'busbridge2025', 100,000x beyond it" in teacher_at_cap
    assert "20,000x beyond" in extrapolation_warnings(laws, {}, {}, {"M": 1e8}, students=True)[0]
    from distillscale.laws.record import FitRecord

    laws.supervised.fit = FitRecord.model_validate(
        {"data_range": {"params": [1e3, 1e4], "tokens": [1e5, 1e6]}})
    assert "far above" in extrapolation_warnings(laws, {"N": 546 * M}, {})[0]
    # A range recorded without D/N spans the widest ratios its sizes and tokens allow.
    assert data_range(laws).tokens_per_param == (10.0, 1000.0)


def test_a_fitted_law_records_the_data_range_the_planner_reads():
    from distillscale.laws import LawSet, SupervisedLaw
    from distillscale.laws.fitting import SupervisedLawFitter

    truth = SupervisedLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37, gamma=1.0)
    N = np.repeat([1e7, 3e7, 1e8], 3)
    D = N * np.tile([5.0, 20.0, 80.0], 3)
    one_start = {"log_E": (0.5,), "log_A": (5.0,), "log_B": (5.0,), "alpha": (0.5,), "beta": (0.5,)}
    fitter = SupervisedLawFitter(bootstrap=0, grid=one_start, screening=None)
    law = fitter.fit(N, D, truth.predict(N, D)).law_
    known = data_range(LawSet("mine", law, None))
    assert known.params == (1e7, 1e8) and known.tokens == (5e7, 8e9)
    assert known.tokens_per_param == pytest.approx((5.0, 80.0))


def test_rank_teachers_marks_the_best_and_the_capacity_gap(planner):
    ladder = teacher_ladder(planner, 546 * M)
    ranking = rank_teachers(planner, 546 * M, 20 * 546 * M, ladder)
    assert ranking.student_losses[ranking.best] == ranking.student_losses.min()
    assert ranking.optimal_student_loss <= ranking.student_losses.min() + 1e-9
    assert ranking.capacity_gap_teacher_loss == pytest.approx(1.315 * 2.515, abs=2e-3)
    weak = TeacherCandidate("weak", 6.0)
    weak_ranking = rank_teachers(planner, 546 * M, 20 * 546 * M, [weak])
    assert weak_ranking.student_losses[0] == pytest.approx(6.0, rel=1e-3)


def test_teachers_inside_the_best_ones_interval_are_too_close_to_call_not_ranked_by_noise(planner, cli):
    """busbridge2025's ±2% intervals: teachers whose student is within noise of the best's (the
    interval of their difference, two predictions of one law, reaches 0) and whose verdict against
    training alone is the best's are not ranked below it: too close to call, or, where the difference
    reaches 0 beyond the backtest's reach, cannot tell at this distance (the rule of every verdict);
    the others are ranked. Without intervals nothing is grouped."""
    ranking = rank_teachers(planner, 546 * M, 20 * 546 * M, teacher_ladder(planner, 546 * M))
    names = [c.name for c in ranking.candidates]
    close, unknown = [names[i] for i in ranking.too_close], [names[i] for i in ranking.cannot_tell]
    best, against = ranking.best, ranking.differences()
    assert names[best] == "64x N_S" and close + unknown and "1x N_S" not in close + unknown
    for i in range(len(names)):
        if i == best:
            continue
        verdict = compare(ranking._one(i), ranking._one(best), SAME_LAW).verdict
        same = against[i].verdict == against[best].verdict
        assert (i in ranking.too_close) == (verdict == "too close to call" and same)
        assert (i in ranking.cannot_tell) == (verdict == "cannot tell at this distance" and same)
    record = ranking.to_dict()
    assert record["too_close_to_call"] == close and record["verdict"] == against[best].verdict
    assert record["cannot_tell_from_best"] == unknown
    assert [c["too_close_to_best"] for c in record["candidates"]] == [n in close for n in names]
    assert [c["cannot_tell_from_best"] for c in record["candidates"]] == [n in unknown for n in names]
    point = DistillationPlanner(point_laws())
    assert rank_teachers(point, 546 * M, 20 * 546 * M, teacher_ladder(point, 546 * M)).too_close == []
    code, out, _ = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B")
    text = " ".join(out.split())
    assert code == 0 and f"*{names[best]}" in out
    if close:
        assert f"too close to call with it: {', '.join(close)}" in text and all(f"≈{name}" in out for name in close)
    if unknown:
        assert f"cannot tell at this distance against it: {', '.join(unknown)}" in text
        assert all(f"?{name}" in out for name in unknown)


def test_far_outside_the_laws_data_candidates_are_not_called_too_close_inside_the_intervals(planner, cli):
    """A 1M student on 20M tokens lies far below busbridge2025's data: every student loss's interval
    means nothing there, so however disjoint the intervals, the candidates cannot be told from the
    best at this distance; none is "too close to call (inside the intervals)"."""
    ranking = rank_teachers(planner, 1 * M, 20 * M, teacher_ladder(planner, 1 * M))
    others = [i for i in range(len(ranking.candidates)) if i != ranking.best]
    best = ranking._one(ranking.best)
    disjoint = [i for i in others if ranking._one(i).low > best.high]
    assert disjoint and ranking.too_close == [] and ranking.cannot_tell == others
    code, out, _ = cli("teacher", "--student-params", "1M", "--student-tokens", "20M")
    text = " ".join(out.split())
    assert code == 0 and "too close to call with it" not in text and "inside the intervals" not in text
    assert "cannot tell at this distance against it: " + ", ".join(ranking.candidates[i].name for i in others) in text
    assert "? those that cannot be told from it at this distance" in text


def test_at_a_budget_each_teacher_pays_its_logits_and_buys_fewer_student_tokens_the_larger_it_is(planner, cli):
    ladder = teacher_ladder(planner, 546 * M)
    ranking = rank_teachers(planner, 546 * M, None, ladder, compute=1e21)
    student = float(planner.flops(546 * M))
    expected = [1e21 / (3 * student + float(planner.flops(c.params))) for c in ladder]
    np.testing.assert_allclose(ranking.tokens_each, expected, rtol=1e-12)
    assert all(np.diff(ranking.tokens_each) < 0)          # a larger teacher, fewer student tokens
    law = planner.distillation
    np.testing.assert_allclose(ranking.student_losses,
                               [law.predict(546 * M, d, c.loss) for d, c in zip(expected, ladder)], rtol=1e-12)
    assert ranking.supervised_loss == pytest.approx(float(planner.supervised_law.predict(546 * M, 1e21 / (3 * student))))
    assert ranking.student_tokens == ranking.tokens_each[ranking.best]
    # at fixed tokens the 64x teacher is best; paying its logits, a smaller one is
    fixed = rank_teachers(planner, 546 * M, 20 * 546 * M, ladder)
    assert ladder[fixed.best].params > ladder[ranking.best].params
    code, out, err = cli("teacher", "--student-params", "546M", "--compute", "1e21", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["compute"] == 1e21 and [c["student_tokens"] for c in record["candidates"]] == pytest.approx(expected)
    for args in ((), ("--student-tokens", "11B", "--compute", "1e21")):
        code, _, err = cli("teacher", "--student-params", "546M", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--compute" in err, err
    # a teacher given by its loss alone cannot be priced at a budget
    with pytest.raises(UserError, match="give teacher_params for lossy"):
        rank_teachers(planner, 546 * M, None, [TeacherCandidate("lossy", 2.2)], compute=1e21)


def test_capacity_gap_fit_recovers_a_planted_ratio():
    students = np.repeat([1e8, 3e8, 1e9, 3e9], 4)
    multiples = np.tile([1.0, 2.5, 5.0, 10.0], 4)
    teachers = students * multiples
    # Student loss is lowest for the 2.5x teacher (log-distance from it), up to size noise.
    noise = np.array([1.0, 1.1, 0.9, 1.0] * 4)
    losses = 2.0 + np.abs(np.log(multiples / 2.5)) + 0.01 * np.log(noise * students)
    fit = LinearCapacityGap(confidence=0.9).fit(students, teachers, losses)
    assert fit.ratio_ == pytest.approx(2.5)
    # every student's best teacher is exactly 2.5x: the ratios do not scatter, so no interval (not a
    # zero-width one)
    assert fit.ratio_interval_ is None
    assert fit.predict(1e9) == pytest.approx(2.5e9)
    assert fit.exponent_ == pytest.approx(1.0)
    with pytest.raises(UserError, match="at least two student sizes"):
        LinearCapacityGap().fit([1e8, 1e8], [2e8, 4e8], [2.0, 1.9])


def test_capacity_gap_predicted_by_the_law_is_roughly_linear(planner):
    fit = LinearCapacityGap.from_law(planner, [143 * M, 546 * M, 1.82 * B, 7.75 * B])
    assert fit.ratio_interval_[0] < fit.ratio_ < fit.ratio_interval_[1]
    assert fit.ratio_ > 1  # the optimal teacher is larger than its student
    assert abs(fit.exponent_ - 1) < 3 * fit.exponent_stderr_ + 0.1
