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

What a grid can locate (`grid_rule`, the one rule `fit hyperparameters` and `sweep plan` share): a
cell's optimum only where the grid brackets it, MIN_VALUES or more values of each axis with the best
inside. A surface's minimum beyond the rates or batches a cell measured is clamped to the edge and
says so (`CellFit.lr_edge`, `.batch_edge`: lr* or B* lies beyond it, a one-sided bound); at a batch
clamped to the edge the rate is the ridge's there (the best rate at the batch the grid reached, not
the unconstrained minimum's); a cell with 2 batch sizes cannot locate B* (a quadratic in ln B through
2 points has no minimum to locate) and fits its rate at one batch, the one of its best run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from distillscale.errors import UserError

SQRT_RULE = 0.5          # Hoffer et al. (2017): lr proportional to sqrt(batch)
SQRT_PENALTY_FACTOR = 4.0  # the sqrt rule's penalty is scored at a batch this many times B*
MIN_RUNS_2D = 8            # fewest runs a two-dimensional surface is fitted to (6 coefficients)
MIN_VALUES = 3             # fewest distinct values of an axis a quadratic in it needs
# A surface is convex when its Hessian's smaller eigenvalue exceeds this, relative to the loss: a
# flat surface (every loss equal) fits curvatures of the order of float rounding, of either sign on
# different machines, and is no bowl.
CURVATURE_FLOOR = 1e-9
# Token counts of one model size within this (relative) of the smallest of their group are one D:
# a trainer records D = steps x batch, each batch rounding the budget up to its own whole steps, by
# under one step's share (5% from 20 steps up). The same tolerance as `across.NOT_VARIED`.
SAME_TOKENS = 0.05


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
        """Whether the Hessian's smaller eigenvalue exceeds CURVATURE_FLOOR x the loss (a bowl, not
        a plane or a saddle; robust to the rounding of a flat surface's fit)."""
        c0, c3, c4, c5 = self.coefficients[0], *self.coefficients[3:]
        floor = CURVATURE_FLOOR * max(abs(c0), 1e-300)
        if not self.two_dimensional:
            return 2 * c3 > floor
        smallest = c3 + c5 - float(np.hypot(c3 - c5, c4))   # the Hessian [[2 c3, c4], [c4, 2 c5]]'s eigenvalue
        return smallest > floor

    def ridge(self, y: float) -> float:
        """x of the best rate at y (centred coordinates): the ridge, d x / d y = -c4 / (2 c3)."""
        c1, c3, c4 = self.coefficients[1], self.coefficients[3], self.coefficients[4]
        return -(c1 + c4 * y) / (2 * c3)

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
    whole: "CellRuns | None" = None   # the cell this one is its runs at one batch of (`at_batch`)

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

    @cached_property
    def batch_sizes(self) -> int:
        """How many batch sizes the cell ran (all its runs, before `at_batch`)."""
        return int(np.unique((self.whole or self).batch_tokens).size)

    def at_batch(self, batch_tokens: float) -> "CellRuns":
        """The cell's runs at one batch (its rate fitted there alone)."""
        mask = self.batch_tokens == batch_tokens
        return CellRuns(self.params, self.tokens, self.lr[mask], self.batch_tokens[mask], self.loss[mask],
                        self.setting, self.settings, self.whole or self)


@dataclass(frozen=True)
class CellFit:
    """A cell's surface and its optimum (clamped to the lr and batch ranges the cell measured):
    `lr_edge`, `batch_edge` say where the optimum lies beyond them ("below" the smallest value,
    "above" the largest; None inside)."""

    cell: CellRuns
    surface: Surface | None           # None: not convex, the optimum is the best run
    lr: float
    batch_tokens: float
    runs_fitted: int
    lr_edge: str | None = None
    batch_edge: str | None = None

    @property
    def at_edge(self) -> bool:
        """The optimum lay beyond the measured ranges (clamped)."""
        return self.lr_edge is not None or self.batch_edge is not None

    @property
    def batch_located(self) -> bool:
        """Whether the cell located B*: MIN_VALUES or more batch sizes, the optimum inside them."""
        return self.cell.whole is None and self.cell.batch_sizes >= MIN_VALUES and self.batch_edge is None

    @property
    def located(self) -> bool:
        """Whether the grid bracketed the optimum the law is fitted through: the rate inside its
        rates and, where the cell varied the batch, B* located (else the rate is at another batch)."""
        return self.lr_edge is None and (self.batch_located or self.cell.whole is None and self.cell.batch_sizes == 1)

    @property
    def loss(self) -> float:
        """The surface's loss at the optimum (the best run's loss without a surface)."""
        if self.surface is None:
            return float(self.cell.loss[self.cell.best])
        return float(self.surface.loss(self.lr, self.batch_tokens))


def same_tokens(params: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, float]:
    """Each run's D with the token counts of one model size within SAME_TOKENS of their group's
    smallest made one (their geometric mean): D = steps x batch rounds each batch's budget its own
    way. Returns the tokens and the largest relative spread merged (0: none)."""
    out, spread = np.array(tokens, dtype=float), 0.0
    for n in np.unique(params):
        in_size = params == n
        values = np.unique(out[in_size])
        start = 0
        for end in range(1, values.size + 1):
            if end < values.size and values[end] <= values[start] * (1 + SAME_TOKENS):
                continue
            group = values[start:end]
            if group.size > 1:
                out[in_size & np.isin(out, group)] = float(np.exp(np.mean(np.log(group))))
                spread = max(spread, float(group[-1] / group[0] - 1))
            start = end
    return out, spread


def split_cells(params, tokens, lr, batch_tokens, loss) -> list[CellRuns]:
    """The runs grouped by (N, D), D within SAME_TOKENS one (`same_tokens`), in order of N then D."""
    tokens = same_tokens(params, tokens)[0]
    keys = sorted(set(zip(params.tolist(), tokens.tolist())))
    cells = []
    for n, d in keys:
        mask = (params == n) & (tokens == d)
        cells.append(CellRuns(n, d, lr[mask], batch_tokens[mask], loss[mask]))
    return cells


@dataclass(frozen=True)
class GridVerdict:
    """What a cell's grid of rates and batch sizes can locate (`grid_rule`): `refusal` says why it
    has no optimum to fit (None: it has), `batch_note` why it cannot locate B* (None: it can, or
    it did not vary the batch)."""

    rates: int
    batch_sizes: int
    refusal: str | None
    batch_note: str | None


def grid_rule(lr, batch_tokens) -> GridVerdict:
    """The one rule for a cell's grid, shared by `fit hyperparameters` (which refuses such a cell)
    and `sweep plan` (which refuses such a [tune] grid before it runs): MIN_VALUES or more rates to
    locate lr*; one batch size (the rate at it), or MIN_VALUES or more to locate B*."""
    rates, batches = int(np.unique(lr).size), int(np.unique(batch_tokens).size)
    refusal = None if rates >= MIN_VALUES else (
        f"{rates} learning rate(s): each (params, tokens) cell needs runs at {MIN_VALUES} or more rates to locate "
        "the best one")
    note = None if batches == 1 or batches >= MIN_VALUES else (
        f"{batches} batch sizes cannot locate B*: a quadratic in ln B through {batches} points has no minimum to "
        f"locate ({MIN_VALUES} or more with the best inside do)")
    return GridVerdict(rates, batches, refusal, note)


def check_cells(cells: list[CellRuns]) -> None:
    """Refuse, in one line, a cell whose rate was not varied (`grid_rule`): it has no optimum to find."""
    for cell in cells:
        refusal = grid_rule(cell.lr, cell.batch_tokens).refusal
        if refusal is not None:
            raise UserError(f"the cell {cell.name} has {refusal}; add rates to that cell or leave its runs out")


def fitted_part(cell: CellRuns) -> CellRuns:
    """The runs a cell's optimum is fitted on: all of them, or where the cell ran 2 batch sizes
    (B* not locatable, `grid_rule`) those at its best run's batch, the rate fitted there alone."""
    if cell.whole is None and 1 < cell.batch_sizes < MIN_VALUES:
        return cell.at_batch(float(cell.batch_tokens[cell.best]))
    return cell


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


def _edge(value: float, values: np.ndarray) -> str | None:
    """"below" / "above" where `value` lies beyond the measured `values` (by more than rounding)."""
    low, high = float(values.min()), float(values.max())
    return "below" if value < low * (1 - 1e-9) else "above" if value > high * (1 + 1e-9) else None


def cell_optimum(cell: CellRuns, window: float | None, rows: np.ndarray | None = None) -> CellFit:
    """The cell's optimum (`rows`: a resample of the runs of its `fitted_part`): the surface's
    minimum, clamped to the measured ranges; at a batch clamped to its edge, the ridge's rate there.
    Where the surface is not convex, the best run (beyond the grid where it lies at an edge)."""
    cell = fitted_part(cell)
    two_dimensional = np.unique(cell.batch_tokens).size >= MIN_VALUES
    surface = fit_surface(cell, window, rows)
    best = cell.best
    n_rows = rows.size if rows is not None else fitted_runs(cell, window, two_dimensional).size
    if surface is None:
        lr, batch = float(cell.lr[best]), float(cell.batch_tokens[best])
        lr_edge = {cell.lr.min(): "below", cell.lr.max(): "above"}.get(lr)
        batch_edge = {cell.batch_tokens.min(): "below", cell.batch_tokens.max(): "above"}.get(batch) \
            if two_dimensional else None
        return CellFit(cell, None, lr, batch, n_rows, lr_edge, batch_edge)
    x, y = surface.optimum()
    batch, batch_edge = float(cell.batch_tokens[best]), None
    if surface.two_dimensional:
        batch = float(np.exp(y + surface.y0))
        batch_edge = _edge(batch, cell.batch_tokens)
        batch = float(np.clip(batch, cell.batch_tokens.min(), cell.batch_tokens.max()))
        x = surface.ridge(float(np.log(batch)) - surface.y0)   # the best rate at the batch reported
    lr = float(np.exp(x + surface.x0))
    lr_edge = _edge(lr, cell.lr)
    return CellFit(cell, surface, float(np.clip(lr, cell.lr.min(), cell.lr.max())), batch, n_rows, lr_edge,
                   batch_edge)


def bootstrap_optima(cell: CellRuns, window: float | None, resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(resamples, 2) ln lr*, ln B* of the cell refitted on resamples of its fitted runs (those of
    its `fitted_part`)."""
    part = fitted_part(cell)
    rows = fitted_runs(part, window, np.unique(part.batch_tokens).size >= MIN_VALUES)
    draws = np.empty((resamples, 2))
    for i in range(resamples):
        fit = cell_optimum(part, window, rng.choice(rows, size=rows.size, replace=True))
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
