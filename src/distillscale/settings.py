"""Groups of settings, validated and read from TOML files.

A config class is composed of `Settings` groups (each a [section] of a config file and a panel of
--help); each setting is declared once, in its group, and becomes `--kebab-name` with the field's
description as its help text (`cli_options.with_config_options` generates the flags):

    def train_command(config: Path | None = None, as_json: bool = False, **settings) -> int: ...
    train_command = with_config_options(train_command, TrainConfig, json_help="print result.json ...")

Every generated option defaults to None ("not given"), so a TOML file given to `--config` and the
config's own defaults apply underneath; `load_config` validates the lot and words the errors. `to_toml`
writes a config back as the [sections] that `--config` reads.
"""

from __future__ import annotations

import contextvars
import sys
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator

from distillscale.errors import ParameterError, UserError, path_kind
from distillscale.io import read_text_file
from distillscale.units import Quantity, parse_bytes, parse_quantity
from distillscale.urls import is_url, redacted_url, redacted_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_VALIDATING = contextvars.ContextVar("validating", default=False)  # inside Settings.model_validate


class Settings(BaseModel):
    """One group of settings: a [section] of a config file and a panel of the command's --help."""

    # A setting is a number something uses: inf and nan are refused (`--teacher-timeout inf` reached a
    # socket as an OverflowError, `--lr inf` a diverged run).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    section: ClassVar[str]
    title: ClassVar[str]

    def __init__(self, **values) -> None:
        """From Python (`TrainConfig(lr=...)`): a bad setting is one line naming it, not pydantic's
        report (files and flags are read by model_validate and worded by `describe_error`)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            if _VALIDATING.get():  # pydantic calls a custom __init__ from model_validate too
                raise
            raise parameter_error(exc, values) from None

    def __repr_args__(self):
        """Its settings as repr shows them: a password in a URL (or in a value taken for a path) as ***."""
        for name, value in super().__repr_args__():
            yield name, redacted_value(value)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any):
        token = _VALIDATING.set(True)
        try:
            return super().model_validate(obj, **kwargs)
        finally:
            _VALIDATING.reset(token)

    @field_validator("*", mode="before")
    @classmethod
    def _a_path_is_a_path(cls, value: Any, info: ValidationInfo) -> Any:
        """A path setting given as "" (an unset variable in a config or a call) would read as the
        current directory, and a server's URL as a path (http:/host...): refuse both. A setting
        that also takes text (`Path | str`: a directory or a server's URL) takes a URL as typed."""
        field = cls.model_fields[info.field_name] if info.field_name is not None else None
        if field is None or not takes_paths(field.annotation):
            return value
        takes_urls = str in get_args(field.annotation)
        for text in (value if isinstance(value, list) else [value]):
            if isinstance(text, str) and not text.strip():
                raise ValueError("is empty: give a path (write . for the current directory)")
            if isinstance(text, str) and "\x00" in text:
                raise ValueError("holds a NUL character, which no path can: give the path as it is on disk")
            if isinstance(text, str) and is_url(text) and not takes_urls:
                raise ValueError("is a server's URL, not a path: give a directory or file on this machine")
        return value


def takes_paths(annotation: Any) -> bool:
    """Whether a setting holds a path or a list of paths (optional or not)."""
    return annotation is Path or any(takes_paths(arg) for arg in get_args(annotation))


def sections(config_class: type[BaseModel]) -> dict[str, type[Settings]]:
    """Each setting of `config_class` and the group that declares it (the first in the MRO); settings
    outside any group are left out."""
    owner: dict[str, type[Settings]] = {}
    for group in config_class.__mro__:
        if isinstance(group, type) and issubclass(group, Settings) and "section" in vars(group):
            for name in group.model_fields:
                owner.setdefault(name, group)
    return {name: owner[name] for name in config_class.model_fields if name in owner}


def parameter_error(exc: ValidationError, given: dict[str, Any] | None = None):
    """The first problem of a config built from Python, as a ParameterError naming the setting (a
    value given comes before a setting left out)."""
    errors = exc.errors()
    error = min(errors, key=lambda e: (e["type"] == "missing", str(e["loc"][0]) not in (given or {})
                                       if e["loc"] else True))
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ParameterError):   # a validator's own words, naming the parameter
        return cause
    key = str(error["loc"][0]) if error["loc"] else "config"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return ParameterError(key, "unknown setting {}: see the config's fields (or the command's --help)")
    if error["type"] == "missing":
        return ParameterError(key, "missing required setting {}")
    got = _shown(error["input"])
    return ParameterError(key, "invalid {}: {message}" + ("" if got in message else " (got {got})"),
                          message=message, got=got if len(got) <= 60 else got[:57] + "...")


def _shown(value: Any) -> str:
    """A value as an error message echoes it: a URL's credentials redacted."""
    if isinstance(value, (list, tuple)):
        return repr(type(value)(redacted_url(item) if isinstance(item, str) else item for item in value))
    return repr(redacted_url(value) if isinstance(value, str) else value)


def describe_error(exc: ValidationError, flags: dict[str, Any], path: Path | None = None,
                   flag_names: dict[str, str] | None = None) -> str:
    """One line for the first problem of a config: where the bad setting came from (a flag given in
    `flags`, else a key of the file `path`) and what is wrong with it. A value given wrong is said
    before a setting left out."""
    error = min(exc.errors(), key=lambda e: e["type"] == "missing")
    key = str(error["loc"][0]) if error["loc"] else None
    message = error["msg"].removeprefix("Value error, ")
    if key is None:
        return f"invalid settings: {message}"
    name = (flag_names or {}).get(key, key)
    flag = name if name.isupper() else "--" + name.replace("_", "-")  # an argument (RUN_DIR) or a flag
    where = f"{key!r} in {path}" if key not in flags and path is not None else flag
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ParameterError):   # a validator's own words: the setting named where it was given
        if where == flag:
            return cause.for_cli({key: flag})
        return f"invalid {where}: {cause.for_cli({key: key})}"   # a key of a file, as written there
    if error["type"] == "extra_forbidden":
        return f"unknown setting {where}: see the command's --help for the valid names"
    if error["type"] == "missing":
        return f"missing required setting {where}"
    got = _shown(error["input"])
    return f"invalid {where}: {message}" + ("" if got in message else f" (got {got})")


def _about(what: str, parse):
    """`parse(value, name)` whose one-line error is a ParameterError about the setting `what` (its field;
    a flag written --x-y is read as x_y): the command line names its flag as typed (`--unique-tokens`),
    Python its parameter (`unique_tokens`), a config file its key; never another's name."""
    field = what.removeprefix("--").replace("-", "_")

    def parsed(value: Any) -> Any:
        try:
            return parse(value, ParameterError.NAME)
        except ParameterError:
            raise
        except UserError as exc:
            raise ParameterError.about(field, str(exc)) from None
    parsed.setting = field   # what a check of every flag finds it by (tests/cli/test_flag_names.py)
    return parsed


def _validator(parse) -> BeforeValidator:
    """`parse` for a setting's values (None left as it is), tagged with the setting it reads."""
    def validate(value: Any) -> Any:
        return value if value is None else parse(value)
    validate.setting = parse.setting
    return BeforeValidator(validate)


def quantity(what: str, *, kind: Quantity | None):
    """A positive number that may be written as `2M`, `1e9`, `7.75B` (strings or numbers), inside
    the limits of what it counts (`kind`, declared by the setting; None: no limits). `what`: the setting."""
    parse = _about(what, lambda value, name: parse_quantity(value, name, kind=kind))
    return _validator(parse)


def count(what: str, *, kind: Quantity | None):
    """Like `quantity` but an integer: `--eval-tokens 4k`."""
    parse = _about(what, lambda value, name: int(parse_quantity(value, name, kind=kind)))
    return _validator(parse)


def byte_size(what: str):
    """A size in bytes, an integer: `--max-bytes 20MB`, `64GiB`, `20M` (`units.parse_bytes`)."""
    parse = _about(what, lambda value, name: int(parse_bytes(value, name)))
    return _validator(parse)


def counts(what: str, *, kind: Quantity | None):
    """A list of counts, as a list or a comma-separated flag: `--fork-tokens 1M,2M`."""
    one = _about(what, lambda value, name: int(parse_quantity(value, name, kind=kind)))

    def parse(value: Any) -> Any:
        if value is None:
            return None
        values = value if isinstance(value, list) else str(value).split(",")
        return [one(v) for v in values]
    parse.setting = one.setting
    return BeforeValidator(parse)


TConfig = TypeVar("TConfig", bound=BaseModel)


def to_toml(config: BaseModel) -> str:
    """The config as a TOML file of [sections] that `--config` reads back to the same config (unset
    optional settings are left out: TOML has no null)."""
    import tomli_w

    tables: dict[str, dict[str, Any]] = {}
    values = config.model_dump(mode="json")
    for name, group in sections(type(config)).items():
        if values[name] is not None:
            tables.setdefault(group.section, {})[name] = values[name]
    return tomli_w.dumps(tables)


def load_config(config_class: type[TConfig], path: Path | None = None,
                overrides: dict[str, Any] | None = None, flag_names: dict[str, str] | None = None) -> TConfig:
    """Validate a TOML file (optional) with command-line `overrides` applied on top, as
    `config_class` (e.g. TrainConfig, DistillConfig or CacheConfig); errors name a setting by its flag,
    or as `flag_names` says (prune's positional {"teacher": "TEACHER"}).

    `overrides` holds only the flags the user actually gave (None means "not given").
    """
    settings: dict[str, Any] = {}
    if path is not None and is_url(path):
        raise UserError(f"--config {redacted_url(str(path))} is a server's URL: give a TOML file on this machine")
    if path is not None:
        settings = _read_toml(Path(path), config_class)
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    settings.update(flags)
    try:
        return config_class.model_validate(settings)
    except ValidationError as exc:
        raise UserError(describe_error(exc, flags, path, flag_names)) from None


def _read_toml(path: Path, config_class: type[BaseModel]) -> dict[str, Any]:
    """The settings of a TOML file, written in [sections] (as `to_toml` writes them) or as top-level keys."""
    if not path.is_file():
        raise UserError(f"config file {path} {path_kind(path)}: give an existing TOML file to --config")
    text = read_text_file(path, "config file")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    groups = sections(config_class)
    known = sorted({group.section for group in groups.values()})
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if not isinstance(value, dict):
            settings[key.replace("-", "_")] = value
            continue
        if key not in known:
            raise UserError(f"config file {path}: section [{key}] is not one of "
                            f"{', '.join(f'[{name}]' for name in known)}")
        for name, setting in value.items():
            name = name.replace("-", "_")
            if name not in groups or groups[name].section != key:
                home = f"; it belongs in [{groups[name].section}]" if name in groups else ""
                raise UserError(f"config file {path}: unknown setting {name!r} in [{key}]{home}")
            settings[name] = setting
    return settings
