"""A family term for the builtin demo design (issue 64), scored leave one corpus out.

The cross-ladder bias model (`laws.crossladder`, fitted on the published ladders) barely moves the
main job's held-out checks: the micro demo over-predicts its largest size by 3-7% on every corpus,
the pack's ladders at the same distance and span by a few tenths of a percent. Choshen et al.'s
Hitchhiker's guide: a target is predicted best when part of its scaling behaviour comes from other
members of the same model family. The demo's design (the micro sweep spec: its sizes, token budgets,
WSD forks and recipe; 3 fitted teacher sizes predicting the 4th, 2.4x) is such a family, with one
measured member per corpus, and a user who runs `distillscale demo` knows the design before training.

    python bench/demo/demo_family.py collect SWEEPS/* --json F            # the checks, as `report` fits them
    python bench/demo/demo_family.py gpu --json F                         # + the GPU ladder's recorded runs
    python bench/demo/demo_family.py score --json F                       # every variant, leave one corpus out
    python bench/demo/demo_family.py score --json F --write               # ship the dN term (if it passes)

SWEEPS holds the six corpora's demo sweeps (`bench/demo/demo_corpora.py run NAME --sweeps SWEEPS`,
`distillscale demo --out SWEEPS/stdlib`; /tmp/sweeps64 on 2026-11-26, the sweeps the shipped term
names). `collect` calibrates each sweep exactly as `report` does (`report.calibration.calibrate`, default
settings but family_term=False: the shipped pack correction alone) and keeps every held-out run of its two
checks (supervised: fitted on the 3 smaller teacher sizes, predicting the largest; distillation:
the students of the strongest teacher) with the raw prediction, the pack-corrected one and its
interval, and the fit's summary (`crossladder.FitSummary`; for the distillation check, of the
teachers: the distance is the teacher's, dN = ln(N_T / largest fitted N_T), or its strength,
ln(L_T of the strongest fitted teacher / L_T)). `gpu` adds the GPU ladder's records
(docs/gpu_ladder_*.csv, bench/laws/crossladder_external.py's splits), which nothing is fitted on.

`score`: for each corpus, the family term (one or two coefficients, least absolute deviations,
each corpus weighing the same, no intercept: 0 inside the fitted runs) is fitted on the other
corpora's residuals after the pack correction, y = ln(observed / pack-corrected prediction)
(`crossladder.leave_one_member_out`: the penalty and the spread are chosen on those corpora alone),
and applied to the left-out corpus; the interval's sides are at least the pack's and the term's own
spreads added in quadrature (`crossladder.BiasCorrection.apply`). Raw / pack-corrected /
family-corrected: mean |error|, the signed mean, the share over-predicted, the coverage of the 90%
intervals. The adoption rule: the mean of the corpora's mean |error| lower, the share over-predicted
nearer half, no corpus worse than pack-corrected by more than 0.25 point. The GPU ladder is scored
with the term fitted on all six corpora (nothing is fitted on it). `--write [VARIANT]` writes that
supervised term (dN by default: the one adopted, docs/validation_pack.md) into
laws/family_terms.json, with the corpora, the date and this command, if it passes the rule.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np

from distillscale.laws.crossladder import FAMILY_FILE, FamilyTerm, FitSummary, shipped_model
from distillscale.laws.crossladder_fit import ErrorTable, fit_family_term, leave_one_member_out

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports


LEVEL = 0.9
Z = NormalDist().inv_cdf((1 + LEVEL) / 2)
# The family term's candidates: features on the supervised check's (N, D) and, for the distillation
# check, on the teacher ("teacher dN": the teacher's size; "teacher strength": 1 / L_T).
VARIANTS = {
    "supervised": {"dN": ("dN",), "dN/span": ("dN/span",), "dN, dN x ratio": ("dN", "dN*ratio")},
    "distillation": {"teacher dN": ("dN",), "teacher strength": ("dN",)},
}
ADOPT_WORSE = 0.0025
# The design the term is for (`report.design.design_family` names the sweeps of it).
FAMILY = "micro-demo"
DESIGN = "builtin micro demo design"


# -- collecting the checks ---------------------------------------------------------------------------


def _summary(N, D, alpha: float, beta: float) -> dict:
    N, D = np.asarray(N, float), np.asarray(D, float)
    return FitSummary(params_max=float(N.max()), params_min=float(N.min()), tokens_max=float(D.max()),
                      sizes=len(np.unique(N)), runs=len(N), log_ratio_median=float(np.median(np.log(D / N))),
                      alpha=alpha, beta=beta).to_dict()


def collect_sweep(sweep: Path) -> list[dict]:
    """The held-out runs of a sweep's two checks, calibrated as `report` calibrates it."""
    from distillscale.report.calibration import CalibrationSettings, calibrate
    from distillscale.report.runs import load_runs

    calibration = calibrate(load_runs(sweep), CalibrationSettings(family_term=False))   # the pack's alone
    law = calibration.supervised.law
    gamma = float(getattr(law, "gamma", 1.0))   # the exponents the loss follows far out (FitSummary's)
    alpha, beta = float(law.alpha) * gamma, float(law.beta) * gamma
    supervised, students = calibration.runs.supervised, calibration.runs.students
    by_id = {r["run_id"]: r for r in supervised + students}
    rows = []
    for name in ("supervised", "distillation"):
        check = calibration.holdout.get(name, {})
        if not check.get("runs"):
            print(f"{sweep.name} {name}: {check.get('skipped', 'no check')}", file=sys.stderr)
            continue
        held = [by_id[r["run_id"]] for r in check["runs"]]
        if name == "supervised":
            top = max(r["non_embedding_params"] for r in held)
            fitted = [r for r in supervised if r["non_embedding_params"] < top]
            summaries = {"dN": _summary([r["non_embedding_params"] for r in fitted], [r["tokens"] for r in fitted],
                                        alpha, beta)}
            targets = {"dN": [(r["non_embedding_params"], r["tokens"]) for r in held]}
        else:
            strongest = min(r["teacher_loss"] for r in held)
            fitted = [r for r in students if r["teacher_loss"] > strongest]
            tokens = [r["tokens"] for r in fitted]   # every held-out student's D is inside: dD = 0
            summaries = {"teacher dN": _summary([r["teacher_params"] for r in fitted], tokens, alpha, beta),
                         "teacher strength": _summary([1.0 / r["teacher_loss"] for r in fitted], tokens, alpha, beta)}
            targets = {"teacher dN": [(r["teacher_params"], r["tokens"]) for r in held],
                       "teacher strength": [(1.0 / r["teacher_loss"], r["tokens"]) for r in held]}
        for i, (run, record) in enumerate(zip(check["runs"], held)):
            raw = run["raw_predicted"] if run["raw_predicted"] is not None else run["predicted"]
            rows.append({"corpus": sweep.name, "sweep": str(sweep), "law": name, "run_id": run["run_id"],
                         "observed": run["observed"],
                         "raw": raw, "pack": run["predicted"], "low": run["interval"][0], "high": run["interval"][1],
                         "N": record["non_embedding_params"], "D": record["tokens"],
                         "targets": {k: v[i] for k, v in targets.items()}, "summaries": summaries})
    return rows


def collect_gpu() -> list[dict]:
    """The GPU ladder's recorded runs, each split fitted as `report` fits it (bench/laws/crossladder_external.py)."""
    from bench.laws.crossladder_external import gpu_sets
    from bench.common.holdout import supervised_holdout

    rows = []
    for label, runs, (low, high) in gpu_sets():
        fit_rows = (runs.n_layers <= high).to_numpy()
        check, law = supervised_holdout(runs, fit_rows)
        summary = law.bias_correction.summary.to_dict()
        for run in check.runs:
            N, D = float(runs.non_embedding_params.iloc[run.row]), float(runs.tokens.iloc[run.row])
            rows.append({"corpus": label, "law": "gpu", "run_id": str(runs.run_id.iloc[run.row]) if "run_id" in runs
                         else str(run.row), "observed": run.observed, "raw": run.raw_predicted, "pack": run.predicted,
                         "low": run.interval[0], "high": run.interval[1], "N": N, "D": D,
                         "targets": {"dN": (N, D)}, "summaries": {"dN": summary}})
        print(f"{label}: {len(check.runs)} held-out runs", flush=True)
    return rows


# -- the family term, leave one corpus out -----------------------------------------------------------


def table_of(rows: list[dict], key: str) -> ErrorTable:
    """The rows' residuals after the pack correction, y = ln(observed / pack-corrected), with the
    distance of `key` ("dN" for the supervised check, "teacher dN" or "teacher strength")."""
    cache: dict[str, FitSummary] = {}
    summaries = []
    for r in rows:   # one FitSummary per (corpus, key): the rows of a fit share it
        name = f"{r['corpus']}/{key}"
        if name not in cache:
            cache[name] = FitSummary(**r["summaries"][key])
        summaries.append(cache[name])
    return ErrorTable(np.array([r["corpus"] for r in rows]), summaries,
                      np.array([r["targets"][key][0] for r in rows], float),
                      np.array([r["targets"][key][1] for r in rows], float),
                      np.log(np.array([r["observed"] / r["pack"] for r in rows])))


def apply(rows: list[dict], table: ErrorTable, terms: dict[str, FamilyTerm]) -> list[dict]:
    """Each row's pack-corrected prediction and interval times the family term that did not see its
    corpus (`terms["*"]` for rows of no member); each side at least the pack's and the term's own
    spreads in quadrature (what `crossladder.BiasCorrection.apply` does with both)."""
    pack = shipped_model()
    out = []
    for i, r in enumerate(rows):
        model = terms[r["corpus"]] if r["corpus"] in terms else terms["*"]
        s = table.summaries[i]
        N, D = table.N[i], table.D[i]
        factor = float(np.exp(model.log_factor(s, N, D)[0]))
        value = r["pack"] * factor
        pack_sd = 0.0
        if r["law"] != "distillation" and pack is not None:   # the pack's own spread, on the fit's own sizes
            summary = FitSummary(**r["summaries"]["dN"])
            pack_sd = float(pack.relative_sd(summary, r["N"], r["D"])[0])
        own = Z * math.hypot(pack_sd, float(model.relative_sd(s, N, D)[0])) * value
        low = value - max((r["pack"] - r["low"]) * factor, own)
        high = value + max((r["high"] - r["pack"]) * factor, own)
        out.append({**r, "family": value, "family_low": max(low, 0.0), "family_high": high})
    return out


def summarise(rows: list[dict], key: str) -> dict:
    if not rows:
        return {"n": 0}
    signed = np.array([r[key] / r["observed"] - 1 for r in rows])
    out = {"n": len(rows), "mean": float(np.abs(signed).mean()), "max": float(np.abs(signed).max()),
           "signed": float(signed.mean()), "over": int((signed > 0).sum())}
    if key == "pack":
        out["covered"] = int(sum(r["low"] <= r["observed"] <= r["high"] for r in rows))
    elif key == "family":
        out["covered"] = int(sum(r["family_low"] <= r["observed"] <= r["family_high"] for r in rows))
    return out


def per_corpus(rows: list[dict]) -> dict[str, dict[str, dict]]:
    names = list(dict.fromkeys(r["corpus"] for r in rows))
    return {n: {key: summarise([r for r in rows if r["corpus"] == n], key) for key in ("raw", "pack", "family")}
            for n in names}


def adoption(table: dict[str, dict[str, dict]]) -> tuple[bool, str]:
    before = np.mean([c["pack"]["mean"] for c in table.values()])
    after = np.mean([c["family"]["mean"] for c in table.values()])
    n = sum(c["pack"]["n"] for c in table.values())
    over_b = sum(c["pack"]["over"] for c in table.values()) / n
    over_a = sum(c["family"]["over"] for c in table.values()) / n
    worse = {k: c["family"]["mean"] - c["pack"]["mean"] for k, c in table.items()
             if c["family"]["mean"] - c["pack"]["mean"] > ADOPT_WORSE}
    ok = after < before and abs(over_a - 0.5) < abs(over_b - 0.5) and not worse
    why = (f"mean of corpora {before:.2%} -> {after:.2%}, over-predicted {over_b:.0%} -> {over_a:.0%}"
           + ("; worse by > 0.25 point: " + ", ".join(f"{k} +{v:.2%}" for k, v in worse.items()) if worse else ""))
    return ok, why


def _cell(s: dict) -> str:
    covered = f"; {s['covered']}/{s['n']} inside" if "covered" in s else ""
    return f"{s['mean']:.2%} ({s['signed']:+.2%}, {s['over']}/{s['n']} over{covered})"


def print_table(title: str, table: dict[str, dict[str, dict]]) -> None:
    print(f"\n{title}\n| corpus | raw | pack-corrected | family-corrected (LOCO) |\n|---|---|---|---|")
    for name, cells in table.items():
        print(f"| {name} | {_cell(cells['raw'])} | {_cell(cells['pack'])} | **{_cell(cells['family'])}** |")
    for key in ("raw", "pack", "family"):
        cells = [c[key] for c in table.values()]
        n, over = sum(c["n"] for c in cells), sum(c["over"] for c in cells)
        print(f"  {key}: mean of corpora {np.mean([c['mean'] for c in cells]):.2%}, {over}/{n} over-predicted"
              + (f", {sum(c['covered'] for c in cells)}/{n} inside 90%" if "covered" in cells[0] else ""))


def score(rows: list[dict], write: str | None, json_path: Path) -> dict:
    results = {}
    after = shipped_model().coefficients
    demo = [r for r in rows if r["law"] != "gpu"]
    gpu = [r for r in rows if r["law"] == "gpu"]
    adopted = None
    for law, variants in VARIANTS.items():
        mine = [r for r in demo if r["law"] == law]
        if not mine:
            continue
        for variant, features in variants.items():
            key = "dN" if law == "supervised" else variant
            table = table_of(mine, key)
            terms, _ = leave_one_member_out(table, features, FAMILY, DESIGN, after)
            scored = per_corpus(apply(mine, table, terms))
            ok, why = adoption(scored)
            coefs = {n: ", ".join(f"{c:+.4f}" for c in t.model.coefficients) for n, t in terms.items()}
            print(f"\n== {law}, family term on {variant} ({', '.join(features)}): coefficients left out "
                  f"{coefs}; penalties {sorted({t.model.penalty for t in terms.values()})}; spreads "
                  f"{min(t.model.slope_sd for t in terms.values()):.4f}-"
                  f"{max(t.model.slope_sd for t in terms.values()):.4f} ==")
            print_table(f"{law}: {variant}", scored)
            print(("ADOPTABLE: " if ok else "rejected: ") + why)
            full = fit_family_term(table, features, FAMILY, DESIGN, after)
            results[f"{law}: {variant}"] = {"loco": scored, "adoptable": ok, "why": why,
                                             "term": full.model_dump(mode="json")}
            if law == "supervised" and gpu:
                gtable = table_of(gpu, "dN")
                scored_gpu = per_corpus(apply(gpu, gtable, {"*": full}))
                print_table(f"GPU ladder, the term fitted on all {len(table.ladders)} corpora "
                            f"({', '.join(f'{c:+.4f}' for c in full.model.coefficients)}, penalty "
                            f"{full.model.penalty:g}, spread {full.model.slope_sd:.4f}, reach {full.reach:.3f})",
                            scored_gpu)
                results[f"{law}: {variant}"]["gpu"] = scored_gpu
            if law == "supervised" and variant == write:
                adopted = (variant, full, table) if ok else None
    if write:
        if adopted is None:
            print(f"\nthe supervised variant {write!r} does not pass the rule: nothing written")
        else:
            write_family(*adopted, json_path)
    return results


def write_family(variant: str, term: FamilyTerm, table: ErrorTable, json_path: Path) -> None:
    """The adopted term, with its provenance, into laws/family_terms.json (other designs' kept)."""
    command = ("python bench/demo/demo_family.py collect SWEEPS/* --json F && python bench/demo/demo_family.py gpu --json F "
               "&& python bench/demo/demo_family.py score --json F --write")
    model = term.model.model_copy(update={
        "ladders": tuple(table.ladders), "date": datetime.date.today().isoformat(), "command": command,
        "note": f"variant {variant}: ln(observed / pack-corrected) of the held-out runs of each corpus's demo sweep "
                f"(fitted on the 3 smaller teacher sizes, predicting the 443K size: 2.4x; sweeps "
                f"{', '.join(sorted({r['sweep'] for r in json.loads(json_path.read_text()) if 'sweep' in r}))})"})
    term = term.model_copy(update={"model": model})
    data = json.loads(FAMILY_FILE.read_text(encoding="utf-8")) if FAMILY_FILE.is_file() else {}
    data[term.name] = term.model_dump(mode="json")
    FAMILY_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {FAMILY_FILE}[{term.name!r}]: {model.features} {model.coefficients}, spread "
          f"{model.slope_sd:.4f}, reach {term.reach:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["collect", "gpu", "score"])
    parser.add_argument("sweeps", nargs="*", type=Path)
    parser.add_argument("--json", type=Path, required=True, help="the collected rows (collect, gpu add to it)")
    parser.add_argument("--write", nargs="?", const="dN", default=None, choices=list(VARIANTS["supervised"]),
                        help="write this supervised variant's term (default dN) when it passes the rule")
    args = parser.parse_args()
    rows = json.loads(args.json.read_text()) if args.json.is_file() else []
    if args.what == "collect":
        for sweep in args.sweeps:
            if not (sweep / "runs.sqlite").is_file():
                print(f"{sweep}: not a sweep, skipped", file=sys.stderr)
                continue
            rows = [r for r in rows if r["corpus"] != sweep.name] + collect_sweep(sweep)
            args.json.write_text(json.dumps(rows))
            print(f"{sweep.name}: collected", flush=True)
    elif args.what == "gpu":
        rows = [r for r in rows if r["law"] != "gpu"] + collect_gpu()
        args.json.write_text(json.dumps(rows))
    else:
        score(rows, args.write, args.json)


if __name__ == "__main__":
    main()
