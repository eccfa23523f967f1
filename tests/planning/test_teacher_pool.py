"""The teacher's data counted: a teacher trained for the plan (a scenario's, or one given by its size
and tokens) reads the student's pool of unique tokens unless given its own (--teacher-unique-tokens),
its loss then the one `predict supervised --unique-tokens` gives for its run; a measured teacher keeps
its measured loss; every plan says which pool each model reads and how many times."""

from __future__ import annotations

import json

import pytest

from distillscale.laws.data_limited import load_constants

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation, predict_supervised

LAW = "busbridge2025"
TEACHER = ds.ExistingTeacher(1.5e9, 8e8)   # 1.5B parameters, 800M tokens: the example of the planner's guide
PLAN = dict(compute=1.5e19, student_params=1.5e9, teacher=TEACHER)


@pytest.fixture(scope="module")
def laws():
    return load_laws(LAW)


def pooled(laws, N, D, U) -> float:
    return float(predict_supervised(laws, N, D, U).prediction.value)


def test_a_given_teacher_reads_the_students_pool_at_the_loss_predict_supervised_gives(laws):
    """Before, the teacher got the loss of 800M fresh tokens (2.9238) while its student paid for repeating
    the same 50M-token pool."""
    fresh, limited = ds.plan(LAW, **PLAN), ds.plan(LAW, **PLAN, unique_tokens=5e7)
    teacher = pooled(laws, 1.5e9, 8e8, 5e7)
    assert teacher > fresh.plans[0].teacher_loss * 1.1   # 16 epochs of 50M cost it > 10%
    assert limited.plans[0].teacher_loss == pytest.approx(teacher, rel=1e-12)
    check = limited.repetition["teacher-inference teacher"]
    assert (check.unique_tokens, check.epochs) == (5e7, pytest.approx(16.0))
    assert check.loss_repeated == teacher
    # the student inherits kappa of its teacher's penalty (`laws.data_limited`), on top of its own repetition
    student = limited.repetition["teacher-inference"]
    assert student.teacher is check and student.through_teacher > 0.05
    assert limited.plans[0].student_loss > fresh.plans[0].student_loss * (1 + student.through_teacher)
    modes = ds.plan(LAW, **PLAN, unique_tokens=5e7, on_policy=ds.OnPolicy())   # the mode comparison's too
    assert modes.teacher_loss == teacher and modes.repetition["teacher"].epochs == pytest.approx(16.0)
    # the same teacher through `predict distillation`, and `teacher` ranking it
    predicted = predict_distillation(laws, 1.5e9, 1.05e9, teacher_params=1.5e9, teacher_tokens=8e8, unique_tokens=5e7)
    assert predicted.teacher_loss == teacher
    assert predicted.pools["teacher"] == {"unique_tokens": 5e7, "tokens": 8e8, "epochs": pytest.approx(16.0)}
    ranking = ds.rank_teachers_for(LAW, student_params=1.5e8, student_tokens=3e9, teacher_unique_tokens=5e7,
                                   candidates=[ds.TeacherCandidate("t", 2.0)])   # a measured one kept as given
    assert ranking.candidates[0].loss == 2.0 and ranking.candidates[0].unique_tokens is None
    ladder = ds.rank_teachers_for(LAW, student_params=1.5e8, student_tokens=3e9, teacher_unique_tokens=5e7)
    first = ladder.candidates[0]   # 1x N_S at 20 tokens per parameter: 3B tokens, 60 epochs of 50M
    assert first.loss == pooled(laws, first.params, first.tokens, 5e7) and first.epochs == pytest.approx(60.0)


def test_a_teacher_with_its_own_pool_reads_it_and_not_the_students(laws):
    own = ds.plan(LAW, **PLAN, unique_tokens=5e7, teacher_unique_tokens=8e8)
    check = own.repetition["teacher-inference teacher"]
    assert (check.unique_tokens, check.epochs, check.penalty) == (8e8, 1.0, 0.0)
    assert own.plans[0].teacher_loss == ds.plan(LAW, **PLAN).plans[0].teacher_loss   # one epoch: its fresh loss
    bigger = ds.plan(LAW, **PLAN, unique_tokens=5e7, teacher_unique_tokens=2e8)
    assert bigger.plans[0].teacher_loss == pytest.approx(pooled(laws, 1.5e9, 8e8, 2e8), rel=1e-12)
    # a scenario's teacher, pre-trained for the plan, reads its own pool too
    options = dict(compute=1e20, student_params=5e8, scenario="teacher-pretraining", unique_tokens=5e8)
    shared, apart = ds.plan(LAW, **options), ds.plan(LAW, **options, teacher_unique_tokens=5e9)
    p, q = shared.plans[0], apart.plans[0]
    assert q.teacher_tokens == p.teacher_tokens and q.teacher_loss < p.teacher_loss
    assert q.teacher_loss == pytest.approx(pooled(laws, q.teacher_params, q.teacher_tokens, 5e9), rel=1e-12)
    assert apart.repetition["teacher-pretraining teacher"].unique_tokens == 5e9
    predicted = predict_distillation(laws, 1.5e9, 1.05e9, teacher_params=1.5e9, teacher_tokens=8e8,
                                     teacher_unique_tokens=2e8)   # the student on fresh data
    assert predicted.teacher_loss == pooled(laws, 1.5e9, 8e8, 2e8) and "student" not in predicted.pools


def test_a_measured_teacher_keeps_its_measured_loss(laws, cli):
    measured = ds.plan(LAW, compute=1.5e19, student_params=1.5e9, teacher=ds.ExistingTeacher(1.5e9, loss=2.9),
                       unique_tokens=5e7)
    assert measured.plans[0].teacher_loss == 2.9 and "teacher-inference teacher" not in measured.repetition
    assert [pool.model for pool in measured.pools() if pool.measured] == ["teacher"]
    predicted = predict_distillation(laws, 1.5e9, 1.05e9, teacher_loss=2.9, unique_tokens=5e7)
    assert predicted.teacher_loss == 2.9 and predicted.pools["teacher"] == {"measured": True}
    with pytest.raises(ParameterError, match="keeps its measured loss"):
        predict_distillation(laws, 1.5e9, 1.05e9, teacher_loss=2.9, teacher_unique_tokens=5e7)
    for command in (("plan", "--student-params", "1.5B", "--compute", "1.5e19", "--teacher-params", "1.5B",
                     "--teacher-loss", "2.9", "--unique-tokens", "50M"),
                    ("predict", "distillation", "--student-params", "1.5B", "--student-tokens", "1B",
                     "--teacher-loss", "2.9")):
        code, _, err = cli(*command, "--teacher-unique-tokens", "40M")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--teacher-loss keeps its measured loss" in err, err
    code, _, err = cli("plan", "--student-params", "1.5B", "--compute", "1.5e19", "--teacher-params", "1.5B",
                       "--teacher-tokens", "800M", "--teacher-unique-tokens", "40M")
    assert code == 2 and "give --unique-tokens too" in err and len(err.strip().splitlines()) == 1, err


def test_every_plan_says_which_pool_each_model_reads_in_text_json_and_python(cli):
    args = ("plan", "--student-params", "1.5B", "--compute", "1.5e19", "--teacher-params", "1.5B",
            "--teacher-tokens", "800M", "--unique-tokens", "50M")
    code, out, _ = cli(*args)
    assert code == 0
    assert "Data: 50M unique tokens; epochs: student 21, alone 28, teacher 16" in " ".join(
        out.split())
    code, out, _ = cli(*args, "--explain")   # each model by name
    assert ("Data: 50M unique tokens read by teacher-inference 21x, teacher-inference (pretrain instead) 28x, "
            "teacher-inference teacher 16x") in " ".join(out.split())
    code, out, _ = cli(*args, "--json")
    pools = {pool["model"]: pool for pool in json.loads(out)["pools"]}
    assert pools["teacher-inference teacher"]["epochs"] == pytest.approx(16.0)
    assert pools["teacher-inference"]["unique_tokens"] == 5e7
    python = ds.plan(LAW, **PLAN, unique_tokens=5e7).pools()
    assert {pool.model: pool.epochs for pool in python} == {name: pool["epochs"] for name, pool in pools.items()}
    code, out, _ = cli("predict", "distillation", "--student-params", "1.5B", "--student-tokens", "1.05B",
                       "--teacher-params", "1.5B", "--teacher-tokens", "800M", "--unique-tokens", "50M",
                       "--teacher-unique-tokens", "200M")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0 and "50M unique tokens read 21 times" in text and "200M unique tokens read 4 times" in text
    code, out, _ = cli("teacher", "--student-params", "150M", "--student-tokens", "3B", "--teacher-unique-tokens",
                       "50M", "--json")
    assert json.loads(out)["candidates"][0]["teacher_epochs"] == pytest.approx(60.0)


def test_on_fresh_data_a_pool_that_repeats_nothing_changes_no_number(laws):
    """Pools at least as large as each model's tokens: every loss, interval and verdict as with fresh data."""
    fresh = predict_distillation(laws, 1.5e9, 1.05e9, teacher_params=1.5e9, teacher_tokens=8e8)
    pools = predict_distillation(laws, 1.5e9, 1.05e9, teacher_params=1.5e9, teacher_tokens=8e8,
                                 unique_tokens=1.05e9, teacher_unique_tokens=8e8)
    assert (pools.teacher_loss, pools.prediction.value, pools.prediction.low, pools.prediction.high,
            pools.supervised_loss, pools.difference.verdict) == (
        fresh.teacher_loss, fresh.prediction.value, fresh.prediction.low, fresh.prediction.high,
        fresh.supervised_loss, fresh.difference.verdict)
    assert "pools" not in fresh.to_dict() and fresh.pools == {}


@pytest.mark.last_bits
def test_on_fresh_data_every_prediction_is_the_one_before_the_teachers_pool_counted(laws):
    """Number for number, the predictions of the code before the teacher's pool was counted (full
    precision, busbridge2025): fresh data, and a scenario's teacher reading the student's pool."""
    r = predict_distillation(laws, 1.5e9, 1.05e9, teacher_params=1.5e9, teacher_tokens=8e8)
    assert (float(r.teacher_loss), float(r.prediction.value), float(r.prediction.low), float(r.prediction.high),
            r.supervised_loss) == (2.9237596984509957, 2.9314327858574685, 2.8710007623936953, 2.9918648093212417,
                                   2.85265130833404)
    q = ds.plan(LAW, **PLAN).plans[0]
    assert (q.teacher_loss, q.student_loss, q.supervised.loss, float(q.student_interval.low)) == (
        2.9237596984509957, 2.9314154786440927, 2.7821785412581654, 2.870983811971691)
    q = ds.plan(LAW, compute=1e20, student_params=5e8, scenario="teacher-pretraining", unique_tokens=5e8).plans[0]
    assert (q.teacher_loss, q.supervised.loss) == (2.7868057358586, 2.7624689446087616)
    # the student of a teacher that repeats the pool: the data-limited law (its loss with its teacher's fresh
    # loss under its own penalty, plus kappa of the teacher's penalty)
    check = ds.plan(LAW, compute=1e20, student_params=5e8, scenario="teacher-pretraining",
                    unique_tokens=5e8).repetition["teacher-pretraining"]
    own = (1 + check.penalty) / (1 + check.through_teacher)
    inherited = load_constants().kappa.value * (q.teacher_loss - q.fresh.teacher_loss)
    assert q.student_loss == pytest.approx(q.fresh.student_loss * own + inherited, rel=1e-12)


def test_teachers_of_a_pool_rank_by_the_data_limited_law_not_by_their_pooled_loss(cli):
    """A 150M student on 3B tokens, teachers trained on a 50M pool: each student is the data-limited law's
    (kappa of its teacher's repetition penalty; on fresh data itself), as `plan` and `predict` give it, not the
    distillation law at the teacher's pooled loss; `--unique-tokens` gives the student's own pool."""
    import json

    from distillscale.laws.data_limited import DataLimitedLaw
    from distillscale.laws.lawset import load_laws

    law = DataLimitedLaw(load_laws("busbridge2025"))
    for extra, own in (((), None), (("--unique-tokens", "1B"), 1e9)):
        code, out, err = cli("teacher", "--law", "busbridge2025", "--student-params", "150M", "--student-tokens", "3B",
                             "--teacher-unique-tokens", "50M", *extra, "--json")
        assert code == 0, err
        record = json.loads(out)
        assert record["student_unique_tokens"] == own
        for c in record["candidates"]:
            teacher = law.alone(c["teacher_params"], c["teacher_tokens"], 50e6)
            expected = law.student(150e6, 3e9, own, teacher)
            assert c["student_loss"] == pytest.approx(expected.value, rel=1e-12)
            assert c["interval"] == pytest.approx([float(expected.loss.low), float(expected.loss.high)], rel=1e-12)
        pooled_law = load_laws("busbridge2025").distillation
        first = record["candidates"][0]
        assert first["student_loss"] != pytest.approx(float(pooled_law.predict(150e6, 3e9, first["teacher_loss"])),
                                                      rel=1e-6)
