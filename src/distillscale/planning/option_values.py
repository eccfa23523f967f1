"""How `plan`'s flags read their values (`planning.options.PlanSettings`' validators): lists of fractions
and sizes, a family's students and shares, a cache's storage, a teacher model or its URL, one student's
size; each bad value one line naming the flag as typed."""

from __future__ import annotations

import math
import re
from pathlib import Path

from distillscale.errors import ParameterError, UserError
from distillscale.units import Quantity, parse_bytes, parse_quantity
from distillscale.urls import is_url


def _fractions(text: object) -> tuple[float, ...] | None:
    """--on-policy-fraction: one number or several, comma-separated."""
    if text is None or isinstance(text, tuple):
        return text
    if isinstance(text, (int, float)):
        return (float(text),)
    try:
        return tuple(float(part) for part in (text if isinstance(text, list) else str(text).split(",")))
    except ValueError:
        raise UserError(f"--on-policy-fraction must be numbers in (0, 1], comma-separated (e.g. 0.5 or "
                        f"0.25,0.5,1), got {text!r}") from None


def _sizes(text: object) -> tuple[float, ...] | None:
    """--teacher-mixture: sizes, comma-separated (1B,300M)."""
    if text is None or isinstance(text, tuple):
        return text
    parts = text if isinstance(text, list) else str(text).split(",")
    try:
        return tuple(float(parse_quantity(str(part).strip(), "--teacher-mixture", kind=Quantity.PARAMS)) for part in parts)
    except (ValueError, UserError):
        raise UserError(f"--teacher-mixture must be teacher sizes, comma-separated (e.g. 1B,300M), got {text!r}") from None


def _student_sizes(value: object) -> tuple[float, ...] | None:
    """--students: the family's student sizes, comma-separated (e.g. 500M,1B,3B)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    sizes = []
    for number, part in enumerate(parts, 1):
        try:
            sizes.append(float(parse_quantity(str(part).strip(), "--students", kind=Quantity.PARAMS)))
        except (ValueError, UserError):
            raise UserError(f"--students: the {_ordinal(number)} student's size {str(part).strip()!r} is not a size in "
                            f"parameters (e.g. 500M,1B,3B, each above 0), in {value!r}") from None
    sizes = tuple(sizes)
    if len(set(sizes)) != len(sizes):
        raise UserError(f"--students lists a size twice ({value!r}): give each student once")
    return sizes


def _ordinal(number: int) -> str:
    return f"{number}{'th' if 10 <= number % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th')}"


def _fractions_summing(value: object) -> tuple[float, ...] | None:
    """--shares: fractions of the family's compute, comma-separated, summing to 1."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    shares = []
    for number, part in enumerate(parts, 1):
        try:
            share = float(str(part).strip())
        except ValueError:
            share = math.nan
        if not 0 < share <= 1:   # a NaN too
            raise UserError(f"--shares: the {_ordinal(number)} student's share {str(part).strip()!r} is not a fraction "
                            f"in (0, 1] (e.g. 0.2,0.3,0.5, summing to 1), in {value!r}")
        shares.append(share)
    shares = tuple(shares)
    if abs(sum(shares) - 1.0) > 1e-6:
        raise UserError(f"--shares must be fractions of --compute in (0, 1] summing to 1, got {value!r} (sum "
                        f"{sum(shares):.6g}): give each student's share of the family's budget")
    return shares


def _storage(value: object) -> float | None:
    return None if value is None else parse_bytes(value, "--cache-storage")


def _model_or_url(value: object) -> object:
    """--teacher-model: a directory, or a server's URL kept as typed (a path would read `http://` as `http:/`).
    An empty or NUL-holding value was refused before, by the settings' path check."""
    return Path(value) if isinstance(value, str) and not is_url(value) else value


def _one_student(value):
    """--student-params is one student: a list of sizes is a family (--students), said so."""
    listed = isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value
                                                  and not re.fullmatch(r"\s*\d{1,3}(,\d{3})+\s*", value))
    if listed:   # (1,000 is a number written with a separator: the number's check words it)
        raise ParameterError(("student_params", "students"), "{} is one student's size, got {value!r}: for a family "
                             "of students sharing one teacher, give the sizes as {}", value=value)
    return value
