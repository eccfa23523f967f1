"""The cross-ladder bias model (issue 64, `laws.crossladder`) scored leave-one-ladder-out on the
validation pack, from the cache of bench/laws/crossladder_cache.py (the default fit's raw predictions
at every development cut of every ladder): no refitting, so every variant takes seconds.

    python bench/laws/crossladder.py --cache /tmp/crossladder_cache.json              # every variant, LOLO
    python bench/laws/crossladder.py --cache c.json --variants base --markdown       # the docs' tables
    python bench/laws/crossladder.py --cache c.json --write-model                    # fit on every ladder:
                                                      # src/distillscale/laws/bias_model.json
    python bench/laws/crossladder.py --cache c.json --by family                      # leave one FAMILY out

With `--by family` a family of ladders (`published.family`: the Gadre, Marin and Porian ladders of
one source each leave together) is left out instead of a ladder, at every level (the penalty is
chosen leaving one of the other families out), and each family's error is the mean of its
ladders': the correction is kept by default only if it lowers the error on most left-out families.

For each ladder, the model is fitted on the other ladders' rows alone (its ridge penalty chosen
leaving one of *those* out at a time, its spread from their own leave-one-out residuals:
`laws.crossladder.leave_one_ladder_out`), and applied to the left-out ladder's raw predictions
and intervals (`BiasCorrection.apply`, what `SupervisedLaw.prediction` does). Scored as
bench/laws/extrapolation.py scores the pack: the development runs 2-8x beyond the fitted sizes, at up to
3 cuts per ladder (evenly spaced among the cached ones, the largest included): mean |error|, the
share over-predicted, the coverage of the 90% intervals, raw and corrected. The model is trained
on every cached cut's development runs beyond the cut up to --train-reach times it (the
held-back runs, each ladder's top doubling of sizes, stay out of training and are scored apart
with --held-back).

The adoption rule (issue 64): a variant is adopted only if it lowers the pooled LOLO error (mean
of the ladders' means), moves the pooled share over-predicted toward half, and makes no ladder
worse by more than 0.25 point.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from distillscale.laws.crossladder import MODEL_FILE, BiasCorrection, FitSummary
from distillscale.laws.crossladder_fit import ErrorTable, fit_error_curve, fit_with_spread, leave_one_ladder_out
from distillscale.laws import published
from distillscale.laws.uncertainty import Prediction

# Candidate feature sets (each a rule; "none" is the default fit uncorrected).
VARIANTS = {
    "none": (),
    "dN": ("dN",),
    "lever": ("dN/span",),
    "lever+ratio": ("dN/span", "dN/span*ratio"),
    "lever+dN": ("dN/span", "dN"),
    "smooth lever": ("(dN/span)^2",),                    # no corner at the runs' edge (zero slope there)
    "smooth dN": ("dN^2",),
    "smooth lever+dN": ("(dN/span)^2", "dN^2"),
    "lever+dD": ("dN/span", "dD"),
    "lever+sizes": ("dN/span", "dN/span*sizes"),
    "lever+exponents": ("dN/span", "dN/span*alpha", "dN/span*beta"),
    "dN+dD": ("dN", "dD"),
    "base": ("dN", "dD", "dN*ratio"),
    "base+sizes": ("dN", "dD", "dN*ratio", "dN*sizes"),
    "base+exponents": ("dN", "dD", "dN*ratio", "dN*alpha", "dN*beta"),
    "all": ("dN", "dD", "dN*ratio", "dN*sizes", "dN*alpha", "dN*beta"),
    "all+dD": ("dN", "dD", "dN*ratio", "dN*sizes", "dN*alpha", "dN*beta", "dD*ratio", "dD*sizes"),
}


# A family's error counts as lowered by at least this (0.01 point of mean |error|).
FAMILY_GAIN = 1e-4


def by_family(table: dict[str, dict]) -> dict[str, float]:
    """Each family's error: the mean of its ladders' mean |error|."""
    families: dict[str, list[float]] = {}
    for name, cell in table.items():
        if cell.get("n"):
            families.setdefault(published.family(name), []).append(cell["mean"])
    return {family: float(np.mean(means)) for family, means in sorted(families.items())}


def family_rule(before: dict[str, dict], after: dict[str, dict]) -> tuple[bool, str]:
    """Kept by default only if it lowers the error on most left-out families (by at least
    FAMILY_GAIN: a change in the fourth digit lowers nothing a user sees)."""
    b, a = by_family(before), by_family(after)
    better = [f for f in b if a[f] < b[f] - FAMILY_GAIN]
    ok = len(better) > len(b) / 2
    return ok, (f"lower on {len(better)} of {len(b)} families: " + ", ".join(
        f"{f} {b[f]:.2%} -> {a[f]:.2%} ({a[f] - b[f]:+.2%})" for f in b))
MAX_CUTS = 3
BAND = (2.0, 8.0)


def load_rows(path: str) -> list[dict]:
    """One dict per (ladder, cut, predicted run) of the cache."""
    with open(path) as handle:
        records = json.load(handle)["records"]
    scored_cuts = {}
    for name in sorted({r["ladder"] for r in records}):
        cuts = sorted(r["cut"] for r in records if r["ladder"] == name)
        if len(cuts) > MAX_CUTS:
            cuts = [cuts[i] for i in np.unique(np.round(np.linspace(0, len(cuts) - 1, MAX_CUTS)).astype(int))]
        scored_cuts[name] = set(cuts)
    rows = []
    for record in records:
        summary = FitSummary(**record["summary"])
        r = record["rows"]
        for i in range(len(r["N"])):
            rows.append({"ladder": record["ladder"], "cut": record["cut"], "summary": summary, "N": r["N"][i],
                         "D": r["D"][i], "observed": r["observed"][i], "raw": r["raw"][i], "low": r["low"][i],
                         "high": r["high"][i], "held_back": r["held_back"][i],
                         "scored": record["cut"] in scored_cuts[record["ladder"]]})
    return rows


def table_of(rows: list[dict]) -> ErrorTable:
    return ErrorTable(np.array([r["ladder"] for r in rows]), [r["summary"] for r in rows],
                      np.array([r["N"] for r in rows]), np.array([r["D"] for r in rows]),
                      np.log(np.array([r["observed"] / r["raw"] for r in rows])))


def corrected(rows: list[dict], models: dict) -> list[dict]:
    """Each row's prediction and interval corrected by the model that did not see its ladder."""
    out = []
    for r in rows:
        model = models.get(r["ladder"])
        if model is None:
            out.append(r)
            continue
        raw = Prediction(r["raw"], r["low"], r["high"], 0.9, None, None, None)
        p = BiasCorrection(model=model, summary=r["summary"]).apply(raw, r["N"], r["D"], 0.9)
        out.append({**r, "raw": p.value, "low": p.low, "high": p.high})
    return out


def summarise(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    signed = np.array([r["raw"] / r["observed"] - 1 for r in rows])
    covered = np.array([r["low"] <= r["observed"] <= r["high"] for r in rows])
    return {"n": len(rows), "mean": float(np.mean(np.abs(signed))), "max": float(np.max(np.abs(signed))),
            "signed": float(np.mean(signed)), "over": float(np.mean(signed > 0)), "coverage": float(np.mean(covered))}


def scored(rows: list[dict], held_back: bool = False, band=BAND) -> list[dict]:
    """The rows bench/laws/extrapolation.py scores: up to MAX_CUTS cuts per ladder, 2-8x, development runs
    (or, with `held_back`, the held-back runs from the largest cut that leaves them within 8x)."""
    if held_back:
        out = []
        for name in sorted({r["ladder"] for r in rows}):
            mine = [r for r in rows if r["ladder"] == name and r["held_back"]]
            ok = [c for c in sorted({r["cut"] for r in mine}) if max(x["N"] for x in mine) / c <= 8.0]
            if ok:
                out += [r for r in mine if r["cut"] == ok[-1] and band[0] < r["N"] / r["cut"] <= band[1]]
        return out
    return [r for r in rows if r["scored"] and not r["held_back"] and band[0] < r["N"] / r["cut"] <= band[1]]


def per_ladder(rows: list[dict]) -> dict[str, dict]:
    return {name: summarise([r for r in rows if r["ladder"] == name]) for name in sorted({r["ladder"] for r in rows})}


def pooled(table: dict[str, dict]) -> dict:
    cells = [c for c in table.values() if c.get("n")]
    return {"mean": float(np.mean([c["mean"] for c in cells])), "over": float(np.mean([c["over"] for c in cells])),
            "coverage": float(np.mean([c["coverage"] for c in cells])),
            "n_over": sum(round(c["over"] * c["n"]) for c in cells), "n": sum(c["n"] for c in cells)}


def adoption(before: dict[str, dict], after: dict[str, dict]) -> tuple[bool, str]:
    """The rule: the pooled error lower, the pooled share over-predicted nearer half, no ladder worse
    by more than 0.25 point."""
    b, a = pooled(before), pooled(after)
    worse = {n: after[n]["mean"] - before[n]["mean"] for n in before if before[n].get("n")
             and after[n]["mean"] - before[n]["mean"] > 0.0025}
    ok = a["mean"] < b["mean"] and abs(a["over"] - 0.5) < abs(b["over"] - 0.5) and not worse
    why = (f"pooled mean {b['mean']:.2%} -> {a['mean']:.2%}, over {b['over']:.0%} -> {a['over']:.0%}"
           + (", worse by > 0.25 point: " + ", ".join(f"{n} +{v:.2%}" for n, v in worse.items()) if worse else ""))
    return ok, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--train-reach", type=float, default=16.0,
                        help="train on runs up to this many times beyond each cut")
    parser.add_argument("--held-back", action="store_true", help="also score the held-back runs")
    parser.add_argument("--by", choices=("ladder", "family"), default="ladder",
                        help="leave one ladder out, or one family of ladders (published.family)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", help="write every variant's per-ladder scores here")
    parser.add_argument("--write-model", nargs="?", const=str(MODEL_FILE), default=None,
                        help="fit the chosen variant (--variants, the first) on every ladder and write it")
    args = parser.parse_args()
    rows = load_rows(args.cache)
    train_rows = [r for r in rows if not r["held_back"] and 1.0 < r["N"] / r["cut"] <= args.train_reach]
    table = table_of(train_rows)
    print(f"{len(rows)} cached predictions; training rows: {len(train_rows)} over {len(table.ladders)} ladders")
    if args.write_model:
        features = VARIANTS[args.variants[0]]
        model = fit_with_spread(table, features)
        # the error left after the correction, from corrections that did not see each row's ladder
        left = leave_one_ladder_out(table, features)
        model = model.model_copy(update={"error_curve": fit_error_curve(table, table.y - left.predicted)})
        command = f"python bench/laws/crossladder_cache.py --json C && python bench/laws/crossladder.py --cache C " \
                  f"--variants {args.variants[0]} --write-model"
        model = model.model_copy(update={"date": datetime.date.today().isoformat(), "command": command,
                                         "note": f"variant {args.variants[0]}; trained on the development runs "
                                                 f"1-{args.train_reach:g}x beyond every cut of each ladder"})
        Path(args.write_model).write_text(json.dumps(model.model_dump(mode="json"), indent=1) + "\n")
        print(f"wrote {args.write_model}: {model}")
        return
    results = {}
    base = per_ladder(scored(rows))
    for variant in args.variants:
        features = VARIANTS[variant]
        if features:
            out = leave_one_ladder_out(table, features, group=published.family if args.by == "family" else None)
            fixed = corrected(rows, out.models)
            penalties = sorted({m.penalty for m in out.models.values()})
            spreads = [m.slope_sd for m in out.models.values()]
        else:
            fixed, penalties, spreads = rows, [], []
        after = per_ladder(scored(fixed))
        results[variant] = {"dev": after}
        if args.held_back:
            results[variant]["held"] = per_ladder(scored(fixed, held_back=True))
        ok, why = adoption(base, after)
        p = pooled(after)
        print(f"\n== {variant}: {', '.join(features) or 'no correction'}; penalties chosen {penalties}, "
              f"slope sd {min(spreads, default=0):.4f}-{max(spreads, default=0):.4f} ==")
        print(f"{'ladder':<30} {'n':>4} {'mean':>7} {'max':>7} {'signed':>8} {'over':>5} {'cover':>6}")
        for name, s in after.items():
            if s.get("n"):
                print(f"{name:<30} {s['n']:>4} {s['mean']:>7.2%} {s['max']:>7.2%} {s['signed']:>+8.2%} "
                      f"{s['over']:>5.0%} {s['coverage']:>6.0%}")
        print(f"{'mean of ladders':<30} {p['n']:>4} {p['mean']:>7.2%} {'':>7} {'':>8} {p['over']:>5.0%} "
              f"{p['coverage']:>6.0%}   ({p['n_over']} of {p['n']} over-predicted)")
        if variant != "none":
            print(("ADOPTABLE: " if ok else "rejected: ") + why)
            kept, families = family_rule(base, after)
            print(("families: kept, " if kept else "families: off, ") + families)
        if args.held_back:
            held = results[variant]["held"]
            print("held-back runs: " + ", ".join(f"{n} {s['mean']:.2%} ({s['signed']:+.2%})"
                                                 for n, s in held.items() if s.get("n")))
            if variant != "none":
                kept, families = family_rule(per_ladder(scored(rows, held_back=True)), held)
                print("held-back runs by family: " + families)
    if args.markdown:
        markdown(base, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def markdown(base: dict, results: dict) -> None:
    variants = [v for v in results if v != "none"]
    print("\n| ladder | n | raw: mean, signed, over, covered | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for name, b in base.items():
        if not b.get("n"):
            continue
        cells = [results[v]["dev"][name] for v in variants]
        print(f"| {name} | {b['n']} | {b['mean']:.2%}, {b['signed']:+.2%}, {b['over']:.0%}, {b['coverage']:.0%} | "
              + " | ".join(f"{c['mean']:.2%}, {c['signed']:+.2%}, {c['over']:.0%}, {c['coverage']:.0%}" for c in cells)
              + " |")
    p = pooled(base)
    print(f"| mean of ladders | {p['n']} | {p['mean']:.2%}, {p['over']:.0%} over, {p['coverage']:.0%} | "
          + " | ".join(f"{pooled(results[v]['dev'])['mean']:.2%}, {pooled(results[v]['dev'])['over']:.0%} over, "
                       f"{pooled(results[v]['dev'])['coverage']:.0%}" for v in variants) + " |")


if __name__ == "__main__":
    sys.exit(main())
