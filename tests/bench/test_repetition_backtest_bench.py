"""bench/laws/repetition_backtest.py --forms: the over-fitting forms it scores add nothing at one epoch,
rise with epochs for a model large for its unique data and stay below the uniform guess's loss ln V,
and the fit of a form is never refused on a step that leaves R_D*'s box (the bench stopped there)."""

from __future__ import annotations

import dataclasses

import numpy as np

from distillscale.laws.lawset import load_laws
from distillscale.laws.repetition import PUBLISHED, predict_repeated
from tests.conftest import load_bench


def bench():
    return load_bench("laws/repetition_backtest.py")


def test_the_over_fitting_forms_start_at_the_plain_law_and_rise_toward_the_uniform_loss():
    module = bench()
    law = dataclasses.replace(load_laws("busbridge2025").supervised, repetition=PUBLISHED)
    epochs = np.array([1.0, 4.0, 30.0, 300.0, 3000.0])
    N, U = np.full(5, 1e9), np.full(5, 1e8)   # N/U = 10: a model large for its data
    D = epochs * U
    base = np.asarray(predict_repeated(law, PUBLISHED, N, D, U), float)
    forms = module._forms(N, D, U, law)
    rising = forms["+ (ln V - L)(1 - exp(-(x/x0)^b)), x = (D/U-1)(N/U)^a"][0]([1.0, np.log(300.0), 0.0], base)
    assert rising[0] == base[0] and np.all(np.diff(rising) > 0) and rising[-1] <= module.UNIFORM_LOSS
    assert rising[-1] > 0.99 * module.UNIFORM_LOSS   # far past the onset: near a uniform guess
    onset = forms["R_D* = R0 (N/U)^-|k|, + c ln(x/x0)^2 past x0"]
    before = onset[0]([np.log(PUBLISHED.R_D_star), 0.0, 1.0, -3.0, np.log(1e6)], base)   # x0 past every run
    np.testing.assert_allclose(before, base, rtol=1e-3)
    # a step far outside R_D*'s box (exp(800)) is scored, not refused
    start = forms["R_D* = R0 (N/U)^-k"][1]
    theta = module._fit_form(forms["R_D* = R0 (N/U)^-k"][0], start, base, base * 1.01, np.ones(5, bool))
    assert np.all(np.isfinite(theta))
    assert np.isfinite(forms["R_D* = R0 (N/U)^-k"][0]([800.0, 0.0], base)).all()
