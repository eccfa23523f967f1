"""Package exports that are imported on first use, so `distillscale --help` loads no torch."""

from __future__ import annotations

import importlib
import inspect
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """Return `(__getattr__, __dir__)` for a package whose names live in the given submodules.

    `exports` maps each public name to the module that defines it; a function comes wrapped by
    `checks.checked`, so that a wrong argument is a one-line ParameterError naming it. A class comes
    as it is (its public constructors are declared checked where it is defined): nothing here
    changes an object other modules see, so behaviour never depends on what was imported first.
    """

    checked_functions: dict[str, Callable] = {}

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        found = getattr(importlib.import_module(exports[name]), name)
        if inspect.isfunction(found):  # a public function: its arguments checked (distillscale.checks)
            from distillscale.checks import checked

            found = checked_functions.setdefault(name, checked(found))
        return found

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
