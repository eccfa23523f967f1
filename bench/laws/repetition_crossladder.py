"""R_D* learned across ladders (issue 64 item 6), scored leave-one-ladder-out on Muennighoff et al.'s
C4 runs (`laws.published`, muennighoff2023_c4), whose unique-token budgets U are the ladders: each
budget is a ladder of model sizes trained for 1 to thousands of epochs of its U tokens.

    python bench/laws/repetition_crossladder.py [--json out.json]

The law is fitted as the data-constrained fit fits it: on every run of at most 4 epochs (the default
fit, `fit_supervised`, repeats counted as new there); a held-out budget's runs beyond 4 epochs are
predicted with R_D* chosen without that budget. Rules (each scored on the runs past 4 epochs of every
budget, each budget's runs predicted by the rule fitted without them):

- ignore: repetition ignored (D counted as fresh), the baseline the refit must beat;
- published: Muennighoff et al.'s R_D* = 15.4 (R_N* left out; it hurt, docs/repetition.md);
- own fit: the data-constrained fit's own R_D* from the runs of <= 4 epochs (`fit_supervised(...,
  unique_tokens=U)`, what `fit supervised --unique-tokens-col` does; the same for every budget);
- pooled: one R_D*, the one with the lowest mean |log error| on the other budgets' runs past 4
  epochs (grid 0.5-1000);
- pooled by capacity: R_D* = R0 (N/U)^-k, both chosen on the other budgets' runs past 4 epochs (the
  models large for their unique data over-fit: their repeats are worth less);
- pooled, shrunk: the pooled R_D* and the own fit's combined in log R_D* with weights from the spread
  of the other budgets' own best R_D* (empirical Bayes; each budget's own best from its runs past 4
  epochs, their log spread across budgets the prior's).
Mean |relative error|, max, share over-predicted, per band of epochs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from distillscale.laws import published
from distillscale.laws.repetition import Repetition, predict_repeated
from distillscale.laws.selection import fit_supervised

CUT = 4.0
GRID = np.exp(np.linspace(np.log(0.5), np.log(1000.0), 121))
BANDS = ((4.0, 16.0), (16.0, 64.0), (64.0, np.inf))


def summary(errors: np.ndarray, epochs: np.ndarray) -> dict:
    out = {"n": int(len(errors)), "mean": float(np.mean(np.abs(errors))), "max": float(np.max(np.abs(errors))),
           "over": float(np.mean(errors > 0))}
    for low, high in BANDS:
        rows = (epochs > low * 1.0001) & (epochs <= high)
        if rows.any():
            out[f"{low:g}-{high:g}x"] = float(np.mean(np.abs(errors[rows])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = published.load("muennighoff2023_c4").runs
    N, D, U, loss = (runs[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens", "loss"))
    epochs = D / U
    early = epochs <= CUT * 1.0001
    late = ~early
    plain = fit_supervised(N[early], D[early], loss[early], bootstrap=0, bias_correction=False).law
    own = fit_supervised({"params": N[early], "tokens": D[early], "loss": loss[early], "unique_tokens": U[early]},
                         unique_tokens="unique_tokens", bootstrap=0, bias_correction=False).law
    own_r = own.repetition.R_D_star if own.repetition is not None else None
    print(f"law fitted on {early.sum()} runs of <= {CUT:g} epochs; the data-constrained fit's own R_D* = {own_r}")

    def errors_at(r_star, rows, k=0.0):
        r = r_star * (N[rows] / U[rows]) ** (-k)
        u = np.minimum(U[rows], D[rows])
        tokens = u + u * r * -np.expm1(-(D[rows] / u - 1) / r)   # effective_tokens, R_D* per run
        predicted = plain.predict(N[rows], tokens)
        return predicted / loss[rows] - 1

    def log_error(r_star, rows, k=0.0):
        return float(np.mean(np.abs(np.log1p(errors_at(r_star, rows, k)))))

    budgets = np.unique(U[late])
    # each budget's own best R_D* (from its runs past 4 epochs): the spread across budgets
    best_own = {u: float(GRID[np.argmin([log_error(r, late & (U == u)) for r in GRID])]) for u in budgets}
    rules = {name: np.zeros(late.sum()) for name in ("ignore", "published", "own fit", "pooled", "pooled by capacity",
                                                     "pooled, shrunk")}
    index = np.flatnonzero(late)
    position = {row: i for i, row in enumerate(index)}
    chosen = {}
    for u in budgets:
        test = late & (U == u)
        train = late & (U != u)
        slots = [position[row] for row in np.flatnonzero(test)]
        rules["ignore"][slots] = plain.predict(N[test], D[test]) / loss[test] - 1
        rules["published"][slots] = predict_repeated(plain, Repetition(15.387756), N[test], D[test], U[test]) \
            / loss[test] - 1
        rules["own fit"][slots] = (predict_repeated(own, own.repetition, N[test], D[test], U[test]) / loss[test] - 1
                                   if own.repetition is not None else own.predict(N[test], D[test]) / loss[test] - 1)
        r_pool = float(GRID[np.argmin([log_error(r, train) for r in GRID])])
        rules["pooled"][slots] = errors_at(r_pool, test)
        fit = minimize(lambda t: log_error(np.exp(t[0]), train, t[1]), [np.log(r_pool), 0.0], method="Nelder-Mead",
                       options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 2000})
        rules["pooled by capacity"][slots] = errors_at(np.exp(fit.x[0]), test, fit.x[1])
        others = np.log([best_own[v] for v in budgets if v != u])
        prior_sd = float(np.std(others, ddof=1))
        if own_r is not None and own.repetition.interval:
            low, high = own.repetition.interval
            own_sd = (np.log(high) - np.log(low)) / (2 * 1.645)
            weight = prior_sd ** 2 / (prior_sd ** 2 + own_sd ** 2)   # on the own fit's log R_D*
            r_shrunk = float(np.exp(weight * np.log(own_r) + (1 - weight) * np.log(r_pool)))
        else:
            r_shrunk = r_pool
        rules["pooled, shrunk"][slots] = errors_at(r_shrunk, test)
        chosen[f"{u:g}"] = {"pooled": r_pool, "capacity": [float(np.exp(fit.x[0])), float(fit.x[1])],
                            "shrunk": r_shrunk, "own best": best_own[u]}
    results = {name: summary(errors, epochs[late]) for name, errors in rules.items()}
    print(f"{late.sum()} runs past {CUT:g} epochs in {len(budgets)} budgets; each budget's own best R_D*: "
          + ", ".join(f"{v:.3g}" for v in best_own.values()))
    for name, s in results.items():
        bands = ", ".join(f"{k} {v:.2%}" for k, v in s.items() if k.endswith("x") and k != "max")
        print(f"  {name:<20} mean {s['mean']:6.2%}  max {s['max']:6.1%}  over-predicted {s['over']:4.0%}  ({bands})")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "chosen": chosen}, indent=1))


if __name__ == "__main__":
    main()
