"""The house rules a reader relies on, checked on the whole package: a module fits 650 lines, a CLI
command function 25 (decorators included: the command is a thin layer over the library), one public
class name means one thing, records between modules are typed, and a docstring names the fit it
describes."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "distillscale"
MAX_MODULE_LINES = 650
MAX_COMMAND_LINES = 25


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_module_fits_650_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


# Modules held to a smaller size: each one job, a job that grows moves out to a module of its own.
SMALLER_MODULES = {"planning/plan.py": 400}


def test_modules_held_smaller_fit_their_size():
    long = {name: n for name, most in SMALLER_MODULES.items()
            if (n := len((PACKAGE / name).read_text(encoding="utf-8").splitlines())) > most}
    assert not long, f"modules over their size (move a job out to its own module): {long}"


def cli_commands() -> dict[str, tuple[str, str]]:
    """Every command of `distillscale` (its words) -> (module, function) of its callback."""
    import typer

    from distillscale.cli import app

    def walk(command, words):
        if getattr(command, "commands", None):
            for name, sub in command.commands.items():
                yield from walk(sub, (*words, name))
        else:
            yield " ".join(words), (command.callback.__module__, command.callback.__name__)

    return dict(walk(typer.main.get_command(app), ()))


def test_every_command_function_fits_25_lines():
    lengths = {}
    for words, (module, name) in cli_commands().items():
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        [function] = [node for node in ast.walk(parsed(path))
                      if isinstance(node, ast.FunctionDef) and node.name == name]
        first = min([function.lineno] + [decorator.lineno for decorator in function.decorator_list])
        lengths[f"{words} ({module}.{name})"] = function.end_lineno - first + 1
    assert len(lengths) >= 29  # every command, sub-commands included
    long = {name: n for name, n in lengths.items() if n > MAX_COMMAND_LINES}
    assert not long, f"command functions over {MAX_COMMAND_LINES} lines: {long}"


def test_a_public_class_name_is_defined_once():
    where = defaultdict(list)
    for path in modules():
        for node in parsed(path).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(PACKAGE)))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, f"public classes of one name in two modules: {twice}"


@pytest.mark.parametrize("module", ["training/records.py"])
def test_records_have_no_untyped_dict_fields(module):
    """Records between modules are typed: no field of a record class is a `dict[str, Any]`."""
    untyped = []
    for node in parsed(PACKAGE / module).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and re.search(r"dict\[str,\s*Any\]", ast.unparse(item.annotation)):
                    untyped.append(f"{node.name}.{ast.unparse(item.target)}")
    assert not untyped, f"untyped dict fields in {module}: {untyped}"


def test_no_docstring_calls_a_least_absolute_deviations_fit_a_ridge_regression():
    """The cross-ladder bias model is least absolute deviations with a ridge penalty, not a ridge
    regression (least squares): its docstrings say so."""
    said = [str(path.relative_to(PACKAGE)) for path in modules()
            if "ridge regression" in " ".join(path.read_text(encoding="utf-8").lower().replace("#", " ").split())]
    assert not said, f"'ridge regression' in {said}"


def test_every_option_is_declared_in_cli_options():
    """A command's options are its settings' fields (`cli_options.option`, `with_config_options`) or the
    options cli_options declares itself: no typer.Option or typer.Argument anywhere else."""
    declared = {str(path.relative_to(PACKAGE)) for path in modules() if path.name != "cli_options.py"
                for node in ast.walk(parsed(path)) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name) and node.value.id == "typer" and node.attr in ("Option", "Argument")}
    assert not declared, f"options declared outside cli_options.py: {sorted(declared)}"
