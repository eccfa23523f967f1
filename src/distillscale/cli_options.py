"""The one glue between a command's settings class and typer.

A command's settings are a validated pydantic class (`CommandSettings`); each field is one flag (or
argument), declared once with `option(...)` / `argument(...)`: its default, its help text, its
limits. `command(SettingsClass)` gives a function `def run(settings: SettingsClass)` the typer
signature generated from the class, so `--help`, the defaults and the checks come from the same
declaration as the Python and the planner page's validation; `to_argv` writes settings back as the
command line that gives them.

    class PredictSettings(CommandSettings):
        command_path: ClassVar[str] = "predict supervised"
        params: Annotated[float, quantity("--params", kind=Quantity.PARAMS)] = option(..., help="...")

    @command(PredictSettings)
    def predict_command(settings: PredictSettings) -> None: ...

Values given on the command line are parsed by the field's own validators (a quantity such as
`546M` arrives as text); a validator's `UserError` (which names the flag) is raised as it is.
"""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import typer
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from distillscale.errors import ParameterError, UserError
from distillscale.settings import Settings, describe_error, sections, takes_paths

TSettings = TypeVar("TSettings", bound="CommandSettings")


class PathText(str):
    """A path argument as typed: typer hands it over whole, so that a URL given for a path reaches the
    settings' check as typed (not as http:/host), and --help shows it as <path>."""


PathText.__name__ = "path"  # what typer's --help shows


def is_path_parameter(param: Any) -> bool:
    """Whether a parameter of the built command tree takes a path: a PathText argument, a PATH option."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation is PathText or getattr(param, "metavar", None) == "PATH"


class CommandSettings(Settings):
    """One command's settings: each field a flag (its name `--field-name` unless `option(flag=...)`
    says otherwise) or an argument. `command_path` names the command (`"fit supervised"`)."""

    # inf and nan reach the library, which words what is wrong with them for each setting
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=True)

    command_path: ClassVar[str]
    always_written: ClassVar[frozenset[str]] = frozenset()  # by to_argv, even at their defaults

    @classmethod
    def from_flags(cls: type[TSettings], flags: dict[str, Any]) -> TSettings:
        """The settings from a command line's values (by field name); a bad one raises UserError in
        one line naming its flag."""
        try:
            return cls.model_validate(flags)
        except ValidationError as exc:
            first = min(exc.errors(), key=lambda e: e["type"] == "missing")   # a value given wrong first
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, ParameterError):  # a validator's own message about its setting: its flag
                raise UserError(cause.for_cli({name: flag if flag.isupper() else "--" + flag
                                               for name, flag in _flag_names(cls).items()})) from None
            if isinstance(cause, UserError):  # a validator's own message, which names the flag
                raise cause from None
            raise UserError(describe_error(exc, flags, flag_names=_flag_names(cls))) from None


def option(default: Any = ..., *, help: str, flag: str | None = None, min: float | None = None,
           max: float | None = None, above: float | None = None, below: float | None = None) -> Any:
    """A flag: its default (... for a required one), help text, name (`--field-name` by default)
    and limits, inclusive (`min`, `max`) or not (`above`, `below`) (checked from Python and the page
    too, by pydantic; nan is within none)."""
    return Field(default, description=help, ge=min, le=max, gt=above, lt=below, validate_default=True,
                 json_schema_extra={"flag": flag} if flag else None)


def argument(*, help: str) -> Any:
    """A required positional argument."""
    return Field(..., description=help, json_schema_extra={"argument": True})


def command(settings_class: type[TSettings]) -> Callable[[Callable[[TSettings], Any]], Callable[..., Any]]:
    """Turn `run(settings)` into a typer command whose flags are the fields of `settings_class`."""
    def wrap(run: Callable[[TSettings], Any]) -> Callable[..., Any]:
        @functools.wraps(run)
        def typer_command(**flags: Any) -> Any:
            return run(settings_class.from_flags(flags))

        parameters = [_parameter(name, field) for name, field in settings_class.model_fields.items()]
        typer_command.__signature__ = inspect.Signature(parameters)  # typer reads these, not run's
        typer_command.__annotations__ = {p.name: p.annotation for p in parameters}
        del typer_command.__wrapped__
        return typer_command
    return wrap


def to_argv(settings: CommandSettings) -> list[str]:
    """The command line (after `distillscale` and the command's name) that gives `settings`: the
    arguments, then each flag whose value is not its default."""
    args: list[str] = []
    flags: list[str] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if _extra(field, "argument"):
            args.append(_text(value))
            continue
        if field.default is not PydanticUndefined and value == _default(field) \
                and name not in settings.always_written:
            continue
        flag = flag_name(name, field)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, list) and _flag_type(field) is not str:  # a repeatable flag
            for item in value:
                flags += [flag, _text(item)]
        elif value is not None:
            flags += [flag, _text(value)]
    return args + flags


def command_line(settings: CommandSettings) -> str:
    """`distillscale <command> ...` for `settings`, quoted for a POSIX shell."""
    return shlex.join(["distillscale", *type(settings).command_path.split(), *to_argv(settings)])


def version_option(callback: Callable[[bool], None]) -> Any:
    """`distillscale --version`, which `callback` answers before any command runs."""
    return typer.Option(False, "--version", callback=callback, is_eager=True, help="print the version and exit")


# --- flags of a config class (train, distill, cache-logits, data prepare) ---------------------------

CONFIG_HELP = ("TOML file of settings, as top-level keys or in tables named like the panels below (data, "
               "model, budget, ...); flags given here override it")


# `distill --generations`: a command's own option beside its config's (`with_config_options`).
GENERATIONS_HELP = ("K >= 1: a self-distillation chain (born-again networks): generation 1 distilled from "
                    "--teacher, each next one from the one before, all with these settings and the half of the "
                    "corpus generation 1 reads (with --split teacher and --unique-tokens, the teacher's pool); "
                    "into OUT/generation-1 .. OUT/generation-K, OUT a directory it makes; run again, it skips the "
                    "finished generations and resumes an interrupted one (default: one student, into OUT itself)")


def with_config_options(command: Callable, config_class: type[BaseModel], *, json_help: str | None = None,
                        leave_out: frozenset[str] = frozenset(), flag_names: dict[str, str] | None = None,
                        arguments: dict[str, str] | None = None) -> Callable:
    """Give `command` (whose settings arrive in `**settings`, by field name) one option per field of
    `config_class`, except those it declares itself and those in `leave_out`, grouped in --help by
    the settings group that declares each. `flag_names` renames flags (`{"path": "data"}`: --data).
    Its own parameters `config`, `as_json` and `generations` become --config (a TOML file of settings),
    --json (`json_help` says what it prints) and --generations (`GENERATIONS_HELP`). `arguments` ({parameter: help}) makes those of its own
    parameters positional arguments.

    Every generated option defaults to None ("not given"), so a TOML file given to --config and the
    config's own defaults apply underneath; `settings.load_config` validates the lot."""
    own_options = {"config": typer.Option(None, "--config", help=CONFIG_HELP),
                   "as_json": typer.Option(False, "--json", help=json_help),
                   "generations": typer.Option(None, "--generations", help=GENERATIONS_HELP)}
    own_options |= {name: typer.Argument(..., help=text) for name, text in (arguments or {}).items()}
    hints = get_type_hints(command)
    own = [_as_text(p.replace(default=own_options.get(p.name, p.default)), hints.get(p.name))
           for p in inspect.signature(command).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in own} | set(leave_out)
    groups = sections(config_class)
    generated = [_config_option(name, (flag_names or {}).get(name, name), field, getattr(groups.get(name), "title", None))
                 for name, field in config_class.model_fields.items() if name not in taken]
    command.__signature__ = inspect.Signature(own + generated)
    command.__annotations__ = {p.name: p.annotation for p in own + generated}  # typer reads these too
    return command


def _as_text(parameter: inspect.Parameter, annotation: Any) -> inspect.Parameter:
    """A command's own path parameter (--config, prune's TEACHER) as typed text, as the settings'
    paths are (`_flag_type`)."""
    if not takes_paths(annotation):
        return parameter
    declared = parameter.default
    if isinstance(declared, typer.models.ArgumentInfo):
        declared.parser = PathText
        return parameter.replace(annotation=PathText)
    declared.metavar = "PATH"
    return parameter.replace(annotation=str | None if NoneType in get_args(annotation) else str)


def _config_option(name: str, flag_name: str, field: FieldInfo, panel: str | None) -> inspect.Parameter:
    flag = "--" + flag_name.replace("_", "-")
    kind = _flag_type(field)
    declaration = (f"{flag}/--no-{flag_name.replace('_', '-')}",) if kind is bool else (flag,)
    option = typer.Option(None, *declaration, help=_config_help(field), rich_help_panel=panel, show_default=False,
                          metavar=_metavar(field))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


def _config_help(field: FieldInfo) -> str:
    text = field.description or ""
    default: Any = field.default
    if default is PydanticUndefined:
        return f"{text} (required)"
    if default is None or "(default" in text:
        return text
    if isinstance(default, bool):
        default = "on" if default else "off"
    return f"{text} (default: {default})"


# --- internals -------------------------------------------------------------------------------------

def _default(field: FieldInfo) -> Any:
    """The field's default as validated (`--students`' text as the sizes it reads)."""
    if not field.metadata:
        return field.default
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)]).validate_python(field.default)


def flag_name(name: str, field: FieldInfo) -> str:
    return _extra(field, "flag") or "--" + name.replace("_", "-")


def _flag_names(settings_class: type[CommandSettings]) -> dict[str, str]:
    """How errors name each setting: its flag without the dashes, or an argument's RUN_DIR."""
    return {name: name.upper() if _extra(field, "argument") else flag_name(name, field).removeprefix("--")
            for name, field in settings_class.model_fields.items()}


def _extra(field: FieldInfo, key: str) -> Any:
    return (field.json_schema_extra or {}).get(key) if isinstance(field.json_schema_extra, dict) else None


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    kind = _flag_type(field)
    default = ... if field.default is PydanticUndefined else field.default
    limits = {"min": _limit(field, (Ge, Gt)), "max": _limit(field, (Le, Lt))}
    limits = {key: value for key, value in limits.items() if value is not None}
    if _extra(field, "argument"):
        text = takes_paths(field.annotation)
        declared = typer.Argument(default, help=field.description, show_default=False, parser=PathText if text else None)
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=declared,
                                 annotation=PathText if text else kind)
    flag = flag_name(name, field)
    names = (f"{flag}/--no-{flag.removeprefix('--')}",) if kind is bool and default is True else (flag,)
    declared = typer.Option(list(default) if isinstance(default, list) else default, *names,
                            help=field.description, metavar=_metavar(field), **limits)
    annotation = kind if default is not None else kind | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=declared, annotation=annotation)


def _limit(field: FieldInfo, kinds: tuple[type, ...]) -> float | None:
    for item in field.metadata:
        if isinstance(item, kinds):
            return next(getattr(item, key) for key in ("ge", "gt", "le", "lt") if hasattr(item, key))
    return None


def _flag_type(field: FieldInfo) -> Any:
    """What typer parses: bool, int, float or str (quantities, lists of numbers, choices and paths
    arrive as text, parsed by the field's validators: a path as typed, so that a URL given for one
    is refused whole, not read as http:/host); list[str] for a repeatable flag."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, UnionType):
        options = [arg for arg in get_args(annotation) if arg is not NoneType]
        # a setting given once or several times (a path, or a list of paths) is a repeatable flag
        annotation = next((arg for arg in options if get_origin(arg) is list), options[0])
    if any(isinstance(item, BeforeValidator) for item in field.metadata):
        return str
    if get_origin(annotation) is list:
        return list[_flag_type(FieldInfo(annotation=get_args(annotation)[0]))]
    if annotation in (bool, int, float):
        return annotation
    if get_origin(annotation) is Literal or annotation in (str, Path):
        return str
    raise TypeError(f"no flag type for {annotation!r}")  # a new kind of setting: teach it here


def _metavar(field: FieldInfo) -> str | None:
    """PATH in --help for a path setting typer takes as text (typer's own otherwise)."""
    return "PATH" if takes_paths(field.annotation) else None


def _text(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (tuple, list)):
        return ",".join(_text(item) for item in value)
    return str(value)


def _number(value: float) -> str:
    """A number as short as it can be while reading back exactly: 1e+21, 5.46e+08."""
    for digits in range(6, 18):
        text = f"{value:.{digits}g}"
        if float(text) == value:
            return text
    return repr(value)
