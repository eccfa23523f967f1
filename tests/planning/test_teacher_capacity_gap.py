"""`teacher --compute`: at a budget each candidate buys its own student tokens, so "past the capacity
gap" compares each with the optimal teacher L_T* at its own tokens, not at the best candidate's."""

import pytest

from distillscale.laws.lawset import load_laws
from distillscale.planning.plan import planner_for
from distillscale.planning.teacher import TeacherCandidate, rank_teachers, teacher_ladder


def test_past_the_capacity_gap_is_judged_at_each_candidates_own_student_tokens():
    planner, N = planner_for(load_laws("busbridge2025")), 546e6
    # a large teacher: its logits leave the student few tokens, where L_T* is stronger than at the best's
    big = TeacherCandidate("big", 1.9, 60e9, None, float(planner.flops(60e9)))
    candidates = [*teacher_ladder(planner, N), big]
    ranking = rank_teachers(planner, N, None, candidates, compute=1e21)
    own = [planner.optimal_teacher_loss(N, float(t))[0] for t in ranking.tokens_each]
    assert ranking.past_gap == [i for i, c in enumerate(candidates) if c.loss < own[i]]
    index = len(candidates) - 1
    assert ranking.best != index and own[index] < big.loss < ranking.optimal_teacher_loss
    assert index not in ranking.past_gap   # weaker than the optimum at its own tokens: not past the gap
    record = ranking.to_dict()["candidates"][index]
    assert not record["past_capacity_gap"] and record["optimal_teacher_loss_at_its_tokens"] == pytest.approx(own[index])
    # at fixed student tokens every candidate shares one L_T*
    fixed = rank_teachers(planner, N, 20e9, candidates)
    assert fixed.past_gap == [i for i, c in enumerate(candidates) if c.loss < fixed.optimal_teacher_loss]
