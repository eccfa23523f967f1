"""The extrapolation part of a supervised law's interval, calibrated on published ladders it did not
see (the validation pack, `laws.published`), and the one function that scores intervals.

A law's own backtest (`laws.uncertainty.ExtrapolationError`) measures its error beyond a few
smaller fits, and a conformal quantile of those few errors is a worst case of them: on the pack its
90% half-widths were about 3x the mean |error|. Across the pack's ladders there are thousands of
predictions beyond a fit, so the error's size can be learned as a function of what a user knows
before training the target: how far beyond the fitted sizes it lies (dN = ln(N / largest fitted
N), and dN / span, the lever: span = ln(largest / smallest fitted N), at least a doubling), how far
beyond the fitted tokens (dD = ln(D / largest fitted D), 0 inside), and how many runs the fit had:

    y = ln(observed / predicted),   s = sqrt(floor^2 + (per_efold dN)^2 + (per_lever dN/span)^2
                                             + (per_token dD)^2 + (per_misfit m)^2)
                                        x (runs / RUNS_REFERENCE)^-runs_power

(m: the fit's own in-sample misfit, the RMS of its log residuals, which a user has before training
the target too; a rule may also add (per_ratio dN |ln(D/N) - the runs' median ln(D/N)|)^2), times
(h / h_ref)^k where the rule has k > 0: h the law's own backtest half-width at the target, so a fit
whose own smaller fits erred little gets a narrower interval than one whose erred much (h_ref the
calibration rows' median h)

and the quantiles of the signed errors y / s at QUANTILE_LEVELS are the interval's ends:
[predicted e^(q_low s), predicted e^(q_high s)], never excluding the prediction itself. The scale's
coefficients are fitted by the likelihood of Laplace errors (`fit_pack_interval`), each ladder or
each family of ladders weighing the same; with `across`, each row's error is standardized by a
scale fitted without its family, so the quantiles are those of errors on a family the scale never
saw, as a user's ladder is. Scored leaving one family of ladders out (`leave_one_family_out`): a
family's ladders never enter the calibration that scores them. Nothing is added to it: its errors
are those of fits like the user's on runs like the user's, the fit's noise and the runs' seed noise
included, so a law carrying it shows it alone (`SupervisedLaw.prediction`) and the scoring calls
that same function (`predicted_with`); a target farther beyond the fitted sizes (`reach`) or tokens
(`token_reach`) than any calibration row lay is said to be an extrapolation
(`CalibratedInterval.beyond`).

    model = shipped_interval()                          # package data: pack_interval.json
    CalibratedInterval(model=model, summary=summary).sides(N, D, 0.9)   # relative gaps below, above
    interval_scores(ladder, observed, predicted, low, high)             # coverage and width, per ladder
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillscale.laws.crossladder import MIN_SPAN, FitSummary, FittedOnThePack, read_shipped
from distillscale.laws.schema import Number

MODEL_FILE = Path(__file__).resolve().parent / "pack_interval.json"
# The probabilities the signed errors' standardized quantiles are stored at: a level's ends are
# interpolated between them (in normal scores), beyond the outermost the outermost.
QUANTILE_LEVELS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995)
# The number of fitted runs the scale is quoted at (the pack's median fit).
RUNS_REFERENCE = 30.0


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackInterval(FittedOnThePack):
    """The calibrated extrapolation error (see the module): the scale's coefficients and the
    standardized signed errors' quantiles at QUANTILE_LEVELS; `ladders`, `date`, `command` say what
    it was fitted on and how to fit it again."""

    floor: float = Field(ge=0, le=1)
    per_efold: float = Field(ge=0, le=1)
    per_lever: float = Field(ge=0, le=1)
    per_token: float = Field(ge=0, le=1)
    per_misfit: float = Field(default=0.0, ge=0, le=1000)
    # beyond the fitted sizes, a target whose tokens per parameter lie far from the fitted runs'
    # median ratio errs more: the term is per_ratio x dN x |ln(D/N) - the runs' median ln(D/N)|
    per_ratio: float = Field(default=0.0, ge=0, le=1000)
    runs_power: float = Field(ge=0, le=2)
    quantiles: tuple[Number, ...]
    # The farthest a calibration row lay beyond its fit (dN, e-folds): farther, the interval is itself
    # an extrapolation (`CalibratedInterval.beyond`).
    reach: float = Field(default=math.log(16.0), gt=0, le=20)
    # ... and beyond its fit's tokens (dD, e-folds; 16x where a model did not record it).
    token_reach: float = Field(default=math.log(16.0), ge=0, le=20)
    # The fewest and most runs behind a calibration row's fit: a fit outside takes the nearer end (the
    # runs' term is not extrapolated).
    runs_range: tuple[float, float] = (1.0, 1e9)
    # The scale times (h / backtest_reference)^backtest_power, h the law's own backtest's relative
    # half-width at the target (its conformal band and seed noise): a fit whose own backtest erred
    # little gets a narrower interval (0: the pack's alone).
    backtest_power: float = Field(default=0.0, ge=0, le=1)
    backtest_reference: float = Field(default=0.1, gt=0)
    # The calibration rows' median misfit: what a law whose runs are not at hand (a preset) is taken
    # to have, so that its growth with distance is a typical fit's (`CalibratedInterval.sides`).
    misfit_reference: float = Field(default=0.0, ge=0, le=10)
    # The least and most misfit of the calibration's rows: a fit's misfit outside takes the nearer end
    # (the misfit term is not extrapolated; `CalibratedInterval.describe` says so). None: a calibration
    # written before the range was kept, which cannot tell.
    misfit_range: tuple[float, float] | None = None

    def misfit_within(self, misfit: float) -> float:
        """A fit's misfit as the scale takes it: inside `misfit_range` (where recorded)."""
        if self.misfit_range is None:
            return float(misfit)
        return min(max(float(misfit), self.misfit_range[0]), self.misfit_range[1])

    @model_validator(mode="after")
    def _consistent(self) -> "PackInterval":
        if len(self.quantiles) != len(QUANTILE_LEVELS):
            raise ValueError(f"quantiles must have {len(QUANTILE_LEVELS)} entries, one per level {QUANTILE_LEVELS}")
        if any(b < a for a, b in zip(self.quantiles, self.quantiles[1:])):
            raise ValueError("quantiles must not decrease")
        if self.floor + self.per_efold + self.per_lever + self.per_token + self.per_misfit + self.per_ratio <= 0:
            raise ValueError("the scale must have a positive coefficient")
        return self

    def scale(self, summary: FitSummary, N, D, misfit: float = 0.0, backtest=None) -> np.ndarray:
        """s at targets (N, D) of a fit with this summary and in-sample misfit (the RMS of its log
        residuals), and `backtest` the law's own backtest half-width there (None: the reference)
        (relative; the standardized errors' unit)."""
        dN, dD = summary.distances(N, D)
        lever = dN / max(summary.span, MIN_SPAN)
        ratio = dN * summary.ratio_distance(N, D)
        size = np.sqrt(self.floor ** 2 + (self.per_efold * dN) ** 2 + (self.per_lever * lever) ** 2
                       + (self.per_token * dD) ** 2 + (self.per_misfit * self.misfit_within(misfit)) ** 2
                       + (self.per_ratio * ratio) ** 2)
        runs = min(max(summary.runs, self.runs_range[0]), self.runs_range[1])
        size = size * (runs / RUNS_REFERENCE) ** -self.runs_power
        if backtest is None or self.backtest_power == 0:
            return size
        return size * (np.maximum(np.asarray(backtest, float), 1e-4) / self.backtest_reference) ** self.backtest_power

    def ends(self, level: float) -> tuple[float, float]:
        """The standardized quantiles (low <= 0 <= high) of a central `level` interval."""
        return _quantile(self.quantiles, (1 - level) / 2), _quantile(self.quantiles, (1 + level) / 2)

    def sides(self, summary: FitSummary, N, D, level: float, misfit: float = 0.0,
              backtest=None) -> tuple[np.ndarray, np.ndarray]:
        """The relative gaps (value - low) / value and (high - value) / value of a `level` interval."""
        s = np.atleast_1d(self.scale(summary, N, D, misfit, backtest))
        low, high = self.ends(level)
        return 1.0 - np.exp(min(low, 0.0) * s), np.exp(max(high, 0.0) * s) - 1.0


def _quantile(quantiles, p: float) -> float:
    """The standardized quantile at probability p, interpolated in normal scores."""
    z = [NormalDist().inv_cdf(q) for q in QUANTILE_LEVELS]
    at = NormalDist().inv_cdf(min(max(p, 1e-12), 1 - 1e-12))
    return float(np.interp(at, z, quantiles))


class StatedError(_Record):
    """A published law's own error inside its runs (a preset's: `laws.preset_error`): the relative
    half-width of its `level` intervals there (|observed / predicted - 1|), and where that number
    comes from. Beyond the runs it
    grows as the pack's calibration says errors grow with distance (`CalibratedInterval.sides`)."""

    half_width: float = Field(gt=0, le=1)
    level: float = Field(gt=0, lt=1)
    source: str

    def at(self, level: float) -> float:
        """The relative half-width at another level (normal errors: the ratio of the quantiles)."""
        z = NormalDist().inv_cdf
        return self.half_width * z((1 + level) / 2) / z((1 + self.level) / 2)


class CalibratedInterval(_Record):
    """What a law carries to give its predictions the pack's calibrated extrapolation error: the
    model and the summary of the runs the law was fitted on (so a law file is self-contained).
    With `stated` (a published law's own error inside its runs), the interval is that error, widened
    beyond the runs by the model's growth with distance, s(N, D) / s(at the runs): the model's
    quantiles are those of fits on a few dozen runs, not of a paper's law on its own."""

    model: PackInterval
    summary: FitSummary
    misfit: float = Field(default=0.0, ge=0, le=10)   # the fit's RMS log residual (its diagnostics)
    stated: StatedError | None = None

    def sides(self, N, D, level: float, backtest=None) -> tuple[np.ndarray, np.ndarray]:
        """The relative gaps below and above the prediction at (N, D); `backtest`: the law's own
        backtest half-width there (`PackInterval.backtest_power`; not with `stated`)."""
        n, d = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        if self.stated is not None:
            typical = self.model.misfit_reference
            at_runs = self.model.scale(self.summary, self.summary.params_max, self.summary.tokens_max, typical)
            widening = self.model.scale(self.summary, n.ravel(), d.ravel(), typical) / at_runs
            half = self.stated.at(level) * np.asarray(widening, float).reshape(n.shape)
            return half, half
        h = None if backtest is None else np.broadcast_to(np.asarray(backtest, float), n.shape).ravel()
        low, high = self.model.sides(self.summary, n.ravel(), d.ravel(), level, self.misfit, h)
        return low.reshape(n.shape), high.reshape(n.shape)

    def beyond(self, N, D) -> np.ndarray:
        """Whether each target lies farther beyond the fitted sizes, or the fitted tokens, than any
        calibration row did (its interval is then itself an extrapolation)."""
        n, d = np.broadcast_arrays(np.asarray(N, float), np.asarray(D, float))
        dN, dD = self.summary.distances(n, d)
        return (dN > self.model.reach * (1 + 1e-9)) | (dD > self.model.token_reach * (1 + 1e-9) + 1e-9)

    def describe(self, level: float, backtest=None) -> str:
        """One line: what the interval's extrapolation part is at 1, 2, 4 and 10x the largest fitted
        size (`backtest`: the law's own backtest half-widths there, `PackInterval.backtest_power`)."""
        low, high = self.sides(self.summary.params_max * np.array([1.0, 2.0, 4.0, 10.0]), self.summary.tokens_max,
                               level, backtest)
        widths = ", ".join(f"-{lo:.1%}/+{hi:.1%} at {d:g}x" for lo, hi, d in zip(low, high, (1, 2, 4, 10)))
        if self.stated is not None:
            widths = ", ".join(f"±{hi:.1%} at {d:g}x" for hi, d in zip(high, (1, 2, 4, 10)))
            return (f"{self.stated.source}; beyond its runs they widen as errors grow with distance in the calibration "
                    f"on {len(self.model.ladders)} published ladders: {widths} its largest runs' params")
        own = " and the law's own backtest" if self.model.backtest_power > 0 and backtest is not None else ""
        if self.model.per_misfit > 0:
            own += f" and the fit's misfit ({self.misfit:.2%} RMS{self._misfit_note()})"
        return (f"extrapolation error ({level:.0%}, calibrated on {len(self.model.ladders)} published ladders as a "
                f"function of the distance beyond the runs{own}): {widths} the largest fitted params")


    def _misfit_note(self) -> str:
        """Where the fit's misfit lies against the calibration's rows' (`PackInterval.misfit_range`)."""
        known = self.model.misfit_range
        if known is None:
            return "; the calibration did not keep its rows' range of misfits: not checked against it"
        taken = self.model.misfit_within(self.misfit)
        if taken == self.misfit:
            return ""
        return (f", outside the calibration's {known[0]:.2%}-{known[1]:.2%}: taken at {taken:.2%}, the term is "
                "not extrapolated")


@lru_cache(maxsize=1)
def _shipped(path: str) -> PackInterval | None:
    return read_shipped(path, PackInterval, "the interval model")


def shipped_interval() -> PackInterval | None:
    """The calibrated extrapolation error that ships with distillscale (`pack_interval.json`), or None."""
    return _shipped(str(MODEL_FILE))


# -- scoring intervals: the one function the bench and the docs' tables use -------------------------


def predicted_with(law, model: PackInterval, N, D):
    """`law.prediction(N, D)` (a supervised law whose fit carries a `CalibratedInterval`), with
    `model` in place of its calibration: what a scoring that left `model`'s family out scores, through
    the very function `predict`, `plan` and the planner page print."""
    import copy

    if law.fit is None or law.fit.interval is None:
        raise ValueError("the law carries no calibrated interval to replace")
    scored = copy.copy(law)
    scored.fit = law.fit.model_copy(update={"interval": law.fit.interval.model_copy(update={"model": model})})
    return scored.prediction(N, D)



@dataclass(frozen=True)
class IntervalScore:
    """Predictions of one ladder (or the mean of ladders, `interval_scores`'s "mean of ladders"):
    how many, the share inside their intervals, the mean relative half-width ((high - low) / 2 /
    predicted), the mean |relative error| (|predicted / observed - 1|), its signed mean and the share
    over-predicted; `ratio` = mean half-width / mean |error|."""

    n: int
    coverage: float
    half_width: float
    error: float
    signed: float
    over: float

    @property
    def ratio(self) -> float:
        return self.half_width / self.error if self.error > 0 else math.inf

    def to_dict(self) -> dict:
        return {"n": self.n, "coverage": self.coverage, "half_width": self.half_width, "error": self.error,
                "signed": self.signed, "over": self.over, "ratio": self.ratio}


POOLED = "mean of ladders"


def interval_scores(ladder, observed, predicted, low, high) -> dict[str, IntervalScore]:
    """Coverage and width per ladder, and their mean over ladders (each the same weight; n the rows'
    total) under POOLED: what the validation pack's tables report."""
    ladder = np.asarray(ladder)
    observed, predicted = np.asarray(observed, float), np.asarray(predicted, float)
    low, high = np.asarray(low, float), np.asarray(high, float)
    signed = predicted / observed - 1.0
    covered = (low <= observed) & (observed <= high)
    half = (high - low) / 2.0 / predicted
    out = {}
    for name in sorted(set(ladder.tolist())):
        mine = ladder == name
        out[name] = IntervalScore(int(mine.sum()), float(covered[mine].mean()), float(half[mine].mean()),
                                  float(np.abs(signed[mine]).mean()), float(signed[mine].mean()),
                                  float((signed[mine] > 0).mean()))
    if out:
        cells = list(out.values())
        out[POOLED] = IntervalScore(sum(c.n for c in cells), *(float(np.mean([getattr(c, key) for c in cells]))
                                                                for key in ("coverage", "half_width", "error",
                                                                            "signed", "over")))
    return out


# -- calibrating it across ladders --------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalTable:
    """The signed errors y = ln(observed / predicted) of default fits' predictions beyond their runs,
    pooled over ladders: one row per (ladder, fit, predicted run), with the fit's summary and the
    target (N, D)."""

    ladder: np.ndarray
    summaries: list[FitSummary]
    N: np.ndarray
    D: np.ndarray
    y: np.ndarray
    misfit: np.ndarray | None = None      # per row, its fit's RMS log residual (None: 0)
    backtest: np.ndarray | None = None    # per row, its fit's own backtest half-width there (None: unknown)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, rows: np.ndarray) -> "IntervalTable":
        index = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return IntervalTable(self.ladder[index], [self.summaries[i] for i in index], self.N[index], self.D[index],
                             self.y[index], None if self.misfit is None else self.misfit[index],
                             None if self.backtest is None else self.backtest[index])

    def weights(self, group=None) -> np.ndarray:
        """Each ladder weighs the same in total; with `group` (a ladder's family, e.g.
        `published.family`), each family weighs the same and its ladders the same within it (a family
        of four ladders of one author's recipe counts once, as it is left out once)."""
        _, inverse, counts = np.unique(self.ladder, return_inverse=True, return_counts=True)
        w = 1.0 / counts[inverse]
        if group is not None:
            family = np.array([group(name) for name in self.ladder])
            for name in set(family.tolist()):
                mine = family == name
                w[mine] /= len(set(self.ladder[mine].tolist()))
        return w

    def distances(self) -> np.ndarray:
        """Per row: dN, dN / span, dD, the fit's misfit, dN x the ratio's distance and the fit's runs
        (columns, in `PackInterval.scale`'s order)."""
        out = np.empty((len(self), 6))
        misfit = np.zeros(len(self)) if self.misfit is None else self.misfit
        for i, (s, n, d) in enumerate(zip(self.summaries, self.N, self.D)):
            dN, dD = s.distances(n, d)
            out[i] = (float(dN), float(dN) / max(s.span, MIN_SPAN), float(dD), misfit[i],
                      float(dN * s.ratio_distance(n, d)), max(s.runs, 1))
        return out


def weighted_quantile(values: np.ndarray, weights: np.ndarray, p) -> np.ndarray:
    """The p-quantiles of `values` with `weights` (the smallest value whose cumulative weight share
    reaches p)."""
    order = np.argsort(values)
    share = np.cumsum(weights[order]) / np.sum(weights)
    index = np.minimum(np.searchsorted(share, np.atleast_1d(p), side="left"), len(values) - 1)
    return values[order][index]


# The scale's terms a calibration may use (a rule leaves some out: `fit_pack_interval(terms=...)`).
TERMS = ("floor", "per_efold", "per_lever", "per_token", "per_misfit", "per_ratio", "runs_power")


def _scale(coefficients: np.ndarray, power: float, x: np.ndarray) -> np.ndarray:
    """PackInterval.scale on `IntervalTable.distances` rows (their runs inside the calibration's range)."""
    size = np.sqrt(coefficients[0] ** 2 + np.sum((coefficients[1:] * x[:, :5]) ** 2, axis=1))
    return size * (x[:, 5] / RUNS_REFERENCE) ** -power


OBJECTIVES = ("likelihood", "width")


def _fitted_scale(y: np.ndarray, x: np.ndarray, w: np.ndarray, use: np.ndarray, objective: str,
                  level: float) -> tuple[np.ndarray, float]:
    """The scale's coefficients and runs power on rows (y, x, w): `fit_pack_interval`'s fit."""
    from scipy.optimize import minimize

    size = np.maximum(np.abs(y), 1e-6)

    def unpack(theta):
        values = np.where(use, np.exp(np.clip(theta, -30, 5)), 0.0)
        values[6] = min(float(np.log1p(values[6])), 2.0) if use[6] else 0.0
        return values[:6], values[6]

    def loss(theta) -> float:
        coefficients, power = unpack(theta)
        s = np.maximum(_scale(coefficients, power, x), 1e-9)
        return float(np.sum(w * (size / s + np.log(s))) / np.sum(w))

    typical = float(np.median(size))
    best = None
    for shares in ((1.0, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3), (1.0, 0.1, 3.0, 0.1, 0.3, 0.03, 0.01),
                   (3.0, 1.0, 0.1, 1.0, 3.0, 0.1, 1.0)):
        start = np.log(np.array([typical * shares[0], typical * shares[1], typical * shares[2], typical * shares[3],
                                 shares[4], typical * shares[5], np.expm1(shares[6])]))
        found = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 6000, "xatol": 1e-7, "fatol": 1e-10})
        if best is None or found.fun < best.fun - 1e-12:
            best = found
    if objective == "width":
        tails = ((1 - level) / 2, (1 + level) / 2)

        def width(theta) -> float:
            coefficients, power = unpack(theta)
            s = np.maximum(_scale(coefficients, power, x), 1e-9)
            low, high = weighted_quantile(y / s, w, tails)
            return float(np.sum(w * (np.exp(max(high, 0.0) * s) - np.exp(min(low, 0.0) * s))) / np.sum(w))

        best = minimize(width, best.x, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-12})
    coefficients, power = unpack(best.x)
    if coefficients.sum() <= 0:
        coefficients = np.array([typical, 0.0, 0.0, 0.0, 0.0, 0.0])
    return coefficients, power


def fit_pack_interval(table: IntervalTable, level: float = 0.9, terms=TERMS,
                      objective: str = "likelihood", backtest_power: float = 0.0, group=None,
                      across=None) -> PackInterval:
    """The scale's coefficients (those of `terms`; the others 0) by maximum likelihood of Laplace
    errors, sum over rows of w (|y| / s + ln s), each ladder weighing the same (robust: a ladder's few
    runs inside their warm-up pull it no more than others); with objective "width", then moved to
    the narrowest mean `level` interval whose ends are the quantiles below (the interval score at a
    fixed coverage); then the standardized signed errors' weighted quantiles at QUANTILE_LEVELS: so
    a `level` interval covers `level` of the rows. With `backtest_power` k > 0 the errors are first
    divided by (h / their median h)^k, h each row's own backtest half-width (`table.backtest`), and
    the model keeps k and that median. With `group`, each family of ladders weighs the same
    (`IntervalTable.weights`). With `across` (a ladder's family, e.g. `published.family`), each
    row's error is standardized by a scale fitted without its family (brought to the whole fit's
    size on the rows both saw), so the quantiles are those of errors on a family the scale did not
    see, as a user's ladder is (cross-conformal; the scale itself is the whole fit's)."""
    x, w = table.distances(), table.weights(group)
    use = np.array([t in terms for t in TERMS])
    reference = 0.1
    y = table.y
    if backtest_power > 0:
        h = np.maximum(table.backtest, 1e-4)
        reference = float(np.median(h))
        y = table.y * (reference / h) ** backtest_power
    coefficients, power = _fitted_scale(y, x, w, use, objective, level)
    s = _scale(coefficients, power, x)
    z = y / s
    if across is not None:
        family = np.array([across(name) for name in table.ladder])
        for name in sorted(set(family.tolist())):
            inside = family == name
            if inside.all():
                break
            c, p = _fitted_scale(y[~inside], x[~inside], w[~inside], use, objective, level)
            other = _scale(c, p, x)
            other *= np.sum(w[~inside] * s[~inside]) / np.sum(w[~inside] * other[~inside])
            z[inside] = y[inside] / other[inside]
    quantiles = weighted_quantile(z, w, QUANTILE_LEVELS)
    # stored in units of the distance terms' sum (the quantiles absorb the scale): those in [0, 1]
    total = float(coefficients[:4].sum()) or float(coefficients.sum())
    floor, per_efold, per_lever, per_token, per_misfit, per_ratio = (float(c) / total for c in coefficients)
    return PackInterval(floor=floor, per_efold=per_efold, per_lever=per_lever, per_token=per_token,
                        per_misfit=per_misfit, per_ratio=per_ratio, runs_power=float(power),
                        reach=float(max(x[:, 0].max(), 1e-6)), token_reach=float(max(x[:, 2].max(), 0.0)),
                        runs_range=(float(x[:, 5].min()), float(x[:, 5].max())),
                        backtest_power=float(backtest_power), backtest_reference=reference,
                        misfit_reference=float(weighted_quantile(x[:, 3], w, 0.5)[0]),
                        misfit_range=(float(x[:, 3].min()), float(x[:, 3].max())),
                        quantiles=tuple(float(q) * total for q in np.maximum.accumulate(quantiles)),
                        ladders=tuple(sorted(set(table.ladder.tolist()))), n_rows=len(table))


def leave_one_family_out(table: IntervalTable, group, level: float = 0.9, terms=TERMS,
                         objective: str = "likelihood", backtest_power: float = 0.0,
                         weigh_families: bool = False, across: bool = False) -> dict[str, PackInterval]:
    """For each family (`group(ladder name)`, e.g. `published.family`), the calibration fitted on the
    other families' rows alone (`weigh_families`: each family the same weight there); keyed by ladder
    name (every ladder of a family shares its model). Nothing of a family enters the model that
    scores it."""
    families = np.array([group(name) for name in table.ladder])
    models = {}
    for family in sorted(set(families.tolist())):
        inside = families == family
        model = fit_pack_interval(table.subset(~inside), level, terms, objective, backtest_power,
                                  group if weigh_families else None, group if across else None)
        for name in set(table.ladder[inside].tolist()):
            models[name] = model
    return models
