"""Package exports that are imported on first use, so `distillscale --help` loads no torch."""

from __future__ import annotations

import importlib
import inspect
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """Return `(__getattr__, __dir__)` for a package whose names live in the given submodules.

    `exports` maps each public name to the module that defines it; a function comes wrapped by
    `checks.checked`, so that a wrong argument is a one-line ParameterError naming it.
    """

    checked_functions: dict[str, Callable] = {}

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        found = getattr(importlib.import_module(exports[name]), name)
        if inspect.isfunction(found):  # a public function: its arguments checked (distillscale.checks)
            from distillscale.checks import checked

            found = checked_functions.setdefault(name, checked(found))
        elif inspect.isclass(found) and name not in checked_functions:  # its public constructors too
            from distillscale.checks import checked

            for method_name, method in list(vars(found).items()):
                if isinstance(method, classmethod) and not method_name.startswith("_"):
                    setattr(found, method_name, classmethod(checked(method.__func__)))
            checked_functions[name] = found
        return found

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
