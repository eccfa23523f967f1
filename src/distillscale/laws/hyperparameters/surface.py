"""One (N, D) cell of a learning-rate x batch grid: the loss surface in (ln lr, ln B) and its optimum.

The surface is a convex quadratic with a cross term, L = c0 + c1 x + c2 y + c3 x^2 + c4 xy + c5 y^2
(x = ln lr, y = ln B, both centred on the cell's best run), fitted by least squares to the runs whose
loss is within `window` (relative) of the cell's best: Step Law (Li et al. 2025) reports the surface
convex with a broad optimum, and far from it (diverged rates, tiny batches) a quadratic in the logs no
longer holds, so the window keeps the fit local. Which window is chosen by leave-one-cell-out
(`laws.hyperparameters.fit`). A cell with one batch size fits the learning rate alone (c2 = c4 = c5 =
0).

Along the surface's ridge (the best lr at each batch), d ln lr* / d ln B = -c4 / (2 c3): the measured
batch exponent of the optimal rate (Hoffer et al. 2017's square-root rule says 0.5), and the loss
along the ridge rises as kappa (ln B - ln B*)^2 with kappa = c5 - c4^2 / (4 c3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillscale.errors import UserError

SQRT_RULE = 0.5          # Hoffer et al. (2017): lr proportional to sqrt(batch)
SQRT_PENALTY_FACTOR = 4.0  # the sqrt rule's penalty is scored at a batch this many times B*
MIN_RUNS_2D = 8            # fewest runs a two-dimensional surface is fitted to (6 coefficients)
MIN_VALUES = 3             # fewest distinct values of an axis a quadratic in it needs


@dataclass(frozen=True)
class Surface:
    """A fitted quadratic in (x, y) = (ln lr - x0, ln B - y0): `coefficients` c0..c5 (c2, c4, c5 zero
    for a cell with one batch)."""

    x0: float
    y0: float
    coefficients: tuple[float, float, float, float, float, float]
    two_dimensional: bool

    def loss(self, lr, batch_tokens) -> np.ndarray:
        x = np.log(np.asarray(lr, dtype=float)) - self.x0
        y = np.log(np.asarray(batch_tokens, dtype=float)) - self.y0 if self.two_dimensional else 0.0 * x
        c0, c1, c2, c3, c4, c5 = self.coefficients
        return c0 + c1 * x + c2 * y + c3 * x * x + c4 * x * y + c5 * y * y

    @property
    def convex(self) -> bool:
        c3, c4, c5 = self.coefficients[3:]
        if not self.two_dimensional:
            return c3 > 0
        return c3 > 0 and 4 * c3 * c5 - c4 * c4 > 0

    def optimum(self) -> tuple[float, float]:
        """(x, y) of the minimum in centred coordinates (y = 0 for a one-batch cell); convex only."""
        c0, c1, c2, c3, c4, c5 = self.coefficients
        if not self.two_dimensional:
            return -c1 / (2 * c3), 0.0
        det = 4 * c3 * c5 - c4 * c4
        return (c4 * c2 - 2 * c5 * c1) / det, (c4 * c1 - 2 * c3 * c2) / det

    @property
    def lr_batch_exponent(self) -> float | None:
        """d ln lr* / d ln B along the ridge."""
        return -self.coefficients[4] / (2 * self.coefficients[3]) if self.two_dimensional else None

    @property
    def ridge_curvature(self) -> float | None:
        """The loss's rise along the ridge per (ln B - ln B*)^2, in nats/token."""
        c3, c4, c5 = self.coefficients[3:]
        return c5 - c4 * c4 / (4 * c3) if self.two_dimensional else None


@dataclass(frozen=True)
class CellRuns:
    """The runs of one (N, D) cell; where the runs vary other settings (beta2, warmup), those of
    one `setting` ((name, value) pairs) of the cell's `settings` (`laws.hyperparameters.conditions`)."""

    params: float
    tokens: float
    lr: np.ndarray
    batch_tokens: np.ndarray
    loss: np.ndarray
    setting: tuple[tuple[str, float], ...] = ()
    settings: int = 1

    @property
    def name(self) -> str:
        """"N=..., D=..." and the setting, as messages name the cell."""
        return f"N={self.params:.4g}, D={self.tokens:.4g}" + "".join(f", {k} {v:g}" for k, v in self.setting)

    @property
    def varies_batch(self) -> bool:
        return np.unique(self.batch_tokens).size > 1

    @property
    def best(self) -> int:
        return int(np.argmin(self.loss))


@dataclass(frozen=True)
class CellFit:
    """A cell's surface and its optimum (clamped to the lr and batch ranges the cell measured)."""

    cell: CellRuns
    surface: Surface | None           # None: not convex, the optimum is the best run
    lr: float
    batch_tokens: float
    at_edge: bool                      # the surface's minimum lay outside the measured ranges
    runs_fitted: int

    @property
    def loss(self) -> float:
        """The surface's loss at the optimum (the best run's loss without a surface)."""
        if self.surface is None:
            return float(self.cell.loss[self.cell.best])
        return float(self.surface.loss(self.lr, self.batch_tokens))


def split_cells(params, tokens, lr, batch_tokens, loss) -> list[CellRuns]:
    """The runs grouped by (N, D), in order of N then D."""
    keys = sorted(set(zip(params.tolist(), tokens.tolist())))
    cells = []
    for n, d in keys:
        mask = (params == n) & (tokens == d)
        cells.append(CellRuns(n, d, lr[mask], batch_tokens[mask], loss[mask]))
    return cells


def check_cells(cells: list[CellRuns]) -> None:
    """Refuse, in one line, a cell whose rate was not varied: it has no optimum to find."""
    for cell in cells:
        if np.unique(cell.lr).size < MIN_VALUES:
            raise UserError(f"the cell {cell.name} has {np.unique(cell.lr).size} "
                            f"learning rate(s): each (params, tokens) cell needs runs at {MIN_VALUES} or more rates "
                            "to locate the best one; add rates to that cell or leave its runs out")


def fitted_runs(cell: CellRuns, window: float | None, two_dimensional: bool) -> np.ndarray:
    """Indices of the runs a surface is fitted to: those within `window` of the best loss, widened
    run by run (in order of loss) until each fitted axis has MIN_VALUES values."""
    order = np.lexsort((np.arange(cell.loss.size), cell.loss))
    if window is None:
        return order
    best = cell.loss[order[0]]
    count = int(np.sum(cell.loss <= best * (1 + window)))
    need = MIN_RUNS_2D if two_dimensional else MIN_VALUES
    count = max(count, need)
    while count < order.size:
        chosen = order[:count]
        if np.unique(cell.lr[chosen]).size >= MIN_VALUES and (
                not two_dimensional or np.unique(cell.batch_tokens[chosen]).size >= MIN_VALUES):
            break
        count += 1
    return order[:count]


def fit_surface(cell: CellRuns, window: float | None, rows: np.ndarray | None = None) -> Surface | None:
    """The quadratic fitted to the cell's runs in the window (or to `rows`, a bootstrap resample of
    them); None when too few runs or the fit is not convex."""
    two_dimensional = np.unique(cell.batch_tokens).size >= MIN_VALUES
    rows = fitted_runs(cell, window, two_dimensional) if rows is None else rows
    best = cell.best
    x0, y0 = float(np.log(cell.lr[best])), float(np.log(cell.batch_tokens[best]))
    x = np.log(cell.lr[rows]) - x0
    y = np.log(cell.batch_tokens[rows]) - y0
    if two_dimensional:
        design = np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])
    else:
        design = np.column_stack([np.ones_like(x), x, x * x])
    with np.errstate(all="ignore"):
        if not np.isfinite(design).all() or np.linalg.matrix_rank(design) < design.shape[1]:
            return None
        solution = np.linalg.lstsq(design, cell.loss[rows], rcond=None)[0]
    if not np.isfinite(solution).all():
        return None
    coefficients = (tuple(float(c) for c in solution) if two_dimensional
                    else (float(solution[0]), float(solution[1]), 0.0, float(solution[2]), 0.0, 0.0))
    surface = Surface(x0, y0, coefficients, two_dimensional)
    return surface if surface.convex else None


def cell_optimum(cell: CellRuns, window: float | None, rows: np.ndarray | None = None) -> CellFit:
    """The cell's optimum: the surface's minimum clamped to the measured ranges; the best run when
    the surface is not convex."""
    surface = fit_surface(cell, window, rows)
    best = cell.best
    n_rows = rows.size if rows is not None else fitted_runs(
        cell, window, np.unique(cell.batch_tokens).size >= MIN_VALUES).size
    if surface is None:
        return CellFit(cell, None, float(cell.lr[best]), float(cell.batch_tokens[best]), False, n_rows)
    x, y = surface.optimum()
    lr = float(np.exp(x + surface.x0))
    batch = float(np.exp(y + surface.y0)) if surface.two_dimensional else float(cell.batch_tokens[best])
    clamped_lr = float(np.clip(lr, cell.lr.min(), cell.lr.max()))
    clamped_batch = float(np.clip(batch, cell.batch_tokens.min(), cell.batch_tokens.max()))
    at_edge = clamped_lr != lr or clamped_batch != batch
    return CellFit(cell, surface, clamped_lr, clamped_batch, at_edge, n_rows)


def bootstrap_optima(cell: CellRuns, window: float | None, resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(resamples, 2) ln lr*, ln B* of the cell refitted on resamples of its fitted runs."""
    rows = fitted_runs(cell, window, np.unique(cell.batch_tokens).size >= MIN_VALUES)
    draws = np.empty((resamples, 2))
    for i in range(resamples):
        fit = cell_optimum(cell, window, rng.choice(rows, size=rows.size, replace=True))
        draws[i] = np.log(fit.lr), np.log(fit.batch_tokens)
    return draws


def sqrt_penalty(surface: Surface | None) -> float | None:
    """The relative loss penalty, at a batch SQRT_PENALTY_FACTOR times the cell's B*, of scaling the rate
    by the square-root rule instead of the surface's own ridge exponent."""
    if surface is None or not surface.two_dimensional:
        return None
    x, y = surface.optimum()
    step = np.log(SQRT_PENALTY_FACTOR)
    exponent = surface.lr_batch_exponent
    ridge = float(surface.loss(np.exp(x + surface.x0 + exponent * step), np.exp(y + surface.y0 + step)))
    rule = float(surface.loss(np.exp(x + surface.x0 + SQRT_RULE * step), np.exp(y + surface.y0 + step)))
    return (rule - ridge) / ridge


def nearest_run_loss(cell: CellRuns, lr: float, batch_tokens: float | None) -> float:
    """The loss of the measured run nearest (lr, B) in (ln lr, ln B); among equally near runs the
    worst. Without a batch (a one-batch law) only the lr distance counts."""
    distance = np.abs(np.log(cell.lr) - np.log(lr))
    if batch_tokens is not None:
        distance = np.hypot(distance, np.log(cell.batch_tokens) - np.log(batch_tokens))
    nearest = distance <= distance.min() + 1e-9
    return float(cell.loss[nearest].max())
