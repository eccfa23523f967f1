"""The difference of two predicted losses with its own interval: what every verdict ("distil or train
alone") and every comparison of two losses reads (docs/science.md §11).

A verdict is a statement about Delta = L(distilled) - L(alone) at one budget, not about either loss.
The two predictions share the supervised law (the distillation law takes the student's supervised
loss as its input), the corpus, the tokenizer and the evaluation, so their errors may move together.
With the two losses' half-widths s_d and s_a on the sides that move Delta (the distilled loss's upper
side and the alone loss's lower side move it up), each first scaled by its own law's scale at its
distance beyond that law's runs, and the correlation rho of their errors:

    half-width(Delta) = q sqrt((k_d s_d)^2 + (k_a s_a)^2 - 2 rho (k_d s_d) (k_a s_a))

`k_d`, `k_a`, `rho` and `q` are measured on pairs (`DifferenceCalibration`): the same student
distilled and trained alone at the same compute as a plan allocates it, each loss predicted by a
law that never saw its run, at distances beyond the fitted runs as a plan's are (inside the runs,
1-2x, 2-4x, 4-8x: the bands of `laws.uncertainty.band_index`), left out a corpus at a time
(`bench/laws/verdict_pairs.py`). A law's scale is its interval's width against its errors on the
distinct predictions of one band (`LawScale`: their conformal quantile), for a fitted law's interval
(its bootstrap and backtest, or its extrapolation part calibrated across published ladders:
`rescaled`); it is never below 1 (a law's interval is never narrowed below what it says), and a band
without pairs takes the larger of its measured neighbours' (never narrower than the bands around it).
That rescaled interval is the loss's one interval: `used_interval` gives it, every
surface shows it and `compare` reads it. One calibrated across corpora on held-out runs is taken as
it is; a preset's stated error too, and a Delta with one is combined as shown (rho 0, q 1: no pair
measured it). Past the farthest distance its pairs checked (its `reach`) a straddling interval says
"cannot tell at this distance". `q` is the conformal quantile of |Delta_true - Delta_pred| over the
rescaled half-width, each corpus weighing the same, its finite-sample correction counting what the
pairs are worth: pairs of one corpus share part of their errors, so they count as n / (1 + (m - 1)
ICC) independent ones (Kish's design effect; `effective_sample_size`, clustered by corpus and by
corpus and kind, the smaller), between the number of clusters and of pairs.

Every verdict reads `compare`: distill when Delta's interval lies below 0, train alone ("pretrain")
above, too close to call when it straddles 0, and "cannot tell at this distance" when it straddles 0
beyond a law's reach, or whatever the interval when a loss lies where its interval means nothing (no
better than a uniform guess, or far outside its law's data on a side the interval does not measure:
`Prediction.outside`). Two rules:

- distilled vs alone (the default, no calibration given): a distilled loss against the same student trained alone, the
  calibration above (the shipped one, `shipped_calibration`).
- `SAME_LAW`: two losses of one law (two teachers' students, two ways of distilling): nothing has
  measured how their errors move together, so their intervals combine as shown, independently (rho
  0, q 1, no rescaling): the wider, conservative rule.

A loss whose interval is not the law's own (a pruned start's range, a mixture's, on-policy's widened
one) is compared as shown too (`INDEPENDENT`): no pair measured its scale.

    delta = compare(distilled, alone)                # two `Prediction`s -> LossDifference
    delta.verdict, delta.low, delta.high
    compare(teacher_a, teacher_b, rule=SAME_LAW).separated   # does one beat the other?

The bench scores exactly this function (`score_pairs`), so the scored number is the printed number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.uncertainty import DISTANCE_BANDS, Prediction, band_index, lower_end

MODEL_FILE = Path(__file__).resolve().parent / "difference_interval.json"
TOO_CLOSE = "too close to call"
# The bands a law's scale is measured in: inside the runs, then each band of DISTANCE_BANDS, then beyond.
BAND_NAMES = ("inside the runs", "1-2x", "2-4x", "4-8x", "beyond 8x")
# A band's scale is measured from at least this many distinct predictions (each corpus the same weight;
# two pairs that share one prediction, as both scenarios of a budget share its alone run, count once);
# a band with fewer keeps the law's interval as it says (scale 1).
MIN_BAND_PAIRS = 8
# The narrowest a law's interval is made: a scale below 1 (its interval wider than its errors on the
# pairs) holds for the design the pairs were trained on, which no law records to match; it is kept in
# the calibration's record and never applied, so no law's interval is narrowed below what it says.
NARROWEST = 1.0
# What JSON records of a difference are: version 2 names Delta `distilled_minus_alone` (distilled -
# alone, negative when distillation wins) and carries what recomputes its interval.
RECORD_VERSION = 2


def band_of(distance: float) -> int:
    """0 inside the runs (distance <= 1), 1 for (1, 2], 2 for (2, 4], 3 for (4, 8], 4 beyond."""
    return int(band_index(distance)) + 1


class LawScale(BaseModel):
    """One law's interval against its errors on pairs where it predicts out of sample, by distance
    band (BAND_NAMES): `scales[b]` is what the law's own half-widths in band b measured against its
    errors (None: too few pairs there), on `pairs[b]` distinct predictions; `reach` is the farthest
    distance beyond the runs any of them lay (1: inside the runs only). What an interval is multiplied
    by is `at`: the band's scale, never below NARROWEST, and in a band no pair measured the larger of
    its measured neighbours'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scales: tuple[float | None, ...] = (None,) * len(BAND_NAMES)
    pairs: tuple[int, ...] = (0,) * len(BAND_NAMES)
    reach: float = Field(math.inf, ge=1.0)

    def at(self, distance: float) -> float:
        """The scale at `distance`: its band's where pairs measured it; in a band no pair measured, the
        larger of its nearest measured bands' on either side (an unmeasured band is never narrower than
        its measured neighbours; beyond the farthest, the farthest's); 1 where no band was measured;
        never below NARROWEST (a law's interval is never narrowed below what it says)."""
        band = band_of(distance)
        scale = self.scales[band]
        if scale is None:
            below = next((s for s in reversed(self.scales[:band]) if s is not None), None)
            above = next((s for s in self.scales[band + 1:] if s is not None), None)
            scale = max((s for s in (below, above) if s is not None), default=1.0)
        return max(float(scale), NARROWEST)

    def beyond(self, distance: float) -> bool:
        return distance > self.reach * (1 + 1e-9)


UNSCALED = LawScale()


class DifferenceCalibration(BaseModel):
    """What `compare` reads (see the module): rho and q, each law's scale by distance band and its
    reach, measured on `pairs` pairs of `corpora` (`date`, `command` to measure them again); `left_out`
    says what was kept out of the pairs' predictions (in words)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correlation: float = Field(ge=-1.0, le=1.0)
    factor: float = Field(gt=0.0)
    level: float = Field(gt=0.0, lt=1.0)
    distilled: LawScale = UNSCALED
    alone: LawScale = UNSCALED
    rule: str = "distilled vs alone"
    pairs: int = 0
    corpora: tuple[str, ...] = ()
    # what q's finite-sample correction counted: the pairs' effective number (`effective_sample_size`),
    # and the share of their errors' variance that corpora share (its intraclass correlation)
    sample_size: float | None = None
    within_corpus: float | None = None
    left_out: str = ""
    date: str = ""
    command: str = ""

    def describe(self) -> str:
        """One paragraph: what the interval of Delta is made of, where its scales were measured, and what
        was left out of the pairs that measured them."""
        if not self.pairs:
            return f"Δ's interval: the two losses' intervals as shown, combined independently ({self.rule})"

        def scales(law: LawScale) -> str:
            measured = [f"{max(scale, NARROWEST):.2f} {BAND_NAMES[band]} ({law.pairs[band]} predictions"
                        + (f", measured {scale:.2f}, never narrowed" if scale < NARROWEST else "") + ")"
                        for band, scale in enumerate(law.scales) if scale is not None]
            reach = "" if not math.isfinite(law.reach) else f", up to {law.reach:.3g}x beyond its runs"
            return (", ".join(measured) or "as shown") + reach

        counted = ("" if self.sample_size is None else
                   f" counting the pairs as {self.sample_size:.0f} independent ones (their errors' share common "
                   f"to a corpus: {self.within_corpus:.2f})")
        return (f"Δ's interval: each fitted law's interval times its width against its errors on {self.pairs} pairs "
                f"over {len(self.corpora)} corpora (distilled: {scales(self.distilled)}; alone: {scales(self.alone)}; "
                f"a band without pairs as the larger of its measured neighbours; beyond the reach a straddling Δ "
                f"cannot tell), the two combined "
                f"with rho = "
                f"{self.correlation:.2f} and times {self.factor:.2f}, their conformal quantile" + counted
                + (f"; {self.left_out}" if self.left_out else ""))


# What the default rule becomes for a loss whose interval no pair measured (a preset's stated error):
# the two intervals as shown, combined independently.
AS_SHOWN = "stated errors, combined as shown"
# Two losses compared as shown: no pair measured how their errors move together.
INDEPENDENT = DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9, rule="independent",
                                    command="the independent rule")
SAME_LAW = INDEPENDENT.model_copy(update={"rule": "two predictions of one law"})


@lru_cache(maxsize=1)
def shipped_calibration() -> DifferenceCalibration:
    """The calibration shipped with distillscale (difference_interval.json)."""
    return DifferenceCalibration.model_validate(json.loads(MODEL_FILE.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class LossDifference:
    """Delta = first - second (for a verdict: L(distilled) - L(alone), nats/token, negative when
    distillation wins), with its interval (None: a loss has no interval), the verdict read off it,
    and what recomputes the interval: each side's scale, distance beyond its runs and reach, the
    correlation and the factor (`rule` names the calibration)."""

    value: float
    low: float | None
    high: float | None
    level: float | None
    alone: float                 # the second loss (L(alone)), what `relative` divides by
    beyond: bool = False         # straddling 0 here reads "cannot tell": a loss beyond its law's reach
    correlation: float = 0.0
    factor: float = 1.0
    distilled_scale: float = 1.0
    alone_scale: float = 1.0
    distilled_distance: float | None = None
    alone_distance: float | None = None
    distilled_reach: float | None = None   # None: no reach (measured at every distance, or no pairs)
    alone_reach: float | None = None
    outside: str | None = None   # why the interval means nothing here (then: cannot tell)
    rule: str = "distilled vs alone"

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    @property
    def relative(self) -> float:
        return self.value / self.alone

    @property
    def separated(self) -> bool:
        """Whether the interval excludes 0 where it means something: one loss is lower, not a tie."""
        return self.verdict in ("distill", "pretrain")

    @property
    def verdict(self) -> str:
        """distill (the interval below 0), pretrain (above 0), too close to call (straddles 0), or
        CANNOT_TELL (straddles 0 beyond a law's reach, or a loss lies where its interval means
        nothing). Without an interval: by the sign."""
        if self.outside is not None:
            return CANNOT_TELL
        if self.has_interval:
            if self.high < 0:
                return "distill"
            if self.low > 0:
                return "pretrain"
            return CANNOT_TELL if self.beyond else TOO_CLOSE
        return "distill" if self.value < 0 else "pretrain"

    @property
    def uncertainty(self) -> float | None:
        """The half-width on the side facing 0 (what |value| must exceed for a verdict)."""
        if not self.has_interval:
            return None
        return float(self.high - self.value) if self.value <= 0 else float(self.value - self.low)

    def describe(self) -> str:
        """'-0.0410 nats/token (-1.4%) [-0.0680, -0.0150]': Delta with its interval."""
        text = f"{self.value:+.4f} nats/token ({self.relative:+.1%})"
        return text + (f" [{self.low:+.4f}, {self.high:+.4f}]" if self.has_interval else "")

    def interval_record(self) -> dict:
        """What recomputes the interval (`--json`'s `difference_interval`)."""
        return {"version": RECORD_VERSION, "rule": self.rule, "correlation": self.correlation,
                "factor": self.factor, "distilled_scale": self.distilled_scale, "alone_scale": self.alone_scale,
                "distilled_distance": self.distilled_distance, "alone_distance": self.alone_distance,
                "distilled_reach": self.distilled_reach, "alone_reach": self.alone_reach,
                "beyond_reach": self.beyond, "outside": self.outside}

    def to_dict(self) -> dict:
        return {"distilled_minus_alone": self.value, "distilled_minus_alone_relative": self.relative,
                "distilled_minus_alone_interval": [self.low, self.high] if self.has_interval else None,
                "distilled_minus_alone_level": self.level, "difference_interval": self.interval_record(),
                "loss_alone": self.alone}

    @classmethod
    def from_dict(cls, record: dict) -> "LossDifference":
        """The difference `to_dict` wrote (a report's or a plan's JSON). A record of an earlier version
        (no `distilled_minus_alone`; its `loss_difference` had one sign, then the other) gives its two
        losses' difference alone, from the losses themselves, without an interval."""
        if "distilled_minus_alone" not in record:
            alone = float(record["supervised_loss"])
            return cls(float(record["student_loss"]) - alone, None, None, None, alone)
        interval = record.get("distilled_minus_alone_interval") or (None, None)
        rule = record.get("difference_interval") or {}
        return cls(record["distilled_minus_alone"], interval[0], interval[1],
                   record.get("distilled_minus_alone_level"), record["loss_alone"], bool(rule.get("beyond_reach", False)),
                   rule.get("correlation", 0.0), rule.get("factor", 1.0), rule.get("distilled_scale", 1.0),
                   rule.get("alone_scale", 1.0), rule.get("distilled_distance"), rule.get("alone_distance"),
                   rule.get("distilled_reach"), rule.get("alone_reach"), rule.get("outside"),
                   rule.get("rule", "distilled vs alone"))


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _sides(prediction: Prediction) -> tuple[float, float]:
    value = float(prediction.value)
    return value - float(prediction.low), float(prediction.high) - value


# The intervals pairs rescale: a fitted law's (`Prediction.interval_source`). One calibrated across
# corpora on held-out runs was calibrated on evidence of the pairs' kind already; a preset's stated
# error on published runs no pair measured.
RESCALED_SOURCES = ("own", "ladders")


# The intervals the pairs measured Δ's rho and q on: a fitted law's, and one calibrated across corpora
# (the held-out-teacher pairs' distilled loss); a preset's stated error no pair measured.
MEASURED_SOURCES = (*RESCALED_SOURCES, "corpora")


def measured(prediction: Prediction) -> bool:
    """Whether the pairs measured how this kind of interval's errors move with the other's."""
    return prediction.interval_source in MEASURED_SOURCES


def rescaled(prediction: Prediction) -> bool:
    """Whether Delta's calibration rescales this prediction's interval."""
    return prediction.interval_source in RESCALED_SOURCES


def distance_of(prediction: Prediction | None) -> float:
    """How far beyond its law's runs a prediction lies (1: inside them, or not measured)."""
    if prediction is None or prediction.distance is None:
        return 1.0
    return max(float(np.max(prediction.distance)), 1.0)


LAWS = ("distilled", "alone")   # the two laws a calibration scales: the distillation law's, the supervised law's


def used_interval(prediction: Prediction | None, law: str, calibration: DifferenceCalibration | None = None
                  ) -> Prediction | None:
    """The interval a loss is shown with and Δ is built from, one for both: a fitted law's own interval
    (`rescaled`) times its law's scale at its distance (`LawScale.at`: the trained pairs' width against
    its errors there, never below what the law says), each side from the value; any other interval as
    it is. `law`: "distilled" (the distillation law's loss) or "alone" (the supervised law's loss of a
    student trained alone). A loss already rescaled (`Prediction.pairs_scale`) is returned as it is, so
    what a surface shows and what `compare` reads are the same interval. `calibration`: the shipped
    one by default."""
    if prediction is None or not prediction.has_interval or prediction.pairs_scale is not None:
        return prediction
    if not rescaled(prediction):
        return prediction
    scale_of: LawScale = getattr(shipped_calibration() if calibration is None else calibration, law)
    distance = prediction.distance
    if distance is None or np.ndim(distance) == 0:
        scale = scale_of.at(distance_of(prediction))
    else:
        scale = np.array([scale_of.at(max(float(d), 1.0)) for d in np.ravel(distance)]).reshape(np.shape(distance))
    value = np.asarray(prediction.value, float)
    low = lower_end(value, (value - np.asarray(prediction.low, float)) * scale)
    high = value + (np.asarray(prediction.high, float) - value) * scale
    if np.ndim(low) == 0 and np.ndim(high) == 0 and np.ndim(scale) == 0:
        low, high, scale = float(low), float(high), float(scale)
    return replace(prediction, low=low, high=high, pairs_scale=scale)


def _scale_of(prediction: Prediction) -> float:
    return 1.0 if prediction.pairs_scale is None else float(np.max(prediction.pairs_scale))


def compare(first: Prediction, second: Prediction, calibration: DifferenceCalibration | None = None) -> LossDifference:
    """Delta = first - second with its interval under `calibration` (see the module): by default the
    shipped one, for a distilled loss (`first`) against the student trained alone (`second`);
    `SAME_LAW` for two losses of one law; `INDEPENDENT` for a loss whose interval is not its law's own.
    Each loss's interval is the one it is shown with (`used_interval`)."""
    calibration = shipped_calibration() if calibration is None else calibration
    d, a = float(first.value), float(second.value)
    outside = getattr(first, "outside", None) or getattr(second, "outside", None)
    if not (first.has_interval and second.has_interval):
        return LossDifference(d - a, None, None, None, a, outside=outside, rule=calibration.rule)
    # a fitted law's interval (its bootstrap and backtest, or an extrapolation part calibrated across
    # published ladders) is rescaled to its width against the pairs' errors at its distance; one
    # calibrated across corpora on held-out runs, or a preset's stated error, is not
    first, second = used_interval(first, "distilled", calibration), used_interval(second, "alone", calibration)
    (d_low, d_high), (a_low, a_high) = _sides(first), _sides(second)
    d_distance, a_distance = distance_of(first), distance_of(second)
    d_scale, a_scale = _scale_of(first), _scale_of(second)
    rho, q, rule = calibration.correlation, calibration.factor, calibration.rule
    unmeasured = calibration.pairs == 0 or not (measured(first) and measured(second))
    if calibration.pairs and unmeasured:   # no pair measured how such an interval's errors move
        rho, q, rule = 0.0, 1.0, AS_SHOWN

    def half(s_d: float, s_a: float) -> float:
        return q * math.sqrt(max(s_d * s_d + s_a * s_a - 2.0 * rho * s_d * s_a, 0.0))

    # Delta rises when the first loss errs up or the second errs down, and falls the other way
    up, down = half(d_high, a_low), half(d_low, a_high)
    beyond = calibration.distilled.beyond(d_distance) or calibration.alone.beyond(a_distance)
    if calibration.pairs == 0:   # an unmeasured rule: its reach is each loss's own backtest's
        beyond = _far_beyond(first) or _far_beyond(second)
    return LossDifference(d - a, d - a - down, d - a + up, first.level, a, beyond, rho, q, d_scale, a_scale,
                          d_distance, a_distance, _finite(calibration.distilled.reach), _finite(calibration.alone.reach),
                          outside, rule)


def _far_beyond(prediction: Prediction) -> bool:
    from distillscale.laws.extrapolation import far_beyond

    return far_beyond(prediction)


def decide(distilled_loss: float, distilled: Prediction | None, alone_loss: float, alone: Prediction | None,
           calibration: DifferenceCalibration | None = None) -> LossDifference:
    """`compare` for losses that may lack an interval (a law without one): by the sign then."""
    if distilled is None or alone is None or not (distilled.has_interval and alone.has_interval):
        outside = getattr(distilled, "outside", None) or getattr(alone, "outside", None)
        rule = (shipped_calibration() if calibration is None else calibration).rule
        return LossDifference(distilled_loss - alone_loss, None, None, None, alone_loss, outside=outside, rule=rule)
    return compare(distilled, alone, calibration)


@dataclass(frozen=True)
class Pair:
    """A measured pair: the two predictions a plan makes, each by a law that never saw its run, and
    the two losses trained at its allocation."""

    corpus: str
    distilled: Prediction
    alone: Prediction
    distilled_observed: float
    alone_observed: float
    kind: str = "trained"

    @property
    def observed(self) -> float:
        return self.distilled_observed - self.alone_observed

    @property
    def distance(self) -> float:
        """The farther of its two predictions' distances beyond their runs: the pair's band."""
        return max(distance_of(self.distilled), distance_of(self.alone))

    def key(self, law: str) -> tuple:
        """What tells one of its predictions from another's: two pairs that share a run and its
        prediction (both scenarios of a budget share the alone run) share its key."""
        prediction, observed = ((self.distilled, self.distilled_observed) if law == "distilled"
                                else (self.alone, self.alone_observed))
        return (self.corpus, law, float(np.max(prediction.value)), float(observed))


@dataclass(frozen=True)
class PairScore:
    """What a rule decides on pairs: Delta's coverage, the verdicts given, and the wrong ones (a
    verdict whose sign the trained pair contradicts)."""

    pairs: int
    covered: int
    given: int
    wrong: int
    mean_half_width: float
    mean_error: float

    @property
    def coverage(self) -> float:
        return self.covered / self.pairs if self.pairs else float("nan")

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "covered": self.covered, "coverage": self.coverage, "given": self.given,
                "wrong": self.wrong, "mean_half_width": self.mean_half_width, "mean_error": self.mean_error}


def score_pairs(pairs: list[Pair], calibration: DifferenceCalibration) -> PairScore:
    """Score `calibration` on pairs through `compare`, the function every verdict reads."""
    covered = given = wrong = 0
    widths, errors = [], []
    for pair in pairs:
        delta = compare(pair.distilled, pair.alone, calibration)
        truth = pair.observed
        covered += int(delta.low <= truth <= delta.high)
        widths.append((delta.high - delta.low) / 2)
        errors.append(abs(truth - delta.value))
        if delta.verdict in ("distill", "pretrain"):
            given += 1
            wrong += int((delta.verdict == "distill") != (truth < 0))
    return PairScore(len(pairs), covered, given, wrong, float(np.mean(widths)) if widths else float("nan"),
                     float(np.mean(errors)) if errors else float("nan"))


def standardized_error(prediction: Prediction, observed: float) -> float:
    """A loss's error over its own interval's half-width on the side it fell."""
    low, high = _sides(prediction)
    error = observed - float(prediction.value)
    side = high if error > 0 else low
    return error / side if side > 0 else 0.0


def standardized_errors(pair: Pair) -> tuple[float, float]:
    return (standardized_error(pair.distilled, pair.distilled_observed),
            standardized_error(pair.alone, pair.alone_observed))


def law_scale(zs: np.ndarray, distances: np.ndarray, weights: np.ndarray, keys: list | None = None,
              level: float = 0.9) -> LawScale:
    """One law's `LawScale` from its standardized errors on pairs (|error| over its own `level`
    interval's half-width on the side it fell, out of sample), each distinct prediction once (`keys`:
    what tells them apart, `Pair.key`): per band with at least MIN_BAND_PAIRS of them, the conformal
    quantile at `level` of the |errors| (each weighted by `weights`, the finite-sample correction
    counting the band's distinct predictions): the interval times it covers `level` of them; `pairs`,
    the distinct predictions per band; `reach`, the farthest distance."""
    if keys is not None:
        first = sorted({key: i for i, key in reversed(list(enumerate(keys)))}.values())
        zs, distances, weights = zs[first], distances[first], weights[first]
    if len(zs) == 0:
        return UNSCALED
    bands = np.array([band_of(d) for d in distances])
    scales, counts = [], []
    for b in range(len(BAND_NAMES)):
        mask = bands == b
        counts.append(int(mask.sum()))
        scales.append(None if mask.sum() < MIN_BAND_PAIRS
                      else max(_weighted_quantile(np.abs(zs[mask]), weights[mask], level), 1e-3))
    if all(scale is None for scale in scales):   # too few in every band: one scale for all of them
        scale = max(_weighted_quantile(np.abs(zs), weights, level), 1e-3)
        scales = [scale if n else None for n in counts]
    return LawScale(scales=tuple(scales), pairs=tuple(counts), reach=float(max(np.max(distances), 1.0)))


def _weighted_quantile(scores: np.ndarray, weights: np.ndarray, level: float, n: float | None = None) -> float:
    """The conformal quantile: the smallest score whose weighted share of scores at or below it reaches
    level (n + 1) / n, n the number of scores unless given (past 1: the largest)."""
    order = np.argsort(scores)
    cumulative = np.cumsum(weights[order]) / np.sum(weights)
    n = len(scores) if n is None else n
    index = int(np.searchsorted(cumulative, min(level * (n + 1) / n, 1.0) - 1e-12))
    return float(scores[order][min(index, len(scores) - 1)])


def fit_calibration(pairs: list[Pair], level: float = 0.9, scales: tuple[LawScale, LawScale] | None = None,
                    count: str = "effective", **record) -> DifferenceCalibration:
    """Each law's `LawScale` from the pairs whose loss has a fitted law's interval (`rescaled`: its
    bootstrap and backtest, or its extrapolation part calibrated across ladders; one calibrated across
    corpora keeps its width), its reach the farthest distance any pair checked it at; rho, the correlation
    (through zero: errors are measured from the predictions) of the rescaled standardized errors; q,
    the conformal quantile at `level` of |Delta_true - Delta_pred| over the half-width at q = 1 on the
    side the truth fell, each corpus weighing the same and the finite-sample correction counting the
    pairs' effective sample size (`effective_sample_size`: pairs of one corpus share part of their
    errors; `count="corpora"` or `"pairs"`: counting corpora or pairs, rules to compare). `scales`:
    each law's scale as given instead (a rule to compare)."""
    corpora = sorted({p.corpus for p in pairs})
    weight = {c: 1.0 / sum(p.corpus == c for p in pairs) for c in corpora}
    zs = np.array([standardized_errors(p) for p in pairs])
    w = np.array([weight[p.corpus] for p in pairs])
    if scales is None:
        scales = []
        for k, side in enumerate(("distilled", "alone")):
            own = np.array([rescaled(getattr(p, side)) for p in pairs])
            distances = np.array([distance_of(getattr(p, side)) for p in pairs])
            # its reach: the farthest any pair checked it, rescaled or not (q is measured up to there)
            reach = float(max(np.max(distances), 1.0)) if len(pairs) else math.inf
            keys = [p.key(side) for p, kept in zip(pairs, own) if kept]
            scale = law_scale(zs[own, k], distances[own], w[own], keys, level)
            scales.append(scale.model_copy(update={"reach": reach}))
    unit = DifferenceCalibration(correlation=0.0, factor=1.0, level=level, distilled=scales[0], alone=scales[1],
                                 pairs=len(pairs))
    standardized = np.array([[z_d / (unit.distilled.at(distance_of(p.distilled)) if rescaled(p.distilled) else 1.0),
                              z_a / (unit.alone.at(distance_of(p.alone)) if rescaled(p.alone) else 1.0)]
                             for p, (z_d, z_a) in zip(pairs, zs)])
    denominator = math.sqrt(np.sum(w * standardized[:, 0] ** 2) * np.sum(w * standardized[:, 1] ** 2))
    rho = (float(np.clip(np.sum(w * standardized[:, 0] * standardized[:, 1]) / denominator, -1.0, 1.0))
           if denominator else 0.0)
    unit = unit.model_copy(update={"correlation": rho})
    scores, signed = [], []
    for pair in pairs:
        delta = compare(pair.distilled, pair.alone, unit)
        error = pair.observed - delta.value
        side = (delta.high - delta.value) if error > 0 else (delta.value - delta.low)
        scores.append(abs(error) / side if side > 0 else math.inf)
        signed.append(error / side if side > 0 else 0.0)
    names = np.array([p.corpus for p in pairs])
    size, icc = effective_sample_size(np.array(signed), names, np.array([p.kind for p in pairs]))
    counted = {"effective": size, "corpora": float(len(corpora)), "pairs": float(len(pairs))}[count]
    factor = corpus_quantile(np.array(scores), names, level, counted)
    return unit.model_copy(update={"factor": max(factor, 1e-6), "corpora": tuple(corpora), "sample_size": counted,
                                   "within_corpus": icc, **record})


def corpus_quantile(scores: np.ndarray, corpora: np.ndarray, level: float, count: str | float = "corpora") -> float:
    """The conformal quantile of `scores` with each corpus weighing the same and the finite-sample
    correction counting `count` units: "corpora" (K), "pairs", or a number (an effective sample size,
    `effective_sample_size`): the smallest score whose weighted share of scores at or below it reaches
    level (n + 1) / n of the total; past 1 (n below level / (1 - level)), the largest score."""
    if len(scores) == 0:
        return 1.0
    names = sorted(set(corpora.tolist()))
    weights = np.array([1.0 / np.sum(corpora == c) for c in corpora])
    n = len(names) if count == "corpora" else len(scores) if count == "pairs" else float(count)
    return _weighted_quantile(scores, weights, level, n)


def within_corpus_correlation(errors: np.ndarray, corpora: np.ndarray) -> float:
    """The intraclass correlation of `errors` grouped by corpus (one-way ANOVA, unequal groups; at
    least 0): the share of their variance that corpora share."""
    names = sorted(set(corpora.tolist()))
    groups = [errors[corpora == c] for c in names]
    k, n = len(groups), np.array([len(g) for g in groups], float)
    total = n.sum()
    if k < 2 or total <= k:
        return 1.0
    grand = float(np.mean(errors))
    between = sum(len(g) * (float(np.mean(g)) - grand) ** 2 for g in groups) / (k - 1)
    within = sum(float(np.sum((g - np.mean(g)) ** 2)) for g in groups) / (total - k)
    n0 = (total - float(np.sum(n ** 2)) / total) / (k - 1)
    denominator = between + (n0 - 1.0) * within
    return float(np.clip((between - within) / denominator, 0.0, 1.0)) if denominator > 0 else 1.0


def effective_sample_size(errors: np.ndarray, corpora: np.ndarray, kinds: np.ndarray | None = None
                          ) -> tuple[float, float]:
    """How many independent pairs `errors` (signed, one a pair) are worth: n / (1 + (m - 1) ICC), Kish's
    design effect for clusters of mean size m with intraclass correlation ICC
    (`within_corpus_correlation`), between the number of clusters (ICC 1) and of pairs (ICC 0); and
    the ICC. With `kinds` (pairs of kinds whose biases on one corpus differ, even cancel, so that
    clustering by corpus alone hides what each kind shares), the smaller of the numbers clustered by
    corpus and by (corpus, kind): the conservative end."""
    def clustered(groups: np.ndarray) -> tuple[float, float]:
        names = sorted(set(groups.tolist()))
        icc = within_corpus_correlation(errors, groups)
        m = len(errors) / len(names)
        return float(np.clip(len(errors) / (1.0 + (m - 1.0) * icc), len(names), len(errors))), icc

    ways = [clustered(np.asarray(corpora))]
    if kinds is not None and len(set(np.asarray(kinds).tolist())) > 1:
        ways.append(clustered(np.array([f"{c}\x00{k}" for c, k in zip(corpora, kinds)])))
    return min(ways)
