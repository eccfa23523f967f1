"""How fast the planner solves: solves per second for each scenario (target: 100 solves <= 5 s).

Run: .venv/bin/python bench/planning/plan_speed.py
"""

import time

import numpy as np

from distillscale.laws import load_laws
from distillscale.planning.flops import SCENARIOS
from distillscale.planning.solver import DistillationPlanner


def main() -> None:
    planner = DistillationPlanner(load_laws("busbridge2025"))
    budgets = np.geomspace(1e19, 1e24, 25)
    students = (143e6, 546e6, 1.82e9, 7.75e9)
    planner.plan(546e6, 1e21, "teacher-inference")  # warm up imports and caches
    total_solves, total_seconds = 0, 0.0
    for name in SCENARIOS:
        start = time.perf_counter()
        solves = 0
        for student in students:
            for budget in budgets:
                planner.plan(student, budget, name)
                solves += 1
        seconds = time.perf_counter() - start
        total_solves, total_seconds = total_solves + solves, total_seconds + seconds
        print(f"{name:30s} {solves:4d} solves in {seconds:6.2f} s = {solves / seconds:7.1f} solves/s")
    print(f"{'all scenarios':30s} {total_solves:4d} solves in {total_seconds:6.2f} s = "
          f"{total_solves / total_seconds:7.1f} solves/s "
          f"(100 solves take {100 * total_seconds / total_solves:.2f} s; target <= 5 s)")


if __name__ == "__main__":
    main()
