"""The laws across cells: ln lr* and ln B* linear in ln N and ln D, fitted one of several ways (the
`METHODS`), each chosen or not by leave-one-cell-out in `laws.hyperparameters.fit`.

    evidence = [cell_evidence(cell, windows, resamples, rng) for cell in cells]
    lr_law, batch_law = across_cells(evidence, "joint", 0.01, "N,D")       # or None: the method fails here
    loco_scores(evidence, "weighted", 0.01, "N,D")                          # one HeldOutCell per cell left out

- "optima": least squares through each cell's optimum (its surface's minimum in the window).
- "weighted": the same, each cell weighted by the precision of its optimum (1 / the variance of its
  bootstrap optima plus the grid's quantisation variance, step^2 / 12, per axis), so a cell whose
  surface hardly locates its optimum moves the law less.
- "pooled": the lr law's N and D exponents fitted on the cells' optima from every candidate window
  pooled (a cell counted once per window), its coefficient on the window's own optima; B* as "optima".
- "joint", "joint per size": one fit over every run in the window of every cell: each cell's relative
  loss (loss / its best run's) a quadratic bowl with a level of its own whose minimum (ln lr*, ln B*)
  lies on the power laws, the bowl's curvature shared by all cells ("joint") or by the cells of each
  model size ("joint per size"); nonlinear least squares in the laws' coefficients, the levels and
  curvatures solved linearly for each (variable projection), started from "optima". It uses every run
  rather than each cell's noisy argmin. Not convex (or not converged): the method fails (None).

A method sees only the `CellEvidence` it is given: leave-one-cell-out passes it the other cells, so
no run of the cell scored enters the fit that scores it. Of those, every method fits only the cells
whose optimum the grid located in the window (`located`: the rate and B* inside the values the cell
measured, `surface.CellFit.located`): an optimum clamped to the grid's edge is a bound, not a point,
and through it a law bends toward the grid. On a fixed grid the optimum drifts out of as N grows (3 of
8 cells beyond it, tests/laws/test_hyperparameter_grids.py; 4 draws of noise 0-0.1%) the laws through
the optima put lr*'s N exponent at -0.48 to -0.51 for a true -0.70, the rate 1.29-1.35x off at the
largest size; without those cells -0.64 to -0.70, 0.99-1.13x. The joint fits, which read every run
rather than the clamped optimum, came out 0.92-1.02x with them and 0.96-1.12x without. Each cell is
still scored when left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from distillscale.laws.hyperparameters.law import PowerLaw
from distillscale.laws.hyperparameters.surface import (
    MIN_VALUES,
    SAME_TOKENS,
    CellFit,
    CellRuns,
    bootstrap_optima,
    cell_optimum,
    fitted_runs,
    nearest_run_loss,
)

METHODS = ("optima", "weighted", "pooled", "joint", "joint per size")
METHOD_TEXT = {"optima": "least squares through the cells' optima",
               "weighted": "least squares through the cells' optima, each weighted by its precision",
               "pooled": "lr exponents from the optima of every window pooled",
               "joint": "one fit over every run, the cells' bowls sharing one shape",
               "joint per size": "one fit over every run, the bowls of each model size sharing one shape"}
# ln N or ln D varies (beyond what the other columns predict) by at most this in every cell: not
# varied. One tokens-per-parameter M rounded up to whole optimizer steps moves ln D off ln M + ln N
# by under one step's share (5% from 20 steps up); fitting an exponent to that alone gave lr* =
# 218 N^3.5 D^-3.8 for 3 cells at M = 6, where lr* = a N^-0.3.
NOT_VARIED = SAME_TOKENS


@dataclass(frozen=True)
class CellEvidence:
    """What a method may read of one cell: its runs, its optimum in each candidate window, and the
    bootstrap optima (resamples, 2: ln lr*, ln B*) of each window (empty without resamples)."""

    cell: CellRuns
    optima: dict[float | None, CellFit]
    draws: dict[float | None, np.ndarray]


def cell_evidence(cell: CellRuns, windows: tuple[float | None, ...], resamples: int,
                  rng: np.random.Generator) -> CellEvidence:
    """The cell's optimum and `resamples` bootstrap optima in each window, from its own runs only."""
    return CellEvidence(cell, {w: cell_optimum(cell, w) for w in windows},
                        {w: bootstrap_optima(cell, w, resamples, rng) for w in windows})


@dataclass(frozen=True)
class HeldOutCell:
    """A left-out cell's recommendation by the law of the other cells, and its score: the loss of
    its run nearest (lr, B) against its best run (relative)."""

    lr: float
    batch_tokens: float | None
    penalty: float


def design(cells: list[CellRuns], form: str = "N,D") -> tuple[np.ndarray, list[int]]:
    """Columns 1, ln N, ln D of the cells, keeping ln N / ln D only when `form` names them and the
    cells vary them: a column the kept ones before it fix to within NOT_VARIED in every cell (D = M N
    at one M, each budget rounded up to whole steps) is left out, its exponent 0, rather than fitted
    to the rounding."""
    columns = np.column_stack([np.ones(len(cells)), np.log([c.params for c in cells]),
                               np.log([c.tokens for c in cells])])
    keep = [0] + [k for k, name in ((1, "N"), (2, "D"))
                  if name in form.split(",") and np.unique(columns[:, k]).size > 1]
    while len(keep) > 1:
        others, last = columns[:, keep[:-1]], columns[:, keep[-1]]
        residual = last - others @ np.linalg.lstsq(others, last, rcond=None)[0]
        if np.abs(residual).max() > NOT_VARIED:
            break
        keep.pop()
    return columns[:, keep], keep


def unidentified(cells: list[CellRuns], form: str = "N,D") -> list[tuple[str, np.ndarray]]:
    """The exponents `form` names that `design` leaves out (their column not varied beyond the
    others), each with the direction over (ln coefficient, exponent N, exponent D) along which the
    cells say nothing of it: its column less the kept columns' least-squares prediction of it (ln N
    less the cells' mean ln N, for one size), so a prior variance v along it adds v (ln N - mean)^2
    to the variance of ln value at N."""
    columns = np.column_stack([np.ones(len(cells)), np.log([c.params for c in cells]),
                               np.log([c.tokens for c in cells])])
    _, keep = design(cells, form)
    out = []
    for k, name in ((1, "N"), (2, "D")):
        if name in form.split(",") and k not in keep:
            direction = np.zeros(3)
            direction[k] = 1.0
            direction[keep] -= np.linalg.lstsq(columns[:, keep], columns[:, k], rcond=None)[0]
            out.append((name, direction))
    return out


def regress(cells: list[CellRuns], target: np.ndarray, form: str = "N,D",
            weights: np.ndarray | None = None) -> PowerLaw:
    """The (weighted) least-squares power law of exp(target) in N and D over the cells (no intervals)."""
    columns, keep = design(cells, form)
    root = np.ones(len(cells)) if weights is None else np.sqrt(weights)
    solution = np.linalg.lstsq(columns * root[:, None], target * root, rcond=None)[0]
    return _power_law(solution, keep)


def _power_law(solution: np.ndarray, keep: list[int]) -> PowerLaw:
    full = np.zeros(3)
    full[keep] = solution
    return PowerLaw(coefficient=float(np.exp(full[0])), exponents=(float(full[1]), float(full[2])))


def precision_weights(evidence: list[CellEvidence], window: float | None, axis: int) -> np.ndarray | None:
    """1 / (the variance of each cell's bootstrap optima on `axis` (0 ln lr, 1 ln B) + the grid's
    quantisation variance, the median step of that axis's measured values squared over 12); None
    without resamples."""
    weights = []
    for item in evidence:
        draws = item.draws[window]
        if draws.shape[0] < 2:
            return None
        values = np.unique(np.log(item.cell.lr if axis == 0 else item.cell.batch_tokens))
        floor = float(np.median(np.diff(values))) ** 2 / 12 if values.size > 1 else 0.0
        variance = float(np.var(draws[:, axis], ddof=1)) + floor
        weights.append(1.0 / variance if variance > 0 else 1.0)
    return np.array(weights)


def located(evidence: list[CellEvidence], window: float | None) -> list[CellEvidence]:
    """The cells whose optimum the grid located in `window` (the ones a law is fitted through)."""
    return [item for item in evidence if item.optima[window].located]


def across_cells(evidence: list[CellEvidence], method: str, window: float | None, batch_form: str
                 ) -> tuple[PowerLaw, PowerLaw | None] | None:
    """The lr law and the B* law (None where no cell varies the batch) by `method` over the cells'
    evidence whose optimum is `located` in the window; None where the method cannot be fitted here
    (no located cell, no resamples to weight by, a joint fit that is not convex or did not converge)."""
    evidence = located(evidence, window)
    if not evidence:
        return None
    cells = [item.cell for item in evidence]
    varies_batch = any(cell.varies_batch for cell in cells)
    optima = [item.optima[window] for item in evidence]
    ln_lr, ln_batch = np.log([f.lr for f in optima]), np.log([f.batch_tokens for f in optima])
    if method in ("optima", "pooled"):
        batch_law = regress(cells, ln_batch, batch_form) if varies_batch else None
        if method == "optima":
            return regress(cells, ln_lr), batch_law
        return _pooled_lr_law(evidence, window), batch_law
    if method == "weighted":
        lr_weights = precision_weights(evidence, window, 0)
        batch_weights = precision_weights(evidence, window, 1)
        if lr_weights is None or batch_weights is None:
            return None
        return (regress(cells, ln_lr, weights=lr_weights),
                regress(cells, ln_batch, batch_form, batch_weights) if varies_batch else None)
    if method in ("joint", "joint per size"):
        return _joint(evidence, window, batch_form, per_size=method == "joint per size")
    raise ValueError(f"unknown method {method!r}")


def _pooled_lr_law(evidence: list[CellEvidence], window: float | None) -> PowerLaw:
    """Exponents from every window's located optima pooled; the coefficient from `window`'s optima."""
    windows = list(evidence[0].optima)
    pairs = [(item, w) for w in windows for item in located(evidence, w)]
    cells = [item.cell for item, _ in pairs]
    pooled = np.log([item.optima[w].lr for item, w in pairs])
    exponents = regress(cells, pooled).exponents
    own = [item.optima[window] for item in evidence]
    rest = np.log([f.lr for f in own]) - exponents[0] * np.log([f.cell.params for f in own]) \
        - exponents[1] * np.log([f.cell.tokens for f in own])
    return PowerLaw(coefficient=float(np.exp(np.mean(rest))), exponents=exponents)


def _joint(evidence: list[CellEvidence], window: float | None, batch_form: str, per_size: bool
           ) -> tuple[PowerLaw, PowerLaw | None] | None:
    """The joint fit over the runs (module docstring); None where it is not convex or failed."""
    cells = [item.cell for item in evidence]
    two_dimensional = [np.unique(c.batch_tokens).size >= MIN_VALUES for c in cells]
    if any(two_dimensional) != all(two_dimensional):
        return None   # some cells vary the batch, others not: no shared bowl in both axes
    two_d = all(two_dimensional)
    centre = np.array([0.0, np.mean(np.log([c.params for c in cells])), np.mean(np.log([c.tokens for c in cells]))])
    lr_columns, lr_keep = design(cells, "N,D")
    lr_columns = lr_columns - centre[lr_keep]
    batch_columns, batch_keep = design(cells, batch_form)
    batch_columns = batch_columns - centre[batch_keep]
    index, x, y, target = [], [], [], []
    for i, cell in enumerate(cells):
        rows = fitted_runs(cell, window, two_d)
        index.append(np.full(rows.size, i))
        x.append(np.log(cell.lr[rows]))
        y.append(np.log(cell.batch_tokens[rows]))
        target.append(cell.loss[rows] / cell.loss.min())
    index, x, y, target = (np.concatenate(v) for v in (index, x, y, target))
    sizes = sorted({c.params for c in cells}) if per_size else [None]
    group = np.array([sizes.index(cells[i].params) if per_size else 0 for i in index])
    terms = 3 if two_d else 1
    n_lr, rows = lr_columns.shape[1], np.arange(x.size)

    def linear_part(theta: np.ndarray) -> np.ndarray:
        dx = x - (lr_columns @ theta[:n_lr])[index]
        dy = y - (batch_columns @ theta[n_lr:])[index] if two_d else None
        matrix = np.zeros((x.size, len(cells) + terms * len(sizes)))
        matrix[rows, index] = 1.0
        for k, column in enumerate((dx * dx, dx * dy, dy * dy) if two_d else (dx * dx,)):
            matrix[rows, len(cells) + terms * group + k] = column
        return matrix

    def residual(theta: np.ndarray) -> np.ndarray:
        matrix = linear_part(theta)
        return matrix @ np.linalg.lstsq(matrix, target, rcond=None)[0] - target

    optima = [item.optima[window] for item in evidence]
    start = [np.linalg.lstsq(lr_columns, np.log([f.lr for f in optima]), rcond=None)[0]]
    if two_d:
        start.append(np.linalg.lstsq(batch_columns, np.log([f.batch_tokens for f in optima]), rcond=None)[0])
    with np.errstate(all="ignore"):
        result = least_squares(residual, np.concatenate(start), method="trf")
        if not result.success or not np.isfinite(result.x).all():
            return None
        matrix = linear_part(result.x)
        curvatures = np.linalg.lstsq(matrix, target, rcond=None)[0][len(cells):].reshape(len(sizes), terms)
    for bowl in curvatures:
        if bowl[0] <= 0 or (two_d and 4 * bowl[0] * bowl[2] - bowl[1] ** 2 <= 0):
            return None
    lr_law = _uncentred(result.x[:n_lr], lr_keep, centre)
    if two_d:
        return lr_law, _uncentred(result.x[n_lr:], batch_keep, centre)
    if any(cell.varies_batch for cell in cells):
        return None
    return lr_law, None


def _uncentred(theta: np.ndarray, keep: list[int], centre: np.ndarray) -> PowerLaw:
    """The power law of coefficients fitted on columns centred at `centre`."""
    solution = np.array(theta, dtype=float)
    solution[0] -= float(solution[1:] @ centre[keep[1:]])
    return _power_law(solution, keep)


def loco_scores(evidence: list[CellEvidence], method: str, window: float | None, batch_form: str
                ) -> list[HeldOutCell] | None:
    """Each cell in turn left out: the law `method` fits to the other cells' evidence alone (none of
    the left-out cell's runs), its recommendation at the left-out cell and the score there. None
    where the method fails on any fold."""
    varies_batch = any(item.cell.varies_batch for item in evidence)
    scores = []
    for i, item in enumerate(evidence):
        laws = across_cells(evidence[:i] + evidence[i + 1:], method, window, batch_form)
        if laws is None or not laws[0].finite or (laws[1] is not None and not laws[1].finite):
            return None
        cell = item.cell
        lr = laws[0](cell.params, cell.tokens)
        batch = laws[1](cell.params, cell.tokens) if varies_batch and laws[1] is not None else None
        scores.append(HeldOutCell(lr, batch, nearest_run_loss(cell, lr, batch) / float(cell.loss.min()) - 1))
    return scores
