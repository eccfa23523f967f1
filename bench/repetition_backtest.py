"""How the data-constrained fit predicts repeated data on published runs (`laws.published`'s sets
that repeat data): fit `fit_supervised(..., unique_tokens=U)` on the runs of at most 4 epochs,
predict those beyond with `predict_supervised(..., unique_tokens=U)` (what `fit supervised
--unique-tokens-col` and `predict --unique-tokens` do), and print per set and per band of epochs the
mean and max |relative error|, the coverage of the 90% intervals and the share over-predicted, with
R_D* and its interval, beside two baselines on the same held-out runs:

- "ignore": the law fitted without unique tokens, predicting from N and D (repeats counted as new);
- "published": that law with Muennighoff et al.'s constants (R_D* = 15.4, R_N* = 5.3), what
  `predict --unique-tokens` used for a law without constants of its own.

    python bench/repetition_backtest.py                         # every set, the default prior
    python bench/repetition_backtest.py --prior-median 5.2      # leave-one-set-out: a prior not from the set
    PYTHONPATH=/path/to/old/src python bench/repetition_backtest.py   # "before": the same runs, older code

The runs are read from this checkout's files, so an older `src` (without the set) can be scored on
them. The default prior's median (15.4) was fitted by Muennighoff et al. on these very runs: on their
set it is not out-of-sample, and `--prior-median 5.2` (this project's micro-scale supervised R_D*)
is the leave-one-set-out check. The fits use no bootstrap (--bootstrap 0 by default): the
extrapolation part of the intervals dominates beyond the runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from distillscale.laws.lawset import LawSet
from distillscale.laws.predict import predict_supervised
from distillscale.laws.repetition import PUBLISHED, predict_repeated
from distillscale.laws.selection import fit_supervised

PACK = Path(__file__).resolve().parents[1] / "src" / "distillscale" / "laws" / "published"
SETS = ("muennighoff2023_c4",)
CUT = 4.0
BANDS = ((4.0, 16.0), (16.0, 64.0), (64.0, np.inf))


def summary(errors: np.ndarray, covered: np.ndarray | None) -> dict:
    return {"n": int(len(errors)), "mean_abs_error": float(np.mean(np.abs(errors))),
            "max_abs_error": float(np.max(np.abs(errors))), "over_predicted": float(np.mean(errors > 0)),
            "coverage": None if covered is None else float(np.mean(covered))}


def scored(errors, covered, epochs) -> dict:
    out = {"all": summary(errors, covered)}
    for low, high in BANDS:
        rows = (epochs > low * 1.0001) & (epochs <= high)
        if rows.any():
            out[f"{low:g}-{high:g}x"] = summary(errors[rows], None if covered is None else covered[rows])
    return out


def evaluate(name: str, bootstrap: int, prior_median: float | None) -> dict:
    runs = pd.read_csv(PACK / name / "runs.csv")
    N, D, U, loss = (runs[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens", "loss"))
    early, epochs = D / U <= CUT * 1.0001, D / U
    options = {"bootstrap": bootstrap}
    if prior_median is not None:
        from distillscale.laws.repetition import R_D_STAR_PRIOR, RStarPrior

        options["prior"] = RStarPrior(prior_median, R_D_STAR_PRIOR.log_sd, f"median {prior_median:g}")
    started = time.time()
    fit = fit_supervised({"params": N[early], "tokens": D[early], "loss": loss[early],
                          "unique_tokens": U[early]}, unique_tokens="unique_tokens", **options)
    seconds = time.time() - started
    laws = LawSet("fitted", fit.law)
    predictions = [predict_supervised(laws, n, d, u).prediction for n, d, u in zip(N[~early], D[~early], U[~early])]
    value = np.array([p.value for p in predictions])
    covered = np.array([p.low <= y <= p.high for p, y in zip(predictions, loss[~early])]) \
        if predictions[0].has_interval else None
    repetition = fit.law.repetition
    out = {"set": name, "fitted_runs": int(early.sum()), "held_out": int((~early).sum()), "fit_seconds": seconds,
           "chosen": fit.chosen, "record": fit.repetition_record,
           "R_D_star": None if repetition is None else repetition.R_D_star,
           "R_D_star_interval": None if repetition is None or not repetition.interval else list(repetition.interval),
           "data_constrained": scored(value / loss[~early] - 1, covered, epochs[~early])}
    plain = fit_supervised({"params": N[early], "tokens": D[early], "loss": loss[early]}, **{"bootstrap": bootstrap})
    fresh = [plain.law.prediction(n, d) for n, d in zip(N[~early], D[~early])]
    value = np.array([p.value for p in fresh])
    covered = np.array([p.low <= y <= p.high for p, y in zip(fresh, loss[~early])]) if fresh[0].has_interval else None
    out["ignore"] = scored(value / loss[~early] - 1, covered, epochs[~early])
    value = predict_repeated(plain.law, PUBLISHED, N[~early], D[~early], U[~early])
    out["published"] = scored(value / loss[~early] - 1, None, epochs[~early])
    return out


def line(label: str, s: dict) -> str:
    coverage = "-" if s["coverage"] is None else f"{s['coverage']:.0%}"
    return (f"  {label:<26} n={s['n']:>3}  mean {s['mean_abs_error']:6.2%}  max {s['max_abs_error']:6.1%}  "
            f"covered {coverage:>4}  over-predicted {s['over_predicted']:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--bootstrap", type=int, default=0)
    parser.add_argument("--prior-median", type=float, default=None,
                        help="R_D* prior median instead of the default (needs the prior; not in older code)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for name in args.sets:
        result = evaluate(name, args.bootstrap, args.prior_median)
        results.append(result)
        interval = result["R_D_star_interval"]
        print(f"{name}: fitted on {result['fitted_runs']} runs of <= {CUT:g} epochs, {result['held_out']} beyond "
              f"({result['fit_seconds']:.0f} s); chosen: {result['chosen']}; R_D* = "
              + ("none of its own" if result["R_D_star"] is None else f"{result['R_D_star']:.3g}")
              + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else ""))
        record = (result["record"] or {}).get("backtest")
        if record:
            print(f"  the fit's own gate (fitted <= {record['fitted_up_to_epochs']:g} epochs, {record['n']} beyond): "
                  f"data-constrained {record['mean_abs_error_data_constrained']:.2%}, plain {record['mean_abs_error_plain']:.2%}")
        for kind, label in (("data_constrained", "fit + predict --unique-tokens"), ("ignore", "ignore repetition"),
                            ("published", "plain law + 15.4/5.3")):
            for band, s in result[kind].items():
                print(line(f"{label} {band}" if band != "all" else label, s))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
