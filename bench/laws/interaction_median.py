"""Issue 55's membership screen with the default's own machinery: the median of the member forms,
refitted into one law (`laws.ensemble`), with the interaction form (`laws.interaction`) in the
members. `bench/laws/extrapolation.py` scores it under a variant name, point predictions only:

    python bench/laws/interaction_median.py --members tied interaction busbridge --json int_median.json
    python bench/laws/extrapolation.py --from-json int_median.json   # the tables and leave-one-set-out

The members replace `AUTO_SUPERVISED` for this run only; the library's default is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.laws import extrapolation
from distillscale.laws import lawfit, published, selection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", required=True)
    parser.add_argument("--name", default=None, help="the variant's name (default: auto-<members>)")
    parser.add_argument("--cuts", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    name = args.name or "auto-" + "+".join(args.members)
    members = tuple(args.members)
    lawfit.AUTO_SUPERVISED = selection.AUTO_SUPERVISED = members
    extrapolation.FITS[name] = {}
    results = {}
    for set_name in published.names(available=True):
        r = extrapolation.evaluate(set_name, name, max_cuts=args.cuts, bootstrap=0, final=False, backtest=False)
        r["point_only"] = True
        results[f"{name}/{set_name}"] = r
        s = extrapolation.summarise(r)
        print(f"{set_name:<30} {s['mean']:.2%} ({s['over']:.0%} over)", flush=True)
        extrapolation._write_json(args.json, results)


if __name__ == "__main__":
    main()
