"""The difference of two predicted losses with its own interval: what a verdict ("distil or train
alone") reads (docs/science.md §11).

A verdict is a statement about Delta = L(distilled) - L(alone) at one budget, not about either loss.
The two predictions share the supervised law (the distillation law takes the student's supervised
loss as its input), the corpus, the tokenizer and the evaluation, so where one is off the other is
off the same way: their errors are correlated, and the difference's error is smaller than the two
intervals combined as if independent. With the two losses' half-widths s_d and s_a on the sides that
move Delta (the distilled loss's upper side and the alone loss's lower side move it up) and the
correlation rho of their errors:

    half-width(Delta) = q sqrt(s_d^2 + s_a^2 - 2 rho s_d s_a)

rho = 0 and q = 1 is the independent rule (the half-widths facing each other, in quadrature); rho = 1
with equal widths leaves only the noise q carries. `rho` and `q` are calibrated on measured pairs, the
same student distilled and trained alone at the same compute as a plan allocates it, left out a
corpus at a time (`bench/laws/verdict_pairs.py`; `DifferenceCalibration`): rho is the correlation of the
two laws' standardized errors on the pairs, q the conformal quantile of |Delta_true - Delta_pred|
over the half-width at q = 1. Every verdict reads `loss_difference`'s interval: distill when it lies
below 0, train alone ("pretrain") above, too close to call when it straddles 0, and "cannot tell at
this distance" when it straddles 0 and the pair lies farther beyond the runs than the calibration's
pairs did while a loss is beyond its own backtest. The bench scores exactly this function
(`score_pairs`), so the scored number is the printed number.

    calibration = shipped_calibration()              # package data: difference_interval.json
    delta = loss_difference(distilled, alone)        # two `Prediction`s -> LossDifference
    delta.verdict, delta.low, delta.high
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from distillscale.laws.extrapolation import CANNOT_TELL, far_beyond
from distillscale.laws.uncertainty import Prediction, conformal_quantile

MODEL_FILE = Path(__file__).resolve().parent / "difference_interval.json"
Z90 = 1.6448536269514722   # the normal distribution's 95th percentile: a 90% interval's half-width in sds
TOO_CLOSE = "too close to call"


class DifferenceCalibration(BaseModel):
    """rho and q of the module's rule, measured on trained pairs (`corpora`, `pairs`, `date`,
    `command` to measure them again). `reach`: the farthest distance beyond the runs (a
    `Prediction.distance`) of the pairs' predictions; past it a straddling interval is
    CANNOT_TELL rather than too close to call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correlation: float = Field(ge=-1.0, le=1.0)
    factor: float = Field(gt=0.0)
    # Each loss's half-width times its own scale before the two are combined: how wide each law's
    # interval is against its errors on the pairs (1: as shown).
    distilled_scale: float = Field(1.0, gt=0.0)
    alone_scale: float = Field(1.0, gt=0.0)
    level: float = Field(gt=0.0, lt=1.0)
    reach: float = Field(1.0, ge=1.0)
    pairs: int = 0
    corpora: tuple[str, ...] = ()
    date: str = ""
    command: str = ""

    def describe(self) -> str:
        return (f"Delta's interval: the two losses' errors correlate (rho = {self.correlation:.2f}, "
                f"measured on {self.pairs} trained pairs on {len(self.corpora)} corpora), scaled by "
                f"{self.factor:.2f} (their conformal quantile, left out a corpus at a time)")


INDEPENDENT = DifferenceCalibration(correlation=0.0, factor=1.0, level=0.9, reach=math.inf,
                                    corpora=(), date="", command="the independent rule")


@lru_cache(maxsize=1)
def shipped_calibration() -> DifferenceCalibration:
    """The calibration shipped with distillscale (difference_interval.json)."""
    return DifferenceCalibration.model_validate(json.loads(MODEL_FILE.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class LossDifference:
    """Delta = L(distilled) - L(alone), nats/token (negative: distillation wins), with its interval
    (None: a loss has no interval) and the verdict read off it."""

    value: float
    low: float | None
    high: float | None
    level: float | None
    alone: float                 # L(alone), what `relative` divides by
    beyond: bool = False         # beyond the calibration's reach, a loss beyond its own backtest
    correlation: float = 0.0
    factor: float = 1.0

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    @property
    def relative(self) -> float:
        return self.value / self.alone

    @property
    def verdict(self) -> str:
        """distill (the interval below 0), pretrain (above 0), too close to call (straddles 0), or
        CANNOT_TELL (straddles 0 beyond the calibrated reach). Without an interval: by the sign."""
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

    def to_dict(self) -> dict:
        return {"loss_difference": self.value, "loss_difference_relative": self.relative,
                "loss_difference_interval": [self.low, self.high] if self.has_interval else None,
                "loss_difference_level": self.level, "loss_difference_beyond_calibration": self.beyond,
                "loss_difference_correlation": self.correlation, "loss_difference_factor": self.factor,
                "loss_alone": self.alone}

    @classmethod
    def from_dict(cls, record: dict) -> "LossDifference":
        """The difference `to_dict` wrote (a report's or a plan's JSON); a plan record written before
        the difference had an interval gives its two losses' difference alone."""
        if "loss_alone" not in record:
            alone = float(record["supervised_loss"])
            return cls(float(record["student_loss"]) - alone, None, None, None, alone)
        interval = record.get("loss_difference_interval") or (None, None)
        return cls(record["loss_difference"], interval[0], interval[1], record.get("loss_difference_level"),
                   record["loss_alone"], bool(record.get("loss_difference_beyond_calibration", False)),
                   record.get("loss_difference_correlation", 0.0), record.get("loss_difference_factor", 1.0))


def _sides(prediction: Prediction) -> tuple[float, float]:
    value = float(prediction.value)
    return value - float(prediction.low), float(prediction.high) - value


def _distance(prediction: Prediction | None) -> float:
    if prediction is None or prediction.distance is None:
        return 1.0
    return float(np.max(prediction.distance))


def loss_difference(distilled: Prediction, alone: Prediction,
                    calibration: DifferenceCalibration | None = None) -> LossDifference:
    """Delta = distilled - alone with its interval under `calibration` (the shipped one by
    default; `INDEPENDENT` is the rule that treats the two errors as unrelated)."""
    calibration = shipped_calibration() if calibration is None else calibration
    d, a = float(distilled.value), float(alone.value)
    if not (distilled.has_interval and alone.has_interval):
        return LossDifference(d - a, None, None, None, a)
    (d_low, d_high), (a_low, a_high) = _sides(distilled), _sides(alone)
    # a law's own interval (its fit's bootstrap and backtest) is rescaled to its width against the
    # pairs' errors; one calibrated across ladders or corpora, or a preset's stated error, is not
    d_scale = 1.0 if distilled.calibrated else calibration.distilled_scale
    a_scale = 1.0 if alone.calibrated else calibration.alone_scale
    d_low, d_high, a_low, a_high = d_low * d_scale, d_high * d_scale, a_low * a_scale, a_high * a_scale
    rho, q = calibration.correlation, calibration.factor

    def half(s_d: float, s_a: float) -> float:
        return q * math.sqrt(max(s_d * s_d + s_a * s_a - 2.0 * rho * s_d * s_a, 0.0))

    # Delta rises when the distilled loss errs up or the alone loss errs down, and falls the other way
    up, down = half(d_high, a_low), half(d_low, a_high)
    beyond = ((far_beyond(distilled) or far_beyond(alone))
              and max(_distance(distilled), _distance(alone)) > calibration.reach)
    return LossDifference(d - a, d - a - down, d - a + up, distilled.level, a, beyond, rho, q)


def decide(distilled_loss: float, distilled: Prediction | None, alone_loss: float, alone: Prediction | None,
           calibration: DifferenceCalibration | None = None) -> LossDifference:
    """`loss_difference` for losses that may lack an interval (a law without one): by the sign then."""
    if distilled is None or alone is None or not (distilled.has_interval and alone.has_interval):
        return LossDifference(distilled_loss - alone_loss, None, None, None, alone_loss)
    return loss_difference(distilled, alone, calibration)


@dataclass(frozen=True)
class Pair:
    """A measured pair: the two predictions a plan makes and the two losses trained at its allocation."""

    corpus: str
    distilled: Prediction
    alone: Prediction
    distilled_observed: float
    alone_observed: float

    @property
    def observed(self) -> float:
        return self.distilled_observed - self.alone_observed


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
    """Score `calibration` on pairs through `loss_difference`, the function every verdict reads."""
    covered = given = wrong = 0
    widths, errors = [], []
    for pair in pairs:
        delta = loss_difference(pair.distilled, pair.alone, calibration)
        truth = pair.observed
        covered += int(delta.low <= truth <= delta.high)
        widths.append((delta.high - delta.low) / 2)
        errors.append(abs(truth - delta.value))
        if delta.verdict in ("distill", "pretrain"):
            given += 1
            wrong += int((delta.verdict == "distill") != (truth < 0))
    return PairScore(len(pairs), covered, given, wrong, float(np.mean(widths)) if widths else float("nan"),
                     float(np.mean(errors)) if errors else float("nan"))


def standardized_errors(pair: Pair) -> tuple[float, float]:
    """Each loss's error over its own interval's half-width on the side it fell."""
    def z(prediction: Prediction, observed: float) -> float:
        low, high = _sides(prediction)
        error = observed - float(prediction.value)
        side = high if error > 0 else low
        return error / side if side > 0 else 0.0

    return z(pair.distilled, pair.distilled_observed), z(pair.alone, pair.alone_observed)


def fit_calibration(pairs: list[Pair], level: float = 0.9, separate: bool = False, **record) -> DifferenceCalibration:
    """rho: the correlation (through zero: errors are measured from the predictions) of the pairs'
    standardized errors; q: the conformal quantile at `level` of |Delta_true - Delta_pred| over the
    half-width the rule gives at q = 1 on the side the truth fell. `separate`: each loss's own
    interval (a law's bootstrap and backtest, not one calibrated across ladders or corpora) is first
    scaled by how wide it is against its errors on the pairs (the RMS of its standardized errors
    times the normal 90% quantile: 1 for a calibrated interval), and rho is measured on the rescaled
    errors. `reach`: the pairs' farthest distance. Each corpus
    weighs the same."""
    corpora = sorted({p.corpus for p in pairs})
    weight = {c: 1.0 / sum(p.corpus == c for p in pairs) for c in corpora}
    zs = np.array([standardized_errors(p) for p in pairs])
    w = np.array([weight[p.corpus] for p in pairs])
    scales = [1.0, 1.0]
    if separate:   # from the pairs whose loss has its law's own interval (the others keep theirs)
        own = np.array([[not p.distilled.calibrated, not p.alone.calibrated] for p in pairs])
        for k in (0, 1):
            if own[:, k].any():
                rms = np.sqrt(np.sum(w[own[:, k]] * zs[own[:, k], k] ** 2) / np.sum(w[own[:, k]]))
                scales[k] = float(max(rms * Z90, 1e-3))
        zs = zs * np.where(own, 1.0 / np.array(scales), 1.0)
    rho = float(np.clip(np.sum(w * zs[:, 0] * zs[:, 1])
                        / math.sqrt(np.sum(w * zs[:, 0] ** 2) * np.sum(w * zs[:, 1] ** 2)), -1.0, 1.0))
    unit = DifferenceCalibration(correlation=rho, factor=1.0, level=level, distilled_scale=scales[0],
                                 alone_scale=scales[1])
    scores = []
    for pair in pairs:
        delta = loss_difference(pair.distilled, pair.alone, unit)
        error = pair.observed - delta.value
        side = (delta.high - delta.value) if error > 0 else (delta.value - delta.low)
        scores.append(abs(error) / side if side > 0 else math.inf)
    factor = _weighted_quantile(np.array(scores), w, level)
    reach = max(max(_distance(p.distilled), _distance(p.alone)) for p in pairs)
    return unit.model_copy(update={"factor": max(factor, 1e-6), "reach": max(reach, 1.0), "pairs": len(pairs),
                                   "corpora": tuple(corpora), **record})


def _weighted_quantile(scores: np.ndarray, weights: np.ndarray, level: float) -> float:
    """The conformal quantile with weights (each corpus the same): the smallest score whose
    weighted share of scores at or below it reaches level (n + 1) / n of the total."""
    if len(scores) < 2:
        return float(conformal_quantile(scores, level)) if len(scores) else 1.0
    order = np.argsort(scores)
    cumulative = np.cumsum(weights[order]) / np.sum(weights)
    target = min(level * (len(scores) + 1) / len(scores), 1.0)
    index = int(np.searchsorted(cumulative, target - 1e-12))
    return float(scores[order][min(index, len(scores) - 1)])
