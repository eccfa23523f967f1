"""From validation loss to downstream error: Gadre et al. (2024), "Language models scale reliably with
over-training and on downstream tasks", eq. (5). The average top-1 error of a task set follows

    Err(L) = epsilon - k * exp(-gamma * L)

an exponential decay towards `epsilon` (the error of a model that learned nothing, about random chance)
as the loss L (nats/token) grows; k > 0 and gamma > 0 are fitted per task set.

For a fixed gamma the law is linear in (epsilon, k): the fit is a least-squares search over gamma alone
(variable projection), on a log grid refined by a bounded scalar search, so it needs no starting point.
Intervals come from a bootstrap over runs; the backtest fits on all but the runs with the lowest losses
(the best models, which a plan extrapolates to) and predicts those."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from distillscale.errors import ParameterError, UserError
from distillscale.io import atomic_write_json, json_format_is

DOWNSTREAM_FORMAT = "distillscale downstream law 1"
is_downstream_law_file = json_format_is("distillscale downstream law")
MIN_FIT_RUNS = 4  # three coefficients and one degree of freedom
_GAMMA_GRID = np.geomspace(1e-2, 1e2, 161)
# How far outside the losses a law was fitted on a loss may lie before it is "far" (another loss scale,
# or a far extrapolation): in widths of their range, at least MIN_RANGE_SHARE of its upper end (runs
# of nearly one loss still leave some room).
FAR_OUTSIDE = 1.0
MIN_RANGE_SHARE = 0.05


@dataclass(frozen=True)
class DownstreamBacktest:
    """The law fitted without the `len(losses)` runs of lowest loss, predicting their errors."""

    losses: tuple[float, ...]
    observed: tuple[float, ...]
    predicted: tuple[float, ...]

    @property
    def mean_abs_error(self) -> float:
        return float(np.mean(np.abs(np.subtract(self.predicted, self.observed))))


@dataclass(frozen=True)
class DownstreamLaw:
    """Err(L) = epsilon - k exp(-gamma L) for one task set, with bootstrap draws of its coefficients."""

    epsilon: float
    k: float
    gamma: float
    task_set: str = ""
    n_runs: int = 0
    loss_range: tuple[float, float] = (math.nan, math.nan)
    level: float = 0.9
    draws: tuple[tuple[float, float, float], ...] = ()  # (epsilon, k, gamma) per bootstrap resample
    backtest: DownstreamBacktest | None = None
    source: dict = field(default_factory=dict)

    def error(self, loss) -> np.ndarray | float:
        """The predicted error at `loss` (a number or an array)."""
        return _law(np.asarray(loss, dtype=float), self.epsilon, self.k, self.gamma)[()]

    def interval(self, loss: float) -> tuple[float, float]:
        """The bootstrap interval (at `level`) of the error at `loss`; (nan, nan) without draws."""
        if not self.draws:
            return (math.nan, math.nan)
        values = np.array([_law(float(loss), *draw) for draw in self.draws])
        tail = (1 - self.level) / 2
        return (float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)))

    def far_outside(self, loss: float) -> bool:
        """Whether `loss` lies more than FAR_OUTSIDE widths outside the losses the law was fitted on: read
        there, the law may be reading another loss scale (another tokenizer or corpus, other units).
        False for a law without a recorded range."""
        low, high = (float(value) for value in self.loss_range)
        if not (math.isfinite(low) and math.isfinite(high)):
            return False
        margin = FAR_OUTSIDE * max(high - low, MIN_RANGE_SHARE * abs(high))
        return not low - margin <= float(loss) <= high + margin

    def coefficient_intervals(self) -> dict[str, tuple[float, float]]:
        if not self.draws:
            return {}
        draws, tail = np.array(self.draws), (1 - self.level) / 2
        return {name: (float(np.quantile(draws[:, i], tail)), float(np.quantile(draws[:, i], 1 - tail)))
                for i, name in enumerate(("epsilon", "k", "gamma"))}

    def to_json(self) -> dict:
        record = asdict(self)
        record["backtest"] = None if self.backtest is None else {**asdict(self.backtest),
                                                                 "mean_abs_error": self.backtest.mean_abs_error}
        return {"format": DOWNSTREAM_FORMAT, "law": "gadre2024: Err(L) = epsilon - k * exp(-gamma * L)", **record}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_json())


def _law_from_json(data: dict) -> DownstreamLaw:
    backtest = data.get("backtest")
    return DownstreamLaw(epsilon=float(data["epsilon"]), k=float(data["k"]), gamma=float(data["gamma"]),
                         task_set=str(data.get("task_set", "")), n_runs=int(data.get("n_runs", 0)),
                         loss_range=tuple(data.get("loss_range", (math.nan, math.nan))),
                         level=float(data.get("level", 0.9)),
                         draws=tuple(tuple(map(float, draw)) for draw in data.get("draws", ())),
                         backtest=None if backtest is None else DownstreamBacktest(
                             losses=tuple(backtest["losses"]), observed=tuple(backtest["observed"]),
                             predicted=tuple(backtest["predicted"])),
                         source=dict(data.get("source", {})))


def load_downstream_law(path: str | os.PathLike) -> DownstreamLaw:
    """A law file written by `fit downstream` (or `DownstreamLaw.save`), or a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file: give the --out file of `distillscale fit downstream`")
    if not is_downstream_law_file(path):
        raise UserError(f"{path} is not a downstream law file: give the --out file of `distillscale fit downstream`")
    try:
        return _law_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is a damaged downstream law file ({exc}): fit it again") from None


def fit_downstream(losses, errors, *, task_set: str = "", holdout: int | None = None, bootstrap: int = 200,
                   level: float = 0.9, seed: int = 0, source: dict | None = None) -> DownstreamLaw:
    """Fit Err(L) = epsilon - k exp(-gamma L) to runs' validation losses and task-set errors (0-1).

    `holdout` runs of lowest loss are left out of a backtest fit and predicted by it (default: a
    quarter of the runs when at least MIN_FIT_RUNS remain, else none; 0: no backtest); the law
    itself is fitted to every run. `bootstrap` resamples of the runs give the intervals at `level`."""
    losses, errors = np.asarray(losses, dtype=float).ravel(), np.asarray(errors, dtype=float).ravel()
    if losses.shape != errors.shape:
        raise ParameterError("errors", "{} has {n_errors} values for {n_losses} losses: give one error per run",
                             n_errors=len(errors), n_losses=len(losses))
    if not (np.isfinite(losses).all() and (losses > 0).all()):
        raise ParameterError("losses", "{} must be positive finite numbers (nats/token)")
    if not (np.isfinite(errors).all() and ((errors >= 0) & (errors <= 1)).all()):
        raise ParameterError("errors", "{} must be fractions between 0 and 1 (1 - accuracy)")
    if not 0 < level < 1:
        raise ParameterError("level", "{} must be between 0 and 1, got {level}", level=level)
    distinct = len(np.unique(losses))
    if distinct < MIN_FIT_RUNS:
        raise ParameterError("losses", "too few runs: {distinct} distinct values of {}, the loss-to-error law needs "
                                      "at least {need} (three coefficients and one to spare): add runs",
                             distinct=distinct, need=MIN_FIT_RUNS)
    if holdout is None:
        holdout = len(losses) // 4 if len(losses) - len(losses) // 4 >= MIN_FIT_RUNS else 0
    if holdout < 0 or len(np.unique(losses[np.argsort(losses, kind="stable")[holdout:]])) < MIN_FIT_RUNS:
        raise ParameterError("holdout", "{} {holdout} of {n} runs leaves fewer than {need} distinct losses to fit: "
                                       "hold out fewer, or add runs", holdout=holdout, n=len(losses), need=MIN_FIT_RUNS)
    if bootstrap < 0:
        raise ParameterError("bootstrap", "{} must be 0 or more resamples, got {bootstrap}", bootstrap=bootstrap)

    epsilon, k, gamma = _fit(losses, errors)
    _check_error_rises(losses, errors, k)
    backtest = None
    if holdout:
        order = np.argsort(losses, kind="stable")
        held, kept = order[:holdout], order[holdout:]
        coefficients = _fit(losses[kept], errors[kept])
        backtest = DownstreamBacktest(losses=tuple(map(float, losses[held])), observed=tuple(map(float, errors[held])),
                                      predicted=tuple(float(_law(loss, *coefficients)) for loss in losses[held]))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(losses), len(losses))
        if len(np.unique(losses[pick])) >= MIN_FIT_RUNS - 1:
            draws.append(tuple(map(float, _fit(losses[pick], errors[pick]))))
    return DownstreamLaw(epsilon=epsilon, k=k, gamma=gamma, task_set=task_set, n_runs=len(losses),
                         loss_range=(float(losses.min()), float(losses.max())), level=level, draws=tuple(draws),
                         backtest=backtest, source=dict(source or {}))


# Below this correlation of the errors with the losses, runs whose best law is a constant (k = 0: the
# error must rise with the loss) show the opposite trend, not noise about a flat one.
FALLING_CORRELATION = -0.5


def _check_error_rises(losses: np.ndarray, errors: np.ndarray, k: float) -> None:
    """Refuse runs whose error falls as the loss grows (accuracy rising with the loss): the law, whose
    error rises with the loss, would fit them as a constant. Columns swapped, most likely."""
    if k > 0 or np.ptp(errors) == 0 or np.ptp(losses) == 0:
        return
    correlation = float(np.corrcoef(losses, errors)[0, 1])
    if correlation < FALLING_CORRELATION:
        raise ParameterError(("losses", "errors"), "accuracy rises with loss: {1} fall as {0} grow (correlation "
                             "{correlation:+.2f}), and Err(L) rises with the loss, so it would fit a constant: "
                             "are the columns swapped? give the validation loss as the loss and the task "
                             "set's accuracy (or error) as the score", correlation=correlation)


def _law(loss, epsilon: float, k: float, gamma: float):
    return epsilon - k * np.exp(-gamma * loss)


def _linear(losses: np.ndarray, errors: np.ndarray, gamma: float) -> tuple[float, float, float]:
    """(epsilon, k, sum of squares) of the least-squares fit at this gamma, k kept at 0 or more."""
    basis = np.exp(-gamma * losses)
    design = np.column_stack([np.ones_like(basis), -basis])
    (epsilon, k), *_ = np.linalg.lstsq(design, errors, rcond=None)
    if k < 0:  # the error must fall as the loss falls: the best law then is a constant
        epsilon, k = float(errors.mean()), 0.0
    residual = errors - (epsilon - k * basis)
    return float(epsilon), float(k), float(residual @ residual)


def _fit(losses: np.ndarray, errors: np.ndarray) -> tuple[float, float, float]:
    """(epsilon, k, gamma) by variable projection: the best gamma of a log grid, refined in its bracket."""
    from scipy.optimize import minimize_scalar

    # Losses are centred for the linear solve's conditioning; k is rescaled back below.
    shift = float(np.min(losses))
    centred = losses - shift
    sse = np.array([_linear(centred, errors, gamma)[2] for gamma in _GAMMA_GRID])
    # Ties broken towards the first: the same grid point on every CPU when sums differ by rounding only.
    best = int(np.argmin(np.round(sse / max(float(sse.max()), 1e-300), 12)))
    low, high = np.log(_GAMMA_GRID[max(best - 1, 0)]), np.log(_GAMMA_GRID[min(best + 1, len(_GAMMA_GRID) - 1)])
    result = minimize_scalar(lambda log_gamma: _linear(centred, errors, math.exp(log_gamma))[2],
                             bounds=(low, high), method="bounded", options={"xatol": 1e-10})
    gamma = math.exp(result.x) if result.fun <= sse[best] else float(_GAMMA_GRID[best])
    epsilon, k, _ = _linear(centred, errors, gamma)
    return epsilon, k * math.exp(gamma * shift), gamma
