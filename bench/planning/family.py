"""A family of students from one teacher (`planning.family`, `plan --students`): the family plan for
K = 1..8 students, each on its own budget, with the teacher's logits cached (its forward passes shared
by the students that read each stretch of the cache) against each student running the teacher itself
(online): with every student sharing, each pays less of the teacher as K grows, trains on more tokens and
distils better against itself trained alone; the family's answer (`planning.family_plan`) keeps only the
students that distil sharing with each other, so a student that distils only because students that do not
distil share its cost is not counted.

    python bench/planning/family.py [--law busbridge2025] [--budget 2e21] [--teacher 8B] [--teacher-tokens 2T]

The students join in the order of SIZES (the first K of them); every student has the same budget, so a
student's plan changes with K only through its share of the teacher. Seconds; nothing trains.
"""

from __future__ import annotations

import argparse

import distillscale as ds
from distillscale.planning.family import format_bytes
from distillscale.units import format_quantity, parse_quantity

SIZES = (1e9, 3e9, 500e6, 2e9, 750e6, 4e9, 1.5e9, 300e6)


def family(law: str, k: int, budget: float, teacher: ds.ExistingTeacher, targets: str):
    return ds.plan(law, compute=budget * k, students=SIZES[:k], teacher=teacher, targets=targets)


def counts(verdicts) -> str:
    verdicts = list(verdicts)
    return "/".join(str(sum(v == name for v in verdicts)) for name in ("distill", "too close to call", "pretrain"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--law", default="busbridge2025")
    parser.add_argument("--budget", default="3e20", help="each student's budget (FLOPs)")
    parser.add_argument("--teacher", default="8B")
    parser.add_argument("--teacher-tokens", default="2T")
    args = parser.parse_args(argv)
    budget = parse_quantity(args.budget, "--budget", kind=None)
    teacher = ds.ExistingTeacher(params=parse_quantity(args.teacher, "--teacher", kind=None),
                                 tokens=parse_quantity(args.teacher_tokens, "--teacher-tokens", kind=None))
    print(f"K students from one {args.teacher} teacher ({args.teacher_tokens} tokens), {budget:.3g} FLOPs each,")
    print(f"law {args.law}; they join in order {', '.join(map(format_quantity, SIZES))}")
    print("fwd: teacher forward FLOPs per student as answered; verdicts (distill/too close/pretrain): with every "
          "student sharing the cache, and as answered; the answer: the students that distil, sharing it")
    print(f"{'K':>2} {'fwd cached':>10} {'fwd online':>10} {'cache':>9} {'all share':>9} {'cached':>7} {'online':>7}  answer")
    for k in range(1, len(SIZES) + 1):
        cached = family(args.law, k, budget, teacher, "cached")
        online = cached.other
        cache = "-" if cached.cache is None else format_bytes(cached.cache.bytes)
        print(f"{k:>2} {cached.totals()['teacher_forward'] / k:>10.3g} {online.totals()['teacher_forward'] / k:>10.3g} "
              f"{cache:>9} {counts(cached.rounds[0].verdicts.values()):>9} {counts(p.verdict for p in cached.plans):>7} "
              f"{counts(p.verdict for p in online.plans):>7}  {cached.verdict}")
    three = family(args.law, 3, budget, teacher, "cached")
    print("K = 3, the family's compute by part as answered:\n  " + ", ".join(f"{part.replace('_', ' ')} {flops:.3g}"
                                                                 for part, flops in three.totals().items()))


if __name__ == "__main__":
    main()
