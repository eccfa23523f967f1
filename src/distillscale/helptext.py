"""`--help` that stays readable in a narrow terminal (80 columns).

typer lays out each option as a row of cells (flag, short flag, --no- flag, short --no- flag, type,
help); at 80 columns a long flag (`--irreducible-loss-prior`) beside its `--no-` twin leaves the
table too wide (empty columns still take their padding), and rich then cuts flag names with an
ellipsis. `narrow_help()` makes typer's option tables put all of an option's flags in one column
(`--no-x` under `--x`), never cut a flag, and fold a word too long for the help column.

typer's rich help also keeps a docstring's line breaks, so a paragraph wrapped at 100 columns in the
source wraps mid-sentence on the terminal: `reflow_help()` joins each paragraph's lines.
"""

from __future__ import annotations

import inspect
import re

from rich.columns import Columns
from rich.table import Table
from rich.text import Text


class _OptionsTable(Table):
    """typer's option table, with the rows rearranged as the module docstring says."""

    def add_row(self, *cells, **kwargs):
        cells = list(cells)
        if len(cells) in (6, 7) and not self.show_header and all(isinstance(c, Text) for c in cells[-6:-2]):
            # [required,] long, short, --no- long, --no- short, type, help -> [required,] flags, type, help
            first = len(cells) - 6
            long, short, negative, negative_short = cells[first:first + 4]
            flags = long.copy()
            for extra, separator in ((short, ", "), (negative, "\n"), (negative_short, ", ")):
                if extra.plain:
                    if flags.plain:
                        flags.append(separator)
                    flags.append_text(extra)
            flags.no_wrap, flags.overflow = True, "fold"
            cells[first:first + 4] = [flags]
            help_cell = cells[-1]
            for text in (help_cell.renderables if isinstance(help_cell, Columns) else [help_cell]):
                if isinstance(text, Text):
                    text.overflow = "fold"
        return super().add_row(*cells, **kwargs)


def narrow_help() -> None:
    """Lay out typer's --help option tables as above (typer builds them with rich_utils.Table)."""
    try:
        from typer import rich_utils
    except ImportError:  # typer without rich: click's plain help wraps by itself
        return
    if getattr(rich_utils, "Table", None) is Table:
        rich_utils.Table = _OptionsTable


# A line break that starts a list item ("- x", "* x", "1. x") is kept.
_JOINED_BREAK = re.compile(r"\n(?!\s*(?:[-*]|\d+\.) )")


def reflow_help(command) -> None:
    """Join the lines of each paragraph of the help of `command` (a click command or group) and of
    its subcommands; list items and paragraphs marked \\b (click's "keep as written") keep theirs."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(p if p.startswith("\b") else _JOINED_BREAK.sub(" ", p) for p in paragraphs)
    for sub in getattr(command, "commands", {}).values():
        reflow_help(sub)
