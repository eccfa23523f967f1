"""Fixtures of the tests that cover every command (the fuzz tests): commands stubbed where their
expensive work would begin, and every runnable command found from the CLI itself."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def stub_out():
    """stub_out(patch, targets, replacement): replace each ("module", "Class.attribute") of `targets`
    by `replacement` through the MonkeyPatch `patch`; the fuzz tests end a command where its
    expensive work would begin."""
    import importlib
    import pkgutil

    import distillscale

    def replace(patch: pytest.MonkeyPatch, targets: list[tuple[str, str]], replacement) -> None:
        # Every module is imported before anything is replaced: a module first imported while a stub
        # is in place would keep it (`from x import name`) after the patch is undone, and a later test
        # in the same process (pytest-xdist runs files in any order) would find the stub.
        for module in pkgutil.walk_packages(distillscale.__path__, "distillscale."):
            importlib.import_module(module.name)
        for module_name, attribute in targets:
            owner = importlib.import_module(module_name)
            *classes, name = attribute.split(".")
            for class_name in classes:
                owner = getattr(owner, class_name)
            patch.setattr(owner, name, replacement)

    return replace


def leaf_commands() -> list[tuple[list[str], object]]:
    """(path, click command) of every runnable subcommand, found from the CLI itself."""
    import typer

    from distillscale.cli import app

    found = []

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(typer.main.get_command(app), [])
    return found
