"""The planner: FLOP accounting, compute-optimal distillation plans, teacher choice."""
