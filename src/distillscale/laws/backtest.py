"""Extrapolation backtests: how well does a law fitted on smaller runs predict larger ones?

Rolling origin by scale (docs/science.md §8): order the runs by a scale (model size; for distilled
students, teacher strength), fit on every run up to a cut, predict every run beyond it, for each cut
that leaves enough runs to fit. Each held-out run gives a signed relative error at a *distance*,
its scale over the largest fitted scale; the summary is the error per distance band (1-2x, 2-4x,
... the largest fitted size), and the score that selects a law's form is the mean absolute error
within 8x, each band weighted equally.

    folds = rolling_origin_folds(N, min_fit_runs=7)
    backtest = run_backtest(folds, N, loss, lambda trains: fitter.predict_subsets(N, D, loss, trains))
    backtest.bands(); backtest.score()

The folds are masks over the runs, so several candidate laws are compared on the same cuts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

# Scales within this relative distance are one size (e.g. sizes read off a plot).
SAME_SCALE = 0.02
MAX_FOLDS = 6
# Held-out runs at most this far beyond the fitted ones make the score that selects a form.
SCORE_DISTANCE = 8.0


@dataclass(frozen=True)
class Fold:
    """Fit on the runs of `train` (every run up to scale `cut`), predict the others."""

    cut: float
    train: np.ndarray = field(repr=False)

    @property
    def n_fit(self) -> int:
        return int(self.train.sum())


@dataclass(frozen=True)
class HeldOut:
    """One run predicted by a law fitted only on runs up to `cut`."""

    row: int
    cut: float          # the largest fitted scale
    scale: float
    observed: float
    predicted: float
    fitted_min: float   # the smallest fitted scale

    @property
    def distance(self) -> float:
        return self.scale / self.cut

    @property
    def span(self) -> float:
        return self.cut / self.fitted_min

    @property
    def relative_error(self) -> float:
        return self.predicted / self.observed - 1.0


@dataclass(frozen=True)
class DistanceBand:
    """Held-out runs at distance (low, high] beyond the fitted ones."""

    low: float
    high: float
    n: int
    mean_abs_error: float
    worst_error: float  # signed, largest in magnitude

    @property
    def label(self) -> str:
        return f"{self.low:g}-{self.high:g}x"


@dataclass
class Backtest:
    """Held-out predictions of a rolling-origin backtest, and the folds that were skipped (why)."""

    scale_name: str
    held_out: list[HeldOut]
    folds: list[float]                    # cuts that were fitted
    skipped: dict[float, str] = field(default_factory=dict)

    @property
    def errors(self) -> np.ndarray:
        return np.array([h.relative_error for h in self.held_out])

    @property
    def distances(self) -> np.ndarray:
        return np.array([h.distance for h in self.held_out])

    @property
    def spans(self) -> np.ndarray:
        return np.array([h.span for h in self.held_out])

    def bands(self) -> list[DistanceBand]:
        """Mean |error| and worst error per distance band (1, 2], (2, 4], (4, 8] ..."""
        if not self.held_out:
            return []
        errors, distances = self.errors, self.distances
        bands = []
        top = max(1, math.ceil(math.log2(distances.max())))
        for k in range(top):
            low, high = 2.0 ** k, 2.0 ** (k + 1)
            inside = (distances > low) & (distances <= high) if k else distances <= high
            if inside.any():
                chosen = errors[inside]
                bands.append(DistanceBand(low, high, int(inside.sum()), float(np.mean(np.abs(chosen))),
                                          float(chosen[np.argmax(np.abs(chosen))])))
        return bands

    def score(self, max_distance: float = SCORE_DISTANCE, rows: np.ndarray | None = None) -> float | None:
        """Mean |relative error| of held-out runs within `max_distance`, each distance band weighted
        equally (so the many near predictions do not drown the far ones); `rows` restricts it to
        those runs. None without any such run."""
        keep = [h for h in self.held_out if h.distance <= max_distance and (rows is None or rows[h.row])]
        if not keep:
            return None
        sub = Backtest(self.scale_name, keep, self.folds)
        return float(np.mean([band.mean_abs_error for band in sub.bands()]))

    def by_scale(self) -> list[dict]:
        """Per fold and held-out scale: the mean signed relative error of its runs."""
        groups: dict[tuple[float, float], list[HeldOut]] = {}
        for h in self.held_out:
            groups.setdefault((h.cut, h.scale), []).append(h)
        return [{"fitted_up_to": cut, "scale": scale, "distance": scale / cut, "n": len(group),
                 "mean_relative_error": float(np.mean([h.relative_error for h in group])),
                 "max_abs_relative_error": float(max(abs(h.relative_error) for h in group))}
                for (cut, scale), group in sorted(groups.items())]

    def to_dict(self) -> dict:
        return {"scale": self.scale_name, "folds": self.folds,
                "skipped": {f"{cut:.6g}": why for cut, why in self.skipped.items()},
                "bands": [{**asdict(b), "label": b.label} for b in self.bands()],
                "score": self.score(), "by_scale": self.by_scale(),
                "held_out": [{**asdict(h), "distance": h.distance, "relative_error": h.relative_error}
                             for h in self.held_out]}

    @classmethod
    def from_dict(cls, data: dict) -> "Backtest":
        return cls(data["scale"], [HeldOut(**{k: h[k] for k in ("row", "cut", "scale", "observed", "predicted",
                                                                 "fitted_min")})
                                   for h in data["held_out"]], list(data["folds"]))


def scale_levels(scale: np.ndarray) -> np.ndarray:
    """The distinct scales, merging values within SAME_SCALE of the previous level."""
    levels = []
    for value in np.sort(np.unique(scale)):
        if not levels or value > levels[-1] * (1 + SAME_SCALE):
            levels.append(float(value))
    return np.array(levels)


def rolling_origin_folds(scale: np.ndarray, *, min_fit_runs: int, min_fit_levels: int = 2,
                         max_folds: int = MAX_FOLDS) -> list[Fold]:
    """Cuts between scale levels, each fitting on the runs up to it and leaving larger ones out:
    every cut whose fitted runs number at least `min_fit_runs` over `min_fit_levels` levels; with more
    than `max_folds` such cuts, `max_folds` of them evenly spaced in log-scale, the largest included."""
    scale = np.asarray(scale, dtype=np.float64)
    levels = scale_levels(scale)
    cuts = []
    for index, level in enumerate(levels[:-1]):
        upper = level * (1 + SAME_SCALE)
        if index + 1 >= min_fit_levels and (scale <= upper).sum() >= min_fit_runs:
            cuts.append(upper)
    if len(cuts) > max_folds:
        positions = np.unique(np.round(np.linspace(0, len(cuts) - 1, max_folds)).astype(int))
        cuts = [cuts[i] for i in positions]
    return [Fold(cut, scale <= cut) for cut in cuts]


def run_backtest(folds: list[Fold], scale: np.ndarray, observed: np.ndarray,
                 fit_predict: Callable[[list[np.ndarray]], list[np.ndarray | str]], *, scale_name: str,
                 eligible: np.ndarray | None = None) -> Backtest:
    """Fit on each fold's runs with `fit_predict(train masks) -> per fold, predictions for every
    run (or why that fold could not be fitted)` and keep the predictions of the runs beyond each
    cut (only `eligible` ones, when given, e.g. the runs a data filter keeps)."""
    scale, observed = np.asarray(scale, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    eligible = np.ones(len(scale), dtype=bool) if eligible is None else eligible
    trains = [fold.train & eligible for fold in folds]
    held_out, fitted, skipped = [], [], {}
    for fold, train, predicted in zip(folds, trains, fit_predict(trains) if folds else []):
        if isinstance(predicted, str):
            skipped[fold.cut] = predicted
            continue
        fitted.append(fold.cut)
        largest, smallest = float(scale[train].max()), float(scale[train].min())
        for row in np.flatnonzero(~fold.train & eligible):
            held_out.append(HeldOut(int(row), largest, float(scale[row]), float(observed[row]),
                                    float(predicted[row]), smallest))
    return Backtest(scale_name, held_out, fitted, skipped)
