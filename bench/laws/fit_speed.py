"""Vectorised multi-start fitter vs a plain SciPy L-BFGS-B loop over the same grid and data; variable
projection vs the grid; the whole `fit --form auto` (three forms, backtests, 1000-sample bootstrap);
that default fit with the line search's halvings tried several per evaluation (as shipped) vs one
at a time (as before).

    python bench/laws/fit_speed.py                    # Chinchilla grid (4,500 starts); SciPy on 300 of them
    python bench/laws/fit_speed.py --scipy-starts 4500 # the SciPy loop over the whole grid (minutes)
    python bench/laws/fit_speed.py --distillation     # also the 108,000-start distillation grid, 700 runs

Data: Epoch's extraction of Chinchilla Fig. 4 (five highest losses dropped) when ../shared/data is
beside the checkout, else 240 synthetic runs from the epoch2024 law. Prints both optima, wall and
process CPU time (the CPU time is what to compare on a busy machine), objective evaluations and
iterations, and the speed ratio measured side by side in this run. The vectorised fitter runs
screened (its default) and, with --every-start, also with every start run to convergence.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from distillscale.laws import lbfgs, load_laws
from distillscale.laws.fitting import DistillationLawFitter, SupervisedLawFitter
from distillscale.laws.objective import huber
from distillscale.laws.logspace import CHINCHILLA
from distillscale.laws.selection import fit_supervised
from distillscale.tables import read_table

SHARED = Path(os.environ.get("DISTILLSCALE_SHARED", Path(__file__).resolve().parents[3] / "shared"))


def chinchilla_runs():
    path = SHARED / "data" / "chinchilla_fig4_epoch_extracted.csv"
    if path.exists():
        runs = read_table(path).numeric(["Model Size", "Training FLOP", "loss"])
        keep = np.argsort(runs["loss"])[:-5]
        N, C, loss = runs["Model Size"][keep], runs["Training FLOP"][keep], runs["loss"][keep]
        return f"Epoch extraction of Chinchilla Fig. 4 ({len(N)} runs)", N, C / (6 * N), loss
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(4e7), np.log(1.6e10), 240))
    D = N * np.exp(rng.uniform(np.log(2), np.log(300), 240))
    loss = load_laws("epoch2024").supervised.predict(N, D) * np.exp(rng.normal(0, 0.01, 240))
    return "240 synthetic runs from epoch2024", N, D, loss


def scipy_loop(starts: np.ndarray, N, D, loss, delta: float):
    """The usual approach: scipy.optimize.minimize(L-BFGS-B) once per start, autograd gradient."""
    data = {"log_n": torch.as_tensor(np.log(N)), "log_d": torch.as_tensor(np.log(D))}
    log_loss = torch.as_tensor(np.log(loss))
    bounds = [p.bounds for p in CHINCHILLA.parameters]

    def objective(x):
        theta = torch.as_tensor(x)[None].requires_grad_()
        value = huber(CHINCHILLA.log_loss(theta, data)[0] - log_loss, delta).sum()
        (grad,) = torch.autograd.grad(value, theta)
        return value.item(), grad[0].numpy()

    results = [minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds) for x0 in starts]
    best = min(results, key=lambda r: r.fun)
    return best, sum(r.success for r in results)


class Timer:
    """Wall and process CPU time of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self):
        return f"{self.wall:.1f} s wall, {self.cpu:.1f} s CPU"


def describe(fitter) -> str:
    summary = fitter.result_.summary()
    screening = summary.get("screening")
    starts = (f"{screening['n_continued']} of {summary['n_starts']} starts continued after "
              f"{screening['iterations']} {screening['dtype']} iterations" if screening
              else f"all {summary['n_starts']} starts run to convergence")
    return (f"objective {summary['fun']:.8g} ({summary['message']}), {starts}; "
            f"{summary['total_evaluations']:,} start-evaluations, {summary['total_iterations']:,} iterations")


def summed_huber(law_predictions, loss, delta: float) -> float:
    residual = torch.as_tensor(np.log(law_predictions) - np.log(loss))
    return float(huber(residual, delta).sum())


def compare_line_searches(N, D, loss, label: str) -> None:
    """The default fit (backtest, 100-sample bootstrap) with the line search's halvings tried one at
    a time, then several per evaluation (as shipped), side by side: CPU time, evaluation rounds, and
    the largest difference between the two laws' predictions over the runs (rounding only)."""
    shipped = lbfgs._backtrack
    outcomes = []  # (timer, the law's predictions over the runs, line-search evaluations) per search
    for name, per_round in (("one halving per evaluation (before)", 1), ("several per evaluation", None)):
        evaluations = [0]

        def counted(evaluate, *args, per_round=per_round, **kwargs):
            def evaluate_counted(x, index):
                evaluations[0] += 1
                return evaluate(x, index)
            return shipped(evaluate_counted, *args, **kwargs, per_round=per_round)

        lbfgs._backtrack = counted
        try:
            with Timer() as timer:
                fit = fit_supervised(N, D, loss, bootstrap=100, seed=0)
        finally:
            lbfgs._backtrack = shipped
        outcomes.append((timer, fit.law.predict(N, D), evaluations[0]))
        print(f"default fit on {label}, line search with {name}: {timer}; {evaluations[0]:,} line-search evaluations")
    (before, old, before_evaluations), (after, new, after_evaluations) = outcomes
    print(f"speed ratio (one at a time / several per evaluation): {before.cpu / after.cpu:.2f}x CPU, "
          f"{before_evaluations / after_evaluations:.1f}x fewer evaluations; "
          f"largest relative difference of the two laws over the runs {np.max(np.abs(new / old - 1)):.1e}")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scipy-starts", type=int, default=300,
                        help="time the SciPy loop on this many random starts and extrapolate")
    parser.add_argument("--every-start", action="store_true",
                        help="also time the vectorised fitter without screening")
    parser.add_argument("--distillation", action="store_true", help="also time the distillation grid")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the SciPy loop is single-threaded too; the fitter uses one by default

    source, N, D, loss = chinchilla_runs()
    print(f"data: {source}; Chinchilla grid, {len(CHINCHILLA.grid())} starts, summed Huber delta 1e-3")
    with Timer() as vectorised:
        fitter = SupervisedLawFitter("chinchilla", huber_delta=1e-3, bootstrap=0, solver="grid").fit(N, D, loss)
    print(f"vectorised, screened: {vectorised}; {describe(fitter)}")
    print("  " + ", ".join(f"{k}={v:.6g}" for k, v in fitter.law_.coefficients().items()))
    if args.every_start:
        with Timer() as everything:
            unscreened = SupervisedLawFitter("chinchilla", bootstrap=0, screening=None, solver="grid").fit(N, D, loss)
        print(f"vectorised, every start: {everything}; {describe(unscreened)}")
    with Timer() as projected:
        varpro = SupervisedLawFitter("chinchilla", huber_delta=1e-3, bootstrap=0).fit(N, D, loss)
    print(f"variable projection (the default): {projected}; {describe(varpro)}; objective "
          f"{varpro.result_.fun / fitter.result_.fun - 1:+.1e} relative to the grid's; speed ratio "
          f"(grid / variable projection) {vectorised.wall / projected.wall:.1f}x wall")
    with Timer() as auto:
        selected = fit_supervised(N, D, loss, bootstrap=1000)
    scores = ", ".join(f"{c.name} {c.score:.2%}" for c in selected.candidates)
    print(f"fit --form auto (3 forms x {len(selected.backtest.folds)} backtest folds, 1000-sample bootstrap): "
          f"{auto} (target <= 10 s); backtest errors {scores}; chosen {selected.chosen}")
    compare_line_searches(N, D, loss, "every run")
    small = N < 2e8
    compare_line_searches(N[small], D[small], loss[small], f"a ladder below 200M parameters ({small.sum()} runs)")

    grid = CHINCHILLA.grid().numpy()
    if args.scipy_starts < len(grid):
        subset = np.random.default_rng(0).choice(len(grid), args.scipy_starts, replace=False)
        starts, scale = grid[subset], len(grid) / args.scipy_starts
    else:
        starts, scale = grid, 1.0
    with Timer() as scipy_timer:
        best, n_success = scipy_loop(starts, N, D, loss, 1e-3)
    label = (f"EXTRAPOLATED x{scale:.0f} from {len(starts)} random starts ({scipy_timer} measured)"
             if scale > 1 else "measured")
    print(f"SciPy L-BFGS-B loop: {scipy_timer.wall * scale:.1f} s wall, {scipy_timer.cpu * scale:.1f} s CPU "
          f"({label}), objective {best.fun:.8g}, {n_success}/{len(starts)} starts converged")
    print("  " + ", ".join(f"{k}={v:.6g}" for k, v in CHINCHILLA.to_coefficients(best.x).items()))
    print(f"speed ratio (SciPy loop / vectorised, screened): {scipy_timer.wall * scale / vectorised.wall:.1f}x "
          f"wall, {scipy_timer.cpu * scale / vectorised.cpu:.1f}x CPU")

    if args.distillation:
        laws = load_laws("busbridge2025")
        rng = np.random.default_rng(0)
        n = 700
        N_S = np.exp(rng.uniform(np.log(1e8), np.log(1e10), n))
        D_S = N_S * np.exp(rng.uniform(np.log(5), np.log(400), n))
        N_T = np.exp(rng.uniform(np.log(1e8), np.log(3e10), n))
        L_T = laws.supervised.predict(N_T, 20 * N_T)
        L_S = laws.distillation.predict(N_S, D_S, L_T) * np.exp(rng.normal(0, 0.005, n))
        with Timer() as timer:
            distilled = DistillationLawFitter(laws.supervised, bootstrap=0).fit(N_S, D_S, L_T, L_S)
        print(f"distillation grid on {n} synthetic runs (busbridge2025 law, 0.5% noise): {timer}; "
              f"{describe(distilled)}")
        truth = summed_huber(laws.distillation.predict(N_S, D_S, L_T), L_S, distilled.huber_delta)
        print(f"  objective at the true coefficients {truth:.8g}; found {distilled.result_.fun:.8g} "
              f"({distilled.result_.fun / truth - 1:+.2%}); RMSE of log-loss "
              f"{distilled.diagnostics_.rmse_log_loss:.4f}")


if __name__ == "__main__":
    main()
