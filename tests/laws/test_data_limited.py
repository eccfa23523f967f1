"""The data-limited distillation law (`laws.data_limited`): its algebra, constants and intervals."""

import json

import numpy as np
import pytest

from distillscale.errors import ParameterError, UserError
from distillscale.laws.data_limited import (CONSTANTS_FILE, DataLimitedConstants, DataLimitedLaw, difference,
                                            load_constants)
from distillscale.laws.data_limited_fit import MeasuredRange, Residuals
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation

N, D, U = 1.5e9, 800e6, 50e6   # 16 epochs of a small pool: a large repetition penalty


def constants(kappa=0.5, lam=0.3, eta=0.05, gamma=0.8, theta=0.5, **kwargs):
    return DataLimitedConstants.given(kappa, lam, eta, gamma, theta, **kwargs)


@pytest.fixture(scope="module")
def laws():
    return load_laws("busbridge2025")


def test_fresh_data_is_the_distillation_law_number_for_number(laws):
    law = DataLimitedLaw(laws, constants(0.3, intervals={"kappa": (0.1, 0.5)},
                                         residuals=Residuals((0.05,), 0.07, 0.01, 0.01)))
    today = predict_distillation(laws, 500e6, 10e9, teacher_params=N, teacher_tokens=30e9).prediction
    for pool in (None, 40e9):   # no pool, or a pool no run repeats
        student = law.student(500e6, 10e9, pool, law.alone(N, 30e9, pool))
        assert (student.value, student.loss.low, student.loss.high) == (today.value, today.low, today.high)
        assert student.penalty == 0.0


def test_a_student_pays_kappa_of_its_teachers_penalty_and_lam_of_its_sizes_own(laws):
    """One pricing of the student's own repetition: lam times what its size pays trained alone on the
    pool (the supervised law's penalty there), as the fit measures it."""
    law = DataLimitedLaw(laws, constants(0.4, 0.5))
    teacher = law.alone(3e9, 1.6e9, U)
    student = law.student(N, D, U, teacher)
    own = law.alone(N, D, U).penalty
    assert law.alone_penalty(N, D, U) == pytest.approx(own)
    assert student.value == pytest.approx(float(student.fresh.value) + 0.4 * teacher.penalty + 0.5 * own, rel=1e-12)
    assert student.generation is None   # a larger teacher: not a chain's


def test_a_student_beats_its_same_size_teacher_when_it_inherits_part_of_a_large_penalty(laws):
    teacher = DataLimitedLaw(laws, constants(0.3, 0.3)).alone(N, D, U)
    assert teacher.penalty > 0.3   # repeating 16 times costs the teacher a lot
    assert DataLimitedLaw(laws, constants(0.3, 0.3)).student(N, D, U, teacher).value < teacher.value
    # inheriting the whole penalty and paying its own on top, the student is worse than its teacher
    assert DataLimitedLaw(laws, constants(1.0, 0.2)).student(N, D, U, teacher).value > teacher.value


def test_a_chain_settles_its_penalty_at_lam_p_over_one_minus_kappa_the_gains_falling_by_kappa(laws):
    law = DataLimitedLaw(laws, constants(0.4, 0.5))
    chain = law.chain(N, D, U, generations=8)
    states = chain.generations
    assert len(states) == 9 and states[0].role == "alone" and [s.generation for s in states] == list(range(9))
    P = states[0].penalty
    penalties = [s.penalty for s in states]
    for before, after in zip(penalties, penalties[1:]):
        assert after == pytest.approx(0.4 * before + 0.5 * P, rel=1e-9)
    assert penalties[-1] == pytest.approx(0.5 * P / 0.6, rel=1e-3)
    steps = np.diff(penalties)
    assert steps[1:] / steps[:-1] == pytest.approx(0.4, rel=1e-6)
    fresh = [float(s.fresh.value) for s in states]
    assert all(b > a for a, b in zip(fresh, fresh[1:]))   # on fresh data self-distillation drifts up
    assert chain.stops_gaining is not None and chain.stops_paying is not None


def test_an_ensemble_removes_a_power_of_k_of_a_members_loss_towards_eta(laws):
    law = DataLimitedLaw(laws, constants(eta=0.06, gamma=0.8))
    one = law.alone(N, D, U)
    assert law.ensemble(N, D, U, 1).value == pytest.approx(one.value)
    for k in (2, 4, 8, 1000):
        ensemble = law.ensemble(N, D, U, k)
        share = 0.06 * (1 - k ** -0.8)
        assert ensemble.value == pytest.approx(one.value * (1 - share), rel=1e-12)
        assert float(ensemble.fresh.value) == pytest.approx(float(one.fresh.value) * (1 - share), rel=1e-12)
    gains = [one.value - law.ensemble(N, D, U, k).value for k in (2, 4, 8, 16, 10 ** 6)]
    assert all(b > a for a, b in zip(gains, gains[1:])) and gains[-1] < 0.06 * one.value
    for bad in (0, 2.5, True):
        with pytest.raises(ParameterError):
            law.ensemble(N, D, U, bad)


def test_a_student_of_an_ensemble_keeps_theta_of_its_gain_over_the_student_of_one_member(laws):
    law = DataLimitedLaw(laws, constants(0.4, 0.5, eta=0.06, gamma=0.8, theta=0.5))
    one = law.student(N, D, U, law.alone(N, D, U))
    for k in (2, 4, 8):
        ensemble = law.ensemble(N, D, U, k)
        student = law.student(N, D, U, ensemble)
        assert student.members == k
        assert student.value == pytest.approx(one.value - 0.5 * (ensemble.member.value - ensemble.value), rel=1e-12)
    # theta at most 1: never more than the whole gain on top of what one member's student gets
    with pytest.raises(ParameterError):
        constants(theta=1.2)


def test_the_shipped_student_of_an_ensemble_of_8_stays_above_its_ensemble_at_2_7b():
    """At 2.7B on a 100M pool with 1.2B tokens per model: the student keeps less than the whole of its
    ensemble's gain over one member (it was 130-166% before the ensemble's gain grew with k)."""
    law = DataLimitedLaw(load_laws("busbridge2025"))
    N_, D_, U_ = 2.7e9, 1.2e9, 100e6
    one = law.alone(N_, D_, U_)
    for k in (2, 4, 8):
        ensemble = law.ensemble(N_, D_, U_, k)
        student = law.student(N_, D_, U_, ensemble)
        kept = (one.value - student.value) / (one.value - ensemble.value)
        assert 0 < kept < 1 and student.value > ensemble.value


def test_a_measured_teacher_s_fresh_loss_takes_off_its_pool_s_penalty(laws):
    law = DataLimitedLaw(laws, constants())
    unknown = law.measured_teacher(3.4)
    assert float(unknown.fresh.value) == 3.4 and unknown.penalty == 0.0
    alone = law.alone(N, D, U)
    known = law.measured_teacher(3.4, N, D, U)
    assert known.penalty == pytest.approx(alone.penalty)
    with pytest.raises(ParameterError):
        law.measured_teacher(3.4, U=U)


def test_a_loss_interval_adds_the_constants_spread_and_the_residual(laws):
    teacher = DataLimitedLaw(laws, constants(0.5)).alone(N, D, U)
    tight = DataLimitedLaw(laws, constants(0.5)).student(N, D, U, teacher)
    wide = DataLimitedLaw(laws, constants(0.5, intervals={"kappa": (0.2, 0.8)})).student(N, D, U, teacher)
    assert wide.value == tight.value
    below, above = tight.value - tight.loss.low, tight.loss.high - tight.value
    spread = 0.3 * teacher.penalty
    assert wide.value - wide.loss.low == pytest.approx(np.hypot(below, spread), rel=1e-9)
    assert wide.loss.high - wide.value == pytest.approx(np.hypot(above, spread), rel=1e-9)
    noisy = DataLimitedLaw(laws, constants(0.5, residuals=Residuals((0.1,), 0.2, 0.0, 0.0))).student(N, D, U, teacher)
    half = 1.6448536269514722 * 0.1 * DataLimitedLaw(laws, constants()).alone_penalty(N, D, U)
    assert noisy.residual == pytest.approx(0.1 * teacher.penalty, rel=1e-6)
    assert noisy.value - noisy.loss.low == pytest.approx(np.hypot(below, half), rel=1e-6)


def test_beyond_the_measured_range_a_delta_that_straddles_0_cannot_tell_and_a_clear_one_keeps_its_verdict(laws):
    measured = MeasuredRange((1e9, 2e9), (1.0, 64.0), (1.0, 100.0), (2, 8))
    inside = DataLimitedLaw(laws, constants(0.4, 0.5, measured=measured))
    chain = inside.chain(N, D, U, 2)
    assert not chain.generations[1].beyond and chain.gains[0].verdict != CANNOT_TELL
    far = DataLimitedLaw(laws, constants(0.4, 0.5, measured=MeasuredRange((1e4, 1e5), (1.0, 64.0), (1.0, 100.0))))
    state = far.chain(N, D, U, 2).generations[1]
    assert state.distance["params"] == pytest.approx(N / 1e5)
    # the constants' part spans every admissible corner: from no penalty to the whole of it
    assert state.loss.low <= float(state.fresh.value) + 1e-9
    assert far.chain(N, D, U, 2).gains[0].verdict == CANNOT_TELL
    # a Delta clear of 0 at every admissible constant keeps its verdict there
    tiny = far.alone(N, D, 1e6)   # 800 epochs: training alone pays far more than any student of a fresh teacher
    student = far.student(N, D, None, far.alone(N, 30e9, None))
    delta = difference(student, tiny)
    assert delta.high < 0 and delta.verdict == "distill"


def test_the_shipped_constants_file_is_of_this_form_and_an_earlier_one_is_refused(tmp_path):
    record = json.loads(CONSTANTS_FILE.read_text())
    assert record["format"] == 2 and set(record["shares"]) == {"kappa", "lambda", "eta", "gamma", "theta"}
    loaded = load_constants()
    for name in ("kappa", "lam", "eta", "gamma", "theta"):
        c = getattr(loaded, name)
        assert c.interval[0] <= c.value <= c.interval[1]
    assert loaded.draws.shape[1] == 5 and len(loaded.draws) >= 100
    assert DataLimitedConstants.from_dict(loaded.to_dict()).to_dict() == loaded.to_dict()
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"kappa": {"value": 0.7, "interval": [0.6, 0.8]},
                               "eta": {"value": 0.2, "interval": [0.1, 0.3]}}))
    with pytest.raises(UserError, match="earlier form.*refit them"):
        load_constants(old)


def test_every_state_passes_through_finish(laws, monkeypatch):
    """One place a check on what the law returns goes (a loss no worse than a guess, say)."""
    seen = []
    law = DataLimitedLaw(laws, constants())
    real = law.finish
    monkeypatch.setattr(law, "finish", lambda state: seen.append(state.role) or real(state))
    law.chain(N, D, U, 2)
    law.student(N, D, U, law.ensemble(N, D, U, 4))
    law.measured_teacher(3.0)
    assert seen.count("alone") >= 2 and "ensemble" in seen and "teacher" in seen and seen.count("student") >= 3
