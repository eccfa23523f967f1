"""Calibrating the laws on a sweep: what `distillscale report` computes, before any figure or page.

    calibration = calibrate(load_runs("sweeps/micro"), CalibrationSettings(target_params=1e8))
    calibration.supervised.law       # the chosen SupervisedLaw (a laws.selection.LawFit), or None
    calibration.to_dict()            # everything report.json holds

Steps, each recorded as done or as skipped with the reason (too few runs never stops the report).
Steps 1-3 are `laws.calibrate`, the workflow `distillscale fit` runs too:
1. the supervised law on teacher and baseline runs: every candidate form backtested (fit on the
   smaller sizes, predict the larger), the best kept, with intervals that include its
   extrapolation error (`laws.selection`);
2. the distillation law on student runs (their Ltilde_S from step 1's law), the same way, its
   backtest ordered by teacher strength;
3. extrapolation checks: steps 1 and 2 redone without the runs of the largest model (the largest
   size; for students, the strongest teacher), and the refitted law's prediction, interval and
   coverage for each held-out run;
4. the best observed teacher per student and the linear capacity-gap law N_T* = k N_S;
5. a plan at the target scale under the fitted laws, with its intervals and how far it lies
   beyond the runs; without a target given, at a student and budget within what the fit supports
   (`supported_target`);
6. on-policy students (`distill --on-policy-fraction`), kept out of step 2's fit (the law is for
   off-policy distillation), each beside that law's prediction and interval: applied outside its fit;
7. students that started from somewhere (student_init): beside the from-scratch students of their
   size and teacher (`started_students`) and, with several teacher and student sizes (a capacity-gap
   sweep of students pruned from each teacher), MiniMA's law of capacity gap fitted separately to
   the pruned and the from-scratch students (`pruned_capacity_gap`);
8. when students repeat their data (a sweep with [repetition]: runs on fixed subsets, result.json's
   unique_tokens and epochs), R_D* of the supervised baselines and of the students of each teacher
   (`laws.repetition_curves`): per group and size, with the backtest from the runs of at most 4
   epochs to those beyond.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillscale.data.loss_identity import LossIdentity
from distillscale.errors import ParameterError, UserError
from distillscale.laws import ComputeSettings, LawSet
from distillscale.laws.calibrate import START_GRIDS, HoldoutCheck, start_grid_options
from distillscale.laws.calibrate import calibrate as calibrate_laws
from distillscale.laws.fitting import check_intervals
from distillscale.laws.repetition_curves import RepetitionCurve, fit_repetition_curve
from distillscale.laws.selection import DISTILLATION_FORMS, LawFit
from distillscale.laws.sweep_recipe import SweepRecipe
from distillscale.planning.flops import SCENARIOS, ForwardFlops
from distillscale.planning.teacher import (MINIMA_RATIO, CapacityGapLaw, OptimalTeacher, fit_capacity_gap,
                                           optimal_teachers)
from distillscale.report.design import design_family, in_sample_note
from distillscale.report.held_out import failed_checks
from distillscale.report.runs import SweepRuns, loss_identity, unique_tokens
from distillscale.sweeps.recipe import sweep_recipe

# Tokens per parameter of the default target: Chinchilla's compute-optimal ratio.
DEFAULT_TARGET_TOKENS_PER_PARAM = 20.0
# Target size when only the budget is given: this many times the largest model of the sweep.
DEFAULT_TARGET_SCALE = 10.0


@dataclass(frozen=True)
class CalibrationSettings:
    form: str = "auto"                # supervised form: auto (the median of the three forms), chinchilla, tied, busbridge,
                                      # interaction or farseer (laws.interaction)
    distillation_form: str = "auto"   # auto, free or tied (alpha', beta' = the supervised law's)
    bootstrap: int = 100              # resamples for the intervals; 0 = none
    level: float = 0.9
    seed: int = 0
    grid: str = "coarse"              # start grids: coarse or full (laws.calibrate.START_GRIDS)
    # L-BFGS iterations per start. The best start of a micro sweep's fit converges in a few dozen;
    # the cap stops the stragglers, whose iterations cost as much as the whole batch's.
    max_iter: int = 300
    # Neither given: the target the fit supports (`supported_target`). Only the budget: the target is
    # DEFAULT_TARGET_SCALE x the largest run; only the size: trained on 20 tokens/parameter.
    target_params: float | None = None
    target_compute: float | None = None
    # The supervised law's raw predictions, without any correction beyond its runs (`laws.crossladder`):
    # neither the pack's (opt-in: `bias_correction`) nor a builtin design's family term.
    no_bias_correction: bool = False
    # The cross-ladder bias correction (opt-in: on the published ladders, left out a family at a time, it
    # did not lower the error; docs/validation_pack.md).
    bias_correction: bool = False
    # A sweep of a builtin design with a family term (`report.design.design_family`: the micro demo):
    # its supervised law carries the design's term beside the pack's correction (off with the latter).
    family_term: bool = True

    def fit_options(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The options of the supervised and the distillation fit (`laws.calibrate.calibrate`): the
        level, bootstrap, seed and iterations, with each law's start grid."""
        supervised_grid, distillation_grid = start_grid_options(self.grid)
        options = {"level": self.level, "bootstrap": self.bootstrap, "seed": self.seed, "max_iter": self.max_iter}
        return {**options, **supervised_grid}, {**options, **distillation_grid}

    def __post_init__(self) -> None:
        from distillscale.laws.interaction import SUPERVISED_FORM_NAMES

        if self.form != "auto" and self.form not in SUPERVISED_FORM_NAMES:
            raise ParameterError("form", "unknown {} {form!r}: use auto or one of " + ", ".join(SUPERVISED_FORM_NAMES),
                                 form=self.form)
        if self.distillation_form != "auto" and self.distillation_form not in DISTILLATION_FORMS:
            raise ParameterError("distillation_form", "unknown {} {form!r}: use auto, "
                                 + " or ".join(DISTILLATION_FORMS), form=self.distillation_form)
        if self.grid not in START_GRIDS:
            raise ParameterError("grid", "unknown {} {grid!r}: use one of " + ", ".join(START_GRIDS), grid=self.grid)
        if self.max_iter < 1:
            raise ParameterError("max_iter", "{} must be at least 1, got {value}", value=self.max_iter)
        check_intervals(self.bootstrap, self.level)


@dataclass
class ReportCalibration:
    runs: SweepRuns
    settings: CalibrationSettings
    compute: ComputeSettings
    compute_source: str
    losses: LossIdentity = field(default_factory=LossIdentity)  # what the runs' val_loss are (`runs.loss_identity`)
    supervised: LawFit | None = None
    distillation: LawFit | None = None
    skipped: dict[str, str] = field(default_factory=dict)   # step -> why it was skipped
    holdout: dict[str, Any] = field(default_factory=dict)
    capacity_gap: dict[str, Any] = field(default_factory=dict)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    repetition: list[RepetitionCurve] = field(default_factory=list)   # step 7, one per group
    on_policy: dict[str, Any] = field(default_factory=dict)           # step 6; empty without on-policy runs
    started: dict[str, Any] = field(default_factory=dict)             # empty without students that started somewhere
    capacity_gap_pruned: PrunedCapacityGap | None = None            # None without students that started somewhere
    recipe: SweepRecipe | None = None   # how the sweep trained (`sweeps.recipe`): the laws carry it to the plan

    def repetition_runs(self, name: str) -> list[dict[str, Any]]:
        """The runs of the repetition group `name` (step 6), with their unique tokens."""
        return repetition_groups(self.runs).get(name, [])

    @property
    def laws(self) -> LawSet:
        return LawSet("fitted", self.supervised.law if self.supervised else None,
                      self.distillation.law if self.distillation else None, self.compute,
                      source=f"fitted by distillscale report on {self.runs.source}", losses=self.losses,
                      recipe=self.recipe)

    def to_dict(self) -> dict[str, Any]:
        report = self._to_dict()
        if self.on_policy:  # left out otherwise: reports of off-policy sweeps are as before
            report["runs"]["on_policy_students"] = len(self.runs.on_policy)
            report["on_policy"] = self.on_policy
        if self.started:  # likewise
            report["runs"]["started_students"] = len(self.runs.started)
            report["started"] = self.started
        if self.capacity_gap_pruned is not None:
            report["capacity_gap_pruned"] = self.capacity_gap_pruned.to_dict()
        if short := self.runs.short_runs():  # likewise
            report["runs"]["short"] = short
        return report

    def _to_dict(self) -> dict[str, Any]:
        def fit(result: LawFit | None) -> dict | None:
            if result is None:
                return None
            record = result.law.fit.to_json(bootstrap=False)
            return {"coefficients": result.law.coefficients(), "intervals": record.get("intervals", {}),
                    "not_identified": result.not_identified,
                    "level": self.settings.level if self.settings.bootstrap else None,
                    "bootstrap_resamples": self.settings.bootstrap, "form": result.chosen,
                    "reason": result.reason, "candidates": [c.to_dict() for c in result.candidates],
                    "record": record}

        return {
            "format": "distillscale.report/2",
            "source": self.runs.source,
            "runs": {"supervised": len(self.runs.supervised), "students": len(self.runs.students),
                     "not_usable": self.runs.skipped, "repeated_data": self.runs.repeated_data(),
                     "off_optimum": len(self.runs.off_optimum)},
            "compute_settings": {**vars(self.compute), "source": self.compute_source},
            "supervised": fit(self.supervised),
            "distillation": fit(self.distillation),
            "skipped": self.skipped,
            "extrapolation_check": self.holdout,
            "capacity_gap": self.capacity_gap,
            "distilled_vs_baseline": self.baselines,
            "plan": self.plan,
            "bias_correction": self.laws.bias_note(),
            "repetition": [curve.to_dict() for curve in self.repetition],
            "laws": self.laws.to_dict(),
        }


def calibrate(runs: SweepRuns, settings: CalibrationSettings = CalibrationSettings(),
              progress=lambda message: None) -> ReportCalibration:
    """Steps 1-5 above; `progress(message)` is told which step starts."""
    compute, compute_source = _compute_settings(runs)
    result = ReportCalibration(runs, settings, compute, compute_source, losses=loss_identity(runs),
                               recipe=sweep_recipe(runs.source))
    records = runs.supervised + runs.students

    def column(key: str) -> np.ndarray:
        return np.array([r[key] for r in records], dtype=np.float64)

    supervised_options, distillation_options = settings.fit_options()
    # Non-embedding N only (the planner's FLOP accounting counts N that way); `distillscale fit
    # supervised --total-params-col` compares the two.
    # Runs that repeat their data (result.json's unique_tokens / epochs): the supervised fit gets the
    # data-constrained form as a candidate.
    unique = unique_tokens(records)
    family = None
    if settings.family_term and not settings.no_bias_correction:
        family = design_family(runs.source)
    laws = calibrate_laws(params=column("non_embedding_params"), tokens=column("tokens"), loss=column("val_loss"),
                          unique_tokens=unique,
                          teacher_loss=[None] * len(runs.supervised) + [r["teacher_loss"] for r in runs.students],
                          form=settings.form, distillation_form=settings.distillation_form, holdout="largest",
                          supervised_options={**supervised_options,
                                              "family": family, "bias_correction": settings.bias_correction
                                              and not settings.no_bias_correction},
                          distillation_options=distillation_options, skip_failed=True, min_ratios=2,
                          progress=progress)
    result.supervised, result.distillation, result.skipped = laws.supervised, laws.distillation, laws.skipped
    result.holdout = {name: _check_record(check, records) for name, check in laws.holdout.items()}
    in_sample = in_sample_note(runs.source, laws.supervised.law if laws.supervised is not None else None)
    if in_sample is not None and "runs" in result.holdout.get("supervised", {}):
        result.holdout["supervised"]["in_sample"] = in_sample   # the design's term was learned on it
    result.capacity_gap = _capacity_gap(runs)
    result.baselines = _distilled_vs_baseline(runs)
    result.on_policy = _on_policy(result)
    result.started = started_students(runs)
    if runs.started:
        progress("fitting the capacity gap of pruned and from-scratch students")
        result.capacity_gap_pruned = pruned_capacity_gap(runs, level=settings.level,
                                                         bootstrap=settings.bootstrap, seed=settings.seed)
    progress("planning at the target scale")
    result.plan = _plan(result)
    groups = repetition_groups(runs)
    for name, group in groups.items():
        progress(f"fitting R_D* (repeated data) to the {name} runs ({len(group)} runs)")
        try:
            result.repetition.append(fit_repetition_curve(
                *(np.array([r[key] for r in group], dtype=np.float64)
                  for key in ("non_embedding_params", "tokens", "unique_tokens", "val_loss")),
                name=name, level=settings.level, bootstrap=settings.bootstrap, seed=settings.seed))
        except UserError as exc:
            result.skipped[f"repetition ({name})"] = str(exc)
    attach_distilled_repetition(result)
    return result


def attach_distilled_repetition(result: "ReportCalibration") -> None:
    """The distillation law carries the distilled students' own R_D* (the "distilled" group: one
    teacher), which `plan --unique-tokens` uses for distilled students instead of the supervised
    decay; with several teachers (one R_D* each) it carries none."""
    distilled = next((curve for curve in result.repetition if curve.name == "distilled"), None)
    if distilled is not None and result.distillation is not None:
        result.distillation.law.repetition = distilled.repetition


def repetition_groups(runs: SweepRuns) -> dict[str, list[dict[str, Any]]]:
    """The runs whose R_D* the report fits: the supervised baselines, and the students of each
    teacher ("distilled", or "distilled from <teacher id>" when there are several), each group
    with `unique_tokens` filled in (`runs.unique_tokens`); only groups where some run repeats its
    data. Teachers are left out: they train on the other split, at other sizes."""
    candidates: dict[str, list[dict[str, Any]]] = {"supervised": [r for r in runs.supervised if r["kind"] == "baseline"]}
    teachers = sorted({r["teacher_id"] for r in runs.students}, key=str)
    for teacher in teachers:
        name = "distilled" if len(teachers) == 1 else f"distilled from {teacher}"
        candidates[name] = [r for r in runs.students if r["teacher_id"] == teacher]
    groups = {}
    for name, group in candidates.items():
        unique = unique_tokens(group) if group else None
        if unique is not None:
            groups[name] = [{**record, "unique_tokens": float(u)} for record, u in zip(group, unique)]
    return groups


def _check_record(check: HoldoutCheck | str, records: list[dict]) -> dict[str, Any]:
    """report.json's record of an extrapolation check: the held-out model's size (for students,
    their teacher's), the largest fitted one, and each held-out run by its run id."""
    if isinstance(check, str):
        return {"skipped": check}
    key = "teacher_params" if "teacher" in check.held_out else "non_embedding_params"
    return {**check.to_dict([r["run_id"] for r in records]), "held_out_by": key,
            "held_out_params": float(max(records[run.row][key] for run in check.runs)),
            "fitted_up_to_params": float(max(records[row][key] for row in check.fitted_rows))}


def _capacity_gap(runs: SweepRuns) -> dict[str, Any]:
    """The best observed teacher per student (size and tokens), and N_T* = k N_S fitted per student
    tokens-per-parameter ratio that has at least two student sizes."""
    from distillscale.planning.teacher import LinearCapacityGap

    groups: dict[tuple[float, float], list[dict]] = {}
    for run in runs.students:
        groups.setdefault((run["non_embedding_params"], run["tokens"]), []).append(run)
    best = []
    for (params, tokens), group in sorted(groups.items()):
        winner = min(group, key=lambda r: r["val_loss"])
        best.append({"student_params": params, "student_tokens": tokens,
                     "tokens_per_param": tokens / params, "teachers_tried": len(group),
                     "best_teacher_id": winner["teacher_id"], "best_teacher_params": winner["teacher_params"],
                     "best_teacher_loss": winner["teacher_loss"], "student_loss": winner["val_loss"],
                     "best_is_largest_teacher": winner["teacher_params"] == max(r["teacher_params"]
                                                                                  for r in group)})
    laws = {}
    for ratio in sorted({round(b["tokens_per_param"]) for b in best}):
        rows = [b for b in best if round(b["tokens_per_param"]) == ratio]
        if len(rows) < 2:
            continue
        fit = LinearCapacityGap().fit([b["student_params"] for b in rows],
                                      [b["best_teacher_params"] for b in rows],
                                      [b["student_loss"] for b in rows])
        laws[f"{ratio:g}"] = fit.to_dict()
    return {"best_teachers": best, "linear_law_by_tokens_per_param": laws,
            "note": None if laws else "the linear law needs students of at least 2 sizes at one "
                                      "tokens-per-parameter ratio"}


ON_POLICY_NOTE = ("The distillation law was fitted on off-policy students only; these on-policy students "
                  "(the share of batches they generated: fraction) are not part of its fit, and its prediction "
                  "is applied to them outside its fit: the difference measured - predicted shows what "
                  "on-policy distillation changed, not an error of the law.")


def _on_policy(result: ReportCalibration) -> dict[str, Any]:
    """Each on-policy student beside the off-policy distillation law's prediction for its N, D and
    teacher loss (with the interval); empty when the sweep has none."""
    runs = result.runs.on_policy
    if not runs:
        return {}
    law = result.distillation.law if result.distillation is not None else None
    rows = []
    for run in runs:
        row = {"run_id": run["run_id"], "student_params": run["non_embedding_params"],
               "student_tokens": run["tokens"], "teacher_loss": run["teacher_loss"],
               "on_policy_fraction": run["on_policy_fraction"], "measured_loss": run["val_loss"],
               "off_policy_prediction": None, "low": None, "high": None, "difference": None}
        if law is not None:
            prediction = law.prediction(run["non_embedding_params"], run["tokens"], run["teacher_loss"])
            row.update(off_policy_prediction=float(prediction.value), difference=run["val_loss"] - float(prediction.value))
            if prediction.has_interval:
                row.update(low=float(prediction.low), high=float(prediction.high))
        rows.append(row)
    return {"note": ON_POLICY_NOTE, "runs": rows,
            "skipped": None if law is not None else "no off-policy distillation law was fitted to compare with"}


STARTED_NOTE = ("Students that started from somewhere (student_init: pruned from the teacher, or pretrained) "
                "are not part of the distillation law's fit, whose students start from scratch. Each is shown "
                "beside the from-scratch students of the same size and teacher; where those span its loss, the "
                "measured multiplier is the tokens a from-scratch student needs to reach its loss (log-linear "
                "between the two bracketing runs) over its own tokens, the quantity `plan --student-init "
                "pruned` takes as measured at micro scale (laws.student_init).")


def started_students(runs: SweepRuns) -> dict[str, Any]:
    """Each student with a start beside the from-scratch students of its size and teacher, and its
    measured effective-token multiplier where they bracket its loss; empty when the sweep has none."""
    if not runs.started:
        return {}
    rows = []
    for run in runs.started:
        scratch = sorted((s for s in runs.students if abs(s["non_embedding_params"] / run["non_embedding_params"] - 1) < 0.01
                          and _same_teacher(s, run)), key=lambda s: s["tokens"])
        same_tokens = [s["val_loss"] for s in scratch if abs(s["tokens"] / run["tokens"] - 1) < 0.01]
        multiplier, why = _token_multiplier(run, scratch)
        rows.append({"run_id": run["run_id"], "student_init": str(run["student_init"]),
                     "student_params": run["non_embedding_params"], "student_tokens": run["tokens"],
                     "teacher_loss": run["teacher_loss"], "measured_loss": run["val_loss"],
                     "scratch_loss_same_tokens": same_tokens[0] if same_tokens else None,
                     "scratch_runs": [s["run_id"] for s in scratch], "token_multiplier": multiplier,
                     "token_multiplier_note": why})
    return {"note": STARTED_NOTE, "runs": rows}


CAPACITY_GAP_NOTE = (
    "MiniMA's law of capacity gap measured MiniMA's way: students pruned from each teacher (`distillscale "
    "prune`) and distilled from it, beside the same student sizes distilled from scratch. For each student "
    "size and start, N_T* is the vertex of the parabola in log N_T through the teacher of the lowest student "
    "loss and its two neighbours (or that teacher itself when it is the smallest or largest tried: a bound); "
    "then N_T* = k N_S (log k the mean of log(N_T* / N_S)). The interval of k: bootstrap over the teachers "
    "of each size (and the runs of each pair), never narrower than the teacher grid's resolution. A pruned "
    "student is cut only from teachers at least its size, so its smallest teacher is its own size.")


@dataclass(frozen=True)
class CapacityGapPoint:
    """One student run of the capacity-gap section (the figure's points)."""

    run_id: str
    init: str               # "scratch", "pruned" (its start has a prune.json) or "started" (another start)
    student_params: float
    student_tokens: float
    teacher_params: float
    student_loss: float

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class CapacityGapGroup:
    """The students of one start and tokens-per-parameter ratio: each size's optimal teacher and,
    with two sizes or more, the law N_T* = k N_S (`planning.teacher.fit_capacity_gap`)."""

    init: str
    tokens_per_param: float
    optima: tuple[OptimalTeacher, ...]   # one per student size, smallest first
    law: CapacityGapLaw | None           # None: `skipped` says why
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"init": self.init, "tokens_per_param": self.tokens_per_param,
                "optima": [optimum.to_dict() for optimum in self.optima],
                "law": None if self.law is None else self.law.to_dict(), "skipped": self.skipped}


@dataclass(frozen=True)
class PrunedCapacityGap:
    """report.json's `capacity_gap_pruned`: the capacity gap of students pruned from their teacher
    beside from-scratch ones (`pruned_capacity_gap`)."""

    groups: tuple[CapacityGapGroup, ...]
    points: tuple[CapacityGapPoint, ...]
    minima_ratio: float
    verdicts: tuple[str, ...]        # one sentence per group with a law: k, its interval, and 2.5 in it or not
    note: str = CAPACITY_GAP_NOTE

    def to_dict(self) -> dict[str, Any]:
        return {"note": self.note, "minima_ratio": self.minima_ratio, "verdicts": list(self.verdicts),
                "groups": [group.to_dict() for group in self.groups],
                "points": [point.to_dict() for point in self.points]}


def start_kind(student_init: Any) -> str:
    """How a student started: "pruned" when its start holds a prune.json (a `distillscale prune`
    output, as a sweep's pruned students start), "started" otherwise, "scratch" without a start."""
    if not student_init:
        return "scratch"
    return "pruned" if (Path(str(student_init)) / "prune.json").is_file() else "started"


def pruned_capacity_gap(runs: SweepRuns, level: float = 0.9, bootstrap: int = 100,
                        seed: int = 0) -> PrunedCapacityGap:
    """The law of capacity gap fitted to each start's students (from scratch, pruned), per
    tokens-per-parameter ratio, with MiniMA's k = 2.5 set against each interval."""
    points = tuple(CapacityGapPoint(r["run_id"], start_kind(r.get("student_init")), r["non_embedding_params"],
                                    r["tokens"], r["teacher_params"], r["val_loss"])
                   for r in runs.students + runs.started if r.get("teacher_params"))
    grouped: dict[tuple[str, float], list[CapacityGapPoint]] = {}
    for point in points:
        grouped.setdefault((point.init, round(point.student_tokens / point.student_params)), []).append(point)
    groups, verdicts = [], []
    order = {"scratch": 0, "pruned": 1, "started": 2}
    for (init, ratio), members in sorted(grouped.items(), key=lambda item: (order[item[0][0]], item[0][1])):
        sizes = sorted({p.student_params for p in members})
        arrays = [np.array([getattr(p, key) for p in members], dtype=np.float64)
                  for key in ("student_params", "teacher_params", "student_loss")]
        if len(sizes) >= 2:
            law = fit_capacity_gap(*arrays, level=level, bootstrap=bootstrap, seed=seed)
            groups.append(CapacityGapGroup(init, float(ratio), law.optima, law))
            inside = "inside" if law.contains(MINIMA_RATIO) else "outside"
            bound = ("; some size's best teacher is the smallest or largest tried, so its N_T* is a bound"
                     if law.bounded else "")
            verdicts.append(f"{init} students at {ratio:g} tokens/parameter: k = {law.ratio:.3g} ({level:.0%} interval "
                            f"{law.interval[0]:.3g} to {law.interval[1]:.3g}); MiniMA's {MINIMA_RATIO:g} is {inside} "
                            f"it{bound}")
        else:
            groups.append(CapacityGapGroup(init, float(ratio), optimal_teachers(*arrays, level=level,
                                                                                bootstrap=bootstrap, seed=seed),
                                           None, skipped="one student size: the law N_T* = k N_S needs two or more"))
    return PrunedCapacityGap(tuple(groups), points, MINIMA_RATIO, tuple(verdicts))


def _same_teacher(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("teacher_id") and b.get("teacher_id"):
        return a["teacher_id"] == b["teacher_id"]
    return abs(a["teacher_loss"] / b["teacher_loss"] - 1) < 1e-6


def _token_multiplier(run: dict[str, Any], scratch: list[dict[str, Any]]) -> tuple[float | None, str]:
    """Tokens a from-scratch student needs to reach `run`'s loss (log-linear between the bracketing
    scratch runs, sorted by tokens) over `run`'s tokens; None with the reason when they do not bracket it."""
    loss = run["val_loss"]
    if len(scratch) < 2:
        return None, f"{len(scratch)} from-scratch student(s) of this size and teacher: 2 or more bracket its loss"
    for a, b in zip(scratch, scratch[1:]):
        high, low = a["val_loss"], b["val_loss"]
        if min(high, low) <= loss <= max(high, low) and high != low:
            share = (high - loss) / (high - low)
            tokens = float(np.exp(np.log(a["tokens"]) + share * (np.log(b["tokens"]) - np.log(a["tokens"]))))
            return tokens / run["tokens"], f"between {a['run_id']} and {b['run_id']}"
    best = scratch[-1]
    if loss < min(s["val_loss"] for s in scratch):
        return None, (f"below every from-scratch student's loss: more than {best['tokens'] / run['tokens']:.3g}x "
                      f"(the most tokens, {best['run_id']})")
    return None, f"above every from-scratch student's loss: less than {scratch[0]['tokens'] / run['tokens']:.3g}x"


def _distilled_vs_baseline(runs: SweepRuns) -> list[dict[str, Any]]:
    """Each student beside the supervised baseline of its size trained on the same tokens, and Delta =
    distilled - baseline (nats/token, negative when distillation won), the sign of every verdict's."""
    baselines = [r for r in runs.supervised if r["kind"] == "baseline"]
    pairs = []
    for student in runs.students:
        match = [b for b in baselines if b["non_embedding_params"] == student["non_embedding_params"]
                 and abs(b["tokens"] / student["tokens"] - 1) < 0.01]
        if match:
            pairs.append({"run_id": student["run_id"], "student_params": student["non_embedding_params"],
                          "student_tokens": student["tokens"], "teacher_params": student["teacher_params"],
                          "teacher_loss": student["teacher_loss"], "distilled_loss": student["val_loss"],
                          "baseline_loss": match[0]["val_loss"],
                          "distilled_minus_baseline": student["val_loss"] - match[0]["val_loss"]})
    return pairs


def _plan(result: ReportCalibration) -> dict[str, Any]:
    """Compute-optimal distillation at the target under the fitted laws, in every scenario (`plan_at_target`)."""
    if result.supervised is None or result.distillation is None:
        return {"skipped": "planning needs both fitted laws"}
    return {**plan_at_target(result.laws, result.runs, result.settings), "failed_checks": failed_checks(result.holdout)}


def plan_at_target(laws: LawSet, runs: SweepRuns, settings: CalibrationSettings) -> dict[str, Any]:
    """The report's plans for laws fitted to these runs: compute-optimal distillation at the target
    in every scenario. With no target given, the target is the one the fit supports (`supported_target`)."""
    from distillscale.laws.extrapolation import extrapolation_warnings
    from distillscale.planning.solver import DEFAULT_BOUNDS, DistillationPlanner

    largest = max(r["non_embedding_params"] for r in runs.supervised + runs.students)
    flops = ForwardFlops.from_settings(laws.compute)
    # The planner's default box starts at 1e6 parameters and tokens, above a micro sweep's models:
    # open it down to a tenth of the smallest run so small targets are not pinned to the bound.
    smallest = min(r["non_embedding_params"] for r in runs.supervised + runs.students)
    bounds = (min(DEFAULT_BOUNDS[0], smallest / 10), DEFAULT_BOUNDS[1])
    supported = None
    if settings.target_params is None and settings.target_compute is None:
        supported = supported_target(laws, flops)
    if supported is not None:
        N, C = supported["target_params"], supported["target_compute"]
        # Teachers too stay where the fit reaches: no smaller than the smallest fitted model, no
        # stronger than the largest supported one (the box's strongest teacher is L(high, high)).
        bounds = (supported["smallest_params"], supported["box"])
    else:
        N = settings.target_params or DEFAULT_TARGET_SCALE * largest
        C = settings.target_compute or 3.0 * float(flops(N)) * DEFAULT_TARGET_TOKENS_PER_PARAM * N
    planner = DistillationPlanner(laws, flops, bounds=bounds)
    plans, failures = {}, {}
    for name in SCENARIOS:
        try:
            plans[name] = planner.plan(N, C, name).to_dict()
        except UserError as exc:
            failures[name] = str(exc)
    for plan in plans.values():
        plan.pop("teacher_family", None)
    tokens = next(iter(plans.values()))["supervised_tokens"] if plans else None
    largest_tokens = max(r["tokens"] for r in runs.supervised)
    return {
        "target_params": N, "target_compute": C, "plans": plans, "failed": failures,
        "target": supported or {"chosen_by": "given (--target-params / --target-compute)"
                                if settings.target_params or settings.target_compute else
                                f"{DEFAULT_TARGET_SCALE:g}x the largest run (the laws record no data range)"},
        "extrapolation": {
            "params_ratio": N / largest, "largest_fitted_params": largest,
            "tokens_ratio": tokens / largest_tokens if tokens else None,
            "largest_fitted_tokens": largest_tokens,
            "warnings": extrapolation_warnings(laws, {"the target student": N},
                                               {"the target's supervised tokens": tokens}),
        },
    }


SUPPORTED_TARGET = ("the largest distilled student size, on the most tokens the runs of both laws cover; teachers "
                    "no smaller than the smallest fitted model, no stronger than the largest fitted size and tokens "
                    "times the distance the supervised backtest reached")


def supported_target(laws: LawSet, flops: ForwardFlops) -> dict[str, Any] | None:
    """The plan the fit supports: a student no larger than the largest distilled one (the
    distillation backtest measures distance in teacher strength, not student size) nor than the
    supervised law's largest fitted size times the distance its backtest reached
    (`laws.extrapolation.backtest_reach`; 1 when unmeasured), trained on as many tokens as both
    laws' runs cover for it (their largest token counts and the students' most tokens per
    parameter); the budget trains it on them. `box`: the bound of the plan's teacher search, where
    the strongest teacher L(box, box) is the largest the supervised law supports (its largest
    fitted size and tokens times that distance). None when a law records no data range. (The compute-optimal model of a
    budget does not do: a micro sweep's law puts it at hundreds of tokens per parameter, outside
    its runs at every budget.)"""
    from distillscale.laws.extrapolation import backtest_reach

    supervised, distillation = laws.require_supervised(), laws.require_distillation()
    if supervised.fit is None or distillation.fit is None or supervised.fit.data_range is None \
            or distillation.fit.data_range is None:
        return None
    known, students = supervised.fit.data_range, distillation.fit.data_range
    reach = backtest_reach(supervised.fit.extrapolation_error)
    N = min(known.params[1] * reach, students.params[1])
    D = min(known.tokens[1] * reach, students.tokens[1], N * students.tokens_per_param[1])
    # The planner's box bounds parameters and tokens alike: its edge h is where L(h, h) is the loss of
    # the largest supported teacher, L(N_max r, D_max r), so no teacher is stronger (bisection in log h).
    strongest = float(supervised.predict(known.params[1] * reach, known.tokens[1] * reach))
    low, high = (float(np.log(x * reach)) for x in sorted((known.params[1], known.tokens[1])))
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if supervised.predict(np.exp(middle), np.exp(middle)) > strongest else (low, middle)
    return {"chosen_by": SUPPORTED_TARGET, "backtest_reach": reach, "strongest_teacher_loss": strongest,
            "smallest_params": float(known.params[0]),
            "box": float(np.exp(high)),
            "target_params": float(N), "target_tokens": float(D),
            "target_compute": float(3.0 * float(flops(N)) * D)}


def _compute_settings(runs: SweepRuns) -> tuple[ComputeSettings, str]:
    """Context length, vocabulary and aspect ratio of the sweep's models, from a run's config.json
    (the FLOP accounting of the plan needs them); the law defaults when no run directory has one."""
    for run in runs.supervised:
        path = Path(run.get("run_dir") or "") / "config.json"
        if path.is_file():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
                model = stored["plan"]["model"]
                return (ComputeSettings(int(stored["config"]["seq_len"]), int(model["vocab_size"]),
                                        float(model["aspect_ratio"])), str(path))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return ComputeSettings(), "defaults (no run directory with a config.json)"
