"""Fit a law the way it will be used, beyond its runs: candidate forms and data choices, each scored
by an extrapolation backtest, the best kept, with intervals that include extrapolation error.

    fit = fit_supervised(N, D, loss)                   # form="auto": tied, chinchilla, busbridge
    fit.law, fit.chosen, fit.reason, fit.candidates, fit.backtest, fit.extrapolation_error
    fit = fit_distillation(N_S, D_S, L_T, L_S, student_law)   # free vs exponents tied to the student's

Every candidate is backtested on the same folds (`laws.backtest`: fit on the smaller scales, predict
the larger) and scored on the same held-out runs, never by in-sample fit. The winner is the candidate
with the fewest parameters whose score is within PARSIMONY of the lowest: a more flexible form must
extrapolate clearly better to be chosen. The winner is then refitted on all its runs with the
bootstrap, and the backtest errors of all the candidates (not the winner's alone, which are
optimistic by selection) become the extrapolation part of its intervals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from distillscale.errors import UserError
from distillscale.laws.backtest import MAX_FOLDS, Backtest, rolling_origin_folds, run_backtest
from distillscale.laws.fitting import DistillationLawFitter, SupervisedLawFitter
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.logspace import SUPERVISED_FORMS
from distillscale.laws.uncertainty import ExtrapolationError

# A candidate with more parameters wins only if its backtest error is this much (relative) lower.
PARSIMONY = 0.10
# L-BFGS iterations of a backtest refit: the best start of a flat fit (few runs, gamma free) can
# crawl for ~800 iterations while its predictions stopped moving long before; the final fit is not capped.
BACKTEST_MAX_ITER = 300
AUTO_SUPERVISED = ("tied", "chinchilla", "busbridge")
DISTILLATION_FORMS = ("tied", "free")


@dataclass(frozen=True)
class SupervisedCandidate:
    """One way to fit the supervised law: a form, what it assumes of E, which runs, which N."""

    form: str
    irreducible_loss: float | None = None
    irreducible_loss_prior: tuple[float, float] | None = None
    min_tokens_per_param: float | None = None
    params: str = "non-embedding"   # or "total"

    @property
    def name(self) -> str:
        parts = [self.form]
        if self.irreducible_loss is not None:
            parts.append(f"E = {self.irreducible_loss:g}")
        if self.irreducible_loss_prior is not None:
            parts.append("E ~ N({:g}, {:g})".format(*self.irreducible_loss_prior))
        if self.min_tokens_per_param is not None:
            parts.append(f"D/N >= {self.min_tokens_per_param:g}")
        if self.params != "non-embedding":
            parts.append(f"{self.params} params")
        return ", ".join(parts)

    @property
    def n_parameters(self) -> int:
        return len(SUPERVISED_FORMS[self.form].parameters) - (self.irreducible_loss is not None)


@dataclass(frozen=True)
class CandidateScore:
    """A candidate's backtest: its score (mean |relative error| by distance band, see
    `Backtest.score`), or why it has none."""

    name: str
    n_parameters: int
    backtest: Backtest | None
    score: float | None
    note: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "n_parameters": self.n_parameters, "score": self.score,
                "note": self.note,
                "bands": [{"label": b.label, "n": b.n, "mean_abs_error": b.mean_abs_error,
                           "worst_error": b.worst_error} for b in (self.backtest.bands() if self.backtest else [])]}


@dataclass
class LawFit:
    """The outcome of `fit_supervised` / `fit_distillation`: the chosen law (its `fit` record holds
    everything below, so a saved law keeps it), the candidates and why the winner won."""

    law: SupervisedLaw | DistillationLaw
    fitter: SupervisedLawFitter | DistillationLawFitter
    chosen: str
    reason: str
    candidates: list[CandidateScore]
    backtest: Backtest | None
    extrapolation_error: ExtrapolationError | None
    rows: np.ndarray = field(repr=False)   # the runs the chosen law was fitted on

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        return self.fitter.intervals_

    @property
    def not_identified(self) -> dict[str, str]:
        return self.fitter.not_identified_

    def selection_record(self) -> dict:
        return {"chosen": self.chosen, "reason": self.reason,
                "candidates": [c.to_dict() for c in self.candidates]}


def fit_supervised(N, D, loss, *, form: str = "auto", total_params=None,
                   irreducible_loss: float | None = None,
                   irreducible_loss_prior: tuple[float, float] | None = None,
                   min_tokens_per_param: float | None = None, backtest: bool = True,
                   max_folds: int = MAX_FOLDS, **fitter_options) -> LawFit:
    """Fit L(N, D) with form selection by backtest (form="auto") or in one given form.

    With form="auto" the candidates are the forms tied, chinchilla and busbridge, each also with
    the given E (fixed or prior), data filter (minimum tokens per parameter) and total parameters
    (`total_params`, when given) as alternatives to E free, every run and non-embedding N. With a
    form given, that form with the given choices is the only candidate (still backtested).
    `fitter_options` go to `SupervisedLawFitter` (bootstrap, level, seed, grid, huber_delta, ...)."""
    N, D, loss = (np.asarray(x, dtype=np.float64) for x in (N, D, loss))
    columns = {"non-embedding": N}
    if total_params is not None:
        columns["total"] = np.asarray(total_params, dtype=np.float64)
    if form != "auto" and form not in SUPERVISED_FORMS:
        raise UserError(f"unknown form {form!r}: use auto or one of {', '.join(SUPERVISED_FORMS)}")
    if min_tokens_per_param is not None and not min_tokens_per_param > 0:
        raise UserError(f"the minimum tokens per parameter must be positive, got {min_tokens_per_param}")

    auto = form == "auto"
    # In auto mode each choice the user gives is an alternative to the default, not a replacement.
    filters = [None, min_tokens_per_param] if auto and min_tokens_per_param is not None \
        else [min_tokens_per_param]
    e_options = [("free", None)]
    if irreducible_loss is not None:
        e_options = ([e_options[0]] if auto else []) + [("fixed", irreducible_loss)]
    if irreducible_loss_prior is not None:
        e_options = ([e_options[0]] if auto else []) + [("prior", tuple(irreducible_loss_prior))]
    candidates = [
        SupervisedCandidate(f, e if kind == "fixed" else None, e if kind == "prior" else None, m, p)
        for f, (kind, e), m, p in itertools.product(
            AUTO_SUPERVISED if auto else (form,), e_options, filters,
            list(columns) if auto else ["non-embedding"])]

    def eligible(candidate: SupervisedCandidate) -> np.ndarray:
        if candidate.min_tokens_per_param is None:
            return np.ones(len(N), dtype=bool)
        keep = D / N >= candidate.min_tokens_per_param
        if not keep.any():
            raise UserError(f"no run has at least {candidate.min_tokens_per_param:g} tokens per parameter: "
                            "lower the minimum")
        return keep

    def make(candidate: SupervisedCandidate, **overrides) -> SupervisedLawFitter:
        return SupervisedLawFitter(candidate.form, irreducible_loss=candidate.irreducible_loss,
                                   irreducible_loss_prior=candidate.irreducible_loss_prior,
                                   **{**fitter_options, **overrides})

    def fit_predict(candidate: SupervisedCandidate) -> Callable[[list[np.ndarray]], list]:
        n = columns[candidate.params]
        return lambda trains: make(candidate, bootstrap=0, max_iter=BACKTEST_MAX_ITER).predict_subsets(
            n, D, loss, trains)

    return _select(candidates, [columns[c.params] for c in candidates], loss, eligible, fit_predict,
                   lambda c, rows: make(c).fit(columns[c.params][rows], D[rows], loss[rows]),
                   scale_name="params", min_levels=3, backtest=backtest, max_folds=max_folds,
                   level=fitter_options.get("level", 0.9))


def fit_distillation(N_S, D_S, L_T, L_S, student_law: SupervisedLaw, *, form: str = "auto",
                     backtest: bool = True, max_folds: int = MAX_FOLDS,
                     backtest_grid: dict | None = None, **fitter_options) -> LawFit:
    """Fit the distillation law with its exponents free ("free"), tied to the student law's
    ("tied"), or the one of the two that extrapolates better to stronger teachers ("auto").
    The backtest orders the students by teacher strength, 1 / L_T: fitted on the students of the
    weaker teachers (at least 3, for the capacity-gap switch), it predicts those of the stronger. `backtest_grid` replaces the start grid of
    the backtest's refits (e.g. a coarse one, when the final fit uses the 108,000-start grid)."""
    N_S, D_S, L_T, L_S = (np.asarray(x, dtype=np.float64) for x in (N_S, D_S, L_T, L_S))
    if form != "auto" and form not in DISTILLATION_FORMS:
        raise UserError(f"unknown distillation form {form!r}: use auto, {' or '.join(DISTILLATION_FORMS)}")
    names = DISTILLATION_FORMS if form == "auto" else (form,)
    candidates = [_DistillationCandidate(name) for name in names]

    def make(candidate, **overrides) -> DistillationLawFitter:
        return DistillationLawFitter(student_law, tie_exponents=candidate.name == "tied",
                                     **{**fitter_options, **overrides})

    def fit_predict(candidate):
        grid = {"grid": backtest_grid} if backtest_grid is not None else {}
        return lambda trains: make(candidate, bootstrap=0, max_iter=BACKTEST_MAX_ITER, **grid).predict_subsets(
            N_S, D_S, L_T, L_S, trains)

    strength = 1.0 / L_T
    return _select(candidates, [strength] * len(candidates), L_S, lambda c: np.ones(len(L_S), bool),
                   fit_predict, lambda c, rows: make(c).fit(N_S[rows], D_S[rows], L_T[rows], L_S[rows]),
                   scale_name="teacher strength (1 / teacher loss)", min_levels=3, backtest=backtest,
                   max_folds=max_folds, level=fitter_options.get("level", 0.9))


@dataclass(frozen=True)
class _DistillationCandidate:
    name: str

    @property
    def n_parameters(self) -> int:
        return 7 if self.name == "tied" else 9


def _select(candidates, scales, observed, eligible, fit_predict, final_fit, *, scale_name: str,
            min_levels: int, backtest: bool, max_folds: int, level: float) -> LawFit:
    """Backtest every candidate on shared folds, choose, refit the winner with its bootstrap."""
    masks = [eligible(c) for c in candidates]
    scores: list[CandidateScore] = []
    if backtest:
        min_fit_runs = max(c.n_parameters for c in candidates) + 1
        folds = rolling_origin_folds(scales[0], min_fit_runs=min_fit_runs, min_fit_levels=min_levels,
                                     max_folds=max_folds)
        common = np.logical_and.reduce(masks)
        for candidate, scale, mask in zip(candidates, scales, masks):
            result = run_backtest(folds, scale, observed, fit_predict(candidate), scale_name=scale_name,
                                  eligible=mask)
            score = result.score(rows=common)
            note = None if score is not None else (
                "too few sizes to backtest" if not folds else
                "no fold could be fitted: " + "; ".join(sorted(set(result.skipped.values())))[:300])
            scores.append(CandidateScore(candidate.name, candidate.n_parameters, result, score, note))
    scored = [s for s in scores if s.score is not None]
    if scored:
        best = min(s.score for s in scored)
        within = [s for s in scored if s.score <= best * (1 + PARSIMONY)]
        winner = min(within, key=lambda s: (s.n_parameters, scores.index(s)))
        index = scores.index(winner)
        lowest = min(scored, key=lambda s: s.score)
        reason = (f"lowest backtest error ({winner.score:.2%})" if winner is lowest else
                  f"backtest error {winner.score:.2%}, within {PARSIMONY:.0%} of the lowest "
                  f"({lowest.name}: {lowest.score:.2%}) with fewer parameters")
        if len(candidates) == 1:
            reason = f"the only candidate (backtest error {winner.score:.2%})"
    else:
        # Nothing to compare by: keep the default (chinchilla if asked, else the first candidate)
        # and say in the record that no backtest supports it.
        index = next((i for i, c in enumerate(candidates) if c.name == "chinchilla"), 0)
        reason = ("no backtest: " + (scores[index].note if scores else "turned off")
                  + f"; intervals use the literature's typical extrapolation error instead")
    chosen = candidates[index]
    rows = masks[index]
    fitter = final_fit(chosen, rows)
    chosen_backtest = scores[index].backtest if scores else None
    extrapolation = None
    pooled = [s.backtest for s in scored if s.backtest.held_out]
    if chosen_backtest is not None and chosen_backtest.held_out:
        # The winner of a selection by backtest has, by construction, the luckiest backtest: its own
        # errors understate its error beyond the runs (winner's curse). The errors of every
        # candidate together measure the extrapolation error of fitting *and choosing* a form.
        extrapolation = ExtrapolationError.from_backtest(
            *(np.concatenate([getattr(b, name) for b in pooled]) for name in ("errors", "distances", "spans")),
            level, scale_name, float(scales[index][rows].min()), float(scales[index][rows].max()))
    if extrapolation is None:
        extrapolation = ExtrapolationError.unmeasured(level, scale_name, float(scales[index][rows].min()),
                                                      float(scales[index][rows].max()))
    result = LawFit(fitter.law_, fitter, chosen.name, reason, scores, chosen_backtest, extrapolation, rows)
    record = fitter.law_.fit
    record["selection"] = result.selection_record()
    record["backtest"] = chosen_backtest.to_dict() if chosen_backtest is not None else None
    record["extrapolation_error"] = extrapolation.to_dict() if extrapolation is not None else None
    return result
