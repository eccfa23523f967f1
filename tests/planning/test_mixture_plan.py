"""`plan --teacher-mixture`: a mixture of teachers (issue 37) pays every teacher's logits on every
student token, states that the law was fitted for one teacher and applies it outside its fit with the
mixture's measured cross-entropy as L_T."""

from __future__ import annotations

import json

import pytest

BASE = ("plan", "--student-params", "100M", "--compute", "1e21")


def test_a_mixture_pays_every_teachers_logits_and_is_marked_outside_the_fit(cli):
    code, out, _ = cli(*BASE, "--teacher-mixture", "1B,300M", "--teacher-loss", "2.3", "--json")
    assert code == 0
    plan = json.loads(out)
    mixture = plan["teacher_mixture"]
    assert mixture["outside_fit"] and "fitted for one teacher" in mixture["note"]
    first, second = mixture["teachers"]
    assert (first["teacher_params"], second["teacher_params"]) == (1e9, 3e8)
    assert first["teacher_inference_flops"] == pytest.approx(first["flops_per_token"] * plan["student_tokens"])
    # the teacher's logits are the sum of every teacher's, and the budget is spent whole
    assert plan["flops"]["teacher_inference"] == pytest.approx(
        first["teacher_inference_flops"] + second["teacher_inference_flops"], rel=1e-9)
    assert plan["teacher_loss"] == 2.3 and plan["teacher_params"] is None


def test_the_mixture_plan_equals_one_teacher_of_the_summed_cost_and_the_same_loss(cli):
    """The law sees L_T only; the teachers' sizes set the cost: D_S = C / (3 F(N_S) + sum F(N_T,i))."""
    _, out, _ = cli(*BASE, "--teacher-mixture", "1B,1B", "--teacher-loss", "2.3", "--json")
    mixed = json.loads(out)
    _, out, _ = cli(*BASE, "--teacher-params", "1B", "--teacher-loss", "2.3", "--json")
    single = json.loads(out)
    assert mixed["flops"]["teacher_inference"] == pytest.approx(
        2 * single["flops"]["teacher_inference"] * mixed["student_tokens"] / single["student_tokens"], rel=1e-9)
    assert mixed["student_tokens"] < single["student_tokens"]


def test_the_table_states_the_one_teacher_fit_and_each_teachers_flops(cli):
    code, out, _ = cli(*BASE, "--teacher-mixture", "1B,300M", "--teacher-loss", "2.3")
    assert code == 0
    text = " ".join(out.split())
    assert "teacher mixture: OUTSIDE THE LAW'S FIT" in text and "1B+300M" in text   # one line in one screen
    code, out, _ = cli(*BASE, "--teacher-mixture", "1B,300M", "--teacher-loss", "2.3", "--explain")
    text = " ".join(out.split())
    assert "OUTSIDE THE LAW'S FIT" in text and "fitted for one teacher" in text
    assert "1B+300M" in text and "1B teacher" in text and "300M teacher" in text


@pytest.mark.parametrize("args,message", [
    (("--teacher-mixture", "1B,300M"), "needs --teacher-loss"),
    (("--teacher-mixture", "1B,300M", "--teacher-loss", "2.3", "--teacher-params", "1B"), "not both"),
    (("--teacher-mixture", "1B", "--teacher-loss", "2.3"), "two teachers or more"),
    (("--teacher-mixture", "1B,big", "--teacher-loss", "2.3"), "--teacher-mixture must be teacher sizes"),
    (("--teacher-mixture", "1B,300M", "--teacher-loss", "2.3", "--on-policy"), "prices one teacher"),
])
def test_bad_mixtures_are_refused_in_one_line(cli, args, message):
    code, _, err = cli(*BASE, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_the_plan_says_how_to_reproduce_it(cli):
    from distillscale.planning.options import PlanSettings
    from distillscale.planning.plan import plan_from_settings

    plan = plan_from_settings(PlanSettings(compute=1e21, student_params=1e8, teacher_mixture="1B,300M",
                                           teacher_loss=2.3))
    command = plan.as_cli_command()
    assert "--teacher-mixture 1e+09,3e+08" in command
    _, out, _ = cli(*command.split()[1:], "--json")
    assert json.loads(out)["teacher_mixture"] == plan.plans[0].to_dict()["teacher_mixture"]
