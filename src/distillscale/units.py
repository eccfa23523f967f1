"""Parsing and formatting of the large quantities users type: parameters, tokens, FLOPs."""

from __future__ import annotations

import math
import re
from enum import Enum

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


class Quantity(str, Enum):
    """What a number counts, declared where the number is read (a flag, a setting, a column): it
    chooses the limits `check_quantity` applies. Values that count none of these (bytes, losses,
    fractions) declare None and get only the positive-and-finite check."""

    PARAMS = "params"
    TOKENS = "tokens"
    TOKENS_PER_PARAM = "tokens_per_param"
    FLOPS = "flops"


# The range of every quantity read from a flag, a config, a sweep spec or a run file, by what it
# counts (one place): parameters and tokens up to the planner's box (Busbridge et al. 2025 search
# [1e6, 1e17]; down to 1 here, for toy models), FLOPs up to what those make (6 N D < 1e36), tokens
# per parameter up to 1e7 (Chinchilla-optimal is ~20). A value outside is a typo or a unit slip.
QUANTITY_LIMITS = {Quantity.TOKENS_PER_PARAM: (1e-6, 1e7), Quantity.TOKENS: (1.0, 1e17),
                   Quantity.PARAMS: (1.0, 1e17), Quantity.FLOPS: (1.0, 1e36)}

_WORDS = {Quantity.TOKENS_PER_PARAM: "tokens per parameter", Quantity.TOKENS: "tokens",
          Quantity.PARAMS: "parameters", Quantity.FLOPS: "FLOPs"}


def check_quantity(value: float, what: str, *, kind: Quantity | None) -> float:
    """`value` if it is a positive finite number inside the limits of what it counts (`kind`, as
    declared by the caller; `what` only names it in the message); a one-line UserError naming
    `what` and the limits otherwise."""
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{what} must be a positive finite number, got {value!r}")
    if kind is not None:
        low, high = QUANTITY_LIMITS[Quantity(kind)]
        if not low <= value <= high:
            raise UserError(f"{what} = {value:g} is outside the range of {_WORDS[Quantity(kind)]} distillscale "
                            f"takes ({low:g} to {high:g}): check the number and its unit")
    return value


def check_parameter(value: float, param: str, *, kind: Quantity | None) -> float:
    """`check_quantity` for the argument `param` of a library call: a ParameterError naming it."""
    try:
        return check_quantity(value, param, kind=kind)
    except UserError as exc:
        raise ParameterError(param, "{}" + str(exc).removeprefix(param)) from None


def parse_quantity(text: str | float | int, what: str = "value", *, kind: Quantity | None) -> float:
    """Parse `1e21`, `546M`, `7.75B`, `2T`, `20k` into a positive float, inside `QUANTITY_LIMITS`
    of `kind` (what it counts: parameters, tokens, tokens per parameter or FLOPs; None for others).

    Raises UserError naming `what` when the text is malformed, not positive or out of range.
    """
    if isinstance(text, bool):
        raise UserError(f"{what} must be a number, got {text!r}")
    value = float(text) if isinstance(text, (int, float)) else parse_number(text, what)
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a positive finite number, got {text!r}")
    return check_quantity(value, what, kind=kind)


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
