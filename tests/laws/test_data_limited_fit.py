"""The data-limited law's fits (laws.data_limited_fit): kappa and lambda recovered from pairs made by the
law itself, eta from ensembles made by it, and bootstrap intervals that hold the truth."""

from __future__ import annotations

import numpy as np
import pytest

from distillscale.laws.data_limited_fit import (EnsemblePair, StudentPair, bootstrap_kappa_lambda, fit_eta,
                                                fit_kappa_lambda, interval)


def _pairs(kappa: float, lam: float, noise: float = 0.0) -> list[StudentPair]:
    rng = np.random.default_rng(3)
    pairs = []
    for i in range(8):
        F_T, F_S = 3.0 + 0.1 * i, 3.2 + 0.05 * i
        L_T = F_T + rng.uniform(0.05, 0.6)
        penalty = rng.uniform(0.1, 0.5)
        L_S = F_S + kappa * (L_T - F_T) + lam * penalty + noise * rng.normal()
        pairs.append(StudentPair(L_T, F_T, L_S, F_S, penalty, group=i // 2))
    return pairs


def test_kappa_and_lambda_are_recovered_from_the_laws_own_pairs():
    fit = fit_kappa_lambda(_pairs(0.4, 0.3))
    assert fit.kappa == pytest.approx(0.4) and fit.lam == pytest.approx(0.3)
    assert fit.residual_rms == pytest.approx(0.0, abs=1e-12) and fit.pairs == 8


def test_the_bootstrap_interval_holds_the_truth_and_is_the_same_in_any_order():
    pairs = _pairs(0.4, 0.3, noise=0.01)
    draws = bootstrap_kappa_lambda(pairs, draws=200)
    low, high = interval(draws[:, 0])
    assert low < 0.4 < high and high - low < 0.5
    assert np.allclose(draws, bootstrap_kappa_lambda(pairs[::-1], draws=200))


def test_eta_is_recovered_from_ensembles_made_by_the_law():
    eta = 0.6
    pairs = [EnsemblePair(k, L_1, F_1, L_1 - eta * (1 - 1 / k) * (L_1 - F_1))
             for k, L_1, F_1 in ((2, 3.5, 3.1), (3, 3.6, 3.0), (2, 4.0, 3.2))]
    assert fit_eta(pairs) == pytest.approx(eta)


def test_the_shares_stay_inside_zero_and_one_where_noisy_pairs_would_push_them_out():
    """Pairs whose students gained more than their teachers' whole penalty (noise) would give a negative
    lambda by plain least squares: the fit bounds each share to [0, 1], and so every bootstrap draw."""
    pairs = [StudentPair(L_T=3.0 + d, F_T=3.0, L_S=3.1 + 1.2 * d - 0.3 * p, F_S=3.1, penalty_alone=p, group=i)
             for i, (d, p) in enumerate([(0.1, 0.3), (0.3, 0.1), (0.5, 0.4), (0.2, 0.5)])]
    plain, *_ = np.linalg.lstsq(np.array([[0.1, 0.3], [0.3, 0.1], [0.5, 0.4], [0.2, 0.5]]),
                                np.array([1.2 * d - 0.3 * p for d, p in [(0.1, 0.3), (0.3, 0.1), (0.5, 0.4), (0.2, 0.5)]]),
                                rcond=None)
    assert plain[0] > 1 and plain[1] < 0
    fit = fit_kappa_lambda(pairs)
    assert 0.0 <= fit.kappa <= 1.0 and fit.lam == 0.0   # lambda held at its bound, kappa refitted there
    draws = bootstrap_kappa_lambda(pairs, draws=50)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
