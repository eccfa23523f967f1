"""The data-limited distillation law's constants, fitted on measured runs.

Each model has a state (L, F): L its loss when trained on a fixed pool of unique tokens read for many
epochs, F the loss the same run reaches on fresh data (the same run on a 1-epoch pool). The law:

    student of a teacher (L_T, F_T):  L_S - F_S = kappa (L_T - F_T) + lambda P_S
    ensemble of k trained alone:      L_k = L_1 - eta (1 - 1/k) (L_1 - F_1)

P_S is the repetition penalty of the student's size trained alone on the same pool (its loss there
minus its loss on the 1-epoch pool). kappa is the share of its teacher's repetition penalty a student
inherits (below 1, a student can beat a teacher limited by repetition); lambda the share of its own
size's penalty it keeps; eta the share of the penalty an ensemble of k removes, scaled by 1 - 1/k.

The fits are plain least squares without intercept; the intervals come from refits on resampled groups
(`bootstrap_kappa_lambda`: the caller says what a group is: a corpus's cell, or a single pair).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np
from scipy.optimize import lsq_linear


@dataclass(frozen=True)
class StudentPair:
    """A student and its teacher, each on the repeated pool (L) and on the 1-epoch pool (F), in
    nats/token; `penalty_alone` the student's size's repetition penalty trained alone (P_S); `group` the
    unit a bootstrap resamples."""

    L_T: float
    F_T: float
    L_S: float
    F_S: float
    penalty_alone: float
    group: Hashable = ()


@dataclass(frozen=True)
class EnsemblePair:
    """An ensemble of `k` models trained alone: their mean loss on the repeated pool (L_1) and on the
    1-epoch pool (F_1), and the ensemble's (the mixture's) loss on the repeated pool (L_k)."""

    k: int
    L_1: float
    F_1: float
    L_k: float
    group: Hashable = ()


@dataclass(frozen=True)
class KappaLambda:
    """kappa and lambda fitted on `pairs` pairs, and the residual RMS (nats/token)."""

    kappa: float
    lam: float
    residual_rms: float
    pairs: int


def fit_kappa_lambda(pairs: Sequence[StudentPair]) -> KappaLambda:
    """Least squares of L_S - F_S on (L_T - F_T, P_S), no intercept, each share bounded to [0, 1] (a
    student inherits no more than its teacher's whole penalty, and pays no more of its own than its size
    trained alone; noisy runs would otherwise push a bootstrap draw past either end)."""
    x = np.array([[p.L_T - p.F_T, p.penalty_alone] for p in pairs], dtype=float).reshape(-1, 2)
    y = np.array([p.L_S - p.F_S for p in pairs], dtype=float)
    coef = lsq_linear(x, y, bounds=(0.0, 1.0), method="bvls").x
    residual = y - x @ coef
    return KappaLambda(float(coef[0]), float(coef[1]), float(np.sqrt(np.mean(residual ** 2))), len(pairs))


def fit_eta(pairs: Sequence[EnsemblePair]) -> float:
    """Least squares of L_1 - L_k on (1 - 1/k)(L_1 - F_1), no intercept, bounded to [0, 1]."""
    x = np.array([(1 - 1 / p.k) * (p.L_1 - p.F_1) for p in pairs], dtype=float)
    y = np.array([p.L_1 - p.L_k for p in pairs], dtype=float)
    return float(np.clip(x @ y / (x @ x), 0.0, 1.0))


def bootstrap_kappa_lambda(pairs: Sequence[StudentPair], draws: int = 400, seed: int = 0) -> np.ndarray:
    """(kappa, lambda) refitted `draws` times on groups resampled with replacement (groups sorted, so
    the draws are the same whatever the pairs' order): an array of shape (draws, 2)."""
    def refit(sample: list[StudentPair]) -> tuple[float, float]:
        fit = fit_kappa_lambda(sample)
        return fit.kappa, fit.lam
    return bootstrap_groups(pairs, lambda p: p.group, refit, draws, seed)


def bootstrap_groups(items: Sequence, group: Callable, refit: Callable, draws: int = 400, seed: int = 0) -> np.ndarray:
    """`refit` of `items` resampled `draws` times by their `group` with replacement (groups sorted, so the
    draws are the same whatever the items' order): an array of the refits."""
    groups = sorted({group(item) for item in items})
    by_group: dict = defaultdict(list)
    for item in items:
        by_group[group(item)].append(item)
    rng = np.random.default_rng(seed)
    return np.array([refit([item for i in rng.integers(0, len(groups), len(groups)) for item in by_group[groups[i]]])
                     for _ in range(draws)])


def interval(values: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """The central `level` interval of bootstrap `values`."""
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
