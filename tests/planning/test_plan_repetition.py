"""`plan(..., unique_tokens=...)`: every loss the plan shows, the student's as well as the model's
trained without a teacher, and so every verdict, is the loss after repeating the corpus; each
model's penalty is computed once and read wherever it is shown (issue 57, round-4 rows 22 and 38)."""

import json
import re

import pytest

import distillscale as ds
from distillscale.units import format_quantity
from tests.conftest import point_laws

TEACHER = ds.ExistingTeacher(params=7.75e9, tokens=155e9)


@pytest.mark.last_bits
def test_a_plans_student_loss_and_verdict_are_after_repetition(cli):
    # the teacher read its own 155B tokens once (a teacher repeating the 3B pool passes part of its penalty on)
    plan = ds.plan(point_laws(), compute=1e21, student_params=546e6, teacher=TEACHER, unique_tokens=3e9,
                   teacher_unique_tokens=155e9)
    p, student, alone = plan.headline, plan.repetition["teacher-inference"], \
        plan.repetition["teacher-inference (pretrain instead)"]
    assert student.penalty > 0 and alone.penalty > 0
    assert p.student_loss == student.loss_repeated and p.supervised.loss == alone.loss_repeated
    assert student.loss_fresh == p.fresh.student_loss and alone.loss_fresh == p.fresh.supervised.loss
    # fresh data says pretrain; the pretrained model repeats the corpus 78 times, the student 16
    assert (p.fresh.verdict, p.verdict, plan.verdict) == ("pretrain", "distill", "distill")
    assert p.distilled_minus_alone == pytest.approx(student.loss_repeated - alone.loss_repeated, rel=1e-12)
    record = json.loads(plan.to_json())
    assert record["student_loss"] == student.loss_repeated and record["verdict"] == "distill"
    assert record["student_loss_fresh_data"] == student.loss_fresh and record["verdict_fresh_data"] == "pretrain"
    # the CLI prints the same numbers in its table
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--teacher-params", "7.75B",
                         "--teacher-tokens", "155B", "--unique-tokens", "3B", "--teacher-unique-tokens", "155B",
                         "--explain")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "student loss L_S" in line)
    assert f"{student.loss_repeated:.4f}" in row


def test_a_sweeps_best_student_and_best_model_alone_are_after_repetition():
    plan = ds.plan("busbridge2025", compute=1e22, scenario="teacher-inference", unique_tokens=2e9)
    sweep, checks = plan.sweeps[0], plan.repetition
    assert sweep.best.student_loss == checks["teacher-inference"].loss_repeated
    assert sweep.supervised_best.loss == checks["teacher-inference (pretrain instead)"].loss_repeated
    assert checks["teacher-inference (pretrain instead)"].penalty > 0
    assert sweep.verdict == plan.verdict and plan.to_dict()["sweeps"]["teacher-inference"]["verdict"] == plan.verdict
    # the best student's same-size baseline repeats its own tokens too
    assert sweep.best.supervised.loss > sweep.best.fresh.supervised.loss


def test_a_supervised_plan_is_after_repetition():
    plan = ds.plan("epoch2024", compute=1e21, unique_tokens=5e9)
    check = plan.repetition["supervised"]
    assert check.penalty > 0 and plan.supervised.loss == check.loss_repeated
    assert plan.supervised.fresh.loss == check.loss_fresh


def test_each_modes_penalty_is_computed_once_and_shown_as_computed():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, teacher=TEACHER,
                   on_policy=ds.OnPolicy(fraction=0.5), unique_tokens=3e9, max_penalty=0.02)
    for mode in plan.modes:
        check = plan.repetition[mode.name]
        assert check is mode.repetition and check.max_penalty == 0.02
        assert mode.student_loss == check.loss_repeated and mode.repetition_penalty == check.penalty


def test_the_sweeps_figure_marks_the_best_student_on_its_fresh_data_curve():
    pytest.importorskip("matplotlib")
    from distillscale.planning.plots import plot_plan

    plan = ds.plan("busbridge2025", compute=1e22, scenario="teacher-inference", unique_tokens=2e9,
                   min_params=1e8, max_params=3e9)
    curve, star = plot_plan(plan).axes[0].get_lines()[:2]
    fresh = plan.sweeps[0].fresh
    assert star.get_ydata()[0] == fresh.best.student_loss
    assert list(curve.get_ydata()) == [p.student_loss for p in fresh.plans]


def test_the_printed_tables_say_their_losses_are_after_repetition():
    limited = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case", unique_tokens=3e9)
    fresh = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case")
    def text(plan) -> str:  # a table's caption wraps at the table's width
        return " ".join(plan.as_text(width=200).split())

    assert "losses in nats/token; after repeating the unique tokens" in text(limited)
    assert "after repeating" not in text(fresh)
    supervised = ds.plan("epoch2024", compute=1e21, unique_tokens=3e9)
    assert re.search(rf"{supervised.supervised.loss:.4f} nats/token \(90% interval [^)]*\) after repeating the unique "
                     "tokens", text(supervised))


def test_the_size_searches_minimise_the_loss_after_repetition():
    """Without a student size, the best student and the best model trained alone are the sizes of
    least loss after repeating the corpus, not the fresh-data optimum penalised afterwards."""
    from distillscale.planning.repetition import assess_model

    def repeated(plan, N, D, loss, distilled, unique=5e9):
        return assess_model(plan.laws, N, D, unique, 0.01, distilled=distilled, loss_fresh=loss).loss_repeated

    fresh = ds.plan("epoch2024", compute=1e21).supervised
    limited = ds.plan("epoch2024", compute=1e21, unique_tokens=5e9)
    assert limited.supervised.loss < repeated(limited, fresh.student_params, fresh.tokens, fresh.loss, False)
    assert limited.supervised.student_params != pytest.approx(fresh.student_params, rel=0.05)

    kwargs = dict(compute=1e20, scenario="teacher-inference")
    fresh_sweep = ds.plan("busbridge2025", **kwargs).sweeps[0]
    limited = ds.plan("busbridge2025", **kwargs, unique_tokens=1e9)
    sweep, best, alone = limited.sweeps[0], fresh_sweep.best, fresh_sweep.supervised_best
    assert sweep.best.student_params != best.student_params
    assert sweep.best.student_loss < repeated(limited, best.student_params, best.student_tokens,
                                              best.student_loss, True, 1e9)
    assert sweep.supervised_best.student_params < 0.7 * alone.student_params  # R_N*: fewer, repeated parameters
    assert sweep.supervised_best.loss < repeated(limited, alone.student_params, alone.tokens, alone.loss, False, 1e9)


@pytest.mark.parametrize("scenario", ["teacher-pretraining", "teacher-pretraining-inference"])
def test_a_student_whose_teacher_repeats_the_corpus_shows_one_penalty_everywhere(cli, scenario):
    """A scenario that pre-trains its teacher on the same limited corpus: the student's check (the
    block and the warning) is the loss the table and verdict use, its teacher's penalty included,
    and the unique tokens it asks for keep that whole penalty within the limit."""
    from distillscale.planning.repetition import assess_model

    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario=scenario, unique_tokens=3e9)
    p, student, teacher = plan.headline, plan.repetition[scenario], plan.repetition[f"{scenario} teacher"]
    assert teacher.penalty > 0.04 and student.teacher is teacher
    assert p.student_loss == pytest.approx(student.loss_repeated, rel=1e-12)
    assert p.teacher_loss == pytest.approx(teacher.loss_repeated, rel=1e-12)
    # independently, the data-limited law: the distillation law at the teacher's fresh loss times the student's
    # own penalty, plus kappa of the teacher's penalty
    from distillscale.laws.data_limited import load_constants

    own = assess_model(plan.laws, p.student_params, p.student_tokens, 3e9, 0.01, distilled=True,
                       loss_fresh=p.fresh.student_loss).penalty
    expected = (float(plan.laws.distillation.predict(p.student_params, p.student_tokens, teacher.loss_fresh)) * (1 + own)
                + load_constants().kappa.value * (teacher.loss_repeated - teacher.loss_fresh))
    assert student.loss_repeated == pytest.approx(expected, rel=1e-9)
    assert student.penalty == pytest.approx(student.loss_repeated / p.fresh.student_loss - 1, rel=1e-9)
    assert student.penalty > own + 0.02
    # the unique tokens it asks for keep the whole penalty at the limit, not the student's own alone
    needed = student.unique_tokens_needed
    at_needed = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario=scenario, unique_tokens=needed)
    assert at_needed.repetition[scenario].penalty == pytest.approx(0.01, abs=2e-4)
    own_needed = assess_model(plan.laws, p.student_params, p.student_tokens, 3e9, 0.01, distilled=True,
                              loss_fresh=p.fresh.student_loss).unique_tokens_needed
    assert needed > 1.5 * own_needed
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--scenario", scenario,
                         "--unique-tokens", "3B", "--explain")   # each run's check, each warning in full
    assert code == 0, err
    text, warned = " ".join(out.split()), " ".join(err.split())
    block = text[text.index(f"Repetition ({scenario}):"):]
    assert block.startswith(f"Repetition ({scenario}): 3B unique tokens") and f"loss {p.student_loss:.4f} nats/token" in block
    assert f"{student.penalty:+.2%}: {student.through_teacher:+.2%} through its teacher" in block
    assert (f"{scenario}: the plan repeats its 3B unique tokens {student.epochs:.3g} times, {student.penalty:.2%} loss "
            f"above fresh data; it needs {format_quantity(needed)} unique tokens") in warned
    assert f"{p.student_loss:.4f}" in text.split("Repetition")[0]  # the table's


def test_a_sweeps_student_whose_teacher_repeats_the_corpus_carries_its_teachers_penalty():
    plan = ds.plan("busbridge2025", compute=1e20, scenario="teacher-pretraining", unique_tokens=1e9)
    best, check = plan.sweeps[0].best, plan.repetition["teacher-pretraining"]
    assert check.teacher is plan.repetition["teacher-pretraining teacher"] and check.through_teacher > 0
    assert best.student_loss == pytest.approx(check.loss_repeated, rel=1e-12)
    assert plan.to_dict()["repetition"]["teacher-pretraining"]["teacher_penalty"] == check.teacher.penalty
