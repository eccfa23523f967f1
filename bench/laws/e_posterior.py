"""How E should be treated in the default fit's member forms: fitted (the default), or marginalized
over a grid (`laws.marginal`, `fit_supervised(marginal_e=True)`) with the likelihood and prior the
library has, or variants of both, scored on the validation pack (`laws.published`) at every
development cut, not only bench/laws/extrapolation.py's three, and decided by one rule on all the
evidence together.

Why: the marginal E beat the fitted E on every set's development runs (docs/validation_pack.md) but
did worse on the held-back runs, the fits with the most model sizes, and on six micro corpora.

Step 1 fits the default with E marginalized (`fit_supervised(marginal_e=True)`, no bootstrap, no backtest) at every development cut of
every set (each cut: every development run up to a model size, >= 3 sizes, some run 2-8x beyond; see
bench/laws/extrapolation.py), and once at the held-back cut, and stores each member form's laws at E's
grid nodes, its fitted-E law and the fit's rows in a JSON cache (about 25 min for the 12 sets on
one core; reused when present). Step 2 rescores variants from the cache: each reweights the nodes'
laws (`marginal.weigh`), takes the median of the three forms and refits it into one law
(`ensemble.median_law`), as the default does. No refit of any node: a variant costs ~1 min.

    python bench/laws/e_posterior.py --cache /tmp/e_cache.json
    python bench/laws/e_posterior.py --cache /tmp/e_cache.json --variants marginal fitted "sizes^2/6"
    python bench/laws/e_posterior.py --cache /tmp/c4.json --sets gadre2024_c4 --variants marginal fitted
    python bench/laws/e_posterior.py --cache /tmp/e_cache.json --variants fitted marginal identified \
        --units bench/data/e_units_corpora.json     # the decision rule, with the micro corpora as units

Rows per variant: `dev` the mean |relative error| / share over-predicted of the development runs
2-8x beyond every cut; `top3` only the three largest cuts of each set (the fits of most sizes);
`held` the held-back runs (bench/laws/extrapolation.py --held-back's fit, every distance); `last` the
largest development cut's law on every run 2-20x beyond it, held-back runs included (on Gadre et
al.'s sets: fitted below 1B, predicting their 1.4B and 6.9B runs, as the issue's hidden test); then the
leave-one-set-out choice among the variants, on `dev`, for each set; then the decision rule on all
the evidence (`all_evidence_loso`, fixed before the variants were scored together): each unit (a pack
set, or a corpus of --units) scores a variant by the mean of its rows (dev, held, last for a set; a
corpus's own score, e.g. `report`'s supervised held-out mean |error|, from a JSON file); the variant
chosen for a unit is the one with the lowest mean log score over the *other* units (a geometric
mean: corpora erring at ~5% do not outweigh sets at ~1%). Variants:

    marginal     uniform prior on (0, lowest loss), likelihood counted over K distinct sizes
                 (`laws.marginal` as the library has it, `fit_supervised(marginal_e=True)`)
    fitted       each form's E fitted (the default, `fit_supervised()`)
    identified   marginal only where the form's fitted E is identified (>= E_FLOOR_FRACTION x the
                 lowest loss), else fitted
    temper2/4    likelihood counted over 2K / 4K
    sizes^2/6    counted over K * max(1, K / 6): sharper than marginal from 7 sizes on
    sizes^2/10   the same from 11 sizes on
    runs         counted over the runs, not the sizes
    fitted from k    marginal below k sizes, E fitted from k on (k = 8, 11, 14)
    prior f      prior density f = E / lowest loss (favours a high E); "prior f^2" likewise
    prior f>0.3  uniform on (0.3, 1) x lowest loss
    ahead        weighed by how well each node predicted ahead instead of how well it fits: the
                 uniform prior times the likelihood of the fitted runs >= 2x (or 1.5x) beyond the
                 largest earlier cut, predicted by that cut's laws at the same E (interpolated in E,
                 held at the ends; the cut's own weights where no earlier cut is far enough)
    ahead+marginal  the two posteriors mixed half and half; ahead*marginal their product
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from distillscale.laws import ensemble, published
from distillscale.laws.backtest import scale_levels
from distillscale.laws.fitting import E_FLOOR_FRACTION
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.marginal import posterior_weights, weigh
from distillscale.laws.selection import fit_supervised

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.laws.extrapolation import choose_cuts, held_back  # noqa: E402  (a sibling script, not a package)

VARIANTS = {
    "marginal": {},
    "fitted": None,
    "temper2": {"count": lambda K, n: 2 * K},
    "temper4": {"count": lambda K, n: 4 * K},
    "sizes^2/6": {"count": lambda K, n: K * max(1.0, K / 6)},
    "sizes^2/10": {"count": lambda K, n: K * max(1.0, K / 10)},
    "runs": {"count": lambda K, n: n},
    # E fitted from k sizes on (a likelihood this sharp puts all weight on the best node, the free fit)
    "fitted from 8": {"count": lambda K, n: K if K < 8 else 1e6},
    "fitted from 11": {"count": lambda K, n: K if K < 11 else 1e6},
    "fitted from 14": {"count": lambda K, n: K if K < 14 else 1e6},
    "prior f": {"prior": lambda f: f},
    "prior f^2": {"prior": lambda f: f ** 2},
    "prior f>0.3": {"prior": lambda f: (f >= 0.3) + 1e-12},
    "ahead": {"ahead": {"beyond": 2.0, "mix": 1.0}},
    "ahead 1.5x": {"ahead": {"beyond": 1.5, "mix": 1.0}},
    "ahead+marginal": {"ahead": {"beyond": 2.0, "mix": 0.5}},
    "ahead*marginal": {"ahead": {"beyond": 2.0, "product": True}},
    "identified": {"identified": True},
}


def law_json(law: SupervisedLaw) -> list[float]:
    return [float(getattr(law, c)) for c in SupervisedLaw.COEFFICIENTS]


def law_from(coefficients: list[float]) -> SupervisedLaw:
    return SupervisedLaw(**dict(zip(SupervisedLaw.COEFFICIENTS, coefficients)))


def cache_entry(fit, fit_rows: np.ndarray, predict_rows: np.ndarray) -> dict:
    """What step 2 needs of one default fit: its rows, and each member form's fitted-E law and
    grid-node laws (None where the form kept its fitted E)."""
    members = []
    for member, marginal in zip(fit.fitter.members_, fit.fitter.marginals_):
        members.append({"form": member.form_name, "fitted": law_json(member.law_),
                        "nodes": None if marginal is None else [law_json(law) for law in marginal.laws],
                        "lowest_loss": None if marginal is None else marginal.lowest_loss})
    return {"fit_rows": np.flatnonzero(fit_rows).tolist(), "predict_rows": np.flatnonzero(predict_rows).tolist(),
            "members": members}


def variant_law(entry: dict, N, D, loss, variant: dict | None, earlier: list[tuple[float, dict]] = ()) -> SupervisedLaw:
    """The one law a variant makes of a cached fit (N, D, loss: the fitted runs; `earlier`: the
    same set's smaller development cuts, (cut, entry)): the members as the variant has them, their
    median refitted (`ensemble.median_law`)."""
    if variant is None:
        members = [law_from(m["fitted"]) for m in entry["members"]]
    else:
        step = earlier_step(earlier, N, variant)
        members = [member_law(m, N, D, loss, variant, step and (step[0], step[1]["members"][k]))
                   for k, m in enumerate(entry["members"])]
    return ensemble.median_law(members, N, D)


def earlier_step(earlier, N, variant: dict) -> tuple[float, dict] | None:
    """The largest earlier cut at least `beyond` times below the largest fitted size, (cut, entry),
    or None when the variant does not look ahead or no earlier cut is that far below."""
    if "ahead" not in variant:
        return None
    steps = [(cut, entry) for cut, entry in earlier if variant["ahead"]["beyond"] * cut < N.max()]
    return steps[-1] if steps else None


def build(path: str, sets: list[str]) -> dict:
    """The cache at `path`, completed: a `cache_entry` for each (set, kind, cut)."""
    cache = json.load(open(path)) if os.path.exists(path) else {}
    for name in sets:
        N, D, loss = published.load(name).columns()
        back = held_back(N)
        develop = ~back
        configs = [("dev", cut) for cut in choose_cuts(N, develop, develop, 10 ** 6)]
        configs += [("held", cut) for cut in choose_cuts(N, back, develop, 1)]
        for kind, cut in configs:
            key = f"{name}|{kind}|{cut!r}"
            if key in cache:
                continue
            start = time.process_time()
            fit_rows = develop & (N <= cut)
            predict_rows = (develop if kind == "dev" else back) & (N > cut) & (N <= 8 * cut)
            fit = fit_supervised(N[fit_rows], D[fit_rows], loss[fit_rows], bootstrap=0, backtest=False,
                                 marginal_e=True, bias_correction=False)  # raw: the pack trained the correction
            cache[key] = cache_entry(fit, fit_rows, predict_rows)
            with open(path + ".tmp", "w") as handle:
                json.dump(cache, handle)
            os.replace(path + ".tmp", path)
            print(f"  cached {name} {kind} cut {cut:.3g}: {fit_rows.sum()} runs fitted, "
                  f"{time.process_time() - start:.0f} s", flush=True)
    return cache


def member_law(member: dict, N, D, loss, variant: dict, before: tuple[float, dict] | None = None):
    """The member as the variant has it: its fitted-E law, or its nodes reweighted (`before`: the
    same member at an earlier cut, (cut, member), for the variants that look ahead)."""
    if member["nodes"] is None:
        return law_from(member["fitted"])
    fitted, lowest = law_from(member["fitted"]), member["lowest_loss"]
    if variant.get("identified") and fitted.E < E_FLOOR_FRACTION * lowest:
        return fitted
    laws = [law_from(c) for c in member["nodes"]]
    count = variant["count"](len(scale_levels(N)), len(N)) if "count" in variant else None
    marginal = weigh(laws, N, D, loss, lowest, count)
    if "prior" in variant:
        weights = marginal.weights * variant["prior"](marginal.E / lowest)
        return replace(marginal, weights=weights / weights.sum())
    if "ahead" in variant and before is not None and before[1]["nodes"] is not None:
        ahead, (cut, earlier) = variant["ahead"], before
        runs = (N > ahead["beyond"] * cut) & (N <= 8 * cut)
        if not runs.any():
            return marginal
        earlier_laws = [law_from(c) for c in earlier["nodes"]]
        earlier_E = np.array([law.E for law in earlier_laws])
        order = np.argsort(earlier_E)
        residuals = [np.log(law.predict(N[runs], D[runs]) / loss[runs]) for law in earlier_laws]
        mean_abs = np.array([np.abs(r).mean() for r in residuals])[order]
        # each node's residuals ahead: the earlier cut's, at the nearest E's (interpolated)
        at_nodes = [np.full(1, np.interp(e, earlier_E[order], mean_abs)) for e in marginal.E]
        looked = posterior_weights(marginal.E, at_nodes, len(scale_levels(N[runs])), lowest)
        if ahead.get("product"):
            weights = looked * marginal.weights
        else:
            weights = ahead["mix"] * looked + (1 - ahead["mix"]) * marginal.weights
        return replace(marginal, weights=weights / weights.sum())
    return marginal


def errors(cache: dict, name: str, variant: dict | None) -> dict[str, list]:
    """Signed relative errors of one set's predictions under a variant: dev (2-8x beyond every cut),
    top3 (the three largest cuts), held, last (the largest cut's law, every run 2-20x beyond it)."""
    N, D, loss = published.load(name).columns()
    keys = sorted((k for k in cache if k.startswith(name + "|")), key=lambda k: float(k.split("|")[2]))
    dev_keys = [k for k in keys if k.split("|")[1] == "dev"]
    out = {"dev": [], "top3": [], "held": [], "last": []}
    for key in keys:
        entry, (_, kind, cut) = cache[key], key.split("|")
        fit, pred = np.array(entry["fit_rows"]), np.array(entry["predict_rows"])
        if len(pred) == 0:
            continue
        earlier = [(float(k.split("|")[2]), cache[k]) for k in dev_keys if float(k.split("|")[2]) < float(cut)]
        law = variant_law(entry, N[fit], D[fit], loss[fit], variant, earlier)
        error = law.predict(N[pred], D[pred]) / loss[pred] - 1
        if kind == "held":
            out["held"] += list(error)
            continue
        if key == dev_keys[-1]:  # the largest cut's law on every run 2-20x beyond, held-back ones included
            beyond = (N > 2 * float(cut)) & (N <= 20 * float(cut))
            out["last"] += list(law.predict(N[beyond], D[beyond]) / loss[beyond] - 1)
        distance = N[pred] / float(cut)
        error = error[(distance > 2) & (distance <= 8)]
        out["dev"] += list(error)
        if key in dev_keys[-3:]:
            out["top3"] += list(error)
    return out


def cell(values: list) -> str:
    values = np.asarray(values)
    return f"{np.abs(values).mean() * 100:5.2f}/{(values > 0).mean() * 100:3.0f}" if len(values) else f"{'-':>9}"


def all_evidence_loso(scores: dict[str, dict[str, float]], variants: list[str]) -> list[tuple[str, str, float]]:
    """For each unit of `scores` (unit -> variant -> score, lower is better; every variant present),
    the variant with the lowest mean log score over the other units, and its score on the unit:
    (unit, chosen, score)."""
    out = []
    for unit in scores:
        others = [u for u in scores if u != unit]
        chosen = min(variants, key=lambda v: geometric_mean(scores, others, v))
        out.append((unit, chosen, scores[unit][chosen]))
    return out


def geometric_mean(scores: dict[str, dict[str, float]], units: list[str], variant: str) -> float:
    """The variant's geometric mean score over `units` (the decision rule's criterion)."""
    return float(np.exp(np.mean([np.log(scores[u][variant]) for u in units])))


def load_units(path: str) -> dict[str, dict[str, float]]:
    """Extra evidence units: a JSON object unit -> variant -> score (keys starting "_" are notes)."""
    return {unit: scores for unit, scores in json.load(open(path)).items() if not unit.startswith("_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="JSON cache of the fits (made if absent, reused if present)")
    parser.add_argument("--sets", nargs="+", default=None, help="pack sets (default: every available one)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--units", help="JSON of further evidence units for the decision rule: "
                                        "unit -> variant -> mean |error| %% (e.g. bench/data/e_units_corpora.json)")
    args = parser.parse_args()
    try:
        extra = load_units(args.units) if args.units else {}
    except (OSError, ValueError, AttributeError) as error:
        parser.exit(2, f"--units {args.units}: {error}; give a JSON object unit -> variant -> score\n")
    sets = args.sets or list(published.names(available=True))
    unknown = sorted(set(sets) - set(published.names(available=True)))
    if unknown:
        parser.exit(2, f"unknown or unavailable set(s) {', '.join(unknown)}: choose among "
                       f"{', '.join(published.names(available=True))}\n")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.cache))):
        parser.exit(2, f"--cache {args.cache}: its directory does not exist; give a path in an existing directory\n")
    print("step 1: the fits (cached)", flush=True)
    cache = build(args.cache, sets)
    print("step 2: variants; cells are mean |error| % / share over-predicted %", flush=True)
    print(f"{'':<22}" + " ".join(f"{s[:5] + s.split('_')[-1][:4]:>9}" for s in sets) + " | mean of sets")
    dev_means, unit_scores = {}, {name: {} for name in sets}
    for label in args.variants:
        start = time.process_time()
        per_set = {name: errors(cache, name, VARIANTS[label]) for name in sets}
        for row in ("dev", "top3", "held", "last"):
            means = [np.abs(per_set[s][row]).mean() * 100 for s in sets if per_set[s][row]]
            print(f"{label + ' ' + row:<22}" + " ".join(cell(per_set[s][row]) for s in sets)
                  + f" | {np.mean(means):.2f}")
        dev_means[label] = {s: np.abs(per_set[s]["dev"]).mean() * 100 for s in sets}
        for s in sets:
            unit_scores[s][label] = np.mean([np.abs(per_set[s][row]).mean() * 100
                                             for row in ("dev", "held", "last") if per_set[s][row]])
        print(f"{'':<22}({time.process_time() - start:.0f} s)", flush=True)
    if len(args.variants) > 1 and len(sets) > 1:
        print("leave one set out (dev): the variant best on the other sets' mean, scored on the left-out set")
        for name in sets:
            chosen = min(args.variants, key=lambda v: np.mean([dev_means[v][s] for s in sets if s != name]))
            fitted = f" (fitted {dev_means['fitted'][name]:.2f}%)" if "fitted" in dev_means else ""
            print(f"  {name:<32} {chosen:<14} {dev_means[chosen][name]:.2f}%{fitted}")
    # the decision rule: every unit, the variants every unit scored
    units = {**unit_scores, **extra}
    variants = [v for v in args.variants if all(v in scores for scores in units.values())]
    left = sorted(set(args.variants) - set(variants))
    if len(variants) > 1 and len(units) > 2:
        print(f"\nall the evidence: {len(units)} units (mean of dev, held, last for a set)"
              + (f"; left out, not scored on every unit: {', '.join(left)}" if left else ""))
        print(f"{'unit':<32}" + "".join(f"{v:>14}" for v in variants) + "   chosen on the others")
        picks = {}
        for unit, chosen, _ in all_evidence_loso(units, variants):
            picks[chosen] = picks.get(chosen, 0) + 1
            print(f"{unit:<32}" + "".join(f"{units[unit][v]:>14.2f}" for v in variants) + f"   {chosen}")
        print(f"{'geometric mean':<32}" + "".join(f"{geometric_mean(units, list(units), v):>14.3f}" for v in variants))
        for v in variants:
            if v != "fitted" and "fitted" in variants:
                helps = sum(units[u][v] < units[u]["fitted"] for u in units)
                hurts = sum(units[u][v] > units[u]["fitted"] for u in units)
                print(f"  {v} against fitted: better on {helps}, worse on {hurts} of {len(units)} units")
        print("chosen, leaving each unit out: " + ", ".join(f"{v} {n}x" for v, n in picks.items()))


if __name__ == "__main__":
    main()
