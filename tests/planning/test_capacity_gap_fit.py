"""MiniMA's law of capacity gap fitted to runs (`planning.teacher.fit_capacity_gap`): each student
size's optimal teacher from a parabola in log N_T through the best teacher and its neighbours, then
N_T* = k N_S with a bootstrap interval that is never zero-width."""

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.planning.teacher import fit_capacity_gap, optimal_teacher_size

TEACHERS = 1e4 * 2.0 ** np.arange(7)  # 10K to 640K, a factor of 2 apart


def _runs(k, sizes=(1e4, 2e4, 4e4), seeds=1, noise=0.0, rng=None):
    """Student losses exactly quadratic in log N_T, lowest at N_T = k N_S (plus noise per seed)."""
    rows = []
    for size in sizes:
        for teacher in TEACHERS:
            for _ in range(seeds):
                loss = 3.0 + 0.04 * np.log(teacher / (k * size)) ** 2
                rows.append((size, teacher, loss + (rng.normal(0, noise) if noise else 0.0)))
    return [np.array(column) for column in zip(*rows)]


def test_the_vertex_through_the_best_teacher_and_its_neighbours():
    # log N_T = 0, 1, 2 with losses 2, 1, 1.5: the parabola 0.75 x^2 - 1.75 x + 2 has its vertex at 7/6
    value, method = optimal_teacher_size(np.exp([2.0, 0.0, 1.0]), [1.5, 2.0, 1.0])
    assert method == "parabola" and np.log(value) == pytest.approx(7 / 6)
    # the best teacher is the largest tried: the optimum is at or beyond it, a bound
    assert optimal_teacher_size([1.0, 2.0, 4.0], [3.0, 2.0, 1.0]) == (4.0, "edge")


def test_k_is_recovered_with_an_interval_that_holds_it_and_is_not_zero_width():
    law = fit_capacity_gap(*_runs(2.5), bootstrap=200)
    assert law.ratio == pytest.approx(2.5, rel=1e-9)  # exact losses on a parabola: exact vertices
    assert [o.teacher_params / o.student_params for o in law.optima] == pytest.approx([2.5] * 3, rel=1e-9)
    low, high = law.interval
    assert low < 2.5 < high and high / low > 1.2  # at least the grid's resolution (a factor of 2 apart)
    assert not law.bounded and law.contains(2.5) and not law.contains(10.0)
    for optimum in law.optima:
        assert optimum.interval[0] < optimum.teacher_params < optimum.interval[1]


def test_seed_noise_widens_the_interval_and_it_still_holds_k():
    rng = np.random.default_rng(3)
    law = fit_capacity_gap(*_runs(4.0, seeds=3, noise=0.01, rng=rng), bootstrap=300, seed=1)
    exact = fit_capacity_gap(*_runs(4.0), bootstrap=300, seed=1)
    assert law.contains(4.0) and law.ratio == pytest.approx(4.0, rel=0.35)
    assert np.log(law.interval[1] / law.interval[0]) >= np.log(exact.interval[1] / exact.interval[0]) - 1e-12
    assert all(o.runs == 3 * len(TEACHERS) for o in law.optima)


def test_an_optimum_beyond_the_largest_teacher_is_a_bound():
    law = fit_capacity_gap(*_runs(100.0, sizes=(1e4, 2e4)), bootstrap=50)
    assert law.bounded and {o.method for o in law.optima} == {"edge"}
    assert [o.teacher_params for o in law.optima] == [TEACHERS[-1]] * 2
    assert law.interval[0] < law.ratio < law.interval[1]


def test_one_student_size_has_no_law():
    with pytest.raises(UserError, match="at least two sizes"):
        fit_capacity_gap(*_runs(2.5, sizes=(1e4,)), bootstrap=10)
