"""A family's plan (`plan --students`): the `Plan` kind of a family of students sharing one teacher."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

from distillscale.laws.repetition import RepetitionAssessment
from distillscale.planning.family import CacheStorage as FamilyCache, FamilyRound
from distillscale.planning.plans import ScenarioPlans
from distillscale.planning.repetition import PRETRAIN_INSTEAD, repeated_distillation, repetition_check, teacher_pool
from distillscale.planning.results import DistillationPlan


@dataclass(frozen=True, kw_only=True)
class FamilyPlans(ScenarioPlans):
    """A family of students from one teacher (`planning.family`, `planning.family_plan`): which students
    distil, decided jointly (`sharing`: they share the teacher's cost; `rounds`: the plans that decided
    it), and a plan per student (its scenario named after it), each on its share of the budget against
    itself trained alone on that share: a student that distils sharing the teacher with the others that
    do, one that does not as if it joined them. The family's compute by part as answered, its logit
    cache's storage, and the same family with the other targets (cached or online) to compare."""

    kind: ClassVar[str] = "family"
    targets: str
    cache: FamilyCache | None = None
    sharing: tuple[str, ...] = ()            # the students that distil, sharing the teacher's cost
    rounds: tuple[FamilyRound, ...] = ()     # each plan of the decision, the first with every student sharing
    reaches: dict[str, float] = field(default_factory=dict)   # a student re-reading the cache's first tokens: how many
    assumed: dict[str, tuple[str, ...]] = field(default_factory=dict)   # who shares the teacher in each one's plan
    other: "FamilyPlans | None" = field(default=None, repr=False, compare=False)   # the other targets' plan

    @property
    def headline(self) -> DistillationPlan | None:
        """The first student's plan (what the planner page draws its figures for)."""
        return self.plans[0]

    @property
    def verdict(self) -> str:
        """The family's answer: "distill" (every student distils, sharing the teacher), "distill 1B, 3B"
        (those do, sharing it; the others train alone) or, where none does, the students' verdict when
        they agree (pretrain, too close to call, ...), else "no student distils"."""
        if len(self.sharing) == len(self.plans):
            return "distill"
        if self.sharing:
            return "distill " + ", ".join(name.removeprefix("student ") for name in self.sharing)
        verdicts = {p.verdict for p in self.plans}
        return verdicts.pop() if len(verdicts) == 1 else "no student distils"

    def assumes(self, name: str) -> tuple[str, ...]:
        """The students a student's verdict assumes share the teacher's cost (itself among them)."""
        return self.assumed.get(name, self.sharing)

    def totals(self) -> dict[str, float]:
        """The family's FLOPs by part as answered: the students' training (a student that does not distil
        trains alone on its whole share), the teacher's forward passes and its training."""
        distilled = [p for p in self.plans if p.scenario.name in self.sharing]
        return {"students": sum(p.flops.student for p in distilled)
                + sum(p.budget for p in self.plans if p.scenario.name not in self.sharing),
                "teacher_forward": sum(p.flops.teacher_inference for p in distilled),
                "teacher_training": sum(p.flops.teacher_pretraining for p in distilled)}

    def answered_gpu_hours(self) -> dict[str, tuple[float, float, float | None]]:
        """With --gpu: each student's (GPU-hours, wall-clock hours, cost) as answered: one that distils, its
        runs (its share of the teacher's logits included); one that does not, its run alone."""
        from distillscale.planning.gpu_hours import ALTERNATIVE

        estimate = self.gpu_hours
        if estimate is None:
            return {}
        totals, spent = estimate.totals(), {}
        for p in self.plans:
            name = p.scenario.name
            alone = next(run for run in estimate.runs if run.group == name and run.part == ALTERNATIVE)
            spent[name] = totals[name] if name in self.sharing else (alone.gpu_hours, alone.wall_hours, alone.cost)
        return spent

    def repetition_checks(self) -> dict[str, RepetitionAssessment]:
        """Each model's repetition check: a student re-reading the cache's first tokens (`reaches`) repeats
        them (its unique tokens; the pool's when fewer), the rest as any plan's (the pool's, if any)."""
        checks = super().repetition_checks() if self.settings.unique_tokens is not None else {}
        pool = teacher_pool(self.settings)   # the teacher reads its own data (fresh, or its pool), not the cache
        for p in self.plans:
            name = p.scenario.name
            if name in self.reaches:   # its own check alone: the student's run under its reach
                checks[name] = repetition_check(replace(self, plans=[p]), min(self.reaches[name], self.settings.unique_tokens
                                                                              or math.inf), self.settings.max_penalty,
                                                teacher_unique_tokens=pool, teachers=pool is not None)[name]
        return checks

    @property
    def repeats_data(self) -> bool:
        return super().repeats_data or bool(self.reaches)

    def _repeated(self, checks: dict[str, RepetitionAssessment]) -> "FamilyPlans":
        """Each student under its check; the model trained alone under its own, or as planned where only
        the cache limits the student (`repetition_checks`)."""
        def repeated(p: DistillationPlan) -> DistillationPlan:
            student = checks.get(p.scenario.name)
            if student is None:
                return p
            alone = checks.get(PRETRAIN_INSTEAD.format(p.scenario.name)) or replace(student, penalty=0.0)
            return repeated_distillation(p, student, alone, self.laws)

        return replace(self, plans=[repeated(p) for p in self.plans])

    def _record(self) -> dict:
        other = self.other
        return {"law": self.law, "budget": self.compute, "targets": self.targets, "verdict": self.verdict,
                "distilling": list(self.sharing), "rounds": [r.to_dict() for r in self.rounds],
                "students": [{"name": p.scenario.name, "share": p.budget / self.compute,
                              "distils": p.scenario.name in self.sharing,
                              "assumes_sharing": list(self.assumes(p.scenario.name)),
                              "cache_reach": self.reaches.get(p.scenario.name), **p.to_dict()}
                             for p in self.plans],
                "totals": self.totals(), "cache": None if self.cache is None else self.cache.to_dict(),
                "other_targets": None if other is None else {
                    "targets": other.targets, "totals": other.totals(), "verdict": other.verdict,
                    "distilling": list(other.sharing),
                    "students": [{"name": p.scenario.name, "student_tokens": p.student_tokens,
                                  "student_loss": p.student_loss, "verdict": p.verdict} for p in other.plans]}}
