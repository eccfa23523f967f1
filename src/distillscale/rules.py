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
  hyperparameter law fits its own, d ln lr* / d ln B, from its B* (`HyperparameterLaw.at_batch`).
"""

from __future__ import annotations

import math

WARMUP_FRACTION = 0.1
WARMUP_CAP = 2000
WARMUP_RULE = f"{WARMUP_FRACTION:.0%} of the steps, at most {WARMUP_CAP:,} (the engine's default)"

LR_SCALING_EXPONENTS = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}


def warmup_steps(steps: int) -> int:
    """WARMUP_RULE: the warmup of a run of `steps` optimizer steps."""
    return min(WARMUP_CAP, math.ceil(WARMUP_FRACTION * steps))


def lr_at_batch(lr: float, batch: float, reference_batch: float, exponent: float) -> float:
    """The rate at `batch` of a rate `lr` set for `reference_batch`: lr x (batch / reference)^exponent."""
    ratio = batch / reference_batch
    return lr * (math.sqrt(ratio) if exponent == 0.5 else ratio ** exponent)   # sqrt: correctly rounded
