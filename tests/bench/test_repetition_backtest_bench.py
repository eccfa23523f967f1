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


def test_the_multiplicative_over_fitting_forms_start_at_the_decay_and_rise_past_their_knee():
    module = bench()
    law = dataclasses.replace(load_laws("busbridge2025").supervised, repetition=PUBLISHED)
    epochs = np.array([1.0, 4.0, 30.0, 300.0, 3000.0])
    N, U = np.full(5, 1e9), np.full(5, 1e8)   # N/U = 10
    D = epochs * U
    base = np.asarray(predict_repeated(law, PUBLISHED, N, D, U), float)
    forms = module._forms(N, D, U, law)
    decay = [np.log(PUBLISHED.R_D_star), 0.0]   # R_D* the law's own, not varying with N/U: the base itself
    kinked = forms["R_D* = R0 (N/U)^-|k|, * (x/x0)^c past x0"][0](decay + [1.0, np.log(0.5), np.log(1e3)], base)
    # x = (D/U - 1) N/U: 0, 30, 290, 2990, 29990; the knee at 1000 leaves the first three at the base
    np.testing.assert_allclose(kinked[:3], base[:3], rtol=1e-9)
    np.testing.assert_allclose(kinked[3:] / base[3:], (np.array([2990.0, 29990.0]) / 1e3) ** 0.5, rtol=1e-9)
    smooth = forms["R_D* = R0 (N/U)^-|k|, * exp(c softplus(ln(x/x0)))"][0](decay + [1.0, np.log(0.5), np.log(1e3)], base)
    # softplus: nothing at one epoch (x = 0), a little before the knee, the power law past it
    assert smooth[0] == base[0] and np.all(smooth[1:] > base[1:]) and np.all(np.diff(smooth / base) > 0)
    capped = forms["R_D* = R0 (N/U)^-|k|, L e^(c (D/U-1)(N/U)^a) up to ln V"][0](decay + [1.0, np.log(1e-3)], base)
    # c x = 0.03, 0.29, 2.99, 29.99: rising, then held at the uniform guess's loss
    assert capped[0] == base[0] and np.all(np.diff(capped[1:4]) > 0)
    assert np.all(capped[3:] == module.UNIFORM_LOSS) and np.all(capped <= module.UNIFORM_LOSS)


def test_each_form_is_scored_leaving_one_curve_out_and_fitted_on_longer_runs(monkeypatch):
    module = bench()
    law = dataclasses.replace(load_laws("busbridge2025").supervised, repetition=PUBLISHED)
    N, U = np.repeat([1e8, 4e8, 1e9], 8), np.tile(np.repeat([1e8, 4e8], 4), 3)
    D = U * np.tile([1.0, 2.0, 32.0, 128.0], 6)
    base = np.asarray(predict_repeated(law, PUBLISHED, N, D, U), float)
    loss = base * (D / U) ** 0.01   # what `+ k ln(D/U)` with k = 0.01 says
    forms = module._forms(N, D, U, law)
    monkeypatch.setattr(module, "_forms", lambda *a: {"+ k ln(D/U)": forms["+ k ln(D/U)"]})
    row = module.other_forms(N, D, U, loss, base, law)["+ k ln(D/U)"]
    assert {"leave one curve out", "fitted on <= 16 epochs, beyond", "fitted on <= 64 epochs, beyond"} <= set(row)
    assert row["leave one curve out"]["all"]["n"] == 12 and row["leave one curve out"]["all"]["mean_abs_error"] < 1e-4
    assert row["fitted on <= 16 epochs, beyond"]["n"] == 12 and row["fitted on <= 64 epochs, beyond"]["n"] == 6
    assert row["fitted on <= 16 epochs, beyond"]["mean_abs_error"] < 1e-4


def test_the_curved_decay_is_the_law_s_own_at_n_over_u_of_one_and_bends_only_elsewhere():
    module = bench()
    law = dataclasses.replace(load_laws("busbridge2025").supervised, repetition=PUBLISHED)
    epochs = np.array([1.0, 4.0, 30.0, 300.0, 1.0, 4.0, 30.0, 300.0])
    N, U = np.repeat([1e8, 1e9], 4), np.full(8, 1e8)   # N/U = 1, then 10
    D = epochs * U
    base = np.asarray(predict_repeated(law, PUBLISHED, N, D, U), float)
    form = module._forms(N, D, U, law)["R_D* = R0 (N/U)^(-k - k2 ln(N/U)), + (ln V - L)(1 - exp(-(x/x0)^b))"][0]
    no_rise = [1.0, np.log(1e12), 0.0]   # the onset past every run
    flat = form([np.log(PUBLISHED.R_D_star), 0.0, 0.0] + no_rise, base)
    np.testing.assert_allclose(flat, base, rtol=1e-6)
    curved = form([np.log(PUBLISHED.R_D_star), 0.0, 0.5] + no_rise, base)   # R_D* = 15.4 x 10^(-0.5 ln 10) at N/U = 10
    np.testing.assert_allclose(curved[:4], base[:4], rtol=1e-6)
    assert curved[4] == base[4] and np.all(curved[5:] > base[5:] * 1.001)   # a smaller R_D*: repeats worth less
