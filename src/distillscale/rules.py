"""Rules the engine and the planner both apply, each declared once here (the floor: no imports, so
the engine's config reads them without the laws or the planner):

- the warmup of a run (`warmup_steps`): a tenth of its optimizer steps, at most the paper's 2000
  (Busbridge et al.'s recipe). The engine's default when `train`/`distill` is given no warmup
  (`training.config.TrainConfig.resolved_warmup_steps`) and every plan recipe whose hyperparameter
  law carries no warmup of its own (`planning.recipes`): a run given only a recipe's lr and batch
  warms up as planned;
- the rate at another batch (`lr_at_batch`): lr x (B / B_ref)^exponent. The engine's `--lr-scaling`
  names its exponent (`LR_SCALING_EXPONENTS`: Hoffer et al.'s square root, Goyal et al.'s linear
  rule, none) from `--reference-batch-size` (`regime.schedules.scale_learning_rate`); a
  hyperparameter law fits its own, d ln lr* / d ln B, from its B* (`HyperparameterLaw.at_batch`);
- a sweep's batch (`batch_for_min_steps`): its batch_size in sequences, halved until a run takes at least
  min_steps optimizer steps. A sweep's ladder sizes each model's batch by it (`sweeps.spec_sections`), and
  a plan that follows the sweep's recipe sizes each planned run by it (`planning.sweep_recipes`).
"""

from __future__ import annotations

import math

WARMUP_FRACTION = 0.1
WARMUP_CAP = 2000
WARMUP_RULE = f"{WARMUP_FRACTION:.0%} of the steps, at most {WARMUP_CAP:,} (the engine's default)"

LR_SCALING_EXPONENTS = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}


def batch_for_min_steps(tokens: float, batch_size: int, tokens_per_sequence: int, min_steps: int | None) -> int:
    """The batch (sequences a step) of a run of `tokens`: `batch_size`, halved until the run takes at
    least `min_steps` optimizer steps (1 at the least); `batch_size` itself without `min_steps`."""
    if min_steps is None:
        return batch_size
    while batch_size > 1 and tokens / (batch_size * tokens_per_sequence) < min_steps:
        batch_size = max(1, batch_size // 2)
    return batch_size


def warmup_steps(steps: int) -> int:
    """WARMUP_RULE: the warmup of a run of `steps` optimizer steps."""
    return min(WARMUP_CAP, math.ceil(WARMUP_FRACTION * steps))


def lr_at_batch(lr: float, batch: float, reference_batch: float, exponent: float) -> float:
    """The rate at `batch` of a rate `lr` set for `reference_batch`: lr x (batch / reference)^exponent."""
    ratio = batch / reference_batch
    return lr * (math.sqrt(ratio) if exponent == 0.5 else ratio ** exponent)   # sqrt: correctly rounded
