"""Terminal output shared by all commands: rich consoles, JSON printing, warnings.

Text printed here is often the user's own (a file name, a law's name, a run id, a flag's value), so
the consoles read no rich markup (`[bold]` in a name prints as typed; style with `style=` or
`styled`) and show control characters (ESC, NUL, CR, ...) as escapes instead of sending them to the
terminal."""

from __future__ import annotations

import re
import sys
from typing import Any

from rich import table as rich_table
from rich.console import Console
from rich.text import Text

from distillscale.jsontext import json_text

# C0 controls but tab and newline, DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with each control character as its escape (\\x1b, \\x00, \\r): safe on a terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class PlainConsole(Console):
    """A rich console that prints strings as written: no markup, control characters escaped."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(visible(text), **kwargs)


console = PlainConsole()
err_console = PlainConsole(stderr=True)


class Table(rich_table.Table):
    """A rich table for a terminal of any width (80 columns too): a cell too wide for its column
    folds onto more lines instead of being cut with an ellipsis ("t-L1-…")."""

    def add_column(self, *args, **kwargs) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of plain text and (text, style) pieces: styled("report: ", (path, "bold"))."""
    return Text.assemble(*((visible(p[0]), p[1]) if isinstance(p, tuple) else visible(p) for p in parts))


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json_text(obj, indent=2) + "\n")
    sys.stdout.flush()


def progress_printer(command: str):
    """A `progress(message)` callback for long library calls: one dim line on stderr per step,
    with the seconds since the command started, when stderr is a terminal (never on stdout, which
    --json keeps clean; nor into a pipe or log, where an error must stay the only line)."""
    import time

    start = time.monotonic()

    def progress(message: str) -> None:
        if not err_console.is_terminal:
            return
        err_console.print(styled((f"{command}:", "dim"), " ", message, (f" ({time.monotonic() - start:.0f} s)", "dim")),
                          highlight=False, soft_wrap=True)
    return progress


def warn(message: str) -> None:
    err_console.print(styled(("warning:", "yellow"), " ", message), highlight=False, soft_wrap=True)
