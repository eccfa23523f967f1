"""The two scaling-law forms, vectorised over numpy arrays.

Supervised (Busbridge et al. 2025, Eq. 1; Chinchilla when gamma = 1):

    L(N, D) = E + (A / N^alpha + B / D^beta)^gamma

Distillation (Busbridge et al. 2025, Eq. 8):

    L_S(N_S, D_S, L_T) = L_T + L_T^(-c0) * (1 + (L_T / (Ltilde_S * d1))^(1/f1))^(-c1 * f1)
                         * (A' / N_S^alpha' + B' / D_S^beta')^gamma'

with Ltilde_S = L(N_S, D_S) from the student's supervised law. N counts non-embedding parameters,
D training tokens, and L is validation cross-entropy in nats/token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from distillscale.checks import checked
from distillscale.errors import ParameterError
from distillscale.laws.crossladder import BiasCorrection
from distillscale.laws.record import FitRecord
from distillscale.laws.repetition import Repetition, predict_repeated
from distillscale.laws.uncertainty import Prediction, combine, equivalent_distance

ArrayLike = Any
# Fixed-point steps of `SupervisedLaw.tokens_reaching` under a bias correction (it moves D by a
# small factor, so a few steps converge; the loop stops once D moves by less than 1e-10 relative).
TOKENS_REACHING_STEPS = 50


def _pos(x: ArrayLike, name: str = "value") -> np.ndarray:
    """`x` as floats, each a positive finite number; a ParameterError naming `name` otherwise (a
    law evaluated at None, 0 or a negative size would return nan or inf without a word)."""
    if x is None or isinstance(x, (str, bytes, bool)):
        raise ParameterError(name, "{} must be a positive number or an array of them, got {value!r}", value=x)
    try:
        values = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(name, "{} must be a positive number or an array of them, got {value!r}",
                             value=x) from None
    if values.ndim == 0:   # one number (the planner's searches call a law at one point thousands of times)
        if not 0.0 < float(values) < math.inf:   # a nan fails both comparisons
            raise ParameterError(name, "{} must be positive finite numbers, got {value!r}", value=float(values))
        return values
    bad = ~(np.isfinite(values) & (values > 0))
    if np.any(bad):
        raise ParameterError(name, "{} must be positive finite numbers, got {value!r}",
                             value=float(values[bad].flat[0]))
    return values


def _bootstrap_interval(law, predict_one, value=None,
                        alternatives: list | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high) of a prediction over the bootstrap coefficient samples stored in a law's fit
    record (coefficients the fit held fixed keep the law's values), at the record's level, widened
    to span `alternatives` (the predictions of laws the runs allow as well: `_profile_laws`) and
    `value` with them; None when the law was fitted with neither."""
    if law.fit is None or (law.fit.bootstrap is None and not alternatives):
        return None
    bounds = []
    if law.fit.bootstrap is not None:
        names, point = law.fit.bootstrap.coefficients, law.coefficients()
        predictions = np.stack([predict_one({**point, **dict(zip(names, row))}) for row in law.fit.bootstrap.samples])
        level = law.fit.level
        bounds = list(np.quantile(predictions, [(1 - level) / 2, (1 + level) / 2], axis=0))
    spread = np.stack([np.asarray(x, float) for x in [*bounds, *(alternatives or []), *([] if bounds else [value])]])
    return spread.min(axis=0), spread.max(axis=0)


def _profile_laws(law: "SupervisedLaw") -> list["SupervisedLaw"]:
    """The laws a fit's runs allow as well as the fitted one when they cannot pin E down (its
    record's `profile`, `laws.fitting.irreducible_loss_profile`); none otherwise."""
    profile = law.fit.profile if law.fit is not None else None
    return [SupervisedLaw(**coefficients) for coefficients in profile.laws] if profile is not None else []


def loss_floor(law: "SupervisedLaw") -> float:
    """The lowest loss the law makes physically plausible: the lower end of E's interval (E itself
    without one), or 0 when the runs do not identify E. No interval of a prediction goes below it."""
    fit = law.fit
    if fit is not None and "E" in fit.not_identified:
        return 0.0
    low = fit.intervals.get("E", (law.E, law.E))[0] if fit is not None else law.E
    return float(min(law.E, low))


def _floored(prediction: Prediction, floor: float) -> Prediction:
    """The prediction with its interval's lower end at least `floor` (never above the prediction)."""
    if not prediction.has_interval or floor <= 0:
        return prediction
    low = np.maximum(np.asarray(prediction.low, float), np.minimum(floor, np.asarray(prediction.value, float)))
    return replace(prediction, low=float(low) if low.ndim == 0 else low)


def _bounds(prediction: Prediction) -> tuple[np.ndarray, np.ndarray] | None:
    return (prediction.low, prediction.high) if prediction.has_interval else None


@dataclass
class SupervisedLaw:
    """L(N, D) = E + (A/N^alpha + B/D^beta)^gamma. `fit` holds the fit record when fitted;
    `repetition` the decay of repeated data (`laws.repetition`) when the law knows it."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    gamma: float = 1.0
    fit: FitRecord | None = field(default=None, compare=False, repr=False)
    repetition: Repetition | None = field(default=None, compare=False, repr=False)

    COEFFICIENTS = ("E", "A", "B", "alpha", "beta", "gamma")

    @property
    def form(self) -> str:
        return "chinchilla" if self.gamma == 1.0 else "busbridge"

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray | float:
        """Expected validation loss (nats/token) for N non-embedding parameters and D tokens: the
        form's value (`raw_predict`), corrected beyond the fitted runs when the law carries a bias
        correction (`bias_correction`, `laws.crossladder`; 1 inside the runs)."""
        out = self.raw_predict(N, D)
        correction = self.bias_correction
        if correction is None:
            return out
        out = np.asarray(out, float) * correction.factor(N, D)
        return float(out) if out.ndim == 0 else out

    def raw_predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray | float:
        """The form's own loss (nats/token) at (N, D), without the bias correction."""
        N, D = _pos(N, "N"), _pos(D, "D")
        # Sum the two power terms in log space so huge exponents cannot overflow.
        log_terms = np.logaddexp(np.log(self.A) - self.alpha * np.log(N),
                                 np.log(self.B) - self.beta * np.log(D))
        out = self.E + np.exp(self.gamma * log_terms)
        return float(out) if out.ndim == 0 else out

    @property
    def bias_correction(self) -> BiasCorrection | None:
        """The cross-ladder correction of predictions beyond the fitted runs its fit record carries
        (`laws.crossladder`), or None (a preset, a law fitted with bias_correction=False)."""
        return self.fit.bias_correction if self.fit is not None else None

    def without_bias_correction(self) -> "SupervisedLaw":
        """This law with its raw predictions (`--no-bias-correction`): a copy whose record has no correction."""
        if self.bias_correction is None:
            return self
        return replace(self, fit=self.fit.model_copy(update={"bias_correction": None}))

    def data_exponent(self, N: ArrayLike) -> np.ndarray | float:
        """The exponent of D at model size N (the same at every N in this form)."""
        return self.beta + 0.0 * np.asarray(_pos(N, "N"), dtype=np.float64)

    def form_text(self) -> str:
        """The law's form in one line, as a plan states it: its name and how its data term depends on N."""
        gamma = "" if self.gamma == 1.0 else f", gamma = {self.gamma:.3g}"
        return f"{self.form} (one data exponent at every model size: beta = {self.beta:.3g}{gamma})"

    def data_coefficient(self, N: ArrayLike) -> np.ndarray | float:
        """The coefficient of the data term at model size N (B at every N in this form)."""
        return self.B + 0.0 * np.asarray(_pos(N, "N"), dtype=np.float64)

    def compute_optimal_params(self, D: ArrayLike) -> np.ndarray:
        """N that is compute-optimal for D tokens (dL/d ln N = dL/d ln D at (N, D): the size whose
        optimal budget trains on D tokens). Closed form in this form (gamma does not move it):
        N = G (G D)^(beta/alpha), G = (alpha A / (beta B))^(1/(alpha+beta)). The form's own: the bias
        correction (`bias_correction`), a factor beyond the runs (a few tenths of a percent per
        e-fold; a few percent with a design's family term), is left out of it (repetition counts
        excess parameters from it)."""
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return G * (G * np.asarray(D, float)) ** (self.beta / self.alpha)

    def tokens_reaching(self, N: ArrayLike, loss: float) -> np.ndarray:
        """D with L(N, D) = loss for each N (the law inverted, its bias correction included: the
        form's inversion at loss / correction, repeated until D stops moving); NaN where no D
        reaches it."""
        N = np.asarray(_pos(N, "N"), dtype=np.float64)
        tokens = self._raw_tokens_reaching(N, np.full(N.shape, float(loss)))
        correction = self.bias_correction
        if correction is None:
            return tokens
        for _ in range(TOKENS_REACHING_STEPS):
            reached = np.isfinite(tokens)
            factor = np.asarray(correction.factor(N, np.where(reached, tokens, 1.0)), float)
            step = self._raw_tokens_reaching(N, loss / factor)
            moved = np.nanmax(np.abs(np.log(step[reached] / tokens[reached])), initial=0.0)
            tokens = np.where(reached, step, tokens)
            if moved < 1e-10:
                break
        return tokens

    def _raw_tokens_reaching(self, N: np.ndarray, loss: np.ndarray) -> np.ndarray:
        """D with the form's own L(N, D) = loss, per N and loss; NaN where no D reaches it."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            data_term = np.where(loss > self.E, np.maximum(loss - self.E, 0.0) ** (1.0 / self.gamma), np.nan) \
                - self.A * N ** (-self.alpha)
            return np.where(data_term > 0, (self.data_coefficient(N) / data_term) ** (1.0 / self.data_exponent(N)),
                            np.nan)

    def predict_repeated(self, N: ArrayLike, D: ArrayLike, U: ArrayLike,
                         repetition: Repetition | None = None) -> np.ndarray | float:
        """Loss (nats/token) for D tokens of which U are unique (Muennighoff et al. 2023), with this
        law's repetition constants or the given ones."""
        repetition = repetition or self.repetition
        if repetition is None:
            raise ValueError("the law has no repetition constants: give a Repetition")
        return predict_repeated(self, repetition, N, D, U)

    def prediction(self, N: ArrayLike, D: ArrayLike) -> Prediction:
        """The prediction with its interval: the bootstrap's (noise) combined with the backtest's
        extrapolation error at N's distance beyond the fitted sizes (`laws.uncertainty`); a law
        whose fit carries the calibration across published ladders (`laws.pack_interval`) takes that
        alone: its errors are those of fits like this one on runs like these, seed noise and fit noise
        included, so neither is added again (the interval the pack's scoring scores is this one); a
        preset's stated error (`laws.preset_error`) takes its coefficients' bootstrap beside it.
        With a bias correction, value and interval corrected and the correction's own uncertainty
        added (`laws.crossladder.BiasCorrection.apply`)."""
        value = self.raw_predict(N, D)
        extrapolation = self.fit.extrapolation_error if self.fit else None
        calibrated = self.fit.interval if self.fit else None
        if calibrated is None:
            alternatives = [law.raw_predict(N, D) for law in _profile_laws(self)]
            boot = _bootstrap_interval(self, lambda c: self.with_coefficients(c).raw_predict(N, D), value, alternatives)
            distance = None if extrapolation is None else _pos(N, "N") / extrapolation.fitted_max
            prediction = combine(value, boot, extrapolation, distance, _level(self.fit))
        else:
            level = (extrapolation.level if extrapolation is not None else None) or _level(self.fit) or 0.9
            # A published law's stated error is its runs' scatter about it: the uncertainty of its
            # coefficients (a bootstrap the record carries) is not in it, and is added once.
            boot = None if calibrated.stated is None else _bootstrap_interval(
                self, lambda c: self.with_coefficients(c).raw_predict(N, D), value)
            prediction = combine(value, boot, None, _pos(N, "N") / calibrated.summary.params_max, level,
                                 sides=calibrated.sides(N, D, level, self.backtest_half_width(N)),
                                 beyond=calibrated.beyond(N, D))
        if self.bias_correction is not None:
            prediction = self.bias_correction.apply(prediction, N, D, _level(self.fit) or 0.9)
        source = "stated" if _preset(self.fit) else "own" if calibrated is None else "ladders"
        prediction = replace(prediction, calibrated=source != "own", source=source)
        return _floored(prediction, loss_floor(self))

    def backtest_half_width(self, N: ArrayLike) -> np.ndarray | None:
        """The law's own backtest's relative half-width at N, its seed noise included (None without a
        backtest): what the calibrated interval scales with (`PackInterval.backtest_power`)."""
        extrapolation = self.fit.extrapolation_error if self.fit else None
        if extrapolation is None:
            return None
        return np.hypot(extrapolation.half_width(_pos(N, "N") / extrapolation.fitted_max),
                        extrapolation.seed_half_width())

    def predict_interval(self, N: ArrayLike, D: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) of `prediction`, or None for a law without a bootstrap or backtest."""
        return _bounds(self.prediction(N, D))

    def coefficients(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.COEFFICIENTS}

    def with_coefficients(self, coefficients: dict[str, float]) -> "SupervisedLaw":
        """A law of this law's form with these coefficients (a bootstrap sample's)."""
        return SupervisedLaw(**coefficients)

    def to_dict(self) -> dict:
        out = {"form": self.form, "coefficients": self.coefficients(), "fit": _fit_json(self.fit)}
        if self.repetition is not None:
            out["repetition"] = self.repetition.to_dict()
        return out

    @classmethod
    @checked
    def from_dict(cls, data: dict) -> "SupervisedLaw":
        coeffs = dict(data["coefficients"])
        coeffs.setdefault("gamma", 1.0)
        repetition = data.get("repetition")
        return cls(**{k: float(coeffs[k]) for k in cls.COEFFICIENTS}, fit=_fit_record(data.get("fit")),
                   repetition=Repetition.from_dict(repetition) if repetition else None)


@dataclass
class DistillationLaw:
    """Student loss from student size, distillation tokens and teacher loss (Busbridge Eq. 8).

    `student_law` is the supervised law that gives Ltilde_S, what the student would reach on the
    same tokens without a teacher.
    """

    A: float
    B: float
    alpha: float
    beta: float
    gamma: float
    c0: float
    c1: float
    f1: float
    d1: float
    student_law: SupervisedLaw
    fit: FitRecord | None = field(default=None, compare=False, repr=False)
    # The distilled students' decay of repeated data, when a sweep measured it (`laws.repetition`).
    repetition: Repetition | None = field(default=None, compare=False, repr=False)

    COEFFICIENTS = ("A", "B", "alpha", "beta", "gamma", "c0", "c1", "f1", "d1")

    def predict(self, N_S: ArrayLike, D_S: ArrayLike, L_T: ArrayLike,
                student_supervised_loss: ArrayLike | None = None) -> np.ndarray | float:
        """Student cross-entropy (nats/token) against the data after distillation.

        `student_supervised_loss` overrides Ltilde_S (e.g. measured baselines); by default it is
        `student_law.predict(N_S, D_S)`.
        """
        N_S, D_S, L_T = _pos(N_S, "N_S"), _pos(D_S, "D_S"), _pos(L_T, "L_T")
        if student_supervised_loss is None:
            L_tilde = _pos(self.student_law.predict(N_S, D_S))
        else:
            L_tilde = _pos(student_supervised_loss, "student_supervised_loss")
        log_lt = np.log(L_T)
        # log of (1 + (L_T / (Ltilde_S d1))^(1/f1))^(-c1 f1), computed stably for steep switches.
        log_ratio = log_lt - np.log(L_tilde) - np.log(self.d1)
        log_gap = -self.c1 * self.f1 * np.logaddexp(0.0, log_ratio / self.f1)
        log_power = self.gamma * np.logaddexp(np.log(self.A) - self.alpha * np.log(N_S),
                                              np.log(self.B) - self.beta * np.log(D_S))
        out = L_T + np.exp(-self.c0 * log_lt + log_gap + log_power)
        return float(out) if out.ndim == 0 else out

    def prediction(self, N_S: ArrayLike, D_S: ArrayLike, L_T: ArrayLike) -> Prediction:
        """The student loss with its interval: the bootstrap's (student law held at its fitted
        coefficients) combined with the backtest's extrapolation error at the distance beyond the
        fitted runs, the larger of the teacher's (strength 1/L_T) and the student's (size), each
        scaled by its own fitted span (`uncertainty.equivalent_distance`): `distance` is in units
        of teacher strength. A law whose fit carries a calibration across corpora (`interval_scale`,
        `laws.distillation_interval`) has that interval's gaps scaled by it: what its scoring scores."""
        value = self.predict(N_S, D_S, L_T)
        # The student law's E, when its runs do not pin it down, moves Ltilde_S: so does the student.
        # Each alternative law is corrected as the student law is (its bias correction's factor at
        # (N_S, D_S), 1 without one), so the spread is E's, not the correction's.
        correction = self.student_law.bias_correction
        factor = 1.0 if correction is None else correction.factor(_pos(N_S, "N_S"), _pos(D_S, "D_S"))
        alternatives = [self.predict(N_S, D_S, L_T, student_supervised_loss=law.raw_predict(N_S, D_S) * factor)
                        for law in _profile_laws(self.student_law)]
        boot = _bootstrap_interval(
            self, lambda c: replace(self, **c).predict(N_S, D_S, L_T),
            value, alternatives)
        if boot is None and alternatives:  # a distillation law without a record of its own
            spread = np.stack([np.asarray(value, float), *map(np.asarray, alternatives)])
            boot = spread.min(axis=0), spread.max(axis=0)
        extrapolation = self.fit.extrapolation_error if self.fit else None
        distance = None
        if extrapolation is not None:
            distance = (1.0 / _pos(L_T, "L_T")) / extrapolation.fitted_max
            if self.fit.data_range is not None:
                # A student beyond the fitted sizes: its distance in units of the size span, as the
                # teacher-strength distance of the same lever (the error is measured in the latter).
                smallest, largest = self.fit.data_range.params
                distance = np.maximum(distance, equivalent_distance(
                    _pos(N_S, "N_S") / largest, largest / smallest,
                    extrapolation.fitted_max / extrapolation.fitted_min))
        level = _level(self.fit) or _level(self.student_law.fit)
        prediction = combine(value, boot, extrapolation, distance, level)
        scale = self.fit.interval_scale if self.fit else None
        if scale is not None and scale.applies_to(prediction):
            # Calibrated across corpora (`laws.distillation_interval`): the whole interval scaled, once.
            prediction = scale.calibrated(prediction)
        elif _preset(self.fit):
            prediction = replace(prediction, calibrated=True, source="stated")
        return _floored(prediction, loss_floor(self.student_law))

    def predict_interval(self, N_S: ArrayLike, D_S: ArrayLike,
                         L_T: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) of `prediction`, or None for a law without a bootstrap or backtest."""
        return _bounds(self.prediction(N_S, D_S, L_T))

    def capacity_gap_ratio(self, N_S: ArrayLike, D_S: ArrayLike, L_T: ArrayLike) -> np.ndarray:
        """L_T / Ltilde_S: the capacity-gap transition sits where this equals d1."""
        return _pos(L_T, "L_T") / _pos(self.student_law.predict(N_S, D_S))

    def coefficients(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.COEFFICIENTS}

    def to_dict(self) -> dict:
        out = {"coefficients": self.coefficients(), "fit": _fit_json(self.fit)}
        if self.repetition is not None:
            out["repetition"] = self.repetition.to_dict()
        return out

    @classmethod
    @checked
    def from_dict(cls, data: dict, student_law: SupervisedLaw) -> "DistillationLaw":
        coeffs = data["coefficients"]
        repetition = data.get("repetition")
        return cls(**{k: float(coeffs[k]) for k in cls.COEFFICIENTS},
                   student_law=student_law, fit=_fit_record(data.get("fit")),
                   repetition=Repetition.from_dict(repetition) if repetition else None)


def _preset(record: FitRecord | None) -> bool:
    """Whether a law's fit record is a preset's (its interval its authors' stated error)."""
    return record is not None and isinstance(record.source, dict) and "preset" in record.source


def _level(record: FitRecord | None) -> float | None:
    """The level of a record's intervals: its bootstrap's, else its profile's."""
    if record is None:
        return None
    return record.level if record.level is not None else (record.profile.level if record.profile else None)


def _fit_json(record: FitRecord | None) -> dict | None:
    return record.to_json() if record is not None else None


def _fit_record(data) -> FitRecord | None:
    """The fit record of a law read from law.json (a law written by hand may have none)."""
    return FitRecord.from_json(data) if data is not None else None

