"""The distillation law's intervals, calibrated across corpora, for a law whose teachers are too few
for a backtest.

A distillation law backtests itself by teacher strength (fitted on the students of the weaker
teachers, predicting those of the stronger), which needs students of at least 4 teachers. With
fewer, its extrapolation error is the literature's typical error (`uncertainty.literature_half_width`,
8.2% at 90%), and its own interval (`DistillationLaw.prediction` without this calibration: its
bootstrap combined with that error) comes out several times wider than its errors are. Measured on
the micro demo's sweeps of several corpora (`bench/distillation_interval.py`): the students of each
sweep's strongest teacher, predicted by the law fitted on the 3 weaker teachers' students (the
report's held-out check, whose law has no backtest). Each held-out run's score is its error over its
own interval's gap on the side it fell:

    score = |observed / predicted - 1| / gap,   gap = (predicted - low) / predicted below, (high - predicted) / predicted above

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

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillscale.laws.schema import Level
from distillscale.laws.uncertainty import conformal_quantile

MODEL_FILE = Path(__file__).resolve().parent / "distillation_interval.json"


class IntervalScale(BaseModel):
    """The calibration (see the module): held-out scores, the level of the intervals they were
    measured against, and what they were measured on (`corpora`, `date`, `command` to measure them
    again)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scores: tuple[float, ...] = Field(min_length=2)
    level: Level
    corpora: tuple[str, ...] = ()
    date: str = ""
    command: str = ""

    @model_validator(mode="after")
    def _finite_scores(self) -> "IntervalScale":
        if not all(np.isfinite(s) and s >= 0 for s in self.scores):
            raise ValueError("scores must be finite and non-negative")
        return self

    @classmethod
    def from_scores(cls, scores, level: float, **about) -> "IntervalScale":
        return cls(scores=tuple(sorted(float(s) for s in scores)), level=level, **about)

    def factor(self, level: float) -> float:
        """What a law's own `level` interval's gaps are multiplied by."""
        quantile = conformal_quantile(np.asarray(self.scores), level)[0]
        z = NormalDist().inv_cdf
        return quantile * z((1 + self.level) / 2) / z((1 + level) / 2)

    def describe(self, level: float) -> str:
        """One line: what the law's intervals are (`fit distillation` prints it)."""
        corpora = f" of {len(self.corpora)} corpora ({', '.join(self.corpora)})" if self.corpora else ""
        return (f"intervals calibrated on {len(self.scores)} held-out students{corpora}: the law's own "
                f"{level:.0%} interval (bootstrap and extrapolation error) times {self.factor(level):.3g}")

    def sides(self, value, low, high, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated relative gaps below and above `value` of a law's own interval (low, high)."""
        value = np.asarray(value, float)
        factor = self.factor(level)
        return (factor * (value - np.asarray(low, float)) / value,
                factor * (np.asarray(high, float) - value) / value)


def score(observed, predicted, low, high) -> np.ndarray:
    """Each held-out run's |error| over its interval's relative gap on the side it fell (see the module)."""
    observed, predicted = np.asarray(observed, float), np.asarray(predicted, float)
    gap = np.where(observed < predicted, predicted - np.asarray(low, float), np.asarray(high, float) - predicted)
    return np.abs(observed - predicted) / np.maximum(gap, 1e-300)


def shipped_interval_scale() -> IntervalScale | None:
    """The calibration that ships with distillscale (distillation_interval.json), or None."""
    if not MODEL_FILE.is_file():
        return None
    return IntervalScale.model_validate(json.loads(MODEL_FILE.read_text()))
