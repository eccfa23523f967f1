"""Many independent bound-constrained minimisations solved together: batched projected L-BFGS.

Every start (a row of `x0`) keeps its own curvature history, step size and stopping state; they
share only the tensor operations. A start that has stopped drops out of the batch, so the cost of an
iteration follows the number of starts still moving.

The solver's bookkeeping runs on numpy arrays (a few tiny arrays per iteration, where a torch call's
dispatch costs several times its arithmetic: half the time of a default fit); the objective is
torch's, called on tensors that share the arrays' memory (`_on_arrays`).

Per start, this is L-BFGS (two-loop recursion, Nocedal & Wright Alg. 7.4) with a projected
backtracking (Armijo) line search: coordinates held at a bound by the gradient are frozen for the
step, and trial points are clipped into the box. Stopping rules follow SciPy's L-BFGS-B: projected
gradient max-norm <= gtol, or relative decrease of the objective <= ftol; a line search that fails
along a direction built from curvature pairs drops the pairs and tries again from steepest descent
(L-BFGS-B's restart), so a start stops on a failed search only where steepest descent fails too.
Without that restart, where a start stopped (and whether the best start of a fit counted as
converged) depended on the last bits of its stale pairs, so on the CPU.
The starts share tensor operations only, so a batch can be split anywhere without changing results
beyond rounding (a reduction may round a row differently with the rows around it; `polish` is what
makes the fitted laws independent of that).

`polish` takes the best few outcomes of each problem on to a much tighter tolerance: where the runs
barely pin a law down (a flat valley of the objective), where a start stops at the usual tolerance
depends on floating-point rounding (the CPU, the order of the runs), and so does the law, unless
the best starts are followed to the valley's true minimum.

A polish may run in a `Chart`: coordinates of the form's choosing in which the valley is straight
(`logspace.power_chart`), so the crawl along it takes hundreds of iterations, not thousands; it then
finishes in the form's own coordinates and box, from where the chart's run ended.

`minimize_lbfgs_screened` spends that work where it pays on a large grid of starts: every start
takes a few cheap (float32) iterations, then only the most promising are continued to convergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from distillscale.laws.ties import first_lowest

# Objective for a batch: (x of shape (B, P), indices of those starts) -> (value (B,), gradient (B, P)),
# computed in x's dtype.
BatchObjective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

CONVERGED_GTOL, CONVERGED_FTOL, MAX_ITERATIONS, LINE_SEARCH_FAILED, SCREENED_OUT = 0, 1, 2, 3, 4
STATUS_MESSAGES = {
    CONVERGED_GTOL: "projected gradient below gtol",
    CONVERGED_FTOL: "relative reduction of the objective below ftol",
    MAX_ITERATIONS: "maximum number of iterations reached",
    LINE_SEARCH_FAILED: "line search found no decrease",
    SCREENED_OUT: "not continued: objective after screening not among the best",
}
# The line search's rounds: a batch of fewer starts than ROUND_ROWS (where an evaluation costs its
# dispatch, about the same for 1 to 100 rows) tries several halvings per start in every round, at
# most FIRST_ROUND_HALVINGS in the first (most starts take the full step).
ROUND_ROWS = 64
FIRST_ROUND_HALVINGS = 4
# The per-start arrays of a MultiStartResult.
PER_START = ("xs", "funs", "nits", "nfevs", "grad_norms", "statuses")


@dataclass(frozen=True)
class Screening:
    """Screen a grid of starts: `iterations` L-BFGS iterations from every start in `dtype`, then
    continue the best `keep` fraction of them (at least `min_starts`) to convergence in float64."""

    iterations: int = 10
    keep: float = 0.02
    min_starts: int = 100
    dtype: torch.dtype = torch.float32

    def n_continued(self, n_starts: int) -> int:
        return min(n_starts, max(self.min_starts, math.ceil(self.keep * n_starts)))


@dataclass
class MultiStartResult:
    """Outcome of every start, SciPy-style for the best one (`x`, `fun`, `nit`, `success`, `message`).

    Per-start arrays: `xs` (S, P), `funs`, `nits`, `nfevs` (objective evaluations), `grad_norms`
    (projected, max-norm), `statuses`. A screened-out start keeps where screening left it and is
    never the best. `screening` records the screening phase, if there was one.
    """

    xs: np.ndarray
    funs: np.ndarray
    nits: np.ndarray
    nfevs: np.ndarray
    grad_norms: np.ndarray
    statuses: np.ndarray
    screening: dict | None = None

    @property
    def best(self) -> int:
        # Starts that reached one minimum differ in their last bits: the first of them (`first_lowest`).
        return first_lowest(np.where(self.statuses != SCREENED_OUT, self.funs, np.inf))

    @property
    def x(self) -> np.ndarray:
        return self.xs[self.best]

    @property
    def fun(self) -> float:
        return float(self.funs[self.best])

    @property
    def nit(self) -> int:
        return int(self.nits[self.best])

    @property
    def converged(self) -> np.ndarray:
        return np.isin(self.statuses, (CONVERGED_GTOL, CONVERGED_FTOL))

    @property
    def success(self) -> bool:
        return bool(self.converged[self.best])

    @property
    def message(self) -> str:
        return STATUS_MESSAGES[int(self.statuses[self.best])]

    def summary(self) -> dict:
        """Convergence of the best start and of all starts, for reports and JSON."""
        summary = {"success": self.success, "message": self.message, "fun": self.fun, "nit": self.nit,
                   "grad_norm": float(self.grad_norms[self.best]), "n_starts": len(self.funs),
                   "n_converged": int(self.converged.sum()),
                   "total_iterations": int(self.nits.sum()), "total_evaluations": int(self.nfevs.sum()),
                   "statuses": {STATUS_MESSAGES[code]: int((self.statuses == code).sum())
                                for code in STATUS_MESSAGES if (self.statuses == code).any()}}
        if self.screening is not None:
            summary["screening"] = self.screening
        return summary


def minimize_lbfgs(fun: BatchObjective, x0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                   *, history: int = 10, max_iter: int = 1000, gtol: float = 1e-5,
                   ftol: float = 2.2e-9, armijo: float = 1e-4, max_backtracks: int = 40,
                   ) -> MultiStartResult:
    """Minimise `fun` from every row of `x0` (S, P) within [lower, upper] (P,), all rows at once."""
    evaluate = _on_arrays(fun)
    dtype = _numpy_dtype(x0)
    lower, upper = _array(lower, dtype), _array(upper, dtype)
    x = np.clip(_array(x0, dtype), lower, upper)
    n_starts, n_params = x.shape
    all_starts = np.arange(n_starts)
    f, g = evaluate(x, all_starts)
    s_hist = np.zeros((n_starts, history, n_params), dtype)  # newest pair last; empty slots have rho = 0
    y_hist = np.zeros((n_starts, history, n_params), dtype)
    rho = np.zeros((n_starts, history), dtype)
    nit = np.zeros(n_starts, dtype=np.int64)
    nfev = np.ones(n_starts, dtype=np.int64)
    status = np.full(n_starts, MAX_ITERATIONS, dtype=np.int64)
    active = all_starts

    for _ in range(max_iter):
        xa, ga = x[active], g[active]
        free = ~(((xa <= lower) & (ga > 0)) | ((xa >= upper) & (ga < 0)))
        pg = ga * free
        done = np.abs(pg).max(axis=1) <= gtol
        status[active[done]] = CONVERGED_GTOL
        going = ~done
        active, xa, pg, free = active[going], xa[going], pg[going], free[going]
        if active.size == 0:
            break

        direction = -_two_loop(pg, s_hist[active], y_hist[active], rho[active]) * free
        # A stale history can give an ascent direction: fall back to steepest descent there.
        uphill = ~((direction * pg).sum(axis=1) < 0)
        direction[uphill] = -pg[uphill]
        # Without curvature information, take a first step of unit length (as SciPy does).
        fresh = np.abs(rho[active]).sum(axis=1) == 0
        step = np.ones(len(active), dtype=dtype)
        with np.errstate(divide="ignore"):
            step[fresh] = np.minimum(1.0 / np.linalg.norm(direction[fresh], axis=1), 1.0)

        x_new, f_new, g_new, accepted = _backtrack(evaluate, active, xa, f[active], pg, direction, step,
                                                   lower, upper, armijo, max_backtracks, nfev)
        # As L-BFGS-B does: a line search that fails along a direction built from curvature pairs
        # says the pairs are stale, not that the start has converged; drop them and try again from
        # steepest descent. Only a start that finds no decrease without any pairs stops here.
        stale = ~accepted & ~fresh
        restart = active[stale]
        s_hist[restart], y_hist[restart], rho[restart] = 0.0, 0.0, 0.0
        status[active[~accepted & fresh]] = LINE_SEARCH_FAILED
        nit[active] += 1
        moved = active[accepted]
        s, y = x_new[accepted] - xa[accepted], g_new[accepted] - g[moved]
        curvature = (s * y).sum(axis=1)
        # Relative to the objective itself, without SciPy's floor of 1: a summed Huber loss is
        # ~1e-3 at the optimum, where that floor would turn ftol into an early absolute stop.
        with np.errstate(divide="ignore", invalid="ignore"):
            reduction = (f[moved] - f_new[accepted]) / np.maximum(
                np.maximum(np.abs(f[moved]), np.abs(f_new[accepted])), dtype.type(1e-300))
        x[moved], f[moved], g[moved] = x_new[accepted], f_new[accepted], g_new[accepted]
        # Keep a pair only with positive curvature, so every start's inverse Hessian stays positive definite.
        keep = curvature > 1e-10 * (y * y).sum(axis=1)
        kept = moved[keep]
        s_hist[kept] = np.concatenate([s_hist[kept, 1:], s[keep, None]], axis=1)
        y_hist[kept] = np.concatenate([y_hist[kept, 1:], y[keep, None]], axis=1)
        with np.errstate(divide="ignore"):
            rho[kept] = np.concatenate([rho[kept, 1:], (1.0 / curvature[keep])[:, None]], axis=1)

        flat = reduction <= ftol
        status[moved[flat]] = CONVERGED_FTOL
        active = np.sort(np.concatenate([moved[~flat], restart]))
        if active.size == 0:
            break

    free = ~(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)))
    return MultiStartResult(xs=x, funs=f, nits=nit, nfevs=nfev, grad_norms=np.abs(g * free).max(axis=1),
                            statuses=status)


def _numpy_dtype(tensor) -> np.dtype:
    return np.dtype(str(tensor.dtype).removeprefix("torch.")) if isinstance(tensor, torch.Tensor) \
        else np.asarray(tensor).dtype


def _array(values, dtype: np.dtype) -> np.ndarray:
    """A writable numpy copy of `values` (a tensor or array) in `dtype`."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.array(values, dtype=dtype)


def _on_arrays(fun: BatchObjective):
    """`fun` on numpy arrays: the solver's bookkeeping is numpy's (a few small arrays per iteration,
    where each torch call's dispatch costs several times the arithmetic); the objective stays torch's."""
    def evaluate(x: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, grad = fun(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(index)))
        return np.array(value.detach().numpy()), np.array(grad.detach().numpy())
    return evaluate


def _two_loop(grad: np.ndarray, s_hist: np.ndarray, y_hist: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """H_k @ grad for each start from its own (s, y) pairs, newest last."""
    q = grad.copy()
    alphas = []
    for i in reversed(range(s_hist.shape[1])):
        a = rho[:, i] * (s_hist[:, i] * q).sum(axis=1)
        q -= a[:, None] * y_hist[:, i]
        alphas.append(a)
    # Initial scaling s'y / y'y from the newest pair (Nocedal & Wright Eq. 7.20); 1 without pairs.
    yy = (y_hist[:, -1] ** 2).sum(axis=1)
    with np.errstate(divide="ignore"):
        scale = np.where(rho[:, -1] > 0, 1.0 / np.maximum(rho[:, -1] * yy, grad.dtype.type(1e-300)),
                         np.ones_like(yy))
    r = scale[:, None] * q
    for i, a in zip(range(s_hist.shape[1]), reversed(alphas)):
        b = rho[:, i] * (y_hist[:, i] * r).sum(axis=1)
        r += s_hist[:, i] * (a - b)[:, None]
    return r


def _backtrack(evaluate, index: np.ndarray, x: np.ndarray, f: np.ndarray, grad: np.ndarray, direction: np.ndarray,
               step: np.ndarray, lower: np.ndarray, upper: np.ndarray, armijo: float, max_backtracks: int,
               nfev: np.ndarray, per_round: int | None = None):
    """Per-start projected Armijo backtracking: steps step, step/2, step/4, ... up to
    `max_backtracks` of them, the first that satisfies Armijo accepted. Returns (x, f, g, accepted)
    for every start and counts the evaluations in `nfev` as if the steps were tried one at a time.
    `evaluate(x, index)`: the objective on numpy arrays (`_on_arrays`).

    The first round tries each start's full step. Most accept it; the few that do not (often one
    start of a batch, near its minimum at rounding level) then try their next several halvings in
    one evaluation: as many as keep a round no larger than the first, or `per_round` (1: one at a
    time, as before; `bench/laws/fit_speed.py` compares). A batch of fewer than ROUND_ROWS starts (a
    polish: twenty starts, where an evaluation costs its dispatch, not its rows) fills each round to
    ROUND_ROWS trial points, and its first round tries each start's first few halvings with the full
    step, so a start that needs one costs no second evaluation of the batch. The accepted step, and
    so the result, is the one a sequential search would take: the same trial points, the first that
    passes (up to the rounding of a batch, above)."""
    x_new, f_new, g_new = x.copy(), f.copy(), np.zeros_like(x)
    accepted = np.zeros(len(x), dtype=bool)
    pending = np.arange(len(x))
    tried = 0
    rows = max(len(x), ROUND_ROWS)
    while pending.size and tried < max_backtracks:
        width = min(max_backtracks - tried, per_round or max(1, rows // pending.size))
        if tried == 0 and per_round is None:
            width = min(width, FIRST_ROUND_HALVINGS)
        halvings = np.ldexp(np.ones(width, dtype=x.dtype), -np.arange(tried, tried + width))  # exact powers of two
        starts = np.repeat(pending, width)
        trial = np.clip(x[starts] + (step[starts] * np.tile(halvings, len(pending)))[:, None] * direction[starts],
                        lower, upper)
        f_trial, g_trial = evaluate(trial, index[starts])
        # Armijo on the projected path: compare with the decrease the gradient promises there.
        promised = (grad[starts] * (trial - x[starts])).sum(axis=1)
        ok = (np.isfinite(f_trial) & (f_trial <= f[starts] + armijo * promised) & (promised < 0)
              ).reshape(len(pending), width)
        passed = ok.any(axis=1)
        first = np.where(passed, ok.argmax(axis=1), width - 1)   # argmax: the first True
        nfev[index[pending]] += first + 1
        row = np.arange(len(pending)) * width + first
        good = pending[passed]
        x_new[good], f_new[good], g_new[good] = trial[row[passed]], f_trial[row[passed]], g_trial[row[passed]]
        accepted[good] = True
        pending = pending[~passed]
        tried += width
    return x_new, f_new, g_new, accepted


def minimize_lbfgs_screened(fun: BatchObjective, x0: torch.Tensor, lower: torch.Tensor,
                            upper: torch.Tensor, screening: Screening = Screening(),
                            **options) -> MultiStartResult:
    """`minimize_lbfgs` from every row of `x0`, screened: every start first runs
    `screening.iterations` iterations in `screening.dtype`; the `screening.n_continued` starts with
    the lowest objective there then restart where they stopped, in x0's dtype, and run to
    convergence under `options`. The others keep their screening result with status SCREENED_OUT.
    With no more starts than would be continued, this is `minimize_lbfgs` on all of them.

    `nits` and `nfevs` count both phases; `options["max_iter"]` bounds the second.
    """
    n_starts, n_continued = len(x0), screening.n_continued(len(x0))
    if n_continued >= n_starts:
        return minimize_lbfgs(fun, x0, lower, upper, **options)
    cheap = screening.dtype
    screened = minimize_lbfgs(fun, x0.to(cheap), lower.to(cheap), upper.to(cheap),
                              **{**options, "max_iter": screening.iterations})
    ranking = np.argsort(np.where(np.isfinite(screened.funs), screened.funs, np.inf), kind="stable")
    continued = torch.as_tensor(np.sort(ranking[:n_continued]))
    final = minimize_lbfgs(lambda x, index: fun(x, continued[index]),
                           torch.as_tensor(screened.xs[continued]).to(x0.dtype), lower, upper, **options)

    merged = {name: getattr(screened, name).astype(getattr(final, name).dtype) for name in PER_START}
    merged["statuses"][:] = SCREENED_OUT
    _continue_rows(merged, continued.numpy(), final)
    return MultiStartResult(**merged, screening={
        "iterations": screening.iterations, "dtype": str(cheap).removeprefix("torch."),
        "n_continued": n_continued, "total_evaluations": int(screened.nfevs.sum())})


@dataclass(frozen=True)
class Chart:
    """Other coordinates z for a minimisation over x: `to_x(z)`, its inverse `to_z(x)`, and
    `pullback(z, grad_x)`, the gradient with respect to z (the Jacobian of `to_x`, transposed, times
    grad_x). Rows are starts. `lower` and `upper` bound z; x's own box is kept by clamping: the
    objective in the chart is fun(clamp(to_x(z))), flat beyond the box, so its minima are the
    minima of fun in the box."""

    to_x: Callable[[torch.Tensor], torch.Tensor]
    to_z: Callable[[torch.Tensor], torch.Tensor]
    pullback: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    lower: torch.Tensor
    upper: torch.Tensor

    def objective(self, fun: BatchObjective, lower: torch.Tensor, upper: torch.Tensor) -> BatchObjective:
        """`fun` over z, x clamped into [lower, upper]."""

        def in_chart(z: torch.Tensor, index: torch.Tensor):
            x = self.to_x(z)
            low, high = lower.to(x.dtype), upper.to(x.dtype)
            value, grad = fun(torch.clamp(x, low, high), index)
            return value, self.pullback(z, grad * ((x >= low) & (x <= high)))

        return in_chart


def polish(fun: BatchObjective, result: MultiStartResult, lower: torch.Tensor, upper: torch.Tensor,
           groups: np.ndarray | None = None, *, keep: int = 10, converged_gtol: float | None = None,
           chart: Chart | None = None, **options) -> MultiStartResult:
    """`result` with the `keep` best starts of each group (one group without `groups`: a start's
    problem, e.g. a backtest fold) minimised again from where they stopped under `options` (a
    tighter tolerance); with a `chart`, first in its coordinates, then in x's from where that ended.
    Polished rows keep their place; their iterations and evaluations add up. A polish that ends
    with its projected gradient below `converged_gtol` (the first run's tolerance) counts as
    converged there, however it stopped (usually a line search at machine precision)."""
    funs = np.where(np.isfinite(result.funs) & (result.statuses != SCREENED_OUT), result.funs, np.inf)
    groups = np.zeros(len(funs), dtype=int) if groups is None else np.asarray(groups)
    rows = []
    for group in np.unique(groups):
        mine = np.flatnonzero((groups == group) & np.isfinite(funs))
        rows += list(mine[np.argsort(funs[mine], kind="stable")[:keep]])
    if not rows:
        return result
    rows = np.sort(rows)
    index = torch.as_tensor(rows)

    def on_rows(x: torch.Tensor, i: torch.Tensor):
        return fun(x, index[i])

    merged = {name: getattr(result, name).copy() for name in PER_START}
    if chart is not None:
        charted = minimize_lbfgs(chart.objective(on_rows, lower, upper), chart.to_z(torch.as_tensor(result.xs[rows])),
                                 chart.lower, chart.upper, **options)
        _continue_rows(merged, rows, charted)
        merged["xs"][rows] = torch.clamp(chart.to_x(torch.as_tensor(charted.xs)), lower, upper).numpy()
    again = minimize_lbfgs(on_rows, torch.as_tensor(merged["xs"][rows]), lower, upper, **options)
    _continue_rows(merged, rows, again)
    if converged_gtol is not None:
        merged["statuses"][rows[again.grad_norms <= converged_gtol]] = CONVERGED_GTOL
    return MultiStartResult(**merged, screening=result.screening)


def _continue_rows(merged: dict[str, np.ndarray], rows: np.ndarray, again: MultiStartResult) -> dict[str, np.ndarray]:
    """`merged` (per-start arrays, changed in place) with `rows` continued by `again`: where they
    ended replaced, the iterations and evaluations added."""
    for name in ("xs", "funs", "grad_norms", "statuses"):
        merged[name][rows] = getattr(again, name)
    for name in ("nits", "nfevs"):
        merged[name][rows] += getattr(again, name)
    return merged
