"""Fitting the cross-ladder bias model (`laws.crossladder`) and a design's family term, and scoring
them on ladders they did not see.

The records (`FitSummary`, `BiasModel`, `FamilyTerm`, `BiasCorrection`) and what a law needs to
apply them live in `laws.crossladder`; this module holds what fits them across ladders: the table of
signed errors (`ErrorTable`), least absolute deviations with a ridge penalty (`fit_bias_model`), the
penalty and the spread chosen leaving a ladder out (`fit_with_spread`), and the scoring protocols:
leave one ladder out, or with `group` leave one *family* of ladders out (`published.family`: the
sets of one source leave together, so no sibling ladder teaches the model that scores one), and
for a design's members leave one member out (`leave_one_member_out`).

    table = ErrorTable(ladder, summaries, N, D, y)
    left = leave_one_ladder_out(table, ("dN/span", "dN"), group=published.family)   # leave one family out
    left.predicted                  # each row's log factor from the model that did not see its family
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from distillscale.laws.crossladder import (COVARIATES, BiasModel, ErrorCurve, FamilyTerm, FitSummary, MIN_SPAN,
                                           _groups, feature_matrix, spread_distance)

# Penalties tried (`choose_penalty`), on features scaled to unit weighted RMS: 0 is least squares.
PENALTIES = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# How a ladder's name maps to the unit left out together (None: each ladder alone).
Group = Callable[[str], str] | None


def _units(table: "ErrorTable", group: Group) -> dict[str, np.ndarray]:
    """The rows of each unit left out together: each ladder, or each group of ladders."""
    key = np.array([group(name) for name in table.ladder]) if group is not None else table.ladder
    return {unit: key == unit for unit in sorted(set(key.tolist()))}


# -- fitting the model across ladders ---------------------------------------------------------------


@dataclass(frozen=True)
class ErrorTable:
    """The signed errors of the default fit's predictions beyond its runs, pooled over ladders: one
    row per (ladder, fit, predicted run), with the fit's summary, the target (N, D) and
    y = ln(observed / raw prediction)."""

    ladder: np.ndarray          # the ladder's name, per row
    summaries: list[FitSummary]
    N: np.ndarray
    D: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, rows: np.ndarray) -> "ErrorTable":
        rows = np.asarray(rows)
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        return ErrorTable(self.ladder[index], [self.summaries[i] for i in index], self.N[index], self.D[index],
                          self.y[index])

    @property
    def ladders(self) -> list[str]:
        return sorted(set(self.ladder.tolist()))

    def weights(self) -> np.ndarray:
        """Each ladder weighs the same in total (rows of a ladder share its weight)."""
        _, inverse, counts = np.unique(self.ladder, return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse]

    def centres(self) -> dict[str, float]:
        """The covariates' means, each ladder weighing the same (the fits' exponents, sizes and the
        targets' ln(D/N))."""
        w = self.weights()
        values = {c: np.empty(len(self)) for c in COVARIATES}
        for rows in _groups(self.summaries).values():
            for c, v in self.summaries[rows[0]].covariates(self.N[rows], self.D[rows]).items():
                values[c][rows] = v
        return {c: float(np.sum(w * values[c]) / np.sum(w)) for c in COVARIATES}


# Least absolute deviations by iteratively reweighted least squares: these steps, and residuals
# below this floor weigh as if at it (so that a row on the fit does not take all the weight).
LAD_STEPS = 100
LAD_FLOOR = 1e-4


def fit_bias_model(table: ErrorTable, features, penalty: float, centres: dict[str, float] | None = None,
                   absolute: bool = True) -> BiasModel:
    """The features' coefficients (no intercept): each ladder weighing the same, least absolute
    deviations (`absolute`, the default: the median signed error, so the correction balances the
    signs and heavy-tailed ladders, such as runs inside the warm-up, pull it no more than others) or
    least squares, with a ridge penalty (`penalty` times the total weight, on features scaled to unit
    weighted RMS). The model's slope_sd is 0 here: `fit_with_spread` measures it."""
    features = tuple(features)
    centres = table.centres() if centres is None else centres
    x = feature_matrix(features, table.summaries, table.N, table.D, centres)
    w = table.weights()
    scale = np.sqrt(np.sum(w[:, None] * x ** 2, axis=0) / np.sum(w))
    scale = np.where(scale > 0, scale, 1.0)
    xs = x / scale
    ridge = penalty * np.sum(w) * np.eye(len(features))

    def solve(weights: np.ndarray) -> np.ndarray:
        return np.linalg.solve(xs.T @ (weights[:, None] * xs) + ridge, xs.T @ (weights * table.y))

    coefficients = np.zeros(len(features))
    if features:
        coefficients = solve(w)
        if absolute:
            # the ridge is on the scale of the squared loss: keep its weight relative to the rows'
            total = np.sum(w)
            for _ in range(LAD_STEPS):
                v = w / np.maximum(np.abs(table.y - xs @ coefficients), LAD_FLOOR)
                ridge = penalty * np.sum(v) * np.eye(len(features)) * (np.sum(w) / total)
                step = solve(v)
                done = np.max(np.abs(step - coefficients)) < 1e-10
                coefficients = step
                if done:
                    break
        coefficients = coefficients / scale
    return BiasModel(features=features, coefficients=tuple(float(c) for c in coefficients),
                     centres={c: centres[c] for c in COVARIATES}, penalty=float(penalty), slope_sd=0.0,
                     ladders=tuple(table.ladders), n_rows=len(table))


# The distances (target N over the largest fitted N) whose errors choose the penalty: those the
# validation pack scores (2-8x beyond the fitted sizes).
CRITERION_BAND = (2.0, 8.0)


def _residual_loss(table: ErrorTable, predicted: np.ndarray) -> float:
    """The criterion a penalty is chosen by: the mean over ladders of each ladder's mean |y - prediction|
    over its rows in CRITERION_BAND (all its rows when it has none there)."""
    errors = np.abs(table.y - predicted)
    distance = table.N / np.array([s.params_max for s in table.summaries])
    band = (distance > CRITERION_BAND[0]) & (distance <= CRITERION_BAND[1])
    means = []
    for name in table.ladders:
        mine = table.ladder == name
        means.append(errors[mine & band].mean() if np.any(mine & band) else errors[mine].mean())
    return float(np.mean(means))


def choose_penalty(table: ErrorTable, features, penalties=PENALTIES, group: Group = None) -> float:
    """The penalty with the lowest leave-one-ladder-out criterion on `table` (its ladders only; with
    `group`, leaving one group of its ladders out at a time)."""
    best, best_loss = penalties[0], math.inf
    for penalty in penalties:
        predicted = np.zeros(len(table))
        for inside in _units(table, group).values():
            model = fit_bias_model(table.subset(~inside), features, penalty)
            predicted[inside] = predict_rows(model, table.subset(inside))
        loss = _residual_loss(table, predicted)
        if loss < best_loss - 1e-12:
            best, best_loss = penalty, loss
    return float(best)


def predict_rows(model: BiasModel, table: ErrorTable) -> np.ndarray:
    """The model's y (log factor) for every row of `table`."""
    return feature_matrix(model.features, table.summaries, table.N, table.D, model.centres) @ \
        np.asarray(model.coefficients, float)


def slope_spread(table: ErrorTable, residuals: np.ndarray, distance: np.ndarray) -> float:
    """The spread of the residuals' slope in distance across ladders: per ladder the median of
    residual / distance over its rows beyond the runs (robust to a few runs inside the warm-up),
    then their root mean square (each ladder the same weight). What a ladder's own bias departs
    from the pooled one, per unit of distance."""
    slopes = []
    for name in table.ladders:
        inside = (table.ladder == name) & (distance > 0)
        if inside.any():
            slopes.append(float(np.median(residuals[inside] / distance[inside])))
    return float(np.sqrt(np.mean(np.square(slopes)))) if slopes else 0.0


@dataclass(frozen=True)
class LeftOut:
    """Leave one ladder out: per ladder, the model fitted on the others alone (its penalty chosen
    on them alone, its slope_sd from their own leave-one-out residuals) and its log factor for
    every row of the left-out ladder."""

    models: dict[str, BiasModel]
    predicted: np.ndarray       # per row of the table, from the model that did not see its ladder


def fit_with_spread(table: ErrorTable, features, penalties=PENALTIES,
                    fit: Callable[..., BiasModel] = fit_bias_model, group: Group = None) -> BiasModel:
    """The model on `table`: its penalty chosen leaving one of its ladders (with `group`: one group of
    them) out at a time, its slope_sd the spread of those left-out residual slopes (per ladder)."""
    penalty = choose_penalty(table, features, penalties, group) if len(penalties) > 1 else penalties[0]
    predicted = np.zeros(len(table))
    for inside in _units(table, group).values():
        predicted[inside] = predict_rows(fit(table.subset(~inside), features, penalty), table.subset(inside))
    model = fit(table, features, penalty)
    distance = np.array([float(spread_distance(model.spread_on, s, n, d))
                         for s, n, d in zip(table.summaries, table.N, table.D)])
    return model.model_copy(update={"slope_sd": min(slope_spread(table, table.y - predicted, distance), 1.0)})


def leave_one_ladder_out(table: ErrorTable, features, penalties=PENALTIES,
                         fit: Callable[[ErrorTable], BiasModel] | None = None, group: Group = None) -> LeftOut:
    """For each ladder (with `group`, each group of ladders: a family, `published.family`), the model
    fitted without it (`fit(table of the others)`, by default `fit_with_spread`: the penalty and
    spread chosen on the others alone too, leaving their groups out in turn), and its log factor for
    its rows; `models` by ladder name. What is left out contributes nothing to what scores it."""
    fit = fit or (lambda others: fit_with_spread(others, features, penalties, group=group))
    models, predicted = {}, np.zeros(len(table))
    for inside in _units(table, group).values():
        model = fit(table.subset(~inside))
        for name in set(table.ladder[inside].tolist()):
            models[name] = model
        predicted[inside] = predict_rows(model, table.subset(inside))
    return LeftOut(models, predicted)


# The bins of `fit_error_curve`: dN (e-folds beyond the largest fitted size) and the fitted span
# (e-folds), and the fewest rows a bin needs to count.
CURVE_DN_BINS = np.linspace(0.0, 2.8, 9)
CURVE_SPAN_BINS = (0.0, 1.2, 2.0, 2.8, 3.6, 9.0)
CURVE_MIN_ROWS = 30


def fit_error_curve(table: ErrorTable, residuals: np.ndarray) -> ErrorCurve:
    """The typical |residual| (of corrections that did not see the residual's ladder) against dN and
    span: each bin's median, fitted in log by least squares weighted by sqrt(rows), then the ratio
    of the 90% quantile of |residual| / curve over every row (each ladder weighing the same)."""
    from scipy.optimize import minimize

    dN = np.array([float(s.distances(n, d)[0]) for s, n, d in zip(table.summaries, table.N, table.D)])
    span = np.array([max(s.span, MIN_SPAN) for s in table.summaries])
    size = np.abs(np.asarray(residuals, float))
    bins = []
    for low, high in zip(CURVE_DN_BINS[:-1], CURVE_DN_BINS[1:]):
        for first, last in zip(CURVE_SPAN_BINS[:-1], CURVE_SPAN_BINS[1:]):
            inside = (dN > low) & (dN <= high) & (span > first) & (span <= last)
            if inside.sum() >= CURVE_MIN_ROWS:
                bins.append((np.median(dN[inside]), np.median(span[inside]), max(np.median(size[inside]), 1e-6),
                             inside.sum()))
    bins = np.array(bins)

    def curve(p, distance, s):
        return np.sqrt(p[0] ** 2 + (p[1] * distance) ** 2 + (p[2] * distance / s) ** 2)

    def objective(p):
        return float(np.sum(np.sqrt(bins[:, 3]) * (np.log(bins[:, 2]) - np.log(curve(p, bins[:, 0], bins[:, 1]))) ** 2))

    p = np.abs(minimize(objective, [0.005, 0.005, 0.005], method="Nelder-Mead",
                        options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12}).x)
    ratio = size / curve(p, dN, span)
    order = np.argsort(ratio)
    weights = table.weights()[order]
    band = float(ratio[order][np.searchsorted(np.cumsum(weights) / weights.sum(), 0.9)])
    return ErrorCurve(floor=float(p[0]), per_efold=float(p[1]), per_lever=float(p[2]), band_ratio=band)


# -- a design's family term (its members: one sweep of the design per corpus) ----------------------


def fit_family_term(table: ErrorTable, features, name: str, design: str, after=(),
                    penalties=PENALTIES) -> FamilyTerm:
    """The family term on the members of `table` (each a "ladder": one sweep of the design), y the
    residuals after the pack's correction: least absolute deviations, each member weighing the same,
    the penalty chosen and the spread measured leaving one member out at a time (`fit_with_spread`),
    the spread on the term's own distance; `reach` the largest dN among the rows."""
    features = tuple(features)
    spread_on = "dN/span" if features == ("dN/span",) else "dN"

    def fit(part: ErrorTable, features, penalty: float) -> BiasModel:
        return fit_bias_model(part, features, penalty).model_copy(update={"spread_on": spread_on})

    model = fit_with_spread(table, features, penalties, fit=fit)
    reach = max(float(s.distances(n, d)[0]) for s, n, d in zip(table.summaries, table.N, table.D))
    return FamilyTerm(name=name, design=design, model=model, reach=max(reach, 1e-6),
                      after=tuple(float(c) for c in after))


def leave_one_member_out(table: ErrorTable, features, name: str = "family", design: str = "design", after=(),
                         penalties=PENALTIES) -> tuple[dict[str, FamilyTerm], np.ndarray]:
    """For each member of `table`, the family term fitted on the others alone (`fit_family_term`: its
    penalty and spread chosen on them alone too) and its log factor for that member's rows. The
    left-out member contributes nothing to the term that scores it."""
    terms, predicted = {}, np.zeros(len(table))
    for member in table.ladders:
        inside = table.ladder == member
        terms[member] = fit_family_term(table.subset(~inside), features, name, design, after, penalties)
        part = table.subset(inside)
        for rows in _groups(part.summaries).values():
            predicted[np.flatnonzero(inside)[rows]] = terms[member].log_factor(
                part.summaries[rows[0]], part.N[rows], part.D[rows])
    return terms, predicted
