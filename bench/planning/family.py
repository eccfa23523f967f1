"""A family of students from one teacher (`planning.family`, `plan --students`): the family plan for
K = 1..8 students, each on its own budget, with the teacher's logits cached (its forward passes shared
by the students that read each stretch of the cache) against each student running the teacher itself
(online), and the verdicts that flip as K grows: each student pays less of the teacher, trains on more
tokens, and distils better against itself trained alone.

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


def counts(plan) -> str:
    verdicts = [p.verdict for p in plan.plans]
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
    print("fwd: teacher forward FLOPs per student; verdicts: distill/too close/pretrain")
    print(f"{'K':>2} {'fwd cached':>10} {'fwd online':>10} {'cache':>9} {'1B: D_S':>8} {'Δ cached':>9} "
          f"{'online':>8} {'cached':>7} {'online':>7}")
    flips = []
    for k in range(1, len(SIZES) + 1):
        cached = family(args.law, k, budget, teacher, "cached")
        online = cached.other
        print(f"{k:>2} {cached.totals()['teacher_forward'] / k:>10.3g} {online.totals()['teacher_forward'] / k:>10.3g} "
              f"{format_bytes(cached.cache.bytes):>9} {format_quantity(cached.plans[0].student_tokens):>8} "
              f"{cached.plans[0].difference.value:>+9.4f} {online.plans[0].difference.value:>+8.4f} "
              f"{counts(cached):>7} {counts(online):>7}")
        flips += [f"K={k}: {format_quantity(c.student_params)}, {o.verdict} -> {c.verdict}"
                  for c, o in zip(cached.plans, online.plans) if c.verdict != o.verdict]
    print("verdicts that flip when the students share a cache (online -> cached):")
    print("\n".join(f"  {flip}" for flip in flips) if flips else "  none")
    three = family(args.law, 3, budget, teacher, "cached")
    print("K = 3, the family's compute by part:\n  " + ", ".join(f"{part.replace('_', ' ')} {flops:.3g}"
                                                                 for part, flops in three.totals().items()))


if __name__ == "__main__":
    main()
