"""What a law's correction beyond its runs (`laws.crossladder`) did to a plan.

The planner searches every optimum under the law without its correction (`solver`'s `search_law`:
a factor that is 1 inside the runs and grows beyond them has a corner there, which an optimiser
would find), and states the plan's losses under the corrected law. So the plan the raw law gives
has the same sizes, tokens and teachers; only its losses differ. `CorrectionShift` holds both, model
by model, and the verdicts the raw law would give where they differ; a plan whose numbers the
correction did not change has none (`correction_shift` returns None), and prints no line about it.

    shift = correction_shift(plan, raw_plan, laws.bias_correction)
    shift.describe()   # "bias correction: <what it is>; it moved this plan's losses: student ..."
    shift.to_dict()    # plan --json's `bias_correction`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CorrectionShift:
    """The losses of a plan's models with the correction and without it (nats/token), by model
    name, only those it changed; `note`: the correction's line (`BiasCorrection.describe`);
    `raw_verdicts`: the verdicts of the raw law's plan where they differ from the plan's."""

    note: str
    losses: dict[str, tuple[float, float]]             # name -> (raw, corrected)
    raw_verdicts: dict[str, str] = field(default_factory=dict)

    def shift(self, name: str) -> float:
        """The relative change of `name`'s loss: corrected / raw - 1."""
        raw, corrected = self.losses[name]
        return corrected / raw - 1.0

    def describe(self) -> str:
        """One line: what the correction is, and how it moved each loss it moved (at the same plan)."""
        moved = "; ".join(f"{name} {raw:.4f} -> {corrected:.4f} ({self.shift(name):+.2%})"
                          for name, (raw, corrected) in self.losses.items())
        verdicts = ("; without it the verdict would be " + ", ".join(f"{name}: {v}" for name, v in self.raw_verdicts.items())
                    if self.raw_verdicts else "")
        return (f"{self.note}. It moved this plan's losses (nats/token, raw law -> corrected): {moved}; every size, "
                f"token count and teacher above is the raw law's optimum (searched without the correction){verdicts}")

    def to_dict(self) -> dict[str, Any]:
        return {"note": self.note, "optimum": "the raw law's (searched without the correction)",
                "losses": {name: {"raw": raw, "corrected": corrected, "shift": self.shift(name)}
                           for name, (raw, corrected) in self.losses.items()},
                "raw_verdicts": dict(self.raw_verdicts)}


def correction_shift(plan, raw_plan, correction) -> CorrectionShift | None:
    """The shift between `plan` (under the corrected laws) and `raw_plan` (the same settings under
    the laws without the correction: the same optimum, `solver.search_law`), or None when the
    correction changed none of its losses (every model inside the fitted runs, or no correction)."""
    if correction is None:
        return None
    corrected, raw = ({name: loss for name, (loss, _) in p.loss_predictions().items()} for p in (plan, raw_plan))
    losses = {name: (raw[name], loss) for name, loss in corrected.items() if name in raw and loss != raw[name]}
    if not losses:
        return None
    before, after = raw_plan.verdicts(), plan.verdicts()
    flipped = {name: verdict for name, verdict in before.items() if after.get(name) != verdict}
    return CorrectionShift(correction.describe(), losses, flipped)
