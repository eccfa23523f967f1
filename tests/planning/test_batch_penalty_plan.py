"""Every penalty a plan prints is in its verdict (issue 63 item 6): at a batch the user fixed
(`--batch-tokens`), each run's loss penalty against its B* is in the losses, intervals, verdicts,
downstream errors and the planner page, with the plan at each run's B* kept beside it; a teacher the
scenario pre-trains carries its own penalty (and, with a limited corpus, its repetition check) into
its student's loss."""

import json

import pytest

import distillscale as ds
from tests.conftest import point_laws
from distillscale.laws.lawset import load_laws
from distillscale.planning.batch_penalty import PENALTY_NOTE

EXISTING = dict(student_params=546e6, scenario="teacher-inference", teacher_params=7.75e9, teacher_tokens=155e9)


@pytest.mark.last_bits
def test_the_batch_penalty_is_in_the_losses_and_can_turn_the_verdict():
    """At 1e20 FLOPs distilling from an existing 7.75B teacher wins at each run's B*; at a 16M-token
    batch both runs pay Step Law's ridge penalty, the student's larger (it trains on fewer tokens,
    so its B* is smaller): pretraining wins by about 0.058 nats (the issue's case)."""
    plan = ds.plan(point_laws(), compute=1e20, batch_tokens=16e6, **EXISTING)
    optimal = plan.at_optimal_batch
    assert optimal is not None and optimal.verdict == "distill" and plan.verdict == "pretrain"
    student, instead = plan.batch_penalties["teacher-inference"], plan.batch_penalties["teacher-inference (pretrain instead)"]
    assert student == pytest.approx(plan.recipes["teacher-inference"].adaptation.loss_penalty) and student > instead > 0
    p, p0 = plan.headline, optimal.headline
    assert p.student_loss == pytest.approx(p0.student_loss * (1 + student), rel=1e-12)
    assert p.supervised.loss == pytest.approx(p0.supervised.loss * (1 + instead), rel=1e-12)
    assert p.distilled_minus_alone == pytest.approx(0.058, abs=0.002)   # distilled - alone: pretraining wins
    assert PENALTY_NOTE in plan.warnings
    assert any("changes the verdict (teacher-inference: distill at each run's B*, pretrain at your batch)" in w
               for w in plan.warnings)
    record = plan.to_dict()
    assert record["verdict"] == "pretrain" and record["batch_penalty"]["verdicts_at_optimal_batch"] == {
        "teacher-inference": "distill"}
    assert record["batch_penalty"]["losses_at_optimal_batch"]["teacher-inference"] == pytest.approx(p0.student_loss)
    # without a fixed batch nothing changes
    plain = ds.plan(point_laws(), compute=1e20, **EXISTING)
    assert plain.at_optimal_batch is None and plain.batch_penalties == {} and plain.verdict == "distill"
    assert plain.headline.student_loss == pytest.approx(p0.student_loss, rel=1e-12)


def test_a_pretrained_teachers_penalty_moves_its_students_loss_through_the_law():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining",
                   batch_tokens=16e6)
    laws, p, p0 = load_laws("busbridge2025"), plan.headline, plan.at_optimal_batch.headline
    teacher = plan.batch_penalties["teacher-pretraining teacher"]
    assert teacher > 0 and p.teacher_loss == pytest.approx(p0.teacher_loss * (1 + teacher), rel=1e-12)
    law = laws.distillation
    ratio = law.predict(p.student_params, p.student_tokens, p.teacher_loss) / law.predict(
        p.student_params, p.student_tokens, p0.teacher_loss)
    assert p.student_loss == pytest.approx(p0.student_loss * ratio * (1 + plan.batch_penalties["teacher-pretraining"]))


def test_every_kind_of_plan_carries_the_penalty():
    sweep = ds.plan("busbridge2025", compute=1e21, scenario="best-case", batch_tokens=16e6)
    assert sweep.kind == "sweep" and sweep.at_optimal_batch is not None
    s, s0 = sweep.sweeps[0], sweep.at_optimal_batch.sweeps[0]
    assert s.best.student_loss > s0.best.student_loss and s.supervised_best.loss > s0.supervised_best.loss
    assert s.best.supervised.loss > s0.best.supervised.loss   # the best student's own baseline too
    supervised = ds.plan_supervised("epoch2024", compute=1e21, params=1e9, batch_tokens=16e6)
    assert supervised.supervised.loss == pytest.approx(
        supervised.at_optimal_batch.supervised.loss * (1 + supervised.batch_penalties["supervised"]))


def test_the_downstream_errors_and_the_page_read_the_penalized_losses(tmp_path):
    import numpy as np

    from distillscale.serve.api import Planner, PlanQuery

    losses = np.linspace(2.2, 3.4, 12)   # Gadre et al.'s law Err = 0.75 - 12 exp(-1.3 L)
    path = tmp_path / "down.json"
    ds.fit_downstream(losses, 0.75 - 12 * np.exp(-1.3 * losses), task_set="toy", bootstrap=0).save(path)
    plan = ds.plan(point_laws(), compute=1e20, batch_tokens=16e6, downstream_law=str(path), **EXISTING)
    errors = plan.downstream.to_dict()
    student_loss = plan.headline.student_loss
    assert errors["models"]["teacher-inference"]["loss"] == pytest.approx(student_loss)
    page = Planner().update(PlanQuery(law="busbridge2025", compute="1e20", student="546M", scenario="teacher-inference",
                                      teacher="tokens", teacher_params="7.75B", teacher_tokens="155B",
                                      batch_tokens="16M"))
    # the page plans under the preset itself, intervals and all: what ds.plan gives it
    preset = ds.plan("busbridge2025", compute=1e20, batch_tokens=16e6, **EXISTING).to_dict()
    assert page["ok"] and page["plan"]["verdict"] == preset["verdict"]
    assert page["plan"]["batch_penalty"]["verdicts_at_optimal_batch"] == \
        preset["batch_penalty"]["verdicts_at_optimal_batch"]


def test_a_pretrained_teacher_gets_a_repetition_check_that_moves_its_student(cli):
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining",
                   unique_tokens=20e9)
    check = plan.repetition["teacher-pretraining teacher"]
    p, fresh = plan.headline, plan.headline.fresh
    assert check.epochs == pytest.approx(p.teacher_tokens / 20e9) and check.penalty > 0
    assert p.teacher_loss == pytest.approx(fresh.teacher_loss * (1 + check.penalty))
    student = plan.repetition["teacher-pretraining"]  # the student's check carries its teacher's move
    assert student.through_teacher > 0 and p.student_loss == pytest.approx(fresh.student_loss * (1 + student.penalty))
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--scenario", "teacher-pretraining", "--unique-tokens", "20B", "--json")
    assert code == 0, err
    assert "teacher-pretraining teacher" in json.loads(out)["repetition"]


@pytest.mark.slow
def test_a_pretrained_teachers_loss_is_shown_with_its_interval_and_widens_its_students():
    """Issue 63 item 10: a plan line's teacher loss L_T (a teacher the scenario trains, predicted by
    the fitted law, often far beyond its runs) was a bare number; now it carries the law's interval,
    and the student's interval spans the student losses at the ends of L_T's."""
    import numpy as np
    import pandas as pd

    from distillscale.laws.uncertainty import Prediction
    from distillscale.planning.solver import DistillationPlanner

    N, M = (x.ravel() for x in np.meshgrid(2e7 * 2.0 ** np.arange(5), [5, 20, 80], indexing="ij"))
    loss = load_laws("busbridge2025").supervised.predict(N, M * N) * np.exp(
        0.003 * np.random.default_rng(0).standard_normal(N.size))
    fit = ds.fit_supervised(pd.DataFrame({"N": N, "D": M * N, "loss": loss}), params="N", tokens="D", loss="loss",
                            bootstrap=0, form="chinchilla")
    from dataclasses import replace

    preset = load_laws("busbridge2025")
    laws = replace(preset, name="fitted", supervised=fit.law,
                   distillation=replace(preset.distillation, student_law=fit.law))
    plan = ds.plan(laws, compute=1e21, student_params=546e6, scenario="teacher-pretraining")
    p = plan.headline
    teacher = fit.law.prediction(p.teacher_params, p.teacher_tokens)
    assert p.teacher_interval is not None and (p.teacher_interval.low, p.teacher_interval.high) == (
        pytest.approx(teacher.low), pytest.approx(teacher.high))
    record = plan.to_dict()["teacher_loss_interval"]
    assert record["interval"] == [pytest.approx(teacher.low), pytest.approx(teacher.high)]
    assert "L_T 90%" in plan.as_text()
    # the student's interval: its own (here none: the preset's distillation law has none) widened by L_T's
    planner = DistillationPlanner(laws)
    own = Prediction(p.student_loss, p.student_loss - 0.01, p.student_loss + 0.01, 0.9, None, None, None)
    wide = planner.teacher_spread(p, own, teacher)
    ends = [laws.distillation.predict(p.student_params, p.student_tokens, t) for t in (teacher.low, teacher.high)]
    assert wide.high == pytest.approx(p.student_loss + np.hypot(0.01, max(0.0, max(ends) - p.student_loss)))
    assert wide.low == pytest.approx(p.student_loss - np.hypot(0.01, max(0.0, p.student_loss - min(ends))))
    assert wide.high - wide.low > 0.02
    # an existing teacher (teacher-inference) is given, not predicted: no interval
    given = ds.plan(laws, compute=1e21, **EXISTING).headline
    assert given.teacher_interval is None
