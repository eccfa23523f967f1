"""Parsing and formatting of the large quantities users type: parameters, tokens, FLOPs."""

from __future__ import annotations

import math
import re

from distillscale.errors import ParameterError, UserError

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


# The range of every quantity read from a flag, a config, a sweep spec or a run file, by what it
# counts (one place): parameters and tokens up to the planner's box (Busbridge et al. 2025 search
# [1e6, 1e17]; down to 1 here, for toy models), FLOPs up to what those make (6 N D < 1e36), tokens
# per parameter up to 1e7 (Chinchilla-optimal is ~20). A value outside is a typo or a unit slip.
QUANTITY_LIMITS = {"tokens_per_param": (1e-6, 1e7), "tokens": (1.0, 1e17), "params": (1.0, 1e17),
                   "flops": (1.0, 1e36)}
_KINDS = (("tokens_per_param", "tokens_per_param"), ("token", "tokens"), ("param", "params"),
          ("flop", "flops"), ("compute", "flops"), ("budget", "flops"))

_WORDS = {"tokens_per_param": "tokens per parameter", "tokens": "tokens", "params": "parameters",
          "flops": "FLOPs"}


def quantity_kind(what: str) -> str | None:
    """Which of `QUANTITY_LIMITS` the flag, setting or column `what` counts (`--student-tokens`:
    tokens), or None for other values (bytes, losses)."""
    name = what.lower().lstrip("-").replace("-", "_")
    return next((kind for word, kind in _KINDS if word in name), None)


def check_quantity(value: float, what: str) -> float:
    """`value` if it is a positive finite number inside the limits of what `what` counts; a one-line
    UserError naming `what` and the limits otherwise."""
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{what} must be a positive finite number, got {value!r}")
    kind = quantity_kind(what)
    if kind is not None:
        low, high = QUANTITY_LIMITS[kind]
        if not low <= value <= high:
            raise UserError(f"{what} = {value:g} is outside the range of {_WORDS[kind]} distillscale "
                            f"takes ({low:g} to {high:g}): check the number and its unit")
    return value


def check_parameter(value: float, param: str) -> float:
    """`check_quantity` for the argument `param` of a library call: a ParameterError naming it."""
    try:
        return check_quantity(value, param)
    except UserError as exc:
        raise ParameterError(param, "{}" + str(exc).removeprefix(param)) from None


def parse_quantity(text: str | float | int, what: str = "value") -> float:
    """Parse `1e21`, `546M`, `7.75B`, `2T`, `20k` into a positive float, inside `QUANTITY_LIMITS`
    when `what` names parameters, tokens, tokens per parameter or FLOPs.

    Raises UserError naming `what` when the text is malformed, not positive or out of range.
    """
    if isinstance(text, bool):
        raise UserError(f"{what} must be a number, got {text!r}")
    value = float(text) if isinstance(text, (int, float)) else parse_number(text, what)
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a positive finite number, got {text!r}")
    return check_quantity(value, what)


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
