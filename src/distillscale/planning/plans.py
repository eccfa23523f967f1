"""The kinds of plan `ds.plan` returns, each a `Plan` (its `kind` names it) carrying the
`PlanSettings` it was asked:
- `ScenarioPlans` ("plans"): one student size (given), a plan per scenario (or one for an existing
  teacher);
- `FamilyPlans` ("family", `planning.family_plans`): a family of students sharing one teacher;
- `StudentSizePlans` ("sweep"): no student size, so each scenario's best student size;
- `SupervisedOnlyPlan` ("supervised"): a law without a distillation law answers the supervised
  question instead;
- `ModeComparison` ("modes"): supervised, off-policy or on-policy distillation of a given student
  from an existing teacher (`planning.modes`).
Each says what it is in `to_dict` (the JSON of `distillscale plan --json`) and prints itself through
`planning.render`; with a limited corpus its losses are after repetition (`planning.repetition`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

from distillscale.jsontext import json_text
from distillscale.laws.difference import INDEPENDENT, SAME_LAW, LossDifference, compare, decide
from distillscale.laws.lawset import LawSet
from distillscale.laws.uncertainty import Prediction
from distillscale.laws.repetition import RepetitionAssessment
from distillscale.planning.batch_penalty import PENALTY_NOTE, VERDICT_MOVED, penalized_distillation, penalized_supervised, penalized_sweep
from distillscale.planning.correction import CorrectionShift
from distillscale.planning.data_limited import DataLimitedPlan
from distillscale.planning.downstream import PlanDownstream
from distillscale.planning.gpu_hours import GpuHoursEstimate
from distillscale.planning.modes import LITERATURE_CLAIM, OnPolicy
from distillscale.planning.options import PlanSettings
from distillscale.planning.recipes import RunRecipe
from distillscale.planning.render import plan_text
from distillscale.planning.run_sheet import run_sheet
from distillscale.planning.repetition import (BASELINE_RUN, PRETRAIN_INSTEAD, TEACHER_RUN, DataPool, data_pools,
                                              repeated_distillation, repeated_supervised, repeated_sweep,
                                              repetition_check)
from distillscale.planning.results import CANNOT_TELL, as_prediction, interval_or_none
from distillscale.planning.served_teacher import ServedTeacher
from distillscale.planning.teacher_model import TeacherModel

if TYPE_CHECKING:  # the solver imports SciPy: loaded on the first plan, keeping the CLI's start fast
    from distillscale.planning.results import DistillationPlan, ModePlan, StudentSweep, SupervisedPlan
    from distillscale.planning.solver import SupervisedPlanner

SUPERVISED_NOTE = ("law {name!r} has no distillation law, so this is the supervised plan; distillation "
                   "planning needs one: fit it with `distillscale fit distillation` or use --law busbridge2025")


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A plan for one budget under one law: one of `ScenarioPlans`, `StudentSizePlans` or
    `SupervisedOnlyPlan` (told apart by `kind`), with the settings that produced it.

    warnings : quantities of the plan far outside the law's data, and limits of the search.
    """

    kind: ClassVar[str]
    law: str                                  # the law's name
    settings: PlanSettings
    # The law set the plan was computed with, itself: what follows from the plan (its repetition
    # check) uses it, never a law reloaded by name (a fitted law not saved has no file; a law set
    # named like a preset is not the preset).
    laws: LawSet = field(repr=False, compare=False)
    # With `unique_tokens`: each planned model's epochs and repetition penalty (`repetition_check`).
    repetition: dict[str, RepetitionAssessment] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    planner: SupervisedPlanner | None = field(default=None, repr=False, compare=False)
    # How to run each of `runs()` (its peak lr, batch, steps, warmup) under the settings'
    # hyperparameter law (`planning.recipes`).
    recipes: dict[str, RunRecipe] = field(default_factory=dict)
    # With a loss-to-error law (`plan --downstream-law`): each of `runs()`'s predicted downstream
    # error at its predicted loss (`planning.downstream`).
    downstream: PlanDownstream | None = None
    # At a batch the user fixed (`--batch-tokens`): each run's relative loss penalty there, already in
    # the losses, intervals and verdicts above, and the plan at each run's own B* (`planning.batch_penalty`).
    batch_penalties: dict[str, float] = field(default_factory=dict)
    at_optimal_batch: "Plan | None" = field(default=None, repr=False, compare=False)
    # With a GPU (`plan --gpu`): each run's wall-clock, GPU-hours and cost, estimated from the measured
    # throughput table (`planning.gpu_hours`).
    gpu_hours: GpuHoursEstimate | None = None
    # With `--teacher-model`: the teacher's size, FLOPs per token and measured loss (`planning.teacher_model`:
    # a model directory's, or a served teacher's as its server states them).
    teacher_model: TeacherModel | ServedTeacher | None = None
    # What the supervised law's correction beyond its runs did to the plan's losses (the sizes are the
    # raw law's optimum: `planning.correction`); None when it changed none of them.
    correction: CorrectionShift | None = None
    # With a pool (`unique_tokens`) and a student: training alone, self-distillation, an ensemble distilled
    # and the given teacher compared at equal compute under the data-limited law (`planning.data_limited`).
    data_limited: DataLimitedPlan | None = None

    @property
    def compute(self) -> float:
        return self.settings.compute

    @property
    def law_form(self) -> str | None:
        """The supervised law's form, as the plan states it: every N and D above is searched under it
        (the law's own predict and inversion: an interaction form's N-dependent data term included)."""
        law = self.laws.supervised
        return None if law is None else law.form_text()

    @property
    def headline(self) -> DistillationPlan | None:
        """The plan, when one scenario was planned (for a sweep: its best student); else None."""
        return None

    @property
    def verdict(self) -> str | None:
        """distill, pretrain or "too close to call" when one scenario was planned (a sweep's best
        student against the best model trained without a teacher); None otherwise."""
        return None

    @property
    def note(self) -> str | None:
        return None

    def verdicts(self) -> dict[str, str]:
        """Each scenario's verdict (distill, pretrain or "too close to call"); with `unique_tokens`,
        of the losses after repetition: the student and the model trained without a teacher each
        repeat the corpus as often as their own tokens need (`repetition`)."""
        return {}

    def differences(self) -> dict[str, LossDifference]:
        """Each scenario's Delta = the distilled loss - the loss trained alone, with its interval: what
        its verdict reads (`laws.difference`)."""
        return {}

    @property
    def repeats_data(self) -> bool:
        """Whether a run of the plan may repeat its data (a limited corpus: `unique_tokens`)."""
        return self.settings.unique_tokens is not None

    def repetition_checks(self) -> dict[str, RepetitionAssessment]:
        """Each model's repetition check under the plan's `unique_tokens` (`planning.repetition`)."""
        return repetition_check(self, self.settings.unique_tokens, self.settings.max_penalty)

    def pools(self) -> list[DataPool]:
        """With `unique_tokens`: which pool each model reads and how many times (`planning.repetition`)."""
        return data_pools(self)

    def scenario_plans(self) -> dict[str, DistillationPlan]:
        """Each scenario's distillation plan with fresh data (a sweep's best student), by scenario name."""
        return {}

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "Plan":
        """This plan with each model's loss under its check (`planning.repetition`)."""
        return self

    def _penalized(self, factors: dict[str, float]) -> "Plan":
        """This plan with each run's loss times its factor (1 + its penalty at the user's batch;
        `planning.batch_penalty`), by `runs()` name; a run not in `factors` as planned."""
        return self

    def with_batch_penalties(self, factors: dict[str, float]) -> "Plan":
        """This plan under `factors` (a factor of 1 is left out), keeping the plan at each run's B*."""
        factors = {name: factor for name, factor in factors.items() if factor != 1.0}
        if not factors:
            return self
        penalized = self._penalized(factors)
        before, after = self.verdicts(), penalized.verdicts()
        moved = [f"{name}: {before[name]} at each run's B*, {verdict} at your batch"
                 for name, verdict in after.items() if before.get(name) != verdict]
        notes = [PENALTY_NOTE] + ([f"{VERDICT_MOVED} (" + "; ".join(moved) + ")"] if moved else [])
        return replace(penalized, batch_penalties={name: f - 1.0 for name, f in factors.items()},
                       at_optimal_batch=self, warnings=list(dict.fromkeys([*self.warnings, *notes])))

    def to_dict(self) -> dict:
        """What `distillscale plan --json` prints, with the warnings it shows on stderr."""
        record = {**self._record(), "warnings": list(self.warnings)}
        if self.laws.supervised is not None:
            record["supervised_form"] = {"form": self.laws.supervised.form, "description": self.law_form}
            # laws.crossladder: how the correction moved the plan's losses, or None where it moved none
            record["bias_correction"] = None if self.correction is None else self.correction.to_dict()
        record["losses"] = self.losses_record()
        if self.teacher_model is not None:
            record["teacher_model"] = self.teacher_model.to_dict()
        if self.repetition:
            record["repetition"] = {name: check.to_dict() for name, check in self.repetition.items()}
            record["pools"] = [pool.to_dict() for pool in self.pools()]
        if self.recipes:
            record["recipes"] = {name: recipe.to_dict() for name, recipe in self.recipes.items()}
            record["run_sheet"] = [row.to_dict() for row in run_sheet(self)]   # the text's run sheet, row by row
        if self.downstream is not None:
            record["downstream"] = self.downstream.to_dict()
        if self.gpu_hours is not None:
            record["gpu_hours"] = self.gpu_hours.to_dict()
        if self.data_limited is not None:
            record["data_limited"] = self.data_limited.to_dict()
        if self.at_optimal_batch is not None:
            optimal = self.at_optimal_batch
            record["batch_penalty"] = {"penalties": dict(self.batch_penalties), "note": PENALTY_NOTE,
                                       "losses_at_optimal_batch": {name: loss for name, (loss, _) in
                                                                   optimal.loss_predictions().items()},
                                       "verdicts_at_optimal_batch": optimal.verdicts()}
        return record

    def _record(self) -> dict:
        raise NotImplementedError

    def losses_record(self) -> dict:
        """What the plan's losses are (the law's `losses`: nats/token of its tokenizer on its text), and
        each run's predicted loss in bits per byte of that text (None where its bytes were not measured)."""
        return self.laws.losses.units_record({
            name: (loss, *((float(interval.low), float(interval.high)) if interval is not None and interval.has_interval
                           else (None, None))) for name, (loss, interval) in self.loss_predictions().items()})

    def models(self) -> dict[str, tuple[float, float]]:
        """The models the plan trains, by name: (parameters, tokens)."""
        raise NotImplementedError

    def model_losses(self) -> dict[str, float]:
        """The predicted loss of each of `models()`, as the plan shows it, with fresh data."""
        raise NotImplementedError

    def runs(self) -> dict[str, tuple[float, float]]:
        """The training runs the plan asks for, by name: (parameters, tokens trained on): its
        models, and the teacher's pre-training where a scenario pays for it ("<scenario> teacher")."""
        return self.models()

    def loss_predictions(self) -> dict[str, tuple[float, Prediction | None]]:
        """The predicted loss of each of `runs()` as the plan shows it (after repetition, with a
        limited corpus) and its interval (None: the law gives none)."""
        raise NotImplementedError

    def to_json(self) -> str:
        return json_text(self.to_dict(), indent=2)

    def as_text(self, width: int = 100) -> str:
        """The tables and notes `distillscale plan` prints, as plain text (warnings first)."""
        return plan_text(self, width)

    def as_cli_command(self, json_output: bool = False) -> str:
        """The `distillscale plan` command that prints this plan."""
        return self.settings.command(json_output=json_output)


@dataclass(frozen=True, kw_only=True)
class ScenarioPlans(Plan):
    """A given student size: a plan per scenario (or one, for an existing teacher)."""

    kind: ClassVar[str] = "plans"
    plans: list[DistillationPlan]

    @property
    def headline(self) -> DistillationPlan | None:
        return self.plans[0] if len(self.plans) == 1 else None

    @property
    def verdict(self) -> str | None:
        return self.verdicts()[self.plans[0].scenario.name] if len(self.plans) == 1 else None

    def verdicts(self) -> dict[str, str]:
        return {p.scenario.name: p.verdict for p in self.plans}

    def differences(self) -> dict[str, LossDifference]:
        return {p.scenario.name: p.difference for p in self.plans}

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "ScenarioPlans":
        return replace(self, plans=[repeated_distillation(p, checks[p.scenario.name],
                                                          checks[PRETRAIN_INSTEAD.format(p.scenario.name)], self.laws)
                                    for p in self.plans])

    def scenario_plans(self) -> dict[str, DistillationPlan]:
        return {p.scenario.name: p.fresh or p for p in self.plans}

    def student_at(self, budget: float, plan: DistillationPlan | None = None) -> DistillationPlan:
        """`plan` (by default the first) at another budget, with fresh data: the same student (its size
        and FLOPs per token), from the same given teacher (its size with its tokens or loss, a
        mixture, a model's own FLOPs per token) or in the same scenario."""
        plan = plan or self.plans[0]
        student_flops = plan.flops.student / (3.0 * plan.student_tokens)
        model, teacher = self.teacher_model, self.settings.teacher
        if model is not None:
            return self.planner.plan_with_teacher(plan.student_params, budget, model.params, None,
                                                  model.loss.nats_per_token, student_flops,
                                                  teacher_flops_per_token=model.flops_per_token)
        if teacher is not None:
            return self.planner.plan_with_teacher(plan.student_params, budget, teacher.params, teacher.tokens,
                                                  teacher.loss, student_flops, mixture=teacher.mixture)
        return self.planner.plan(plan.student_params, budget, plan.scenario, student_flops)

    def _penalized(self, factors: dict[str, float]) -> "ScenarioPlans":
        return replace(self, plans=[penalized_distillation(p, self.laws, *_scenario_factors(factors, p.scenario.name))
                                    for p in self.plans])

    def _record(self) -> dict:
        records = {p.scenario.name: {"law": self.law, **p.to_dict()} for p in self.plans}
        if len(self.plans) == 1:
            return records[self.plans[0].scenario.name]
        return {"law": self.law, "budget": self.compute, "student_params": self.plans[0].student_params,
                "plans": records}

    def models(self) -> dict[str, tuple[float, float]]:
        """Each scenario's student, and the same size trained on the whole budget without a teacher."""
        models = {}
        for p in self.plans:
            models[p.scenario.name] = (p.student_params, p.student_tokens)
            models[PRETRAIN_INSTEAD.format(p.scenario.name)] = (p.student_params, p.supervised.tokens)
        return models

    def runs(self) -> dict[str, tuple[float, float]]:
        return _with_teachers(self.models(), self.plans)

    def loss_predictions(self) -> dict[str, tuple[float, Prediction | None]]:
        losses = {}
        for p in self.plans:
            losses[p.scenario.name] = (p.student_loss, p.student_interval)
            losses[PRETRAIN_INSTEAD.format(p.scenario.name)] = (p.supervised.loss, p.supervised.interval)
        return _with_teachers(losses, self.plans, lambda p: _teacher_loss(self.laws, p))

    def model_losses(self) -> dict[str, float]:
        losses = {}
        for p in (p.fresh or p for p in self.plans):
            losses[p.scenario.name] = p.student_loss
            losses[PRETRAIN_INSTEAD.format(p.scenario.name)] = p.supervised.loss
        return losses


@dataclass(frozen=True, kw_only=True)
class StudentSizePlans(Plan):
    """No student size given: each scenario's best student size (a sweep over sizes)."""

    kind: ClassVar[str] = "sweep"
    sweeps: list[StudentSweep]

    @property
    def headline(self) -> DistillationPlan | None:
        return self.sweeps[0].best if len(self.sweeps) == 1 else None

    @property
    def verdict(self) -> str | None:
        return self.verdicts()[self.sweeps[0].scenario.name] if len(self.sweeps) == 1 else None

    def verdicts(self) -> dict[str, str]:
        return {s.scenario.name: s.verdict for s in self.sweeps}

    def differences(self) -> dict[str, LossDifference]:
        return {s.scenario.name: s.difference for s in self.sweeps}

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "StudentSizePlans":
        return replace(self, sweeps=[repeated_sweep(s, self.laws, checks[s.scenario.name],
                                                    checks[PRETRAIN_INSTEAD.format(s.scenario.name)])
                                     for s in self.sweeps])

    def scenario_plans(self) -> dict[str, DistillationPlan]:
        return {s.scenario.name: (s.fresh or s).best for s in self.sweeps}

    def _penalized(self, factors: dict[str, float]) -> "StudentSizePlans":
        return replace(self, sweeps=[penalized_sweep(s, self.laws, *_scenario_factors(factors, s.scenario.name),
                                                     factors.get(BASELINE_RUN.format(s.scenario.name), 1.0))
                                     for s in self.sweeps])

    def baselines(self) -> dict[str, tuple[float, float]]:
        """Each scenario's best student's same-size baseline (its loss difference's other side, not a
        run the plan asks for), by BASELINE_RUN name: (parameters, tokens)."""
        return {BASELINE_RUN.format(s.scenario.name): (s.best.student_params, s.best.supervised.tokens)
                for s in self.sweeps}

    def _record(self) -> dict:
        return {"law": self.law, "budget": self.compute, "sweeps": {s.scenario.name: s.to_dict() for s in self.sweeps}}

    def models(self) -> dict[str, tuple[float, float]]:
        """Each scenario's best student, and the best model trained without a teacher instead."""
        models = {}
        for sweep in self.sweeps:
            models[sweep.scenario.name] = (sweep.best.student_params, sweep.best.student_tokens)
            models[PRETRAIN_INSTEAD.format(sweep.scenario.name)] = (sweep.supervised_best.student_params,
                                                                   sweep.supervised_best.tokens)
        return models

    def runs(self) -> dict[str, tuple[float, float]]:
        return _with_teachers(self.models(), [sweep.best for sweep in self.sweeps])

    def loss_predictions(self) -> dict[str, tuple[float, Prediction | None]]:
        losses = {}
        for sweep in self.sweeps:
            losses[sweep.scenario.name] = (sweep.best.student_loss, sweep.best.student_interval)
            losses[PRETRAIN_INSTEAD.format(sweep.scenario.name)] = (sweep.supervised_best.loss,
                                                                   sweep.supervised_best.interval)
        return _with_teachers(losses, [sweep.best for sweep in self.sweeps], lambda p: _teacher_loss(self.laws, p))

    def model_losses(self) -> dict[str, float]:
        losses = {}
        for sweep in (s.fresh or s for s in self.sweeps):
            losses[sweep.scenario.name] = sweep.best.student_loss
            losses[PRETRAIN_INSTEAD.format(sweep.scenario.name)] = sweep.supervised_best.loss
        return losses


@dataclass(frozen=True, kw_only=True)
class SupervisedOnlyPlan(Plan):
    """A law without a distillation law: the compute-optimal model trained without a teacher (or
    the given size trained on the whole budget)."""

    kind: ClassVar[str] = "supervised"
    supervised: SupervisedPlan

    @property
    def note(self) -> str | None:
        return SUPERVISED_NOTE.format(name=self.law)

    def _record(self) -> dict:
        return {"law": self.law, "budget": self.compute, "supervised": self.supervised.to_dict(), "note": self.note}

    def as_cli_command(self, json_output: bool = False) -> str:
        return self.settings.command(json_output=json_output, scenario=False)

    def models(self) -> dict[str, tuple[float, float]]:
        return {"supervised": (self.supervised.student_params, self.supervised.tokens)}

    def model_losses(self) -> dict[str, float]:
        return {"supervised": (self.supervised.fresh or self.supervised).loss}

    def loss_predictions(self) -> dict[str, tuple[float, Prediction | None]]:
        return {"supervised": (self.supervised.loss, self.supervised.interval)}

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "SupervisedOnlyPlan":
        return replace(self, supervised=repeated_supervised(self.supervised, checks["supervised"]))

    def _penalized(self, factors: dict[str, float]) -> "SupervisedOnlyPlan":
        return replace(self, supervised=penalized_supervised(self.supervised, factors.get("supervised", 1.0)))


@dataclass(frozen=True, kw_only=True)
class ModeComparison(Plan):
    """A given student and existing teacher: supervised training, off-policy distillation and
    on-policy distillation at each fraction, on the same budget (`planning.modes`). On-policy
    losses assume an on-policy token is worth `efficiency` off-policy tokens (the law's fit is for
    off-policy runs); each carries the break-even efficiency k* at which it would tie the best of
    the others."""

    kind: ClassVar[str] = "modes"
    student_params: float
    teacher_params: float
    teacher_loss: float
    on_policy: OnPolicy
    modes: list[ModePlan]

    @property
    def best(self) -> ModePlan:
        """The mode with the lowest predicted student loss."""
        return min(self.modes, key=lambda m: m.student_loss)

    @property
    def supervised_mode(self) -> ModePlan:
        return next(m for m in self.modes if m.mode == "supervised")

    @property
    def distilled_modes(self) -> list[ModePlan]:
        """The ways of distilling (off-policy, on-policy at each fraction), lowest loss first."""
        return sorted((m for m in self.modes if m.mode != "supervised"), key=lambda m: m.student_loss)

    @property
    def best_distilled(self) -> ModePlan:
        return self.distilled_modes[0]

    def against_alone(self, mode: ModePlan) -> LossDifference:
        """Delta = `mode` - training alone, with its interval (`laws.difference.compare`). Off-policy, the
        law's own interval under the calibrated rule; on-policy (outside the law's fit), its widened
        interval as shown (`INDEPENDENT`)."""
        alone = self.supervised_mode
        if mode.pool_difference is not None:   # on a pool: the data-limited law's (`laws.data_limited.difference`)
            return mode.pool_difference
        if mode.outside_fit:
            delta = compare(as_prediction(mode.student_loss, mode.interval),
                            as_prediction(alone.student_loss, alone.law_interval), INDEPENDENT)
            if not mode.beyond_measured:
                return delta
            from distillscale.laws.data_limited import BEYOND_RULE

            return replace(delta, beyond=True, rule=BEYOND_RULE)
        return decide(mode.student_loss, mode.law_interval, alone.student_loss, alone.law_interval)

    @property
    def deciding_mode(self) -> ModePlan:
        """The way of distilling that answers "distil at all?": the lowest-loss one whose Delta's interval
        lies below 0 (distil: that way is better than training alone); with none, the lowest-loss one
        whose interval reaches 0 (too close to call, or cannot tell); with every one above 0, the
        lowest-loss one (pretrain). A verdict of one of several ways: the plan says which decides
        (`mode_verdict_lines`); each way's Delta shares the alone loss and the law, so they err together,
        and an on-policy way decides only under the efficiency assumed."""
        modes = self.distilled_modes
        verdicts = [self.against_alone(m).verdict for m in modes]
        for wanted in (("distill",), ("too close to call", CANNOT_TELL)):
            decided = [m for m, v in zip(modes, verdicts) if v in wanted]
            if decided:
                return decided[0]
        return modes[0]

    @property
    def difference(self) -> LossDifference:
        """Delta = the deciding way of distilling (`deciding_mode`) - training alone, with its interval:
        what the verdict reads."""
        return self.against_alone(self.deciding_mode)

    @property
    def mode_difference(self) -> LossDifference | None:
        """The best way of distilling - the next, two losses of one law (`SAME_LAW`: their intervals as
        shown, combined independently); None with one way of distilling."""
        modes = self.distilled_modes
        if len(modes) < 2:
            return None
        return compare(as_prediction(modes[0].student_loss, modes[0].interval),
                       as_prediction(modes[1].student_loss, modes[1].interval), SAME_LAW)

    @property
    def verdict(self) -> str:
        """distill (a way of distilling beats training alone: its Delta's interval below 0), pretrain,
        too close to call or cannot tell: `difference`'s verdict. Off-policy's is conditional on
        nothing assumed; on-policy's on the efficiency assumed (`break_even_efficiency` says how much
        that matters)."""
        return self.difference.verdict

    @property
    def break_even_efficiency(self) -> float:
        """The smallest k* over the on-policy fractions: below it, on-policy does not pay."""
        return min(m.break_even_efficiency for m in self.modes if m.mode == "on-policy")

    @property
    def assumption(self) -> str:
        return (f"the law's fit is for off-policy runs: an on-policy token is counted as "
                f"{self.on_policy.efficiency:g} off-policy token{'s' if self.on_policy.efficiency != 1 else ''} "
                f"(on_policy.efficiency, not measured for pretraining-style distillation; post-training "
                f"reports {LITERATURE_CLAIM} less compute on-policy), and on-policy intervals are widened by "
                "the literature's typical extrapolation error")

    def _record(self) -> dict:
        return {"law": self.law, "budget": self.compute, "student_params": self.student_params,
                "teacher_params": self.teacher_params, "teacher_loss": self.teacher_loss,
                "prompt_tokens": self.on_policy.prompt_tokens,
                "continuation_tokens": self.on_policy.continuation_tokens,
                "on_policy_efficiency": self.on_policy.efficiency,
                "logit_cache": self.settings.logit_cache, "teacher_remote": self.settings.teacher_remote,
                "teacher_compute": self.settings.teacher_compute,
                "best": self.best.name, "verdict": self.verdict, "distillation_mode": self.deciding_mode.name,
                "best_distillation_mode": self.best_distilled.name,
                **self.difference.to_dict(), **self._mode_record(),
                "break_even_efficiency": _finite_or_none(self.break_even_efficiency),
                "assumption": self.assumption, "modes": [m.to_dict() for m in self.modes]}

    def _mode_record(self) -> dict:
        """The two best ways of distilling against each other (`mode_difference`), when there are two."""
        between = self.mode_difference
        if between is None:
            return {}
        first, second = self.distilled_modes[:2]
        return {"distillation_modes": {"first": first.name, "second": second.name,
                                       "first_minus_second": between.value,
                                       "interval": [between.low, between.high] if between.has_interval else None,
                                       "separated": between.separated, "rule": between.rule}}

    def models(self) -> dict[str, tuple[float, float]]:
        """Each mode's student and the corpus tokens it reads: on-policy reads its off-policy share
        and the prompts of its sampled continuations."""
        return {m.name: (self.student_params, m.corpus_tokens) for m in self.modes}

    def model_losses(self) -> dict[str, float]:
        return {m.name: m.fresh_data_loss for m in self.modes}

    def loss_predictions(self) -> dict[str, tuple[float, Prediction | None]]:
        """Each mode's student loss with its interval as shown (on-policy's widened)."""
        return {m.name: (m.student_loss, m.interval) for m in self.modes}

    def runs(self) -> dict[str, tuple[float, float]]:
        """Each mode's student and the tokens it trains on (on-policy: its sampled continuations too)."""
        return {m.name: (self.student_params, m.student_tokens) for m in self.modes}

    def repetition_checks(self) -> dict[str, RepetitionAssessment]:
        """The checks `compare_modes` priced each mode with (already in their losses)."""
        return {m.name: m.repetition for m in self.modes}

    def _penalized(self, factors: dict[str, float]) -> "ModeComparison":
        def scaled(interval, factor):
            return None if interval is None else interval.scaled(factor)
        return replace(self, modes=[replace(m, student_loss=m.student_loss * factors.get(m.name, 1.0),
                                            interval=scaled(m.interval, factors.get(m.name, 1.0)),
                                            law_interval=scaled(m.law_interval, factors.get(m.name, 1.0)))
                                    for m in self.modes])




def _scenario_factors(factors: dict[str, float], scenario: str) -> tuple[float, float, float]:
    """A scenario's (student, model trained instead, pre-trained teacher) factors, 1 where absent."""
    return (factors.get(scenario, 1.0), factors.get(PRETRAIN_INSTEAD.format(scenario), 1.0),
            factors.get(TEACHER_RUN.format(scenario), 1.0))


def _with_teachers(models: dict, plans: list[DistillationPlan], teacher=lambda p: (p.teacher_params, p.teacher_tokens)
                   ) -> dict:
    """`models` with each plan's teacher pre-training after its student, where the scenario pays for
    it: `teacher(plan)` its entry (by default its (parameters, tokens))."""
    teachers = {p.scenario.name: teacher(p) for p in plans
                if p.scenario.teacher_pretraining and p.teacher_params and p.teacher_tokens}
    runs = {}
    for name, model in models.items():
        runs[name] = model
        if name in teachers:
            runs[TEACHER_RUN.format(name)] = teachers[name]
    return runs


def _teacher_loss(laws: LawSet, p: DistillationPlan) -> tuple[float, Prediction | None]:
    """A pre-trained teacher's loss, with the supervised law's interval at its size and tokens."""
    return p.teacher_loss, interval_or_none(laws.supervised.prediction(p.teacher_params, p.teacher_tokens))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
