"""A family's plan (`plan --students`): which students distil, decided jointly.

A student's verdict in a family assumes the students it shares the teacher's cost with distil too: the
cache's forward passes (or the teacher's training) are split among them. The family's answer is the
students that distil when only they share the cost: every student planned sharing, those whose verdict
is not "distill" leave (they train alone on their share), the rest planned again, until no verdict
changes; a student that left is then planned as if it joined them (its verdict, the plan shown for it),
and joins again where that turns it to "distill" (each student once, so the rounds end). Each round is a
`FamilyRound`; the verdicts read are the plan's final ones (`judge`: after repetition and a fixed batch's
penalty). The costs themselves are `planning.family`'s."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from distillscale.errors import ParameterError
from distillscale.planning.family import FamilyRound, cache_storage, cache_tokens, family_costs, student_names
from distillscale.planning.options import ExistingTeacher, PlanSettings
from distillscale.planning.family_plans import FamilyPlans
from distillscale.planning.warnings import loss_units_notes, plan_warnings, vocabulary_notes
from distillscale.units import format_quantity

if TYPE_CHECKING:
    from distillscale.laws.lawset import LawSet
    from distillscale.planning.flops import ForwardFlops
    from distillscale.planning.solver import DistillationPlanner

# A family's plan -> each student's verdict as the plan shows it (after repetition and batch penalties).
Judge = Callable[[FamilyPlans], dict]


def plan_family(laws: LawSet, planner: DistillationPlanner, settings: PlanSettings, teacher: ExistingTeacher,
                model, forward: ForwardFlops, judge: Judge) -> FamilyPlans:
    """The family's answer for its targets, and the same family's with the other targets (`other`)."""
    family = _Family(laws, planner, settings, teacher, model, forward)
    chosen, other = family.decide(settings.targets, judge), family.decide(_other(settings.targets), judge)
    return replace(chosen, other=other)


def _other(targets: str) -> str:
    return "online" if targets == "cached" else "cached"


class _Family:
    """The family's students, budgets and teacher, planned for any subset of students sharing the teacher."""

    def __init__(self, laws: LawSet, planner: DistillationPlanner, settings: PlanSettings, teacher: ExistingTeacher,
                 model, forward: ForwardFlops):
        self.laws, self.planner, self.settings, self.model, self.forward = laws, planner, settings, model, forward
        self.teacher = teacher
        if teacher.params is not None:   # a measured teacher's size too
            larger = [size for size in settings.students if size >= teacher.params]
            if larger:
                raise ParameterError(("students", "teacher_model"), f"{{}} has a student of "
                                     f"{format_quantity(larger[0])} parameters, not smaller than its teacher ({{}}: "
                                     f"{format_quantity(teacher.params)}): a family is distilled from a larger teacher")
        self.teacher_loss = teacher.loss if teacher.loss is not None else float(laws.require_supervised().predict(
            teacher.params, teacher.tokens))
        self.F_T = float(planner.flops(teacher.params)) if model is None else float(model.flops_per_token)
        self.training = 3.0 * self.F_T * teacher.tokens if settings.teacher_trained else 0.0
        self.students = list(settings.students)
        self.names = student_names(self.students)
        shares = settings.shares or tuple(1.0 / len(self.students) for _ in self.students)
        self.budgets = [share * settings.compute for share in shares]
        self.flops = [float(planner.flops(size)) for size in self.students]
        rows = getattr(model, "output_rows", None)
        self.vocab = int(rows) if rows else int(forward.n_vocab)   # the teacher's, else --vocab-size, the law's
        self.cached_tokens = cache_tokens(self.vocab, settings.cache_top_k, settings.cache_storage, planner.bounds[0])
        self.notes = (loss_units_notes(laws, settings, model, forward.n_ctx)
                      + vocabulary_notes(laws, forward.n_vocab, {"--teacher-model": rows}))

    def plans(self, sharing: list[int], targets: str, strict: bool = False) -> FamilyPlans | None:
        """The students `sharing` (indices) sharing the teacher's cost, by `targets`: a plan each. A student
        whose budget its share does not cover (fewer tokens than the planner plans on) cannot distil so: left
        out (`strict`: refused in one line naming it, as the first plan of all the students is); None when
        none is left."""
        settings, teacher = self.settings, self.teacher
        capped = self.cached_tokens if targets == "cached" else math.inf
        while sharing:
            picked = lambda values: [values[i] for i in sharing]   # noqa: E731
            costs = family_costs(picked(self.budgets), picked(self.flops), self.F_T, targets, self.training, capped)
            short = [i for i, tokens in zip(sharing, costs.tokens) if tokens < self.planner.bounds[0]]
            if strict or not short:
                break
            sharing = [i for i in sharing if i not in short]
        if not sharing:
            return None
        plans = [self.planner.plan_member(name, size, budget, teacher.params, teacher.tokens, self.teacher_loss,
                                          forward / tokens, trained, teacher_trained=settings.teacher_trained)
                 for name, size, budget, tokens, forward, trained in zip(
                     picked(self.names), picked(self.students), picked(self.budgets), costs.tokens, costs.forward,
                     costs.training)]
        cache = (cache_storage(list(costs.tokens), self.vocab, settings.cache_top_k, settings.cache_storage)
                 if targets == "cached" else None)
        return FamilyPlans(law=self.laws.name, laws=self.laws, settings=settings, plans=plans, planner=self.planner,
                           targets=targets, teacher_model=self.model, cache=cache, cache_holds=self._holds(targets),
                           sharing=tuple(p.scenario.name for p in plans))

    def _holds(self, targets: str) -> float | None:
        """The most tokens the cache holds under --cache-storage (None: no limit, or online targets)."""
        return self.cached_tokens if targets == "cached" and math.isfinite(self.cached_tokens) else None

    def decide(self, targets: str, judge: Judge) -> FamilyPlans:
        """The students that distil sharing the teacher (see the module), a plan per student: its plan
        among them (the students that distil), or one that does not as if it joined them (where it cannot
        afford that, its plan when last planned); `assumed`: who shares the teacher in each student's plan."""
        sharing, rounds, rejoined, last = list(range(len(self.students))), [], set(), {}

        def planned(indices: list[int], strict: bool = False, only: str | None = None):
            """(the plan of `indices` sharing, their verdicts), each student's plan kept as its last (`only`: its)."""
            family = self.plans(indices, targets, strict)
            verdicts = judge(family) if family is not None else {}
            for p in family.plans if family is not None else []:
                if only is None or p.scenario.name == only:
                    last[p.scenario.name] = (p, family.sharing)
            return family, verdicts

        shared, verdicts = planned(sharing, strict=True)
        while True:
            if sharing:
                rounds.append(FamilyRound(tuple(self.names[i] for i in sharing), verdicts))
            kept = [i for i in sharing if verdicts.get(self.names[i]) == "distill"]
            if kept != sharing:
                sharing = kept
                shared, verdicts = planned(sharing)
                continue
            back = [i for i in range(len(self.students)) if i not in sharing and i not in rejoined
                    and planned(sorted(sharing + [i]), only=self.names[i])[1].get(self.names[i]) == "distill"]
            if not back:
                break
            rejoined.update(back)
            sharing = sorted(sharing + back)
            shared, verdicts = planned(sharing)
        members = () if shared is None else shared.sharing
        for p in shared.plans if shared is not None else []:   # a student that distils: among those that do
            last[p.scenario.name] = (p, members)
        plans = [last[name][0] for name in self.names]
        warnings = list(dict.fromkeys(
            self.notes + plan_warnings(self.laws, plans, sweep=False, given_teacher=True)))
        return FamilyPlans(law=self.laws.name, laws=self.laws, settings=self.settings, plans=plans,
                           planner=self.planner, targets=targets, teacher_model=self.model,
                           cache=None if shared is None else shared.cache, sharing=members,
                           assumed={name: last[name][1] for name in self.names},
                           cache_holds=self._holds(targets), rounds=tuple(rounds), warnings=warnings)
