"""Hyperparameter laws on Step Law's public lr x batch grid (bench/data/steplaw_grid, SLDBench, MIT).

Every cell of the largest model (N = 1.07B) is held back: `fit_hyperparameters` sees only the 15
cells below 1B (it chooses how to fit the laws across cells, its surface window and batch form by
leave-one-cell-out among the 12 below 537M, and backtests on their largest size, 537M); the held-back cells are scored once, with the fitted law and,
beside it, the steplaw2025 and deepseek2024 presets. The score of a recommendation is the loss of the
measured run nearest it in (ln lr, ln B) against the cell's best run (Step Law's own test: 0.094%;
target here 0.15%). Each cell's measured batch exponent of the optimal rate (d ln lr* / d ln B along
its surface's ridge; Hoffer's square-root rule: 0.5) is printed too.

    python bench/laws/hyperparameters_steplaw.py            # the tables
    python bench/laws/hyperparameters_steplaw.py --json     # the same as JSON
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from distillscale.laws.hyperparameters import fit_hyperparameters, load_hyperparameter_law, score_cells
from distillscale.laws.hyperparameters.surface import cell_optimum, split_cells

GRID = Path(__file__).resolve().parents[1] / "data" / "steplaw_grid" / "runs.csv"
HELD_BACK_PARAMS = 1e9   # cells with N above this are held back


def _cells(runs: pd.DataFrame):
    return split_cells(*(runs[k].to_numpy(float) for k in ("params", "tokens", "lr", "batch_tokens", "loss")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    args = parser.parse_args()

    runs = pd.read_csv(GRID)
    fitted_runs, held_runs = runs[runs.params < HELD_BACK_PARAMS], runs[runs.params > HELD_BACK_PARAMS]
    start = time.perf_counter()
    fit = fit_hyperparameters(fitted_runs, bootstrap=args.bootstrap, name="steplaw-grid<1B",
                              source=f"fitted to {GRID.name} (cells below 1B)")
    seconds = time.perf_counter() - start
    window = fit.law.fit.window
    held = _cells(held_runs)
    laws = {"fitted": fit.law, "steplaw2025": load_hyperparameter_law("steplaw2025"),
            "deepseek2024": load_hyperparameter_law("deepseek2024")}
    scores = {name: score_cells(law, held, window) for name, law in laws.items()}
    covered = {name: [_covers(law, cell, window) for cell in held] for name, law in laws.items()}
    result = {
        "fit_seconds": seconds, "selection": fit.selection.model_dump(mode="json"),
        "law": {"method": fit.law.fit.method, "lr": fit.law.lr.model_dump(), "batch": fit.law.batch.model_dump(),
                "lr_batch_exponent": fit.law.lr_batch_exponent,
                "lr_batch_exponent_interval": fit.law.lr_batch_exponent_interval,
                "sqrt_penalty": fit.law.fit.sqrt_penalty},
        "cells": [cell.model_dump(mode="json") for cell in fit.cells],
        "backtest": [s.to_dict() for s in fit.backtest or []],
        "held_back": {name: [s.to_dict() for s in cell_scores] for name, cell_scores in scores.items()},
        "held_back_inside_intervals": covered,
        "held_back_exponents": [cell_optimum(c, window).surface.lr_batch_exponent for c in held],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(fit, result, scores, seconds)
    return 0


def _covers(law, cell, window) -> dict[str, bool]:
    """Whether the law's 90% intervals hold the cell's own optimum (its surface's, `window`)."""
    rec, optimum = law.recommend(cell.params, cell.tokens), cell_optimum(cell, window)
    return {"lr": rec.lr_interval[0] <= optimum.lr <= rec.lr_interval[1],
            "batch": rec.batch_interval[0] <= optimum.batch_tokens <= rec.batch_interval[1]}


def _print(fit, result, scores, seconds) -> None:
    law = fit.law
    print(f"fitted in {seconds:.1f} s on {len(fit.cells)} cells; laws across cells by {law.fit.method}, surface "
          f"window {law.fit.window}, batch form {law.fit.batch_form} ({fit.selection.reason})")
    for c in fit.selection.candidates:
        print(f"  {c.method:>14} window {str(c.window):>5} B*({c.batch_form:>3}): leave-one-cell-out mean "
              f"{c.mean_penalty:.3%}, max {c.max_penalty:.3%}")
    print(f"lr* = {law.lr.coefficient:.4g} N^{law.lr.exponents[0]:.3f} D^{law.lr.exponents[1]:.3f}   "
          f"B* = {law.batch.coefficient:.4g} N^{law.batch.exponents[0]:.3f} D^{law.batch.exponents[1]:.3f} tokens")
    low, high = law.lr_batch_exponent_interval
    print(f"batch exponent of the optimal lr: median {law.lr_batch_exponent:.2f} over cells ({low:.2f}-{high:.2f}; "
          f"sqrt rule 0.5); sqrt scaling at 4 B* costs {law.fit.sqrt_penalty:.3%} (median)")
    print("\ncell (N, D)            lr*      B* (tok)  exponent  sqrt penalty")
    for c in fit.cells:
        print(f"{c.params:9.3g} {c.tokens:9.3g}  {c.lr:.2e}  {c.batch_tokens:9.3g}  "
              f"{c.lr_batch_exponent:8.2f}  {c.sqrt_penalty:.3%}")
    if fit.backtest:
        print("\nbacktest (largest fitted size held out of the fit):")
        for s in fit.backtest:
            print(f"  {s.params:.3g} {s.tokens:.3g}: lr x{s.lr_ratio:.2f}, B x{s.batch_ratio:.2f} of the optimum, "
                  f"nearest run {s.penalty:.3%} above the best")
    print("\nheld back (N = 1.07B; never fitted, chosen or tuned on): nearest run's loss vs the cell's best")
    print("D (tokens)  best run loss  exponent | " + " | ".join(f"{name:>29}" for name in scores))
    for i, exponent in enumerate(result["held_back_exponents"]):
        row = [scores[name][i] for name in scores]
        print(f"{row[0].tokens:10.3g}  {row[0].best_loss:13.4f}  {exponent:8.2f} | " + " | ".join(
            f"lr {s.lr:.2e} B {s.batch_tokens:8.3g} {s.penalty:6.3%}" for s in row))
    print("mean                                  | " + " | ".join(
        f"{np.mean([s.penalty for s in scores[name]]):>29.3%}" for name in scores))
    print("cell optima inside the 90% intervals  | " + " | ".join(
        f"{'lr ' + str(sum(c['lr'] for c in cells)) + '/' + str(len(cells)) + ', B ' + str(sum(c['batch'] for c in cells)) + '/' + str(len(cells)):>29}"
        for cells in result["held_back_inside_intervals"].values()))


if __name__ == "__main__":
    raise SystemExit(main())
