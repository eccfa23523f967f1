"""`plan` under a law fitted with an interaction form (issue 55): the compute-optimal N and D come
from that law (its N-dependent data term), not a chinchilla shortcut, and the plan says which form."""

import json

import numpy as np
import pytest

import distillscale as ds
from distillscale.laws.interaction_law import FarseerLaw, InteractionLaw

BUDGET = 1e21


def synthetic_runs(truth, sizes=np.geomspace(2e7, 6e8, 6), noise=0.0005, seed=0):
    rng = np.random.default_rng(seed)
    N = np.repeat(sizes, 5)
    D = N * np.tile([5.0, 10.0, 20.0, 40.0, 80.0], len(sizes))
    return N, D, truth.predict(N, D) * np.exp(rng.normal(0, noise, len(N)))


def brute_force_optimum(law, budget, low=1e6, high=1e12, points=200_001):
    """The N minimising L(N, C / 6N) on a log grid (the plan's "simple" FLOPs: 6N per token), under
    the law's own form: the planner searches without a correction beyond the runs (`planning.solver`)."""
    sizes = np.geomspace(low, high, points)
    tokens = budget / (6 * sizes)
    keep = tokens >= 1e6
    return sizes[keep][np.argmin(law.raw_predict(sizes[keep], tokens[keep]))], np.log(high / low) / (points - 1)


@pytest.mark.parametrize("form, truth", [
    ("interaction", InteractionLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, beta1=-0.006, N0=1e8)),
    ("farseer", FarseerLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, kappa=0.15, nu=0.04, N0=1e8)),
])
@pytest.mark.slow
def test_plan_under_an_interaction_law_matches_a_brute_force_search(form, truth, tmp_path):
    N, D, loss = synthetic_runs(truth)
    fit = ds.fit_supervised(N, D, loss, form=form, bootstrap=0, backtest=False)
    law = fit.law
    assert law.form == form and not set(law.fit.not_identified) & {"beta1", "kappa", "nu"}
    path = tmp_path / "law.json"
    fit.save(path)
    plan = ds.plan_supervised(str(path), compute=BUDGET, flops="simple", min_params=1e6, max_params=1e12)
    best, step = brute_force_optimum(law, BUDGET)
    result = plan.supervised
    assert result.student_params == pytest.approx(best, rel=2 * step)
    assert result.tokens == pytest.approx(BUDGET / (6 * result.student_params), rel=1e-9)
    # Not a chinchilla shortcut: the chinchilla law refitted to the same runs plans elsewhere.
    plain = ds.fit_supervised(N, D, loss, form="chinchilla", bootstrap=0, backtest=False).law
    assert abs(np.log(brute_force_optimum(plain, BUDGET)[0] / best)) > 0.05
    # The plan says which form it planned under, in its text and its JSON.
    text = plan.as_text()
    assert f"supervised law form: {form} (" in text and ("beta1 = " in text if form == "interaction" else "nu = " in text)
    record = json.loads(plan.to_json())
    assert record["supervised_form"]["form"] == form


def test_plan_states_a_plain_form_and_an_unidentified_interaction():
    plan = ds.plan_supervised("chinchilla2022", compute=BUDGET)
    assert "supervised law form: chinchilla (one data exponent at every model size" in plan.as_text()
    truth = InteractionLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, beta1=0.0, N0=1e8)
    N, D, loss = synthetic_runs(truth, sizes=np.geomspace(2e7, 8e7, 3))
    fit = ds.fit_supervised(N, D, loss, form="interaction", bootstrap=0, backtest=False)
    text = ds.plan_supervised(fit, compute=BUDGET).as_text()
    assert "interaction with beta1 = 0 (its runs did not identify a data exponent that depends on N" in text
