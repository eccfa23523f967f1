"""The Python API's argument check: every public function (`distillscale.X`) is wrapped once, in
`lazy.lazy_exports`, and each public constructor of an exported class (`Sweep.open`,
`LawSet.from_dict`) is declared `@classmethod` over `@checked` where it is defined, so that a wrong
type is a one-line `ParameterError` naming the parameter instead of a TypeError or AttributeError
from deep inside.

The check reads the function's annotations and is deliberately loose: numbers may be any real
number or numeric text (the functions parse "1e21" themselves), whole numbers any integer, and a
record argument (a config, an ExistingTeacher) may be given as a dict of its fields. Annotations it
does not know (arrays, tables, callables) are left to the function.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import os
import typing
from collections.abc import Mapping
from types import NoneType, UnionType
from typing import Any, Callable, Union, get_args, get_origin

from distillscale.errors import ParameterError, UserError

_UNCHECKED = object()  # an annotation the check leaves to the function


def checked(function: Callable) -> Callable:
    """`function` with its arguments checked against its annotations (see the module docstring)."""
    signature = inspect.signature(function)
    hints: dict[str, Any] | None = None  # resolved on the first call: a method's class exists by then

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        nonlocal hints
        if hints is None:
            hints = _hints(function)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing or unknown argument
            raise UserError(f"{function.__name__}(): {exc}") from None
        for name, value in list(bound.arguments.items()):
            if name in hints and signature.parameters[name].kind not in (
                    inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                bound.arguments[name] = check_argument(name, value, hints[name])
        return function(*bound.args, **bound.kwargs)

    wrapper.__wrapped_unchecked__ = function
    return wrapper


def _hints(function: Callable) -> dict[str, Any]:
    """The annotations of `function`'s parameters, resolved; none if one cannot be resolved."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 (an annotation that cannot be resolved: check nothing)
        return {}
    hints.pop("return", None)
    return hints


def check_argument(name: str, value: Any, hint: Any) -> Any:
    """`value` as the parameter `name` takes it (a dict of a record's fields made the record), or
    ParameterError saying what it should be."""
    found = _check(name, value, hint)
    if found is _UNCHECKED:
        return value
    ok, converted = found
    if ok:
        return converted
    raise ParameterError(name, "{} must be " + _describe(hint) + ", got {value!r} ({kind})", value=_short(value),
                         kind=type(value).__name__)


def _check(name: str, value: Any, hint: Any):
    """(True, value) if `value` fits `hint`, (False, None) if not, _UNCHECKED for unknown hints."""
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        options = get_args(hint)
        if value is None:
            return (NoneType in options, None)
        results = [_check(name, value, option) for option in options if option is not NoneType]
        if any(result is _UNCHECKED for result in results):
            return _UNCHECKED
        return next((result for result in results if result[0]), (False, None))
    if hint is NoneType:
        return (value is None, None)
    if hint is bool:
        return (isinstance(value, bool) or type(value).__name__ == "bool_", value)
    if hint is float:
        if isinstance(value, str):
            return (True, value)  # parsed (with its own message) by the function
        return (isinstance(value, numbers.Real) and not isinstance(value, bool), value)
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return (True, int(value))
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            return (True, int(value))
        return (False, None)
    if hint is str:
        return (isinstance(value, str), value)
    if hint is dict or origin is dict:
        return (isinstance(value, Mapping), value)
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return (isinstance(value, (str, os.PathLike)), value)
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or hasattr(hint, "model_validate")):
        if isinstance(value, hint) or isinstance(getattr(value, "law", None), hint):  # a LawFit for its law
            return (True, value)
        if isinstance(value, Mapping):
            return (True, _record(name, hint, value))
        return (False, None)
    return _UNCHECKED


def _record(name: str, record_type: type, fields: Mapping) -> Any:
    """A record (a pydantic model or a dataclass) from a dict of its fields."""
    if hasattr(record_type, "model_validate"):
        try:
            return record_type(**fields)
        except ParameterError as exc:  # a Settings group's own one-line message
            raise exc.renamed({param: f"{name}.{param}" for param in exc.params}) from None
    known = {field.name for field in dataclasses.fields(record_type)}
    unknown = [key for key in fields if key not in known]
    if unknown:
        raise ParameterError(f"{name}.{unknown[0]}", "{} is not a field of " + record_type.__name__
                             + ": its fields are " + ", ".join(sorted(known)))
    try:
        return record_type(**fields)
    except TypeError as exc:
        raise ParameterError(name, "{} " + f"({record_type.__name__}): {{message}}", message=str(exc)) from None


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        options = [option for option in get_args(hint) if option is not NoneType]
        text = " or ".join(dict.fromkeys(_describe(option) for option in options))
        return text + (" or None" if NoneType in get_args(hint) else "")
    if hint is dict or origin is dict:
        return "a dict"
    return {bool: "True or False", float: "a number", int: "a whole number", str: "a string"}.get(
        hint, "a path" if isinstance(hint, type) and issubclass(hint, os.PathLike) else
        _article(getattr(hint, "__name__", str(hint))) + " (or a dict of its fields)")


def _article(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else _Shown(text[:57] + "...")


class _Shown(str):
    def __repr__(self) -> str:
        return str(self)
