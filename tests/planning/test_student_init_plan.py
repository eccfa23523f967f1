"""`plan --student-init pruned`: a pruned start counted as an effective-token multiplier in the
distillation law (`laws.student_init.PRUNED_MICRO`), outside the law's fit."""

import json

import pytest

import distillscale as ds
from tests.conftest import point_laws
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.lawset import load_laws
from distillscale.laws.student_init import PRUNED_MICRO
from distillscale.planning.results import verdict_difference

TEACHER = dict(student_params=546e6, compute=1e21, teacher=ds.ExistingTeacher(7.75e9, loss=2.1))


def test_pruned_plan_is_the_scratch_plan_with_the_multiplier_on_D_S():
    """Same teacher, same budget: the same D_S, and the law's loss at D_eff = m D_S (scratch: at D_S)."""
    law = load_laws("busbridge2025").distillation
    scratch, pruned = (ds.plan(point_laws(), **TEACHER, student_init=init).headline for init in ("scratch", "pruned"))
    assert pruned.student_tokens == scratch.student_tokens
    D_S, L_T, m = scratch.student_tokens, scratch.teacher_loss, PRUNED_MICRO.value
    assert scratch.student_loss == pytest.approx(float(law.predict(546e6, D_S, L_T)), rel=1e-12)
    assert pruned.student_loss == pytest.approx(float(law.predict(546e6, m * D_S, L_T)), rel=1e-12)
    assert pruned.student_loss < scratch.student_loss
    # the range spans the multiplier's interval (this law has no interval of its own): its ends are
    # the law at the interval's ends, and the scratch loss (m = 1) lies above it
    low_m, high_m = PRUNED_MICRO.interval
    interval = pruned.student_interval
    assert interval.high == pytest.approx(float(law.predict(546e6, low_m * D_S, L_T)), rel=1e-12)
    assert interval.low == pytest.approx(float(law.predict(546e6, high_m * D_S, L_T)), rel=1e-12)
    assert interval.low < pruned.student_loss < interval.high < scratch.student_loss
    assert scratch.student_interval is None and scratch.start is None


def test_pruned_plan_json_and_text_say_outside_the_fit(cli):
    args = ("plan", "--student-params", "546M", "--compute", "1e21", "--scenario", "best-case")
    code, out, err = cli(*args, "--student-init", "pruned", "--json")
    assert code == 0, err
    record = json.loads(out)
    start = record["student_init"]
    assert start["student_init"] == "pruned" and start["token_multiplier"] == PRUNED_MICRO.value
    assert start["token_multiplier_interval"] == list(PRUNED_MICRO.interval)
    assert "outside the law's fit" in start["note"]
    assert start["effective_student_tokens"] == pytest.approx(PRUNED_MICRO.value * record["student_tokens"])
    low, high = record["student_loss_interval"]["interval"]
    assert low < record["student_loss"] < high
    code, out, err = cli(*args, "--student-init", "pruned")
    assert code == 0, err
    text = " ".join(out.split())
    assert "student init pruned: OUTSIDE THE LAW'S FIT" in text and "D_eff" in text   # one line in one screen
    code, out, err = cli(*args, "--student-init", "pruned", "--explain")
    text = " ".join(out.split())
    assert "OUTSIDE THE LAW'S FIT" in text and "D_eff" in text and "not counted in the FLOPs: the pruning pass" in text
    code, out, _ = cli(*args, "--json")  # the default is unchanged: no start in the record
    assert code == 0 and "student_init" not in json.loads(out)


@pytest.mark.last_bits
def test_pruned_verdict_reads_delta_with_the_range_as_shown():
    """A pruned start's range is no law's own interval: Delta's interval combines it with the supervised
    loss as shown (`INDEPENDENT`), a loss without an interval counting as its point; the verdict reads it."""
    student = ds.plan("busbridge2025", **TEACHER, student_init="pruned").headline.student_interval
    middle = (student.low + student.high) / 2
    delta = verdict_difference(middle, student, middle, None, outside_fit=True)
    assert (delta.low, delta.high) == pytest.approx((student.low - middle, student.high - middle))
    assert verdict_difference(middle, student, middle, None, outside_fit=True).verdict in ("too close to call", CANNOT_TELL)
    assert verdict_difference(middle, student, student.high + 1e-3, None, outside_fit=True).verdict == "distill"
    assert verdict_difference(middle, student, student.low - 1e-3, None, outside_fit=True).verdict == "pretrain"
    # the same plan without the rule gives a verdict from the points alone
    assert verdict_difference(middle, None, middle + 1e-6, None).verdict == "distill"


def test_a_pruned_plans_verdict_is_the_one_its_delta_interval_says():
    """At every budget the verdict printed is Delta's: below 0 distill, above pretrain, straddling 0 no
    verdict (too close to call, or cannot tell beyond the backtest)."""
    seen = set()
    for compute in (1e19, 1e20, 1e21, 1e22, 1e23):
        plan = ds.plan("busbridge2025", student_params=546e6, compute=compute, scenario="teacher-inference",
                       student_init="pruned")
        delta = plan.headline.difference
        assert plan.verdict == delta.verdict == plan.to_dict()["verdict"]
        straddles = delta.low <= 0 <= delta.high
        assert (plan.verdict in ("too close to call", CANNOT_TELL)) == straddles
        seen.add(straddles)
    assert seen == {True, False}


@pytest.mark.parametrize("args", [("--student-init", "pretrained"), ("--student-init", "pruned", "--on-policy",
                                                                      "--teacher-params", "7.75B", "--teacher-loss", "2.1")])
def test_bad_student_init_refused_in_one_line(cli, args):
    code, out, err = cli("plan", "--student-params", "546M", "--compute", "1e21", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--student-init" in err, err


def test_pruned_setting_round_trips_through_the_command_line():
    plan = ds.plan("busbridge2025", **TEACHER, student_init="pruned")
    assert "--student-init pruned" in plan.as_cli_command()
    assert "--student-init" not in ds.plan("busbridge2025", **TEACHER).as_cli_command()


def test_extrapolation_warnings_judge_the_effective_tokens():
    """The law is evaluated at D_eff = m D_S: how far beyond its data is judged there."""
    pruned = ds.plan("busbridge2025", student_params=546e6, compute=1e25, scenario="best-case", student_init="pruned")
    assert any("effective tokens (D_eff)" in w for w in pruned.warnings), pruned.warnings
