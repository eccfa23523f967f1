"""The planner as one call: what `distillscale plan` answers, from Python.

    import distillscale as ds
    p = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case")
    p.plans[0].student_loss, p.plans[0].verdict, p.warnings
    print(p.as_text()); p.to_json(); p.as_cli_command()
    ds.plan_supervised("epoch2024", compute=1e21)     # the compute-optimal N and D, no teacher

`plan` has four answers, each a kind of `Plan` (its `kind` names it) with the `PlanArguments` it was
asked:
- `ScenarioPlans` ("plans"): one student size (given), a plan per scenario (or one for an existing
  teacher);
- `StudentSizePlans` ("sweep"): no student size, so each scenario's best student size, searched
  inside the law's data unless the search limits are given;
- `SupervisedOnlyPlan` ("supervised"): a law without a distillation law answers the supervised
  question instead;
- `ModeComparison` ("modes"): a given student and existing teacher, with `on_policy` (or
  `logit_cache`, `teacher_remote`): supervised, off-policy or on-policy distillation, and the
  break-even efficiency at which on-policy would pay (`planning.modes`).

Bad arguments raise `ParameterError` naming the Python parameter (`teacher.loss`); the CLI prints
the same message with the flag (`--teacher-loss`).
"""

from __future__ import annotations

import math
import sys
from numbers import Real
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from distillscale.cli_options import command_line
from distillscale.errors import ParameterError, UserError
from distillscale.jsontext import json_text
from distillscale.laws.extrapolation import data_range, extrapolation_warnings
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.lawset import LawSet, load_laws
from distillscale.planning.flops import SCENARIOS, ForwardFlops
from distillscale.laws.repetition import DEFAULT_MAX_PENALTY, RepetitionAssessment
from distillscale.laws.student_init import STUDENT_INITS, start_multiplier
from distillscale.planning.modes import LITERATURE_CLAIM, OnPolicy
from distillscale.planning.options import PlanSettings
from distillscale.planning.render import plan_text
from distillscale.planning.repetition import (PRETRAIN_INSTEAD, repeated_distillation, repeated_sweep,
                                              repeated_supervised, repetition_check)
from distillscale.planning.results import CANNOT_TELL, far_beyond
from distillscale.units import Quantity, check_parameter, format_quantity

if TYPE_CHECKING:  # the solver imports SciPy: loaded on the first plan, keeping the CLI's start fast
    from distillscale.planning.results import DistillationPlan, ModePlan, StudentSweep, SupervisedPlan
    from distillscale.planning.solver import DistillationPlanner, SupervisedPlanner
    from distillscale.planning.teacher import TeacherCandidate, TeacherRanking

SUPERVISED_NOTE = ("law {name!r} has no distillation law, so this is the supervised plan; distillation "
                   "planning needs one: fit it with `distillscale fit distillation` or use --law busbridge2025")


@dataclass(frozen=True)
class ExistingTeacher:
    """A teacher that exists already: its size (its logits cost F(N_T) per student token) and
    either its pre-training tokens (its loss then comes from the law) or its measured loss."""

    params: float | None = None
    tokens: float | None = None
    loss: float | None = None
    mixture: tuple[float, ...] | None = None  # several teachers' sizes (`loss` then the mixture's measured loss)

    def checked(self, laws: LawSet) -> "ExistingTeacher":
        if self.mixture is not None:
            return self._checked_mixture(laws)
        if self.params is None:
            raise ParameterError("teacher.params", "give the existing teacher's size with {} "
                                 "(its inference cost depends on it)")
        if (self.tokens is None) == (self.loss is None):
            raise ParameterError(("teacher.tokens", "teacher.loss", "teacher.params"),
                                 "give exactly one of {} or {} with {}")
        for name, value, kind in (("params", self.params, Quantity.PARAMS), ("tokens", self.tokens, Quantity.TOKENS),
                                  ("loss", self.loss, None)):
            _positive(f"teacher.{name}", value, kind)
        if self.loss is not None:
            try:  # the law's own check, its message naming the parameter
                laws.check_teacher_loss(self.loss, flag=ParameterError.NAME)
            except UserError as exc:
                raise ParameterError.about("teacher.loss", str(exc)) from None
        return self

    def _checked_mixture(self, laws: LawSet) -> "ExistingTeacher":
        if self.params is not None:
            raise ParameterError(("teacher.params", "teacher.mixture"), "give {} (one teacher) or {} (several), "
                                 "not both")
        if len(self.mixture) < 2:
            raise ParameterError("teacher.mixture", "{} takes the sizes of two teachers or more, comma-separated "
                                 "(e.g. 1B,300M); one teacher is --teacher-params")
        if self.loss is None or self.tokens is not None:
            raise ParameterError(("teacher.mixture", "teacher.loss", "teacher.tokens"),
                                 "{} needs {}, the mixture's measured cross-entropy (result.json's "
                                 "teacher.teacher_val_loss of a run distilled from it), not {}: the law cannot "
                                 "predict a mixture's loss from its teachers' sizes")
        for size in self.mixture:
            _positive("teacher.mixture", size, Quantity.PARAMS)
        _positive("teacher.loss", self.loss, None)
        try:  # the law's own check of L_T, as for one teacher
            laws.check_teacher_loss(self.loss, flag=ParameterError.NAME)
        except UserError as exc:
            raise ParameterError.about("teacher.loss", str(exc)) from None
        return self


@dataclass(frozen=True)
class StudentSearch:
    """The limits of the student-size search; None takes the law's data range (sizes and tokens
    per parameter), or the planner's bounds when the law records none."""

    min_params: float | None = None
    max_params: float | None = None
    min_tokens_per_param: float | None = None
    max_tokens_per_param: float | None = None

    def given(self) -> list[str]:
        return [name for name, value in vars(self).items() if value is not None]


@dataclass(frozen=True)
class PlanArguments:
    """What a plan was asked: the law (as loaded: a preset name or a file), the budget, the student
    and the search, the teacher, and the FLOP accounting; enough to say how to reproduce it."""

    law_spec: str
    compute: float
    student_params: float | None = None
    student_model: str | None = None
    scenario: str | None = None
    teacher: ExistingTeacher | None = None
    search: StudentSearch = field(default_factory=StudentSearch)
    flops: str = "corrected"
    n_ctx: int | None = None
    vocab_size: int | None = None
    aspect_ratio: float | None = None
    on_policy: OnPolicy | None = None
    logit_cache: bool = False
    teacher_remote: bool = False
    teacher_compute: float | None = None
    unique_tokens: float | None = None
    max_penalty: float = DEFAULT_MAX_PENALTY
    student_init: str = "scratch"

    def cli_command(self, scenario: bool = True, json_output: bool = False) -> str:
        """The `distillscale plan` command with these arguments (`scenario`: with its --scenario)."""
        return command_line(self.settings(scenario=scenario, json_output=json_output))

    def settings(self, scenario: bool = True, json_output: bool = False) -> PlanSettings:
        """These arguments as the settings of `distillscale plan` (which `plan_from_settings` plans)."""
        teacher, on_policy = self.teacher or ExistingTeacher(), self.on_policy
        given = {"law": self.law_spec, "compute": self.compute,
                 "student_model": self.student_model,
                 "student_params": self.student_params if self.student_model is None else None,
                 "scenario": self.scenario if scenario else None, "teacher_params": teacher.params,
                 "teacher_tokens": teacher.tokens, "teacher_loss": teacher.loss,
                 "teacher_mixture": teacher.mixture, **vars(self.search),
                 "flops": self.flops, "n_ctx": self.n_ctx, "vocab_size": self.vocab_size,
                 "aspect_ratio": self.aspect_ratio, "logit_cache": self.logit_cache,
                 "teacher_remote": self.teacher_remote, "teacher_compute": self.teacher_compute,
                 "unique_tokens": self.unique_tokens, "student_init": self.student_init,
                 "as_json": json_output}
        if self.unique_tokens is not None:
            given["max_penalty"] = self.max_penalty
        if on_policy is not None:
            defaults = OnPolicy()
            given.update(on_policy=on_policy.fraction is None,
                         on_policy_fraction=None if on_policy.fraction is None else on_policy.fractions,
                         **{flag: getattr(on_policy, name) for name, flag in (
                             ("prompt_tokens", "prompt_tokens"), ("continuation_tokens", "continuation_tokens"),
                             ("efficiency", "on_policy_efficiency"))
                            if getattr(on_policy, name) != getattr(defaults, name)})
        return PlanSettings(**given)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A plan for one budget under one law: one of `ScenarioPlans`, `StudentSizePlans` or
    `SupervisedOnlyPlan` (told apart by `kind`), with the arguments that produced it.

    warnings : quantities of the plan far outside the law's data, and limits of the search.
    """

    kind: ClassVar[str]
    law: str                                  # the law's name
    arguments: PlanArguments
    # The law set the plan was computed with, itself: what follows from the plan (its repetition
    # check) uses it, never a law reloaded by name (a fitted law not saved has no file; a law set
    # named like a preset is not the preset).
    laws: LawSet = field(repr=False, compare=False)
    # With `unique_tokens`: each planned model's epochs and repetition penalty (`repetition_check`).
    repetition: dict[str, RepetitionAssessment] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    planner: SupervisedPlanner | None = field(default=None, repr=False, compare=False)

    @property
    def compute(self) -> float:
        return self.arguments.compute

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

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "Plan":
        """This plan with each model's loss under its check (`planning.repetition`)."""
        return self

    def to_dict(self) -> dict:
        """What `distillscale plan --json` prints, with the warnings it shows on stderr."""
        record = {**self._record(), "warnings": list(self.warnings)}
        if self.repetition:
            record["repetition"] = {name: check.to_dict() for name, check in self.repetition.items()}
        return record

    def _record(self) -> dict:
        raise NotImplementedError

    def models(self) -> dict[str, tuple[float, float]]:
        """The models the plan trains, by name: (parameters, tokens)."""
        raise NotImplementedError

    def model_losses(self) -> dict[str, float]:
        """The predicted loss of each of `models()`, as the plan shows it, with fresh data."""
        raise NotImplementedError

    def to_json(self) -> str:
        return json_text(self.to_dict(), indent=2)

    def as_text(self, width: int = 100) -> str:
        """The tables and notes `distillscale plan` prints, as plain text (warnings first)."""
        return plan_text(self, width)

    def as_cli_command(self, json_output: bool = False) -> str:
        """The `distillscale plan` command that prints this plan."""
        return self.arguments.cli_command(json_output=json_output)


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

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "ScenarioPlans":
        return replace(self, plans=[repeated_distillation(p, checks[p.scenario.name],
                                                          checks[PRETRAIN_INSTEAD.format(p.scenario.name)])
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
            models[f"{p.scenario.name} (pretrain instead)"] = (p.student_params, p.supervised.tokens)
        return models

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

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "StudentSizePlans":
        return replace(self, sweeps=[repeated_sweep(s, self.laws, checks[s.scenario.name],
                                                    checks[PRETRAIN_INSTEAD.format(s.scenario.name)])
                                     for s in self.sweeps])

    def _record(self) -> dict:
        return {"law": self.law, "budget": self.compute, "sweeps": {s.scenario.name: s.to_dict() for s in self.sweeps}}

    def models(self) -> dict[str, tuple[float, float]]:
        """Each scenario's best student, and the best model trained without a teacher instead."""
        models = {}
        for sweep in self.sweeps:
            models[sweep.scenario.name] = (sweep.best.student_params, sweep.best.student_tokens)
            models[f"{sweep.scenario.name} (pretrain instead)"] = (sweep.supervised_best.student_params,
                                                                   sweep.supervised_best.tokens)
        return models

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
        return self.arguments.cli_command(scenario=False, json_output=json_output)

    def models(self) -> dict[str, tuple[float, float]]:
        return {"supervised": (self.supervised.student_params, self.supervised.tokens)}

    def model_losses(self) -> dict[str, float]:
        return {"supervised": (self.supervised.fresh or self.supervised).loss}

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "SupervisedOnlyPlan":
        return replace(self, supervised=repeated_supervised(self.supervised, checks["supervised"]))


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
    def runner_up(self) -> ModePlan:
        return sorted(self.modes, key=lambda m: m.student_loss)[1]

    @property
    def verdict(self) -> str:
        """The best mode's name, or "too close to call" when its lead over the next is inside the
        law's own intervals (CANNOT_TELL when they overlap beyond the backtest's reach). Both are conditional on the on-policy efficiency assumed: the widened
        on-policy intervals (how far the law is carried beyond its off-policy fit) are shown, not
        used here, since what they leave open is what the break-even efficiency answers."""
        best, runner_up = self.best, self.runner_up
        # beyond the backtest's reach, only intervals that separate give a verdict (`decide_verdict`)
        if (far_beyond(best.law_interval) or far_beyond(runner_up.law_interval)) and not (
                _has_interval(best.law_interval) and _has_interval(runner_up.law_interval)
                and best.law_interval.high < runner_up.law_interval.low):
            return CANNOT_TELL
        # the half-widths facing each other, in quadrature; a loss without an interval adds none
        facing = [best.law_interval.high - best.student_loss if _has_interval(best.law_interval) else 0.0,
                  runner_up.student_loss - runner_up.law_interval.low
                  if _has_interval(runner_up.law_interval) else 0.0]
        if runner_up.student_loss - best.student_loss < math.hypot(*facing):
            return "too close to call"
        return best.name

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
                "logit_cache": self.arguments.logit_cache, "teacher_remote": self.arguments.teacher_remote,
                "teacher_compute": self.arguments.teacher_compute,
                "best": self.best.name, "verdict": self.verdict,
                "break_even_efficiency": _finite_or_none(self.break_even_efficiency),
                "assumption": self.assumption, "modes": [m.to_dict() for m in self.modes]}

    def models(self) -> dict[str, tuple[float, float]]:
        """Each mode's student and the corpus tokens it reads: on-policy reads its off-policy share
        and the prompts of its sampled continuations."""
        return {m.name: (self.student_params, m.corpus_tokens) for m in self.modes}

    def model_losses(self) -> dict[str, float]:
        return {m.name: m.fresh_data_loss for m in self.modes}


def _has_interval(prediction) -> bool:
    return prediction is not None and prediction.has_interval


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def plan(law, *, compute: float, student_params: float | None = None,
         student_model: str | Path | None = None, scenario: str | None = None,
         teacher: ExistingTeacher | None = None, min_params: float | None = None,
         max_params: float | None = None, min_tokens_per_param: float | None = None,
         max_tokens_per_param: float | None = None, flops: str = "corrected", n_ctx: int | None = None,
         vocab_size: int | None = None, aspect_ratio: float | None = None,
         on_policy: OnPolicy | None = None, logit_cache: bool = False, teacher_remote: bool = False,
         teacher_compute: float | None = None, unique_tokens: float | None = None,
         max_penalty: float = DEFAULT_MAX_PENALTY, student_init: str = "scratch") -> Plan:
    """Compute-optimal distillation for a budget: teacher, tokens, loss, and distil or pretrain?

    law : a preset name, a law file saved by `fit`, a LawSet, or a fitted law (a LawFit from
        `ds.fit_supervised` / `ds.fit_distillation`, or its `.law`).
    compute : the FLOP budget.
    student_params : the student's non-embedding parameters; None searches for the best size per
        scenario (within min_params..max_params and min_ or max_tokens_per_param, by default the
        law's data). student_model : a model directory instead, for its exact N_S and F(N_S).
    scenario : one of SCENARIOS; None or "all" plans them all.
    teacher : an ExistingTeacher to distil from (teacher-inference cost; needs the student's size).
    flops, n_ctx, vocab_size, aspect_ratio : the forward-FLOP accounting (default: the law's setting).
    on_policy : an OnPolicy: compare supervised, off-policy and on-policy distillation of the given
        student from the given teacher instead (a `ModeComparison`); so do the options below.
    logit_cache : the teacher's logits on the corpus are cached already (off-policy tokens do not pay them).
    teacher_remote : the teacher runs on its own GPUs (a server): its FLOPs are not on `compute`.
    teacher_compute : with teacher_remote, the teacher's own FLOP budget (default: unlimited).
    unique_tokens : the unique tokens of the corpus (default: unlimited): the plan's `repetition`
        gives each model's epochs and loss penalty (`repetition_check`, within `max_penalty`); in the
        mode comparison the penalties are in each mode's loss, its interval and the verdict.
    student_init : "scratch" (the law's students) or "pruned": a student pruned from the teacher, its
        D_S counted as the measured multiplier x D_S (`laws.student_init.PRUNED_MICRO`), its loss's
        interval spanning the multiplier's, outside the law's fit; a verdict only where the intervals
        separate.
    """
    laws, spec = _load(law)
    unique_tokens = _positive("unique_tokens", unique_tokens, Quantity.TOKENS)
    if isinstance(max_penalty, bool) or not (isinstance(max_penalty, Real) and 0 < max_penalty < 1):
        raise ParameterError("max_penalty", "{} must be a fraction between 0 and 1 (e.g. 0.01 for 1%), "
                             "got {value!r}", value=max_penalty)
    compute = _positive("compute", compute, Quantity.FLOPS)
    student_params = _positive("student_params", student_params, Quantity.PARAMS)
    search = StudentSearch(_positive("min_params", min_params, Quantity.PARAMS),
                           _positive("max_params", max_params, Quantity.PARAMS), min_tokens_per_param,
                           max_tokens_per_param)
    if scenario not in (None, "all", *SCENARIOS):
        raise ParameterError("scenario", "unknown scenario {scenario!r} for {}: use one of "
                                         f"{', '.join(SCENARIOS)}, or all", scenario=scenario)
    names = list(SCENARIOS) if scenario in (None, "all") else [scenario]
    compare = on_policy is not None or logit_cache or teacher_remote or teacher_compute is not None
    if student_init not in STUDENT_INITS:
        raise ParameterError("student_init", "{} must be one of " + ", ".join(STUDENT_INITS) + ", got {value!r}",
                             value=student_init)
    if student_init != "scratch" and compare:
        raise ParameterError("student_init", "{} " + student_init + " is planned against the distillation "
                             "law's scenarios only: leave out the mode comparison (--on-policy, --logit-cache, "
                             "--teacher-remote)")
    if compare:
        on_policy = (on_policy or OnPolicy()).checked()
        teacher_compute = _positive("teacher_compute", teacher_compute, Quantity.FLOPS)
        if teacher_compute is not None and not teacher_remote:
            raise ParameterError(("teacher_compute", "teacher_remote"), "{} is a remote teacher's own "
                                 "budget: add {} (otherwise the teacher shares the student's budget)")
    arguments = PlanArguments(law_spec=spec, compute=compute, student_params=student_params,
                              student_model=None if student_model is None else str(student_model),
                              scenario=None if scenario in (None, "all") else names[0], teacher=teacher,
                              search=search, flops=flops, n_ctx=n_ctx, vocab_size=vocab_size,
                              aspect_ratio=aspect_ratio, on_policy=on_policy, logit_cache=bool(logit_cache),
                              teacher_remote=bool(teacher_remote), teacher_compute=teacher_compute,
                              unique_tokens=unique_tokens, max_penalty=float(max_penalty),
                              student_init=student_init)
    return _with_repetition(_plan(laws, arguments, student_model, names, compare))


def plan_from_settings(settings: PlanSettings, laws: LawSet | None = None) -> Plan:
    """The plan `distillscale plan` prints for `settings` (its output options aside); `laws`: the
    law set already loaded for `settings.law` (the planner page's)."""
    given = (settings.teacher_params or settings.teacher_tokens or settings.teacher_loss is not None
             or settings.teacher_mixture is not None)
    return plan(laws if laws is not None else settings.law, compute=settings.compute,
                student_params=settings.student_params, student_model=settings.student_model,
                scenario=settings.scenario, min_params=settings.min_params, max_params=settings.max_params,
                teacher=ExistingTeacher(settings.teacher_params, settings.teacher_tokens, settings.teacher_loss,
                                        settings.teacher_mixture) if given else None, min_tokens_per_param=settings.min_tokens_per_param,
                max_tokens_per_param=settings.max_tokens_per_param, flops=settings.flops, n_ctx=settings.n_ctx,
                vocab_size=settings.vocab_size, aspect_ratio=settings.aspect_ratio,
                on_policy=settings.on_policy_settings(), logit_cache=settings.logit_cache,
                teacher_remote=settings.teacher_remote, teacher_compute=settings.teacher_compute,
                unique_tokens=settings.unique_tokens, max_penalty=settings.max_penalty,
                student_init=settings.student_init)


def _with_repetition(result: Plan) -> Plan:
    """With `unique_tokens`: each model's repetition check, computed once (the mode comparison's in
    `compare_modes`), and its loss, interval and verdict under it."""
    arguments = result.arguments
    if arguments.unique_tokens is None:
        return result
    if isinstance(result, ModeComparison):
        checks = {m.name: m.repetition for m in result.modes}
    else:
        checks = repetition_check(result, arguments.unique_tokens, arguments.max_penalty)
        result = result._repeated(checks)
    warnings = [message for name, check in checks.items() for message in extrapolation_warnings(
        result.laws, {}, {f"the {name} model's tokens as fresh data (D' after repetition)": check.effective_tokens})]
    return replace(result, repetition=checks, warnings=list(dict.fromkeys(result.warnings + warnings)))


def _plan(laws: LawSet, arguments: PlanArguments, student_model, names: list[str], compare: bool) -> Plan:
    compute, student_params, teacher, search = (arguments.compute, arguments.student_params, arguments.teacher,
                                                arguments.search)
    forward = _forward_flops(laws, arguments.flops, arguments.n_ctx, arguments.vocab_size, arguments.aspect_ratio)
    start = start_multiplier(arguments.student_init)
    if laws.distillation is None:
        if compare or start is not None:
            laws.require_distillation()
        return _supervised_plan(laws, forward, arguments)
    from distillscale.planning.solver import DistillationPlanner

    planner = DistillationPlanner(laws, forward, start=start)
    if compare:
        return _mode_comparison(laws, planner, arguments, student_model)
    N_S, F_S = _student(student_params, student_model, forward, arguments.n_ctx)
    if teacher is not None and N_S is None:
        raise ParameterError("student_params", "planning with an existing teacher (or a mixture) needs {}")
    if N_S is None:
        warnings, (size_range, tokens_per_param) = _student_region(laws, planner, search)
        sweeps = [planner.sweep(compute, name, size_range, tokens_per_param) for name in names]
        warnings += plan_extrapolation_warnings(laws, [s.best for s in sweeps], sweep=True)
        return StudentSizePlans(law=laws.name, laws=laws, arguments=arguments, sweeps=sweeps, warnings=warnings,
                                planner=planner)
    if search.given():
        given = search.given()
        raise ParameterError((*given, "student_params"), f"the student-size search options "
                             f"({', '.join(['{}'] * len(given))}) do not combine with {{}}: drop one "
                             "or the other")
    if teacher is not None:
        if arguments.scenario not in (None, "teacher-inference"):
            raise ParameterError(("scenario", "scenario"), "an existing teacher is planned under "
                                 "teacher-inference cost: leave out {} or set {} to teacher-inference")
        teacher = teacher.checked(laws)
        plans = [planner.plan_with_teacher(N_S, compute, teacher.params, teacher.tokens, teacher.loss, F_S,
                                           mixture=teacher.mixture)]
    else:
        plans = [planner.plan(N_S, compute, name, F_S) for name in names]
    return ScenarioPlans(law=laws.name, laws=laws, arguments=arguments, plans=plans,
                         warnings=plan_extrapolation_warnings(laws, plans, sweep=False), planner=planner)


def plan_supervised(law, *, compute: float, params: float | None = None,
                    min_params: float | None = None, max_params: float | None = None,
                    flops: str = "corrected") -> Plan:
    """Training without a teacher under the law's supervised law: the compute-optimal model size N
    and tokens D for the budget (searched in min_params..max_params, by default the planner's
    bounds), or with `params` that size trained on the whole budget; the loss with its interval."""
    laws, spec = _load(law)
    laws.require_supervised()
    compute = _positive("compute", compute, Quantity.FLOPS)
    search = StudentSearch(_positive("min_params", min_params, Quantity.PARAMS),
                           _positive("max_params", max_params, Quantity.PARAMS))
    params = _positive("params", params, Quantity.PARAMS)
    return _supervised_plan(laws, _forward_flops(laws, flops, None, None, None),
                            PlanArguments(law_spec=spec, compute=compute, student_params=params, search=search,
                                          flops=flops))


def rank_teachers_for(law, *, student_params: float, student_tokens: float,
                      candidates: str | Path | list[TeacherCandidate] | None = None) -> TeacherRanking:
    """Rank teachers for a student of `student_params` trained on `student_tokens`: the candidates
    (a list, or a CSV/JSONL file with teacher_loss, or teacher_params and teacher_tokens; default a
    ladder of 1x..128x the student's size), the optimal teacher loss L_T* and the capacity gap."""
    from distillscale.planning.teacher import rank_teachers, read_candidates, teacher_ladder

    laws, _ = _load(law)
    student_params = _positive("student_params", student_params, Quantity.PARAMS)
    student_tokens = _positive("student_tokens", student_tokens, Quantity.TOKENS)
    planner = planner_for(laws)
    if candidates is None:
        candidates = teacher_ladder(planner, student_params)
    elif not isinstance(candidates, list):
        candidates = read_candidates(candidates, planner)
    ranking = rank_teachers(planner, student_params, student_tokens, candidates)
    warnings = extrapolation_warnings(laws, {"the student": student_params, **{
        f"teacher {c.name!r}": c.params for c in candidates}}, {"the student's tokens": student_tokens})
    return replace(ranking, law=laws.name, warnings=warnings)


def plan_extrapolation_warnings(laws: LawSet, plans: list[DistillationPlan], sweep: bool) -> list[str]:
    """One message per quantity of the plans far outside the data: each student against the
    distillation law's runs, each teacher against the supervised law's."""
    messages = []
    for p in plans:
        name = p.scenario.name
        student = f"the best {name} student" if sweep else "the student"
        # a started student: the law is evaluated at its effective tokens, D_eff = m D_S
        tokens, what = ((p.student_tokens, "tokens") if p.start is None else
                        (p.start.value * p.student_tokens, "effective tokens (D_eff)"))
        messages += extrapolation_warnings(
            laws, {student: p.student_params}, {f"the {name} student's {what}": tokens},
            {f"the {name} student's {what} per parameter": tokens / p.student_params},
            students=True)
        messages += extrapolation_warnings(laws, {f"the {name} teacher": p.teacher_params},
                                           {f"the {name} teacher's tokens": p.teacher_tokens})
    return list(dict.fromkeys(messages))


def planner_for(laws: LawSet, flops: str = "corrected", n_ctx: int | None = None,
                vocab_size: int | None = None, aspect_ratio: float | None = None) -> DistillationPlanner:
    """The distillation planner of a law set under a FLOP accounting (default: the law's setting)."""
    from distillscale.planning.solver import DistillationPlanner

    return DistillationPlanner(laws, _forward_flops(laws, flops, n_ctx, vocab_size, aspect_ratio))


# -- internals ------------------------------------------------------------------------------------

def _load(law) -> tuple[LawSet, str]:
    """(the law set, what `--law` takes to load it again, for the plan's command line). A law
    object that was not loaded from a file (a fit's law, not saved yet) is shown as "law.json", where
    to save it; the plan keeps the object itself (`Plan.laws`), so nothing is reloaded by name."""
    # A LawFit exists only once its module (the fitter, over torch) is loaded: not imported here, so
    # that planning from a preset or a law file needs no torch (the core install has none).
    selection = sys.modules.get("distillscale.laws.selection")
    if selection is not None and isinstance(law, selection.LawFit):
        laws = law.laws("fitted")
    elif isinstance(law, SupervisedLaw):
        laws = LawSet("fitted", supervised=law)
    elif isinstance(law, DistillationLaw):
        laws = LawSet("fitted", law.student_law, law)
    elif isinstance(law, LawSet):
        laws = law
    elif isinstance(law, (str, Path)):
        laws = load_laws(law)
    else:
        raise ParameterError("law", f"{{}} must be a preset name, a law file, a LawSet or a fitted law, "
                                    f"got {type(law).__name__}")
    return laws, laws.spec or "law.json"


def _positive(param: str, value: float | None, kind: Quantity | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(param, "{} must be a number, got {value!r}", value=value) from None
    if not (math.isfinite(number) and number > 0):
        raise ParameterError(param, f"{{}} must be a positive finite number, got {number:g}")
    return check_parameter(number, param, kind=kind)  # inside the limits of what it counts


def _forward_flops(laws: LawSet, method: str, n_ctx: int | None, vocab_size: int | None,
                   aspect_ratio: float | None) -> ForwardFlops:
    if method not in ForwardFlops.METHODS:
        raise ParameterError("flops", "unknown FLOP method {method!r} for {}: use one of "
                                      f"{', '.join(ForwardFlops.METHODS)}", method=method)
    for name, value in (("n_ctx", n_ctx), ("vocab_size", vocab_size), ("aspect_ratio", aspect_ratio)):
        _positive(name, value, None)
    settings = laws.compute
    return ForwardFlops(method, n_ctx or settings.n_ctx, vocab_size or settings.n_vocab,
                        aspect_ratio or settings.aspect_ratio)


def _student(student_params: float | None, student_model: str | Path | None, forward: ForwardFlops,
             n_ctx: int | None) -> tuple[float | None, float | None]:
    """(N_S, exact F(N_S) or None) from the size or from a model directory. A model is priced at
    the plan's context (`n_ctx` when given, else the law's), the sequence length it trains at, not
    at the longest its config allows (an imported Qwen3 keeps 40,960); at most at that longest."""
    if student_model is None:
        return student_params, None
    if student_params is not None:
        raise ParameterError(("student_params", "student_model"), "give {} or {}, not both")
    from distillscale.model.checkpoint import load_config

    config = load_config(student_model)
    if n_ctx is not None and n_ctx > config.max_seq_len:
        raise ParameterError(("n_ctx", "student_model", "n_ctx"), f"{{}} {n_ctx} is longer than the "
                             f"context of {{}} ({config.max_seq_len} tokens, its max_seq_len): give {{}} "
                             f"{config.max_seq_len} or less")
    context = min(forward.n_ctx, config.max_seq_len)
    return float(config.non_embedding_params), float(config.forward_flops_per_token(context))


def _student_region(laws: LawSet, planner: DistillationPlanner, search: StudentSearch
                    ) -> tuple[list[str], tuple[tuple[float, float], tuple[float, float] | None]]:
    """(warnings, (size range, tokens-per-parameter range)) of the student-size sweep: the law's
    student data range, with the limits given replacing its ends."""
    warnings = []
    known = data_range(laws, students=True)
    if known is None:
        warnings.append(f"law {laws.name!r} records no data range: searching students of any size in "
                        "the planner's bounds (set the search limits: smallest and largest size, "
                        "fewest tokens per parameter)")
    sizes = list(known.params if known else planner.bounds)
    ratios = list(known.tokens_per_param) if known else [None, None]
    for index, name in enumerate(("min_params", "max_params")):
        if getattr(search, name) is not None:
            sizes[index] = getattr(search, name)
    for index, name in enumerate(("min_tokens_per_param", "max_tokens_per_param")):
        value = getattr(search, name)
        if value is not None:
            if not value > 0:
                raise ParameterError(name, f"{{}} must be positive, got {value:g}")
            ratios[index] = float(value)
    if sizes[0] >= sizes[1]:
        raise ParameterError(("min_params", "max_params"),
                             f"the smallest student ({format_quantity(sizes[0])}) must be below the "
                             f"largest ({format_quantity(sizes[1])}): fix {{}}/{{}}")
    if ratios == [None, None]:
        return warnings, (tuple(sizes), None)
    ratios = [0.0 if ratios[0] is None else ratios[0], np.inf if ratios[1] is None else ratios[1]]
    if ratios[0] >= ratios[1]:
        raise ParameterError(("min_tokens_per_param", "max_tokens_per_param"),
                             f"the fewest tokens per parameter ({ratios[0]:g}) must be below the most "
                             f"({ratios[1]:g}): fix {{}}/{{}}")
    return warnings, (tuple(sizes), tuple(ratios))


# The arguments that ask `plan` for the mode comparison.
ASKS_FOR_MODES = ("on_policy", "logit_cache", "teacher_remote")


def _mode_comparison(laws: LawSet, planner: DistillationPlanner, arguments: PlanArguments,
                     student_model) -> ModeComparison:
    """Supervised, off-policy and on-policy distillation of the given student from the given teacher."""
    from distillscale.planning.modes import compare_modes

    if student_model is not None:
        raise ParameterError(("student_params", "student_model"), "the mode comparison counts FLOPs from "
                             "the student's size: give {} (its non-embedding parameters) instead of {}")
    if arguments.student_params is None:
        raise ParameterError((*ASKS_FOR_MODES, "student_params"), "the mode comparison (asked for by {}, {} "
                             "or {}) needs the student's size: give {}")
    if arguments.teacher is None:
        raise ParameterError((*ASKS_FOR_MODES, "teacher.params"), "the mode comparison (asked for by {}, "
                             "{} or {}) needs an existing teacher, its size to price its logits and scoring: "
                             "give {} and its tokens or loss")
    if arguments.teacher.mixture is not None:
        raise ParameterError("teacher.mixture", "the mode comparison (--on-policy, --logit-cache, "
                             "--teacher-remote) prices one teacher: leave out {}, or compare modes with one "
                             "teacher's --teacher-params")
    if arguments.search.given():
        given = arguments.search.given()
        raise ParameterError(given, f"the student-size search options ({', '.join(['{}'] * len(given))}) "
                             "do not combine with the mode comparison: the student's size is given")
    if arguments.scenario not in (None, "teacher-inference"):
        raise ParameterError("scenario", "the mode comparison prices the existing teacher itself (live, "
                             "cached or remote): leave out {}")
    teacher = arguments.teacher.checked(laws)
    teacher_loss = (teacher.loss if teacher.loss is not None
                    else float(laws.require_supervised().predict(teacher.params, teacher.tokens)))
    modes = compare_modes(planner, arguments.student_params, arguments.compute, teacher.params, teacher_loss,
                          arguments.on_policy, logit_cache=arguments.logit_cache,
                          teacher_remote=arguments.teacher_remote, teacher_compute=arguments.teacher_compute,
                          unique_tokens=arguments.unique_tokens, max_penalty=arguments.max_penalty)
    N_S = arguments.student_params
    warnings = extrapolation_warnings(
        laws, {"the student": N_S}, {f"the {m.name} student's tokens": m.effective_tokens
                                     for m in modes if m.mode != "supervised"},
        {f"the {m.name} student's tokens per parameter": m.effective_tokens / N_S
         for m in modes if m.mode != "supervised"}, students=True)
    warnings += extrapolation_warnings(laws, {"the teacher": teacher.params},
                                       {"the teacher's tokens": teacher.tokens} if teacher.tokens else {})
    return ModeComparison(law=laws.name, laws=laws, arguments=replace(arguments, teacher=teacher), student_params=N_S,
                          teacher_params=teacher.params, teacher_loss=teacher_loss,
                          on_policy=arguments.on_policy, modes=modes, warnings=list(dict.fromkeys(warnings)),
                          planner=planner)


def _supervised_plan(laws: LawSet, forward: ForwardFlops, arguments: PlanArguments) -> SupervisedOnlyPlan:
    from distillscale.planning.solver import SupervisedPlanner

    planner = SupervisedPlanner(laws.require_supervised(), forward)
    compute, search = arguments.compute, arguments.search
    if arguments.student_params is not None:
        result = planner.supervised(arguments.student_params, compute)
    else:
        size_range = (search.min_params or planner.bounds[0], search.max_params or planner.bounds[1])
        result = planner.supervised_optimal(compute, size_range)
    warnings = extrapolation_warnings(laws, {"the model": result.student_params}, {"the model": result.tokens})
    return SupervisedOnlyPlan(law=laws.name, laws=laws, arguments=arguments, supervised=result, warnings=warnings,
                              planner=planner)
