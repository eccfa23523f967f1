"""Learning-rate scaling and regime adaptation for large batches (Hoffer et al. 2017; docs/science.md §7).

Both functions compare a run at `batch_size` with a reference run at `reference_batch_size`, the
(small) batch size for which the learning rate and the schedule were tuned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from distillscale.errors import UserError
from distillscale.rules import LR_SCALING_EXPONENTS, lr_at_batch

LR_SCALING_RULES = tuple(LR_SCALING_EXPONENTS)
SCHEDULE_UNITS = ("epochs", "steps")


def _batch_size_ratio(batch_size: int, reference_batch_size: int) -> float:
    for name, value in (("batch_size", batch_size), ("reference_batch_size", reference_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    return batch_size / reference_batch_size


def scale_learning_rate(lr: float, batch_size: int, reference_batch_size: int,
                        rule: Literal["sqrt", "linear", "none"] = "sqrt") -> float:
    """The learning rate for `batch_size`, given `lr` tuned at `reference_batch_size`.

    "sqrt" multiplies by sqrt(B / B_ref), which keeps the covariance of the weight updates
    (Hoffer et al.); "linear" multiplies by B / B_ref (Goyal et al. 2017); "none" keeps `lr`: the one
    rule for a rate at another batch (`distillscale.rules.lr_at_batch`), whose exponent a
    hyperparameter law fits instead of naming.
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UserError(f"learning rate must be a positive finite number, got {lr!r}")
    if rule not in LR_SCALING_RULES:
        raise UserError(f"unknown learning-rate scaling rule {rule!r}: use one of "
                        f"{', '.join(LR_SCALING_RULES)}")
    _batch_size_ratio(batch_size, reference_batch_size)
    return lr_at_batch(lr, batch_size, reference_batch_size, LR_SCALING_EXPONENTS[rule])


@dataclass(frozen=True)
class AdaptedRegime:
    """A training schedule stretched so that it makes as many updates as the reference run.

    `total_steps` and `milestones` are in `unit` (epochs or optimizer steps); `factor` is
    B / B_ref, the number every length and milestone was multiplied by.
    """

    total_steps: float
    milestones: tuple[float, ...]
    factor: float
    unit: str


def adapt_regime(total_steps: float, milestones: Sequence[float], batch_size: int,
                 reference_batch_size: int,
                 unit: Literal["epochs", "steps"] = "steps") -> AdaptedRegime:
    """Regime adaptation: multiply the schedule length and every LR milestone by B / B_ref.

    Convention: `total_steps` and `milestones` describe the schedule you would run at
    `batch_size` without adaptation, i.e. with the reference run's data budget:
    - unit="epochs": epochs and milestone epochs, the same numbers as the reference run uses;
    - unit="steps": optimizer steps at `batch_size`, i.e. the reference run's steps * B_ref / B.
    In both cases the result makes as many optimizer updates as the reference run, at the price
    of B / B_ref times more samples processed. Epochs stay fractional (a partial last epoch);
    steps are rounded to whole steps.
    """
    if unit not in SCHEDULE_UNITS:
        raise UserError(f"unknown schedule unit {unit!r}: use epochs or steps")
    if not (isinstance(total_steps, (int, float)) and math.isfinite(total_steps)
            and total_steps > 0):
        raise UserError(f"the schedule length must be a positive number of {unit}, "
                        f"got {total_steps!r}")
    milestones = tuple(milestones)
    if any(not 0 < m < total_steps for m in milestones):
        raise UserError(f"LR milestones must lie strictly between 0 and the schedule length "
                        f"{total_steps} {unit}, got {list(milestones)}")
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise UserError(f"LR milestones must be strictly increasing, got {list(milestones)}")
    factor = _batch_size_ratio(batch_size, reference_batch_size)

    def stretch(length: float) -> float:
        return max(1, round(length * factor)) if unit == "steps" else length * factor

    return AdaptedRegime(total_steps=stretch(total_steps),
                         milestones=tuple(stretch(m) for m in milestones),
                         factor=factor, unit=unit)
