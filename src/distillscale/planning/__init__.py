"""The planner: what to distil, from which teacher, on how many tokens, within a FLOP budget.

- `flops`: forward FLOPs per token F(N) and the cost of a distillation in each scenario.
- `solver`: `DistillationPlanner` (compute-optimal plans, existing teachers, the supervised
  baseline and verdict, sweeps over student size, distil-or-pretrain maps).
- `teacher`: ranking candidate teachers and the linear law of capacity gap.
- `modes`: supervised, off-policy or on-policy distillation at a budget, and the break-even
  efficiency at which on-policy pays (`OnPolicy`, `compare_modes`).
- `plan`: `plan` and `plan_supervised`, the planner as one call returning a typed `Plan` (what
  `distillscale plan` and the planner page show): its options declared once in `options`
  (`PlanSettings`), its kinds in `plans`, the solver's records in `results`, a limited corpus's
  repetition in `repetition`; `render`: its tables and text.
- `plots`: figures of all of the above (matplotlib, imported lazily).

Submodules are imported directly (the solver needs SciPy, kept off the CLI's start-up path).
"""
