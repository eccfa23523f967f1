"""One student, teacher and pool: one loss and one interval on every surface (`plan`'s table, its
data-limited comparison, `plan --on-policy` and `--logit-cache`, a family with a pool, `teacher`,
`predict distillation`, the Python API), every one through `laws.data_limited`; the same Delta where two
surfaces ask the same question (at equal compute: the plan's table, its comparison and its mode
comparison; on the same tokens: `predict` and `teacher`)."""

from __future__ import annotations

import pytest

import distillscale as ds
from distillscale.laws.data_limited import DataLimitedLaw
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation
from distillscale.planning.teacher import TeacherCandidate
from distillscale.planning.teacher_plan import rank_teachers_for

N_S, C, U = 1.5e9, 1.5e19, 50e6
N_T, D_T = 1.5e9, 8e8
TEACHER = ds.ExistingTeacher(params=N_T, tokens=D_T)


def ends(prediction) -> tuple[float, float, float]:
    return float(prediction.value), float(prediction.low), float(prediction.high)


@pytest.fixture(scope="module")
def laws():
    return load_laws("busbridge2025")


@pytest.fixture(scope="module")
def plan():
    return ds.plan("busbridge2025", compute=C, student_params=N_S, teacher=TEACHER, unique_tokens=U)


def test_the_law_s_student_is_the_plan_s_in_its_table_its_comparison_and_its_verdict(laws, plan):
    law = DataLimitedLaw(laws)
    student = plan.headline
    state = law.student(N_S, student.student_tokens, U, law.alone(N_T, D_T, U))
    assert ends(student.student_interval) == pytest.approx(ends(state.loss), rel=1e-12)
    given = next(o for o in plan.data_limited.options if o.kind == "teacher")
    assert ends(given.final.loss) == pytest.approx(ends(state.loss), rel=1e-12)
    mine, theirs = student.difference, given.difference
    assert (mine.value, mine.low, mine.high) == pytest.approx((theirs.value, theirs.low, theirs.high), rel=1e-9)
    assert mine.verdict == theirs.verdict


def test_on_policy_and_logit_cache_price_the_off_policy_student_as_plan_does(plan):
    for extra in ({"on_policy": ds.OnPolicy()}, {"on_policy": ds.OnPolicy(), "logit_cache": True}):
        modes = ds.plan("busbridge2025", compute=C, student_params=N_S, teacher=TEACHER, unique_tokens=U, **extra)
        off = next(m for m in modes.modes if m.name == "off-policy")
        if "logit_cache" in extra:   # its logits paid before: more tokens, the same law at them
            law = DataLimitedLaw(modes.laws)
            state = law.student(N_S, off.student_tokens, U, law.alone(N_T, D_T, U))
            assert ends(off.interval) == pytest.approx(ends(state.loss), rel=1e-12)
            continue
        assert off.student_tokens == pytest.approx(plan.headline.student_tokens, rel=1e-12)
        assert ends(off.interval) == pytest.approx(ends(plan.headline.student_interval), rel=1e-12)
        mine, theirs = modes.against_alone(off), plan.headline.difference
        assert (mine.low, mine.high) == pytest.approx((theirs.low, theirs.high), rel=1e-9)
        assert mine.verdict == theirs.verdict


def test_predict_and_teacher_give_the_plan_s_student_at_its_tokens(laws, plan):
    D_S = plan.headline.student_tokens
    predicted = predict_distillation(laws, N_S, D_S, teacher_params=N_T, teacher_tokens=D_T, unique_tokens=U)
    assert ends(predicted.prediction) == pytest.approx(ends(plan.headline.student_interval), rel=1e-12)
    ranking = rank_teachers_for("busbridge2025", student_params=N_S, student_tokens=D_S, unique_tokens=U,
                                candidates=[TeacherCandidate.from_size("t", N_T, D_T, ranking_planner(laws), U)])
    one = (float(ranking.student_losses[0]), float(ranking.intervals.low[0]), float(ranking.intervals.high[0]))
    assert one == pytest.approx(ends(predicted.prediction), rel=1e-12)
    mine, theirs = ranking.differences()[0], predicted.difference   # both against the student alone on D_S
    assert (mine.value, mine.low, mine.high) == pytest.approx((theirs.value, theirs.low, theirs.high), rel=1e-9)
    assert mine.verdict == theirs.verdict


def test_a_family_on_a_pool_prices_each_student_as_predict_does(laws):
    family = ds.plan("busbridge2025", compute=3e20, students=[300e6, 1e9], teacher=TEACHER, unique_tokens=U)
    for p in family.plans:
        predicted = predict_distillation(laws, p.student_params, p.student_tokens, teacher_params=N_T,
                                         teacher_tokens=D_T, unique_tokens=U)
        assert p.student_loss == pytest.approx(float(predicted.prediction.value), rel=1e-9)
        assert ends(p.student_interval) == pytest.approx(ends(predicted.prediction), rel=1e-9)


def test_the_python_api_is_the_same_law(laws, plan):
    D_S = plan.headline.student_tokens
    law = ds.DataLimitedLaw(laws)
    state = law.student(N_S, D_S, U, law.alone(N_T, D_T, U))
    assert state.value == pytest.approx(plan.headline.student_loss, rel=1e-12)


def ranking_planner(laws):
    from distillscale.planning.plan import planner_for

    return planner_for(laws)
