"""A student that does not start from random weights is outside Busbridge et al.'s law: its
students all start from scratch. A pruned start is counted as an effective-token multiplier m: the
pruned-then-distilled student on D_S tokens is taken to reach the loss a from-scratch distilled
student reaches on m D_S tokens (`D_eff = m D_S`). m is measured at micro scale, not fitted with the
law: every use of it is marked outside the law's fit and carries m's interval."""

from __future__ import annotations

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


# A pruned start, from this project's one measurement (docs/student_init.md, "Measured at micro
# scale"): a 107K-parameter teacher pruned to a 16.5K student, distilled on 100K tokens of Python's
# standard library, reached the from-scratch distilled student's final loss with 3.7x and 5.9x
# fewer tokens (gradient importance, seeds 0 and 1) and 3.6x (activation importance, seed 0).
# Value: their geometric mean, 4.3. Interval: their range (3.6-5.9) widened by a factor of 2 on
# each side, 1.8-12, because one corpus, one shape, one teacher and two seeds cannot say how the
# gain moves with scale, corpus or the teacher's training (Minitron reports up to 40x at billions of
# parameters; a teacher trained longer, or a deeper cut, could give less): the interval is a
# statement of how little is known, not a confidence level.
PRUNED_MICRO = StartMultiplier(
    "pruned", round((3.7 * 5.9 * 3.6) ** (1 / 3), 1), (1.8, 12.0),
    source="pruned from the teacher then distilled, measured at micro scale (16.5K-parameter student "
           "of a 107K teacher, 100K tokens, Python sources, 3 runs: 3.6x-5.9x; docs/student_init.md); "
           "interval = that range widened 2x each side")

MULTIPLIERS = {"pruned": PRUNED_MICRO}


def start_multiplier(student_init: str) -> StartMultiplier | None:
    """The multiplier of a start (None for `scratch`: the law's own students)."""
    return MULTIPLIERS.get(student_init)
