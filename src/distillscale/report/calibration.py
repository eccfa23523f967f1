"""Calibrating the laws on a sweep: what `distillscale report` computes, before any figure or page.

    calibration = calibrate(load_runs("sweeps/micro"), CalibrationSettings(target_params=1e8))
    calibration.supervised.law_      # fitted SupervisedLaw (SupervisedLawFitter), or None
    calibration.to_dict()            # everything report.json holds

Steps, each recorded as done or as skipped with the reason (too few runs never stops the report):
1. the supervised law on teacher and baseline runs, with bootstrap intervals;
2. the distillation law on student runs (their Ltilde_S from step 1's law), with intervals;
3. extrapolation checks: each law refitted without the runs of its largest model (the largest
   size; for students, the largest teacher), and its relative error on them;
4. the best observed teacher per student and the linear capacity-gap law N_T* = k N_S;
5. a plan at the target scale under the fitted laws, with how far it lies beyond the runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillscale.errors import UserError
from distillscale.laws import ComputeSettings, LawSet
from distillscale.laws.fitting import DistillationLawFitter, SupervisedLawFitter, relative_errors
from distillscale.planning.flops import SCENARIOS, ForwardFlops
from distillscale.report.runs import SweepRuns

# Tokens per parameter of the default target: Chinchilla's compute-optimal ratio.
DEFAULT_TARGET_TOKENS_PER_PARAM = 20.0
# Default target size: this many times the largest model of the sweep.
DEFAULT_TARGET_SCALE = 10.0

# Start grids of the "coarse" fits: a few hundred starts instead of the papers' thousands (4,500
# supervised, 108,000 distillation), so a report of a micro sweep takes seconds on a laptop; the
# same values, thinned, so a coarse fit starts where the full grid would.
COARSE_GRIDS = {
    "supervised": {"log_E": (-1.0, 0.0, 1.0), "log_A": (0.0, 5.0, 10.0, 15.0),
                   "log_B": (0.0, 5.0, 10.0, 15.0), "alpha": (0.5, 1.0), "beta": (0.5, 1.0)},
    "distillation": {"log_A": (0.0, 5.0, 10.0), "log_B": (0.0, 5.0, 10.0), "alpha": (0.5,), "beta": (0.5,),
                     "c0": (0.0, 1.0), "c1": (0.5, 1.5), "f1": (0.5, 1.5), "log_d1": (-0.5, 0.0, 0.5)},
}
GRIDS = ("coarse", "full")


@dataclass(frozen=True)
class CalibrationSettings:
    form: str = "chinchilla"          # supervised form: chinchilla (gamma = 1) or busbridge
    bootstrap: int = 100              # resamples for the intervals; 0 = none
    level: float = 0.9
    seed: int = 0
    grid: str = "coarse"              # start grids: coarse (COARSE_GRIDS) or full (the papers')
    # L-BFGS iterations per start. The best start of a micro sweep's fit converges in a few dozen;
    # the cap stops the stragglers, whose iterations cost as much as the whole batch's.
    max_iter: int = 300
    target_params: float | None = None     # default: DEFAULT_TARGET_SCALE x the largest run
    target_compute: float | None = None    # default: train the target on 20 tokens/parameter

    def __post_init__(self) -> None:
        from distillscale.laws.logspace import SUPERVISED_FORMS

        if self.form not in SUPERVISED_FORMS:
            raise UserError(f"unknown --form {self.form!r}: use one of {', '.join(SUPERVISED_FORMS)}")
        if self.grid not in GRIDS:
            raise UserError(f"unknown --grid {self.grid!r}: use one of {', '.join(GRIDS)}")
        if self.max_iter < 1:
            raise UserError(f"--max-iter must be at least 1, got {self.max_iter}")
        if self.bootstrap < 0:
            raise UserError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {self.bootstrap}")
        if not 0 < self.level < 1:
            raise UserError(f"--level must be between 0 and 1 (e.g. 0.9), got {self.level}")


@dataclass
class Calibration:
    runs: SweepRuns
    settings: CalibrationSettings
    compute: ComputeSettings
    compute_source: str
    supervised: SupervisedLawFitter | None = None
    distillation: DistillationLawFitter | None = None
    skipped: dict[str, str] = field(default_factory=dict)   # step -> why it was skipped
    holdout: dict[str, Any] = field(default_factory=dict)
    capacity_gap: dict[str, Any] = field(default_factory=dict)
    baselines: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def laws(self) -> LawSet:
        return LawSet("fitted", self.supervised.law_ if self.supervised else None,
                      self.distillation.law_ if self.distillation else None, self.compute,
                      source=f"fitted by distillscale report on {self.runs.source}")

    def to_dict(self) -> dict[str, Any]:
        def fit(fitter) -> dict | None:
            if fitter is None:
                return None
            record = {key: value for key, value in fitter.law_.fit.items() if key != "bootstrap"}
            return {"coefficients": fitter.law_.coefficients(), "intervals": record.get("intervals", {}),
                    "level": self.settings.level if self.settings.bootstrap else None,
                    "bootstrap_resamples": self.settings.bootstrap, "record": record}

        return {
            "format": "distillscale.report/1",
            "source": self.runs.source,
            "runs": {"supervised": len(self.runs.supervised), "students": len(self.runs.students),
                     "not_usable": self.runs.skipped},
            "compute_settings": {**vars(self.compute), "source": self.compute_source},
            "supervised": fit(self.supervised),
            "distillation": fit(self.distillation),
            "skipped": self.skipped,
            "extrapolation_check": self.holdout,
            "capacity_gap": self.capacity_gap,
            "distilled_vs_baseline": self.baselines,
            "plan": self.plan,
            "laws": self.laws.to_dict(),
        }


def calibrate(runs: SweepRuns, settings: CalibrationSettings = CalibrationSettings(),
              progress=lambda message: None) -> Calibration:
    """Steps 1-5 above; `progress(message)` is told which step starts."""
    compute, compute_source = _compute_settings(runs)
    result = Calibration(runs, settings, compute, compute_source)
    progress(f"fitting the supervised law on {len(runs.supervised)} runs")
    result.supervised = _try(result, "supervised", lambda: _fit_supervised(runs.supervised, settings))
    if result.supervised is not None:
        progress(f"fitting the distillation law on {len(runs.students)} runs")
        result.distillation = _try(result, "distillation", lambda: _fit_distillation(
            runs.students, result.supervised.law_, settings))
    progress("checking extrapolation to the largest runs")
    result.holdout = _extrapolation_checks(result)
    result.capacity_gap = _capacity_gap(runs)
    result.baselines = _distilled_vs_baseline(runs)
    progress("planning at the target scale")
    result.plan = _plan(result)
    return result


def _try(result: Calibration, step: str, fit):
    try:
        return fit()
    except UserError as exc:
        result.skipped[step] = str(exc)
        return None


def _grid(settings: CalibrationSettings, law: str) -> dict | None:
    return COARSE_GRIDS[law] if settings.grid == "coarse" else None


def _data_range(N: np.ndarray, D: np.ndarray) -> dict[str, list[float]]:
    return {"params": [float(N.min()), float(N.max())], "tokens": [float(D.min()), float(D.max())]}


def _fit_supervised(runs: list[dict], settings: CalibrationSettings,
                    bootstrap: int | None = None) -> SupervisedLawFitter:
    N, D, loss = (np.array([r[k] for r in runs], dtype=np.float64)
                  for k in ("non_embedding_params", "tokens", "val_loss"))
    sizes, ratios = len(np.unique(N)), len(np.unique(np.round(D / N, 6)))
    if sizes < 2 or ratios < 2:  # with one D/N ratio, the N and D terms cannot be told apart
        raise UserError(f"the supervised law needs runs of at least 2 sizes at 2 tokens-per-parameter "
                        f"ratios; the runs have {sizes} size(s) and {ratios} ratio(s)")
    fitter = SupervisedLawFitter(settings.form, bootstrap=settings.bootstrap if bootstrap is None else bootstrap,
                                 level=settings.level, seed=settings.seed, max_iter=settings.max_iter,
                                 grid=_grid(settings, "supervised")).fit(N, D, loss)
    fitter.law_.fit["data_range"] = _data_range(N, D)  # read by planning.extrapolation
    return fitter


def _fit_distillation(runs: list[dict], student_law, settings: CalibrationSettings,
                      bootstrap: int | None = None) -> DistillationLawFitter:
    if not runs:
        raise UserError("the sweep has no completed student runs to fit the distillation law on")
    N_S, D_S, L_T, L_S = (np.array([r[k] for r in runs], dtype=np.float64)
                          for k in ("non_embedding_params", "tokens", "teacher_loss", "val_loss"))
    if len(np.unique(L_T)) < 2:
        raise UserError("the distillation law needs students of at least 2 different teachers")
    fitter = DistillationLawFitter(student_law, bootstrap=settings.bootstrap if bootstrap is None else bootstrap,
                                   level=settings.level, seed=settings.seed, max_iter=settings.max_iter,
                                   grid=_grid(settings, "distillation")).fit(N_S, D_S, L_T, L_S)
    fitter.law_.fit["data_range"] = _data_range(N_S, D_S)
    return fitter


def _extrapolation_checks(result: Calibration) -> dict[str, Any]:
    """Refit each law without the runs of its largest model and measure its error on them (point
    fits, no bootstrap): the supervised law without its largest size, the distillation law without
    the students of the strongest (largest) teacher, i.e. extrapolating from weaker to stronger
    models as Busbridge et al. do. The distillation check keeps the full supervised law for Ltilde_S,
    so it measures the distillation law's own extrapolation."""
    runs, settings, checks = result.runs, result.settings, {}

    def check(name: str, records: list[dict], size_key: str, fit, predict) -> None:
        sizes = np.array([r[size_key] for r in records])
        largest = sizes.max()
        train = [r for r, s in zip(records, sizes) if s < largest]
        held = [r for r, s in zip(records, sizes) if s == largest]
        try:
            fitter = fit(train)
        except UserError as exc:
            checks[name] = {"skipped": f"without the runs of the largest {size_key} ({largest:.4g}): {exc}"}
            return
        observed = np.array([r["val_loss"] for r in held])
        errors = relative_errors(predict(fitter, held), observed)
        checks[name] = {
            "held_out_by": size_key, "held_out_params": float(largest),
            "fitted_up_to_params": float(sizes[sizes < largest].max()),
            "n_fitted": len(train), "n_held_out": len(held),
            "mean_abs_relative_error": float(np.mean(np.abs(errors))),
            "max_abs_relative_error": float(np.max(np.abs(errors))),
            "runs": [{"run_id": r["run_id"], "observed": float(o), "relative_error": float(e)}
                     for r, o, e in zip(held, observed, errors)],
        }

    if result.supervised is not None:
        check("supervised", runs.supervised, "non_embedding_params",
              lambda train: _fit_supervised(train, settings, bootstrap=0),
              lambda fitter, held: fitter.predict([r["non_embedding_params"] for r in held],
                                                  [r["tokens"] for r in held]))
    if result.distillation is not None:
        check("distillation", runs.students, "teacher_params",
              lambda train: _fit_distillation(train, result.supervised.law_, settings, bootstrap=0),
              lambda fitter, held: fitter.predict([r["non_embedding_params"] for r in held],
                                                  [r["tokens"] for r in held],
                                                  [r["teacher_loss"] for r in held]))
    return checks


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


def _distilled_vs_baseline(runs: SweepRuns) -> list[dict[str, Any]]:
    """Each student beside the supervised baseline of its size trained on the same tokens."""
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
                          "gain": match[0]["val_loss"] - student["val_loss"]})
    return pairs


def _plan(result: Calibration) -> dict[str, Any]:
    """Compute-optimal distillation at the target under the fitted laws, in every scenario."""
    if result.supervised is None or result.distillation is None:
        return {"skipped": "planning needs both fitted laws"}
    from distillscale.planning.extrapolation import extrapolation_warnings
    from distillscale.planning.solver import DEFAULT_BOUNDS, DistillationPlanner

    laws, settings = result.laws, result.settings
    largest = max(r["non_embedding_params"] for r in result.runs.supervised + result.runs.students)
    flops = ForwardFlops.from_settings(laws.compute)
    N = settings.target_params or DEFAULT_TARGET_SCALE * largest
    C = settings.target_compute or 3.0 * float(flops(N)) * DEFAULT_TARGET_TOKENS_PER_PARAM * N
    # The planner's default box starts at 1e6 parameters and tokens, above a micro sweep's models:
    # open it down to a tenth of the smallest run so small targets are not pinned to the bound.
    smallest = min(r["non_embedding_params"] for r in result.runs.supervised + result.runs.students)
    planner = DistillationPlanner(laws, flops, bounds=(min(DEFAULT_BOUNDS[0], smallest / 10), DEFAULT_BOUNDS[1]))
    plans, failures = {}, {}
    for name in SCENARIOS:
        try:
            plans[name] = planner.plan(N, C, name).to_dict()
        except UserError as exc:
            failures[name] = str(exc)
    for plan in plans.values():
        plan.pop("teacher_family", None)
    tokens = next(iter(plans.values()))["supervised_tokens"] if plans else None
    largest_tokens = max(r["tokens"] for r in result.runs.supervised)
    return {
        "target_params": N, "target_compute": C, "plans": plans, "failed": failures,
        "extrapolation": {
            "params_ratio": N / largest, "largest_fitted_params": largest,
            "tokens_ratio": tokens / largest_tokens if tokens else None,
            "largest_fitted_tokens": largest_tokens,
            "warnings": extrapolation_warnings(laws, {"the target student": N},
                                               {"the target's supervised tokens": tokens}),
        },
    }


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
