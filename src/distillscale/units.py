"""Parsing and formatting of the large quantities users type: parameters, tokens, FLOPs, and sizes in
bytes (`parse_bytes`, `format_bytes`)."""

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
    if not match and re.fullmatch(r"\s*[^,\s]+(\s*,\s*[^,\s]+)+\s*", str(text)):   # a list, or 1,000
        raise UserError(f"{what} takes one number, got {text!r}: write it without commas (1000 or 1K), one "
                        "value a flag")
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


def format_count(value: float) -> str:
    """A token count for people: exact below a million where it is whole (64, 1,472, 50,000), else
    `format_quantity` (7.53M); never 6.4e-05M."""
    if abs(value) < 1e6 and float(value).is_integer():
        return f"{round(value):,}"
    return f"{value:.3g}" if abs(value) < 1e3 else format_quantity(value)


def format_quantity_pair(first: float, second: float, digits: int = 3) -> tuple[str, str]:
    """Two counts (`format_quantity`) with as many digits as it takes (up to 17) for unequal counts to
    print unequal: "999.5K is below the 1M", never "1M is below the 1M"."""
    for shown in range(digits, 18):
        a, b = format_quantity(first, shown), format_quantity(second, shown)
        if a != b or first == second:
            return a, b
    return a, b


def format_interval(low: float, high: float, digits: int = 3) -> tuple[str, str]:
    """The two ends of an interval with at least `digits` significant digits and as many more as it
    takes (up to 8) for them to differ: a narrow interval never prints as zero-width."""
    for shown in range(digits, 9):
        a, b = f"{low:.{shown}g}", f"{high:.{shown}g}"
        if a != b or low == high:
            return a, b
    return a, b


# Sizes in bytes (`--cache-storage`, `--max-bytes`): decimal (KB, MB, GB, TB, PB, as storage is sold;
# kB too) or binary (KiB, MiB, GiB, TiB, PiB); a prefix alone (20M, 500G) is decimal bytes; a plain
# number is bytes. A bare B is refused (elsewhere, in counts, B is billion), and so is a lowercase b
# (bits: 30Tb, 30tb, 5Mb).
_BYTE_PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY_PREFIXES = {"K": 2.0 ** 10, "M": 2.0 ** 20, "G": 2.0 ** 30, "T": 2.0 ** 40, "P": 2.0 ** 50}
_BYTES = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
BYTES_HELP = ("in bytes: 20MB, 200TB (decimal), 64GiB, 2TiB (binary), 20M (a prefix alone: decimal) or a "
              "plain number")


def parse_bytes(text: str | float | int, what: str = "size") -> float:
    """A positive size in bytes from `200TB`, `1.5PB`, `64GiB`, `20M`, `3e14` (see `BYTES_HELP`), or a
    one-line UserError naming `what` that says how to write it."""
    if isinstance(text, bool):
        raise UserError(f"{what} must be a size in bytes, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        found = _BYTES.match(str(text))
        if found is None:
            raise UserError(f"malformed {what} {text!r}: give a size {BYTES_HELP}")
        value = float(found.group(1)) * _byte_unit(found.group(2), str(text), what)
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a positive finite size in bytes, e.g. 200TB, got {text!r}")
    return value


def _byte_unit(unit: str, text: str, what: str) -> float:
    """What one `unit` of a size in bytes is worth: KB, kB, MB..., KiB..., a prefix alone, or nothing."""
    number = text.strip()[: len(text.strip()) - len(unit)].strip()
    if unit == "B":
        raise UserError(f"{what} {text!r} is ambiguous (B is billion in counts): write {number}GB for "
                        f"{number} billion bytes, or {number} for bytes")
    if unit.endswith("b"):
        prefix = unit[:1].upper() if len(unit) > 1 else "G"
        raise UserError(f"{what} {text!r}: a lowercase b means bits; give bytes, e.g. {number}{prefix}B (decimal) "
                        f"or {number}{prefix}iB (binary)")
    prefix = unit[:1].upper()
    if unit in ("", "k", *_BYTE_PREFIXES) or (unit[1:] == "B" and prefix in _BYTE_PREFIXES and unit[0] in prefix + "k"):
        return _BYTE_PREFIXES[prefix]
    if len(unit) == 3 and unit[1:] == "iB" and unit[0] in _BINARY_PREFIXES:
        return _BINARY_PREFIXES[unit[0]]
    raise UserError(f"malformed {what} {text!r}: give a size {BYTES_HELP}")


def format_bytes(value: float | None, digits: int = 3) -> str:
    """Bytes as storage is sold: 296TB, 1.2PB (decimal units), with `digits` significant digits."""
    if value is None:
        return "no limit"
    for suffix, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= scale:
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{value:.{digits}g} bytes"


def format_byte_pair(first: float, second: float, digits: int = 3) -> tuple[str, str]:
    """Two sizes in bytes with as many digits as it takes (up to 17) for unequal sizes to print unequal."""
    for shown in range(digits, 18):
        a, b = format_bytes(first, shown), format_bytes(second, shown)
        if a != b or first == second:
            return a, b
    return a, b
