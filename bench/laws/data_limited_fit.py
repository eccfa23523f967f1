"""The data-limited law's constants, fitted on measured runs (bench/data/data_limited_regime.json, made by
bench/distillation/data_limited.py; or the earlier bench/data/data_limited_runs.json, or any file of their
schema), checked left out a corpus at a time and a student size at a time, the forms it was chosen over,
and a figure of the chain by generation and the ensemble by k.

The fitter is the product's (src/distillscale/laws/data_limited_fit.py, the one `distillscale demo
--data-limited` fits a user's runs with); its form is `laws.data_limited_form`'s:

    student of a teacher (L_T, F_T):  L_S = F_S + kappa (L_T - F_T) + lam P_S
    chain:                           p_0 = P, p_g = kappa p_{g-1} + lam P   (p = L - F)
    ensemble of k trained alone:     L_k = L_1 (1 - eta (1 - k^-gamma))
    student of an ensemble:          the student of one member - theta (L_1 - L_k)

P_S is the student's size's penalty trained alone on the pool (its seeds' mean there minus on the 1-epoch
pool): the same pricing of a student's own repetition as the planner's (the supervised law's penalty
there). kappa and lam are fitted on every generation of every chain (each generation's step; a cell's
chains each) and every student of a larger teacher; eta and gamma on every ensemble's own loss (gamma
within the cells that measured two sizes or more); theta on every student of an ensemble. Intervals: all
five refitted together on (corpus, size, pool) cells resampled with replacement; the residuals out of
sample (each corpus predicted by the others' fit).

Left out a corpus at a time (the law fitted on the other corpora predicts each of its runs from its runs
trained alone and its 1-epoch runs, with the 90% interval the product gives:
`laws.data_limited_form.loss_interval`): generations 2..K against both naive rules (each as its chain's
measured generation 1; as the run alone it was distilled from), from generation 0 (what a plan knows) and from a
measured generation 1; coverage of the first generation, the chain's last, the larger teacher's students,
each ensemble size and its students (85-97% is the target); the sign of Delta against the seeds trained
alone wherever it exceeds two seeds' standard deviations; the cells whose gains exceed them. Left out a
student size at a time: each size predicted by the constants fitted on the other (3.4x apart in
parameters), its errors and coverage against the corpus folds': whether errors grow with the distance from
where the constants were measured. Then the forms rejected, each left out by corpus the same way.

Usage:
    python bench/laws/data_limited_fit.py [--runs FILE] [--draws N] [--json OUT] [--figure PNG] [--write]
        --runs: the runs (default: the file the shipped constants were fitted on, as their source says)
        --draws: bootstrap draws of the constants (default 400; the checks' folds take at most 200)
        --figure: draw the chain by generation and the ensemble by k, measured and predicted left out
        --write: store the constants in src/distillscale/laws/data_limited.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from distillscale.laws import data_limited_fit as fit_module
from distillscale.laws.data_limited import DataLimitedConstants, load_constants
from distillscale.laws.data_limited_check import LeftOutChecks, coverage, errors, left_out
from distillscale.laws.data_limited_fit import (KAPPA_GRID, chain_prediction, ensemble_prediction,
                                                ensemble_student_prediction, fit_constants, fit_law, fit_rho,
                                                student_prediction)
from distillscale.laws.data_limited_form import Z90, Shares
from distillscale.laws.data_limited_runs import Observations, load_runs, observations

ROOT = Path(__file__).resolve().parents[2]
CONSTANTS = ROOT / "src" / "distillscale" / "laws" / "data_limited.json"
NAMES = ("kappa", "lam", "eta", "gamma", "theta", "rho")
CHECK_DRAWS = 200
SOURCE = "measured at micro scale (bench/laws/data_limited_fit.py on {runs})"


def runs_file(source: str) -> Path:
    """The runs file constants were fitted on, as their source (`SOURCE`) names it."""
    found = re.search(r" on (\S+\.json)\)", source)
    if found is None:
        raise SystemExit(f"the constants' source ({source!r}) names no runs file: give --runs")
    path = Path(found.group(1))
    return path if path.is_absolute() else ROOT / path


def report(runs_path: Path, draws: int = fit_module.DRAWS, check_draws: int = CHECK_DRAWS) -> dict:
    """The fit, the left-out checks (by corpus and by size) and the rejected forms, as one record."""
    runs = load_runs(runs_path)
    law = fit_law(runs, draws)
    check_draws = min(check_draws, draws)
    by_corpus = left_out(runs, check_draws)
    sizes = {r.size for r in runs if r.role in ("alone", "chain")}
    by_size = left_out(runs, check_draws, by="size") if len(sizes) > 1 else None
    obs = observations(runs)
    return {"runs": str(runs_path), "n_runs": len(runs),
            "constants": {name: {"value": law.value(name), "interval": list(law.interval(name))} for name in NAMES},
            "draws": draws, "residuals": law.residuals.to_dict(), "measured": law.measured.to_dict(),
            "notes": list(law.notes),
            "fitted_on": {"cells": law.cells, "chains": law.chains,
                          "generations": sum(len(c.losses) - 1 for c in obs.chains),
                          "students_of_larger": law.students, "ensembles": law.ensembles,
                          "students_of_ensembles": law.ensemble_students},
            "left_out": {"summary": by_corpus.summary(), "from_first": from_first(by_corpus, obs),
                         "checks": [c.to_dict() for c in by_corpus.checks]},
            "ensembles_by_k": ensembles_by_k(obs, by_corpus),
            "by_size": None if by_size is None else distance_record(by_size, by_corpus),
            "rejected": rejected(obs), "_law": law}


def from_first(out: LeftOutChecks, obs: Observations) -> dict:
    """Generations 2..K predicted from a measured generation 1 (the law's steps after it, each corpus by
    the others' fit), against the two naive rules: mean and worst relative error."""
    law_errors, first_errors, alone_errors = [], [], []
    for corpus, law in out.fits.items():
        for cell in (c for c in obs.chains if c.corpus == corpus):
            predicted = chain_prediction(cell, law.fit.shares, law.fit.rho)
            for g in range(2, len(cell.losses)):
                truth = cell.losses[g]
                law_errors.append(abs(cell.losses[1] + predicted[g - 1] - predicted[0] - truth) / truth)
                first_errors.append(abs(cell.losses[1] - truth) / truth)
                alone_errors.append(abs(cell.losses[0] - truth) / truth)
    return {"law": errors(law_errors), "as_generation_1": errors(first_errors), "as_alone": errors(alone_errors),
            "n": len(law_errors)}


def ensembles_by_k(obs: Observations, out: LeftOutChecks) -> dict:
    """Per ensemble size: the share of a member's loss the ensemble removes, (L_1 - L_k) / L_1, measured
    (mean over cells) and predicted left out; the share of that gain its student keeps beyond the student
    of one member, (L_ref - L_S) / (L_1 - L_k), measured (median: a small gain makes it noisy)."""
    predicted: dict[int, list[float]] = {}
    for c in out.checks:
        if c.kind.startswith("ensemble of"):
            one = next(e.L_1 for e in obs.ensembles if e.group == c.group and e.members == c.members)
            predicted.setdefault(c.members, []).append((one - c.predicted) / one)
    table = {}
    for k in sorted({e.members for e in obs.ensembles}):
        items = [e for e in obs.ensembles if e.members == k]
        kept = [(e.one_member_student - e.student) / (e.L_1 - e.L_k) for e in items
                if e.student is not None and e.one_member_student is not None and e.L_1 > e.L_k]
        table[k] = {"cells": len(items), "measured_share": float(np.mean([(e.L_1 - e.L_k) / e.L_1 for e in items])),
                    "predicted_share": float(np.mean(predicted[k])) if k in predicted else None,
                    "student_keeps_median": float(np.median(kept)) if kept else None}
    return table


def distance_record(by_size: LeftOutChecks, by_corpus: LeftOutChecks) -> dict:
    """Each student size predicted by the constants fitted on the other, against the corpus folds (inside
    the measured range): per kind, errors and coverage; how far outside the fit's range each size lies; and
    how much wider the interval would have to be to cover 90% (the 90% quantile of |error| over its
    in-range half-width's standard deviation, over Z90), at that distance and inside."""
    def needed(checks) -> float | None:
        z = [abs(c.predicted - c.measured) / (c.half_width / Z90) for c in checks if c.half_width > 0]
        return float(np.quantile(z, 0.9) / Z90) if z else None

    folds = {}
    for size, law in by_size.fits.items():
        checks = [c for c in by_size.checks if c.group[1] == size]
        ratios = [law.measured.distance(c.params, c.epochs, c.params_per_unique_token) for c in checks]
        folds[size] = {"fitted_on": law.measured.to_dict(), "n": len(checks),
                       "distance": {name: max(r.get(name, 1.0) for r in ratios) for name in
                                    ("params", "epochs", "params_per_unique_token")},
                       "errors": errors([c.error for c in checks]), "coverage": coverage(checks),
                       "widen_to_cover_90": needed(checks)}
    kinds = by_size.kinds()
    inside = by_corpus.kinds()
    return {"folds": folds,
            "kinds": {kind: {"at_distance": {"errors": errors([c.error for c in checks]), "coverage": coverage(checks)},
                             "inside": {"errors": errors([c.error for c in inside.get(kind, [])]),
                                        "coverage": coverage(inside.get(kind, []))}}
                      for kind, checks in kinds.items()},
            "widen_to_cover_90": {"at_distance": needed(by_size.checks), "inside": needed(by_corpus.checks)},
            "checks": [c.to_dict() for c in by_size.checks]}


# --- the forms rejected, each left out a corpus at a time --------------------------------------------------

def _left_out_errors(obs: Observations, fit, predict) -> dict:
    """Mean and worst relative error of `predict(item, fitted)` over each corpus's items, `fit(obs without
    it)` fitted on the others; `predict` yields (prediction, truth) pairs per corpus."""
    corpora = sorted({g[0] for g in obs.groups()})
    errors = []
    for corpus in corpora:
        fitted = fit(obs.without(corpus))
        errors += [abs(p - t) / t for p, t in predict(obs, corpus, fitted)]
    return {"mean": float(np.mean(errors)), "worst": float(np.max(errors)), "n": len(errors)} if errors else None


def _by_k(obs: Observations, fit, predict) -> dict:
    """`_left_out_errors` of the ensembles (or their students) of each size k apart, the fit on all sizes."""
    def only(k):
        return lambda o, corpus, fitted: predict(replace(o, ensembles=tuple(e for e in o.ensembles if e.members == k)),
                                                 corpus, fitted)
    return {k: _left_out_errors(obs, fit, only(k)) for k in sorted({e.members for e in obs.ensembles})}


def _chain_items(obs, corpus, fitted, later_only=True):
    shares, rho = fitted
    for cell in (c for c in obs.chains if c.corpus == corpus):
        predicted = chain_prediction(cell, shares, rho)
        for g in range(2 if later_only else 1, len(cell.losses)):
            yield float(predicted[g - 1]), cell.losses[g]


def _point(obs):
    fit = fit_constants(obs)
    return fit.shares, fit.rho


# The form shipped before: kappa fitted on first and second generations and the ensemble of 2's student,
# the student's own penalty priced by the distilled R_D* (37) against the alone one (5.2) at its epochs,
# the chain predicted from generation 0's measured penalty; eta (1 - 1/k) of the member's penalty.
R_D_DISTILLED, R_D_SUPERVISED, D_EXPONENT = 37.0, 5.2, 0.3


def _own_share(epochs: float) -> float:
    def worth(r_star: float) -> float:
        effective = 1 + r_star * (1 - np.exp(-(epochs - 1) / r_star))
        return (effective / epochs) ** -D_EXPONENT - 1
    return float(worth(R_D_DISTILLED) / worth(R_D_SUPERVISED))


def _previous(obs: Observations, summary: dict):
    x, y = [], []
    for cell in obs.chains:
        share = _own_share(summary[cell.group].epochs) * cell.penalty
        for g in (1, 2):
            if g < len(cell.losses) and g < len(cell.fresh):
                x.append(cell.losses[g - 1] - cell.fresh[g - 1])
                y.append(cell.losses[g] - cell.fresh[g] - share)
    kappa = float(np.clip(np.dot(x, y) / np.dot(x, x), 0, 1))
    ens = [e for e in obs.ensembles if summary[e.group].epochs > 1]
    xe = np.array([(1 - 1 / e.members) * _penalty(obs, e) for e in ens])
    ye = np.array([e.L_1 - e.L_k for e in ens])
    eta = float(np.clip(xe @ ye / (xe @ xe), 0, 1)) if len(ens) else 0.0
    return kappa, eta, fit_rho(obs.chains)


def _penalty(obs: Observations, e) -> float:
    cell = next((c for c in obs.chains if c.group == e.group), None)
    return cell.penalty if cell is not None else 0.0


def rejected(obs: Observations) -> dict:
    """Each rejected form's left-out errors, beside the chosen form's, on the same items."""
    summary = {c.group: c for c in obs.cells}
    out = {}
    from_means = replace(obs, chains=tuple(c.from_means() for c in obs.chains))
    # chains, generations 2..K from generation 0
    out["chain_later_generations"] = {
        "chosen": _left_out_errors(obs, _point, _chain_items),
        "from_the_seeds_mean": _left_out_errors(from_means, _point, _chain_items),
        "chains_only": _left_out_errors(obs, lambda o: _point(Observations(o.chains, (), o.ensembles, o.cells)),
                                        _chain_items),
        "previous_kappa_recursion": _left_out_errors(obs, lambda o: _previous(o, summary), _previous_chain(summary)),
        "one_step_from_measured_teacher": _left_out_errors(obs, _one_step_fit, _one_step_chain),
        "own_share_held_at_the_distilled_r_star": _left_out_errors(obs, lambda o: _held_own_fit(o, summary),
                                                                   _held_own_chain(summary)),
    }
    out["chain_first_generation"] = {
        "chosen": _left_out_errors(obs, _point, _first_only),
        "from_the_seeds_mean": _left_out_errors(from_means, _point, _first_only),
        "previous_kappa_recursion": _left_out_errors(obs, lambda o: _previous(o, summary),
                                                     lambda o, c, f: _previous_chain(summary)(o, c, f, first=True)),
    }
    out["ensembles"] = {
        "chosen": _left_out_errors(obs, _point, _ensemble_items),
        "gamma_1": _left_out_errors(obs, lambda o: (fit_constants(o, gamma=1.0).shares, 0.0), _ensemble_items),
        "log_k_without_a_limit": _left_out_errors(obs, _log_k_fit, _log_k_items),
        "eta_by_pool_level": _left_out_errors(obs, _eta_by_level_fit, _eta_by_level_items),
        "share_of_penalty": _left_out_errors(obs, _penalty_form_fit, _penalty_form_items),
        "previous_eta_1_minus_1_over_k": _left_out_errors(obs, lambda o: _previous(o, summary),
                                                          _previous_ensemble(summary)),
    }
    out["ensembles_by_k"] = {
        "chosen": _by_k(obs, _point, _ensemble_items),
        "gamma_1": _by_k(obs, lambda o: (fit_constants(o, gamma=1.0).shares, 0.0), _ensemble_items),
        "log_k_without_a_limit": _by_k(obs, _log_k_fit, _log_k_items),
    }
    from_members = replace(obs, ensembles=tuple(e.from_members() for e in obs.ensembles))
    out["ensemble_students"] = {
        "chosen": _left_out_errors(obs, _point, _ensemble_student_items),
        "one_member_student_from_the_members": _left_out_errors(from_members, _point, _ensemble_student_items),
        "theta_by_k": _left_out_errors(obs, _theta_by_k_fit, _theta_by_k_items),
        "share_of_gain_over_one_member": _left_out_errors(obs, _over_member_fit, _over_member_items),
        "previous_student_of_the_mixture": _left_out_errors(obs, lambda o: _previous(o, summary),
                                                            _previous_ensemble_student(summary)),
    }
    out["ensemble_students_by_k"] = {
        "chosen": _by_k(obs, _point, _ensemble_student_items),
        "theta_by_k": _by_k(obs, _theta_by_k_fit, _theta_by_k_items),
    }
    out["larger_teacher_students"] = {
        "chosen": _left_out_errors(obs, _point, _larger_items),
        "chains_only": _left_out_errors(obs, lambda o: _point(Observations(o.chains, (), o.ensembles, o.cells)),
                                        _larger_items),
    }
    point = fit_constants(obs)
    kappas = _first_generation_profile(obs)
    out["first_generation_only"] = kappas
    out["fitted"] = {"chosen": point.row(),
                     "chains_only": fit_constants(Observations(obs.chains, (), obs.ensembles, obs.cells)).row(),
                     "one_step_from_measured_teacher": list(_one_step_fit(obs)[0]),
                     "own_share_held_at_the_distilled_r_star": _held_own_fit(obs, summary)[0],
                     "previous_kappa_eta": list(_previous(obs, summary)[:2]),
                     "from_the_seeds_mean": fit_constants(from_means).row(),
                     "log_k_a": _log_k_fit(obs), "eta_by_pool_level": _eta_by_level_fit(obs)[1],
                     "theta_by_k": {int(k): v for k, v in _theta_by_k_fit(obs)[1].items()}}
    return out


def _first_only(obs, corpus, fitted):
    shares, rho = fitted
    for cell in (c for c in obs.chains if c.corpus == corpus):
        yield float(chain_prediction(cell, shares, rho, 1)[0]), cell.losses[1]


def _previous_chain(summary):
    def predict(obs, corpus, fitted, first=False):
        kappa, _, rho = fitted
        for cell in (c for c in obs.chains if c.corpus == corpus):
            share = _own_share(summary[cell.group].epochs) * cell.penalty
            L, F = cell.losses[0], cell.fresh[0]
            for g in range(1, len(cell.losses)):
                F_next = fit_module.fresh_at(cell, g, rho)
                L, F = F_next + kappa * (L - F) + share, F_next
                if (first and g == 1) or (not first and g > 1):
                    yield L, cell.losses[g]
    return predict


def _one_step_fit(obs):
    """kappa and lam by least squares of each generation's penalty on its measured teacher's (levels)."""
    rho = fit_rho(obs.chains)
    x, y = [], []
    for cell in obs.chains:
        for g in range(1, len(cell.losses)):
            x.append([cell.losses[g - 1] - fit_module.fresh_at(cell, g - 1, rho), cell.penalty])
            y.append(cell.losses[g] - fit_module.fresh_at(cell, g, rho))
    for s in obs.students:
        x.append([s.L_T - s.F_T, s.own_penalty])
        y.append(s.L_S - s.F_S)
    from scipy.optimize import lsq_linear

    coef = lsq_linear(np.array(x), np.array(y), bounds=(0.0, 1.0), method="bvls").x
    return (float(coef[0]), float(coef[1])), rho


def _one_step_chain(obs, corpus, fitted):
    (kappa, lam), rho = fitted
    for cell in (c for c in obs.chains if c.corpus == corpus):
        p = cell.losses[0] - cell.fresh[0]
        for g in range(1, len(cell.losses)):
            p = kappa * p + lam * cell.penalty
            if g > 1:
                yield fit_module.fresh_at(cell, g, rho) + p, cell.losses[g]


def _held_own_fit(obs: Observations, summary: dict):
    """kappa on every generation's step and every larger teacher's student with the student's own share held
    at what the distilled R_D* gives at its pool's epochs (`_own_share`: 0.16 at 16, 0.24 at 64)."""
    rho = fit_rho(obs.chains)
    shares = {c.group: _own_share(summary[c.group].epochs) for c in obs.chains}
    y, b, a = fit_module._kappa_lambda_terms(obs.chains, obs.students, rho)
    held = np.array([shares[c.group] for c in obs.chains for _ in range(1, len(c.losses))]
                    + [_own_share(summary[s.group].epochs) for s in obs.students])
    sse = np.sum((b + held[:, None] * a - y[:, None]) ** 2, axis=0)
    return float(KAPPA_GRID[int(np.argmin(sse))]), rho


def _held_own_chain(summary):
    def predict(obs, corpus, fitted):
        kappa, rho = fitted
        for cell in (c for c in obs.chains if c.corpus == corpus):
            shares = Shares(kappa, _own_share(summary[cell.group].epochs), 0.0, 1.0, 0.0)
            predicted = chain_prediction(cell, shares, rho)
            for g in range(2, len(cell.losses)):
                yield float(predicted[g - 1]), cell.losses[g]
    return predict


def _ensemble_items(obs, corpus, fitted):
    shares = fitted[0]
    for e in (e for e in obs.ensembles if e.group[0] == corpus):
        yield float(ensemble_prediction(e, shares)), e.L_k


def _log_k_fit(obs):
    """a of L_1 - L_k = a ln(k) L_1: a gain growing with log k without a limit."""
    x = np.array([np.log(e.members) * e.L_1 for e in obs.ensembles])
    y = np.array([e.L_1 - e.L_k for e in obs.ensembles])
    return float(x @ y / (x @ x)) if x @ x > 0 else 0.0


def _log_k_items(obs, corpus, a):
    for e in (e for e in obs.ensembles if e.group[0] == corpus):
        yield e.L_1 * (1 - a * np.log(e.members)), e.L_k


def _level(obs: Observations, group) -> str:
    """A cell's pool level: fresh (no chain priced against a fresh twin) or its pool."""
    return group[2] if any(c.group == group for c in obs.chains) else "fresh"


def _eta_by_level_fit(obs):
    """eta of the chosen form fitted apart on each pool level (gamma the chosen one's)."""
    fit = fit_constants(obs)
    levels = {}
    for level in {_level(obs, e.group) for e in obs.ensembles}:
        items = [e for e in obs.ensembles if _level(obs, e.group) == level]
        levels[level] = fit_module.fit_eta(items, float(fit.shares.gamma))
    return fit.shares, levels


def _eta_by_level_items(obs, corpus, fitted):
    shares, levels = fitted
    for e in (e for e in obs.ensembles if e.group[0] == corpus):
        eta = levels.get(_level(obs, e.group), float(shares.eta))
        yield e.L_1 * (1 - eta * (1 - e.members ** -float(shares.gamma))), e.L_k


def _theta_by_k_fit(obs):
    """theta fitted apart for each ensemble size."""
    shares = _point(obs)[0]
    thetas = {}
    for k in {e.members for e in obs.ensembles}:
        theta = fit_module.fit_theta([e for e in obs.ensembles if e.members == k])
        thetas[k] = float(shares.theta) if theta is None else theta
    return shares, thetas


def _theta_by_k_items(obs, corpus, fitted):
    shares, thetas = fitted
    for e in (e for e in obs.ensembles if e.group[0] == corpus and e.student is not None
              and e.one_member_student is not None):
        L_k = float(ensemble_prediction(e, shares))
        yield e.one_member_student - thetas.get(e.members, float(shares.theta)) * (e.L_1 - L_k), e.student


def _penalty_form_fit(obs):
    """eta and gamma of L_1 - L_k = eta (1 - k^-gamma) P: the gain a share of the member's penalty."""
    gamma = fit_module.fit_gamma(obs.ensembles) or 1.0
    items = [(e, _penalty(obs, e)) for e in obs.ensembles]
    a = np.array([(1 - e.members ** -gamma) * p for e, p in items])
    y = np.array([e.L_1 - e.L_k for e, _ in items])
    return (float(np.clip(a @ y / (a @ a), 0, 1)) if a @ a > 0 else 0.0, gamma), None


def _penalty_form_items(obs, corpus, fitted):
    (eta, gamma), _ = fitted
    for e in (e for e in obs.ensembles if e.group[0] == corpus):
        yield e.L_1 - eta * (1 - e.members ** -gamma) * _penalty(obs, e), e.L_k


def _previous_ensemble(summary):
    def predict(obs, corpus, fitted):
        _, eta, _ = fitted
        for e in (e for e in obs.ensembles if e.group[0] == corpus):   # fresh data: no penalty, no gain
            yield e.L_1 - eta * (1 - 1 / e.members) * _penalty(obs, e), e.L_k
    return predict


def _ensemble_student_items(obs, corpus, fitted):
    shares = fitted[0]
    for e in (e for e in obs.ensembles if e.group[0] == corpus and e.student is not None
              and e.one_member_student is not None):
        yield float(ensemble_student_prediction(e, shares, ensemble_prediction(e, shares))), e.student


def _over_member_fit(obs):
    """theta of L_1 - L_S = theta (L_1 - L_k): a share of the ensemble's gain over one member trained alone."""
    used = [e for e in obs.ensembles if e.student is not None]
    a = np.array([e.L_1 - e.L_k for e in used])
    y = np.array([e.L_1 - e.student for e in used])
    return _point(obs)[0], float(np.clip(a @ y / (a @ a), 0, 1))


def _over_member_items(obs, corpus, fitted):
    shares, theta = fitted
    for e in (e for e in obs.ensembles if e.group[0] == corpus and e.student is not None):
        yield e.L_1 - theta * (e.L_1 - float(ensemble_prediction(e, shares))), e.student


def _previous_ensemble_student(summary):
    """The student of the mixture as of any teacher: its fresh twin plus kappa of the mixture's penalty
    (eta (1 - 1/k) of the member's removed) plus its own share."""
    def predict(obs, corpus, fitted):
        kappa, eta, _ = fitted
        for e in (e for e in obs.ensembles if e.group[0] == corpus and e.student is not None):
            cell = next((c for c in obs.chains if c.group == e.group), None)
            if cell is None:   # fresh data: the student of the mixture as generation 1 (no penalty to inherit)
                yield e.one_member_student, e.student
                continue
            F_S = cell.fresh[1] if len(cell.fresh) > 1 else cell.fresh[0]   # generation 1's fresh twin
            penalty_k = (1 - eta * (1 - 1 / e.members)) * cell.penalty
            yield F_S + kappa * penalty_k + _own_share(summary[e.group].epochs) * cell.penalty, e.student
    return predict


def _larger_items(obs, corpus, fitted):
    shares = fitted[0]
    for s in (s for s in obs.students if s.group[0] == corpus):
        yield float(student_prediction(s, shares)), s.L_S


def _first_generation_profile(obs: Observations) -> dict:
    """On first generations alone, kappa and lam trade off: the squared error at kappa on the grid (lam
    refitted) is nearly flat, so the data cannot tell them apart: the range of kappa within 5% of the best."""
    first = Observations(tuple(replace(c, losses=c.losses[:2]) for c in obs.chains), (), (), obs.cells)
    y, b, a = fit_module._kappa_lambda_terms(first.chains, (), fit_rho(obs.chains))
    lam = np.clip(np.sum(a * (y[:, None] - b), 0) / np.sum(a * a, 0), 0, 1)
    sse = np.sum((b + lam * a - y[:, None]) ** 2, 0)
    near = KAPPA_GRID[sse <= sse.min() * 1.05]
    return {"kappa_within_5_percent_of_best": [float(near.min()), float(near.max())],
            "kappa_plus_lam_at_best": float(KAPPA_GRID[np.argmin(sse)] + lam[np.argmin(sse)])}


# --- printing ---------------------------------------------------------------------------------------------

def _pair(d) -> str:
    return f"mean {100 * d['mean']:.2f}%, worst {100 * d['worst']:.2f}%" if d else "-"


def _covered(v: dict) -> str:
    if not v["of"]:
        return "-"
    return f"{v['covered']}/{v['of']} ({100 * v['share']:.0f}%{'' if v['in_target'] else ', outside 85-97%'})"


def _gained(what: dict) -> str:
    """What gained in a cell, in a line: chain 1 generations 1-6; ensembles of 2, 4, 8; ..."""
    def runs(values):
        values, out = sorted(values), []
        for v in values:
            if out and v == out[-1][1] + 1:
                out[-1][1] = v
            else:
                out.append([v, v])
        return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)
    parts = [f"chain {c} generations {runs(gs)}" for c, gs in sorted(what["chains"].items())]
    parts += [f"ensembles of {', '.join(map(str, what['ensembles']))}"] if what["ensembles"] else []
    parts += [f"students of ensembles of {', '.join(map(str, what['students_of_ensembles']))}"] \
        if what["students_of_ensembles"] else []
    parts += ["the larger teacher's student"] if what["larger_teacher_student"] else []
    return "; ".join(parts)


def print_report(record: dict) -> None:
    c = record["constants"]
    fitted = record["fitted_on"]
    print(f"{record['n_runs']} runs ({record['runs']}): {fitted['cells']} cells, {fitted['chains']} chains "
          f"({fitted['generations']} generations), {fitted['students_of_larger']} students of a larger teacher, "
          f"{fitted['ensembles']} ensembles, {fitted['students_of_ensembles']} students of an ensemble; "
          f"{record['draws']} bootstrap draws over cells")
    for name in NAMES:
        low, high = c[name]["interval"]
        print(f"  {name:<6} {c[name]['value']:.3f} [{low:.3f}, {high:.3f}]")
    r = record["residuals"]
    print("  residual sd (out of sample): chain by generation "
          + ", ".join(f"{x:.3f}" for x in r["chain_per_generation"])
          + f" and larger teacher's student {r['student_of_larger']:.3f} (x P_S); ensemble {r['ensemble']:.4f}, "
          f"its student {r['ensemble_student']:.4f} (x L_1)")
    m = record["measured"]
    print(f"  measured at: parameters {m['params']}, epochs {[round(x, 3) for x in m['epochs']]}, parameters per "
          f"unique token {[round(x, 3) for x in m['params_per_unique_token']]}, ensembles of {m['members']}")
    for note in record["notes"]:
        print(f"  note: {note}")
    s = record["left_out"]["summary"]
    first = record["left_out"]["from_first"]
    later = s["later_generations"]
    print(f"\nleft out a corpus at a time: generations 2..K ({later['n']})")
    print(f"  from generation 0: law {_pair(later['law'])}; as generation 1 {_pair(later['as_generation_1'])}; "
          f"as alone {_pair(later['as_alone'])}")
    print(f"  from a measured generation 1: law {_pair(first['law'])}; as generation 1 "
          f"{_pair(first['as_generation_1'])}; as alone {_pair(first['as_alone'])}")
    print("  by generation (law, from generation 0): " + "; ".join(
        f"{g} {_pair(v)}" for g, v in s["by_generation"].items()))
    print("  coverage by the 90% intervals (target 85-97%):")
    for kind, v in s["coverage"].items():
        if kind != "later_generations":
            print(f"    {kind.replace('_', ' ')}: {_covered(v)}; error {_pair(s['errors'][kind])}")
    signs = s["signs"]
    print(f"  sign of Delta against alone where it exceeds 2 seed sds: {signs['right']}/{signs['clear']} right")
    gains = s["gains_beyond_2_seed_sds"]
    print(f"  cells whose gains exceed 2 seed sds (a lower loss than the seeds' mean alone): {len(gains)}")
    for cell, what in gains.items():
        print(f"    {cell}: {_gained(what)}")
    print("\nensembles by k (share of a member's loss removed: measured, predicted left out; the share of its gain "
          "a student keeps beyond the student of one member, median):")
    for k, v in record["ensembles_by_k"].items():
        predicted = "-" if v["predicted_share"] is None else f"{100 * v['predicted_share']:.2f}%"
        keeps = "-" if v["student_keeps_median"] is None else f"{v['student_keeps_median']:.2f}"
        print(f"  k = {k} ({v['cells']} cells): {100 * v['measured_share']:.2f}%, {predicted}; keeps {keeps}")
    size = record["by_size"]
    if size is not None:
        print("\nleft out a student size at a time (fitted on the other size; intervals as inside the measured range):")
        for name, fold in size["folds"].items():
            distance = ", ".join(f"{k.replace('_', ' ')} {v:.2f}x" for k, v in fold["distance"].items() if v > 1)
            widen = fold["widen_to_cover_90"]
            print(f"  {name} ({fold['n']} runs; outside the fit's range by {distance or 'nothing'}): error "
                  f"{_pair(fold['errors'])}; covered {_covered(fold['coverage'])}; to cover 90% the interval "
                  f"would need {'-' if widen is None else f'{widen:.2f}x'} its width")
        for kind, v in size["kinds"].items():
            if v["at_distance"]["coverage"]["of"]:
                print(f"    {kind.replace('_', ' ')}: at distance {_pair(v['at_distance']['errors'])}, covered "
                      f"{_covered(v['at_distance']['coverage'])}; inside {_pair(v['inside']['errors'])}, covered "
                      f"{_covered(v['inside']['coverage'])}")
        widen = size["widen_to_cover_90"]
        print(f"  to cover 90%: {widen['at_distance']:.2f}x the width at one size's distance, {widen['inside']:.2f}x "
              f"inside (left out by corpus)")
    print("\n| kind | corpus | size | pool | chain | measured | predicted [90%] | covered | Delta vs alone (measured, "
          "predicted) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for check in record["left_out"]["checks"]:
        print(f"| {check['kind']} | {check['corpus']} | {check['size']} | {check['pool']} | {check['chain'] or ''} | "
              f"{check['measured']:.4f} | {check['predicted']:.4f} [{check['interval'][0]:.4f}, "
              f"{check['interval'][1]:.4f}] | {'yes' if check['covered'] else 'no'} | {check['measured_delta']:+.4f}, "
              f"{check['predicted_delta']:+.4f}{' (clear)' if check['clear'] else ''} |")
    print("\nrejected (left out a corpus at a time; mean and worst relative error):")
    for what, forms in record["rejected"].items():
        if what in ("fitted", "first_generation_only"):
            continue
        if what.endswith("_by_k"):
            for name, by_k in forms.items():
                print(f"  {what.replace('_', ' ')}, {name.replace('_', ' ')}: "
                      + "; ".join(f"k = {k} {_pair(v)}" for k, v in by_k.items()))
            continue
        print(f"  {what.replace('_', ' ')}: " + "; ".join(f"{name.replace('_', ' ')} {_pair(v)}"
                                                          for name, v in forms.items()))
    f = record["rejected"]["fitted"]
    print(f"  fitted on every run: chosen (kappa, lam, eta, gamma, theta, rho) {np.round(f['chosen'], 3).tolist()}; "
          f"chains only {np.round(f['chains_only'], 3).tolist()}; one step from the measured teacher (kappa, lam) "
          f"{np.round(f['one_step_from_measured_teacher'], 3).tolist()}; own share held at the distilled R_D*'s "
          f"(kappa) {f['own_share_held_at_the_distilled_r_star']:.3f}; previous (kappa, eta) "
          f"{np.round(f['previous_kappa_eta'], 3).tolist()}; from the seeds' mean "
          f"{np.round(f['from_the_seeds_mean'], 3).tolist()}; log k (a) {f['log_k_a']:.4f}; eta by pool level "
          f"{ {k: round(v, 4) for k, v in f['eta_by_pool_level'].items()} }; theta by k "
          f"{ {k: round(v, 3) for k, v in f['theta_by_k'].items()} }")
    g = record["rejected"]["first_generation_only"]
    print(f"  first generations alone: kappa within 5% of the best squared error anywhere in "
          f"{np.round(g['kappa_within_5_percent_of_best'], 3).tolist()} "
          f"(kappa + lam {g['kappa_plus_lam_at_best']:.3f})")


def write_constants(record: dict, path: Path = CONSTANTS) -> None:
    runs = Path(record["runs"]).absolute()
    shown = runs.relative_to(ROOT) if runs.is_relative_to(ROOT) else runs
    constants = DataLimitedConstants.from_fit(record["_law"], SOURCE.format(runs=shown))
    record = constants.to_dict()
    rows = ",\n  ".join(json.dumps(row) for row in record["draws"])   # one draw a line
    text = json.dumps({**record, "draws": "DRAWS"}, indent=1).replace('"DRAWS"', "[\n  " + rows + "\n ]")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, help="the runs file (default: the one the shipped constants were "
                                                  "fitted on)")
    parser.add_argument("--draws", type=int, default=fit_module.DRAWS,
                        help=f"bootstrap draws of the constants (default {fit_module.DRAWS}; fewer to try things)")
    parser.add_argument("--write", action="store_true", help="store the constants in laws/data_limited.json")
    parser.add_argument("--json", type=Path, help="write the whole report here")
    parser.add_argument("--figure", type=Path, help="draw the chain by generation and the ensemble by k here (.png)")
    args = parser.parse_args()
    if args.draws < 1:
        parser.error(f"--draws must be at least 1, not {args.draws}")
    if args.figure is not None and args.figure.suffix.lower() not in (".png", ".svg"):
        parser.error(f"--figure {args.figure}: give a .png or .svg file name")
    runs = args.runs or runs_file(load_constants().source)
    record = report(runs, args.draws)
    print_report(record)
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in record.items() if k != "_law"}, indent=1) + "\n")
    if args.figure:
        from bench.laws.data_limited_figure import draw  # noqa: E402  (a sibling script, not a package)

        draw(record, args.figure)
        print(f"wrote {args.figure}")
    if args.write:
        write_constants(record)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))  # the repository root: `bench.*` imports
    main()
