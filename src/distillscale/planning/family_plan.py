"""A family's plan (`plan --students`): which students distil, decided jointly.

A student's verdict in a family assumes the students it shares the teacher's cost with distil too: the
cache's forward passes (or the teacher's training) are split among them. The family's answer is the
students that distil when only they share the cost: every student planned sharing, those whose verdict
is not "distill" leave (they train alone on their share), the rest planned again, until no verdict
changes; a student that left is then planned as if it joined them (its verdict, the plan shown for it).
It never distils there: it left when more students shared the teacher, and with fewer each pays more of
every stretch (each student's best reach of the cache too, `planning.family_cache`). Each round is a
`FamilyRound`; the verdicts read are the plan's final ones (`judge`: after repetition and a fixed batch's
penalty). The costs themselves are `planning.family`'s."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from distillscale.errors import ParameterError
from distillscale.laws.extrapolation import meaningless, pool_floor
from distillscale.laws.data_limited import DataLimitedLaw
from distillscale.planning.family import (FamilyCosts, FamilyRound, cache_storage, cache_tokens, family_costs,
                                          student_names)
from distillscale.planning.family_cache import best_reaches
from distillscale.planning.options import ExistingTeacher, PlanSettings
from distillscale.planning.family_plans import FamilyPlans
from distillscale.planning.warnings import loss_units_notes, plan_warnings, vocabulary_notes
from distillscale.units import format_quantity

if TYPE_CHECKING:
    from distillscale.laws.lawset import LawSet
    from distillscale.planning.flops import ForwardFlops
    from distillscale.planning.solver import DistillationPlanner

# Added to a student's loss where its interval means nothing: a reach where it does comes first.
MEANINGLESS = 1e6

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
        floor = pool_floor(laws) or 0.0   # a student re-reads no fewer of the cache's tokens than the law prices
        self.fewest_reach = max(planner.bounds[0], floor)
        self.cached_tokens = cache_tokens(self.vocab, settings.cache_top_k, settings.cache_storage, self.fewest_reach,
                                          "a run is planned on" if planner.bounds[0] >= floor else
                                          f"unique tokens law {laws.name!r} can price re-read (fewer lie far below "
                                          "its runs)")
        self.notes = (loss_units_notes(laws, settings, model, forward.n_ctx)
                      + vocabulary_notes(laws, forward.n_vocab, {"--teacher-model": rows}))

    def plans(self, sharing: list[int], targets: str, strict: bool = False) -> FamilyPlans | None:
        """The students `sharing` (indices) sharing the teacher's cost, by `targets`: a plan each, cached
        ones each reading its best reach of the cache (`planning.family_cache`). A student whose budget
        its share does not cover (fewer tokens than the planner plans on) cannot distil so: left out
        (`strict`: refused in one line naming it, as the first plan of all the students is); None when
        none is left."""
        settings, teacher = self.settings, self.teacher
        while sharing:
            picked = lambda values: [values[i] for i in sharing]   # noqa: E731
            reach = self._reaches(sharing) if targets == "cached" else math.inf
            costs = family_costs(picked(self.budgets), picked(self.flops), self.F_T, targets, self.training, reach)
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
        cache = (cache_storage(picked(self.names), costs, self.vocab, settings.cache_top_k, settings.cache_storage)
                 if targets == "cached" else None)
        return FamilyPlans(law=self.laws.name, laws=self.laws, settings=settings, plans=plans, planner=self.planner,
                           targets=targets, teacher_model=self.model, cache=cache, reaches=self._reread(plans, costs),
                           sharing=tuple(p.scenario.name for p in plans))

    def _reaches(self, sharing: list[int]) -> list[float]:
        """Each of the students `sharing`'s reach of the cache (`planning.family_cache`), within the storage
        limit and the pool of unique tokens: its loss after repetition as the plan prices and prints it (a
        student of the teacher on a pool of its reach, `laws.data_limited`: the law's central value; outside
        the range the law measured re-reading in, its verdict says it cannot tell), among the reaches where
        its interval means something (`laws.extrapolation.meaningless`) where there are any."""
        law = DataLimitedLaw(self.laws)
        teacher = law.measured_teacher(self.teacher_loss)
        sizes = [self.students[i] for i in sharing]

        def loss(i: int, tokens: float, reach: float) -> float:
            value = float(law.student(sizes[i], tokens, reach if reach < tokens else None, teacher).value)
            return value + (MEANINGLESS if meaningless(self.laws, value, sizes[i], tokens, students=True) else 0.0)

        return best_reaches([self.budgets[i] for i in sharing], [self.flops[i] for i in sharing], self.F_T,
                            self.training, loss, min(self.cached_tokens, self.settings.unique_tokens or math.inf),
                            self.fewest_reach)

    @staticmethod
    def _reread(plans: list, costs: FamilyCosts) -> dict[str, float]:
        """Each student reading fewer of the cache's tokens than it trains on: its reach, by name."""
        return {p.scenario.name: reach for p, reach, tokens in zip(plans, costs.reach, costs.tokens)
                if reach < tokens * (1 - 1e-12)}

    def decide(self, targets: str, judge: Judge) -> FamilyPlans:
        """The students that distil sharing the teacher (see the module), a plan per student: its plan
        among them (the students that distil), or one that does not as if it joined them (where it cannot
        afford that, its plan when last planned); `assumed`: who shares the teacher in each student's plan."""
        sharing, rounds, last = list(range(len(self.students))), [], {}

        def planned(indices: list[int], strict: bool = False, only: str | None = None):
            """(the plan of `indices` sharing, their verdicts), each student's plan kept as its last (`only`: its)."""
            family = self.plans(indices, targets, strict)
            verdicts = judge(family) if family is not None else {}
            for p in family.plans if family is not None else []:
                if only is None or p.scenario.name == only:
                    last[p.scenario.name] = (p, family.sharing, family.reaches.get(p.scenario.name))
            return family, verdicts

        shared, verdicts = planned(sharing, strict=True)
        while True:
            if sharing:
                rounds.append(FamilyRound(tuple(self.names[i] for i in sharing), verdicts))
            kept = [i for i in sharing if verdicts.get(self.names[i]) == "distill"]
            if kept == sharing:
                break
            sharing = kept
            shared, verdicts = planned(sharing)
        # A student that left, as if it joined the students that distil: it pays more of the teacher than
        # when it left (fewer share each stretch), so it does not distil there either
        # (`test_the_family_answer_is_stable_each_verdict_under_what_it_assumes`).
        for i in range(len(self.students)):
            if i not in sharing:
                planned(sorted(sharing + [i]), only=self.names[i])
        members = () if shared is None else shared.sharing
        for p in shared.plans if shared is not None else []:   # a student that distils: among those that do
            last[p.scenario.name] = (p, members, shared.reaches.get(p.scenario.name))
        plans = [last[name][0] for name in self.names]
        warnings = list(dict.fromkeys(
            self.notes + plan_warnings(self.laws, plans, sweep=False, given_teacher=True)))
        return FamilyPlans(law=self.laws.name, laws=self.laws, settings=self.settings, plans=plans,
                           planner=self.planner, targets=targets, teacher_model=self.model,
                           cache=None if shared is None else shared.cache, sharing=members,
                           assumed={name: last[name][1] for name in self.names},
                           reaches={name: last[name][2] for name in self.names if last[name][2] is not None},
                           rounds=tuple(rounds), warnings=warnings)
