"""Errors name a flag as the user typed it, on every command: each option whose value is a count, a
quantity or a size in bytes, given a malformed value, is refused in one line that names it as typed
(`--unique-tokens '2b'`), never by its setting's name (`unique_tokens '2b'`) nor by a flag the command
does not have (`--L-T`). The options are found by walking the commands and the settings behind them."""

from __future__ import annotations

import typer
from pydantic import BaseModel

from distillscale.cli import app

BAD = "2x"   # malformed for a count, a quantity and a size alike


def _subclasses(cls) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def quantity_settings() -> set[str]:
    """The settings (field names) read by `settings.quantity`, `count`, `byte_size` or `counts`, in every
    settings class (a command's, a config's)."""
    import distillscale.cli  # noqa: F401 (every command module, and so every settings class, imported)

    names = set()
    for cls in _subclasses(BaseModel):
        if not cls.__module__.startswith("distillscale."):
            continue
        for name, field in getattr(cls, "model_fields", {}).items():
            if any(getattr(getattr(meta, "func", None), "setting", None) for meta in field.metadata):
                names.add(name)
    return names


def commands_with_quantities() -> list[tuple[str, list[str], str]]:
    """(command path, the other arguments it needs, flag) for every option that reads a quantity setting:
    its positional arguments and required options given (a quantity as 1e9, anything else as x)."""
    settings, found = quantity_settings(), []

    def walk(command, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in sorted(command.commands.items()):
                walk(sub, [*path, name])
            return
        arguments = ["x" for param in command.params if param.param_type_name == "argument"]
        for param in command.params:
            if param.param_type_name == "option" and param.name in settings and not param.is_flag:
                required = [part for other in command.params if other.param_type_name == "option" and other.required
                            and other is not param for part in (other.opts[0], "1e9" if other.name in settings else "x")]
                found.append((" ".join(path), arguments + required, param.opts[0]))

    walk(typer.main.get_command(app), [])
    return found


def test_the_walk_finds_the_quantity_options_of_every_kind_of_command():
    found = {(command, flag) for command, _, flag in commands_with_quantities()}
    for expected in [("train", "--unique-tokens"), ("train", "--max-bytes"), ("distill", "--tokens"),
                     ("plan", "--unique-tokens"), ("plan", "--compute"), ("predict supervised", "--params"),
                     ("cache-logits", "--tokens"), ("teacher", "--teacher-unique-tokens")]:
        assert expected in found, expected
    assert len(found) > 40


def test_every_quantity_flag_given_a_malformed_value_is_named_as_typed(cli):
    wrong = []
    for command, arguments, flag in commands_with_quantities():
        code, out, err = cli(*command.split(), *arguments, flag, BAD)
        line = err.strip()
        setting = flag.removeprefix("--").replace("-", "_")
        if code != 2 or "\n" in line or "Traceback" in err or flag not in line or ("_" in setting and setting in line):
            wrong.append(f"{command} {flag}: {line[:200]}")
    assert not wrong, "\n".join(wrong)
