"""Parsing and formatting of the large quantities users type: parameters, tokens, FLOPs."""

from __future__ import annotations

import math
import re

from distillscale.errors import UserError

_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
_QUANTITY = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKMBGTP]?)\s*$")


def parse_number(text: str, what: str = "value") -> float:
    """Parse a number with an optional sign and size suffix: `-1`, `0`, `2.5`, `546M`, `1e21`.

    Raises UserError naming `what` when the text is malformed.
    """
    match = _QUANTITY.match(str(text))
    if not match:
        raise UserError(f"malformed {what} {text!r}: use a number such as 1e21, 546M, 7.75B or 2T")
    return float(match.group(1)) * _SUFFIXES[match.group(2).upper()]


def parse_quantity(text: str | float | int, what: str = "value") -> float:
    """Parse `1e21`, `546M`, `7.75B`, `2T`, `20k` into a positive float.

    Raises UserError naming `what` when the text is malformed or not positive.
    """
    value = float(text) if isinstance(text, (int, float)) else parse_number(text, what)
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a positive finite number, got {text!r}")
    return value


def format_quantity(value: float, digits: int = 3) -> str:
    """Format a count with an SI-like suffix: 5.46e8 -> '546M', 7.75e9 -> '7.75B'."""
    if not math.isfinite(value):
        return str(value)
    # Round first, so that 999999.9 shows as 1M rather than 1e+03K.
    rounded = float(f"{value:.{digits}g}")
    for suffix, scale in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(rounded) >= scale:
            return f"{rounded / scale:.{digits}g}{suffix}"
    return f"{rounded:.{digits}g}"


def format_interval(low: float, high: float, digits: int = 3) -> tuple[str, str]:
    """The two ends of an interval with at least `digits` significant digits and as many more as it
    takes (up to 8) for them to differ: a narrow interval never prints as zero-width."""
    for shown in range(digits, 9):
        a, b = f"{low:.{shown}g}", f"{high:.{shown}g}"
        if a != b or low == high:
            return a, b
    return a, b
