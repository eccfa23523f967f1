"""The data-limited law's fitter (laws.data_limited_fit): every constant recovered from runs the law itself
made (every generation, the larger teacher's student, ensembles of several sizes and their students), the
bootstrap over cells, the bounds, what a run set cannot tell, and the left-out checks."""

from __future__ import annotations

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.laws.data_limited_check import left_out
from distillscale.laws.data_limited_fit import bootstrap, fit_constants, fit_law
from distillscale.laws.data_limited_runs import MeasuredRun, observations
from distillscale.laws.data_limited_form import Shares

TRUTH = Shares(kappa=0.3, lam=0.6, eta=0.06, gamma=0.8, theta=0.5)
POOLS = {"256K": 0.0, "16K": 0.6, "4K": 1.4}   # the alone penalty each pool costs (nats/token)


def runs_made_by(shares: Shares = TRUTH, corpora=("a", "b", "c", "d"), noise: float = 0.0, seed: int = 0,
                 ks=(2, 3), generations: int = 4) -> list[MeasuredRun]:
    """Runs as the bench records them, each loss the law's (plus `noise`)."""
    rng = np.random.default_rng(seed)
    out = []

    def run(corpus, pool, name, role, loss, **kw):
        out.append(MeasuredRun(corpus, f"d2-u{pool}-{name}", role, pool, 256000.0, float(loss + noise * rng.normal()),
                               params=5e4 if role != "larger" else 1.8e5, **kw))
    for i, corpus in enumerate(corpora):
        F0, drift, P_T_extra = 3.3 + 0.2 * i, 0.04, 0.15
        F_T_larger = F0 - 0.1
        for pool, P in POOLS.items():
            cell = f"d2-u{pool}"
            fresh = pool == "256K"
            for s in range(3):
                run(corpus, pool, f"alone-s{s}", "alone", F0 + P, seed=s)
            L, F, p = F0 + P, F0, P
            chain = [L]
            for g in range(1, (2 if fresh else generations) + 1):
                F = F + drift * 0.4 ** (g - 1)
                p = float(shares.student_penalty(p, P))
                run(corpus, pool, f"gen{g}", "chain", F + p, generation=g,
                    teachers=(f"{cell}-alone-s0" if g == 1 else f"{cell}-gen{g - 1}",))
                chain.append(F + p)
            run(corpus, pool, "larger", "larger", F_T_larger + P + P_T_extra * (P > 0))
            F_S = F0 + 0.02
            run(corpus, pool, "from-larger", "student-of-larger",
                F_S + float(shares.student_penalty(P + P_T_extra * (P > 0), P)), teachers=(f"{cell}-larger",))
            for k in ks:
                L1 = F0 + P
                Lk = L1 * (1 - float(shares.ensemble_share(k)))
                student = chain[1] - float(shares.ensemble_student_gain(L1 - Lk))
                out.append(MeasuredRun(corpus, f"{cell}-ensemble{k}", "ensemble", pool, 256000.0,
                                       float(student + noise * rng.normal()), params=5e4, members=k,
                                       teachers=tuple(f"{cell}-alone-s{s}" for s in range(k)),
                                       teacher_val_loss=float(Lk + noise * rng.normal())))
    return out


def test_every_constant_is_recovered_from_runs_the_law_made():
    fit = fit_constants(observations(runs_made_by()))
    for name in ("kappa", "lam", "eta", "gamma", "theta"):
        assert float(getattr(fit.shares, name)) == pytest.approx(float(getattr(TRUTH, name)), abs=2e-3), name
    assert fit.rho == pytest.approx(0.4)


def test_the_larger_teachers_students_and_every_generation_are_fitted_on():
    """Every student of a larger teacher with its fresh twins counts (a cell keyed by its student, not by
    the teacher's depth), and every generation of every chain."""
    obs = observations(runs_made_by())
    assert len(obs.students) == 4 * 2 and len(obs.chains) == 4 * 2
    assert all(len(c.losses) == 5 for c in obs.chains) and all(len(c.fresh) == 3 for c in obs.chains)
    # generation 1 alone cannot tell kappa from lam: a law with their sum and another split fits it as well
    other = Shares(0.6, 0.3, TRUTH.eta, TRUTH.gamma, TRUTH.theta)
    first_only = [r for r in runs_made_by(other) if r.role != "chain" or r.generation == 1]
    truth_first = [r for r in runs_made_by() if r.role != "chain" or r.generation == 1]
    same = {r.run_id: r.val_loss for r in first_only if r.generation == 1}
    assert same == pytest.approx({r.run_id: r.val_loss for r in truth_first if r.generation == 1})


def test_the_bootstrap_resamples_cells_holds_the_truth_and_ignores_the_runs_order():
    runs = runs_made_by(noise=0.01, seed=3)
    obs = observations(runs)
    draws = bootstrap(obs, draws=60)
    assert draws.shape == (60, 6)
    assert np.allclose(draws, bootstrap(observations(runs[::-1]), draws=60))
    for i, name in enumerate(("kappa", "lam", "eta", "gamma", "theta")):
        low, high = np.quantile(draws[:, i], [0.02, 0.98])
        assert low - 0.05 <= float(getattr(TRUTH, name)) <= high + 0.05, name


def test_the_shares_stay_in_their_bounds_where_noisy_runs_would_push_them_out():
    runs = runs_made_by(Shares(0.95, 0.4, 0.06, 0.8, 0.5), noise=0.03, seed=1)
    fit = fit_law(runs, draws=40)
    assert fit.draws[:, 0].max() <= 1.0 and fit.draws[:, 1].min() >= 0.0 and fit.draws[:, 4].max() <= 1.0
    assert 0.0 <= float(fit.fit.shares.theta) <= 1.0


def test_one_ensemble_size_cannot_tell_gamma_so_the_fallback_is_kept_and_said():
    runs = runs_made_by(ks=(2,), corpora=("a", "b"))
    fit = fit_law(runs, draws=20, fallback=Shares(0.3, 0.6, 0.1, 0.77, 0.4))
    assert float(fit.fit.shares.gamma) == 0.77
    assert any("gamma" in note for note in fit.notes)
    assert fit.measured.members == (2, 2)


def test_runs_without_a_chain_or_a_larger_teacher_are_refused_in_one_line():
    runs = [r for r in runs_made_by() if r.role not in ("chain", "student-of-larger")]
    with pytest.raises(UserError, match="nothing fits kappa and lambda"):
        fit_law(runs, draws=5)


def test_left_out_each_corpus_is_predicted_by_the_others_and_the_law_beats_both_naive_rules_on_its_own_runs():
    runs = runs_made_by(noise=0.002, seed=5)
    out = left_out(runs, draws=40)
    assert {c.group[0] for c in out.checks} == {"a", "b", "c", "d"}
    summary = out.summary()
    later = summary["later_generations"]
    assert later["law"]["mean"] < later["as_generation_1"]["mean"] and later["law"]["mean"] < later["as_alone"]["mean"]
    assert later["law"]["worst"] < later["as_generation_1"]["worst"]
    assert summary["coverage"]["all"]["covered"] >= 0.8 * summary["coverage"]["all"]["of"]
    assert summary["signs"]["right"] == summary["signs"]["clear"]
