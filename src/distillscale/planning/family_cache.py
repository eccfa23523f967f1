"""How many of a logit cache's first tokens each student of a family reads (its reach, `planning.family`).

A student reading its budget's worth of tokens from a cache need not have the teacher run over all of
them: it can read the cache's first r tokens again and again (`distill --teacher-cache --unique-tokens
r`). Fewer teacher passes leave it more tokens of its own training; repeating r tokens costs it the loss
of repetition (`laws.repetition`, a distilled student's decay). Each student takes the reach that gives
it the lowest loss, given the others' (a shorter reach of another leaves it more of each stretch to
pay): its best reach, found in log r by a bounded scalar search, or all it reads where no reach does
better; every student's at once, again until none moves (from the longest, so the answer is the
greatest such balance and the same whatever the students' order).

A storage limit (--cache-storage) or a pool of unique tokens (--unique-tokens) allows no reach beyond
it: a student's reach is its best reach or the limit, the smaller. The limit only removes reaches, and
a shorter reach of one student only raises what the others pay, so no student's loss falls under a
limit (`tests/planning/test_family_cache.py` checks it over limits and families)."""

from __future__ import annotations

import math
from typing import Callable

from distillscale.planning.family import family_costs

# A student's loss reading `tokens` tokens of which the cache's first `reach`: (index, tokens, reach) -> nats/token.
Loss = Callable[[int, float, float], float]

ROUNDS = 50            # best reaches taken again at most this many times (a few are enough)
RELATIVE_STEP = 1e-6   # reaches that move less than this (relative) have settled


def best_reaches(budgets: list[float], student_flops: list[float], teacher_flops: float, training: float,
                 loss: Loss, limit: float, fewest: float) -> list[float]:
    """Each student's reach (inf: all it reads, once), within `limit` tokens (inf: none) and at least
    `fewest` (the fewest tokens the planner plans a run on), for the family's costs (`family_costs`'s
    arguments) and `loss`, each student's loss after repetition."""
    k = len(budgets)
    reaches = [math.inf] * k   # from the top: the same rounds as without a limit until the limit binds
    for _ in range(ROUNDS):
        new = [min(_best_reach(i, reaches, budgets, student_flops, teacher_flops, training, loss, fewest), limit)
               for i in range(k)]
        settled = all(a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= RELATIVE_STEP * b)
                      for a, b in zip(new, reaches))
        reaches = new
        if settled:
            break
    return reaches


def _best_reach(i: int, reaches: list[float], budgets: list[float], student_flops: list[float],
                teacher_flops: float, training: float, loss: Loss, fewest: float) -> float:
    """Student `i`'s reach of lowest loss, the others' reaches as they are (inf: reading all it reads).
    Its loss bends where its reach passes another's (a stretch read by one student fewer): the best reach
    is one of the others', or the best inside a stretch between two of them (a bounded scalar search in
    log r there), or all it reads."""
    from scipy.optimize import minimize_scalar

    def at(reach: float) -> float:
        costs = family_costs(budgets, student_flops, teacher_flops, "cached", training,
                             reaches[:i] + [reach] + reaches[i + 1:])
        return loss(i, costs.tokens[i], costs.reach[i])

    whole = family_costs(budgets, student_flops, teacher_flops, "cached", training,
                         reaches[:i] + [math.inf] + reaches[i + 1:]).tokens[i]
    if not whole > fewest:
        return math.inf
    bends = sorted({r for j, r in enumerate(reaches) if j != i and fewest < r < whole})
    edges = [fewest, *bends, whole]
    candidates = [math.inf, *bends]
    for low, high in zip(edges, edges[1:]):
        found = minimize_scalar(lambda x: at(math.exp(x)), bounds=(math.log(low), math.log(high)),
                                method="bounded", options={"xatol": 1e-6})
        candidates.append(math.exp(found.x))
    losses = [at(reach) for reach in candidates]
    return candidates[losses.index(min(losses))]   # the first of equals: all it reads, then a bend
