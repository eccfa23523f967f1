"""Groups of settings, and the command-line options generated from them.

A config class is composed of `Settings` groups (each a [section] of a config file and a panel of
--help); each setting is declared once, in its group, and becomes `--kebab-name` with the field's
description as its help text:

    def train_command(config: Path = CONFIG_OPTION, **settings) -> int: ...
    train_command = with_config_options(train_command, TrainConfig)

Every generated option defaults to None ("not given"), so a TOML file given to `--config` and the
config's own defaults apply underneath; `load_train_config` validates the lot and words the errors.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Callable, ClassVar, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

CONFIG_OPTION = typer.Option(None, "--config", help="TOML file of settings, as top-level keys or in tables "
                                                    "named like the panels below (data, model, budget, ...); "
                                                    "flags given here override it")



class Settings(BaseModel):
    """One group of settings: a [section] of a config file and a panel of the command's --help."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    section: ClassVar[str]
    title: ClassVar[str]

    @field_validator("*", mode="before")
    @classmethod
    def _no_empty_path(cls, value: Any, info: ValidationInfo) -> Any:
        """A path setting given as "" (an unset variable in a config or a call) would read as the
        current directory: refuse it, as the command line does."""
        if isinstance(value, str) and not value.strip() and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is Path or Path in get_args(annotation):
                raise ValueError("is empty: give a path (write . for the current directory)")
        return value


def sections(config_class: type[BaseModel]) -> dict[str, type[Settings]]:
    """Each setting of `config_class` and the group that declares it (the first in the MRO); settings
    outside any group are left out."""
    owner: dict[str, type[Settings]] = {}
    for group in config_class.__mro__:
        if isinstance(group, type) and issubclass(group, Settings) and "section" in vars(group):
            for name in group.model_fields:
                owner.setdefault(name, group)
    return {name: owner[name] for name in config_class.model_fields if name in owner}


def with_config_options(command: Callable, config_class: type[BaseModel], *,
                        leave_out: frozenset[str] = frozenset(), flag_names: dict[str, str] | None = None
                        ) -> Callable:
    """Give `command` (whose settings arrive in `**settings`, by field name) one option per field of
    `config_class`, except those it declares itself and those in `leave_out`, grouped in --help by
    the settings group that declares each. `flag_names` renames flags (`{"path": "data"}`: --data)."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in own} | set(leave_out)
    groups = sections(config_class)
    generated = [_option(name, (flag_names or {}).get(name, name), field,
                         getattr(groups.get(name), "title", None))
                 for name, field in config_class.model_fields.items() if name not in taken]
    command.__signature__ = inspect.Signature(own + generated)
    return command


def _option(name: str, flag_name: str, field: FieldInfo, panel: str | None) -> inspect.Parameter:
    flag = "--" + flag_name.replace("_", "-")
    kind = _flag_type(field)
    declaration = (f"{flag}/--no-{flag_name.replace('_', '-')}",) if kind is bool else (flag,)
    option = typer.Option(None, *declaration, help=_help(field), rich_help_panel=panel, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


def _flag_type(field: FieldInfo) -> type:
    """bool, int, float, Path, or str: quantities (`50M`), lists (`1M,2M`) and choices arrive as text
    and are parsed by the config's own validators, so a flag and a TOML value obey the same rules."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not NoneType)
    if any(isinstance(item, BeforeValidator) for item in field.metadata):
        return str
    if annotation in (bool, int, float, Path):
        return annotation
    if get_origin(annotation) is Literal or annotation is str:
        return str
    raise TypeError(f"no flag type for {annotation!r}")  # a new kind of setting: teach it here


def _help(field: FieldInfo) -> str:
    text = field.description or ""
    default: Any = field.default
    if default is PydanticUndefined:
        return f"{text} (required)"
    if default is None or "(default" in text:
        return text
    if isinstance(default, bool):
        default = "on" if default else "off"
    return f"{text} (default: {default})"


def describe_error(exc: ValidationError, flags: dict[str, Any], path: Path | None = None,
                   flag_names: dict[str, str] | None = None) -> str:
    """One line for the first problem of a config: where the bad setting came from (a flag given in
    `flags`, else a key of the file `path`) and what is wrong with it."""
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else None
    message = error["msg"].removeprefix("Value error, ")
    if key is None:
        return f"invalid settings: {message}"
    flag = "--" + (flag_names or {}).get(key, key).replace("_", "-")
    where = f"{key!r} in {path}" if key not in flags and path is not None else flag
    if error["type"] == "extra_forbidden":
        return f"unknown setting {where}: see the command's --help for the valid names"
    if error["type"] == "missing":
        return f"missing required setting {where}"
    got = repr(error["input"])
    return f"invalid {where}: {message}" + ("" if got in message else f" (got {got})")
