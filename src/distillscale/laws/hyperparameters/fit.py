"""Fitting hyperparameter laws to an lr x batch grid of runs, and scoring them on held-out cells.

    fit = fit_hyperparameters(runs, params="N", tokens="D", lr="lr", batch="batch_tokens", loss="loss")
    fit.law.recommend(1e9, 20e9)      # HyperparameterLaw (laws.hyperparameters.law)
    fit.cells, fit.selection, fit.backtest, fit.save("hp.json")

Per (N, D) cell, the convex quadratic surface in (ln lr, ln B) (`surface`) gives the cell's optimum
(lr*, B*); across cells, ln lr* and ln B* are linear in ln N and ln D, fitted one of the ways in
`across` (through the optima, precision-weighted, pooled windows, or one joint fit over every run),
with intervals bootstrapped over the cells and over each cell's runs. The method, the surface's
window (how far above the best loss the runs it is fitted to reach) and the B* form are chosen
together by leave-one-cell-out among the cells fitted: each cell in turn is predicted by the law the
method fits to the other cells alone (none of its runs), scored by the loss of its measured run
nearest the recommendation against its best. The backtest then holds out the cells of the largest N
(never seen by the selection) and scores them the same way.

What the grid cannot locate is said, not fitted through (`surface.grid_rule`): a cell whose optimum
lies beyond its rates or batches has a one-sided interval and is left out of the laws (counted in
one line per edge: "3 of 8 cells have lr* below the grid's smallest rate: extend the grid"); where no
cell locates B* (2 batch sizes, or B* beyond every cell's batches) the law is the rate at one batch,
each cell's rate fitted on that batch's runs; a surface with no convex cell is refused. The table is
read first (`_prepare`): token counts of one size within SAME_TOKENS are one D (whole steps of each
batch), repeated rows are counted once, seeds' losses averaged, and a rate column in other units is
refused (above 1) or warned about (every rate below 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from distillscale.errors import ParameterError, UserError
from distillscale.laws.hyperparameters.across import (
    METHODS,
    CellEvidence,
    across_cells,
    cell_evidence,
    design,
    located,
    loco_scores,
    precision_weights,
    regress,
    unidentified,
)
from distillscale.laws.hyperparameters.conditions import RULES, SETTINGS, runs_at, setting_cells, setting_choices
from distillscale.laws.hyperparameters.law import BATCH_EXPONENT_SPREAD, HyperparameterLaw, PowerLaw
from distillscale.laws.hyperparameters.rates import LR_MAX, LrUnit, table_lr_unit
from distillscale.laws.hyperparameters.records import (
    CellOptimum,
    CellScore,
    GridFit,
    RunPoint,
    WindowSelection,
    WindowCandidate,
)
from distillscale.laws.hyperparameters.surface import (
    MIN_VALUES,
    SAME_TOKENS,
    CellFit,
    CellRuns,
    bootstrap_optima,
    cell_optimum,
    check_cells,
    grid_rule,
    nearest_run_loss,
    same_tokens,
    sqrt_penalty,
)

WINDOWS = (0.005, 0.01, 0.02, 0.04, 0.08, None)   # candidate surface windows (relative loss over the best)
DEFAULT_WINDOW = 0.02                              # the window when too few cells to choose by evidence
PRECISION_RESAMPLES = 100   # bootstrap resamples of each cell's optimum behind the "weighted" method's weights
BATCH_FORMS = ("N,D", "D")   # B* = d N^e D^f, or d D^f (Step Law finds B* depends mainly on D)
# An exponent the cells cannot identify (`across.unidentified`) is held at 0 with this prior sd, so a
# law's interval widens with the distance from its data along it: about the spread of the published
# laws' exponents (lr*: Step Law N^-0.713 D^0.307, DeepSeek (6ND)^-0.125; B*: Step Law N^0 D^0.571,
# DeepSeek (6ND)^0.327; distillscale's own muP ladders N^-0.06-N^0.09).
EXPONENT_PRIOR_SD = {"lr": 0.4, "batch": 0.3}
# LR_MAX (rates): a peak rate above it diverges, so an lr column beyond it is in other units (x1000)
LR_TINY = 1e-5   # a grid whose largest rate is below this is likely in other units (LMs' peak: 1e-5 to 1)


@dataclass(frozen=True)
class HyperparameterFit:
    """The fitted law, each cell's optimum, the window's selection and the backtest."""

    law: HyperparameterLaw
    cells: list[CellOptimum]
    selection: WindowSelection
    backtest: list[CellScore] | None
    notes: list[str] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        return self.law.save(path)


def fit_hyperparameters(runs=None, *, params=None, tokens=None, lr=None, batch=None, loss=None, beta2=None,
                        warmup=None, window: float | None | str = "auto", backtest: bool = True,
                        bootstrap: int = 200, level: float = 0.9, seed: int = 0, name: str = "fitted",
                        source: str = "fitted to runs", lr_unit: str | LrUnit | None = None) -> HyperparameterFit:
    """Fit lr*(N, D) and B*(N, D) to an lr x batch grid of runs: a table (a DataFrame or a dict of
    columns; default names params, tokens, lr, batch_tokens, loss) or the values themselves. Each
    (N, D) cell needs 3 or more learning rates; a table with one batch size fits the lr law alone.
    `beta2`, `warmup` (optional: a column or the values, AdamW's beta2 and warmup steps): a cell
    whose runs vary them is fitted at the setting of its best run, and the law carries the setting
    most cells chose, or the one every run used (`laws.hyperparameters.conditions`).
    `window` is the surface's (relative loss above the cell's best), "auto" chooses it by
    leave-one-cell-out. `lr_unit` is what the rates are (`laws.hyperparameters.rates`: 'peak' or
    'mup-base'); None: the table's `lr_unit` column (`sweep export` writes one), else 'peak'."""
    from distillscale.laws.selection import run_columns

    unit = table_lr_unit(runs, lr_unit)
    columns = run_columns(runs, rules=RULES, params=("params", params), tokens=("tokens", tokens), lr=("lr", lr),
                          batch_tokens=("batch_tokens", batch), loss=("loss", loss), beta2=(None, beta2),
                          warmup=(None, warmup))
    columns, notes = _prepare(columns)
    with np.errstate(all="ignore"):   # values far beyond float range end as a non-finite law, refused below
        fit = _fit(columns, window, backtest, bootstrap, level, seed, name, source, unit, notes)
    laws = [fit.law.lr] + ([fit.law.batch] if fit.law.batch is not None else [])
    if not all(law.finite for law in laws):
        raise UserError("the fitted power laws are not finite numbers: the runs' parameters, tokens, rates or batch "
                        "sizes span beyond what a power law can be fitted to; check the columns' units")
    return fit


def _prepare(columns: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The runs as the fit reads them, and a note for each change: a rate column in other units
    refused (above LR_MAX) or warned about (below LR_TINY throughout); token counts of one model size
    within SAME_TOKENS made one D (`surface.same_tokens`); a row repeating another exactly counted
    once; runs at one (N, D, lr, batch, setting) with different losses (seeds) fitted at their mean."""
    notes = []
    lr = columns["lr"]
    if lr.max() > LR_MAX:
        above = np.flatnonzero(lr > LR_MAX)
        raise UserError(f"the lr column holds rates up to {lr.max():.4g} (runs {', '.join(map(str, above[:3]))}"
                        f"{' ...' if above.size > 3 else ''}): a peak learning rate above {LR_MAX:g} diverges, so the "
                        "column is in other units (x1000?): divide it, or name the rate column with --lr-col")
    if lr.max() < LR_TINY:
        notes.append(f"every rate is below {LR_TINY:g} (the largest {lr.max():.3g}): LMs' peak rates lie between "
                     f"1e-5 and 1, so the lr column may be in other units; the law's rates are the column's")
    tokens, spread = same_tokens(columns["params"], columns["tokens"])
    if spread > 0:
        notes.append(f"token counts of one model size within {SAME_TOKENS:.0%} of each other are one cell (D = steps "
                     f"x batch rounds each batch its own way): runs up to {spread:.2%} apart in D merged")
    columns = {**columns, "tokens": tokens}
    keys = [key for key in ("params", "tokens", "lr", "batch_tokens", *SETTINGS) if key in columns]
    table = np.column_stack([columns[key] for key in keys] + [columns["loss"]])
    _, first = np.unique(table, axis=0, return_index=True)
    if first.size < table.shape[0]:
        notes.append(f"{table.shape[0] - first.size} rows repeat another run exactly (the same N, D, lr, batch and "
                     "loss): each counted once (the table written twice?)")
        keep = np.sort(first)
        columns, table = {key: values[keep] for key, values in columns.items()}, table[keep]
    _, first, inverse, counts = np.unique(table[:, :-1], axis=0, return_index=True, return_inverse=True,
                                          return_counts=True)
    if counts.max() > 1:
        inverse = inverse.reshape(-1)
        mean = np.bincount(inverse, weights=columns["loss"]) / counts
        notes.append(f"{int(np.sum(counts > 1))} (N, D, lr, batch) points were run more than once (seeds?): each "
                     "is fitted at the mean of its losses")
        keep = np.sort(first)
        columns = {key: values[keep] for key, values in columns.items()} | {"loss": mean[inverse[keep]]}
    return columns, notes


def _fit(columns: dict[str, np.ndarray], window, backtest: bool, bootstrap: int, level: float, seed: int,
         name: str, source: str, lr_unit: LrUnit, notes: list[str] | None = None,
         whole: dict | None = None) -> HyperparameterFit:
    """The fit of `_prepare`d runs. `notes`: what `_prepare` said; `whole`: the cells with all their
    batch sizes, by (N, D), where this fit is the rate at one batch of a grid that did not locate B*
    (`_at_one_batch`): their records keep where B* lies beyond the grid."""
    if not (0 < level < 1):
        raise ParameterError("level", "{} must be between 0 and 1, got {value!r}", value=level)
    if bootstrap < 0:
        raise ParameterError("bootstrap", "{} must be 0 (no intervals) or more resamples, got {value!r}",
                             value=bootstrap)
    names = tuple(name for name in SETTINGS if name in columns)
    given = list(notes or [])
    cells, setting_notes = setting_cells(columns, names)
    notes = given + setting_notes
    check_cells(cells)
    windows = _candidate_windows(window)
    _check_convex(cells, windows)
    varies_batch = any(cell.varies_batch for cell in cells)
    if varies_batch and not any(cell_optimum(cell, w).batch_located for cell in cells for w in windows):
        return _at_one_batch(cells, columns, windows, lambda restricted, more, edges: _fit(
            restricted, window, backtest, bootstrap, level, seed, name, source, lr_unit, given + more, edges))
    if not varies_batch and len({float(c.batch_tokens[0]) for c in cells}) > 1:
        notes.append("the batch was not varied within a cell (each size ran its own): only the lr law is fitted, "
                     "for the batch the runs used at each size (a power law through the cells' batches, not B*)")
    elif not varies_batch and whole is None:
        notes.append(f"the batch was not varied (every run at {cells[0].batch_tokens[0]:.4g} tokens): "
                     "only the lr law is fitted, for that batch")
    rng = np.random.default_rng(seed)
    held, fitted = _backtest_split(cells) if backtest else ([], cells)
    # each cell resampled with generators of its own, so its draws do not depend on the other cells;
    # the precision weights from PRECISION_RESAMPLES whatever `bootstrap` (the intervals') is
    evidence = [cell_evidence(cell, windows, PRECISION_RESAMPLES, np.random.default_rng([seed, k, 0]))
                for k, cell in enumerate(cells)]
    selection = _choose(_of(evidence, fitted), window)
    chosen, method = selection.window, selection.method
    if across_cells(evidence, method, chosen, selection.batch_form) is None:
        if across_cells(evidence, "optima", chosen, selection.batch_form) is None:
            raise UserError(_none_located([item.optima[chosen] for item in evidence]))
        notes.append(f"the {method} fit failed on all the cells together: the law is fitted through the cells' optima")
        method = "optima"
    optima = [item.optima[chosen] for item in evidence]
    notes += _unlocated_notes(optima)
    draws = np.stack([bootstrap_optima(cell, chosen, bootstrap, np.random.default_rng([seed, k, 1]))
                      for k, cell in enumerate(cells)])
    law = _fit_law(evidence, draws, chosen, method, level, rng, name, source, selection.batch_form, lr_unit=lr_unit)
    scores = None
    if held and across_cells(_of(evidence, fitted), "optima", chosen, selection.batch_form) is None:
        notes.append("no backtest: the grid located no optimum in the cells below the largest size")
    elif held:
        keep = [k for k, cell in enumerate(cells) if any(cell is f for f in fitted)]
        backtest_evidence = [evidence[k] for k in keep]
        backtest_method = method if across_cells(backtest_evidence, method, chosen, selection.batch_form) else "optima"
        backtest_law = _fit_law(backtest_evidence, draws[keep], chosen, backtest_method, level, rng, name, source,
                                selection.batch_form, lr_unit=lr_unit)
        setting = tuple((name, choice.value) for name, choice in setting_choices(
            [cells[k] for k in keep], columns, names).items())
        scores = score_cells(backtest_law, held, chosen, lambda cell: runs_at(columns, cell, setting) or cell)
    elif backtest:
        notes.append("no backtest: it needs cells of two or more model sizes, the others fitted")
    whole_optima = [None if whole is None else cell_optimum(whole[fit.cell.params, fit.cell.tokens], chosen)
                    for fit in optima]
    cell_records = [_cell_record(fit, cell_draws, level, whole_fit)
                    for fit, cell_draws, whole_fit in zip(optima, draws, whole_optima)]
    penalties = [c.sqrt_penalty for c in cell_records if c.sqrt_penalty is not None]
    record = GridFit(window=chosen, batch_form=selection.batch_form, method=method, selection=selection,
                        cells=cell_records,
                        notes=notes, sqrt_penalty=float(np.median(penalties)) if penalties else None, backtest=scores)
    law = law.model_copy(update={"fit": record, **setting_choices(cells, columns, names)})
    return HyperparameterFit(law, cell_records, selection, scores, notes)


def _check_convex(cells: list[CellRuns], windows: tuple[float | None, ...]) -> None:
    """Refuse, in one line, a grid none of whose cells has a convex surface in any window."""
    if not any(cell_optimum(cell, w).surface is not None for cell in cells for w in windows):
        raise UserError(f"no cell's loss surface is convex ({len(cells)} cells: the loss is flat, or noise, along the "
                        "rates and batches), so the grid locates no optimum: check the loss column, or space the "
                        "rates so that the loss rises on both sides of the best")


def _at_one_batch(cells: list[CellRuns], columns: dict[str, np.ndarray], windows: tuple[float | None, ...],
                  refit: Callable[[dict[str, np.ndarray], list[str], dict], HyperparameterFit]) -> HyperparameterFit:
    """Where no cell locates B* (2 batch sizes, or B* beyond every cell's batches): the law is the
    rate at one batch, the batch of the best run in most cells (a tie: the largest cell's), each
    cell's rate fitted on that batch's runs alone; the cells' own batch edges kept in their records."""
    batches = [float(cell.batch_tokens[cell.best]) for cell in cells]
    counts = {batch: batches.count(batch) for batch in batches}
    batch = next(b for b in reversed(batches) if counts[b] == max(counts.values()))
    window = DEFAULT_WINDOW if DEFAULT_WINDOW in windows else windows[0]
    edges = [cell_optimum(cell, window).batch_edge for cell in cells]
    m, reasons = len(cells), []
    few = [cell for cell in cells if 1 < cell.batch_sizes < MIN_VALUES]
    if few:
        reasons.append(f"{len(few)} of {m} cells ran " + grid_rule(few[0].lr, few[0].batch_tokens).batch_note)
    for side, end in (("below", "smallest"), ("above", "largest")):
        if edges.count(side):
            reasons.append(f"B* lies {side} the grid's {end} batch in {edges.count(side)} of {m} cells: extend the "
                           f"grid's batches {side} it")
    at = columns["batch_tokens"] == batch
    short = [cell for cell in cells if np.unique(cell.lr[cell.batch_tokens == batch]).size < MIN_VALUES]
    for cell in short:
        at &= ~((columns["params"] == cell.params) & (columns["tokens"] == cell.tokens))
    if len(short) == m:
        raise UserError(f"B* is not located ({'; '.join(reasons)}) and no cell ran {MIN_VALUES} or more rates at "
                        f"{batch:,.0f} tokens, its best runs' batch: run the rates at one batch, or 3 or more batch "
                        "sizes that bracket B*")
    others = sorted({float(b) for b in columns["batch_tokens"]} - {batch})
    note = (f"B* is not located ({'; '.join(reasons)}): the lr law is the rate at {batch:,.0f} tokens, the batch of "
            f"the best run in {counts[batch]} of {m} cells, each cell's rate fitted on that batch's runs alone"
            + (f" ({len(short)} cells with fewer than {MIN_VALUES} rates there left out)" if short else "")
            + (f"; --where 'batch_tokens == {others[0]:g}' fits the rate at another" if others else ""))
    restricted = {key: values[at] for key, values in columns.items()}
    return refit(restricted, [note], {(cell.params, cell.tokens): cell for cell in cells})


def _none_located(optima: list[CellFit]) -> str:
    """The one line refusing a grid that located no cell's optimum, with what each cell lacks."""
    reasons = []
    for axis, attr, what in (("lr*", "lr_edge", "rate"), ("B*", "batch_edge", "batch")):
        for side, end in (("below", "smallest"), ("above", "largest")):
            count = sum(getattr(fit, attr) == side for fit in optima)
            if count:
                reasons.append(f"{count} with {axis} {side} the {end} {what}")
    few = sum(not fit.located and not fit.at_edge for fit in optima)
    if few:
        reasons.append(f"{few} with too few batch sizes to locate B*")
    return (f"the grid locates the optimum in none of its {len(optima)} cells ({', '.join(reasons)}): there is "
            "nothing to fit a law through; extend the grid past the edges the optima lie beyond")


def _unlocated_notes(optima: list[CellFit]) -> list[str]:
    """One line per edge counting the cells whose optimum lies beyond it, and the cells the law
    leaves out for other reasons (too few batch sizes) or fits at a grid point (not convex)."""
    m, notes = len(optima), []
    for axis, attr, what in (("lr*", "lr_edge", "rate"), ("B*", "batch_edge", "batch")):
        for side, end in (("below", "smallest"), ("above", "largest")):
            count = sum(getattr(fit, attr) == side for fit in optima)
            if count:
                notes.append(f"{count} of {m} cells have {axis} {side} the grid's {end} {what}: extend the grid "
                             f"(their optima are bounds, left out of the law)")
    few = sum(not fit.located and not fit.at_edge for fit in optima)
    if few:
        notes.append(f"{few} of {m} cells ran fewer than {MIN_VALUES} batch sizes: B* is not located there, and their "
                     "rate (at their best run's batch) is left out of the law")
    flat = sum(fit.surface is None for fit in optima)
    if flat:
        notes.append(f"{flat} of {m} cells' loss surfaces are not convex: their optimum is their best run, a grid "
                     "point (left out of the law where it lies at the grid's edge)")
    return notes


def score_cells(law: HyperparameterLaw, cells: list[CellRuns], window: float | None = DEFAULT_WINDOW,
                runs_at: Callable[[CellRuns], CellRuns] | None = None) -> list[CellScore]:
    """The law's recommendation at each measured cell, scored on the cell's runs (its own optimum
    from its surface fitted with `window`); `runs_at`: the runs of the cell the recommendation is
    run on (at the law's beta2 and warmup, `conditions.runs_at`; the optimum theirs), the loss
    against the cell's best."""
    scores = []
    for cell in cells:
        rec = law.recommend(cell.params, cell.tokens)
        run = cell if runs_at is None else runs_at(cell)
        optimum = cell_optimum(run, window)
        batch = rec.batch_tokens if law.batch is not None else None
        best, nearest = float(cell.loss.min()), nearest_run_loss(run, rec.lr, batch)
        scores.append(CellScore(
            params=cell.params, tokens=cell.tokens, lr=rec.lr, batch_tokens=rec.batch_tokens, optimum_lr=optimum.lr,
            optimum_batch_tokens=optimum.batch_tokens, lr_ratio=rec.lr / optimum.lr,
            batch_ratio=rec.batch_tokens / optimum.batch_tokens, best_loss=best, nearest_loss=nearest,
            penalty=nearest / best - 1,
            lr_batch_exponent=optimum.surface.lr_batch_exponent if optimum.surface is not None else None,
            optimum_located=optimum.located, **dict(run.setting)))
    return scores


def _backtest_split(cells: list[CellRuns]) -> tuple[list[CellRuns], list[CellRuns]]:
    """(held out, fitted): the cells of the largest N held out when 2+ sizes leave 2+ cells fitted."""
    sizes = sorted({cell.params for cell in cells})
    fitted = [cell for cell in cells if cell.params != sizes[-1]]
    if len(sizes) < 2 or len(fitted) < 2:
        return [], cells
    return [cell for cell in cells if cell.params == sizes[-1]], fitted


def _candidate_windows(window: float | None | str) -> tuple[float | None, ...]:
    """The windows the selection may choose among: every candidate for "auto", else the one given."""
    if window == "auto":
        return WINDOWS
    if window is not None and not (isinstance(window, (int, float)) and window > 0):
        raise ParameterError("window", "{} must be a positive fraction, None (every run) or 'auto', got "
                             "{value!r}", value=window)
    return (window,)


def _of(evidence: list[CellEvidence], cells: list[CellRuns]) -> list[CellEvidence]:
    return [item for item in evidence if any(item.cell is cell for cell in cells)]


def _choose(evidence: list[CellEvidence], window: float | None | str) -> WindowSelection:
    """The method, surface window and B* form whose leave-one-cell-out mean penalty is lowest (scores
    compared at 1e-7, ties to the earlier candidate: methods in METHODS' order, "optima" first)."""
    cells = [item.cell for item in evidence]
    varies_batch = any(cell.varies_batch for cell in cells)
    if len(cells) < 3:
        return WindowSelection(window=DEFAULT_WINDOW if window == "auto" else window, batch_form=BATCH_FORMS[0],
                         method=METHODS[0], reason=f"{len(cells)} cell(s): too few to choose by leave-one-cell-out")
    candidates = []
    for method in METHODS:
        for candidate in _candidate_windows(window):
            for batch_form in BATCH_FORMS if varies_batch else BATCH_FORMS[:1]:
                scores = loco_scores(evidence, method, candidate, batch_form)
                if scores is not None:
                    penalties = [score.penalty for score in scores]
                    candidates.append(WindowCandidate(method=method, window=candidate, batch_form=batch_form,
                                                      mean_penalty=float(np.mean(penalties)),
                                                      max_penalty=float(np.max(penalties))))
    if not candidates:   # every fold of every candidate lacked a located cell to fit
        return WindowSelection(window=DEFAULT_WINDOW if window == "auto" else window, batch_form=BATCH_FORMS[0],
                         method=METHODS[0], reason=f"too few located cells of {len(cells)} to choose by "
                                                   "leave-one-cell-out")
    best = min(range(len(candidates)), key=lambda i: (round(candidates[i].mean_penalty, 7), i))
    chosen = candidates[best]
    return WindowSelection(window=chosen.window, batch_form=chosen.batch_form, method=chosen.method, candidates=candidates,
                     reason=f"lowest mean leave-one-cell-out loss penalty (the loss of the run nearest the "
                            f"recommendation against the cell's best) over {len(cells)} cells")


def _bootstrap_law(cells: list[CellRuns], law: PowerLaw, optimum: np.ndarray, draws: np.ndarray, column: int,
                   rng: np.random.Generator, form: str = "N,D", weights: np.ndarray | None = None) -> PowerLaw:
    """`law` with its covariance from bootstrap draws (cells resampled, each at one of its own
    bootstrap optima, regressed with the method's weights) and the scatter of the cells' optima
    (ln, one per cell) around it; an exponent the cells cannot identify (`across.unidentified`)
    held at 0 with EXPONENT_PRIOR_SD's variance along the direction the data say nothing of."""
    columns, keep = design(cells, form)
    m, k = columns.shape
    residual = optimum - np.log([law(c.params, c.tokens) for c in cells])
    residual_sd = float(np.sqrt(residual @ residual / (m - k))) if m > k else 0.0
    root = np.ones(m) if weights is None else np.sqrt(weights)
    samples = []
    for b in range(draws.shape[1]):
        rows = rng.integers(0, m, size=m)
        if np.linalg.matrix_rank(columns[rows]) < k:
            continue
        samples.append(np.linalg.lstsq(columns[rows] * root[rows, None], draws[rows, b, column] * root[rows],
                                       rcond=None)[0])
    covariance = np.zeros((3, 3))
    if len(samples) > k:
        covariance[np.ix_(keep, keep)] = np.atleast_2d(np.cov(np.array(samples).T))
    missing = unidentified(cells, form)
    prior = EXPONENT_PRIOR_SD["lr" if column == 0 else "batch"] ** 2
    for _, direction in missing:
        covariance += prior * np.outer(direction, direction)
    return law.model_copy(update={"covariance": tuple(tuple(float(v) for v in row) for row in covariance),
                                  "residual_sd": residual_sd, "not_identified": tuple(name for name, _ in missing)})


def _fit_law(evidence: list[CellEvidence], draws: np.ndarray, window: float | None, method: str, level: float,
             rng: np.random.Generator, name: str, source: str, batch_form: str = "N,D", *,
             lr_unit: LrUnit) -> HyperparameterLaw:
    """The law `method` fits over the cells' evidence at `window` whose optimum the grid located
    (`across.located`), with intervals from `draws` (cells, resamples, 2), the cells' bootstrap
    ln lr*, ln B*; its data range: the located cells' N, D and batch sizes."""
    keep = [k for k, item in enumerate(evidence) if item.optima[window].located]
    evidence, draws = located(evidence, window), draws[keep]
    cells = [item.cell for item in evidence]
    optima = [item.optima[window] for item in evidence]
    varies_batch = any(cell.varies_batch for cell in cells)
    lr_center, batch_center = across_cells(evidence, method, window, batch_form)
    weighted = method == "weighted"
    ln_lr, ln_batch = np.log([f.lr for f in optima]), np.log([f.batch_tokens for f in optima])
    lr_law = _bootstrap_law(cells, lr_center, ln_lr, draws, 0, rng, "N,D",
                            precision_weights(evidence, window, 0) if weighted else None)
    batch_law = _bootstrap_law(cells, batch_center, ln_batch, draws, 1, rng, batch_form,
                               precision_weights(evidence, window, 1) if weighted else None) if varies_batch else None
    one_batch = not varies_batch and np.unique(ln_batch).size == 1
    exponents = [f.surface.lr_batch_exponent for f in optima if f.surface is not None and f.surface.two_dimensional]
    curvatures = [f.surface.ridge_curvature / f.loss for f in optima
                  if f.surface is not None and f.surface.two_dimensional]
    tail = (1 - level) / 2 * 100
    return HyperparameterLaw(
        name=name, source=source, lr_unit=lr_unit, lr=lr_law, batch=batch_law,
        fixed_batch_tokens=float(cells[0].batch_tokens[0]) if one_batch else None,
        batch_used=regress(cells, ln_batch) if not varies_batch and not one_batch else None, level=level,
        lr_batch_exponent=float(np.median(exponents)) if exponents else None,
        lr_batch_exponent_interval=(float(np.percentile(exponents, tail)), float(np.percentile(exponents, 100 - tail)))
        if len(exponents) > 1 else tuple(exponents[0] + offset for offset in BATCH_EXPONENT_SPREAD) if exponents
        else None,
        ridge_curvature=float(np.median(curvatures)) if curvatures else None,
        loss_tokens_exponent=_loss_tokens_exponent(optima),
        data_range={"params": (min(c.params for c in cells), max(c.params for c in cells)),
                    "tokens": (min(c.tokens for c in cells), max(c.tokens for c in cells)),
                    "batch_tokens": (min(float(c.batch_tokens.min()) for c in cells),
                                     max(float(c.batch_tokens.max()) for c in cells))})


def _loss_tokens_exponent(optima: list[CellFit]) -> float | None:
    """d ln L* / d ln D at fixed N: ln of each cell's best loss regressed on ln N and ln D (None
    unless some model size was run at two or more token counts)."""
    by_size: dict[float, set[float]] = {}
    for fit in optima:
        by_size.setdefault(fit.cell.params, set()).add(fit.cell.tokens)
    if max(len(tokens) for tokens in by_size.values()) < 2:
        return None
    columns, keep = design([f.cell for f in optima])
    if 2 not in keep:
        return None
    solution = np.linalg.lstsq(columns, np.log([float(f.cell.loss.min()) for f in optima]), rcond=None)[0]
    return float(solution[keep.index(2)])


def _interval(draws: np.ndarray, level: float, values: np.ndarray, edge: str | None
              ) -> tuple[float | None, float | None]:
    """The central interval at `level` of bootstrap draws (ln) of an optimum on an axis the cell
    measured at `values`: one-sided at the edge an optimum beyond the grid lies past ((None,
    smallest) below it), an end a resample clamped to the grid's edge open (None)."""
    low, high = float(values.min()), float(values.max())
    if edge is not None:
        return (None, low) if edge == "below" else (high, None)
    if not draws.size:
        return None
    tail = (1 - level) / 2 * 100
    lower, upper = (float(v) for v in np.exp(np.percentile(draws, [tail, 100 - tail])))
    return (None if lower <= low * (1 + 1e-9) else lower, None if upper >= high * (1 - 1e-9) else upper)


def _cell_record(fit: CellFit, draws: np.ndarray, level: float, whole: CellFit | None = None) -> CellOptimum:
    """A cell's optimum with its bootstrap intervals at `level` (None without resamples), one-sided
    where it lies beyond the grid; `whole`: the optimum of all the cell's batch sizes where the law
    is the rate at one of them (`_at_one_batch`), whose batch edge the record keeps."""
    cell, surface = fit.cell, fit.surface
    best = cell.best
    exponent = surface.lr_batch_exponent if surface is not None else None
    lr_interval = _interval(draws[:, 0], level, cell.lr, fit.lr_edge) if draws.shape[0] or fit.lr_edge else None
    batch_edge, batch_interval = fit.batch_edge, None
    if whole is not None and whole.batch_edge is not None:
        batch_edge = whole.batch_edge
        batch_interval = _interval(np.empty(0), level, whole.cell.batch_tokens, batch_edge)
    elif fit.batch_located or batch_edge is not None:
        batch_interval = _interval(draws[:, 1], level, cell.batch_tokens, batch_edge) \
            if draws.shape[0] or batch_edge else None
    return CellOptimum(
        params=cell.params, tokens=cell.tokens, runs=int((cell.whole or cell).loss.size), runs_fitted=fit.runs_fitted,
        lr=fit.lr, lr_interval=lr_interval, batch_tokens=fit.batch_tokens, batch_interval=batch_interval,
        loss=fit.loss, convex=surface is not None, at_edge=fit.at_edge or batch_edge is not None,
        best_run=RunPoint(lr=float(cell.lr[best]), batch_tokens=float(cell.batch_tokens[best]), loss=float(cell.loss[best])),
        lr_batch_exponent=None if exponent is None or not math.isfinite(exponent) else exponent,
        sqrt_penalty=sqrt_penalty(surface), settings=cell.settings, lr_edge=fit.lr_edge, batch_edge=batch_edge,
        batch_located=fit.batch_located, located=fit.located, **dict(cell.setting))
