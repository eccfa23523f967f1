"""The cache behind the cross-ladder bias model (issue 64): the default supervised fit
(`fit_supervised`, form auto, with its backtest, no bootstrap) at every development cut of every
published ladder (`laws.published`, the cuts of bench/laws/extrapolation.py with no cap on their
number), and its raw prediction of every run beyond each cut, with what a user knows before
training that run (the features of `laws.crossladder`).

    nice -n 15 python bench/laws/crossladder_cache.py --json /tmp/crossladder_cache.json     # ~20 CPU-min
    python bench/laws/crossladder_cache.py --json c.json --sets gadre2024_c4 --max-cuts 3

One record per (ladder, cut): the fitted law (law.json's `supervised`, with its extrapolation
error), the fitted runs' summary (`laws.crossladder.FitSummary`) and one row per predicted run:
N, D, the observed loss, the raw prediction and its 90% interval, whether it is a held-back run
(each ladder's top doubling of sizes, bench/laws/extrapolation.py's `held_back`). Every bias-model
variant is scored on top of it without refitting (bench/laws/crossladder.py). Written after each
ladder, so an interrupted run keeps what it measured and --resume goes on from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from distillscale.errors import UserError
from distillscale.laws import published
from distillscale.laws.crossladder import FitSummary
from distillscale.laws.selection import fit_supervised

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.laws.extrapolation import choose_cuts, held_back


def backtested_cuts(cuts: list[float], count: int | None) -> set[float]:
    """The cuts whose fit runs its backtest: all (count None), or the `count` that bench/laws/crossladder.py
    scores (evenly spaced, the largest included); the others are fitted without it (the same law and
    point predictions: the default's median is the only candidate that can win; their interval is
    the literature's stand-in)."""
    if count is None or len(cuts) <= count:
        return set(cuts)
    return {cuts[i] for i in np.unique(np.round(np.linspace(0, len(cuts) - 1, count)).astype(int))}


def ladder_records(name: str, max_cuts: int, backtest_cuts: int | None = None) -> list[dict]:
    """The default fit at each development cut of one ladder, with its predictions of every
    development and held-back run beyond the cut."""
    runs = published.load(name)
    N, D, loss = runs.columns()
    back = held_back(N)
    develop = ~back
    cuts = choose_cuts(N, develop, develop, max_cuts)
    backtested = backtested_cuts(cuts, backtest_cuts)
    records = []
    for cut in cuts:
        fit_rows = develop & (N <= cut)
        start = time.process_time()
        try:
            fit = fit_supervised(N[fit_rows], D[fit_rows], loss[fit_rows], bootstrap=0, backtest=cut in backtested,
                                 bias_correction=False)
        except UserError as exc:
            print(f"{name}, cut {cut:.3g}: not fitted: {exc}")
            continue
        rows = N > cut
        prediction = fit.predict(N[rows], D[rows])
        records.append({
            "ladder": name, "cut": float(cut), "cpu_s": time.process_time() - start, "backtest": cut in backtested,
            "law": fit.law.to_dict(),
            "summary": FitSummary.of_runs(N[fit_rows], D[fit_rows], fit.law).to_dict(),
            "rows": {"N": N[rows].tolist(), "D": D[rows].tolist(), "observed": loss[rows].tolist(),
                     "raw": np.atleast_1d(prediction.value).tolist(),
                     "low": np.atleast_1d(prediction.low).tolist(), "high": np.atleast_1d(prediction.high).tolist(),
                     "held_back": back[rows].tolist()}})
        print(f"{name}: cut {cut:.3g}, {int(fit_rows.sum())} runs fitted, {int(rows.sum())} predicted "
              f"({records[-1]['cpu_s']:.0f} s CPU)", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the cache file (written after each ladder)")
    parser.add_argument("--sets", nargs="*", default=None, help="ladders (default: every available one)")
    parser.add_argument("--max-cuts", type=int, default=100, help="cuts per ladder (default: every valid one)")
    parser.add_argument("--resume", action="store_true", help="keep the ladders already in --json")
    parser.add_argument("--backtest-cuts", type=int, default=None,
                        help="backtest only this many cuts per ladder, those bench/laws/crossladder.py scores "
                             "(default: every cut); the others' point predictions are the same")
    args = parser.parse_args()
    cache = {"records": []}
    if args.resume and os.path.exists(args.json):
        with open(args.json) as handle:
            cache = json.load(handle)
    done = {r["ladder"] for r in cache["records"]}
    for name in args.sets or published.names(available=True):
        if name in done:
            continue
        cache["records"] += ladder_records(name, args.max_cuts, args.backtest_cuts)
        with open(args.json + ".tmp", "w") as handle:
            json.dump(cache, handle)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
