"""The ladder designer (issue 64, `planning.ladder`) backtested on the validation pack: for each
published ladder, the runs the designer would have chosen from it (among those below its top
doubling of sizes) for a target at its largest size, at a FLOP budget, and the error they give there,
against the shipped ladder at the same budget.

    python bench/laws/crossladder_cache.py --json C    # (the cache of the bias model, once)
    python bench/planning/ladder_backtest.py --cache C [--fractions 0.125 0.25 0.5 1] [--json out.json]

Per ladder: the target is its largest size (every run of it; D/N the median of theirs); the shipped
ladder is every run below half that size, C its training FLOPs (6 N D, each run apart). At a budget
B = f C:
- shipped: the shipped ladder cut from the top (its largest sizes dropped) until it costs at most B,
  the same protocol with less compute;
- designer: among the shipped ladder's sizes, a top size, a count (>= 4) and a step between sizes,
  spanning at least MIN_SPAN, and for every chosen size its runs whose D/N lies within 0.25-4x the
  target's, or every run (at least 2 runs a size), the design of the lowest expected error within B (within TIE of it, the one
  with the most runs; beside it, the cheapest of the tie), by the error curve of the bias model fitted WITHOUT this ladder (leave-one-ladder-out: the model, its
  penalty, its spread and its curve see only the other ladders);
- both fitted with the default fit, corrected by that same left-out model, and scored on the
  target's runs: mean |relative error|.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.laws.crossladder import load_rows, table_of  # noqa: E402

from distillscale.errors import UserError  # noqa: E402
from distillscale.laws import published  # noqa: E402
from distillscale.laws.backtest import scale_levels  # noqa: E402
from distillscale.laws.crossladder import BiasCorrection, FitSummary  # noqa: E402
from distillscale.laws.crossladder_fit import fit_error_curve, fit_with_spread, leave_one_ladder_out  # noqa: E402
from distillscale.laws.selection import fit_supervised  # noqa: E402

FEATURES = ("dN/span", "dN")
WINDOWS = ((0.25, 4.0), (0.0, math.inf))
MIN_SIZES = 4
MIN_SPAN = 4.0
TIE = 0.02


def left_out_models(cache: str, reach: float = 16.0) -> dict:
    """Per ladder: the bias model and its error curve fitted without it."""
    rows = [r for r in load_rows(cache) if not r["held_back"] and 1.0 < r["N"] / r["cut"] <= reach]
    table = table_of(rows)
    out = {}
    for name in table.ladders:
        others = table.subset(table.ladder != name)
        model = fit_with_spread(others, FEATURES)
        left = leave_one_ladder_out(others, FEATURES)
        out[name] = model.model_copy(update={"error_curve": fit_error_curve(others, others.y - left.predicted)})
    return out


def score(model, N, D, loss, rows, target) -> float | None:
    """Mean |relative error| on the target runs of the default fit on `rows`, bias-corrected by `model`."""
    try:
        fit = fit_supervised(N[rows], D[rows], loss[rows], bootstrap=0, backtest=False, bias_correction=False)
    except UserError:
        return None
    law = fit.law
    law.fit = law.fit.model_copy(update={"bias_correction": BiasCorrection(
        model=model, summary=FitSummary.of_runs(N[rows], D[rows], law))})
    return float(np.mean(np.abs(law.predict(N[target], D[target]) / loss[target] - 1)))


def designs(N, D, available, ratio_t, budget, curve, N_t):
    """(expected error, flops, rows) of every design within the budget."""
    levels = scale_levels(N[available])
    out = []
    size_of = np.searchsorted(levels * 1.02, N, side="left")
    for top in range(MIN_SIZES - 1, len(levels)):
        for count in range(MIN_SIZES, 9):
            for step in (1, 2, 3):
                first = top - step * (count - 1)
                if first < 0 or levels[top] / levels[first] < MIN_SPAN:
                    continue
                chosen = set(range(first, top + 1, step))
                for low, high in WINDOWS:
                    ratio = D / N
                    rows = available & np.isin(size_of, list(chosen)) & (ratio >= ratio_t * low * 0.999) \
                        & (ratio <= ratio_t * high * 1.001)
                    per_size = [np.sum(rows & (size_of == k)) for k in chosen]
                    if min(per_size) < 2:
                        continue
                    flops = float(np.sum(6 * N[rows] * D[rows]))
                    if flops > budget:
                        continue
                    expected = float(curve.typical(N_t / levels[top], levels[top] / levels[first]))
                    out.append((expected, flops, rows))
    return out


def backtest(name: str, model, fractions) -> list[dict]:
    N, D, loss = published.load(name).columns()
    N_t = N.max()
    target = N >= N_t / 1.02
    shipped = N <= N_t / 2
    ratio_t = float(np.median(D[target] / N[target]))
    full = float(np.sum(6 * N[shipped] * D[shipped]))
    levels = scale_levels(N[shipped])
    out = []
    for fraction in fractions:
        budget = full * fraction
        # the shipped ladder cut from the top until it fits the budget
        base = shipped.copy()
        for level in levels[::-1]:
            if np.sum(6 * N[base] * D[base]) <= budget * (1 + 1e-9):
                break
            base &= N < level / 1.02
        candidates = designs(N, D, shipped, ratio_t, budget, model.error_curve, N_t)
        row = {"ladder": name, "fraction": fraction, "budget": budget}
        if len(scale_levels(N[base])) >= 3:
            row["shipped"] = score(model, N, D, loss, base, target)
            row["shipped_top"] = float(N[base].max())
            row["shipped_runs"] = int(base.sum())
        if candidates:
            best = min(c[0] for c in candidates)
            tied = [c for c in candidates if c[0] <= best * (1 + TIE)]
            # within TIE of the lowest expected error, the design with the most runs (then the cheaper),
            # the designer's rule; beside it the cheapest (then the most runs), the rule it was weighed against
            scored: dict[bytes, float | None] = {}
            for rule, key in (("designer", lambda c: (-int(c[2].sum()), c[1])),
                              ("cheaper", lambda c: (c[1], -int(c[2].sum())))):
                expected, flops, rows = min(tied, key=key)
                if rows.tobytes() not in scored:
                    scored[rows.tobytes()] = score(model, N, D, loss, rows, target)
                row.update({rule: scored[rows.tobytes()], f"{rule}_expected": expected, f"{rule}_flops": flops,
                            f"{rule}_runs": int(rows.sum()),
                            f"{rule}_sizes": [float(x) for x in scale_levels(N[rows])]})
        out.append(row)
        print(f"{name:<30} f={fraction:<6g} shipped {_pct(row.get('shipped'))} ({row.get('shipped_runs', 0)} runs, "
              f"top {row.get('shipped_top', 0):.3g})  designer {_pct(row.get('designer'))} "
              f"({row.get('designer_runs', 0)} runs, expected {_pct(row.get('designer_expected'))}, sizes "
              f"{', '.join(f'{x:.3g}' for x in row.get('designer_sizes', []))}); cheapest of the tie "
              f"{_pct(row.get('cheaper'))} ({row.get('cheaper_runs', 0)} runs)", flush=True)
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--sets", nargs="*", default=None)
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    models = left_out_models(args.cache)
    results = []
    for name in args.sets or published.names(available=True):
        results += backtest(name, models[name], args.fractions)
    both = [r for r in results if r.get("shipped") is not None and r.get("designer") is not None]
    wins = sum(r["designer"] < r["shipped"] for r in both)
    print(f"\ndesigner better than the shipped ladder at equal FLOPs in {wins} of {len(both)} (ladder, budget) pairs; "
          f"mean {np.mean([r['designer'] for r in both]):.2%} vs {np.mean([r['shipped'] for r in both]):.2%}")
    for fraction in args.fractions:
        these = [r for r in both if r["fraction"] == fraction]
        if these:
            print(f"  f = {fraction:g}: better on {sum(r['designer'] < r['shipped'] for r in these)} of {len(these)} "
                  f"ladders; mean {np.mean([r['designer'] for r in these]):.2%} vs "
                  f"{np.mean([r['shipped'] for r in these]):.2%}")
    paired = [r for r in results if r.get("designer") is not None and r.get("cheaper") is not None]
    differ = [r for r in paired if r["designer_runs"] != r["cheaper_runs"] or r["designer"] != r["cheaper"]]
    print(f"\nwithin a tie, the most runs against the cheapest: {len(differ)} of {len(paired)} (ladder, budget) pairs "
          f"pick differently; most runs better on {sum(r['designer'] < r['cheaper'] for r in differ)}, worse on "
          f"{sum(r['designer'] > r['cheaper'] for r in differ)}; mean over all pairs "
          f"{np.mean([r['designer'] for r in paired]):.2%} vs {np.mean([r['cheaper'] for r in paired]):.2%}; FLOPs "
          f"spent {np.mean([r['designer_flops'] / r['budget'] for r in paired]):.0%} vs "
          f"{np.mean([r['cheaper_flops'] / r['budget'] for r in paired]):.0%} of the budget")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
