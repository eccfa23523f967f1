"""The supervised law's interval calibrated on the validation pack (`laws.pack_interval`), scored
leaving one family of ladders out, from the cache of bench/laws/crossladder_cache.py (no refitting).

    python bench/laws/pack_intervals.py --cache C                      # every rule, leave one family out
    python bench/laws/pack_intervals.py --cache C --rules full --markdown
    python bench/laws/pack_intervals.py --cache C --rules efold+misfit --weigh family --across yes   # the shipped rule
    python bench/laws/pack_intervals.py --cache C --rules full --write-model   # fit on every ladder:
                                                      # src/distillscale/laws/pack_interval.json

Calibrated on every cached fit's development runs 1-16x beyond its cut (as bench/laws/crossladder.py trains
the bias model; the held-back runs, each ladder's top doubling of sizes, never enter), leaving one
family out (`published.family`: Gadre x3, Marin x3, Porian x4, Epoch, Li; the left-out family's
ladders contribute nothing to the scale or the quantiles that score them). Scored as the pack scores
a law: the development runs 2-8x beyond at up to 3 cuts per ladder (the cuts whose fits ran their
backtest, so "before" is the interval the law gives today: its own backtest's conformal quantile,
band by band, without a bootstrap), and the held-back runs from the largest cut within 8x. Coverage,
mean half-width and mean |error| per ladder come from `laws.pack_interval.interval_scores`, the one
function the docs' tables are made with. Every calibrated interval is the law's own `prediction`
(`pack_interval.predicted_with`: the cached fit's law with the left-out family's model), what a user
of that fit is shown. The raw law's predictions throughout (no bias correction).

The targets (leave one family out): every ladder >= 70% covered, the mean of ladders' coverage
85-95%, the mean half-width <= 2.2x the mean |error|.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.laws.crossladder import load_rows, scored  # noqa: E402

from distillscale.laws import published  # noqa: E402
from distillscale.laws.interaction_law import supervised_law_from_dict  # noqa: E402
from distillscale.laws.pack_interval import (MODEL_FILE, OBJECTIVES, POOLED, IntervalTable,  # noqa: E402
                                             fit_pack_interval, interval_scores, leave_one_family_out,
                                             predicted_with)

LEVEL = 0.9
# The rules tried: which of the scale's terms a calibration may use.
RULES = {
    "floor": ("floor",),
    "lever": ("floor", "per_lever"),
    "distance": ("floor", "per_efold", "per_lever"),
    "distance+tokens": ("floor", "per_efold", "per_lever", "per_token"),
    "distance+runs": ("floor", "per_efold", "per_lever", "runs_power"),
    "distance+tokens+runs": ("floor", "per_efold", "per_lever", "per_token", "runs_power"),
    "distance+misfit": ("floor", "per_efold", "per_lever", "per_misfit"),
    "lever+misfit": ("floor", "per_lever", "per_misfit"),
    "distance+misfit+runs": ("floor", "per_efold", "per_lever", "per_misfit", "runs_power"),
    "distance+ratio": ("floor", "per_efold", "per_lever", "per_ratio"),
    "distance+ratio+runs": ("floor", "per_efold", "per_lever", "per_ratio", "runs_power"),
    "floor+ratio": ("floor", "per_ratio"),
    "floor+misfit": ("floor", "per_misfit"),
    "efold": ("floor", "per_efold"),
    "efold+misfit": ("floor", "per_efold", "per_misfit"),
    "efold+misfit+ratio": ("floor", "per_efold", "per_misfit", "per_ratio"),
    "floor+runs": ("floor", "runs_power"),
    "efold+ratio": ("floor", "per_efold", "per_ratio"),
    "full": ("floor", "per_efold", "per_lever", "per_token", "per_misfit", "per_ratio", "runs_power"),
}
TARGETS = {"ladder_coverage": 0.7, "pooled_coverage": (0.85, 0.95), "ratio": 2.2}


def with_misfit(rows: list[dict], cache: str) -> list[dict]:
    """Each row with its fit's law (the cached law.json's `supervised`), its in-sample misfit (the
    law's diagnostics: RMS of its log residuals) and its own backtest's relative half-width at the
    row (`SupervisedLaw.backtest_half_width`, seed noise included: what `prediction` scales with)."""
    with open(cache) as handle:
        laws = {(r["ladder"], r["cut"]): supervised_law_from_dict(r["law"]) for r in json.load(handle)["records"]}
    out = []
    for r in rows:
        law = laws[(r["ladder"], r["cut"])]
        own = law.backtest_half_width(r["N"])
        out.append({**r, "law": law, "misfit": float(law.fit.diagnostics.rmse_log_loss),
                    "backtest": float(own) if own is not None else float("nan")})
    # a fit without a backtest (a cut the cache did not backtest) takes the scale as it is, as its law's
    # prediction does: its h is the median of the others' (the calibration's reference)
    measured = np.array([r["backtest"] for r in out], float)
    middle = float(np.nanmedian(measured)) if np.isfinite(measured).any() else 0.1
    return [{**r, "backtest": middle} if not np.isfinite(r["backtest"]) else r for r in out]


def table_of(rows: list[dict]) -> IntervalTable:
    return IntervalTable(np.array([r["ladder"] for r in rows]), [r["summary"] for r in rows],
                         np.array([r["N"] for r in rows], float), np.array([r["D"] for r in rows], float),
                         np.log(np.array([r["observed"] / r["raw"] for r in rows])),
                         np.array([r["misfit"] for r in rows], float), np.array([r["backtest"] for r in rows], float))


def calibrated(rows: list[dict], models: dict) -> list[dict]:
    """Each row's interval from the calibration that did not see its family, through the law's own
    `prediction` (`pack_interval.predicted_with`): the interval a user of that fit is shown."""
    out = []
    for r in rows:
        shown = predicted_with(r["law"], models[r["ladder"]], r["N"], r["D"])
        out.append({**r, "low": float(shown.low), "high": float(shown.high)})
    return out


def scores(rows: list[dict]) -> dict:
    return interval_scores([r["ladder"] for r in rows], [r["observed"] for r in rows], [r["raw"] for r in rows],
                           [r["low"] for r in rows], [r["high"] for r in rows])


def verdict(table: dict) -> str:
    pooled = table[POOLED]
    under = [name for name, s in table.items() if name != POOLED and s.coverage < TARGETS["ladder_coverage"]]
    low, high = TARGETS["pooled_coverage"]
    met = (not under, low <= pooled.coverage <= high, pooled.ratio <= TARGETS["ratio"])
    return (f"every ladder >= 70%: {'met' if met[0] else 'missed (' + ', '.join(under) + ')'}; pooled coverage "
            f"{pooled.coverage:.1%}: {'met' if met[1] else 'missed'}; half-width / |error| {pooled.ratio:.2f}: "
            f"{'met' if met[2] else 'missed'}")


def show(title: str, table: dict) -> None:
    print(f"\n{title}\n{'ladder':<30} {'n':>4} {'error':>7} {'signed':>8} {'cover':>6} {'half-w':>7} {'ratio':>6}")
    for name, s in table.items():
        print(f"{name:<30} {s.n:>4} {s.error:>7.2%} {s.signed:>+8.2%} {s.coverage:>6.0%} {s.half_width:>7.2%} "
              f"{s.ratio:>6.2f}")


def verdict_of(a: dict, b: dict) -> str:
    """The planner's rule (`planning.results.too_close_to_call`) on two predictions of one fit: which
    run will reach the lower loss, or "too close to call" when the difference is inside the
    intervals' facing sides in quadrature."""
    first, second = (a, b) if a["raw"] <= b["raw"] else (b, a)
    uncertainty = float(np.hypot(first["high"] - first["raw"], second["raw"] - second["low"]))
    if abs(second["raw"] - first["raw"]) < uncertainty:
        return "too close to call"
    return "right" if first["observed"] <= second["observed"] else "wrong"


def pair_verdicts(before: list[dict], after: list[dict]) -> dict[str, int]:
    """Every pair of runs one fit predicted (same ladder and cut): how many verdicts each interval
    gives, how many "too close to call" turn into a verdict, and how many of those the observed
    losses contradict (and of every verdict, before and after)."""
    counts = {"pairs": 0, "verdicts before": 0, "verdicts after": 0, "wrong before": 0, "wrong after": 0,
              "turned": 0, "turned wrong": 0, "lost": 0}
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(before):
        groups.setdefault((r["ladder"], r["cut"]), []).append(i)
    for members in groups.values():
        for k, i in enumerate(members):
            for j in members[k + 1:]:
                old, new = verdict_of(before[i], before[j]), verdict_of(after[i], after[j])
                counts["pairs"] += 1
                counts["verdicts before"] += old != "too close to call"
                counts["verdicts after"] += new != "too close to call"
                counts["wrong before"] += old == "wrong"
                counts["wrong after"] += new == "wrong"
                counts["turned"] += old == "too close to call" and new != "too close to call"
                counts["turned wrong"] += old == "too close to call" and new == "wrong"
                counts["lost"] += old != "too close to call" and new == "too close to call"
    return counts


def own_rescaled(dev: list[dict], held: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rule "own": each law's own backtest interval (its half-width h at the target, from the
    cache), its ends the quantiles of y / h over the other families' scored rows: the same intervals
    as today's, shrunk or widened by the pack (and made asymmetric by its signed errors)."""
    from distillscale.laws.pack_interval import weighted_quantile

    def scale(r):
        return (r["high"] - r["low"]) / 2 / r["raw"]

    rows = dev
    family = np.array([published.family(r["ladder"]) for r in rows])
    weights = np.array([1.0 / sum(x["ladder"] == r["ladder"] for x in rows) for r in rows])
    z = np.array([np.log(r["observed"] / r["raw"]) / scale(r) for r in rows])
    ends = {}
    for name in sorted(set(family.tolist())):
        others = family != name
        ends[name] = weighted_quantile(z[others], weights[others], [(1 - LEVEL) / 2, (1 + LEVEL) / 2])

    def apply(part):
        out = []
        for r in part:
            low, high = ends[published.family(r["ladder"])]
            h = scale(r)
            out.append({**r, "low": r["raw"] * np.exp(min(low, 0.0) * h), "high": r["raw"] * np.exp(max(high, 0.0) * h)})
        return out

    return apply(dev), apply(held)


def markdown(before: dict, after: dict, rules: dict) -> None:
    """The docs' tables: every rule's pooled scores, and per ladder before and after (the first rule)."""
    print("\n| rule | covered (mean of ladders) | least-covered ladder | mean half-width | half-width / |error| "
          "| held-back: covered, half-width / |error| | pairs of one fit: verdicts (wrong) |")
    print("|---|---|---|---|---|---|---|")
    for name, (dev, held, pairs) in rules.items():
        p, worst = dev[POOLED], min((s for n, s in dev.items() if n != POOLED), key=lambda s: s.coverage)
        least = next(n for n, s in dev.items() if s is worst)
        print(f"| {name} | {p.coverage:.1%} | {least} {worst.coverage:.0%} | {p.half_width:.2%} | {p.ratio:.2f} | "
              f"{held[POOLED].coverage:.0%}, {held[POOLED].ratio:.2f} | "
              + (f"{pairs['verdicts after']} of {pairs['pairs']} ({pairs['wrong after']}) |" if pairs else "- |"))
    print("\n| ladder | n | mean |error| (signed) | before: covered, half-width, ratio | after: covered, half-width, "
          "ratio |\n|---|---|---|---|---|")
    for name, b in before.items():
        a = after[name]
        print(f"| `{name}` | {b.n} | {b.error:.2%} ({b.signed:+.2%}) | {b.coverage:.0%}, {b.half_width:.2%}, {b.ratio:.2f} "
              f"| **{a.coverage:.0%}, {a.half_width:.2%}, {a.ratio:.2f}** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--rules", nargs="*", default=list(RULES), choices=list(RULES))
    parser.add_argument("--train-reach", type=float, default=16.0)
    parser.add_argument("--objective", choices=OBJECTIVES, default="likelihood",
                        help="the scale's coefficients by the Laplace likelihood, or then the narrowest interval")
    parser.add_argument("--backtest-power", type=float, nargs="*", default=[0.0],
                        help="each rule also with the scale times (own backtest half-width / median)^k, per k")
    parser.add_argument("--weigh", nargs="*", choices=("ladder", "family"), default=["ladder"],
                        help="the calibration's rows: each ladder the same weight, or each family (its ladders "
                             "the same within it); each rule with each")
    parser.add_argument("--across", nargs="*", choices=("no", "yes"), default=["no"],
                        help="the quantiles of errors standardized by a scale fitted without their family "
                             "(cross-conformal), or by the whole fit's; each rule with each")
    parser.add_argument("--json", help="write every rule's per-ladder scores here")
    parser.add_argument("--markdown", action="store_true", help="print the docs' tables (per ladder: the first rule)")
    parser.add_argument("--write-model", nargs="?", const=str(MODEL_FILE), default=None,
                        help="fit the first rule on every ladder and write it")
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="the date the written model records (default today): the recorded command names "
                             "it, so that running that command again writes the same file, byte for byte")
    args = parser.parse_args()
    rows = with_misfit(load_rows(args.cache), args.cache)
    train = [r for r in rows if not r["held_back"] and 1.0 < r["N"] / r["cut"] <= args.train_reach]
    table = table_of(train)
    print(f"{len(rows)} cached predictions; calibration rows: {len(train)} over {len(set(table.ladder))} ladders")
    if args.write_model:
        rule = args.rules[0]
        power, weigh = args.backtest_power[0], args.weigh[0]
        group = published.family if weigh == "family" else None
        ladders = " ".join(sorted(set(table.ladder.tolist())))
        across = published.family if args.across[0] == "yes" else None
        model = fit_pack_interval(table, LEVEL, RULES[rule], args.objective, power, group, across).model_copy(update={
            "date": args.date,
            "command": f"python bench/laws/crossladder_cache.py --json C --backtest-cuts 3 --sets {ladders} && python "
                       f"bench/laws/pack_intervals.py --cache C --rules {rule} --objective {args.objective} --backtest-power "
                       f"{power:g} --weigh {weigh} --across {args.across[0]} --date {args.date} --write-model",
            "note": f"rule {rule}; the raw default fit's development runs 1-{args.train_reach:g}x beyond every cut "
                    f"of each ladder, each {weigh} weighing the same"})
        Path(args.write_model).write_text(json.dumps(model.model_dump(mode="json"), indent=1) + "\n")
        print(f"wrote {args.write_model}: {model}")
        return
    dev, held = scored(rows), scored(rows, held_back=True)
    before = {"dev": scores(dev), "held": scores(held)}
    show("before: the law's own backtest (development runs 2-8x)", before["dev"])
    print("  " + verdict(before["dev"]))
    show("before: held-back runs", before["held"])
    results = {"before": {k: {n: s.to_dict() for n, s in v.items()} for k, v in before.items()}}
    own_dev, own_held = own_rescaled(dev, held)
    table_rows = {"before: the law's own backtest": (before["dev"], before["held"], None),
                  "own backtest, rescaled": (scores(own_dev), scores(own_held), pair_verdicts(held, own_held))}
    first = None
    show("== own: the law's own backtest interval rescaled by the other families' signed errors", scores(own_dev))
    print("  " + verdict(scores(own_dev)))
    show("own: held-back runs", scores(own_held))
    for rule, power, weigh, across in ((r, k, w, a) for r in args.rules for k in args.backtest_power
                                       for w in args.weigh for a in args.across):
        models = leave_one_family_out(table, published.family, LEVEL, RULES[rule], args.objective, power,
                                      weigh == "family", across == "yes")
        fixed_dev, fixed_held = calibrated(dev, models), calibrated(held, models)
        after = {"dev": scores(fixed_dev), "held": scores(fixed_held)}
        label = (f"{rule} ({', '.join(RULES[rule])}{f', own backtest^{power:g}' if power else ''}"
                 f"{', each family the same weight' if weigh == 'family' else ''}"
                 f"{', quantiles across families' if across == 'yes' else ''})")
        show(f"== {label}, leave one family out: development runs 2-8x", after["dev"])
        print("  " + verdict(after["dev"]))
        show(f"{rule}: held-back runs", after["held"])
        pairs = pair_verdicts(held, fixed_held)
        table_rows[label] = (after["dev"], after["held"], pairs)
        first = first or after
        print(f"  verdicts on pairs of one fit's held-back runs: {pairs}")
        print(f"  verdicts on pairs of one fit's development runs 2-8x: {pair_verdicts(dev, fixed_dev)}")
        full = fit_pack_interval(table, LEVEL, RULES[rule], args.objective, power,
                                 published.family if weigh == "family" else None,
                                 published.family if across == "yes" else None)
        print(f"  fitted on every ladder: {full.model_dump(exclude={'ladders'})}")
        results[label] = {k: {n: s.to_dict() for n, s in v.items()} for k, v in after.items()}
    if args.markdown and first is not None:
        markdown(before["dev"], first["dev"], table_rows)
        markdown(before["held"], first["held"], {})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
