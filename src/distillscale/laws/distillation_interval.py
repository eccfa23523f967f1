"""The distillation law's intervals, calibrated across corpora, for a law whose teachers are too few
for a backtest.

A distillation law backtests itself by teacher strength (fitted on the students of the weaker
teachers, predicting those of the stronger), which needs students of at least 4 teachers. With
fewer, its extrapolation error is the literature's typical error (`uncertainty.literature_half_width`,
8.2% at 90%), and its own interval (`DistillationLaw.prediction` without this calibration: its
bootstrap combined with that error) comes out several times wider than its errors are. Measured on
the micro demo's sweeps of several corpora (`bench/laws/distillation_interval.py`): the students of each
sweep's strongest teacher, predicted by the law fitted on the 3 weaker teachers' students (the
report's held-out check, whose law has no backtest). Each held-out run's score is its error over its
own interval's gap on the side it fell:

    score = |observed / predicted - 1| / gap
    gap = (predicted - low) / predicted below the prediction, (high - predicted) / predicted above

and the calibrated interval is the law's own with both gaps times the conformal quantile of the
scores (split-conformal: the ceil((n + 1) level)-th smallest). Every source of width enters once:
the scores are errors against the law's whole interval, noise and extrapolation together, so the
factor scales that whole interval and nothing is added to it. At another level than the scores'
the factor is the scores' quantile at that level, carried from the scores' gaps to the law's by
the ratio of normal quantiles (`factor`).

    calibration = shipped_interval_scale()          # package data: distillation_interval.json
    law.fit.interval_scale                           # a fitted law carries the calibration it was fitted with

A law with a backtest keeps its own interval: its backtest measured its error on its own teachers.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillscale.laws.schema import Level
from distillscale.laws.uncertainty import Prediction, conformal_quantile

MODEL_FILE = Path(__file__).resolve().parent / "distillation_interval.json"
# What a score divides the error by: the gap of the law's whole own interval on the run's side
# ("interval"), or its noise part alone, the bootstrap's half-width ("noise").
SIGNALS = ("interval", "noise")


class IntervalScale(BaseModel):
    """The calibration (see the module): held-out scores, the level of the intervals they were
    measured against, and what they were measured on (`corpora`, `date`, `command` to measure them
    again)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scores: tuple[float, ...] = Field(min_length=2)
    level: Level
    signal: Literal["interval", "noise"] = "interval"   # what the scores divide by (SIGNALS)
    corpora: tuple[str, ...] = ()
    date: str = ""
    command: str = ""

    @model_validator(mode="after")
    def _finite_scores(self) -> "IntervalScale":
        if not all(np.isfinite(s) and s >= 0 for s in self.scores):
            raise ValueError("scores must be finite and non-negative")
        return self

    @classmethod
    def from_scores(cls, scores, level: float, signal: str = "interval", **about) -> "IntervalScale":
        return cls(scores=tuple(sorted(float(s) for s in scores)), level=level, signal=signal, **about)

    def factor(self, level: float) -> float:
        """What a law's own `level` interval's gaps are multiplied by."""
        quantile = conformal_quantile(np.asarray(self.scores), level)[0]
        z = NormalDist().inv_cdf
        return quantile * z((1 + self.level) / 2) / z((1 + level) / 2)

    def describe(self, level: float) -> str:
        """One line: what the law's intervals are (`fit distillation` prints it)."""
        plural = "corpus" if len(self.corpora) == 1 else "corpora"
        corpora = f" of {len(self.corpora)} {plural} ({', '.join(self.corpora)})" if self.corpora else ""
        what = ("interval (bootstrap and extrapolation error)" if self.signal == "interval"
                else "bootstrap half-width (the noise of its runs)")
        return (f"intervals calibrated on {len(self.scores)} held-out students{corpora}: the law's own "
                f"{level:.0%} {what} times {self.factor(level):.3g}")

    def applies_to(self, prediction: Prediction) -> bool:
        """Whether the prediction has what the scores divide by (an interval; a bootstrap's noise)."""
        return prediction.has_interval and (self.signal != "noise" or prediction.noise is not None)

    def calibrated(self, prediction: Prediction) -> Prediction:
        """A law's own prediction (`applies_to` it) with its whole interval scaled, once: what a law
        fitted with this calibration predicts."""
        from dataclasses import replace

        from distillscale.laws.uncertainty import combine

        return replace(combine(prediction.value, None, None, prediction.distance, prediction.level,
                               sides=self.sides(prediction, prediction.level), beyond=prediction.beyond_backtest),
                       calibrated=True, source="corpora")

    def sides(self, prediction: Prediction, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated relative gaps below and above a law's own `level` prediction."""
        factor = self.factor(level)
        below, above = gaps(prediction, self.signal)
        return factor * below, factor * above


def gaps(prediction: Prediction, signal: str = "interval") -> tuple[np.ndarray, np.ndarray]:
    """The relative gaps below and above a prediction's value that a calibration scales (see SIGNALS)."""
    value = np.asarray(prediction.value, float)
    if signal == "noise":
        noise = np.asarray(prediction.noise, float) / value
        return noise, noise
    return (value - np.asarray(prediction.low, float)) / value, (np.asarray(prediction.high, float) - value) / value


def score(observed, prediction: Prediction, signal: str = "interval") -> np.ndarray:
    """Each held-out run's |error| over its gap on the side it fell (see the module)."""
    observed, value = np.asarray(observed, float), np.asarray(prediction.value, float)
    below, above = gaps(prediction, signal)
    gap = np.where(observed < value, below, above)
    return np.abs(observed / value - 1) / np.maximum(gap, 1e-300)


def shipped_interval_scale() -> IntervalScale | None:
    """The calibration that ships with distillscale (distillation_interval.json), or None."""
    if not MODEL_FILE.is_file():
        return None
    return IntervalScale.model_validate(json.loads(MODEL_FILE.read_text()))
