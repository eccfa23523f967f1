"""Calibrating the laws on runs: the students' supervised law, then the distillation law, each with
its form chosen by backtest (`laws.selection`), then a check on runs the fits did not see. This is
what `distillscale fit` and `distillscale report` both run.

    calibration = calibrate(runs, teacher_loss="teacher_loss", holdout="largest")
    calibration.supervised, calibration.distillation    # LawFits; None when skipped (why: .skipped)
    calibration.holdout["supervised"]                   # HoldoutCheck: error and coverage per held-out run
    calibration.laws("mine").save("law.json")

The runs are columns of a table or arrays, as in `fit_supervised`. Runs with a teacher loss are
distilled students; the others (teacher loss missing or NaN) are supervised runs (teachers,
baselines), which fit the students' supervised law unless `supervised_law` is given.

Hold-out checks (`holdout`):
- "largest": each law refitted, form selection and backtest included, without the runs of its
  largest model (the largest size; for students, the strongest teacher, extrapolating from weaker
  to stronger models as Busbridge et al. do), then asked to predict them with its intervals. The
  distillation check keeps the full supervised law for Ltilde_S, so it measures the distillation
  law's own extrapolation.
- a boolean array, one per run: the laws are fitted only on the runs where it is True and
  checked on the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from distillscale.data.loss_identity import LossIdentity
from distillscale.errors import ParameterError, UserError
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.interaction import SUPERVISED_FORM_NAMES
from distillscale.laws.lawset import ComputeSettings, LawSet
from distillscale.laws.repetition import repeated_prediction
from distillscale.laws.selection import (
    DISTILLATION_FORMS,
    LawFit,
    fit_distillation,
    fit_supervised,
    supervised_runs,
)
from distillscale.laws.uncertainty import Prediction

# Start grids by name: "coarse" (a few hundred starts: seconds, for sweeps and backtests) or "full"
# (the papers' grids, slow), as fitter options of the supervised and of the distillation fit.
START_GRIDS = ("coarse", "full")


def start_grid_options(grid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(supervised, distillation) fitter options for a named start grid."""
    from distillscale.laws.fitting import COARSE_GRIDS

    if grid not in START_GRIDS:
        raise ParameterError("grid", "unknown {} {grid!r}: use one of " + ", ".join(START_GRIDS), grid=grid)
    # The supervised fit's default (variable projection) is already as exact as the full grid.
    return ({}, {"grid": COARSE_GRIDS["distillation"]}) if grid == "coarse" else ({"solver": "grid"}, {})


@dataclass(frozen=True)
class HeldOutRun:
    """One run a law did not see, and what the law predicted for it (nats/token)."""

    row: int                                  # index of the run in the calibration's input
    observed: float
    predicted: float
    interval: tuple[float, float] | None      # None: the law has no interval
    distance: float | None                    # beyond the fitted runs, on the backtest's scale
    dominant: str | None                      # which part of the interval dominates
    raw_predicted: float | None = None        # the law's raw prediction, when `predicted` is bias-corrected

    @property
    def relative_error(self) -> float:
        return self.predicted / self.observed - 1.0

    @property
    def raw_relative_error(self) -> float:
        """The raw law's relative error (the corrected one's when the law carries no correction)."""
        return (self.predicted if self.raw_predicted is None else self.raw_predicted) / self.observed - 1.0

    @property
    def covered(self) -> bool | None:
        return None if self.interval is None else self.interval[0] <= self.observed <= self.interval[1]


# Held-out errors are one-sided (`HoldoutCheck.bias`) when at least this share of at least this many
# runs err the same way: all of 4 (as our GPU ladder's held-out size, 4 of 4 over-predicted) has a
# chance of 1 in 8 under a law without bias; 9 of 10, 1 in 46.
ONE_SIDED_MIN_RUNS = 4
ONE_SIDED_SHARE = 0.9
# A law's intervals fail its held-out check when so few held-out runs fall inside them that a law whose
# intervals hold their level would show as few less than this often (binomial, the runs taken as
# independent): at 90%, 3 or fewer of 6 (1 in 63), 6 or fewer of 10 (1 in 78).
FAILED_COVERAGE_CHANCE = 0.05


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


@dataclass(frozen=True)
class HoldoutCheck:
    """A law's predictions for the runs held out of its fit."""

    held_out: str            # which runs, in words
    form: str                # the form of the law that predicted them
    fitted_rows: np.ndarray = field(repr=False)   # indices of the runs it was fitted on
    runs: list[HeldOutRun]
    level: float | None
    # The law that made the predictions (fitted without the held-out runs, their seed noise added):
    # what a calibration of its intervals scores (`laws.distillation_interval`).
    law: SupervisedLaw | DistillationLaw | None = field(default=None, repr=False, compare=False)

    @property
    def errors(self) -> np.ndarray:
        return np.array([run.relative_error for run in self.runs])

    @property
    def raw_errors(self) -> np.ndarray:
        """The raw law's relative errors (without its bias correction; its errors when it has none)."""
        return np.array([run.raw_relative_error for run in self.runs])

    @property
    def corrected(self) -> bool:
        """Whether the predictions are bias-corrected (`laws.crossladder`): then `raw_errors` differ."""
        return any(run.raw_predicted is not None for run in self.runs)

    @property
    def coverage(self) -> float | None:
        covered = [run.covered for run in self.runs if run.covered is not None]
        return float(np.mean(covered)) if covered else None

    @property
    def n_over_predicted(self) -> int:
        """How many held-out runs the law predicted a higher loss for than they reached."""
        return int(np.sum(self.errors > 0))

    @property
    def bias(self) -> str | None:
        """A warning when the held-out errors are one-sided (ONE_SIDED): the law is biased where it
        extrapolates, which its intervals (centred on the prediction) do not correct; None otherwise."""
        n, over = len(self.runs), self.n_over_predicted
        if n < ONE_SIDED_MIN_RUNS or max(over, n - over) < ONE_SIDED_SHARE * n:
            return None
        side, direction, reading = (("over", "high", "pessimistic") if over > n - over
                                    else ("under", "low", "optimistic"))
        count = f"all {n}" if max(over, n - over) == n else f"{max(over, n - over)} of {n}"
        return (f"the law {side}-predicted {count} held-out runs (mean signed error "
                f"{float(np.mean(self.errors)):+.2%}): it is biased where it extrapolates, and its intervals are "
                f"centred on the biased value; losses it predicts beyond the fitted sizes are likely too "
                f"{direction} ({reading}); published ladders show the same (docs/validation_pack.md)")

    @property
    def failed(self) -> str | None:
        """Why the law failed its own held-out check, in a short clause for the verdicts it gives (None:
        it passed): its errors one-sided (`bias`), or its intervals covering far fewer held-out runs than
        their level (FAILED_COVERAGE_CHANCE)."""
        reasons = []
        n, over = len(self.runs), self.n_over_predicted
        if self.bias is not None:
            mean = float(np.mean(self.errors))
            reasons.append(f"held-out runs predicted {abs(mean):.2%} too {'high' if mean > 0 else 'low'} on average "
                           f"({max(over, n - over)} of {n} {'over' if over > n - over else 'under'}-predicted)")
        covered = [run.covered for run in self.runs if run.covered is not None]
        if covered and self.level and _binomial_cdf(sum(covered), len(covered), self.level) < FAILED_COVERAGE_CHANCE:
            reasons.append(f"{sum(covered)} of {len(covered)} inside their {self.level:.0%} intervals")
        return ", ".join(reasons) or None

    def to_dict(self, run_ids=None) -> dict[str, Any]:
        """The check as JSON; `run_ids` name the runs (default: their row)."""
        errors = np.abs(self.errors)
        return {"held_out": self.held_out, "form": self.form, "n_fitted": len(self.fitted_rows),
                "n_held_out": len(self.runs),
                "mean_abs_relative_error": float(errors.mean()) if errors.size else None,
                "max_abs_relative_error": float(errors.max()) if errors.size else None,
                "coverage": self.coverage, "level": self.level,
                "mean_relative_error": float(self.errors.mean()) if errors.size else None,
                "n_over_predicted": self.n_over_predicted, "bias": self.bias, "failed": self.failed,
                "bias_corrected": self.corrected, "raw": self._raw_summary(),
                "runs": [{"run_id": run.row if run_ids is None else run_ids[run.row], "observed": run.observed,
                          "predicted": run.predicted, "relative_error": run.relative_error,
                          "raw_predicted": run.raw_predicted if run.raw_predicted is not None else run.predicted,
                          "raw_relative_error": run.raw_relative_error,
                          "interval": list(run.interval) if run.interval else None, "covered": run.covered,
                          "distance": run.distance, "dominant": run.dominant} for run in self.runs]}

    def _raw_summary(self) -> dict[str, Any]:
        """The raw law's held-out errors (without the bias correction), signed, for raw vs corrected."""
        raw = self.raw_errors
        return {"mean_abs_relative_error": float(np.abs(raw).mean()) if raw.size else None,
                "mean_relative_error": float(raw.mean()) if raw.size else None,
                "n_over_predicted": int(np.sum(raw > 0))}

    def describe_raw(self) -> str | None:
        """One line: the held-out errors corrected and raw, with signs (None without a correction)."""
        if not self.corrected or not self.runs:
            return None
        raw, fixed = self.raw_errors, self.errors
        return (f"bias-corrected: mean |error| {np.abs(fixed).mean():.2%} (signed {fixed.mean():+.2%}, "
                f"{int(np.sum(fixed > 0))} of {len(fixed)} over-predicted); raw law {np.abs(raw).mean():.2%} "
                f"(signed {raw.mean():+.2%}, {int(np.sum(raw > 0))} of {len(raw)} over-predicted)")


@dataclass
class Calibration:
    """The fitted laws, the steps skipped (step -> why) and the hold-out checks (law -> check, or
    why it was skipped)."""

    supervised: LawFit | None = None
    distillation: LawFit | None = None
    holdout: dict[str, HoldoutCheck | str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    supervised_law: SupervisedLaw | None = None   # the students' supervised law: fitted, or given

    def laws(self, name: str = "fitted", compute: ComputeSettings | None = None, source: str = "",
             losses: LossIdentity | None = None) -> LawSet:
        """The fitted laws as a law set, what `--law` and `plan` read; `losses`: what the runs' losses
        are (`data.loss_identity`; None: not given)."""
        return LawSet(name, self.supervised_law, self.distillation.law if self.distillation else None,
                      compute or ComputeSettings.of(losses), source=source, losses=losses or LossIdentity())


def calibrate(data=None, *, params=None, tokens=None, loss=None, teacher_loss=None, total_params=None,
              unique_tokens=None, flops=None, supervised_law: SupervisedLaw | None = None, form: str = "auto", distillation_form: str = "auto",
              holdout: str | np.ndarray | None = None, supervised_options: dict | None = None,
              distillation_options: dict | None = None, skip_failed: bool = False, min_ratios: int = 1,
              source: dict | None = None, progress: Callable[[str], None] = lambda message: None) -> Calibration:
    """Fit the laws to the runs and check them (see the module's docstring).

    `supervised_options` and `distillation_options` go to `fit_supervised` and `fit_distillation`
    (bootstrap, level, seed, grid, max_iter, ...). `min_ratios`: the supervised runs must span at
    least this many sizes and tokens-per-parameter ratios (with one ratio the N and D terms are
    told apart only by their exponents: a fit, but a poorly determined one). With `skip_failed`, a
    step that cannot be done (too few runs of some kind) is recorded in `skipped` instead of raised. `source` (which file
    and columns) is kept in the fit records; `progress(message)` is told which step starts.
    `unique_tokens` (column or values, the unique tokens behind each run's tokens) makes the
    data-constrained form a candidate of the supervised fit when runs repeat data (`laws.repetition`)."""
    # Each law's form is checked here, under this function's own names: fit_distillation calls its
    # form `form`, which here is `distillation_form`.
    if form != "auto" and form not in SUPERVISED_FORM_NAMES:
        raise ParameterError("form", "unknown {} {form!r}: use auto or one of " + ", ".join(SUPERVISED_FORM_NAMES),
                             form=form)
    if distillation_form != "auto" and distillation_form not in DISTILLATION_FORMS:
        raise ParameterError("distillation_form", "unknown {} {form!r}: use auto, " + " or ".join(DISTILLATION_FORMS),
                             form=distillation_form)
    if data is not None and teacher_loss is None and _has_column(data, "teacher_loss"):
        teacher_loss = "teacher_loss"
    L_T = _teacher_losses(data, teacher_loss)
    is_student = np.isfinite(L_T) if L_T is not None else None
    runs = supervised_runs(data, params=params, tokens=tokens, loss=loss, flops=flops, total_params=total_params,
                           unique_tokens=unique_tokens)
    n_runs = len(runs["loss"])
    is_student = np.zeros(n_runs, bool) if is_student is None else is_student
    if len(is_student) != n_runs:
        raise ParameterError("teacher_loss", f"{{}} has {len(is_student)} runs, loss has {n_runs}: give one "
                             "value per run in each (NaN for a supervised run)")
    fit_rows = _fit_rows(holdout, n_runs)
    result = Calibration(supervised_law=supervised_law)
    supervised_options = {"form": form, **(supervised_options or {})}
    distillation_options = {"form": distillation_form, **(distillation_options or {})}

    def step(name: str, fit: Callable[[], LawFit]) -> LawFit | None:
        try:
            try:
                return fit()
            except ParameterError as exc:  # the fit's parameter under this function's name
                raise exc.renamed({"form": f"{name}_form"} if name == "distillation" else {}) from None
        except UserError as exc:
            if not skip_failed:
                raise
            result.skipped[name] = str(exc)
            return None

    supervised_rows = np.flatnonzero(~is_student)
    if supervised_law is None and not len(supervised_rows) and is_student.any():
        raise ParameterError("supervised_law", "there are no supervised runs (without a teacher loss) to fit "
                             "the students' supervised law on: add them, or give the law as {}")
    if supervised_law is None:
        progress(f"fitting the supervised law on {len(supervised_rows)} runs (candidate forms backtested)")
        result.supervised = step("supervised", lambda: _fit_supervised(
            runs, supervised_rows[fit_rows[supervised_rows]], {"progress": progress, **supervised_options}, source,
            min_ratios))
        result.supervised_law = result.supervised.law if result.supervised else None
    student_rows = np.flatnonzero(is_student)
    if teacher_loss is not None and result.supervised_law is not None:
        progress(f"fitting the distillation law on {len(student_rows)} runs (candidate forms backtested)")
        result.distillation = step("distillation", lambda: _fit_distillation(
            runs, L_T, student_rows[fit_rows[student_rows]], result.supervised_law,
            {"progress": progress, **distillation_options}, source))
    if holdout is not None:
        progress("checking the laws on runs held out of their fits")
        if result.supervised is not None:
            result.holdout["supervised"] = _check(
                holdout, result.supervised, supervised_rows, fit_rows, runs["params"], runs["loss"],
                lambda rows: _fit_supervised(runs, rows, supervised_options, source, min_ratios),
                lambda fit, rows: _supervised_prediction(fit, runs, rows), "size",
                np.column_stack([runs["params"], runs["tokens"]]))
        if result.distillation is not None:
            result.holdout["distillation"] = _check(
                holdout, result.distillation, student_rows, fit_rows, 1.0 / L_T, runs["loss"],
                lambda rows: _fit_distillation(runs, L_T, rows, result.supervised_law, distillation_options, source),
                lambda fit, rows: fit.predict(runs["params"][rows], runs["tokens"][rows], L_T[rows]), "teacher",
                np.column_stack([runs["params"], runs["tokens"], L_T]))
    return result


def _has_column(data, name: str) -> bool:
    return name in (data.columns if hasattr(data, "columns") else data)


def _teacher_losses(data, teacher_loss) -> np.ndarray | None:
    """Teacher losses as floats, NaN for supervised runs (a missing or empty value); None when not given."""
    if teacher_loss is None:
        return None
    if isinstance(teacher_loss, str):
        if data is None or not _has_column(data, teacher_loss):
            raise ParameterError("teacher_loss", "{}={column!r} is not a column of the table", column=teacher_loss)
        teacher_loss = data[teacher_loss]
    try:
        return np.array([np.nan if v is None or (isinstance(v, str) and not v.strip()) else float(v)
                         for v in teacher_loss], dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError("teacher_loss", "{} must hold numbers (NaN or empty for a supervised run)") from None


def _fit_rows(holdout, n_runs: int) -> np.ndarray:
    """The runs the laws are fitted on (all but a boolean `holdout`'s False ones)."""
    if holdout is None or isinstance(holdout, str):
        if holdout not in (None, "largest"):
            raise ParameterError("holdout", "unknown {} {holdout!r}: use 'largest' or a boolean array", holdout=holdout)
        return np.ones(n_runs, dtype=bool)
    mask = np.asarray(holdout)
    if mask.dtype != bool or mask.shape != (n_runs,):
        raise ParameterError("holdout", f"{{}} must be 'largest' or one boolean per run ({n_runs})")
    if not mask.any():
        raise ParameterError("holdout", "{} leaves no run to fit on")
    return mask


def _params_of(fit: LawFit, runs: dict[str, np.ndarray]) -> np.ndarray:
    """The parameter count the chosen supervised candidate was fitted on: total or non-embedding."""
    return runs["total_params"] if "total params" in fit.chosen else runs["params"]


def _supervised_prediction(fit: LawFit, runs: dict[str, np.ndarray], rows: np.ndarray) -> Prediction:
    """The supervised law's prediction for `rows`; for a law with repetition constants and runs with
    unique tokens, with each run's own repetition (`repetition.repeated_prediction`), as `predict
    --unique-tokens` gives it."""
    N, D = _params_of(fit, runs)[rows], runs["tokens"][rows]
    prediction = fit.predict(N, D)
    if "unique_tokens" in runs and fit.law.repetition is not None:
        prediction = repeated_prediction(fit.law, prediction, N, D, runs["unique_tokens"][rows])
    return prediction


def _fit_supervised(runs: dict[str, np.ndarray], rows: np.ndarray, options: dict, source: dict | None,
                    min_ratios: int) -> LawFit:
    N, D = runs["params"][rows], runs["tokens"][rows]
    sizes, ratios = len(np.unique(N)), len(np.unique(np.round(D / N, 6)))
    if sizes < min_ratios or ratios < min_ratios:
        raise UserError(f"the supervised law needs runs of at least {min_ratios} sizes at {min_ratios} "
                        f"tokens-per-parameter ratios; the runs have {sizes} size(s) and {ratios} ratio(s)")
    total = runs["total_params"][rows] if "total_params" in runs else None
    unique = {"unique_tokens": runs["unique_tokens"][rows]} if "unique_tokens" in runs else {}
    return _with_source(fit_supervised(N, D, runs["loss"][rows], total_params=total, **unique, **options), source)


def _fit_distillation(runs: dict[str, np.ndarray], L_T: np.ndarray, rows: np.ndarray, student_law: SupervisedLaw,
                      options: dict, source: dict | None) -> LawFit:
    from distillscale.laws.fitting import COARSE_GRIDS

    if not len(rows):
        raise UserError("there are no distilled student runs (with a teacher loss) to fit the distillation "
                        "law on")
    if len(np.unique(L_T[rows])) < 2:
        raise UserError("the distillation law needs students of at least 2 different teachers")
    # The backtest's refits start from the coarse grid: the final fit keeps the options' grid.
    options = {"backtest_grid": COARSE_GRIDS["distillation"], **options}
    fit = fit_distillation(params=runs["params"][rows], tokens=runs["tokens"][rows], teacher_loss=L_T[rows],
                           loss=runs["loss"][rows], student_law=student_law, **options)
    return _with_source(fit, source)


def _with_source(fit: LawFit, source: dict | None) -> LawFit:
    if source is not None:
        fit.law.fit = fit.law.fit.model_copy(update={"source": source})
    return fit


def _with_seed_noise(fit: LawFit, settings: np.ndarray, observed: np.ndarray) -> LawFit:
    """The fit, its intervals with the seed noise of these runs when they repeat more settings than
    the fit's own runs did (a copy: the fitted law itself is not changed)."""
    if fit.extrapolation_error is None:
        return fit
    extrapolation = fit.extrapolation_error.with_seed_noise(settings, observed)
    if extrapolation is fit.extrapolation_error:
        return fit
    law = replace(fit.law, fit=fit.law.fit.model_copy(update={"extrapolation_error": extrapolation}))
    return replace(fit, law=law, extrapolation_error=extrapolation)


def _check(holdout, fit: LawFit, rows: np.ndarray, fit_rows: np.ndarray, scale: np.ndarray, observed: np.ndarray,
           refit: Callable[[np.ndarray], LawFit], predict: Callable[[LawFit, np.ndarray], Prediction],
           largest: str, settings: np.ndarray) -> HoldoutCheck | str:
    """The law's predictions for the runs among `rows` it did not see: those `fit_rows` leaves out,
    or with holdout="largest", those at the largest `scale`, predicted by a refit without them.
    Their intervals include the seed noise of every repeated setting among `rows` (rows of `settings`
    equal: seeds of one run; their spread about their own mean, never about the law), held-out
    ones included: seeds of the held-out size alone are seed noise the fit could not see."""
    if isinstance(holdout, str):
        top = scale[rows].max()
        train, held = rows[scale[rows] < top], rows[scale[rows] == top]
        what = "the runs of the largest size" if largest == "size" else "the students of the strongest teacher"
        try:
            fit = refit(train)
        except UserError as exc:
            return f"without {what}: {exc}"
    else:
        train, held = rows[fit_rows[rows]], rows[~fit_rows[rows]]
        what = "the runs left out of the fit"
    if not len(held):
        return HoldoutCheck(what, fit.chosen, train, [], None)
    fit = _with_seed_noise(fit, settings[rows], observed[rows])
    prediction = predict(fit, held)
    raw = None
    if isinstance(fit.law, SupervisedLaw) and fit.law.bias_correction is not None:
        raw = predict(replace(fit, law=fit.law.without_bias_correction()), held)
    def at(x, i: int) -> float | None:
        return None if x is None else float(np.atleast_1d(x)[i])

    runs = []
    for i, row in enumerate(held):
        interval = (at(prediction.low, i), at(prediction.high, i)) if prediction.has_interval else None
        dominant = None
        if interval is not None:
            dominant = ("extrapolation error" if (at(prediction.extrapolation, i) or 0) >= (at(prediction.noise, i) or 0)
                        else "noise of the runs")
        runs.append(HeldOutRun(int(row), float(observed[row]), at(prediction.value, i), interval,
                               at(prediction.distance, i), dominant, None if raw is None else at(raw.value, i)))
    return HoldoutCheck(what, fit.chosen, train, runs, prediction.level, fit.law)
