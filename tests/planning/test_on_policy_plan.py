"""The planner's answer to "does on-policy distillation pay?": the FLOPs of generation with a KV
cache and of teacher scoring, remote teachers off the budget, the mode comparison and its
break-even efficiency k*, and the `plan` command around it."""

import json
from dataclasses import replace

import numpy as np
import pytest

import distillscale as ds
from tests.conftest import point_laws
from distillscale.errors import ParameterError
from distillscale.planning.flops import (
    SCENARIOS,
    ForwardFlops,
    distillation_flops,
    kv_cache_generation_flops,
    on_policy_flops,
)
from distillscale.planning.modes import OnPolicy

TEACHER = ds.ExistingTeacher(params=7.75e9, tokens=155e9)


def modes_plan(**options):
    return ds.plan(point_laws(), compute=1e21, student_params=546e6, teacher=TEACHER, **options)


def by_name(plan):
    return {m.name: m for m in plan.modes}


def test_kv_cache_generation_flops_by_hand():
    # simple: 2N per forward, S - 1 = 7 forwards for a 3-token prompt and 5 sampled tokens
    assert kv_cache_generation_flops(ForwardFlops("simple"), 1e6, 3, 5) == 7 * 2e6
    corrected = ForwardFlops("corrected", n_ctx=4096, n_vocab=32168, aspect_ratio=128.0)
    # one prompt token, one sampled: one forward attending 1 position. At N = 1e9 (N^(1/3) = 1e3):
    # 2N (1 + 155.06 / 4096 * 2 / 1e3 + 70811 / 1e6) = 2e9 * 1.0708867
    assert kv_cache_generation_flops(corrected, 1e9, 1, 1) == pytest.approx(2.1417735e9, rel=1e-6)
    # position by position: weights and output head, plus attention to each cached position at
    # twice F's causal-average share per position
    N, P, G = 3e8, 17, 40
    weights = 2 * N * (1 + corrected.sigma2 * 32168 * N ** (-2 / 3))
    per_position = 2 * (2 * N * corrected.sigma1 * N ** (-1 / 3))
    by_position = sum(weights + per_position * t for t in range(1, P + G))
    assert kv_cache_generation_flops(corrected, N, P, G) == pytest.approx(by_position, rel=1e-12)
    # recomputing the prefix for every sampled token costs far more than the cache
    recomputed = sum(t * (weights + per_position * (t + 1) / 2) for t in range(P, P + G))
    assert recomputed > 10 * by_position


def test_on_policy_flops_by_hand_and_a_remote_teacher_off_the_budget():
    simple = ForwardFlops("simple")  # F_S = 2e6, F_T = 2e7
    # 1000 tokens, half on-policy: 500 corpus tokens and 62.5 sequences of 2 + 8 tokens
    parts = on_policy_flops(simple, 1e6, 1e7, 1000, 0.5, 2, 8)
    assert parts.student == pytest.approx(3 * 2e6 * 500 + 3 * 10 * 2e6 * 62.5)       # 6.75e9
    assert parts.teacher_inference == pytest.approx(2e7 * 500)                       # 1e10
    assert parts.student_generation == pytest.approx(9 * 2e6 * 62.5)                 # 1.125e9
    assert parts.teacher_scoring == pytest.approx(10 * 2e7 * 62.5)                   # 1.25e10
    assert parts.total == pytest.approx(3.0375e10) and parts.off_budget == 0
    remote = on_policy_flops(simple, 1e6, 1e7, 1000, 0.5, 2, 8, teacher_remote=True)
    assert remote.total == pytest.approx(6.75e9 + 1.125e9)
    assert remote.off_budget == pytest.approx(1e10 + 1.25e10)
    cached = on_policy_flops(simple, 1e6, 1e7, 1000, 0.5, 2, 8, teacher_logits_paid=False)
    assert cached.teacher_inference == 0 and cached.teacher_scoring == parts.teacher_scoring
    record = remote.to_dict()
    assert record["total"] == remote.total and record["off_budget"] == remote.off_budget
    # no on-policy share, logits paid: Busbridge Eq. 9 in the teacher-inference scenario
    corrected = ForwardFlops()
    eq9 = distillation_flops(SCENARIOS["teacher-inference"], corrected(546e6), 1e9, corrected(7.75e9))
    assert on_policy_flops(corrected, 546e6, 7.75e9, 1e9, 0.0, 256, 256).total == pytest.approx(eq9.total)


def test_on_policy_at_efficiency_one_never_beats_off_policy():
    for options in ({}, {"teacher_remote": True}, {"logit_cache": True}):
        plan = modes_plan(on_policy=OnPolicy(fraction=(0.1, 0.5, 1.0)), **options)
        modes = by_name(plan)
        for m in plan.modes:
            assert m.flops.total == pytest.approx(1e21, rel=1e-9), (options, m.name)
            if m.mode == "on-policy":
                assert m.student_loss > modes["off-policy"].student_loss, (options, m.name)
                assert m.break_even_efficiency > 1
                assert m.outside_fit and m.interval.has_interval  # flagged, never zero-width
        assert plan.best.mode != "on-policy"


def test_a_remote_teacher_is_off_the_budget_or_within_its_own():
    shared, remote = modes_plan(on_policy=OnPolicy(0.5)), modes_plan(on_policy=OnPolicy(0.5), teacher_remote=True)
    for name in ("off-policy", "on-policy λ=0.5"):
        here, there = by_name(shared)[name], by_name(remote)[name]
        assert there.flops.total == pytest.approx(1e21) and there.flops.off_budget > 0
        assert there.student_tokens > 2 * here.student_tokens  # the teacher's FLOPs no longer compete
    capped = modes_plan(on_policy=OnPolicy(0.5), teacher_remote=True, teacher_compute=1e20)
    for m in capped.modes[1:]:
        assert m.limited_by == "teacher_compute" and m.flops.off_budget == pytest.approx(1e20)
        assert m.flops.total < 1e21


@pytest.mark.last_bits
def test_a_large_efficiency_makes_on_policy_win_and_k_star_is_where_it_ties():
    plan = modes_plan(on_policy=OnPolicy(fraction=(0.5, 1.0), efficiency=30), teacher_remote=True)
    assert plan.best.mode == "on-policy" and plan.best_distilled is plan.best
    # the verdict is Delta = the best way of distilling - training alone, read off its interval
    assert plan.verdict == plan.difference.verdict and plan.difference.value < 0
    for options in ({"teacher_remote": True}, {}):  # rival: off-policy, then supervised
        plan = modes_plan(on_policy=OnPolicy(fraction=(0.25, 1.0)), **options)
        rival = min((m for m in plan.modes if m.mode != "on-policy"), key=lambda m: m.student_loss)
        for m in plan.modes[2:]:
            assert m.break_even_against == rival.name
            tie = by_name(modes_plan(on_policy=OnPolicy(m.fraction, efficiency=m.break_even_efficiency),
                                     **options))[m.name]
            assert tie.student_loss == pytest.approx(rival.student_loss, abs=1e-9), (options, m.name)
            assert by_name(modes_plan(on_policy=OnPolicy(m.fraction, efficiency=1.1 * m.break_even_efficiency),
                                      **options))[m.name].student_loss < rival.student_loss
    # against off-policy with the same teacher, k* is the ratio of the FLOPs per token, whatever lambda
    remote = modes_plan(teacher_remote=True)
    off = by_name(remote)["off-policy"]
    ks = [m.break_even_efficiency for m in remote.modes[2:]]
    for m in remote.modes[2:]:
        per_token = m.flops.total / m.student_tokens
        on_policy_cost = (per_token - (1 - m.fraction) * off.flops.total / off.student_tokens) / m.fraction
        assert m.break_even_efficiency == pytest.approx(on_policy_cost / (off.flops.total / off.student_tokens))
    assert np.ptp(ks) < 1e-9 * ks[0]


def test_plan_api_arguments_and_bad_values():
    plan = modes_plan(on_policy=OnPolicy(0.5, prompt_tokens=64, continuation_tokens=128, efficiency=2))
    assert plan.kind == "modes" and isinstance(plan, ds.ModeComparison)
    command = plan.as_cli_command()
    for flag in ("--on-policy-fraction 0.5", "--prompt-tokens 64", "--continuation-tokens 128",
                 "--on-policy-efficiency 2"):
        assert flag in command
    record = json.loads(plan.to_json())
    assert record["best"] == plan.best.name and len(record["modes"]) == 3
    for bad, param in (({"on_policy": OnPolicy(-0.2)}, "on_policy.fraction"),
                       ({"on_policy": OnPolicy(1.5)}, "on_policy.fraction"),
                       ({"on_policy": OnPolicy(efficiency=0)}, "on_policy.efficiency"),
                       ({"on_policy": OnPolicy(continuation_tokens=0)}, "on_policy.continuation_tokens"),
                       ({"teacher_compute": 1e20}, "teacher_compute")):
        with pytest.raises(ParameterError) as error:
            modes_plan(**bad)
        assert error.value.param == param
    with pytest.raises(ParameterError, match="existing teacher"):
        ds.plan("busbridge2025", compute=1e21, student_params=546e6, on_policy=OnPolicy())


def test_plan_command_says_whether_on_policy_pays(cli):
    code, out, err = cli("plan", "--student-params", "546M", "--teacher-params", "7.75B", "--teacher-tokens",
                         "155B", "--compute", "1e21", "--teacher-remote", "--on-policy-fraction", "0.5,1",
                         "--explain")   # the FLOPs of each phase: --explain
    assert code == 0, err
    # Delta = off-policy - supervised inside the preset's intervals: too close to call; off-policy ahead of
    # on-policy by less than their intervals: said, not a verdict
    for text in ("too close to call: Δ = off-policy - supervised", "too close to call between them",
                 "on-policy pays only if one on-policy "
                 "token is worth at least k* = 2.32", "FLOPs per phase", "generation", "teacher scores",
                 "remote teacher", "the law's fit is for off-policy runs", "nats/token"):
        assert text in out, text
    code, out, _ = cli("plan", "--student-params", "546M", "--teacher-params", "7.75B", "--teacher-tokens",
                       "155B", "--compute", "1e21", "--on-policy", "--json")
    assert code == 0
    record = json.loads(out)
    assert record["best"] == "supervised" and record["verdict"] in ("pretrain", "too close to call")
    # the verdict's Delta is the best way of distilling against training alone, with the sign of every verdict
    off = next(m for m in record["modes"] if m["name"] == record["distillation_mode"])
    alone = next(m for m in record["modes"] if m["mode"] == "supervised")
    assert record["distilled_minus_alone"] == pytest.approx(off["student_loss"] - alone["student_loss"])
    assert record["loss_alone"] == pytest.approx(alone["student_loss"])
    assert record["break_even_efficiency"] > 1
    assert {m["name"] for m in record["modes"]} >= {"supervised", "off-policy", "on-policy λ=1"}


def test_the_cli_command_of_a_mode_comparison_reproduces_it(cli):
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, teacher=ds.ExistingTeacher(7.75e9, loss=2.0),
                   on_policy=OnPolicy(0.5, prompt_tokens=64, efficiency=3), teacher_remote=True,
                   teacher_compute=5e20, logit_cache=True)
    code, out, err = cli(*plan.as_cli_command(json_output=True).split()[1:])
    assert code == 0, err
    assert json.loads(out) == json.loads(plan.to_json())


@pytest.mark.parametrize("args, flag", [
    (("--on-policy-fraction", "-0.5"), "--on-policy-fraction"),
    (("--on-policy-fraction", "1.5"), "--on-policy-fraction"),
    (("--on-policy-fraction", "half"), "--on-policy-fraction"),
    (("--on-policy-efficiency", "0"), "--on-policy-efficiency"),
    (("--on-policy-efficiency", "-3"), "--on-policy-efficiency"),
    (("--teacher-compute", "1e20"), "--teacher-remote"),
    (("--continuation-tokens", "0"), "--continuation-tokens"),
])
def test_plan_command_bad_on_policy_input_is_one_line(cli, args, flag):
    code, out, err = cli("plan", "--student-params", "546M", "--teacher-params", "7.75B", "--teacher-tokens",
                         "155B", "--compute", "1e21", *args)
    assert code == 2 and err.startswith("distillscale: error: ") and flag in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_distil_at_all_is_answered_by_any_way_of_distilling_whatever_the_efficiency_assumed(cli):
    """Off-policy's Delta lies below 0 here: assuming on-policy better (its interval wide, outside the
    law's fit) never weakens "distill"; the plan says which way decides and what the predicted-best says."""
    small = ds.ExistingTeacher(params=1e9, tokens=155e9)
    for efficiency in (1, 9, 9.9, 30):
        plan = ds.plan("busbridge2025", compute=1e19, student_params=100e6, teacher=small,
                       on_policy=OnPolicy(efficiency=efficiency))
        off = by_name(plan)["off-policy"]
        assert plan.against_alone(off).verdict == "distill"
        assert plan.verdict == "distill" and plan.deciding_mode is off, efficiency
        assert plan.difference.high < 0
    assert plan.best_distilled.name == "on-policy λ=1" and plan.against_alone(plan.best_distilled).verdict != "distill"
    code, out, err = cli("plan", "--student-params", "100M", "--teacher-params", "1B", "--teacher-tokens", "155B",
                         "--compute", "1e19", "--on-policy", "--on-policy-efficiency", "9.9", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["verdict"] == "distill" and record["distillation_mode"] == "off-policy"
    assert record["best_distillation_mode"] == "on-policy λ=1" and record["distilled_minus_alone_interval"][1] < 0
    code, out, err = cli("plan", "--student-params", "100M", "--teacher-params", "1B", "--teacher-tokens", "155B",
                         "--compute", "1e19", "--on-policy", "--on-policy-efficiency", "9.9")
    text = " ".join(out.split())
    assert text.startswith("distill, off-policy: Δ = off-policy - supervised") and "decides, 1 of 4 ways" in text
    assert "the predicted-best on-policy λ=1: too close to call" in text


def test_the_on_policy_interval_is_labelled_as_widened_and_keeps_where_the_law_means_nothing():
    """The on-policy interval is the law's, widened: labelled so (not "own"), and a law's `outside` (its
    interval means nothing there) is kept, so a verdict on it cannot tell."""
    from distillscale.laws.uncertainty import Prediction
    from distillscale.planning.modes import outside_fit
    from distillscale.planning.results import CANNOT_TELL

    law = Prediction(2.5, 2.4, 2.6, 0.9, 0.01, 0.05, 3.0, outside="the teacher far outside the law's data")
    widened = outside_fit(law, 2.5)
    assert widened.interval_source == "on-policy widened" and widened.outside == law.outside
    assert widened.high - widened.low > law.high - law.low
    plan = modes_plan(on_policy=OnPolicy(fraction=(1.0,), efficiency=30), teacher_remote=True)
    on = by_name(plan)["on-policy λ=1"]
    assert plan.loss_predictions()["on-policy λ=1"][1].interval_source == "on-policy widened"
    pointless = replace(plan, modes=[replace(m, interval=replace(m.interval, low=None, high=None, outside="x"))
                                     if m is on else m for m in plan.modes])
    assert pointless.against_alone(by_name(pointless)["on-policy λ=1"]).verdict == CANNOT_TELL
