"""Issue 55's GPU-ladder check: each supervised form fitted on the supervised runs (baseline and
teacher) of docs/gpu_ladder_h100.csv up to 10.6M parameters, predicting the 17.1M runs; point fits
(no bootstrap, no backtest), mean |relative error| and how many runs are over-predicted.

    python bench/laws/gpu_ladder_forms.py --forms auto chinchilla interaction farseer
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from distillscale.laws.selection import fit_supervised

LADDER = Path(__file__).resolve().parents[2] / "docs" / "gpu_ladder_h100.csv"
SUPERVISED_KINDS = ("baseline", "teacher")


def ladder_runs(path: Path = LADDER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] in SUPERVISED_KINDS]
    return tuple(np.array([float(r[k]) for r in rows])
                 for k in ("non_embedding_params", "tokens_approx", "val_loss_nats_per_token"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", nargs="+", default=["auto", "chinchilla", "interaction", "farseer"])
    args = parser.parse_args()
    N, D, loss = ladder_runs()
    target = N == N.max()
    print(f"fitted on {int((~target).sum())} runs of {len(np.unique(N[~target]))} sizes "
          f"({N[~target].min():.3g}-{N[~target].max():.3g}), predicting {int(target.sum())} runs at {N.max():.3g}")
    for form in args.forms:
        fit = fit_supervised(N[~target], D[~target], loss[~target], form=form, bootstrap=0, backtest=False)
        errors = np.asarray(fit.predict(N[target], D[target]).value) / loss[target] - 1
        extra = {k: getattr(fit.law, k) for k in ("beta1", "kappa", "nu") if hasattr(fit.law, k)}
        why = {k: v for k, v in (fit.law.fit.not_identified if fit.law.fit else {}).items() if k in extra}
        print(f"{form:<12} mean |error| {np.mean(np.abs(errors)):.2%}, {int(np.sum(errors > 0))} of {len(errors)} "
              f"over-predicted, errors {', '.join(f'{e:+.2%}' for e in errors)}"
              + (f"; {', '.join(f'{k} = {v:.4g}' for k, v in extra.items())}" if extra else "")
              + (f" (not identified: {next(iter(why.values()))})" if why else ""))


if __name__ == "__main__":
    main()
