"""The plan reads like a run sheet (issue 66): one row per distinct run, the scenarios that share it
in one cell; the text table, `plan --json`'s "run_sheet" and the planner page's API carry the same
rows; a teacher the scenario does not train is "free, not trained", not an extrapolation warning."""

import json

import pytest

import distillscale as ds
from distillscale.planning.run_sheet import ROLES, run_sheet


def _sheet_lines(text: str) -> list[str]:
    """The run sheet's run lines as the text prints them (each run's first line, indented under its
    section), between its title and its caption."""
    sheet = text[text.index("Run sheet"):text.index("student: distilled;")]
    return [line for line in sheet.splitlines() if line.startswith(("   student", "   teacher", "   no teacher"))]


def test_one_row_per_distinct_run_with_the_scenarios_that_share_it():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6)
    rows = run_sheet(plan)
    # best-case's student is distilled and its model trained instead is not: two runs, though one recipe
    roles = [(row.role, row.uses) for row in rows]
    assert roles[0] == ("student", ("best-case",))
    assert roles[1] == ("alone", ("best-case (pretrain instead)", "teacher-inference (pretrain instead)",
                                  "teacher-pretraining (pretrain instead)",
                                  "teacher-pretraining-inference (pretrain instead)"))
    assert [role for role, _ in roles].count("teacher") == 2 and len(rows) == 7
    assert sum(len(row.uses) for row in rows) == len(plan.recipes)   # every run of the plan, once
    for row in rows:
        assert all(plan.recipes[name].to_dict() | {"name": row.uses[0]} == row.recipe.to_dict() for name in row.uses)


def test_the_text_the_json_and_the_page_carry_the_same_rows(cli):
    from distillscale.serve.api import Planner, PlanQuery

    args = ("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M", "--gpu", "h100")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    json_rows = json.loads(out)["run_sheet"]
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, gpu="h100")
    assert json_rows == [row.to_dict() for row in run_sheet(plan)]
    page = Planner().update(PlanQuery(law="busbridge2025", compute="1e21", student="546M", scenario="teacher-pretraining"))
    page_plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining")
    assert page["plan"]["run_sheet"] == [row.to_dict() for row in run_sheet(page_plan)]
    # the text: a row per run, in the same order, each cell the record's
    lines = _sheet_lines(plan.as_text(width=100))
    assert len(lines) == len(json_rows)
    for line, record, row in zip(lines, json_rows, run_sheet(plan)):
        cells = row.cells()   # role, N, D, peak lr and its interval, batch and sequences, steps, warmup, --lr, GPU-h
        printed = line.replace("no teacher", "no-teacher").split()
        assert printed == [cells[0].replace(" ", "-"), cells[1], cells[2], cells[3].split("\n")[0],
                           cells[4].split("\n")[0], *cells[5:]], line
        assert cells[1] == ds.units.format_quantity(record["params"]) and cells[7] == f"{record['train_lr']:.4g}"
        assert record["gpu_hours"] == pytest.approx(row.gpu_hours)


def test_a_teacher_the_scenario_does_not_train_is_free_not_an_extrapolation():
    """Issue 66: teacher-inference's free teacher runs to the solver's 100P-token cap; the first line
    a user read was a warning that those tokens were 100,000x beyond the law's data."""
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6)
    assert not any("teacher-inference teacher" in warning for warning in plan.warnings)
    assert "free, not trained" in plan.as_text() and "100P (cap)" not in plan.as_text()
    # a teacher the scenario trains, or one the user gave, is still checked against the law's data
    given = ds.plan("busbridge2025", compute=1e21, student_params=546e6, teacher_params=7.75e9, teacher_tokens=100e15)
    assert any("teacher's tokens" in warning and "beyond it" in warning for warning in given.warnings)


def test_gpu_hours_of_a_distilled_run_include_the_teacher_logits_it_computes():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-inference", gpu="h100")
    runs = {(run.group, run.part): run.gpu_hours for run in plan.gpu_hours.runs}
    student = next(row for row in run_sheet(plan) if row.role == "student")
    assert student.gpu_hours == pytest.approx(runs["teacher-inference", "student training"] + runs["teacher-inference", "teacher logits"])
