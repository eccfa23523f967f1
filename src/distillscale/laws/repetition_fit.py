"""The data-constrained refit of a supervised law (Muennighoff et al. 2023, `laws.repetition`): when
runs repeat their data, the candidate that `fit_supervised` chose is refitted with R_D*, and kept when
it predicts the repeated runs better than counting repeated tokens as new.

The refit is built from the chosen candidate itself (`LawFit.candidate` and its fitter): its E
(fixed, or its prior), exponent prior, data filter (`min_tokens_per_param`), N column (total or
non-embedding parameters) and every fitter option (`SupervisedLawFitter.clone`), so no choice the user
made is lost. Its extrapolation error is measured on the refitted form's own backtest by size (the
candidate of that form with the same choices), over the runs and N column it was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from distillscale.laws.lawfit import LawFit
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.repetition import (R_D_STAR_PRIOR, Repetition, RStarPrior, counted_as_new,
                                          effective_tokens, predict_repeated)
from distillscale.laws.ties import first_lowest
from distillscale.laws.uncertainty import ExtrapolationError

# The runs beyond this many epochs are predicted by the repetition backtest from those within it.
REPETITION_BACKTEST_EPOCHS = 4.0
# Fewer single-epoch runs than this: the law is fitted on every run, repeated ones included.
MIN_FRESH_RUNS = 8
# The forms the refit profiles R_D* in (variable projection, fast); another chosen form is refitted as chinchilla.
PROFILED_FORMS = ("tied", "chinchilla")


def first_fit_rows(runs: dict[str, np.ndarray]) -> np.ndarray:
    """The runs the law is chosen on before repetition: those of at most one epoch (every run when
    fewer than MIN_FRESH_RUNS are)."""
    fresh = ~(runs["tokens"] > runs["unique_tokens"] * 1.0001)
    return fresh if fresh.sum() >= MIN_FRESH_RUNS else np.ones(len(fresh), bool)


def refit_with_repetition(result: LawFit, runs: dict[str, np.ndarray], prior: RStarPrior = R_D_STAR_PRIOR) -> LawFit:
    """`result` (the law `fit_supervised` chose on the runs of `first_fit_rows`), with the
    data-constrained candidate tried against it when some of `runs` repeat data (see
    `selection.fit_with_repetition`). Changes and returns `result`."""
    candidate = result.candidate
    keep_rows = np.ones(len(runs["params"]), bool) if candidate.min_tokens_per_param is None else \
        runs["tokens"] / runs["params"] >= candidate.min_tokens_per_param
    N = (runs["total_params"] if candidate.params == "total" else runs["params"])[keep_rows]
    D, loss, U = (runs[k][keep_rows] for k in ("tokens", "loss", "unique_tokens"))
    repeated = D > U * 1.0001
    if not repeated.any():
        return result
    form = candidate.form if candidate.form in PROFILED_FORMS else "chinchilla"
    # The chosen fitter (a median's first member) carries E, the priors and every fitter option.
    template = getattr(result.fitter, "members", [result.fitter])[0]
    level = template.level
    make = lambda **o: template.clone(form=form, **{"bootstrap": 0, **o})  # noqa: E731

    def errors(law, repetition, rows):
        predicted = law.predict(N[rows], D[rows]) if repetition is None else \
            predict_repeated(law, repetition, N[rows], D[rows], U[rows])
        return predicted / loss[rows] - 1

    record = {"repeated_runs": int(repeated.sum()), "max_epochs": float(np.max(D / U)), "form": form,
              "prior": {"median": prior.median, "log_sd": prior.log_sd, "source": prior.source}}
    cut = repetition_backtest_cut(D / U)
    if cut is None:
        record["chosen"] = ("plain (no backtest: every repeated run has the same epochs, so none can be "
                            "predicted from the others; predict --unique-tokens uses the published constants)")
        result.repetition_record = record
        return result
    many = D / U > cut * 1.0001
    early_plain = make().fit(N[~many], D[~many], loss[~many]).law_
    early = posterior_repetition(make, N[~many], D[~many], U[~many], loss[~many], prior=prior, level=level)
    plain_errors = errors(early_plain, None, many)
    constrained_errors = errors(early.law, Repetition(early.R_D_star), many)
    record["backtest"] = {
        "fitted_up_to_epochs": cut, "n": int(many.sum()), "R_D_star": early.R_D_star,
        "R_D_star_interval": list(early.interval),
        "mean_abs_error_plain": float(np.mean(np.abs(plain_errors))),
        "max_abs_error_plain": float(np.max(np.abs(plain_errors))),
        "mean_abs_error_data_constrained": float(np.mean(np.abs(constrained_errors))),
        "max_abs_error_data_constrained": float(np.max(np.abs(constrained_errors))),
        "over_predicted_data_constrained": float(np.mean(constrained_errors > 0))}
    score = record["backtest"]
    # No worse: ties (within rounding, e.g. an R_D* so large that repeats count as new) go to it.
    keep = first_lowest([score["mean_abs_error_data_constrained"], score["mean_abs_error_plain"]]) == 0
    record["chosen"] = "data-constrained" if keep else \
        "plain (the data-constrained law backtested worse than counting repeats as new)"
    result.repetition_record = record
    if not keep:
        # Said in law.json: predict and plan then count repeats as new, as the backtest preferred
        # (rather than fall back on the published constants, which it did not test).
        result.law.repetition = counted_as_new("the data-constrained fit backtested worse "
                                               f"({score['mean_abs_error_data_constrained']:.2%} vs "
                                               f"{score['mean_abs_error_plain']:.2%})", record)
        return result
    # The data-constrained law on every run: R_D*'s posterior, the law refitted with its bootstrap there.
    posterior = posterior_repetition(make, N, D, U, loss, prior=prior, level=level)
    r_star = posterior.R_D_star
    final = template.clone(form=form).fit(N, effective_tokens(D, U, r_star), loss)
    law = final.law_
    backtest, extrapolation = _own_extrapolation(result, replace(candidate, form=form), N, D, U, loss, level)
    law.fit = law.fit.model_copy(update={"selection": result.law.fit.selection, "extrapolation_error": extrapolation,
                                         "backtest": backtest.to_dict() if backtest is not None else None})
    law.repetition = Repetition(r_star, None, posterior.interval, posterior.source, record)
    result.law, result.fitter, result.backtest, result.extrapolation_error = law, final, backtest, extrapolation
    result.rows = keep_rows
    # The law fitted first (e.g. the median of the forms, whose listing names the forms "not chosen")
    # is replaced: say so, with its own first clause, rather than append to its reason.
    first = result.reason.split(";")[0]
    result.reason = (f"the {form} form with repetition (R_D* = {r_star:.3g}) replaces the {result.chosen} law "
                     f"fitted first ({first}): it predicts repeated runs no worse (repetition backtest: "
                     f"{score['mean_abs_error_data_constrained']:.2%} vs {score['mean_abs_error_plain']:.2%} "
                     "counting repeats as new)")
    result.chosen = f"{form}, data-constrained"
    result.candidate = replace(candidate, form=form)
    return result


def _own_extrapolation(result: LawFit, refitted, N, D, U, loss, level: float):
    """(backtest, extrapolation error) of the refitted law: the backtest by size of the candidate of
    its form with the same choices (None when none was run), over the range of N it was fitted on."""
    own = next((s.backtest for s in result.candidates if s.name == refitted.name
                and s.backtest is not None and s.backtest.held_out), None)
    low, high = float(np.min(N)), float(np.max(N))
    extrapolation = None if own is None else ExtrapolationError.from_backtest(
        own.errors, own.distances, own.spans, level, "params", low, high)
    if extrapolation is None:
        extrapolation = ExtrapolationError.unmeasured(level, "params", low, high)
    # Seeds of one setting share N, D and U (runs of one budget from fewer unique tokens are not seeds).
    return own, extrapolation.with_seed_noise(np.column_stack([N, D, U]), loss)


def repetition_backtest_cut(epochs: np.ndarray) -> float | None:
    """The epochs a repetition backtest fits up to: REPETITION_BACKTEST_EPOCHS when runs go beyond
    it, else the geometric middle of the repeated runs' epochs (so that some are beyond); None when
    no run can be predicted from runs of fewer epochs (one level of repetition, or none)."""
    epochs = np.asarray(epochs, float)
    if np.any(epochs > REPETITION_BACKTEST_EPOCHS * 1.0001):
        return REPETITION_BACKTEST_EPOCHS
    levels = np.unique(np.round(epochs[epochs > 1.0001], 4))
    if len(levels) < 2:
        return None
    middle = float(np.sqrt(levels[0] * levels[-1]))
    return float(levels[levels <= middle * 1.0001].max()) if np.any(levels <= middle * 1.0001) else float(levels[0])


@dataclass(frozen=True)
class RStarPosterior:
    """R_D* given a prior and the runs: the posterior median, its interval, the law fitted there, and
    whether the runs narrowed the prior (`identified`) or left it (the interval mostly the prior's)."""

    R_D_star: float
    interval: tuple[float, float]
    law: SupervisedLaw
    identified: bool
    prior: RStarPrior

    @property
    def source(self) -> str:
        how = "fitted" if self.identified else "mostly the prior: the runs barely constrain it"
        return f"posterior under the prior {self.prior.source} ({how})"


# The profile's log grid of R_D* (0.5..2000, ratios of 2): the posterior is interpolated in log R_D*.
POSTERIOR_GRID = np.exp(np.linspace(np.log(0.5), np.log(2000.0), 13))


def posterior_repetition(make, N, D, U, loss, *, prior: RStarPrior = R_D_STAR_PRIOR,
                         level: float = 0.9) -> RStarPosterior:
    """R_D* given `prior` and the runs. For each R_D* of POSTERIOR_GRID the law is refitted to
    (N, D'(R_D*)); the runs' likelihood is Laplace's with its scale profiled, n log(mean |log
    residual|), with n the runs that repeat data (only they carry R_D*; the residuals of a misfit
    law are not independent, so all runs would overstate what they know). The posterior (prior x
    likelihood, interpolated in log R_D*) gives the median and the `level` interval; the law is
    refitted at the median. `identified`: the interval is under half the prior's width (in log)."""
    N, D, U, loss = (np.asarray(x, float) for x in (N, D, U, loss))
    n_repeated = int(np.sum(D > U * 1.0001))
    log_like = []
    for r_star in POSTERIOR_GRID:
        law = make().fit(N, effective_tokens(D, U, r_star), loss).law_
        residual = np.log(law.predict(N, effective_tokens(D, U, r_star)) / loss)
        log_like.append(-n_repeated * np.log(max(float(np.mean(np.abs(residual))), 1e-12)))
    fine = np.exp(np.linspace(np.log(POSTERIOR_GRID[0]), np.log(POSTERIOR_GRID[-1]), 2000))
    log_post = np.interp(np.log(fine), np.log(POSTERIOR_GRID), log_like) + prior.log_density(fine)
    weight = np.exp(log_post - log_post.max())
    cdf = np.cumsum(weight) / weight.sum()
    median, low, high = (float(fine[min(np.searchsorted(cdf, q), len(fine) - 1)])
                         for q in (0.5, (1 - level) / 2, (1 + level) / 2))
    prior_low, prior_high = prior.interval(level)
    identified = np.log(high / low) < 0.5 * np.log(prior_high / prior_low)
    law = make().fit(N, effective_tokens(D, U, median), loss).law_
    return RStarPosterior(median, (low, high), law, bool(identified), prior)


def profile_repetition(make, N, D, U, loss) -> tuple[float, SupervisedLaw]:
    """R_D* and the law fitted jointly: for R_D* on a log grid (0.1..1000, then 20% steps around
    the best, then 5%), the law's best fit to (N, D'(R_D*)); the R_D* whose fit has the lowest
    objective."""
    def objective(r_star):
        fitter = make().fit(N, effective_tokens(D, U, r_star), loss)
        return fitter.result_.fun, fitter.law_

    fits = {}
    for r_star in np.exp(np.linspace(np.log(0.1), np.log(1000.0), 9)):
        fits[float(r_star)] = objective(r_star)
    def lowest() -> float:   # ties (a flat objective): the smaller R_D*
        order = sorted(fits)
        return order[first_lowest([fits[r][0] for r in order])]

    for step in (0.2, 0.05):
        best = lowest()
        for r_star in best * np.exp(step * np.array([-3, -2, -1, 1, 2, 3])):
            fits.setdefault(float(r_star), objective(r_star))
    best = lowest()
    return best, fits[best][1]


