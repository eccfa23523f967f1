"""The data-limited distillation law (`laws.data_limited`): its algebra, constants and intervals."""

import json

import pytest

from distillscale.errors import ParameterError
from distillscale.laws.data_limited import (CONSTANTS_FILE, Constant, DataLimitedConstants, DataLimitedLaw,
                                            load_constants)
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation

N, D, U = 1.5e9, 800e6, 50e6   # 16 epochs of a small pool: a large repetition penalty


def constants(kappa=0.5, eta=0.5, spread=0.0):
    return DataLimitedConstants(Constant(kappa, (kappa - spread, kappa + spread)),
                                Constant(eta, (eta - spread, eta + spread)), source="test")


@pytest.fixture(scope="module")
def laws():
    return load_laws("busbridge2025")


def test_fresh_data_is_the_distillation_law_number_for_number(laws):
    law = DataLimitedLaw(laws, constants(0.3, spread=0.2))
    today = predict_distillation(laws, 500e6, 10e9, teacher_params=N, teacher_tokens=30e9).prediction
    for pool in (None, 40e9):   # no pool, or a pool no run repeats
        student = law.student(500e6, 10e9, pool, law.alone(N, 30e9, pool))
        assert (student.value, student.loss.low, student.loss.high) == (today.value, today.low, today.high)
        assert student.penalty == 0.0


def test_a_student_beats_its_same_size_teacher_when_it_inherits_part_of_a_large_penalty(laws):
    teacher = DataLimitedLaw(laws, constants(0.3)).alone(N, D, U)
    assert teacher.penalty > 0.3   # repeating 16 times costs the teacher a lot
    assert DataLimitedLaw(laws, constants(0.3)).student(N, D, U, teacher).value < teacher.value
    # inheriting the whole penalty, the student is worse than its teacher, as on fresh data
    assert DataLimitedLaw(laws, constants(1.0)).student(N, D, U, teacher).value > teacher.value


def test_a_chain_settles_its_penalty_shrinking_while_its_fresh_loss_rises(laws):
    chain = DataLimitedLaw(laws, constants(0.5)).chain(N, D, U, generations=8)
    states = chain.generations
    assert len(states) == 9 and states[0].role == "alone"
    penalties = [s.penalty for s in states]
    fresh = [float(s.fresh.value) for s in states]
    assert all(b < a for a, b in zip(penalties, penalties[1:]))
    assert all(b > a for a, b in zip(fresh, fresh[1:]))
    steps = [abs(d.value) for d in chain.gains]
    assert steps[-1] < steps[0] / 20   # settled
    assert chain.stops_gaining is not None and chain.stops_gaining > 1
    assert chain.stops_paying is not None and chain.stops_paying <= chain.stops_gaining


def test_a_chain_with_no_inheritance_stops_at_once_only_when_the_first_gain_is_within_its_interval(laws):
    chain = DataLimitedLaw(laws, constants(0.0)).chain(N, D, U, generations=3)
    # kappa = 0: generation 2's teacher penalty is gone, so 2 differs from 1 only through F's rise
    assert chain.gains[1].value > 0
    assert chain.stops_gaining == 2


def test_an_ensemble_removes_a_share_of_its_members_penalty(laws):
    law = DataLimitedLaw(laws, constants(eta=0.5))
    one = law.alone(N, D, U)
    assert law.ensemble(N, D, U, 1).value == pytest.approx(one.value)
    four = law.ensemble(N, D, U, 4)
    assert four.value == pytest.approx(one.value - 0.5 * 0.75 * one.penalty)
    assert float(four.fresh.value) == float(one.fresh.value)
    assert law.ensemble(N, D, U, 8).value < four.value
    assert DataLimitedLaw(laws, constants(eta=0.0)).ensemble(N, D, U, 4).value == pytest.approx(one.value)
    with pytest.raises(ParameterError):
        law.ensemble(N, D, U, 0)


def test_a_measured_teacher_s_fresh_loss_takes_off_its_pool_s_penalty(laws):
    law = DataLimitedLaw(laws, constants())
    unknown = law.measured_teacher(3.4)
    assert float(unknown.fresh.value) == 3.4 and unknown.penalty == 0.0
    alone = law.alone(N, D, U)
    known = law.measured_teacher(3.4, N, D, U)
    assert known.penalty == pytest.approx(alone.penalty)
    with pytest.raises(ParameterError):
        law.measured_teacher(3.4, U=U)


def test_the_constants_interval_widens_each_loss_to_its_ends(laws):
    teacher = DataLimitedLaw(laws, constants(0.5)).alone(N, D, U)
    tight = DataLimitedLaw(laws, constants(0.5)).student(N, D, U, teacher)
    wide = DataLimitedLaw(laws, constants(0.5, spread=0.3)).student(N, D, U, teacher)
    assert wide.value == tight.value
    assert wide.loss.low == pytest.approx(tight.loss.low - 0.3 * teacher.penalty)
    assert wide.loss.high == pytest.approx(tight.loss.high + 0.3 * teacher.penalty)


def test_the_shipped_constants_file_has_both_constants_with_intervals():
    record = json.loads(CONSTANTS_FILE.read_text())
    assert {"kappa", "eta", "source"} <= set(record)
    loaded = load_constants()
    for c in (loaded.kappa, loaded.eta):
        assert c.interval[0] <= c.value <= c.interval[1]
    with pytest.raises(ParameterError):
        Constant(0.5, (0.6, 0.8))


def test_with_lam_a_student_pays_that_share_of_the_penalty_of_its_size_trained_alone(laws):
    """Constants with lam: L_S = G(F_T) + lam (S_pooled - S) + kappa (L_T - F_T), the student's own
    penalty a share of what it would pay trained alone on the pool (not the distilled R_D*), and its
    interval reaching out to the losses at lam's ends; on fresh data still the distillation law."""
    lam = DataLimitedConstants(Constant(0.4, (0.4, 0.4)), Constant(0.3, (0.3, 0.3)), source="test",
                               lam=Constant(0.5, (0.3, 0.7)))
    law = DataLimitedLaw(laws, lam)
    teacher = law.alone(N, D, U)
    student = law.student(N, D, U, teacher)
    alone_penalty = law.alone(N, D, U).penalty
    expected = float(student.fresh.value) + 0.5 * alone_penalty + 0.4 * teacher.penalty
    assert student.value == pytest.approx(expected, rel=1e-12)
    assert student.loss.low <= expected - 0.2 * alone_penalty + 1e-12
    assert student.loss.high >= expected + 0.2 * alone_penalty - 1e-12
    without = DataLimitedLaw(laws, constants(0.4, 0.3)).student(N, D, U, teacher)   # no lam: G_pooled
    assert student.value != pytest.approx(without.value, rel=1e-6)
    today = predict_distillation(laws, 500e6, 10e9, teacher_params=N, teacher_tokens=30e9).prediction
    fresh = law.student(500e6, 10e9, None, law.alone(N, 30e9, None))
    assert (fresh.value, fresh.loss.low, fresh.loss.high) == (today.value, today.low, today.high)


def test_the_constants_file_round_trips_lam():
    data = {"kappa": {"value": 0.4, "interval": [0.2, 0.6]}, "eta": {"value": 0.3, "interval": [0.2, 0.4]},
            "lambda": {"value": 0.5, "interval": [0.3, 0.7]}, "level": 0.9, "source": "test"}
    loaded = DataLimitedConstants.from_dict(data)
    assert loaded.lam == Constant(0.5, (0.3, 0.7)) and loaded.to_dict() == data
    assert "lambda 0.5 [0.3, 0.7]" in loaded.describe()
