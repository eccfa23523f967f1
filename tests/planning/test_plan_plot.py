"""`plan --plot` draws the plan printed: a given teacher's student (not the law's optimal teacher), a
family's students each on its share, the scenarios printed."""

import numpy as np
import pytest

import distillscale as ds

pytestmark = pytest.mark.usefixtures("one_thread")


def _curves(figure) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata(), dtype=float) for line in figure.axes[0].get_lines()
            if not line.get_label().startswith("_")}


def test_a_given_teacher_is_drawn_as_printed_not_the_laws_optimal_teacher():
    pytest.importorskip("matplotlib")
    from distillscale.planning.plots import plot_plan, pyplot

    teacher = ds.ExistingTeacher(params=3e9, tokens=100e9)
    plan = ds.plan("busbridge2025", compute=3e20, student_params=546e6, teacher=teacher)
    printed = plan.headline
    figure = plot_plan(plan)
    curves = _curves(figure)
    label = "distilled from the 3B teacher (L_T = %.4f)" % printed.teacher_loss
    assert set(curves) == {"supervised (no teacher)", label, "your budget"}
    budgets = np.geomspace(plan.compute / 100, plan.compute * 100, 17)
    assert curves[label][8] == pytest.approx(printed.student_loss, rel=1e-9)   # the middle budget is the plan's
    other = plan.planner.plan_with_teacher(546e6, budgets[0], 3e9, 100e9)
    assert curves[label][0] == pytest.approx(other.student_loss, rel=1e-9)
    optimal = plan.planner.plan(546e6, plan.compute, "teacher-inference")
    assert abs(optimal.student_loss - printed.student_loss) > 1e-3   # the law's optimal teacher is another plan
    pyplot().close(figure)


def test_the_scenarios_drawn_are_the_scenarios_printed():
    pytest.importorskip("matplotlib")
    from distillscale.planning.plots import plot_plan, pyplot

    plan = ds.plan("busbridge2025", compute=3e20, student_params=546e6, scenario="best-case")
    figure = plot_plan(plan)
    curves = _curves(figure)
    assert set(curves) == {"supervised (no teacher)", "best-case", "your budget"}
    assert curves["best-case"][8] == pytest.approx(plan.headline.student_loss, rel=1e-9)
    pyplot().close(figure)


def test_a_family_is_drawn_as_its_students_each_on_its_share():
    pytest.importorskip("matplotlib")
    from distillscale.planning.plots import plot_plan, pyplot

    plan = ds.plan("busbridge2025", compute=3e20, students=[100e6, 300e6, 1e9],
                   teacher=ds.ExistingTeacher(params=3e9, tokens=100e9))
    figure = plot_plan(plan)
    axes = figure.axes[0]
    distilled, alone = (container for container in axes.containers)
    x, y = distilled.lines[0].get_data()
    assert list(x) == [p.student_params for p in plan.plans]
    assert list(y) == [p.student_loss for p in plan.plans]
    assert list(alone.lines[0].get_ydata()) == [p.supervised.loss for p in plan.plans]
    notes = [t.get_text() for t in axes.texts]
    assert notes == [f"{p.budget / plan.compute:.0%} of C: {p.verdict}" for p in plan.plans]
    assert "a family of 3 students" in axes.get_title()
    pyplot().close(figure)


def test_a_plan_on_a_pool_is_drawn_as_its_data_limited_comparison_printed():
    """Not the fresh-data plan: each option's curve passes through the printed option at the plan's budget,
    marked with its interval; the chain by generation and the ensemble's student by k beside it."""
    pytest.importorskip("matplotlib")
    from distillscale.planning.plots import plot_plan, pyplot

    plan = ds.plan("busbridge2025", compute=1.5e19, student_params=1.5e9, unique_tokens=50e6,
                   teacher=ds.ExistingTeacher(params=1.5e9, tokens=8e8))
    figure = plot_plan(plan)
    curves = {line.get_label(): np.asarray(line.get_ydata(), dtype=float) for line in figure.axes[0].get_lines()
              if not line.get_label().startswith("_")}
    for option in plan.data_limited.options:
        if option.label in curves:
            assert curves[option.label][4] == pytest.approx(option.final.value, rel=1e-9)   # the middle budget
    assert curves["train alone"][4] == pytest.approx(plan.headline.supervised.loss, rel=1e-9)   # pooled, not fresh
    assert "distil from the teacher" in curves
    labels = {container.get_label() for container in figure.axes[1].containers}
    assert labels == {"chain, by generation", "ensemble's student, by k"}
    pyplot().close(figure)
