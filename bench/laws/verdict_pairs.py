"""Verdicts checked against students trained both ways, where plans extrapolate: the interval of Delta
= L(distilled) - L(alone) (`laws.difference`) calibrated on measured pairs whose two predictions each
come from a law that never saw its run, at distances beyond the fitted runs as a plan's are, and scored
leaving one corpus out, through `laws.difference.compare`, the function every verdict reads.

Each corpus is a finished micro demo sweep (`distillscale demo --data DIR`; bench/demo/demo_corpora.py
runs them: teachers of depths 1-4, students of depths 1-2 from each teacher size, baselines). Two kinds
of pairs per corpus:

- trained (the plan's allocation, at and beyond the sweep's sizes): students of depths 3 and 4 (187K and 443K
  parameters, 3.4x and 8x the sweep's largest student), at two budgets each (the student alone on
  TOKENS_PER_PARAM[depth] tokens per parameter), distilled from the sweep's strongest teacher in two
  scenarios: the teacher's logits paid from the budget (teacher-inference, D_S = C / (3 F(N_S) +
  F(N_T))) and free (a logit cache or a teacher someone else runs: D_S = C / (3 F(N_S))); and trained
  alone on the whole budget. Their predictions are the planner's (`DistillationPlanner.plan_with_teacher`)
  under the laws the report fits to the sweep without its larger supervised runs, once per cut
  (CUT_DEPTHS; the distillation law on every student, over that supervised law): without depth 4 (the
  supervised law on depths 1-3, as the report's own held-out check fits it) the alone loss of depth 3
  lies inside the supervised law's runs (one budget at the very N and D of a run it saw), of depth 4
  2.37x beyond them; without depths 3 and 4, depth 3's 3.37x and depth 4's 7.97x beyond: the same runs,
  the alone law checked at three distances (each record's `cut_depth`). Each pair's runs are WSD runs with forks
  (training/fork.py), every run of a size at one batch and warmup (`pair_settings`: the sweep's rule
  read at the size's shortest run of either kind).
- held-out teacher: the students of the sweep's strongest teacher, predicted by the distillation law
  fitted on the students of the three weaker teachers (the report's held-out check), each against the
  supervised baseline the sweep trained at the same size and tokens, predicted by the supervised law
  fitted on the teachers alone (no baseline: the alone run is out of sample, inside the sizes).

Each record names the runs behind each prediction's law (`alone_law_runs`, `distilled_law_runs`) and
the run each predicts: no law saw its own run (tests/bench/test_verdict_pairs_bench.py holds it). A
distilled prediction scaled by the distillation interval's calibration (`laws.distillation_interval`,
for a law without a backtest) is stored unscaled, with the held-out scores of its corpus, and scored
with that calibration refitted without the corpus scored.

Usage:
    python bench/laws/verdict_pairs.py train NAME=SWEEP ... --work DIR [--data bench/data/verdict_pairs.json]
    python bench/laws/verdict_pairs.py score [--data ...] [--write]
    python bench/laws/verdict_pairs.py before --code DIR
    python bench/laws/verdict_pairs.py demo NAME=SWEEP ...
    python bench/laws/verdict_pairs.py presets
    python bench/laws/verdict_pairs.py guide

`train` trains the pairs of each sweep (about 10-15 minutes a corpus on 2 free cores; finished runs are
reused), refits the cut laws and writes the predictions and the measured losses to --data. `score` fits
the rule left out a corpus at a time and prints Delta's coverage, the verdicts given and the wrong ones
per distance band and per kind, beside the rules it was chosen over (q's correction counting corpora or
pairs, one scale per law at every distance, the independent rule); with `--write` it writes the
calibration from every corpus into the package (src/distillscale/laws/difference_interval.json).
`before --code DIR` scores the earlier code's own rule on the same pairs (DIR a checkout of it, e.g.
`git worktree add /tmp/before 94864e1`). `demo` plans each sweep's target as its report does and
prints each scenario's verdict under the calibration fitted without that corpus; `presets` counts the
verdicts of a grid of 36 preset plans; `guide` reads the own-teacher guide's three teachers
(bench/data/own_teacher_pairs.json) through the shipped rule.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from distillscale.io import atomic_write_json, atomic_write_text
from distillscale.laws import difference
from distillscale.laws.difference import (BAND_NAMES, INDEPENDENT, LAWS, MODEL_FILE, DifferenceCalibration, LawScale,
                                          Pair, band_of, distance_of, fit_calibration, shipped_calibration)
from distillscale.laws.distillation_interval import IntervalScale, score as interval_scores
from distillscale.laws.lawset import LawSet
from distillscale.laws.uncertainty import Prediction
from distillscale.planning.flops import ForwardFlops
from distillscale.planning.solver import DEFAULT_BOUNDS, DistillationPlanner
from distillscale.report.calibration import CalibrationSettings
from distillscale.report.runs import SweepRuns, load_runs
from distillscale.settings import load_config, to_toml
from distillscale.training.config import DistillConfig, TrainConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "verdict_pairs.json"
LEVEL = 0.9
# The trained pairs' students (depth -> the alone budgets in tokens per parameter): beyond the sweep's
# students (depths 1-2); each budget's runs at least the sweep's 500 steps of 512 tokens.
TOKENS_PER_PARAM = {3: (3.0, 8.0), 4: (1.5, 4.0)}
# The cut laws' supervised runs: depths up to each of these, one set of pairs per cut over the same runs: at 3
# the depth-4 alone loss lies 2.37x beyond the law's runs (depth 3 inside them), at 2 the depth-3 one 3.37x
# and the depth-4 one 7.97x: the alone law checked at three distances, its distilled pair beside each.
CUT_DEPTHS = (3, 2)
TEACHER_FREE = "teacher free"      # the scenario whose teacher's logits cost the budget nothing
# A run may read at most this share of its split's tokens: the pairs never repeat their data.
SPLIT_SHARE = 0.95
# The sweep's batch rule (report/micro_sweep.toml): [model] batch_size, halved until the shortest run
# takes [teachers]/[students] min_steps optimizer steps.
START_BATCH, MIN_STEPS = 16, 500


def prediction_record(p: Prediction) -> dict:
    return {"value": float(p.value), "low": float(p.low), "high": float(p.high), "level": p.level,
            "distance": None if p.distance is None else float(np.max(p.distance)),
            "beyond_backtest": bool(p.beyond_backtest), "calibrated": bool(p.calibrated),
            "source": p.interval_source}


# A sweep run's id: its kind (teacher, baseline, student), depth, tokens per parameter (and teacher).
RUN_ID = re.compile(r"^(?P<kind>[tbs])-L(?P<depth>\d+)-M(?P<ratio>\d+(?:\.\d+)?)(?:-T(?P<teacher>\d+))?-[0-9a-f]+$")


def run_name(run: str, corpus: str) -> str:
    """A pair's run as the pairs' file names it: a sweep run's id, or a pair run's directory relative to
    the `train --work` directory (corpus/L<depth>/<kind>[-<tokens>]); an absolute directory of the
    machine that trained it (how earlier files stored it) read as that relative one."""
    if not run.startswith("/"):
        return run
    parts = Path(run).parts
    return Path(*parts[len(parts) - 1 - parts[::-1].index(corpus):]).as_posix() if corpus in parts else Path(run).name


def micro_params(depth: int) -> float:
    """Non-embedding parameters of the micro sweep's model of `depth` (report/micro_sweep.toml)."""
    from distillscale.model.config import ModelConfig

    return float(ModelConfig(n_layers=depth, aspect_ratio=24, head_dim=24, vocab_size=512).non_embedding_params)


def run_point(run_id: str) -> tuple[str, float, float] | None:
    """A sweep run's (kind, N, D) from its id (None: not a sweep run's id)."""
    match = RUN_ID.match(run_id)
    if match is None:
        return None
    params = micro_params(int(match["depth"]))
    return match["kind"], params, float(match["ratio"]) * params


def at_fitted_run(params: float, tokens: float, law_runs: list[str]) -> bool:
    """Whether (params, tokens) is the (N, D) of a run the law was fitted on (within 1%): a prediction
    there is inside the runs, not out of sample."""
    points = [point for point in map(run_point, law_runs) if point is not None]
    return any(abs(n / params - 1) < 0.01 and abs(d / tokens - 1) < 0.01 for _, n, d in points)


def alone_inside(record: dict) -> bool:
    """Whether a pair's alone prediction sits at a fitted run's (N, D) of its law."""
    return at_fitted_run(record["student_params"], record["alone_tokens"], record["alone_law_runs"])


def read_pairs(path: Path = DATA) -> dict:
    """The pairs' file, each pair's runs named as `run_name` says (an earlier file's absolute
    directories read as relative ones)."""
    stored = json.loads(path.read_text()) if path.is_file() else {"pairs": [], "interval_scores": {}}
    for r in stored["pairs"]:
        for key in ("distilled_run", "alone_run"):
            r[key] = run_name(r[key], r["corpus"])
    return stored


def prediction_of(record: dict) -> Prediction:
    # every prediction here is a fitted law's: one calibrated without a recorded source is a
    # supervised law's, its extrapolation part calibrated across the published ladders
    source = record.get("source") or ("ladders" if record["calibrated"] else "own")
    return Prediction(record["value"], record["low"], record["high"], record["level"], None, None,
                      record["distance"], record["beyond_backtest"], record["calibrated"], source=source)


# -- laws fitted out of sample ------------------------------------------------------------------------

def _unscaled(laws: LawSet) -> LawSet:
    """`laws` with the distillation law's interval its own (no calibration across corpora): the pairs
    store it so, and scoring applies the calibration left out the corpus scored."""
    law = laws.distillation
    if law is None or law.fit is None or law.fit.interval_scale is None:
        return laws
    return replace(laws, distillation=replace(law, fit=law.fit.model_copy(update={"interval_scale": None})))


def _scaled_by_calibration(laws: LawSet, prediction: Prediction) -> bool:
    """Whether the law set's distillation law scales this prediction by the distillation interval's
    calibration (a law without a backtest)."""
    law = laws.distillation
    scale = None if law is None or law.fit is None else law.fit.interval_scale
    return scale is not None and scale.applies_to(prediction)


def cut_laws(sweep: Path, runs: SweepRuns, max_params: float) -> tuple[LawSet, list[str], list[str]]:
    """The laws the report fits to the sweep without its supervised runs above `max_params`, and the
    run ids behind its supervised and distillation laws."""
    from distillscale.report.calibration import calibrate

    kept = [r for r in runs.supervised if r["non_embedding_params"] <= max_params]
    subset = SweepRuns(str(sweep), kept, runs.students, {})
    result = calibrate(subset, CalibrationSettings())
    return result.laws, [r["run_id"] for r in kept], [r["run_id"] for r in runs.students]


def teachers_only_holdout(sweep: Path, runs: SweepRuns):
    """The held-out-teacher check with the supervised law fitted on the teachers alone: (that law,
    the check, the supervised runs it saw, the students the check's law saw)."""
    from distillscale.laws.calibrate import calibrate
    from distillscale.report.calibration import calibrate as report_calibrate

    teachers = [r for r in runs.supervised if r["kind"] == "teacher"]
    supervised = report_calibrate(SweepRuns(str(sweep), teachers, [], {}), CalibrationSettings()).laws.supervised
    _, options = CalibrationSettings().fit_options()
    students = runs.students

    def column(key: str) -> np.ndarray:
        return np.array([r[key] for r in students], dtype=np.float64)

    result = calibrate(params=column("non_embedding_params"), tokens=column("tokens"), loss=column("val_loss"),
                       teacher_loss=column("teacher_loss"), supervised_law=supervised, holdout="largest",
                       distillation_options=options)
    check = result.holdout["distillation"]
    strongest = min(r["teacher_loss"] for r in students)
    seen = [r["run_id"] for r in students if r["teacher_loss"] != strongest]
    return supervised, check, [r["run_id"] for r in teachers], seen


# -- trained pairs -------------------------------------------------------------------------------------

def _store_configs(sweep: Path) -> dict[str, dict]:
    with sqlite3.connect(sweep / "runs.sqlite") as db:
        return {run_id: {"kind": kind, **json.loads(config)}
                for run_id, kind, config in db.execute("select id, kind, config from runs")}


def _launch(command: str, config, path: Path, log: Path) -> subprocess.Popen:
    atomic_write_text(path, to_toml(config))
    return subprocess.Popen([sys.executable, "-m", "distillscale.cli", command, "--config", str(path)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def _result(run_dir: Path) -> dict | None:
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _trained_otherwise(config, run_dir: Path) -> str | None:
    """How a finished run's recorded settings differ from `config`'s in what the pairs fix per size
    (its batch and warmup), in words; None where they agree."""
    recorded = json.loads((run_dir / "config.json").read_text())["config"]
    differ = [f"{key} {recorded.get(key)} (now {getattr(config, key)})" for key in ("batch_size", "warmup_steps")
              if recorded.get(key) != getattr(config, key)]
    return ", ".join(differ) or None


def _run_all(jobs: list[tuple[str, object, Path]], work: Path) -> None:
    """Run the (command, config, run_dir) jobs two at a time, longest first, skipping finished ones; a
    finished run trained at another batch or warmup than its job's is refused, not reused."""
    for _, config, run_dir in jobs:
        if _result(run_dir) is not None and (otherwise := _trained_otherwise(config, run_dir)):
            sys.exit(f"{run_dir} was trained with {otherwise}: train the pairs in another --work directory, or "
                     "remove that run")
    pending = sorted((job for job in jobs if _result(job[2]) is None), key=lambda job: -job[1].tokens)
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


def _split_tokens(laws: LawSet) -> float:
    """The tokens of the student split the sweep's baselines and students train on."""
    from distillscale.data.prepared import open_prepared

    return float(open_prepared(laws.losses.text.directory).manifest["splits"]["student"]["tokens"])


def pair_plans(laws: LawSet, depth: int, params: float, teacher_params: float, teacher_loss: float,
               split: float, smallest: float) -> list[dict]:
    """The plans of one student size: each budget (capped so no run repeats its split) in both
    scenarios, under `laws`."""
    flops = ForwardFlops.from_settings(laws.compute)
    planner = DistillationPlanner(laws, flops, bounds=(min(DEFAULT_BOUNDS[0], smallest / 10), DEFAULT_BOUNDS[1]))
    plans = []
    for ratio in TOKENS_PER_PARAM[depth]:
        ratio = min(ratio, SPLIT_SHARE * split / params)
        budget = 3.0 * float(flops(params)) * ratio * params
        for scenario, teacher_flops in ((TEACHER_FREE, 1e-9), ("teacher-inference", None)):
            plan = planner.plan_with_teacher(params, budget, teacher_params, teacher_loss=teacher_loss,
                                             teacher_flops_per_token=teacher_flops)
            plans.append({"scenario": scenario, "budget": budget, "ratio": ratio, "depth": depth, "plan": plan})
    return plans


def size_batch(shortest_tokens: float, sequence: int) -> int:
    """The batch (sequences) of every run of one student size, alone or distilled: the sweep's rule
    (`[model] batch_size`, halved until the size's shortest run takes `MIN_STEPS` optimizer steps),
    read at the shortest run of both kinds, so a pair's two runs differ only in the teacher."""
    from distillscale.sweeps.spec_sections import Ladder

    return Ladder(n_layers=[1], tokens_per_param=[1.0], min_steps=MIN_STEPS).batch_for(shortest_tokens, START_BATCH,
                                                                                      sequence)


def pair_settings(template: dict, depth: int, tokens: float, shortest: float) -> dict:
    """A pair run's settings: the sweep run's `template` at this depth and `tokens`, the size's one
    batch (`size_batch` of its shortest run of either kind) and warmup (10% of that run's steps)."""
    kept = {k: v for k, v in template.items() if k not in ("fork_tokens", "tokens", "budget")}
    sequence = kept["seq_len"] * kept.get("grad_accum", 1)
    batch = size_batch(shortest, sequence)
    return {**kept, "n_layers": depth, "tokens": float(tokens), "batch_size": batch,
            "warmup_steps": max(1, round(0.1 * shortest / (batch * sequence)))}


def train_pairs(name: str, sweep: Path, work: Path, report_laws: LawSet, runs: SweepRuns) -> dict:
    """Train each trained pair's runs (see the module): returns {(depth, kind, tokens): val_loss} and
    the teacher (params, loss, run dir) and the plans (under the report's laws: the allocation is the
    laws' no matter which, the teacher being given)."""
    configs = _store_configs(sweep)
    student = next(c for c in configs.values() if c["command"] == "distill")
    baseline = next(c for c in configs.values() if c["kind"] == "baseline")
    teacher_row = max(runs.students, key=lambda r: r["teacher_params"])
    teacher_params, teacher_loss = float(teacher_row["teacher_params"]), float(teacher_row["teacher_loss"])
    teacher_dir = sweep / "runs" / teacher_row["teacher_id"]
    split = _split_tokens(report_laws)
    smallest = min(r["non_embedding_params"] for r in runs.supervised)
    sizes = {c["n_layers"]: float(c["non_embedding_params"]) for c in configs.values() if c.get("n_layers")}
    measured, plans = {}, []
    for depth in TOKENS_PER_PARAM:
        params = sizes[depth]
        these = pair_plans(report_laws, depth, params, teacher_params, teacher_loss, split, smallest)
        plans += these
        root = work / name / f"L{depth}"
        root.mkdir(parents=True, exist_ok=True)
        alone_tokens = sorted({round(p["plan"].supervised.tokens) for p in these})
        distilled_tokens = sorted({round(p["plan"].student_tokens) for p in these})

        shortest = min(alone_tokens[0], distilled_tokens[0])   # one batch and warmup for the size's runs

        def settings(template: dict, tokens: int) -> dict:
            return pair_settings(template["settings"], depth, tokens, shortest)

        alone_dir, distilled_dir = root / "alone", root / "distilled"
        parents = [("train", load_config(TrainConfig, None, {**settings(baseline, alone_tokens[-1]),
                                                              "out": alone_dir, "fork_tokens": alone_tokens[:-1] or None}),
                    alone_dir),
                   ("distill", load_config(DistillConfig, None, {
                       **settings(student, distilled_tokens[-1]), "out": distilled_dir,
                       "teacher": teacher_dir, "fork_tokens": distilled_tokens[:-1] or None}), distilled_dir)]
        _run_all(parents, root)
        forks = [("train", load_config(TrainConfig, None, {**settings(baseline, t),
                                                            "out": root / f"alone-{t}", "fork_from": alone_dir}),
                  root / f"alone-{t}") for t in alone_tokens[:-1]]
        forks += [("distill", load_config(DistillConfig, None, {**settings(student, t),
                                                                "out": root / f"distilled-{t}", "teacher": teacher_dir,
                                                                "fork_from": distilled_dir}),
                   root / f"distilled-{t}") for t in distilled_tokens[:-1]]
        _run_all(forks, root)
        for kind, tokens in (("alone", alone_tokens), ("distilled", distilled_tokens)):
            for t in tokens:
                run_dir = root / kind if t == tokens[-1] else root / f"{kind}-{t}"
                measured[(depth, kind, t)] = (float(_result(run_dir)["val_loss"]), run_dir.relative_to(work).as_posix())
    return {"measured": measured, "plans": plans, "teacher": (teacher_params, teacher_loss, teacher_row["teacher_id"])}


def trained_pairs(name: str, sweep: Path, work: Path) -> list[dict]:
    """Plan, train and measure the corpus's trained pairs, predicted by the laws of each cut (see the
    module): the runs are trained once; each cut predicts them anew."""
    runs = load_runs(sweep)
    report_laws = LawSet.from_dict(json.loads((sweep / "report.json").read_text())["laws"])
    trained = train_pairs(name, sweep, work, report_laws, runs)
    sizes = sorted({r["non_embedding_params"] for r in runs.supervised})
    return [pair for depth in CUT_DEPTHS for pair in _cut_pairs(name, sweep, runs, report_laws, trained,
                                                                 sizes[depth - 1], depth)]


def _cut_pairs(name: str, sweep: Path, runs: SweepRuns, report_laws: LawSet, trained: dict, cut: float,
               depth_cut: int) -> list[dict]:
    """The trained pairs as the laws fitted without the supervised runs above `cut` parameters predict them."""
    laws, alone_runs, distilled_runs = cut_laws(sweep, runs, cut)
    own = _unscaled(laws)
    teacher_params, teacher_loss, teacher_id = trained["teacher"]
    split = _split_tokens(report_laws)
    smallest = min(r["non_embedding_params"] for r in runs.supervised)
    out = []
    for depth in TOKENS_PER_PARAM:
        params = trained["plans"][[p["depth"] for p in trained["plans"]].index(depth)]["plan"].student_params
        for item, scaled_item in zip(pair_plans(own, depth, params, teacher_params, teacher_loss, split, smallest),
                                     pair_plans(laws, depth, params, teacher_params, teacher_loss, split, smallest)):
            plan = item["plan"]
            alone_loss, alone_run = trained["measured"][(depth, "alone", round(plan.supervised.tokens))]
            distilled_loss, distilled_run = trained["measured"][(depth, "distilled", round(plan.student_tokens))]
            out.append({"corpus": name, "kind": "trained", "scenario": item["scenario"], "budget": item["budget"],
                        "alone_tokens_per_param": item["ratio"], "student_params": params,
                        "student_tokens": plan.student_tokens, "alone_tokens": plan.supervised.tokens,
                        "teacher_params": teacher_params, "teacher_loss": teacher_loss,
                        "distilled": prediction_record(plan.student_interval),
                        "distilled_interval_calibrated": _scaled_by_calibration(laws, scaled_item["plan"].student_interval),
                        "alone": prediction_record(plan.supervised.interval),
                        "distilled_observed": distilled_loss, "alone_observed": alone_loss,
                        "distilled_run": distilled_run, "alone_run": alone_run,
                        "alone_law_runs": alone_runs, "distilled_law_runs": distilled_runs, "cut_depth": depth_cut,
                        "laws": f"the report's fit without the supervised runs above {cut:,.0f} parameters"})
    return out


def held_out_teacher_pairs(name: str, sweep: Path) -> tuple[list[dict], list[float]]:
    """The held-out-teacher pairs (see the module) and the held-out students' scores against the
    check law's own interval (what the distillation interval's calibration is fitted on)."""
    runs = load_runs(sweep)
    supervised, check, teacher_runs, seen = teachers_only_holdout(sweep, runs)
    law = check.law
    scale = law.fit.interval_scale if law.fit is not None else None
    own_law = replace(law, fit=law.fit.model_copy(update={"interval_scale": None})) if scale is not None else law
    baselines = [r for r in runs.supervised if r["kind"] == "baseline"]
    out, scores = [], []
    for run in check.runs:
        row = runs.students[run.row]
        N, D, L_T = row["non_embedding_params"], row["tokens"], row["teacher_loss"]
        own = own_law.prediction(N, D, L_T)
        scores += [float(s) for s in np.atleast_1d(interval_scores([row["val_loss"]], own))]
        match = [b for b in baselines if b["non_embedding_params"] == N and abs(b["tokens"] / D - 1) < 0.01]
        if not match:
            continue
        calibrated = scale is not None and scale.applies_to(own)
        out.append({"corpus": name, "kind": "held-out-teacher", "scenario": TEACHER_FREE,
                    "student_params": N, "student_tokens": D, "alone_tokens": D, "teacher_loss": L_T,
                    "distilled": prediction_record(own), "distilled_interval_calibrated": bool(calibrated),
                    "alone": prediction_record(supervised.prediction(N, D)),
                    "distilled_observed": float(row["val_loss"]), "alone_observed": float(match[0]["val_loss"]),
                    "distilled_run": row["run_id"], "alone_run": match[0]["run_id"],
                    "alone_law_runs": teacher_runs, "distilled_law_runs": seen,
                    "laws": "supervised: the teachers alone; distillation: the 3 weaker teachers' students"})
    return out, scores


# -- scoring -------------------------------------------------------------------------------------------

def interval_scale_without(scores: dict[str, list[float]], corpus: str | None) -> IntervalScale:
    """The distillation interval's calibration from the held-out scores of every corpus but `corpus`."""
    kept = [s for name, values in scores.items() if name != corpus for s in values]
    return IntervalScale.from_scores(kept, LEVEL, corpora=tuple(sorted(n for n in scores if n != corpus)))


def pairs_of(records: list[dict], kinds: tuple[str, ...], scale: IntervalScale | None = None) -> list[Pair]:
    """The records as `Pair`s; a distilled prediction the distillation interval's calibration scales
    is scaled by `scale` (left out the corpus scored) or kept its law's own without one."""
    out = []
    for r in (r for r in records if r["kind"] in kinds):
        distilled = prediction_of(r["distilled"])
        if r.get("distilled_interval_calibrated") and scale is not None:
            distilled = scale.calibrated(distilled)
        out.append(Pair(r["corpus"], distilled, prediction_of(r["alone"]), r["distilled_observed"],
                        r["alone_observed"], r["kind"]))
    return out


def fit_rule(pairs: list[Pair], **record) -> DifferenceCalibration:
    return fit_calibration(pairs, LEVEL, **record)


def before_rule(pairs: list[Pair]) -> DifferenceCalibration:
    """The rule before distance bands: each law's one scale, measured on all its pairs whatever their
    distance, applied at every distance (no reach)."""
    from distillscale.laws.difference import law_scale, rescaled, standardized_errors

    zs = np.array([standardized_errors(p) for p in pairs])
    weight = {c: 1.0 / sum(p.corpus == c for p in pairs) for c in {p.corpus for p in pairs}}
    w = np.array([weight[p.corpus] for p in pairs])
    flat = []
    for k, side in enumerate(("distilled", "alone")):
        own = np.array([rescaled(getattr(p, side)) for p in pairs])
        pooled = law_scale(zs[own, k], np.ones(int(own.sum())), w[own])
        one = pooled.scales[0]
        flat.append(LawScale(scales=(one,) * len(BAND_NAMES), pairs=pooled.pairs))
    return fit_calibration(pairs, LEVEL, scales=tuple(flat))


def left_out(records: list[dict], scores: dict[str, list[float]], kinds: tuple[str, ...], rule=fit_rule
             ) -> list[tuple[Pair, object]]:
    """Each pair with the Delta its corpus gets under `rule` fitted on the other corpora (the
    distillation interval's calibration left out the same corpus)."""
    corpora = sorted({r["corpus"] for r in records if r["kind"] in kinds})
    out = []
    for corpus in corpora:
        scale = interval_scale_without(scores, corpus)
        train = [p for p in pairs_of(records, kinds, scale) if p.corpus != corpus]
        calibration = rule(train)
        for pair in (p for p in pairs_of(records, kinds, scale) if p.corpus == corpus):
            out.append((pair, difference.compare(pair.distilled, pair.alone, calibration)))
    return out


def shown_losses(records: list[dict], scores: dict[str, list[float]], kinds: tuple[str, ...], rule=fit_rule
                 ) -> list[dict]:
    """Each distinct predicted loss of the pairs with the interval it is shown with
    (`laws.difference.used_interval`, the function every surface prints through) under `rule` fitted
    without its corpus, and its law's own interval (what was shown before the two were one); one row
    per distinct prediction (two pairs that share a run share its prediction)."""
    rows: dict[tuple, dict] = {}
    for corpus in sorted({r["corpus"] for r in records if r["kind"] in kinds}):
        scale = interval_scale_without(scores, corpus)
        pairs = pairs_of(records, kinds, scale)
        calibration = rule([p for p in pairs if p.corpus != corpus])
        for pair in (p for p in pairs if p.corpus == corpus):
            for law in LAWS:
                own = getattr(pair, law)
                shown = difference.used_interval(own, law, calibration)
                observed = pair.distilled_observed if law == "distilled" else pair.alone_observed
                rows.setdefault(pair.key(law), {
                    "law": law, "kind": pair.kind, "corpus": corpus, "band": band_of(distance_of(own)),
                    "covered": float(shown.low) <= observed <= float(shown.high),
                    "own_covered": float(own.low) <= observed <= float(own.high),
                    "half": (float(shown.high) - float(shown.low)) / 2, "error": abs(observed - float(own.value))})
    return list(rows.values())


def loss_table(rows: list[dict]) -> list[str]:
    """Coverage of each loss's interval as shown, per law and distance band, beside its law's own."""
    lines = ["| law | band | kind | distinct predictions | covered as shown | covered by the law's own interval "
             "| mean half-width as shown | mean abs error |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for law in LAWS:
        for band, name in enumerate(BAND_NAMES):
            for kind in sorted({r["kind"] for r in rows}) + ["all"]:
                these = [r for r in rows if r["law"] == law and r["band"] == band and kind in ("all", r["kind"])]
                if not these:
                    continue
                n, covered, own = len(these), sum(r["covered"] for r in these), sum(r["own_covered"] for r in these)
                lines.append(f"| {law} | {name} | {kind} | {n} | {covered}/{n} ({covered / n:.1%}) | {own}/{n} "
                             f"({own / n:.1%}) | {np.mean([r['half'] for r in these]):.4f} | "
                             f"{np.mean([r['error'] for r in these]):.4f} |")
    return lines


def tally(scored: list[tuple[Pair, object]]) -> dict:
    n = len(scored)
    covered = sum(d.low <= p.observed <= d.high for p, d in scored)
    given = [(p, d) for p, d in scored if d.verdict in ("distill", "pretrain")]
    wrong = sum((d.verdict == "distill") != (p.observed < 0) for p, d in given)
    return {"pairs": n, "covered": covered, "given": len(given), "wrong": wrong,
            "half": float(np.mean([(d.high - d.low) / 2 for _, d in scored])) if n else float("nan"),
            "error": float(np.mean([abs(p.observed - d.value) for p, d in scored])) if n else float("nan")}


def upper_bound(wrong: int, given: int, confidence: float = 0.95) -> float:
    """The one-sided upper bound on the error rate at `confidence` (Clopper-Pearson; 1 - 0.05^(1/n) at 0 wrong)."""
    if given == 0:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, wrong + 1, given - wrong)) if wrong < given else 1.0


def row(label: str, t: dict) -> str:
    n = t["pairs"]
    wrong = f"{t['wrong']}" + (f" ({t['wrong'] / t['given']:.1%})" if t["given"] else "")
    return (f"| {label} | {n} | {t['covered']}/{n} ({t['covered'] / n:.1%}) | {t['given']} | {wrong} | "
            f"{upper_bound(t['wrong'], t['given']):.1%} | {t['half']:.4f} | {t['error']:.4f} |")


HEADER = ["| pairs | n | Delta covered | verdicts given | wrong | 95% bound on the error rate | mean half-width "
          "| mean abs error |", "|---|---:|---:|---:|---:|---:|---:|---:|"]


def table(scored: list[tuple[Pair, object]], kinds: tuple[str, ...]) -> list[str]:
    """The markdown table of `scored` pairs: all of them, each distance band that holds some, each kind."""
    lines = [*HEADER, row("all", tally(scored))]
    for band, name in enumerate(BAND_NAMES):
        these = [(p, d) for p, d in scored if band_of(p.distance) == band]
        if these:
            lines.append(row(f"band {name}", tally(these)))
    return lines + [row(f"kind {kind}", tally([(p, d) for p, d in scored if p.kind == kind])) for kind in kinds]


# What `score` does, stated in its output so that a reader recounts the same numbers (`--pairs` writes each
# pair as scored).
SCORED_AS = ("a pair's band: the larger of its two predictions' distances beyond their laws' runs "
             "(laws.difference.Pair.distance); left out a corpus at a time: for each corpus, the rule (rho, q and "
             "each law's scale per band and reach) refitted on the other corpora's pairs, and the distillation "
             "interval's calibration refitted on the other corpora's held-out scores, then each of the corpus's "
             "pairs put through laws.difference.compare; a verdict is wrong where its sign and the trained pair's "
             "differ (Delta = distilled - alone)")


def pair_rows(scored: list[tuple[Pair, object]]) -> list[dict]:
    """Each scored pair as `score` counts it: its corpus, kind, both distances, its band, Delta predicted
    with its interval, Delta measured, the verdict, covered and wrong."""
    rows = []
    for pair, delta in scored:
        given = delta.verdict in ("distill", "pretrain")
        rows.append({"corpus": pair.corpus, "kind": pair.kind, "distilled_distance": distance_of(pair.distilled),
                     "alone_distance": distance_of(pair.alone), "band": BAND_NAMES[band_of(pair.distance)],
                     "delta": float(delta.value), "low": float(delta.low), "high": float(delta.high),
                     "observed": float(pair.observed), "verdict": delta.verdict,
                     "covered": bool(delta.low <= pair.observed <= delta.high),
                     "wrong": bool(given and (delta.verdict == "distill") != (pair.observed < 0))})
    return rows


def score(records: list[dict], scores: dict[str, list[float]], kinds: tuple[str, ...]) -> list[str]:
    pairs = pairs_of(records, kinds)
    corpora = sorted({p.corpus for p in pairs})
    inside = {(r["corpus"], r["alone_run"]) for r in records if r["kind"] in kinds and alone_inside(r)}
    distinct = {law: len({p.key(law) for p in pairs}) for law in LAWS}
    lines = [f"pairs: {len(pairs)} on {len(corpora)} corpora ({', '.join(kinds)}); true Delta < 0 (distilling wins) "
             f"on {sum(p.observed < 0 for p in pairs)}; each left out a corpus at a time; distinct predictions: "
             f"{distinct['distilled']} distilled, {distinct['alone']} alone (both scenarios of a budget share its alone "
             f"run), {len(inside)} of the alone ones at the (N, D) of a run their law was fitted on (inside its runs, "
             "not out of sample)", "", SCORED_AS, "",
             "**each loss's interval as shown (and as Delta uses it), left out a corpus at a time**", "",
             *loss_table(shown_losses(records, scores, kinds)), ""]
    for label, rule in (("shipped: each law's scale by distance band, its reach; q's correction counting the "
                         "pairs' effective number", fit_rule),
                        ("the same, its conformal correction counting corpora", lambda train: fit_calibration(
                            train, LEVEL, count="corpora")),
                        ("the same, its conformal correction counting pairs", lambda train: fit_calibration(
                            train, LEVEL, count="pairs")),
                        ("one scale per law at every distance", before_rule),
                        ("independent (rho 0, q 1, no scale)", lambda train: INDEPENDENT),
                        ("the package's calibration file as it is (not refitted, not left out)",
                         lambda train: shipped_calibration())):
        lines += [f"**{label}**", "", *table(left_out(records, scores, kinds, rule), kinds), ""]
    scored = left_out(records, scores, kinds)
    lines += ["| corpus | pairs | covered | given | wrong |", "|---|---:|---:|---:|---:|"]
    for corpus in corpora:
        t = tally([(p, d) for p, d in scored if p.corpus == corpus])
        lines.append(f"| {corpus} | {t['pairs']} | {t['covered']} | {t['given']} | {t['wrong']} |")
    return lines


# The earlier rule, run by the earlier code itself (a checkout given with --code): each pair's two
# predictions (the distilled one with the distillation interval's calibration left out its corpus, as
# every rule here) through that code's verdict function (`compare`, `loss_difference` in earlier versions)
# and its shipped calibration.
BEFORE_SCRIPT = """
import json, sys
try:
    from distillscale.laws.difference import loss_difference
except ImportError:   # one function for every verdict since: `compare`
    from distillscale.laws.difference import compare as loss_difference
from distillscale.laws.uncertainty import Prediction
out = []
for d, a in json.load(sys.stdin):
    p = [Prediction(x["value"], x["low"], x["high"], x["level"], None, None, x["distance"], x["beyond_backtest"],
                    x["calibrated"]) for x in (d, a)]
    delta = loss_difference(*p)
    out.append([delta.value, delta.low, delta.high, delta.verdict])
json.dump(out, sys.stdout)
"""


def before(records: list[dict], scores: dict[str, list[float]], kinds: tuple[str, ...], code: Path) -> list[str]:
    """The earlier code's verdicts on these pairs (`BEFORE_SCRIPT` run with --code's src first on the
    path), tallied per band and kind as `score` does."""
    from types import SimpleNamespace

    pairs = []
    for corpus in sorted({r["corpus"] for r in records if r["kind"] in kinds}):
        pairs += [p for p in pairs_of(records, kinds, interval_scale_without(scores, corpus)) if p.corpus == corpus]
    env = {**os.environ, "PYTHONPATH": str(code / "src")}
    sent = json.dumps([[prediction_record(p.distilled), prediction_record(p.alone)] for p in pairs])
    said = json.loads(subprocess.run([sys.executable, "-c", BEFORE_SCRIPT], input=sent, capture_output=True, text=True,
                                     env=env, check=True).stdout)
    scored = [(p, SimpleNamespace(value=v, low=lo, high=hi, verdict=verdict)) for p, (v, lo, hi, verdict) in zip(pairs, said)]
    return [f"**before: the rule of {code} (its shipped calibration, its function)**", "", *table(scored, kinds)]


# -- what the users see --------------------------------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "data" / "own_teacher_pairs.json"


def guide_verdicts(path: Path = GUIDE) -> list[str]:
    """The own-teacher guide's three teachers (`GUIDE`'s records: each predicted pair and the two losses
    measured), read through the shipped rule against the measured difference."""
    lines = ["| teacher | Delta predicted, shipped rule (nats/token) | verdict | measured Delta | right? |",
             "|---|---|---|---:|---|"]
    for r in json.loads(path.read_text())["pairs"]:
        delta = difference.compare(prediction_of(r["distilled"]), prediction_of(r["alone"]))
        measured = r["distilled_observed"] - r["alone_observed"]
        right = ("-" if not delta.separated else "yes" if (delta.verdict == "distill") == (measured < 0) else "no")
        lines.append(f"| {r['teacher']} | {delta.describe()} | {delta.verdict} | {measured:+.4f} | {right} |")
    return lines


def demo_verdicts(sweeps: dict[str, Path], records: list[dict], scores: dict[str, list[float]],
                  kinds: tuple[str, ...]) -> list[str]:
    """Each demo's plans at its target (`report.calibration.plan_at_target`, what `demo` prints), each
    scenario's verdict under the calibration fitted without its corpus (and the distillation
    interval's left out the same way) and under the shipped one."""
    from distillscale.report.calibration import plan_at_target

    lines = ["| corpus | scenario | Delta, its corpus left out (nats/token) | left out | shipped |",
             "|---|---|---|---|---|"]
    decided = {"left out": 0, "shipped": 0, "plans": 0}
    for name, sweep in sweeps.items():
        laws = LawSet.from_dict(json.loads((sweep / "report.json").read_text())["laws"])
        scale = interval_scale_without(scores, name)
        law = laws.distillation
        if law is not None and law.fit is not None and law.fit.interval_scale is not None:
            laws = replace(laws, distillation=replace(law, fit=law.fit.model_copy(update={"interval_scale": scale})))
        calibration = fit_rule([p for p in pairs_of(records, kinds, scale) if p.corpus != name])
        plans = plan_at_target(laws, load_runs(sweep), CalibrationSettings())["plans"]
        for scenario, plan in plans.items():
            def prediction(value: float, record: dict) -> Prediction:
                # the law's own interval: the plan shows it rescaled by the shipped calibration
                # (`interval_scale`); each calibration here rescales it again
                scale = record.get("interval_scale") or 1.0
                low, high = (value - (value - record["interval"][0]) / scale,
                             value + (record["interval"][1] - value) / scale)
                return Prediction(value, low, high, record["level"], None, None, record["distance_beyond_runs"],
                                  record["beyond_backtest"], record.get("calibrated", False),
                                  source=record.get("interval_source"))
            d = prediction(plan["student_loss"], plan["student_loss_interval"])
            a = prediction(plan["supervised_loss"], plan["supervised_loss_interval"])
            out, shipped = difference.compare(d, a, calibration), difference.compare(d, a, shipped_calibration())
            decided["plans"] += 1
            decided["left out"] += out.separated
            decided["shipped"] += shipped.separated
            lines.append(f"| {name} | {scenario} | {out.describe()} | {out.verdict} | {shipped.verdict} |")
    lines.append(f"\ndecided: {decided['left out']} of {decided['plans']} with each corpus left out, "
                 f"{decided['shipped']} under the shipped calibration")
    return lines


def preset_verdicts(law: str = "busbridge2025") -> list[str]:
    """A grid of preset plans (students of 100M, 546M and 2B; budgets 1e20, 1e21, 1e22; the four
    scenarios): how many get each verdict."""
    import distillscale as ds

    counts: dict[str, int] = {}
    for params in (100e6, 546e6, 2e9):
        for compute in (1e20, 1e21, 1e22):
            for p in ds.plan(law, student_params=params, compute=compute).plans:
                counts[p.verdict] = counts.get(p.verdict, 0) + 1
    return [", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="score", choices=["train", "score", "before", "demo", "presets",
                                                                          "guide"])
    parser.add_argument("sweeps", nargs="*", help="train, demo: NAME=SWEEP_DIR, one per corpus")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, help="train: where the pairs' runs go (a directory of yours)")
    parser.add_argument("--kinds", default="trained,held-out-teacher", help="score: the kinds of pairs scored")
    parser.add_argument("--write", action="store_true", help="score: write the calibration into the package")
    parser.add_argument("--pairs", type=Path, help="score: write each pair as the shipped rule scored it (CSV)")
    parser.add_argument("--code", type=Path, help="before: a checkout of the earlier code (e.g. a git worktree)")
    args = parser.parse_args(argv)
    stored = read_pairs(args.data)
    kinds = tuple(args.kinds.split(","))
    sweeps = dict((n, Path(p)) for n, p in (item.split("=", 1) for item in args.sweeps))
    if args.action == "guide":
        print("\n".join(guide_verdicts()))
        return
    if args.action == "presets":
        print("\n".join(preset_verdicts()))
        return
    if args.action == "before":
        if args.code is None:
            parser.error("before needs --code DIR: a checkout of the earlier code")
        print("\n".join(before(stored["pairs"], stored["interval_scores"], kinds, args.code)))
        return
    if args.action == "demo":
        print("\n".join(demo_verdicts(sweeps, stored["pairs"], stored["interval_scores"], kinds)))
        return
    if args.action == "train":
        if args.work is None:
            parser.error("train needs --work DIR: where the pairs' runs go")
        records, scores = stored["pairs"], stored.get("interval_scores", {})
        for name, sweep in sweeps.items():
            held, held_scores = held_out_teacher_pairs(name, sweep)
            new = held + trained_pairs(name, sweep, args.work)
            records = [r for r in records if r["corpus"] != name] + new
            scores = {**scores, name: held_scores}
            atomic_write_json(args.data, {"command": "python bench/laws/verdict_pairs.py train NAME=SWEEP ... --work DIR",
                                          "date": datetime.date.today().isoformat(), "pairs": records,
                                          "interval_scores": scores})
            print(f"{name}: {len(new)} pairs", file=sys.stderr, flush=True)
        return
    print("\n".join(score(stored["pairs"], stored["interval_scores"], kinds)))
    if args.pairs is not None:
        import csv
        import io

        rows = pair_rows(left_out(stored["pairs"], stored["interval_scores"], kinds))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(args.pairs, text.getvalue())
    if args.write:
        scale = interval_scale_without(stored["interval_scores"], None)
        calibration = fit_rule(pairs_of(stored["pairs"], kinds, scale), date=datetime.date.today().isoformat(),
                               left_out="each pair's two predictions by laws fitted without its runs (an alone "
                                        "run at the N and D of a run its law saw counted inside the runs); trained "
                                        "students at and beyond the sweep's largest size",
                               command=f"python bench/laws/verdict_pairs.py score --kinds {args.kinds} --write")
        atomic_write_json(MODEL_FILE, calibration.model_dump(mode="json"))
        print(f"wrote {MODEL_FILE}: rho {calibration.correlation:.3f}, factor {calibration.factor:.3f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
