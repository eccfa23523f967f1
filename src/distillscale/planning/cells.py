"""A plan's numbers in a table's cell: a loss's interval, Delta's interval (every plan's table prints them so)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distillscale.laws.difference import LossDifference


def delta_cell(difference: LossDifference) -> str:
    """Delta's interval in a cell: both ends signed, every digit `describe` prints."""
    return f"{difference.low:+.4f}–{difference.high:+.4f}" if difference.has_interval else "-"


def interval_cell(prediction) -> str:
    if prediction is None or not prediction.has_interval:
        return "-"
    return f"{prediction.low:.3f}–{prediction.high:.3f}"
