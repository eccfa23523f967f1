"""How much of the logit cache each student of a family reads (`planning.family_cache`): each student's
reach is its best given the others', the same whatever their order; and a storage limit only removes
options: under it no student's loss falls and no student joins the students that distil."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

import distillscale as ds
from distillscale.planning.family import family_costs
from distillscale.planning.family_cache import best_reaches

F_T = 2.0 * 8e9   # an 8B teacher's forward FLOPs per token
FEWEST = 1e6


def data_constrained_loss(sizes, r_star=37.0):
    """A Chinchilla loss of each student (E + A/N^0.34 + B/D'^0.28) at the tokens its repeated reach is
    worth fresh (Muennighoff et al.'s D'): the shape the plan prices, cheap to call."""
    def loss(i, tokens, reach):
        worth = tokens if reach >= tokens else reach * (1 + r_star * (1 - math.exp(-(tokens / reach - 1) / r_star)))
        return 1.7 + 400 / sizes[i] ** 0.34 + 410 / worth ** 0.28
    return loss


families = st.lists(st.tuples(st.sampled_from([1e8, 3e8, 1e9, 2e9, 4e9]), st.floats(0.5, 2.0)), min_size=1,
                    max_size=4)


@pytest.mark.fast
@settings(max_examples=30, deadline=None, derandomize=True)
@given(family=families, compute=st.sampled_from([1e20, 1e21, 1e22]), pool=st.sampled_from([math.inf, 3e9, 3e10]))
def test_each_reach_is_the_students_best_given_the_others_and_a_limit_only_removes_options(family, compute, pool):
    sizes = [size for size, _ in family]
    budgets = [compute * share / sum(s for _, s in family) for _, share in family]
    flops = [6.0 * size for size in sizes]
    loss = data_constrained_loss(sizes)

    def losses(reaches):
        costs = family_costs(budgets, flops, F_T, "cached", 0.0, reaches)
        return [loss(i, d, r) for i, (d, r) in enumerate(zip(costs.tokens, costs.reach))]

    free = best_reaches(budgets, flops, F_T, 0.0, loss, pool, FEWEST)
    at = losses(free)
    for i in range(len(sizes)):   # no student does better moving its own reach alone (within the pool)
        for other in (FEWEST * 3, 1e8, 1e9, 1e10, 1e11, pool):
            if other <= pool:
                assert losses(free[:i] + [other] + free[i + 1:])[i] >= at[i] * (1 - 1e-9)
    order = list(reversed(range(len(sizes))))   # the same whatever the students' order
    again = best_reaches([budgets[i] for i in order], [flops[i] for i in order], F_T, 0.0,
                         data_constrained_loss([sizes[i] for i in order]), pool, FEWEST)
    assert [again[order.index(i)] for i in range(len(sizes))] == pytest.approx(free, rel=1e-5)
    previous = at
    for limit in (3e11, 3e10, 3e9, 1e9, 1e8, 1e7):   # each limit removes options: no loss falls
        capped = best_reaches(budgets, flops, F_T, 0.0, loss, min(limit, pool), FEWEST)
        assert all(r <= limit * (1 + 1e-12) for r in capped)
        now = losses(capped)
        assert all(a >= b * (1 - 1e-9) for a, b in zip(now, previous)), (limit, now, previous)
        previous = now


def no_lower_loss(tighter, looser) -> bool:
    """A student's plan under a tighter limit against a looser one: its loss is no lower."""
    return tighter.student_loss >= looser.student_loss * (1 - 1e-9)


# The families of the plan's guide: before each student read its best reach, a limit of 300GB-1TB made the
# 1B distil where no limit did not, and every student's loss fell under a limit. Each student's re-read is
# priced by the data-limited law, as the plan prints it.
FAMILIES = [((100e6, 300e6, 1e9), 3e9, 100e9, 3e20), ((150e6, 500e6, 1.2e9), 3.5e9, 120e9, 3.5e20)]
LIMITS = (None, "3TB", "1TB", "500GB", "300GB", "100GB", "30GB")


@pytest.mark.fast
@pytest.mark.parametrize("students,teacher_params,teacher_tokens,compute", FAMILIES)
def test_no_storage_limit_lowers_a_loss_or_adds_a_distilling_student(students, teacher_params, teacher_tokens,
                                                                     compute):
    teacher = ds.ExistingTeacher(params=teacher_params, tokens=teacher_tokens)
    plans = [ds.plan("busbridge2025", compute=compute, students=students, teacher=teacher, cache_storage=limit)
             for limit in LIMITS]
    for looser, tighter in zip(plans, plans[1:]):
        assert set(tighter.sharing) <= set(looser.sharing)
        for a, b in zip(tighter.plans, looser.plans):
            assert no_lower_loss(a, b), (a.scenario.name, a.student_loss, b.student_loss)
            assert b.verdict == "distill" or a.verdict != "distill"
    if plans[0].sharing:   # re-reading pays by itself: the students that distil re-read without a limit
        assert plans[0].reaches and plans[0].cache.capped and plans[0].cache.limit is None


@pytest.mark.slow
@settings(max_examples=12, deadline=None, derandomize=True)
@given(students=st.lists(st.sampled_from([100e6, 300e6, 1e9, 2e9]), min_size=1, max_size=3, unique=True),
       teacher=st.sampled_from([(3e9, 100e9), (8e9, 1e12), (30e9, 5e12)]),
       compute=st.sampled_from([3e19, 3e20, 3e21]), pool=st.sampled_from([None, 1e10, 1e11]),
       trained=st.booleans())
def test_over_families_no_limit_lowers_a_loss_or_adds_a_distilling_student(students, teacher, compute, pool, trained):
    """The family's plans as printed (after repetition, their verdicts read off Δ's interval), over families of
    students, teachers, budgets, pools and a teacher trained for the family, at limits from above what the
    cache takes unlimited to a thousandth of it."""
    from distillscale.errors import ParameterError, UserError

    teacher = ds.ExistingTeacher(params=teacher[0], tokens=teacher[1])
    options = dict(compute=compute, students=tuple(sorted(students)), teacher=teacher, unique_tokens=pool,
                   teacher_trained=trained)
    try:
        free = ds.plan("busbridge2025", **options)
    except (ParameterError, UserError):
        return   # a family the planner refuses (a share that cannot pay its part of the teacher's training)
    needed = max(p.student_tokens for p in free.plans) * 296
    previous = free
    for fraction in (3.0, 1.0, 0.3, 0.1, 0.01, 0.001):
        try:
            capped = ds.plan("busbridge2025", cache_storage=needed * fraction, **options)
        except (ParameterError, UserError):
            break   # a limit below what a run is planned on
        for tighter in (capped,):
            for looser in (previous, free):
                assert set(tighter.sharing) <= set(looser.sharing)
                for a, b in zip(tighter.plans, looser.plans):
                    assert no_lower_loss(a, b), (fraction, a.scenario.name)
                    assert b.verdict == "distill" or a.verdict != "distill"
        previous = capped
