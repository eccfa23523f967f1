import numpy as np
import pytest

from distillscale.laws.lbfgs import CONVERGED_GTOL, SCREENED_OUT, MultiStartResult
from distillscale.laws.ties import first_lowest

pytestmark = pytest.mark.last_bits  # which value is lower turns on the CPU's rounding


def test_values_equal_but_for_rounding_are_tied_and_the_first_wins():
    """Issue 57: which of two equal objective values is lower depends on the CPU's rounding; the
    choice must not. Ties go to the first in the stated order (starts, grid)."""
    assert first_lowest([3.0, 1.0 + 1e-14, 1.0, 2.0]) == 1
    assert first_lowest([3.0, 1.0, 1.0 + 1e-14, 2.0]) == 1
    assert first_lowest([2.0, 1.0 + 1e-6, 1.0]) == 2          # a real difference still counts
    assert first_lowest([np.nan, np.inf, 5.0]) == 2 and first_lowest([0.0, 1e-300, 0.0]) == 0
    assert list(first_lowest(np.array([[3.0, 1.0, 1.0 - 1e-13], [0.0, 0.0, -1.0]]), axis=1)) == [1, 2]


def test_the_best_start_is_the_first_of_those_at_one_minimum():
    funs = np.array([2.0, 1.0 + 1e-13, 1.0, 0.5])
    result = MultiStartResult(xs=np.arange(8.0).reshape(4, 2), funs=funs, nits=np.ones(4, int),
                              nfevs=np.ones(4, int), grad_norms=np.zeros(4),
                              statuses=np.array([CONVERGED_GTOL] * 3 + [SCREENED_OUT]))
    assert result.best == 1 and result.fun == funs[1]


def test_rounded_values_sort_ties_in_their_stated_order():
    from distillscale.laws.ties import rounded

    values = np.array([2.0, 1.0 + 1e-14, 1.0, np.nan, 0.0, 1.0 + 1e-6])
    assert list(np.argsort(rounded(values), kind="stable")) == [4, 1, 2, 5, 0, 3]
