"""One plan declaration (issue 54): `PlanSettings` declares, types and checks every plan option;
`ds.plan(**kwargs)`, the CLI and the planner page all build it, and each option is checked once."""

import json

import pytest

import distillscale as ds
from distillscale.errors import ParameterError, UserError
from distillscale.planning.options import PlanSettings
from distillscale.planning.plan import plan_from_settings

TEACHER = ds.ExistingTeacher(params=7.75e9, tokens=155e9)


@pytest.mark.parametrize("kwargs, flat", [
    (dict(student_params=546e6, scenario="best-case", unique_tokens=5e9, max_penalty=0.02),
     dict(student_params=546e6, scenario="best-case", unique_tokens=5e9, max_penalty=0.02)),
    (dict(student_params=546e6, teacher=TEACHER),
     dict(student_params=546e6, teacher_params=7.75e9, teacher_tokens=155e9)),
    (dict(student_params=546e6, teacher=TEACHER, on_policy=ds.OnPolicy(fraction=0.5, efficiency=2.0),
          logit_cache=True),
     dict(student_params=546e6, teacher_params=7.75e9, teacher_tokens=155e9, on_policy_fraction="0.5",
          on_policy_efficiency=2.0, logit_cache=True)),
    (dict(scenario="all", min_params=1e8, max_params=2e9, flops="simple"),
     dict(min_params="100M", max_params="2B", flops="simple")),
])
def test_a_plan_from_keywords_is_the_plan_from_its_settings(kwargs, flat):
    from_kwargs = ds.plan("busbridge2025", compute=1e21, **kwargs)
    settings = PlanSettings(compute="1e21", **flat)
    from_settings = plan_from_settings(settings)
    assert from_kwargs.settings == settings
    assert from_kwargs.to_json() == from_settings.to_json()
    assert from_kwargs.as_cli_command() == from_settings.as_cli_command()


@pytest.mark.parametrize("option, value, python, flag", [
    ("student_init", "grown", "unknown student_init 'grown': use one of scratch, pruned",
     "unknown --student-init 'grown': use one of scratch, pruned"),
    ("max_penalty", 2.0, "max_penalty must be a fraction between 0 and 1",
     "--max-penalty must be a fraction between 0 and 1"),
])
def test_each_option_is_checked_once_with_one_error(cli, option, value, python, flag):
    with pytest.raises(ParameterError) as caught:
        ds.plan("busbridge2025", compute=1e21, student_params=546e6, unique_tokens=5e9, **{option: value})
    assert python in str(caught.value) and flag in caught.value.for_cli()
    code, _, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--unique-tokens", "5B",
                       "--" + option.replace("_", "-"), str(value))
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1, err


def test_plan_names_what_it_does_not_take():
    with pytest.raises(UserError, match="plan\\(\\): unknown option 'studentparams'"):
        ds.plan("busbridge2025", compute=1e21, studentparams=5e8)
    with pytest.raises(UserError, match="unknown option 'as_json'"):  # how the CLI prints, not an option
        ds.plan("busbridge2025", compute=1e21, as_json=True)
    with pytest.raises(ParameterError, match="give teacher or teacher_params, not both"):
        ds.plan("busbridge2025", compute=1e21, student_params=5e8, teacher=TEACHER, teacher_params=1e9)
    with pytest.raises(ParameterError, match="give compute"):
        ds.plan("busbridge2025")
    with pytest.raises(ParameterError, match="^compute must be a positive finite number"):
        ds.plan("busbridge2025", compute=-1.0)


def test_the_plan_carries_its_settings_and_the_command_reproduces_them(cli):
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="all")
    assert plan.settings.scenario is None and "--scenario" not in plan.as_cli_command()
    code, out, err = cli(*plan.as_cli_command(json_output=True).split()[1:])
    assert code == 0, err
    assert json.loads(out) == json.loads(plan.to_json())


def test_options_are_combined_in_the_settings_before_any_law_is_read():
    """The planner page, the CLI and Python get the same message, from the settings alone."""
    with pytest.raises(ParameterError, match="teacher_compute is a remote teacher's own budget: add teacher_remote"):
        PlanSettings.from_python("no-such-law.json", compute=1e21, student_params=5e8, teacher_params=7e9,
                                 teacher_loss=2.1, teacher_compute=1e20)
    with pytest.raises(ParameterError, match="needs student_params"):
        PlanSettings.from_python("no-such-law.json", compute=1e21, teacher=TEACHER)


def test_a_teacher_is_not_ignored_by_a_law_without_distillation():
    """epoch2024 has no distillation law: a teacher given to it was silently left out of the plan."""
    with pytest.raises(UserError, match="has no distillation law"):
        ds.plan("epoch2024", compute=1e21, student_params=1e9, teacher=TEACHER)
    with pytest.raises(ParameterError, match="needs student_params"):
        ds.plan("epoch2024", compute=1e21, teacher=TEACHER)


def test_max_penalty_without_a_corpus_limit_is_refused(cli):
    """It bounds the repetition of `unique_tokens`: without them it was silently ignored."""
    with pytest.raises(ParameterError, match="max_penalty needs unique_tokens"):
        ds.plan("busbridge2025", compute=1e21, student_params=546e6, max_penalty=0.05)
    code, _, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--max-penalty", "0.05")
    assert code == 2 and "--max-penalty needs --unique-tokens" in err
