"""What a sweep's compute bought: the FLOPs its runs spent, against what the same runs would have cost
trained separately from scratch.

A run's result.json records the FLOPs of the whole run (`flops`, what the laws count); a WSD fork
also records how many of them its parent spent before the fork's cooldown (`fork.shared_flops`), so
the fork itself spent the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class SweepCompute:
    """FLOPs of the completed runs: `spent` by the sweep, and `separate`, as runs from scratch."""

    spent: float
    separate: float
    forks: int  # completed runs that were forks

    @property
    def saved_fraction(self) -> float:
        return 1 - self.spent / self.separate if self.separate else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"flops_spent": self.spent, "flops_separate": self.separate, "forks": self.forks,
                "saved_fraction": self.saved_fraction}


def sweep_compute(results: Iterable[dict[str, Any] | None]) -> SweepCompute:
    """Sum over the result.json contents of completed runs (None and unfinished ones are skipped)."""
    spent = separate = 0.0
    forks = 0
    for result in results:
        if not result or result.get("status") != "completed" or result.get("flops") is None:
            continue
        shared = (result.get("fork") or {}).get("shared_flops", 0.0)
        separate += result["flops"]
        spent += result["flops"] - shared
        forks += shared > 0
    return SweepCompute(spent=spent, separate=separate, forks=forks)
