"""The distillation law's intervals calibrated across corpora (`laws.distillation_interval`), and
scored leaving one corpus out, through the public prediction (`DistillationLaw.prediction`, what
`distillscale predict distillation` prints).

Each corpus is a finished micro demo sweep (`distillscale demo --data DIR`, or the builtin corpus:
bench/demo/demo_corpora.py runs them). Its held-out check is the report's: the distillation law fitted
without the students of the strongest teacher (`laws.calibrate.calibrate(holdout="largest")`, the
report's settings, the students' supervised law the report's), predicting them.

Usage:
    python bench/laws/distillation_interval.py collect NAME=SWEEP ... [--data bench/data/distillation_interval.json]
    python bench/laws/distillation_interval.py score [--data ...] [--write]
    python bench/laws/distillation_interval.py verdicts [--data ...]

`collect` refits each sweep's check (no training; about a minute a corpus) and writes, per corpus,
the check's law and its held-out runs to --data. `score` prints, per corpus and pooled, the law's own
interval and the calibrated one left out a corpus at a time: coverage, mean half-width, mean |error|
and their ratio; `--write` writes the calibration from every corpus into the package
(src/distillscale/laws/distillation_interval.json), with the date and this command. `verdicts`
plans each sweep's target as its report does (`report.calibration.plan_at_target`) with the
report's supervised law and the check's distillation law (fitted on 3 teachers: a law without a
backtest, as a sweep of 3 teacher sizes gives), its own
interval and the calibration left out that corpus, and counts the verdicts of the four scenarios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from distillscale.io import atomic_write_json
from distillscale.laws.distillation_interval import MODEL_FILE, SIGNALS, IntervalScale, score
from distillscale.laws.forms import DistillationLaw
from distillscale.laws.interaction_law import supervised_law_from_dict
from distillscale.laws.lawset import LawSet
from distillscale.report.calibration import CalibrationSettings, plan_at_target
from distillscale.report.runs import load_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.holdout import distillation_holdout  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "distillation_interval.json"
LEVEL = 0.9


def collect(corpora: dict[str, Path]) -> list[dict]:
    out = []
    for name, sweep in corpora.items():
        runs, laws, check = distillation_holdout(sweep, interval_scale=False)
        students = runs.students
        held = [{"run_id": students[run.row].get("run_id"), "N": float(students[run.row]["non_embedding_params"]),
                 "D": float(students[run.row]["tokens"]), "L_T": float(students[run.row]["teacher_loss"]),
                 "observed": run.observed} for run in check.runs]
        out.append({"corpus": name, "sweep": str(sweep), "form": check.form,
                    "supervised": laws.supervised.to_dict(), "law": check.law.to_dict(), "held_out": held})
        print(f"{name}: {len(held)} held-out students, form {check.form}", file=sys.stderr)
    return out


def held_out(entry: dict) -> tuple[DistillationLaw, dict[str, np.ndarray]]:
    law = DistillationLaw.from_dict(entry["law"], supervised_law_from_dict(entry["supervised"]))
    runs = {key: np.array([run[key] for run in entry["held_out"]]) for key in ("N", "D", "L_T", "observed")}
    return law, runs


def with_scale(law: DistillationLaw, scale: IntervalScale | None) -> DistillationLaw:
    return replace(law, fit=law.fit.model_copy(update={"interval_scale": scale}))


def own_scores(entry: dict, signal: str) -> np.ndarray:
    """The held-out runs' scores against the law's own (uncalibrated) interval."""
    law, runs = held_out(entry)
    return score(runs["observed"], with_scale(law, None).prediction(runs["N"], runs["D"], runs["L_T"]), signal)


def rows_of(entry: dict, scale: IntervalScale | None) -> dict[str, np.ndarray]:
    """Coverage, relative half-width and |error| of each held-out run, through the public prediction."""
    law, runs = held_out(entry)
    p = with_scale(law, scale).prediction(runs["N"], runs["D"], runs["L_T"])
    value, low, high = (np.asarray(x, float) for x in (p.value, p.low, p.high))
    return {"covered": (low <= runs["observed"]) & (runs["observed"] <= high),
            "half_width": (high - low) / 2 / value, "error": np.abs(runs["observed"] / value - 1)}


def table(entries: list[dict], signal: str = "interval") -> tuple[list[str], dict]:
    scores = {entry["corpus"]: own_scores(entry, signal) for entry in entries}
    lines = ["| corpus | held out | mean abs error | own: covered | own: mean half-width (x error) "
             "| calibrated, corpus left out: covered | mean half-width (x error) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    pooled = {"own": [], "loco": []}
    for entry in entries:
        others = np.concatenate([s for name, s in scores.items() if name != entry["corpus"]])
        own, loco = rows_of(entry, None), rows_of(entry, IntervalScale.from_scores(others, LEVEL, signal))
        pooled["own"].append(own)
        pooled["loco"].append(loco)
        error = own["error"].mean()
        lines.append(f"| {entry['corpus']} | {len(own['error'])} | {error:.2%} | {own['covered'].mean():.0%} "
                     f"| {own['half_width'].mean():.2%} ({own['half_width'].mean() / error:.1f}x) "
                     f"| {loco['covered'].mean():.0%} | {loco['half_width'].mean():.2%} "
                     f"({loco['half_width'].mean() / error:.1f}x) |")
    summary = {}
    for key, rows in pooled.items():
        covered = np.concatenate([r["covered"] for r in rows])
        half = np.concatenate([r["half_width"] for r in rows])
        error = np.concatenate([r["error"] for r in rows])
        summary[key] = {"covered": float(covered.mean()), "half_width": float(half.mean()),
                        "error": float(error.mean()), "ratio": float(half.mean() / error.mean()), "n": len(error)}
    own, loco = summary["own"], summary["loco"]
    lines.append(f"| pooled | {own['n']} | {own['error']:.2%} | {own['covered']:.0%} | {own['half_width']:.2%} "
                 f"({own['ratio']:.1f}x) | {loco['covered']:.0%} | {loco['half_width']:.2%} ({loco['ratio']:.1f}x) |")
    return lines, {"summary": summary, "scores": {k: v.tolist() for k, v in scores.items()}}


def verdicts(entries: list[dict], signal: str = "interval") -> list[str]:
    scores = {entry["corpus"]: own_scores(entry, signal) for entry in entries}
    lines = ["| corpus | scenario | own interval: verdict | calibrated, corpus left out: verdict "
             "| reference: the law of all 4 teachers |", "|---|---|---|---|---|"]
    counts = {"own": {}, "calibrated": {}, "reference": {}}
    for entry in entries:
        sweep = Path(entry["sweep"])
        runs = load_runs(sweep)
        laws = LawSet.from_dict(json.loads((sweep / "report.json").read_text())["laws"])
        left_out = IntervalScale.from_scores(np.concatenate([s for n, s in scores.items() if n != entry["corpus"]]),
                                             LEVEL, signal)
        check_law, _ = held_out(entry)   # fitted on the 3 weaker teachers' students: no backtest
        plans = {"reference": plan_at_target(laws, runs, CalibrationSettings())["plans"]}
        for key, scale in (("own", None), ("calibrated", left_out)):
            laws.distillation = with_scale(check_law, scale)
            plans[key] = plan_at_target(laws, runs, CalibrationSettings())["plans"]
        for scenario in plans["own"]:
            said = [plans[key][scenario]["verdict"] for key in counts]
            for key, verdict in zip(counts, said):
                counts[key][verdict] = counts[key].get(verdict, 0) + 1
            lines.append(f"| {entry['corpus']} | {scenario} | " + " | ".join(said) + " |")
    lines.append("")
    for key, tally in counts.items():
        lines.append(f"- {key}: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items())))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["collect", "score", "verdicts"])
    parser.add_argument("sweeps", nargs="*", help="collect: NAME=SWEEP_DIR, one per corpus")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--write", action="store_true", help="score: write the calibration into the package")
    parser.add_argument("--signal", choices=SIGNALS, default="interval",
                        help="score, verdicts: what the scores divide the error by")
    args = parser.parse_args(argv)
    if args.action == "collect":
        corpora = dict((name, Path(path)) for name, path in (item.split("=", 1) for item in args.sweeps))
        entries = json.loads(args.data.read_text())["corpora"] if args.data.is_file() else []
        entries = [e for e in entries if e["corpus"] not in corpora] + collect(corpora)
        args.data.parent.mkdir(parents=True, exist_ok=True)
        command = "python bench/laws/distillation_interval.py collect " + " ".join(args.sweeps)
        atomic_write_json(args.data, {"command": command,
                                      "date": datetime.date.today().isoformat(), "corpora": entries})
        return
    entries = json.loads(args.data.read_text())["corpora"]
    if args.action == "verdicts":
        print("\n".join(verdicts(entries, args.signal)))
        return
    lines, result = table(entries, args.signal)
    print("\n".join(lines))
    if args.write:
        scores = np.concatenate([np.asarray(v) for v in result["scores"].values()])
        scale = IntervalScale.from_scores(scores, LEVEL, args.signal, corpora=tuple(e["corpus"] for e in entries),
                                          date=datetime.date.today().isoformat(),
                                          command=f"python bench/laws/distillation_interval.py score --signal {args.signal} "
                                                  "--write")
        atomic_write_json(MODEL_FILE, scale.model_dump(mode="json"))
        print(f"wrote {MODEL_FILE}: factor at {LEVEL:.0%} {scale.factor(LEVEL):.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
