"""Verdicts checked against students trained both ways: the interval of Delta = L(distilled) -
L(alone) (`laws.difference`) calibrated on measured pairs and scored leaving one corpus out,
through `laws.difference.loss_difference`, the function every verdict reads.

Each corpus is a finished micro demo sweep (`distillscale demo --data DIR`; bench/demo/demo_corpora.py
runs them). Two kinds of pairs per corpus:

- trained: a student of depth 3 (187K parameters, 3.4x the sweep's largest distilled student), at two
  budgets (the student alone on 3 and 12 tokens per parameter), distilled from the sweep's strongest
  teacher in two scenarios: the teacher's logits paid from the budget (teacher-inference, D_S = C /
  (3 F(N_S) + F(N_T))) and free (a logit cache or a teacher someone else runs: D_S = C / (3 F(N_S)));
  and trained alone on the whole budget. The predictions are the planner's
  (`DistillationPlanner.plan_with_teacher`) under the laws the demo's report fitted (what `plan --law
  report.json` uses). Each pair's four-plus-two runs are WSD runs with forks (training/fork.py).
- held-out teacher: the report's held-out check (the distillation law fitted without the students of
  the strongest teacher) predicting those students, each against the supervised baseline the sweep
  trained at the same size and tokens (the teacher free: the same compute).

Usage:
    python bench/laws/verdict_pairs.py train NAME=SWEEP ... [--data bench/data/verdict_pairs.json] [--work /work/pairs]
    python bench/laws/verdict_pairs.py score [--data ...] [--write]
    python bench/laws/verdict_pairs.py demo NAME=SWEEP ...
    python bench/laws/verdict_pairs.py presets
    python bench/laws/verdict_pairs.py guide

`train` trains the pairs of each sweep (about 3-5 minutes a corpus on 2 free cores; finished runs are
reused) and writes the predictions and the measured losses to --data. `score` fits the rule left out a
corpus at a time and prints, per rule: Delta's coverage, the verdicts given and the wrong ones; with
`--write` it writes the calibration from every corpus into the package
(src/distillscale/laws/difference_interval.json). `demo` plans each sweep's target as its report does
and prints each scenario's verdict under the rule before and the shipped one; `guide` does the same for
the own-teacher guide's three teachers, whose students were trained both ways (kind "own-teacher
guide" in --data, not used to calibrate).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from distillscale.io import atomic_write_json, atomic_write_text
from distillscale.laws.difference import (INDEPENDENT, MODEL_FILE, DifferenceCalibration, Pair, fit_calibration,
                                          score_pairs, standardized_errors)
from distillscale.laws.lawset import LawSet
from distillscale.laws.uncertainty import Prediction
from distillscale.planning.flops import ForwardFlops
from distillscale.planning.solver import DEFAULT_BOUNDS, DistillationPlanner
from distillscale.report.calibration import CalibrationSettings
from distillscale.report.runs import load_runs
from distillscale.settings import load_config, to_toml
from distillscale.training.config import DistillConfig, TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.holdout import distillation_holdout  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "verdict_pairs.json"
LEVEL = 0.9
DEPTH = 3                          # the pairs' student: beyond the sweep's students (depths 1-2)
TOKENS_PER_PARAM = (2.0, 8.0)      # the two budgets: the student alone on these D/N
TEACHER_FREE = "teacher free"      # the scenario whose teacher's logits cost the budget nothing
# The shipped rule: each law's half-width scaled by its own width against its errors before the two are
# combined (`laws.difference.fit_calibration(separate=...)`), chosen on the leave-one-corpus-out scores.
SEPARATE = True


def prediction_record(p: Prediction) -> dict:
    return {"value": float(p.value), "low": float(p.low), "high": float(p.high), "level": p.level,
            "distance": None if p.distance is None else float(np.max(p.distance)),
            "beyond_backtest": bool(p.beyond_backtest), "calibrated": bool(p.calibrated)}


def prediction_of(record: dict) -> Prediction:
    return Prediction(record["value"], record["low"], record["high"], record["level"], None, None,
                      record["distance"], record["beyond_backtest"], record["calibrated"])


def _store_configs(sweep: Path) -> dict[str, dict]:
    with sqlite3.connect(sweep / "runs.sqlite") as db:
        return {run_id: {"kind": kind, **json.loads(config)}
                for run_id, kind, config in db.execute("select id, kind, config from runs")}


def _launch(command: str, config, path: Path, log: Path) -> subprocess.Popen:
    atomic_write_text(path, to_toml(config))
    return subprocess.Popen([sys.executable, "-m", "distillscale.cli", command, "--config", str(path)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def _result(run_dir: Path) -> dict | None:
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _run_all(jobs: list[tuple[str, object, Path]], work: Path) -> None:
    """Run the (command, config, run_dir) jobs two at a time, skipping finished ones."""
    pending = [job for job in jobs if _result(job[2]) is None]
    running: list[subprocess.Popen] = []
    while pending or running:
        running = [p for p in running if p.poll() is None]
        while pending and len(running) < 2:
            command, config, run_dir = pending.pop(0)
            running.append(_launch(command, config, work / f"{run_dir.name}.toml", work / f"{run_dir.name}.log"))
        time.sleep(2)
    for _, _, run_dir in jobs:
        if _result(run_dir) is None:
            sys.exit(f"{run_dir} did not finish: see {work / (run_dir.name + '.log')}")


def trained_pairs(name: str, sweep: Path, work: Path) -> list[dict]:
    """Plan, train and measure the corpus's trained pairs (see the module)."""
    laws = LawSet.from_dict(json.loads((sweep / "report.json").read_text())["laws"])
    runs = load_runs(sweep)
    configs = _store_configs(sweep)
    student = next(c for c in configs.values() if c["command"] == "distill")
    teacher_row = max(runs.students, key=lambda r: r["teacher_params"])
    teacher_params, teacher_loss = float(teacher_row["teacher_params"]), float(teacher_row["teacher_loss"])
    teacher_id = next(run_id for run_id, c in configs.items() if c["command"] == "distill"
                      and c.get("teacher_id") and configs[c["teacher_id"]]["non_embedding_params"] == teacher_params)
    teacher_dir = sweep / "runs" / configs[teacher_id]["teacher_id"]
    baseline = next(c for c in configs.values() if c["kind"] == "baseline")
    size = next(c for c in configs.values() if c["n_layers"] == DEPTH)
    params = float(size["non_embedding_params"])
    flops = ForwardFlops.from_settings(laws.compute)
    smallest = min(r["non_embedding_params"] for r in runs.supervised)
    planner = DistillationPlanner(laws, flops, bounds=(min(DEFAULT_BOUNDS[0], smallest / 10), DEFAULT_BOUNDS[1]))
    plans = []
    for ratio in TOKENS_PER_PARAM:
        budget = 3.0 * float(flops(params)) * ratio * params
        for scenario, teacher_flops in ((TEACHER_FREE, 1e-9), ("teacher-inference", None)):
            plan = planner.plan_with_teacher(params, budget, teacher_params, teacher_loss=teacher_loss,
                                             teacher_flops_per_token=teacher_flops)
            plans.append({"scenario": scenario, "budget": budget, "ratio": ratio, "plan": plan})
    root = work / name
    root.mkdir(parents=True, exist_ok=True)

    alone_tokens = sorted({p["plan"].supervised.tokens for p in plans})
    distilled_tokens = sorted({p["plan"].student_tokens for p in plans})

    def settings(template: dict, tokens: float) -> dict:
        """The template's settings at depth 3 and `tokens`, with the sweep's warmup rule: 10% of the
        steps of the shortest run of the fork family (sweeps/spec.py)."""
        kept = {k: v for k, v in template["settings"].items() if k not in ("fork_tokens", "tokens", "budget")}
        shortest = (alone_tokens if template["command"] == "train" else distilled_tokens)[0]
        step_tokens = kept["batch_size"] * kept["seq_len"] * kept.get("grad_accum", 1)
        return {**kept, "n_layers": DEPTH, "tokens": float(round(tokens)),
                "warmup_steps": max(1, round(0.1 * shortest / step_tokens))}

    alone_dir, distilled_dir = root / "alone", root / "distilled"
    parents = [("train", load_config(TrainConfig, None, {**settings(baseline, alone_tokens[-1]), "out": alone_dir,
                                                          "fork_tokens": [round(t) for t in alone_tokens[:-1]]}),
                alone_dir),
               ("distill", load_config(DistillConfig, None, {**settings(student, distilled_tokens[-1]),
                                                             "out": distilled_dir, "teacher": teacher_dir,
                                                             "fork_tokens": [round(t) for t in distilled_tokens[:-1]]}),
                distilled_dir)]
    _run_all(parents, root)
    forks = [("train", load_config(TrainConfig, None, {**settings(baseline, t), "out": root / f"alone-{round(t)}",
                                                        "fork_from": alone_dir}), root / f"alone-{round(t)}")
             for t in alone_tokens[:-1]]
    forks += [("distill", load_config(DistillConfig, None, {**settings(student, t), "out": root / f"distilled-{round(t)}",
                                                            "teacher": teacher_dir, "fork_from": distilled_dir}),
               root / f"distilled-{round(t)}") for t in distilled_tokens[:-1]]
    _run_all(forks, root)

    def observed(kind: str, tokens: float) -> float:
        top = (alone_tokens if kind == "alone" else distilled_tokens)[-1]
        run_dir = root / kind if tokens == top else root / f"{kind}-{round(tokens)}"
        return float(_result(run_dir)["val_loss"])

    out = []
    for item in plans:
        plan = item["plan"]
        out.append({"corpus": name, "kind": "trained", "scenario": item["scenario"], "budget": item["budget"],
                    "alone_tokens_per_param": item["ratio"], "student_params": params,
                    "student_tokens": plan.student_tokens, "alone_tokens": plan.supervised.tokens,
                    "teacher_params": teacher_params, "teacher_loss": teacher_loss,
                    "distilled": prediction_record(plan.student_interval),
                    "alone": prediction_record(plan.supervised.interval),
                    "distilled_observed": observed("distilled", plan.student_tokens),
                    "alone_observed": observed("alone", plan.supervised.tokens)})
    return out


def held_out_teacher_pairs(name: str, sweep: Path) -> list[dict]:
    """The report's held-out check (the distillation law fitted without the strongest teacher's
    students) on those students, each against its same-size, same-tokens supervised baseline."""
    runs, laws, check = distillation_holdout(sweep)
    baselines = [r for r in runs.supervised if r["kind"] == "baseline"]
    out = []
    for run in check.runs:
        row = runs.students[run.row]
        match = [b for b in baselines if b["non_embedding_params"] == row["non_embedding_params"]
                 and abs(b["tokens"] / row["tokens"] - 1) < 0.01]
        if not match:
            continue
        N, D, L_T = row["non_embedding_params"], row["tokens"], row["teacher_loss"]
        out.append({"corpus": name, "kind": "held-out-teacher", "scenario": TEACHER_FREE,
                    "student_params": N, "student_tokens": D, "alone_tokens": D, "teacher_loss": L_T,
                    "distilled": prediction_record(check.law.prediction(N, D, L_T)),
                    "alone": prediction_record(laws.supervised.prediction(N, D)),
                    "distilled_observed": float(row["val_loss"]), "alone_observed": float(match[0]["val_loss"])})
    return out


def pairs_of(records: list[dict], kinds: tuple[str, ...]) -> list[Pair]:
    return [Pair(r["corpus"], prediction_of(r["distilled"]), prediction_of(r["alone"]), r["distilled_observed"],
                 r["alone_observed"]) for r in records if r["kind"] in kinds]


def rules(train: list[Pair]) -> dict[str, DifferenceCalibration]:
    """Every rule scored: the independent one, the correlation alone, and the correlation with the
    conformal factor (the shipped rule), each fitted on `train`."""
    fitted = fit_calibration(train, LEVEL)
    return {"independent (rho 0, q 1)": INDEPENDENT,
            "independent, conformal q": fit_calibration_fixed_rho(train, 0.0),
            "correlated, q 1": fitted.model_copy(update={"factor": 1.0}),
            "correlated, conformal q": fitted,
            "each law's scale, correlated, conformal q": fit_calibration(train, LEVEL, separate=True)}


def fit_calibration_fixed_rho(train: list[Pair], rho: float) -> DifferenceCalibration:
    """The conformal factor at a fixed correlation."""
    from distillscale.laws.difference import _weighted_quantile, loss_difference

    unit = DifferenceCalibration(correlation=rho, factor=1.0, level=LEVEL)
    scores, weights = [], []
    counts = {c: sum(p.corpus == c for p in train) for c in {p.corpus for p in train}}
    for pair in train:
        delta = loss_difference(pair.distilled, pair.alone, unit)
        error = pair.observed - delta.value
        side = (delta.high - delta.value) if error > 0 else (delta.value - delta.low)
        scores.append(abs(error) / side)
        weights.append(1.0 / counts[pair.corpus])
    return unit.model_copy(update={"factor": _weighted_quantile(np.array(scores), np.array(weights), LEVEL)})


def legacy_verdict(d: Prediction, a: Prediction) -> str:
    """The verdict of the rule before the difference had an interval (see `before`)."""
    from distillscale.laws.extrapolation import CANNOT_TELL, far_beyond

    value = float(d.value) - float(a.value)
    if (far_beyond(d) or far_beyond(a)) and not (d.high < a.low or a.high < d.low):
        return CANNOT_TELL
    up, down = float(np.hypot(d.high - d.value, a.value - a.low)), float(np.hypot(d.value - d.low, a.high - a.value))
    if abs(value) < (up if value <= 0 else down):
        return "too close to call"
    return "distill" if value < 0 else "pretrain"


def demo_verdicts(sweeps: dict[str, Path]) -> list[str]:
    """Each demo's plans at its target (`report.calibration.plan_at_target`, what `demo` prints):
    each scenario's verdict under the rule before and under the shipped one."""
    from distillscale.laws.difference import loss_difference
    from distillscale.report.calibration import plan_at_target

    lines = ["| corpus | scenario | Delta (nats/token) | before | now |", "|---|---|---:|---|---|"]
    tally = {"before": 0, "now": 0, "plans": 0}
    for name, sweep in sweeps.items():
        laws = LawSet.from_dict(json.loads((sweep / "report.json").read_text())["laws"])
        plans = plan_at_target(laws, load_runs(sweep), CalibrationSettings())["plans"]
        for scenario, plan in plans.items():
            def prediction(value: float, record: dict) -> Prediction:
                low, high = record["interval"]
                return Prediction(value, low, high, record["level"], None, None, record["distance_beyond_runs"],
                                  record["beyond_backtest"])
            d = prediction(plan["student_loss"], plan["student_loss_interval"])
            a = prediction(plan["supervised_loss"], plan["supervised_loss_interval"])
            old, new = legacy_verdict(d, a), loss_difference(d, a)
            assert new.verdict == plan["verdict"]   # the plan's verdict is this function's
            tally["plans"] += 1
            tally["before"] += old in ("distill", "pretrain")
            tally["now"] += new.verdict in ("distill", "pretrain")
            lines.append(f"| {name} | {scenario} | {new.describe()} | {old} | {new.verdict} |")
    lines.append(f"\ndecided: {tally['before']} of {tally['plans']} before, {tally['now']} now")
    return lines


def preset_verdicts(law: str = "busbridge2025") -> list[str]:
    """A grid of preset plans (students of 100M, 546M and 2B; budgets 1e20, 1e21, 1e22; the four
    scenarios): how many get a verdict under the rule before and the shipped one."""
    import distillscale as ds

    counts = {"before": {}, "now": {}}
    for params in (100e6, 546e6, 2e9):
        for compute in (1e20, 1e21, 1e22):
            for p in ds.plan(law, student_params=params, compute=compute).plans:
                for key, verdict in (("before", legacy_verdict(p.student_interval, p.supervised.interval)),
                                     ("now", p.verdict)):
                    counts[key][verdict] = counts[key].get(verdict, 0) + 1
    return [f"{key}: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items()))
            for key, tally in counts.items()]


def before(pairs: list[Pair]) -> tuple[int, int, int]:
    """The rule verdicts followed before the difference had an interval: the two losses' half-widths
    facing each other in quadrature, and beyond a loss's backtest intervals that do not overlap at
    all (CANNOT_TELL otherwise). Its (covered, given, wrong): covered by Delta +- that quadrature."""
    from distillscale.laws.extrapolation import far_beyond

    covered = given = wrong = 0
    for pair in pairs:
        d, a = pair.distilled, pair.alone
        value = float(d.value) - float(a.value)
        up, down = float(np.hypot(d.high - d.value, a.value - a.low)), float(np.hypot(d.value - d.low, a.high - a.value))
        covered += int(value - down <= pair.observed <= value + up)
        if (far_beyond(d) or far_beyond(a)) and not (d.high < a.low or a.high < d.low):
            continue
        if abs(value) < (up if value <= 0 else down):
            continue
        given += 1
        wrong += int((value < 0) != (pair.observed < 0))
    return covered, given, wrong


def score(records: list[dict], kinds: tuple[str, ...]) -> list[str]:
    pairs = pairs_of(records, kinds)
    corpora = sorted({p.corpus for p in pairs})
    zs = np.array([standardized_errors(p) for p in pairs])
    relative = np.array([[p.distilled_observed / float(p.distilled.value) - 1, p.alone_observed / float(p.alone.value) - 1]
                         for p in pairs])
    lines = [f"pairs: {len(pairs)} on {len(corpora)} corpora ({', '.join(kinds)}); "
             f"correlation of the two laws' errors: standardized {np.corrcoef(zs.T)[0, 1]:.3f}, "
             f"relative {np.corrcoef(relative.T)[0, 1]:.3f}; "
             f"true Delta < 0 (distilling wins) on {sum(p.observed < 0 for p in pairs)}",
             "", "| rule (left out a corpus at a time) | Delta covered | verdicts given | wrong | mean half-width "
             "| mean abs error |", "|---|---:|---:|---:|---:|---:|"]
    totals: dict[str, list] = {}
    for corpus in corpora:
        train = [p for p in pairs if p.corpus != corpus]
        test = [p for p in pairs if p.corpus == corpus]
        for rule, calibration in rules(train).items():
            totals.setdefault(rule, []).append(score_pairs(test, calibration))
    covered, given, wrong = before(pairs)
    n = len(pairs)
    lines.append(f"| before: facing half-widths in quadrature, no overlap beyond the backtest | {covered}/{n} "
                 f"({covered / n:.1%}) | {given}/{n} | {wrong}{f' ({wrong / given:.1%})' if given else ''} | - | - |")
    for rule, scores in totals.items():
        n = sum(s.pairs for s in scores)
        covered, given, wrong = (sum(getattr(s, k) for s in scores) for k in ("covered", "given", "wrong"))
        half = sum(s.mean_half_width * s.pairs for s in scores) / n
        error = sum(s.mean_error * s.pairs for s in scores) / n
        lines.append(f"| {rule} | {covered}/{n} ({covered / n:.1%}) | {given}/{n} | {wrong}"
                     f"{f' ({wrong / given:.1%})' if given else ''} | {half:.4f} | {error:.4f} |")
    lines += ["", "| corpus | pairs | shipped rule: covered | given | wrong | independent: given | wrong |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for corpus in corpora:
        train = [p for p in pairs if p.corpus != corpus]
        test = [p for p in pairs if p.corpus == corpus]
        fitted = score_pairs(test, fit_calibration(train, LEVEL, separate=SEPARATE))
        old = score_pairs(test, INDEPENDENT)
        lines.append(f"| {corpus} | {fitted.pairs} | {fitted.covered} | {fitted.given} | {fitted.wrong} "
                     f"| {old.given} | {old.wrong} |")
    return lines


GUIDE = "own-teacher guide"


def guide_verdicts(records: list[dict]) -> list[str]:
    """The own-teacher guide's run (docs/guides/own_teacher.md, "Which of my teachers?": one student
    distilled from each of three teachers and trained alone, at one budget, each teacher's logits
    paid), its recorded predictions read through the rule before and the shipped one, against the
    measured difference. Recorded before the difference had an interval, they lack a distance: taken
    as inside the runs (the student is the sweep's largest distilled size, on tokens inside its
    range), which matters only for "cannot tell at this distance"."""
    from distillscale.laws.difference import loss_difference

    lines = ["| teacher | Delta predicted, shipped rule (nats/token) | before | now | measured Delta | now right? |",
             "|---|---|---|---|---:|---|"]
    for r in (r for r in records if r["kind"] == GUIDE):
        d, a = prediction_of(r["distilled"]), prediction_of(r["alone"])
        delta, measured = loss_difference(d, a), r["distilled_observed"] - r["alone_observed"]
        right = ("-" if delta.verdict not in ("distill", "pretrain")
                 else "yes" if (delta.verdict == "distill") == (measured < 0) else "no")
        lines.append(f"| {r['teacher']} | {delta.describe()} | {legacy_verdict(d, a)} | {delta.verdict} "
                     f"| {measured:+.4f} | {right} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="score", choices=["train", "score", "demo", "presets", "guide"])
    parser.add_argument("sweeps", nargs="*", help="train, demo: NAME=SWEEP_DIR, one per corpus")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/work/pairs"), help="train: where the pairs' runs go")
    parser.add_argument("--kinds", default="trained,held-out-teacher", help="score: the kinds of pairs scored")
    parser.add_argument("--write", action="store_true", help="score: write the calibration into the package")
    args = parser.parse_args(argv)
    stored = json.loads(args.data.read_text()) if args.data.is_file() else {"pairs": []}
    if args.action == "presets":
        print("\n".join(preset_verdicts()))
        return
    if args.action == "guide":
        print("\n".join(guide_verdicts(stored["pairs"])))
        return
    if args.action == "demo":
        print("\n".join(demo_verdicts(dict((n, Path(p)) for n, p in (item.split("=", 1) for item in args.sweeps)))))
        return
    if args.action == "train":
        records = stored["pairs"]
        for item in args.sweeps:
            name, sweep = item.split("=", 1)
            new = held_out_teacher_pairs(name, Path(sweep)) + trained_pairs(name, Path(sweep), args.work)
            records = [r for r in records if r["corpus"] != name] + new
            command = "python bench/laws/verdict_pairs.py train NAME=SWEEP ... (one per corpus)"
            atomic_write_json(args.data, {"command": command, "date": datetime.date.today().isoformat(),
                                          "pairs": records})
            print(f"{name}: {len(new)} pairs", file=sys.stderr, flush=True)
        return
    kinds = tuple(args.kinds.split(","))
    print("\n".join(score(stored["pairs"], kinds)))
    if args.write:
        pairs = pairs_of(stored["pairs"], kinds)
        calibration = fit_calibration(pairs, LEVEL, separate=SEPARATE, date=datetime.date.today().isoformat(),
                                      command=f"python bench/laws/verdict_pairs.py score --kinds {args.kinds} --write")
        atomic_write_json(MODEL_FILE, calibration.model_dump(mode="json"))
        print(f"wrote {MODEL_FILE}: rho {calibration.correlation:.3f}, factor {calibration.factor:.3f}, "
              f"reach {calibration.reach:.3g}", file=sys.stderr)


if __name__ == "__main__":
    main()
