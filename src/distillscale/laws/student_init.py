"""A student that does not start from random weights is outside Busbridge et al.'s law: its
students all start from scratch. A pruned start is counted as an effective-token multiplier m: the
pruned-then-distilled student on D_S tokens is taken to reach the loss a from-scratch distilled
student reaches on m D_S tokens (`D_eff = m D_S`). m is measured at micro scale, not fitted with the
law: every use of it is marked outside the law's fit and carries m's interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

STUDENT_INITS = ("scratch", "pruned")


@dataclass(frozen=True)
class StartMultiplier:
    """Tokens a from-scratch student needs per token of a student that starts from `start`
    (value, and the interval that says how little backs it), with where it comes from."""

    start: str
    value: float
    interval: tuple[float, float]
    source: str
    note: str = "measured at micro scale, outside the law's fit"

    def __post_init__(self) -> None:
        low, high = self.interval
        if not 0 < low <= self.value <= high:
            raise ValueError("a start multiplier needs 0 < low <= value <= high")

    def to_dict(self) -> dict:
        return {"student_init": self.start, "token_multiplier": self.value,
                "token_multiplier_interval": list(self.interval), "source": self.source, "note": self.note}


# A pruned start, from this project's measurements (docs/student_init.md, "Measured at micro scale";
# bench/distillation/pruned_start.py): a 107K-parameter teacher trained on 2M tokens (19 tokens per parameter),
# pruned to a 16.5K student by gradient importance, distilled on budgets of 5K-33K tokens, against
# the from-scratch distilled student on 100K tokens (3 seeds each). A complete pruned run reached the
# from-scratch student's final loss with 8.3x (Python), 7.0x (C headers), 12.9x and 10.5x (two
# English corpora) fewer tokens. Value: their geometric mean, 9.4. Interval 2.6-26: its low end is
# the least gain measured with any teacher (2.6x-4.3x with a teacher trained on only 2 tokens per
# parameter: a weak teacher leaves little to keep), its high end twice the largest (Minitron reports
# up to 40x at billions of parameters). Micro scale, one shape and one teacher size cannot say how
# the gain moves with scale or the depth of the cut: the interval is a statement of how little is
# known, not a confidence level.
PRUNED_MEASURED = (8.3, 7.0, 12.9, 10.5)
PRUNED_MICRO = StartMultiplier(
    "pruned", round(math.prod(PRUNED_MEASURED) ** (1 / len(PRUNED_MEASURED)), 1), (2.6, 26.0),
    source="pruned from the teacher then distilled, measured at micro scale (16.5K-parameter student "
           "of a 107K teacher trained on 19 tokens/param, 3 seeds, 4 corpora: 7.0x-12.9x; "
           "2.6x-4.3x with a teacher of 2 tokens/param; docs/student_init.md, bench/distillation/pruned_start.py)")

MULTIPLIERS = {"pruned": PRUNED_MICRO}


def start_multiplier(student_init: str) -> StartMultiplier | None:
    """The multiplier of a start (None for `scratch`: the law's own students)."""
    return MULTIPLIERS.get(student_init)
