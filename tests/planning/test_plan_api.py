"""The planner from Python: `ds.plan` and `ds.plan_supervised` give what `distillscale plan` prints,
name their bad arguments as Python parameters, and say how to reproduce a plan on the command line."""

import json
import shlex

import pytest

import distillscale as ds
from distillscale.errors import ParameterError


def _cli_json(cli, command: str) -> dict:
    code, out, err = cli(*shlex.split(command)[1:])
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("kwargs", [
    dict(student_params=546e6, scenario="teacher-pretraining"),
    dict(student_params=546e6, teacher=ds.ExistingTeacher(params=7.75e9, tokens=155e9)),
    dict(scenario="best-case", min_params=1e9, max_params=2e9, max_tokens_per_param=300),
])
def test_plan_is_what_the_cli_prints_and_its_command_reproduces_it(cli, kwargs):
    plan = ds.plan("busbridge2025", compute=1e21, **kwargs)
    command = plan.as_cli_command(json_output=True)
    assert command.startswith("distillscale plan --law busbridge2025 --compute 1e+21")
    assert _cli_json(cli, command) == json.loads(plan.to_json())
    assert plan.kind == ("sweep" if "min_params" in kwargs else "plans")


def test_plan_record_fields_and_text():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6)
    assert [p.scenario.name for p in plan.plans] == ["best-case", "teacher-inference",
                                                     "teacher-pretraining",
                                                     "teacher-pretraining-inference"]
    assert plan.verdict is None and plan.headline is None  # four scenarios: no single answer
    one = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case")
    assert one.headline == one.plans[0] and one.verdict == one.plans[0].verdict
    best_case = plan.plans[0]
    assert best_case.flops.total == pytest.approx(1e21)
    assert best_case.verdict in ("distill", "pretrain", "too close to call")
    text = plan.as_text()
    assert "student loss L_S" in text and f"{best_case.student_loss:.4f}" in text
    # A teacher given by its loss: the loss is used as is.
    given = ds.plan("busbridge2025", compute=1e21, student_params=546e6,
                    teacher=ds.ExistingTeacher(params=7e9, loss=2.1))
    assert given.plans[0].teacher_loss == 2.1 and given.plans[0].teacher_tokens is None


def test_plan_supervised_answers_the_chinchilla_question():
    plan = ds.plan_supervised("epoch2024", compute=1e21)
    assert isinstance(plan, ds.SupervisedOnlyPlan) and plan.kind == "supervised" and not hasattr(plan, "plans")
    result = plan.supervised
    assert 1e9 < result.student_params < 1e10 and 10 < result.tokens / result.student_params < 40
    assert result.budget == 1e21
    # the same question through plan(), since the law has no distillation law, and a fixed size
    assert ds.plan("epoch2024", compute=1e21).supervised.student_params == pytest.approx(
        result.student_params)
    fixed = ds.plan_supervised("epoch2024", compute=1e21, params=1e9)
    assert fixed.supervised.student_params == 1e9 and fixed.supervised.loss > result.loss
    assert "distillation planning needs one" in plan.as_text()
    # a law object straight from a fit (here: the preset's), before it is saved
    unsaved = ds.plan_supervised(ds.load_laws("epoch2024").supervised, compute=1e21)
    assert unsaved.supervised == result and "--law law.json" in unsaved.as_cli_command()
    with pytest.raises(ParameterError, match="law must be a preset name"):
        ds.plan(42, compute=1e21)


@pytest.mark.parametrize("kwargs, python, flag", [
    (dict(compute=-1.0), "compute must be a positive finite number", "--compute must be"),
    (dict(compute=1e10, student_params=546e6), "raise compute or choose a smaller student",
     "raise --compute or choose a smaller student"),
    (dict(compute=1e21, scenario="cheap"), "unknown scenario 'cheap' for scenario",
     "unknown scenario 'cheap' for --scenario"),
    (dict(compute=1e21, flops="exact"), "unknown FLOP method 'exact' for flops",
     "unknown FLOP method 'exact' for --flops"),
    (dict(compute=1e21, student_params=5e8, teacher=ds.ExistingTeacher(params=7e9)),
     "give exactly one of teacher.tokens or teacher.loss with teacher.params",
     "give exactly one of --teacher-tokens or --teacher-loss with --teacher-params"),
    (dict(compute=1e21, student_params=5e8, teacher=ds.ExistingTeacher(params=7e9, loss=0.5)),
     "teacher.loss 0.5 is not above the irreducible loss", "--teacher-loss 0.5 is not above"),
    (dict(compute=1e21, min_params=1e10, max_params=1e9), "fix min_params/max_params",
     "fix --min-params/--max-params"),
    (dict(compute=1e21, student_params=5e8, min_params=1e9),
     "options (min_params) do not combine with student_params",
     "options (--min-params) do not combine with --student-params"),
    (dict(compute=1e21, student_params=5e8, scenario="best-case",
          teacher=ds.ExistingTeacher(params=7e9, loss=2.0)),
     "leave out scenario or set scenario to teacher-inference",
     "leave out --scenario or set --scenario to teacher-inference"),
])
def test_errors_name_the_python_parameter_and_the_cli_maps_them_to_flags(kwargs, python, flag):
    with pytest.raises(ParameterError) as caught:
        ds.plan("busbridge2025", **kwargs)
    assert python in str(caught.value)
    assert flag in caught.value.for_cli()
