"""Prediction intervals that include extrapolation error, not only noise.

A bootstrap over runs measures how much the fit moves with the noise of the runs; it says nothing
about whether the law's form holds beyond them. The backtest (`laws.backtest`) measures that: the
relative errors of predictions made from smaller runs. `ExtrapolationError` turns them into a
half-width that grows with the distance beyond the data, split-conformal style. The distance is
counted in units of the fitted span, as for the lever arm of a regression in log-scale: a law fitted
on sizes spanning S doublings and asked t doublings beyond the largest errs roughly in proportion to
1 + t / S. So a backtest fold fitted on few sizes, whose errors are large, is compared fairly with
the final fit on all of them:

    score_i = |relative error_i| / (1 + t_i / S_i)
    half_width(t) = q * (1 + t / S),   q = the ceil((n + 1) level)-th smallest score

with t = log2(scale / largest fitted scale) and S = log2(largest / smallest fitted scale). On a
fixed suite of synthetic sweeps drawn from laws outside every candidate form, fitted on 5 or 6 sizes
and predicting the next two (tests/laws/test_intervals.py: 18 sweeps, 180 held-out runs), the 90%
interval covers 82% of the held-out runs and 86% of the true losses; on 36 such sweeps, 89% and 93%.
There a lever of 1 + 2 t / S covered 85% of the 36 sweeps' runs and 1 + t / (2 S) 92%.

One q for every distance assumes the lever describes how the error grows; where it does not (a law
whose bias grows faster than the lever, e.g. exponents too flat), the far predictions under-cover
while the near ones over-cover. So the quantile is also taken per distance band (DISTANCE_BANDS:
up to 2x, 2-4x, 4-8x, beyond), each band's scores alone (`band_q`), and the half-width in a band is
the larger of the two: conformal by band where the band's backtest errors are larger than the pooled
quantile says, never narrower than the pooled one. Beyond the farthest band the backtest measured,
the largest band's q holds.

Seed noise: when the runs repeat a setting (same N and D, different seeds), the spread of their
losses (`seed_noise`, relative standard deviation pooled over the repeated settings) is the noise of
any one run about the law, which a held-out run carries too. It enters the interval of a prediction
in quadrature with the bootstrap's (`combine`), as z * seed_noise * value.

The interval of a prediction combines these with the bootstrap's in quadrature
(`combine`), and says which part dominates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist

import numpy as np

from distillscale.laws.schema import Count0, Level, Positive, RelativeError


def lever(distance, span) -> np.ndarray:
    """1 + t / S: t doublings beyond the largest fitted scale, S doublings fitted."""
    doublings_fitted = np.maximum(np.log2(np.asarray(span, float)), MIN_SPAN_DOUBLINGS)
    return 1.0 + np.log2(np.maximum(np.asarray(distance, float), 1.0)) / doublings_fitted


def equivalent_distance(distance, span, own_span) -> np.ndarray:
    """`distance` beyond runs that span `span` (both ratios of scales, e.g. a student's size over the
    largest fitted and the largest over the smallest fitted size), as the distance beyond runs
    spanning `own_span` (the scale an `ExtrapolationError` measures) with the same lever 1 + t / S:
    each distance scaled by its own span, so two scales can be compared (the farther one counts)."""
    doublings = np.log2(np.maximum(np.asarray(distance, float), 1.0))
    ratio = (np.maximum(np.log2(np.asarray(own_span, float)), MIN_SPAN_DOUBLINGS)
             / np.maximum(np.log2(np.asarray(span, float)), MIN_SPAN_DOUBLINGS))
    # a span past the floats (a law file's absurd range) is infinitely far beyond, and nothing inside
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp2(np.where(doublings > 0, doublings * ratio, 0.0))


# When no backtest is possible, the literature's error stands in: Choshen et al. 2024 (485 models)
# report about 4% absolute relative error as *typical* when extrapolating scaling laws (docs/science.md
# §8). A typical (mean) |error| is not a 90% half-width: for half-normal errors the 90% quantile is
# z_0.95 / sqrt(2 / pi) = 2.06x the mean, and on the validation pack the 90% quantile of |error| at 2-8x
# is 1.2-3.4x the mean (median 2.1x over its eight sets). Used as a half-width, 4% covered 4 of 6
# held-out runs of the demo on unseen corpora (docs/demo_corpora.md).
LITERATURE_TYPICAL = 0.04


def literature_half_width(level: float) -> float:
    """The relative half-width of `level` intervals that the literature's typical error implies
    (half-normal errors with mean LITERATURE_TYPICAL)."""
    return LITERATURE_TYPICAL * NormalDist().inv_cdf((1 + level) / 2) / math.sqrt(2 / math.pi)


# A backtest whose errors are all below this (relative) measured nothing: runs that regular (constant
# or noise-free losses) say nothing about the error beyond them, so the literature's error stands in.
MIN_MEASURED_Q = 1e-6

# Upper ends of the distance bands of the band-wise conformal quantiles (distance = scale over the
# largest fitted scale): (1, 2], (2, 4], (4, 8]; inside the runs (<= 1) the pooled q alone.
DISTANCE_BANDS = (2.0, 4.0, 8.0)


def band_index(distance) -> np.ndarray:
    """The band of each distance: -1 inside the runs (<= 1), 0 for (1, 2], 1 for (2, 4], 2 for (4, 8],
    len(DISTANCE_BANDS) beyond."""
    distance = np.asarray(distance, float)
    index = np.searchsorted(np.asarray(DISTANCE_BANDS), distance, side="left")
    return np.where(distance <= 1.0, -1, index)


def conformal_quantile(scores: np.ndarray, level: float) -> tuple[float, bool]:
    """The ceil((n + 1) level)-th smallest score, and whether n was enough for that rank (else the largest)."""
    scores = np.sort(np.asarray(scores, float))
    rank = math.ceil((len(scores) + 1) * level)
    return float(scores[min(rank, len(scores)) - 1]), rank <= len(scores)


def seed_noise(keys: np.ndarray, loss: np.ndarray) -> tuple[float, int]:
    """The relative standard deviation of a run's loss among runs of the same setting (rows of `keys`
    equal, e.g. (N, D); different seeds), pooled over the settings run more than once (in log loss,
    n - 1 degrees of freedom each), and how many settings were repeated; (0, 0) when none is."""
    keys, loss = np.asarray(keys, float), np.asarray(loss, float)
    if keys.ndim == 1:
        keys = keys[:, None]
    _, group = np.unique(np.round(np.log(keys), 9), axis=0, return_inverse=True)
    group = np.asarray(group).ravel()
    log_loss = np.log(loss)
    squares, freedom, repeated = 0.0, 0, 0
    for g in np.unique(group):
        members = log_loss[group == g]
        if len(members) > 1:
            squares += float(np.sum((members - members.mean()) ** 2))
            freedom += len(members) - 1
            repeated += 1
    if not freedom:
        return 0.0, 0
    return math.sqrt(squares / freedom), repeated


# A fit over less than this many doublings of scale (e.g. teacher strengths 1 / L_T, a few percent
# apart) counts as this wide, so one step beyond it does not look infinitely far.
MIN_SPAN_DOUBLINGS = 0.05


@dataclass(frozen=True)
class ExtrapolationError:
    """Relative half-width of `level` intervals at a distance beyond the fitted runs, from a
    backtest's `n_points` held-out errors. `scale_name`, `fitted_min` and `fitted_max` say what
    distance is measured in: the law's scale (model size, or teacher strength 1 / L_T) over the
    largest fitted one, in units of the fitted span."""

    # The annotations' ranges are checked when a law file is read (pydantic), not on construction.
    level: Level
    q: RelativeError
    n_points: Count0
    scale_name: str
    fitted_min: Positive
    fitted_max: Positive
    exact: bool = True  # False: too few points for the conformal rank; q is the largest score
    measured: bool = True  # False: no backtest was possible; q is the literature's (literature_half_width)
    reach: Positive = 1.0  # the largest lever the backtest measured: beyond it, its error is extrapolated too
    # Conformal by distance band: per band of DISTANCE_BANDS (and beyond), the band's own quantile of
    # the scores (0: no backtest prediction there); the half-width there is at least q_band * lever.
    band_q: tuple[RelativeError, ...] = ()
    band_n: tuple[Count0, ...] = ()
    # Relative sd of one run's loss across seeds at a repeated setting, and how many settings were repeated.
    seed_noise: RelativeError = 0.0
    seed_settings: Count0 = 0

    def __post_init__(self):
        if self.fitted_max < self.fitted_min:
            raise ValueError(f"fitted_max {self.fitted_max!r} is below fitted_min {self.fitted_min!r}")

    @classmethod
    def unmeasured(cls, level: float, scale_name: str, fitted_min: float,
                   fitted_max: float) -> "ExtrapolationError":
        """Too few sizes to backtest: the literature's typical extrapolation error stands in,
        so that an interval beyond the runs is never the bootstrap's noise alone."""
        q = literature_half_width(level)
        return cls(level, q, 0, scale_name, float(fitted_min), float(fitted_max), exact=False, measured=False)

    @classmethod
    def from_backtest(cls, errors: np.ndarray, distances: np.ndarray, spans: np.ndarray, level: float,
                      scale_name: str, fitted_min: float, fitted_max: float) -> "ExtrapolationError | None":
        errors = np.asarray(errors, float)
        if errors.size == 0:
            return None
        levers = lever(distances, spans)
        scores = np.abs(errors) / levers
        q, exact = conformal_quantile(scores, level)
        if q < MIN_MEASURED_Q:  # zero error is not certainty
            return cls.unmeasured(level, scale_name, fitted_min, fitted_max)
        bands = band_index(distances)
        band_q, band_n = [], []
        for k in range(len(DISTANCE_BANDS) + 1):
            inside = bands == k
            band_q.append(conformal_quantile(scores[inside], level)[0] if inside.any() else 0.0)
            band_n.append(int(inside.sum()))
        return cls(level, q, len(scores), scale_name, float(fitted_min), float(fitted_max), exact=exact,
                   reach=float(np.max(levers)), band_q=tuple(band_q), band_n=tuple(band_n))

    def beyond_reach(self, distance) -> bool:
        """Whether `distance` lies farther (in units of the fitted span) than any backtest prediction."""
        return bool(np.max(lever(distance, self.fitted_max / self.fitted_min)) > self.reach * (1 + 1e-9))

    def half_width(self, distance, *, by_band: bool = True) -> np.ndarray:
        """Relative half-width at `distance` (scale / largest fitted scale; <= 1 is inside the data):
        q * lever, or with `by_band` (the default) the band's own quantile times the lever where it is
        larger (beyond the farthest band measured, the largest band quantile)."""
        levers = lever(distance, self.fitted_max / self.fitted_min)
        if not by_band or not self.band_q:
            return self.q * levers
        band_q = np.asarray(self.band_q, float)
        measured = np.flatnonzero(np.asarray(self.band_n) > 0)
        index = band_index(distance)
        if measured.size:
            # A band the backtest did not reach takes the largest quantile of the bands up to it.
            running = np.maximum.accumulate(band_q)
            q_band = np.where(index < 0, 0.0, running[np.clip(index, 0, len(band_q) - 1)])
        else:
            q_band = np.zeros_like(levers)
        return np.maximum(self.q, q_band) * levers

    def with_seed_noise(self, settings: np.ndarray, observed: np.ndarray) -> "ExtrapolationError":
        """This error with the seed noise of these runs (`seed_noise`) when they repeat more settings
        than it was measured on; else itself."""
        noise, repeated = seed_noise(settings, observed)
        return replace(self, seed_noise=noise, seed_settings=repeated) if repeated > self.seed_settings else self

    def seed_half_width(self) -> float:
        """Relative half-width of the `level` interval of one run's seed noise (0 when not measured)."""
        return float(self.seed_noise * NormalDist().inv_cdf((1 + self.level) / 2))

    def to_dict(self) -> dict:
        return asdict(self)


# What a prediction's interval can be made of (`Prediction.interval_source`).
ON_POLICY_WIDENED = "on-policy widened"
INTERVAL_SOURCES = ("own", "ladders", "corpora", "stated", ON_POLICY_WIDENED)


@dataclass(frozen=True)
class Prediction:
    """A predicted loss (nats/token) with its interval and what the interval is made of."""

    value: np.ndarray | float
    low: np.ndarray | float | None
    high: np.ndarray | float | None
    level: float | None
    noise: np.ndarray | float | None            # bootstrap half-width (nats/token)
    extrapolation: np.ndarray | float | None    # backtest half-width at this distance (nats/token)
    distance: np.ndarray | float | None
    beyond_backtest: bool = False  # farther than the backtest measured (or no backtest at all)
    # The interval is calibrated across published ladders or corpora, or a preset's stated error, not
    # the law's own bootstrap and backtest on the runs it was fitted to.
    calibrated: bool = False
    # Why the interval means nothing here, when it does not (the loss no better than a uniform guess,
    # or an input far outside its law's data on a side the distance does not measure:
    # `laws.extrapolation.meaningless`); a verdict reading it cannot tell.
    outside: str | None = None
    # What the interval is made of (INTERVAL_SOURCES); None: "own", or "stated" when `calibrated`.
    source: str | None = None
    # What the law's interval was multiplied by to give the one shown and used (the trained pairs'
    # scale for its law at its distance: `laws.difference.used_interval`); None: not yet rescaled.
    pairs_scale: np.ndarray | float | None = None

    @property
    def interval_source(self) -> str:
        """own (the fit's bootstrap and backtest), ladders (a fitted law whose extrapolation part is
        calibrated across published ladders), corpora (calibrated across corpora on held-out runs)
        stated (a preset's stated error) or on-policy widened (the law's own, widened for on-policy
        tokens by the literature's typical extrapolation error: `planning.modes.outside_fit`)."""
        return self.source or ("stated" if self.calibrated else "own")

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    def scaled(self, factor: float) -> "Prediction":
        """The loss and its interval times `factor` (a relative penalty, e.g. repeated data: 1 + p)."""
        def times(x):
            return None if x is None else (float(x) * factor if np.ndim(x) == 0 else np.asarray(x) * factor)
        return replace(self, value=times(self.value), low=times(self.low), high=times(self.high))

    def stretched(self, low_factor: float, high_factor: float) -> "Prediction":
        """The interval's ends times `low_factor` (<= 1) and `high_factor` (>= 1), the value kept: an
        uncertain relative penalty (e.g. repeated data under R_D*'s interval) widens it."""
        if self.low is None:
            return self
        low, high = np.minimum(low_factor, 1.0), np.maximum(high_factor, 1.0)
        if np.ndim(self.low) == 0 and np.ndim(low) == 0:
            return replace(self, low=float(self.low) * float(low), high=float(self.high) * float(high))
        return replace(self, low=np.asarray(self.low) * low, high=np.asarray(self.high) * high)

    @property
    def dominant(self) -> str | None:
        """Which part of the interval is larger (for a scalar prediction)."""
        if self.noise is None and self.extrapolation is None:
            return None
        noise = float(np.max(self.noise)) if self.noise is not None else 0.0
        extrapolation = float(np.max(self.extrapolation)) if self.extrapolation is not None else 0.0
        return "extrapolation error" if extrapolation >= noise else "noise of the runs"

    def describe(self) -> str:
        """One phrase: ' (90% interval 2.69–2.71; mostly extrapolation error, 3.2x beyond the runs)'."""
        if not self.has_interval:
            return ""
        where = ""
        if self.distance is not None and float(np.max(self.distance)) > 1.0:
            where = f", {float(np.max(self.distance)):.3g}x beyond the runs"
        if self.extrapolation is None:
            what = "bootstrap only: no backtest"
        else:
            what = f"mostly {self.dominant}"
        if self.beyond_backtest and self.distance is not None and float(np.max(self.distance)) > 1.0:
            where += ", farther than the backtest reached: the interval is itself an extrapolation"
        return f" ({self.level:.0%} interval {float(self.low):.4f}–{float(self.high):.4f}; {what}{where})"

    def to_dict(self) -> dict:
        def plain(v):
            return None if v is None else np.asarray(v, float).tolist()

        return {"value": plain(self.value), "interval": [plain(self.low), plain(self.high)]
                if self.has_interval else None, "level": self.level, "noise_half_width": plain(self.noise),
                "extrapolation_half_width": plain(self.extrapolation), "distance": plain(self.distance),
                "beyond_backtest": self.beyond_backtest, "pairs_scale": plain(self.pairs_scale),
                "dominant": self.dominant if np.ndim(self.value) == 0 else None}


def combine(value, bootstrap: tuple | None, extrapolation: ExtrapolationError | None, distance,
            level: float | None, sides: tuple | None = None, beyond=None) -> Prediction:
    """The interval of `value` from its bootstrap interval (asymmetric, may be None) and the
    backtest's relative half-width at `distance`, added in quadrature on each side, once. `sides`:
    the extrapolation part's relative gaps below and above the value instead (a calibration across
    ladders, `laws.pack_interval`), and `beyond` whether each lies farther than it measured."""
    value = np.asarray(value, float)
    if bootstrap is None and extrapolation is None and sides is None:
        return Prediction(_scalar(value), None, None, None, None, None, None)
    low_noise = high_noise = np.zeros_like(value)
    if bootstrap is not None:
        low_noise = np.maximum(value - np.asarray(bootstrap[0], float), 0.0)
        high_noise = np.maximum(np.asarray(bootstrap[1], float) - value, 0.0)
    if extrapolation is not None and extrapolation.seed_noise > 0:
        # a run's own seed noise, measured from repeated settings: part of the noise of the runs
        seed = extrapolation.seed_half_width() * value
        low_noise, high_noise = np.sqrt(low_noise ** 2 + seed ** 2), np.sqrt(high_noise ** 2 + seed ** 2)
    if sides is not None:
        extra_low, extra_high = (np.asarray(side, float) * value for side in sides)
    else:
        extra_low = extra_high = (np.zeros_like(value) if extrapolation is None
                                  else extrapolation.half_width(distance) * value)
    low = lower_end(value, np.sqrt(low_noise ** 2 + extra_low ** 2))
    high = value + np.sqrt(high_noise ** 2 + extra_high ** 2)
    level = extrapolation.level if extrapolation is not None and sides is None else level
    if beyond is None:
        beyond = extrapolation is not None and (not extrapolation.measured or extrapolation.beyond_reach(distance))
    noisy = bootstrap is not None or (extrapolation is not None and extrapolation.seed_noise > 0)
    extra = (extra_low + extra_high) / 2
    return Prediction(_scalar(value), _scalar(low), _scalar(high), level,
                      _scalar((low_noise + high_noise) / 2) if noisy else None,
                      None if extrapolation is None and sides is None else _scalar(extra),
                      None if distance is None else _scalar(np.asarray(distance, float)), bool(np.any(beyond)))


def lower_end(value, half_width):
    """value - half_width, kept a possible loss (> 0): unchanged while the half-width is at most
    half the value; beyond, it approaches 0 (value/2 exp(-(h - value/2) / (value/2)), with the same
    slope at value/2). A wide interval says the loss is unknown below, never that it is negative."""
    value, half_width = np.asarray(value, float), np.asarray(half_width, float)
    half = value / 2
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tail = half * np.exp(-(half_width - half) / half)
    return _scalar(np.where(half_width <= half, value - half_width, tail))


def _scalar(x):
    x = np.asarray(x, float)
    return float(x) if x.ndim == 0 else x
