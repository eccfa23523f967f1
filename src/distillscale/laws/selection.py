"""Fit a law the way it will be used, beyond its runs: candidate forms and data choices, each scored
by an extrapolation backtest, the best kept, with intervals that include extrapolation error.

    fit = fit_supervised(df, params="N", tokens="D", loss="loss")   # or fit_supervised(N, D, loss)
    fit.law, fit.chosen, fit.reason, fit.candidates, fit.backtest, fit.extrapolation_error
    fit.predict(1e9, 2e10), fit.save("law.json")       # a prediction with its interval; law.json
    fit = fit_distillation(df, student_law=fit.law)    # free vs exponents tied to the student's

Every candidate is backtested on the same folds (`laws.backtest`: fit on the smaller scales, predict
the larger) and scored on the same held-out runs, never by in-sample fit. The winner is the candidate
with the fewest parameters whose score is within PARSIMONY of the lowest: a more flexible form must
extrapolate clearly better to be chosen. The winner is then refitted on all its runs with the
bootstrap, and the backtest errors of all the candidates (not the winner's alone, which are
optimistic by selection) become the extrapolation part of its intervals.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Mapping
from typing import Callable

import numpy as np

from distillscale.errors import ParameterError, UserError
from distillscale.laws.backtest import MAX_FOLDS, rolling_origin_folds, run_backtest
from distillscale.laws.crossladder import BiasCorrection, FitSummary, shipped_family, shipped_model
from distillscale.laws.distillation_interval import shipped_interval_scale
from distillscale.laws.pack_interval import CalibratedInterval, shipped_interval
from distillscale.laws.ensemble import MedianLawFitter, marginalizes, median_law
from distillscale.laws.marginal import fit_marginal
from distillscale.laws.objective import ExponentPrior
from distillscale.laws.fitting import (DistillationLawFitter, SupervisedLawFitter, check_intervals,
                                      irreducible_loss_profile)
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.interaction import INTERACTION_FORMS, SUPERVISED_FORM_NAMES, InteractionLawFitter
from distillscale.laws.logspace import SUPERVISED_FORMS
from distillscale.laws.record import Selection
from distillscale.laws.lawfit import (AUTO_SUPERVISED, MEDIAN, CandidateScore, DistillationCandidate, LawFit,
                                     SupervisedCandidate)
from distillscale.laws.repetition import R_D_STAR_PRIOR, RStarPrior
from distillscale.laws.repetition_fit import first_fit_rows, refit_with_repetition
from distillscale.laws.uncertainty import MIN_MEASURED_Q, ExtrapolationError

# A candidate with more parameters wins only if its backtest error is this much (relative) lower.
PARSIMONY = 0.10
# The intervals pool the backtest errors of the candidates within this factor of the best score.
POOL_WITHIN = float("inf")
# Backtest scores (mean |relative error|) this close count as equal: below it they differ by rounding
# (constant or noise-free runs score ~1e-16 on one CPU and exactly 0 on another).
SCORE_TIE = MIN_MEASURED_Q
# L-BFGS iterations of a backtest refit: the best start of a flat fit (few runs, gamma free) can
# crawl for ~800 iterations while its predictions stopped moving long before; the final fit is not capped.
BACKTEST_MAX_ITER = 300
DISTILLATION_FORMS = ("tied", "free")


def fit_supervised(data=None, params=None, tokens=None, loss=None, *, flops=None, form: str = "auto", total_params=None,
                   irreducible_loss: float | None = None,
                   irreducible_loss_prior: tuple[float, float] | None = None,
                   exponent_prior: ExponentPrior | None = None,
                   min_tokens_per_param: float | None = None, backtest: bool = True,
                   max_folds: int = MAX_FOLDS, unique_tokens=None, ensemble: bool = True,
                   marginal_e: bool = False, bias_correction: bool = False, family: str | None = None,
                   pack_interval: bool = True, progress: Callable[[str], None] | None = None,
                   **fitter_options) -> LawFit:
    """Fit L(N, D): with form="auto" the median of the three forms refitted into one law
    (`laws.ensemble`), or in one given form.

    The runs: `fit_supervised(df, params="N", tokens="D", loss="loss")` with the columns of a
    table (a pandas DataFrame or a dict of columns; default names params, tokens, loss), or the
    values themselves, `fit_supervised(N, D, loss)`: non-embedding parameters, training tokens and
    validation loss (nats/token), positive, one per run. `flops` (training FLOPs C, a column or the
    values) instead of `tokens` gives D = C / 6N.

    With form="auto" the candidate is the median of the forms tied, chinchilla and busbridge
    (each fitted to the runs; the median of their predictions refitted into one law of the
    busbridge form, see `laws.ensemble`: on the validation pack it extrapolates better than any one
    form, and better than choosing one form per fit by its backtest), also with the given E (fixed
    or prior), data filter (minimum tokens per parameter) and total parameters (`total_params`, a
    column or values, when given) as alternatives to E free, every run and non-embedding N, chosen
    among by backtest; the forms alone are backtested too and reported, but not chosen. With
    `ensemble=False`, form="auto" chooses among the forms themselves by backtest instead (the
    default before the validation pack). In the median, each form's E is fitted; `marginal_e=True`
    marginalizes it over a grid instead (`laws.marginal`) unless the candidate fixes E or puts a
    prior on it (once the default; on all the evidence together, the pack's
    development, held-back and far runs and six micro corpora, a fitted E extrapolates better:
    docs/validation_pack.md). With a form given, that form
    with the given choices is the only candidate (still backtested; its E fitted). `exponent_prior` (an `ExponentPrior`: Gaussian priors on
    alpha and beta, e.g. from fits to other data sets) is not an alternative: every candidate's fit,
    each member form's, carries it. `fitter_options` go to `SupervisedLawFitter` (bootstrap, level, seed, grid,
    huber_delta, ...).

    `unique_tokens` (a column or values: the unique tokens U behind each run's D): when some runs
    repeat their data (D > U), the data-constrained form (`laws.repetition`, Muennighoff et al.
    2023) is a candidate too: the law above is fitted on the runs of at most one epoch (all runs when
    fewer than 8 are), R_D* on every run with it held, and the law keeps R_D* (`law.repetition`)
    when it predicts the repeated runs better than counting repeated tokens as new (see
    `fit_with_repetition`).

    `bias_correction` (default False, opt-in): the law carries the cross-ladder bias model shipped with
    distillscale (`laws.crossladder`, fitted on the published ladders) and the summary of its runs,
    so its predictions beyond them are corrected (`SupervisedLaw.predict`). Off by default: scored
    leaving one family of ladders out, it did not lower the error on most of the pack's families
    (docs/validation_pack.md). The backtest and the intervals' extrapolation part are the raw law's.
    `family`: the runs are a sweep of this builtin design (`report.design.design_family`): the law
    carries the design's family term (`crossladder.FamilyTerm`), where one ships, with the pack's
    model it was learned after (its residuals are that model's), whatever `bias_correction`.

    `pack_interval` (default True): the default law (form auto, E fitted, every run, non-embedding N,
    no prior) gives its intervals the extrapolation error calibrated across the published ladders as
    a function of the distance, the fitted span and runs (`laws.pack_interval`; its signed errors'
    quantiles, scored leaving one family of ladders out), the bootstrap's noise added to it once;
    other laws, a law with a design's `family` term, or False, keep their own backtest's
    (`laws.uncertainty.ExtrapolationError`).

    `progress(message)`, when given, is told each step as it starts (the backtest of each
    candidate, the final fit with its bootstrap): a default fit of thousands of runs takes minutes."""
    _check_max_folds(max_folds)
    if data is not None and not _is_table(data):  # fit_supervised(N, D, loss): the values by position
        if loss is not None:
            raise ParameterError("data", "{} must be a table (a pandas DataFrame or a dict of columns) "
                                 "when params, tokens and loss are given too")
        data, params, tokens, loss = None, data, params, tokens
    runs = supervised_runs(data, params=params, tokens=tokens, loss=loss, flops=flops, total_params=total_params,
                           unique_tokens=unique_tokens)
    if exponent_prior is not None and not isinstance(exponent_prior, ExponentPrior):
        raise ParameterError("exponent_prior", "{} must be an ExponentPrior(alpha=(mean, sd), beta=(mean, sd)), "
                             "got {value!r}", value=exponent_prior)
    if form != "auto" and "total_params" in runs:
        raise ParameterError(("total_params", "form"), "{} is only used with {} auto, where fits on total parameters "
                             "are candidates beside those on non-embedding ones; a form given ({form!r}) is "
                             "fitted on non-embedding parameters: drop the total parameters, or leave the form auto",
                             form=form)
    if "unique_tokens" in runs:
        return with_bias_correction(fit_with_repetition(
            runs, form=form, irreducible_loss=irreducible_loss, irreducible_loss_prior=irreducible_loss_prior,
            exponent_prior=exponent_prior, min_tokens_per_param=min_tokens_per_param, backtest=backtest,
            max_folds=max_folds, ensemble=ensemble, marginal_e=marginal_e, bias_correction=False,
            pack_interval=False, progress=progress, **fitter_options), runs, bias_correction, family)
    N, D, loss = runs["params"], runs["tokens"], runs["loss"]
    columns = {"non-embedding": N}
    if "total_params" in runs:
        columns["total"] = runs["total_params"]
    if form != "auto" and form not in SUPERVISED_FORM_NAMES:
        raise ParameterError("form", "unknown {} {form!r}: use auto or one of " + ", ".join(SUPERVISED_FORM_NAMES),
                             form=form)
    _check_fitter_options(SupervisedLawFitter, fitter_options)
    _check_choices(loss, irreducible_loss, irreducible_loss_prior, min_tokens_per_param)

    auto = form == "auto"
    # In auto mode each choice the user gives is an alternative to the default, not a replacement.
    filters = [None, min_tokens_per_param] if auto and min_tokens_per_param is not None \
        else [min_tokens_per_param]
    e_options = [("free", None)]
    if irreducible_loss is not None:
        e_options = ([e_options[0]] if auto else []) + [("fixed", irreducible_loss)]
    if irreducible_loss_prior is not None:
        e_options = ([e_options[0]] if auto else []) + [("prior", tuple(irreducible_loss_prior))]
    combined = auto and ensemble
    # Each median follows its members (their fold fits are reused); without it, the order of old.
    combos = list(itertools.product(e_options, filters, list(columns) if auto else ["non-embedding"]))
    forms = AUTO_SUPERVISED if auto else (form,)
    pairs = ([(f, combo) for combo in combos for f in forms + (MEDIAN,)] if combined
             else [(f, combo) for f in forms for combo in combos])
    candidates = [SupervisedCandidate(f, e if kind == "fixed" else None, e if kind == "prior" else None, m, p,
                                      exponent_prior) for f, ((kind, e), m, p) in pairs]

    def eligible(candidate: SupervisedCandidate) -> np.ndarray:
        if candidate.min_tokens_per_param is None:
            return np.ones(len(N), dtype=bool)
        keep = D / N >= candidate.min_tokens_per_param
        if not keep.any():
            raise UserError(f"no run has at least {candidate.min_tokens_per_param:g} tokens per parameter: "
                            "lower the minimum")
        return keep

    def make(candidate: SupervisedCandidate, progress=None, **overrides) -> SupervisedLawFitter | MedianLawFitter:
        if candidate.form == MEDIAN:
            return MedianLawFitter([make(member, **overrides) for member in candidate.members()], progress=progress,
                                   marginal=marginal_e)
        fitter = InteractionLawFitter if candidate.form in INTERACTION_FORMS else SupervisedLawFitter
        return fitter(candidate.form, irreducible_loss=candidate.irreducible_loss,
                                   irreducible_loss_prior=candidate.irreducible_loss_prior,
                                   exponent_prior=candidate.exponent_prior, **{**fitter_options, **overrides})

    # (candidate, folds, marginal) -> the laws of its fold fits: the median reuses its members' (their
    # E marginalized, as in the median's own fit, `laws.marginal`; the forms alone keep a fitted E)
    fold_fits: dict = {}

    def fold_laws(candidate: SupervisedCandidate, trains: list[np.ndarray], marginal: bool = False) -> list:
        key = (candidate, tuple(t.tobytes() for t in trains), marginal)
        if key not in fold_fits:
            fitter = make(candidate, bootstrap=0, max_iter=BACKTEST_MAX_ITER)
            fold_fits[key] = (fit_marginal(fitter, columns[candidate.params], D, loss, trains) if marginal else
                              fitter.fit_subsets(columns[candidate.params], D, loss, trains))
        return fold_fits[key]

    def fit_predict(candidate: SupervisedCandidate) -> Callable[[list[np.ndarray]], list]:
        n = columns[candidate.params]

        def predict(trains: list[np.ndarray]) -> list:
            laws = list(zip(*(fold_laws(member, trains, candidate.form == MEDIAN and marginal_e
                                        and marginalizes(member))
                              for member in candidate.members())))
            out = []
            for train, fold in zip(trains, laws):
                failed = [law for law in fold if isinstance(law, str)]
                if failed:
                    out.append(failed[0])
                elif candidate.form == MEDIAN:
                    out.append(median_law(list(fold), n[train], D[train],
                                          irreducible_loss=candidate.irreducible_loss).predict(n, D))
                else:
                    out.append(fold[0].predict(n, D))
            return out
        return predict

    def without_backtest(candidates: list[SupervisedCandidate]) -> int:
        """Nothing to choose by: chinchilla with the choices the user gave (E, the data filter),
        on non-embedding N; with a backtest they are alternatives, without one they apply."""
        return max(range(len(candidates)), key=lambda i: (
            candidates[i].form == (MEDIAN if combined else "chinchilla") or not auto,
            candidates[i].irreducible_loss is not None or candidates[i].irreducible_loss_prior is not None,
            candidates[i].min_tokens_per_param is not None, candidates[i].params == "non-embedding", -i))

    def final_fit(candidate: SupervisedCandidate, rows: np.ndarray):
        fitter = make(candidate, progress=progress).fit(columns[candidate.params][rows], D[rows], loss[rows])
        if "E" in fitter.not_identified_:
            if progress is not None:
                progress("profiling E: the runs do not pin it down")
            with_profile(fitter, columns[candidate.params][rows], D[rows], loss[rows], fitter_options)
        return fitter

    return with_bias_correction(_select(
        candidates, [columns[c.params] for c in candidates], loss, eligible, fit_predict, final_fit,
        scale_name="params", min_levels=3, backtest=backtest, max_folds=max_folds,
        level=fitter_options.get("level", 0.9), fallback=without_backtest,
        can_win=(lambda c: c.form == MEDIAN) if combined else None, progress=progress,
        settings=np.column_stack([N, D])), runs, bias_correction, family,
        interval=pack_interval and not marginal_e and exponent_prior is None)


def _measured_on_the_pack(candidate) -> bool:
    """Whether the chosen candidate is the law the validation pack calibrated: the median of the forms
    with E fitted, on every run's non-embedding N, without a prior."""
    return (candidate is not None and getattr(candidate, "form", None) == MEDIAN
            and candidate.irreducible_loss is None and candidate.irreducible_loss_prior is None
            and candidate.min_tokens_per_param is None and candidate.params == "non-embedding"
            and candidate.exponent_prior is None)


def with_bias_correction(result: LawFit, runs: dict[str, np.ndarray], enabled: bool = True,
                         family: str | None = None, interval: bool = False) -> LawFit:
    """`result` with its law carrying the shipped cross-ladder bias model (`laws.crossladder`) and
    the summary of the runs it was fitted on (its N column, its rows), when `enabled` and the model
    ships, and the family term of the builtin design `family` where one ships (with the pack's model
    it was learned after, enabled or not); with `interval`, the
    extrapolation error calibrated across the published ladders (`laws.pack_interval`) where the law
    is the one it was calibrated on and one ships, but not beside a design's term (the micro demo's
    interval with its term was scored on its own corpora, the pack's calibration never was); changes
    and returns `result`."""
    N = runs["total_params"] if result.candidate is not None and getattr(result.candidate, "params", "") == "total" \
        else runs["params"]
    rows = np.asarray(result.rows)
    summary = FitSummary.of_runs(N[rows], runs["tokens"][rows], result.law)
    term = shipped_family(family) if family is not None else None
    calibration = shipped_interval() if interval and term is None and _measured_on_the_pack(result.candidate) else None
    if calibration is not None:
        diagnostics = result.law.fit.diagnostics
        result.law.fit = result.law.fit.model_copy(update={"interval": CalibratedInterval(
            model=calibration, summary=summary, misfit=0.0 if diagnostics is None else diagnostics.rmse_log_loss)})
    model = shipped_model()
    if model is None or (not enabled and term is None):
        return result
    result.law.fit = result.law.fit.model_copy(update={"bias_correction": BiasCorrection(model=model, summary=summary,
                                                                                         family=term)})
    return result


def with_profile(fitter, N, D, loss, options: dict) -> None:
    """A fit whose E the runs do not pin down gets E's profile (`irreducible_loss_profile`) in its
    law's record, and its not-identified note says which E the runs allow."""
    profile = irreducible_loss_profile(N, D, loss, level=options.get("level", 0.9),
                                       huber_delta=options.get("huber_delta"), seed=options.get("seed", 0))
    record = fitter.law_.fit
    note = record.not_identified["E"]
    if profile.values:
        note += (f"; E from {min(profile.values):.3g} to {max(profile.values):.3g} fits them as well "
                 f"({profile.level:.0%} profile), and predictions carry that range")
    not_identified = {**record.not_identified, "E": note}
    fitter.law_.fit = record.model_copy(update={"profile": profile, "not_identified": not_identified})
    fitter.not_identified_ = not_identified


def _check_fitter_options(fitter_class, options: dict) -> None:
    """The bootstrap and level a fit will use, checked before any candidate is fitted."""
    defaults = inspect.signature(fitter_class.__init__).parameters
    check_intervals(options.get("bootstrap", defaults["bootstrap"].default),
                    options.get("level", defaults["level"].default))


def _number(param: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ParameterError(param, "{} must be a finite number, got {value!r}", value=value)
    return float(value)


def _check_choices(loss: np.ndarray, irreducible_loss, irreducible_loss_prior, min_tokens_per_param) -> None:
    """The user's choices for E and the runs, checked the same with and without a backtest: E is a
    loss no model reaches, so it lies between 0 and the lowest loss of the runs."""
    lowest = float(loss.min())
    if irreducible_loss is not None:
        E = _number("irreducible_loss", irreducible_loss)
        if not 0 < E < lowest:
            raise ParameterError("irreducible_loss", "{} " + f"{E:g} must be above 0 and below every run's loss "
                                 f"(the lowest is {lowest:.4g} nats/token): E is the loss no model reaches")
    if irreducible_loss_prior is not None:
        try:
            mean, sd = irreducible_loss_prior
        except (TypeError, ValueError):
            raise ParameterError("irreducible_loss_prior", "{} must be (mean, sd), got {value!r}",
                                 value=irreducible_loss_prior) from None
        mean, sd = _number("irreducible_loss_prior", mean), _number("irreducible_loss_prior", sd)
        if not (0 < mean < lowest and sd > 0):
            raise ParameterError("irreducible_loss_prior", "{} " + f"mean {mean:g} must be above 0 and below every "
                                 f"run's loss (the lowest is {lowest:.4g} nats/token), its sd {sd:g} positive")
    if min_tokens_per_param is not None and not _number("min_tokens_per_param", min_tokens_per_param) > 0:
        raise ParameterError("min_tokens_per_param", "{} must be positive, got {value!r}", value=min_tokens_per_param)


def fit_with_repetition(runs: dict[str, np.ndarray], prior: RStarPrior = R_D_STAR_PRIOR, **options) -> LawFit:
    """`fit_supervised` for runs with unique-token counts (`runs["unique_tokens"]`).

    The form is chosen as usual (backtest by size) on the runs of at most one epoch (every run when
    fewer than MIN_FRESH_RUNS are). When some runs repeat data, two candidates are then fitted: the
    plain law (repeated tokens counted as new) and the data-constrained one, the chosen candidate
    refitted with R_D* (`repetition_fit.refit_with_repetition`: its E, priors, data filter and N
    column kept), whose R_D* is the posterior under `prior` (what is known before the runs:
    Muennighoff et al.'s 15.4 with its spread) given the runs, profiled jointly with the law's
    coefficients (`posterior_repetition`): runs that cannot pin R_D* (few, or none beyond a few
    epochs) leave it near the prior with the prior's wide interval. They are compared by a repetition
    backtest: both fitted on the runs of at most `repetition_backtest_cut` epochs
    (REPETITION_BACKTEST_EPOCHS when runs go beyond it, else the middle of the repeated runs' epochs)
    and scored on the others. The data-constrained law is kept only when its backtest error is no
    worse than the plain law's, with R_D* and its interval in `law.repetition` and the comparison in
    `law.repetition.backtest` (also `LawFit.repetition_record`); otherwise, or with no runs to
    backtest on, the plain law is kept and the record says why."""
    first = first_fit_rows(runs)
    columns = {k: v[first] for k, v in runs.items() if k != "unique_tokens"}
    if "total_params" in columns:
        options["total_params"] = "total_params"
    result = fit_supervised(columns, **options)
    rows = np.zeros(len(first), bool)
    rows[np.flatnonzero(first)[result.rows]] = True
    result.rows = rows
    return refit_with_repetition(result, runs, prior)


def fit_distillation(data=None, *, student_law: SupervisedLaw, params=None, tokens=None, teacher_loss=None,
                     loss=None, form: str = "auto",
                     backtest: bool = True, max_folds: int = MAX_FOLDS,
                     backtest_grid: dict | None = None, progress: Callable[[str], None] | None = None,
                     interval_scale: bool = True, **fitter_options) -> LawFit:
    """Fit the distillation law with its exponents free ("free"), tied to the student law's
    ("tied"), or the one of the two that extrapolates better to stronger teachers ("auto").

    The runs, one per distilled student, as in `fit_supervised`: columns of the table `data`
    (default names student_params, student_tokens, teacher_loss, loss) or the values themselves
    (`params=N_S, tokens=D_S, teacher_loss=L_T, loss=L_S`). `student_law` (a SupervisedLaw, or the
    LawFit of one) gives the students' supervised loss Ltilde_S.

    The backtest orders the students by teacher strength, 1 / L_T: fitted on the students of the
    weaker teachers (at least 3, for the capacity-gap switch), it predicts those of the stronger.
    `backtest_grid` replaces the start grid of the backtest's refits (e.g. a coarse one, when the
    final fit uses the 108,000-start grid). `interval_scale` (default True): a law whose teachers are
    too few for a backtest (its extrapolation error the literature's) carries the calibration of its
    intervals across corpora that ships with distillscale (`laws.distillation_interval`); False: its
    own interval. A law with a backtest keeps the backtest's."""
    _check_max_folds(max_folds)
    student_law = getattr(student_law, "law", student_law)
    if not isinstance(student_law, SupervisedLaw):
        raise ParameterError("student_law", f"{{}} must be a SupervisedLaw (or the LawFit of one), "
                             f"not {type(student_law).__name__}")
    runs = run_columns(data, params=("student_params", params), tokens=("student_tokens", tokens),
                       teacher_loss=("teacher_loss", teacher_loss), loss=("loss", loss))
    N_S, D_S, L_T, L_S = runs["params"], runs["tokens"], runs["teacher_loss"], runs["loss"]
    if form != "auto" and form not in DISTILLATION_FORMS:
        raise ParameterError("form", "unknown {} {form!r}: use auto, " + " or ".join(DISTILLATION_FORMS), form=form)
    _check_fitter_options(DistillationLawFitter, fitter_options)
    names = DISTILLATION_FORMS if form == "auto" else (form,)
    candidates = [DistillationCandidate(name) for name in names]

    def make(candidate, **overrides) -> DistillationLawFitter:
        return DistillationLawFitter(student_law, tie_exponents=candidate.name == "tied",
                                     **{**fitter_options, **overrides})

    def fit_predict(candidate):
        grid = {"grid": backtest_grid} if backtest_grid is not None else {}
        return lambda trains: make(candidate, bootstrap=0, max_iter=BACKTEST_MAX_ITER, **grid).predict_subsets(
            N_S, D_S, L_T, L_S, trains)

    strength = 1.0 / L_T
    fit = _select(candidates, [strength] * len(candidates), L_S, lambda c: np.ones(len(L_S), bool),
                  fit_predict, lambda c, rows: make(c).fit(N_S[rows], D_S[rows], L_T[rows], L_S[rows]),
                  scale_name="teacher strength (1 / teacher loss)", min_levels=3, backtest=backtest,
                  max_folds=max_folds, level=fitter_options.get("level", 0.9), progress=progress,
                  settings=np.column_stack([N_S, D_S, L_T]))
    # Too few teachers for a backtest: the literature's typical error stands in for the law's own,
    # and the whole interval is scaled as the held-out students of other corpora say.
    calibration = shipped_interval_scale() if interval_scale else None
    extrapolation = fit.law.fit.extrapolation_error
    if calibration is not None and extrapolation is not None and not extrapolation.measured:
        fit.law.fit = fit.law.fit.model_copy(update={"interval_scale": calibration})
    return fit


def _check_max_folds(max_folds) -> None:
    """`max_folds`: a whole number of backtest folds, at least 1 (backtest=False turns it off)."""
    if isinstance(max_folds, bool) or not isinstance(max_folds, (int, np.integer)) or max_folds < 1:
        raise ParameterError("max_folds", "{} must be a whole number of backtest folds, at least 1 (to fit "
                             "without a backtest, pass backtest=False), got {value!r}", value=max_folds)


def _is_table(data) -> bool:
    return isinstance(data, Mapping) or hasattr(data, "columns")


def supervised_runs(data=None, *, params=None, tokens=None, loss=None, flops=None,
                    **optional) -> dict[str, np.ndarray]:
    """The runs of a supervised fit as `run_columns` gives them: params, tokens and loss (default
    column names params, tokens, loss), the tokens from `flops` (training FLOPs C, D = C / 6N) when
    those are given instead, and the `optional` inputs (total_params, unique_tokens, ...) given."""
    if flops is not None and tokens is not None:
        raise ParameterError(("tokens", "flops"), "give {} or {}, not both: the tokens are C / 6N")
    extra = {name: (None, value) for name, value in optional.items()}
    if flops is None:
        return run_columns(data, params=("params", params), tokens=("tokens", tokens), loss=("loss", loss), **extra)
    runs = run_columns(data, params=("params", params), flops=(None, flops), loss=("loss", loss), **extra)
    runs["tokens"] = runs.pop("flops") / (6.0 * runs["params"])
    return runs


def run_columns(data, rules: dict | None = None, **inputs: tuple[str | None, object]) -> dict[str, np.ndarray]:
    """The runs as float arrays of one length, keyed by parameter. Each input is (default column
    name, given): a column name of the table `data` (a pandas DataFrame or a dict of columns), or
    the values themselves; an input with neither is left out. Values must be finite and positive,
    or what `rules` (parameter -> `tables.ValueRule`) says of that parameter's."""
    columns = {}
    for param, (default, given) in inputs.items():
        given = default if given is None and data is not None else given
        if given is None:
            if default is None:  # an optional input
                continue
            raise ParameterError(param, "{} is missing: give the values, or a table as data and its column")
        if isinstance(given, str):
            if data is None:
                raise ParameterError(param, "{}={given!r} names a column, but no table was given: pass "
                                     "the table as data, or the values themselves", given=given)
            names = list(data.columns if hasattr(data, "columns") else data.keys())
            if given not in names:
                raise ParameterError(param, "{}={given!r} is not a column of the table; its columns: {columns}", given=given,
                                     columns=", ".join(map(repr, names)))
            given = data[given]
        try:
            values = np.asarray(given, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(param, "{} must hold numbers, one per run") from None
        if values.ndim != 1:
            raise ParameterError(param, f"{{}} must be one value per run (1-D), got shape {values.shape}")
        rule = (rules or {}).get(param)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)) if rule is None else ~rule.valid(values))
        if bad.size:
            needs = "finite and positive" if rule is None else rule.needs
            raise ParameterError(param, f"{{}} must be {needs}; runs {', '.join(map(str, bad[:5]))}"
                                 f"{' ...' if bad.size > 5 else ''} are not (e.g. {{example!r}})", example=values[bad[0]])
        columns[param] = values
    lengths = {param: len(values) for param, values in columns.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        odd = next(p for p, n in lengths.items() if n != lengths[first])
        raise ParameterError(odd, f"{{}} has {lengths[odd]} runs, {first} has {lengths[first]}: give one "
                             "value per run in each")
    return columns


def _within(score: float, best: float, factor: float) -> bool:
    """Whether `score` is within `factor` times `best`, scores within SCORE_TIE of each other counted
    equal (so a best score of exactly 0 is no boundary that rounding can cross; an infinite factor
    takes every finite score)."""
    return score <= best + SCORE_TIE or score <= best * factor


def _select(candidates, scales, observed, eligible, fit_predict, final_fit, *, scale_name: str,
            min_levels: int, backtest: bool, max_folds: int, level: float, fallback=None,
            can_win: Callable | None = None, progress: Callable[[str], None] | None = None,
            settings: np.ndarray | None = None) -> LawFit:
    """Backtest every candidate on shared folds, choose, refit the winner with its bootstrap;
    without a backtest score, `fallback(candidates)` picks (default: chinchilla, else the first).
    `can_win(candidate)`: only those may be chosen (the others are backtested and reported, e.g.
    the forms whose median is the candidate); their errors alone make the intervals. `settings`
    (one row per run, e.g. (N, D)): runs of equal rows are seeds of one setting, whose spread is the
    seed noise of the intervals (`uncertainty.seed_noise`)."""
    masks = [eligible(c) for c in candidates]
    scores: list[CandidateScore] = []
    if backtest:
        min_fit_runs = max(c.n_parameters for c in candidates) + 1
        folds = rolling_origin_folds(scales[0], min_fit_runs=min_fit_runs, min_fit_levels=min_levels,
                                     max_folds=max_folds)
        common = np.logical_and.reduce(masks)
        for number, (candidate, scale, mask) in enumerate(zip(candidates, scales, masks), 1):
            if progress is not None and folds:
                progress(f"backtesting {candidate.name} ({number} of {len(candidates)} candidates, "
                         f"{len(folds)} folds)")
            result = run_backtest(folds, scale, observed, fit_predict(candidate), scale_name=scale_name,
                                  eligible=mask)
            score = result.score(rows=common)
            note = None if score is not None else (
                "too few sizes to backtest" if not folds else
                "no fold could be fitted: " + "; ".join(sorted(set(result.skipped.values())))[:300])
            scores.append(CandidateScore(candidate.name, candidate.n_parameters, result, score, note))
    scored = [s for s in scores if s.score is not None]
    if can_win is not None and any(can_win(c) for c, s in zip(candidates, scores) if s.score is not None):
        scored = [s for c, s in zip(candidates, scores) if s.score is not None and can_win(c)]
    if scored:
        best = min(s.score for s in scored)
        within = [s for s in scored if _within(s.score, best, 1 + PARSIMONY)]
        winner = min(within, key=lambda s: (s.n_parameters, scores.index(s)))
        index = scores.index(winner)
        lowest = min(scored, key=lambda s: s.score)
        reason = (f"lowest backtest error ({winner.score:.2%})" if winner is lowest else
                  f"backtest error {winner.score:.2%}, within {PARSIMONY:.0%} of the lowest "
                  f"({lowest.name}: {lowest.score:.2%}) with fewer parameters")
        if len(candidates) == 1:
            reason = f"the only candidate (backtest error {winner.score:.2%})"
        elif len(scored) == 1 and can_win is not None:
            others = [s for s in scores if s is not winner and s.score is not None]
            reason = f"backtest error {winner.score:.2%}" + (
                "; the forms alone, not chosen: " + ", ".join(f"{s.name} {s.score:.2%}" for s in others) if others else "")
    else:
        # Nothing to compare by: keep the default (chinchilla if asked, else the first candidate)
        # and say in the record that no backtest supports it.
        index = fallback(candidates) if fallback is not None else \
            next((i for i, c in enumerate(candidates) if c.name == "chinchilla"), 0)
        reason = ("no backtest: " + (scores[index].note if scores else "turned off")
                  + "; intervals use the literature's typical extrapolation error instead")
    chosen = candidates[index]
    rows = masks[index]
    if progress is not None:
        progress(f"fitting {chosen.name} to {int(np.sum(rows))} runs, with its bootstrap")
    fitter = final_fit(chosen, rows)
    chosen_backtest = scores[index].backtest if scores else None
    extrapolation = None
    # Candidates whose backtest error is far above the best (more than POOL_WITHIN times) could not
    # have won under a luckier draw of the runs: their errors measure a form nobody would choose.
    contenders = [s for s in scored if _within(s.score, min(x.score for x in scored), POOL_WITHIN)]
    pooled = [s.backtest for s in contenders if s.backtest.held_out] or \
        ([chosen_backtest] if chosen_backtest is not None and chosen_backtest.held_out else [])
    if pooled:
        # The winner of a selection by backtest has, by construction, the luckiest backtest: its own
        # errors understate its error beyond the runs (winner's curse). The errors of every
        # candidate together measure the extrapolation error of fitting *and choosing* a form.
        extrapolation = ExtrapolationError.from_backtest(
            *(np.concatenate([getattr(b, name) for b in pooled]) for name in ("errors", "distances", "spans")),
            level, scale_name, float(scales[index][rows].min()), float(scales[index][rows].max()))
    if extrapolation is None:
        extrapolation = ExtrapolationError.unmeasured(level, scale_name, float(scales[index][rows].min()),
                                                      float(scales[index][rows].max()))
    if settings is not None:
        extrapolation = extrapolation.with_seed_noise(settings[rows], observed[rows])
    result = LawFit(fitter.law_, fitter, chosen.name, reason, scores, chosen_backtest, extrapolation, rows,
                    candidate=chosen)
    fitter.law_.fit = fitter.law_.fit.model_copy(update={
        "selection": Selection(chosen=chosen.name, reason=reason, candidates=[c.to_dict() for c in scores]),
        "backtest": chosen_backtest.to_dict() if chosen_backtest is not None else None,
        "extrapolation_error": extrapolation})
    return result
