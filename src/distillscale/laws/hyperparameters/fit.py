"""Fitting hyperparameter laws to an lr x batch grid of runs, and scoring them on held-out cells.

    fit = fit_hyperparameters(runs, params="N", tokens="D", lr="lr", batch="batch_tokens", loss="loss")
    fit.law.recommend(1e9, 20e9)      # HyperparameterLaw (laws.hyperparameters.law)
    fit.cells, fit.selection, fit.backtest, fit.save("hp.json")

Per (N, D) cell, the convex quadratic surface in (ln lr, ln B) (`surface`) gives the cell's optimum
(lr*, B*); across cells, ln lr* and ln B* are linear in ln N and ln D (least squares), bootstrapped
over the cells and over each cell's runs. The surface's window (how far above the best loss the
runs it is fitted to reach) is chosen by leave-one-cell-out among the cells fitted: each cell in
turn is predicted by the law of the others, scored by the loss of its measured run nearest the
recommendation against its best. The backtest then holds out the cells of the largest N (never seen
by the selection) and scores them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillscale.errors import ParameterError, UserError
from distillscale.laws.hyperparameters.law import HyperparameterLaw, PowerLaw
from distillscale.laws.hyperparameters.records import (
    CellOptimum,
    CellScore,
    FitSummary,
    RunPoint,
    Selection,
    WindowCandidate,
)
from distillscale.laws.hyperparameters.surface import (
    CellFit,
    CellRuns,
    bootstrap_optima,
    cell_optimum,
    check_cells,
    nearest_run_loss,
    split_cells,
    sqrt_penalty,
)

WINDOWS = (0.005, 0.01, 0.02, 0.04, 0.08, None)   # candidate surface windows (relative loss over the best)
DEFAULT_WINDOW = 0.02                              # the window when too few cells to choose by evidence
BATCH_FORMS = ("N,D", "D")   # B* = d N^e D^f, or d D^f (Step Law finds B* depends mainly on D)
# ln N or ln D varies (beyond what the other columns predict) by at most this in every cell: not
# varied. One tokens-per-parameter M rounded up to whole optimizer steps moves ln D off ln M + ln N
# by under one step's share (5% from 20 steps up); fitting an exponent to that alone gave lr* =
# 218 N^3.5 D^-3.8 for 3 cells at M = 6, where lr* = a N^-0.3.
NOT_VARIED = 0.05


@dataclass(frozen=True)
class HyperparameterFit:
    """The fitted law, each cell's optimum, the window's selection and the backtest."""

    law: HyperparameterLaw
    cells: list[CellOptimum]
    selection: Selection
    backtest: list[CellScore] | None
    notes: list[str] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        return self.law.save(path)


def fit_hyperparameters(runs=None, *, params=None, tokens=None, lr=None, batch=None, loss=None,
                        window: float | None | str = "auto", backtest: bool = True, bootstrap: int = 200,
                        level: float = 0.9, seed: int = 0, name: str = "fitted",
                        source: str = "fitted to runs") -> HyperparameterFit:
    """Fit lr*(N, D) and B*(N, D) to an lr x batch grid of runs: a table (a DataFrame or a dict of
    columns; default names params, tokens, lr, batch_tokens, loss) or the values themselves. Each
    (N, D) cell needs 3 or more learning rates; a table with one batch size fits the lr law alone.
    `window` is the surface's (relative loss above the cell's best), "auto" chooses it by
    leave-one-cell-out."""
    from distillscale.laws.selection import run_columns

    columns = run_columns(runs, params=("params", params), tokens=("tokens", tokens), lr=("lr", lr),
                          batch_tokens=("batch_tokens", batch), loss=("loss", loss))
    with np.errstate(all="ignore"):   # values far beyond float range end as a non-finite law, refused below
        fit = _fit(columns, window, backtest, bootstrap, level, seed, name, source)
    laws = [fit.law.lr] + ([fit.law.batch] if fit.law.batch is not None else [])
    if not all(law.finite for law in laws):
        raise UserError("the fitted power laws are not finite numbers: the runs' parameters, tokens, rates or batch "
                        "sizes span beyond what a power law can be fitted to; check the columns' units")
    return fit


def _fit(columns: dict[str, np.ndarray], window, backtest: bool, bootstrap: int, level: float, seed: int,
         name: str, source: str) -> HyperparameterFit:
    if not (0 < level < 1):
        raise ParameterError("level", "{} must be between 0 and 1, got {value!r}", value=level)
    cells = split_cells(*(columns[k] for k in ("params", "tokens", "lr", "batch_tokens", "loss")))
    check_cells(cells)
    varies_batch = any(cell.varies_batch for cell in cells)
    notes = []
    if not varies_batch and len({float(c.batch_tokens[0]) for c in cells}) > 1:
        notes.append("the batch was not varied within a cell (each size ran its own): only the lr law is fitted, "
                     "for the batch the runs used at each size (a power law through the cells' batches, not B*)")
    elif not varies_batch:
        notes.append(f"the batch was not varied (every run at {cells[0].batch_tokens[0]:.4g} tokens): "
                     "only the lr law is fitted, for that batch")
    if bootstrap < 0:
        raise ParameterError("bootstrap", "{} must be 0 (no intervals) or more resamples, got {value!r}",
                             value=bootstrap)
    rng = np.random.default_rng(seed)
    held, fitted = _backtest_split(cells) if backtest else ([], cells)
    selection = _choose_window(fitted, window)
    chosen = selection.window
    optima = [cell_optimum(cell, chosen) for cell in cells]
    draws = np.stack([bootstrap_optima(cell, chosen, bootstrap, rng) for cell in cells])
    law = _fit_law(optima, draws, level, rng, name, source, selection.batch_form)
    scores = None
    if held:
        keep = [i for i, cell in enumerate(cells) if any(cell is f for f in fitted)]
        backtest_law = _fit_law([optima[i] for i in keep], draws[keep], level, rng, name, source,
                                selection.batch_form)
        scores = score_cells(backtest_law, held, chosen)
    elif backtest:
        notes.append("no backtest: it needs cells of two or more model sizes, the others fitted")
    cell_records = [_cell_record(fit, cell_draws, level) for fit, cell_draws in zip(optima, draws)]
    penalties = [c.sqrt_penalty for c in cell_records if c.sqrt_penalty is not None]
    record = FitSummary(window=chosen, batch_form=selection.batch_form, selection=selection, cells=cell_records,
                        notes=notes, sqrt_penalty=float(np.median(penalties)) if penalties else None, backtest=scores)
    law = law.model_copy(update={"fit": record})
    return HyperparameterFit(law, cell_records, selection, scores, notes)


def score_cells(law: HyperparameterLaw, cells: list[CellRuns], window: float | None = DEFAULT_WINDOW
                ) -> list[CellScore]:
    """The law's recommendation at each measured cell, scored on the cell's runs (its own optimum
    from its surface fitted with `window`)."""
    scores = []
    for cell in cells:
        rec = law.recommend(cell.params, cell.tokens)
        optimum = cell_optimum(cell, window)
        batch = rec.batch_tokens if law.batch is not None else None
        best, nearest = float(cell.loss.min()), nearest_run_loss(cell, rec.lr, batch)
        scores.append(CellScore(
            params=cell.params, tokens=cell.tokens, lr=rec.lr, batch_tokens=rec.batch_tokens, optimum_lr=optimum.lr,
            optimum_batch_tokens=optimum.batch_tokens, lr_ratio=rec.lr / optimum.lr,
            batch_ratio=rec.batch_tokens / optimum.batch_tokens, best_loss=best, nearest_loss=nearest,
            penalty=nearest / best - 1,
            lr_batch_exponent=optimum.surface.lr_batch_exponent if optimum.surface is not None else None))
    return scores


def _backtest_split(cells: list[CellRuns]) -> tuple[list[CellRuns], list[CellRuns]]:
    """(held out, fitted): the cells of the largest N held out when 2+ sizes leave 2+ cells fitted."""
    sizes = sorted({cell.params for cell in cells})
    fitted = [cell for cell in cells if cell.params != sizes[-1]]
    if len(sizes) < 2 or len(fitted) < 2:
        return [], cells
    return [cell for cell in cells if cell.params == sizes[-1]], fitted


def _choose_window(cells: list[CellRuns], window: float | None | str) -> Selection:
    """The surface window: given, or the candidate whose leave-one-cell-out mean penalty is lowest
    (scores compared at 1e-7, ties to the earlier candidate)."""
    varies_batch = any(cell.varies_batch for cell in cells)
    if window != "auto":
        if window is not None and not (isinstance(window, (int, float)) and window > 0):
            raise ParameterError("window", "{} must be a positive fraction, None (every run) or 'auto', got "
                                 "{value!r}", value=window)
    if len(cells) < 3:
        return Selection(window=DEFAULT_WINDOW if window == "auto" else window, batch_form=BATCH_FORMS[0],
                         reason=f"{len(cells)} cell(s): too few to choose by leave-one-cell-out")
    candidates = []
    for candidate in (WINDOWS if window == "auto" else (window,)):
        optima = [cell_optimum(cell, candidate) for cell in cells]
        for batch_form in BATCH_FORMS if varies_batch else BATCH_FORMS[:1]:
            penalties = []
            for i, cell in enumerate(cells):
                others = [fit for j, fit in enumerate(optima) if j != i]
                rec_lr = _regress([f.cell for f in others], np.log([f.lr for f in others]))(cell.params, cell.tokens)
                rec_batch = _regress([f.cell for f in others], np.log([f.batch_tokens for f in others]),
                                     batch_form)(cell.params, cell.tokens) if varies_batch else None
                penalties.append(nearest_run_loss(cell, rec_lr, rec_batch) / float(cell.loss.min()) - 1)
            candidates.append(WindowCandidate(window=candidate, batch_form=batch_form,
                                              mean_penalty=float(np.mean(penalties)), max_penalty=float(np.max(penalties))))
    best = min(range(len(candidates)), key=lambda i: (round(candidates[i].mean_penalty, 7), i))
    return Selection(window=candidates[best].window, batch_form=candidates[best].batch_form, candidates=candidates,
                     reason=f"lowest mean leave-one-cell-out loss penalty (the loss of the run nearest the "
                            f"recommendation against the cell's best) over {len(cells)} cells")


def _design(cells: list[CellRuns], form: str = "N,D") -> tuple[np.ndarray, list[int]]:
    """Columns 1, ln N, ln D of the cells, keeping ln N / ln D only when `form` names them and the
    cells vary them: a column the kept ones before it fix to within NOT_VARIED in every cell (D = M N
    at one M, each budget rounded up to whole steps) is left out, its exponent 0, rather than fitted
    to the rounding."""
    design = np.column_stack([np.ones(len(cells)), np.log([c.params for c in cells]), np.log([c.tokens for c in cells])])
    keep = [0] + [k for k, name in ((1, "N"), (2, "D")) if name in form.split(",") and np.unique(design[:, k]).size > 1]
    while len(keep) > 1:
        others, last = design[:, keep[:-1]], design[:, keep[-1]]
        residual = last - others @ np.linalg.lstsq(others, last, rcond=None)[0]
        if np.abs(residual).max() > NOT_VARIED:
            break
        keep.pop()
    return design[:, keep], keep


def _regress(cells: list[CellRuns], target: np.ndarray, form: str = "N,D") -> PowerLaw:
    """The least-squares power law of exp(target) in N and D over the cells (no intervals)."""
    design, keep = _design(cells, form)
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    full = np.zeros(3)
    full[keep] = solution
    return PowerLaw(coefficient=float(np.exp(full[0])), exponents=(float(full[1]), float(full[2])))


def _bootstrap_law(cells: list[CellRuns], optimum: np.ndarray, draws: np.ndarray, column: int,
                   rng: np.random.Generator, form: str = "N,D") -> PowerLaw:
    """The power law of ln optimum (one per cell) with its covariance from bootstrap draws (cells
    resampled, each at one of its own bootstrap optima) and its residual scatter."""
    design, keep = _design(cells, form)
    law = _regress(cells, optimum, form)
    m, k = design.shape
    residual = optimum - design @ np.linalg.lstsq(design, optimum, rcond=None)[0]
    residual_sd = float(np.sqrt(residual @ residual / (m - k))) if m > k else 0.0
    samples = []
    for b in range(draws.shape[1]):
        rows = rng.integers(0, m, size=m)
        if np.linalg.matrix_rank(design[rows]) < k:
            continue
        samples.append(np.linalg.lstsq(design[rows], draws[rows, b, column], rcond=None)[0])
    covariance = np.zeros((3, 3))
    if len(samples) > k:
        covariance[np.ix_(keep, keep)] = np.atleast_2d(np.cov(np.array(samples).T))
    return law.model_copy(update={"covariance": tuple(tuple(float(v) for v in row) for row in covariance),
                                  "residual_sd": residual_sd})


def _fit_law(optima: list[CellFit], draws: np.ndarray, level: float, rng: np.random.Generator, name: str,
             source: str, batch_form: str = "N,D") -> HyperparameterLaw:
    """The law over the cells' optima; `draws` (cells, resamples, 2) their bootstrap ln lr*, ln B*."""
    cells = [fit.cell for fit in optima]
    varies_batch = any(cell.varies_batch for cell in cells)
    ln_lr, ln_batch = np.log([f.lr for f in optima]), np.log([f.batch_tokens for f in optima])
    lr_law = _bootstrap_law(cells, ln_lr, draws, 0, rng)
    batch_law = _bootstrap_law(cells, ln_batch, draws, 1, rng, batch_form) if varies_batch else None
    one_batch = not varies_batch and np.unique(ln_batch).size == 1
    exponents = [f.surface.lr_batch_exponent for f in optima if f.surface is not None and f.surface.two_dimensional]
    curvatures = [f.surface.ridge_curvature / f.loss for f in optima
                  if f.surface is not None and f.surface.two_dimensional]
    tail = (1 - level) / 2 * 100
    return HyperparameterLaw(
        name=name, source=source, lr=lr_law, batch=batch_law,
        fixed_batch_tokens=float(cells[0].batch_tokens[0]) if one_batch else None,
        batch_used=_regress(cells, ln_batch) if not varies_batch and not one_batch else None, level=level,
        lr_batch_exponent=float(np.median(exponents)) if exponents else None,
        lr_batch_exponent_interval=(float(np.percentile(exponents, tail)), float(np.percentile(exponents, 100 - tail)))
        if len(exponents) > 1 else None,
        ridge_curvature=float(np.median(curvatures)) if curvatures else None,
        loss_tokens_exponent=_loss_tokens_exponent(optima),
        data_range={"params": (min(c.params for c in cells), max(c.params for c in cells)),
                    "tokens": (min(c.tokens for c in cells), max(c.tokens for c in cells))})


def _loss_tokens_exponent(optima: list[CellFit]) -> float | None:
    """d ln L* / d ln D at fixed N: ln of each cell's best loss regressed on ln N and ln D (None
    unless some model size was run at two or more token counts)."""
    by_size: dict[float, set[float]] = {}
    for fit in optima:
        by_size.setdefault(fit.cell.params, set()).add(fit.cell.tokens)
    if max(len(tokens) for tokens in by_size.values()) < 2:
        return None
    design, keep = _design([f.cell for f in optima])
    if 2 not in keep:
        return None
    solution = np.linalg.lstsq(design, np.log([float(f.cell.loss.min()) for f in optima]), rcond=None)[0]
    return float(solution[keep.index(2)])


def _cell_record(fit: CellFit, draws: np.ndarray, level: float) -> CellOptimum:
    """A cell's optimum with its bootstrap intervals at `level` (None without resamples)."""
    cell, surface = fit.cell, fit.surface
    best = cell.best
    exponent = surface.lr_batch_exponent if surface is not None else None
    tail = (1 - level) / 2 * 100
    lr_interval = batch_interval = None
    if draws.shape[0]:
        lr_interval = tuple(float(v) for v in np.exp(np.percentile(draws[:, 0], [tail, 100 - tail])))
        if cell.varies_batch:
            batch_interval = tuple(float(v) for v in np.exp(np.percentile(draws[:, 1], [tail, 100 - tail])))
    return CellOptimum(
        params=cell.params, tokens=cell.tokens, runs=int(cell.loss.size), runs_fitted=fit.runs_fitted, lr=fit.lr,
        lr_interval=lr_interval, batch_tokens=fit.batch_tokens, batch_interval=batch_interval, loss=fit.loss,
        convex=surface is not None, at_edge=fit.at_edge,
        best_run=RunPoint(lr=float(cell.lr[best]), batch_tokens=float(cell.batch_tokens[best]), loss=float(cell.loss[best])),
        lr_batch_exponent=None if exponent is None or not math.isfinite(exponent) else exponent,
        sqrt_penalty=sqrt_penalty(surface))
