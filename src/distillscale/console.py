"""Terminal output shared by all commands: rich consoles, JSON printing, warnings.

Text printed here is often the user's own (a file name, a law's name, a run id, a flag's value), so
the consoles read no rich markup (`[bold]` in a name prints as typed; style with `style=` or
`styled`) and show control characters (ESC, NUL, CR, ...) as escapes instead of sending them to the
terminal."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import re
import sys
from dataclasses import replace
from typing import Any

from rich import table as rich_table
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from distillscale.jsontext import json_text
from distillscale.urls import redacted_text

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
    """A rich table that never cuts a word to fit the terminal, at any width (80 columns, a pipe, a
    small window): no number loses a digit, no id or path a letter.

    A cell wraps at its spaces only, and a column is never narrower than its longest word (a number,
    an id) nor, where it holds longer text, narrower than `READABLE_WIDTH` (a name is not spread
    over five lines). A table wider than the terminal at those widths is printed in parts: its
    columns in groups that fit, each group under the first column again (the rows' names); where
    even one column beside the first does not fit, each row is printed as lines of "header: value".
    Commands build a table as with rich and print it with `console.print`; nothing else to do."""

    def add_column(self, *args, **kwargs) -> None:
        kwargs.setdefault("overflow", "fold")  # only a word wider than the whole terminal folds
        super().add_column(*args, **kwargs)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.columns or self.width is not None:
            yield from super().__rich_console__(console, options)
            return
        width, content = options.max_width, _content(self, console)
        for soft in (True, False):
            floors = _floors(self, content, soft)
            if sum(floors) + self._extra_width <= width:
                yield from _render(_fitted(self, content, floors, width), console, options)
                return
        groups = _column_groups(self, content, width, soft=True) or _column_groups(self, content, width, soft=False)
        if groups is None:
            yield from _records(self, console)
            return
        yield from _annotation(self.title, "table.title", self.title_style, console)
        for number, group in enumerate(groups):
            if number:
                yield Segment.line()
            part, part_content = _part(self, group), [content[index] for index in group]
            for soft in (True, False):
                floors = _floors(part, part_content, soft)
                if sum(floors) + part._extra_width <= width:
                    break
            yield from _render(_fitted(part, part_content, floors, width), console, options)
        yield from _annotation(self.caption, "table.caption", self.caption_style, console)


# A column holding text longer than this is not narrowed below it (nor below its longest word).
READABLE_WIDTH = 14
_UNBOUNDED = 100_000  # the width cells are measured at: their words and lines as written


def _content(table: rich_table.Table, console: Console) -> list[tuple[int, int]]:
    """Each column's (longest word, longest line) over its cells, header and footer shown, padding
    not included: measured once per rendering, whatever the layout."""
    options = console.options.update_width(_UNBOUNDED)
    content = []
    for column in table.columns:
        cells = [*([column.header] if table.show_header else []), *column._cells,
                 *([column.footer] if table.show_footer else [])]
        measured = [Measurement.get(console, options, cell) for cell in cells]
        content.append((max((m.minimum for m in measured), default=0), max((m.maximum for m in measured), default=0)))
    return content


def _floors(table: rich_table.Table, content: list[tuple[int, int]], soft: bool) -> list[int]:
    """Each column's narrowest width, padding included: its whole cells where it does not wrap, else
    its longest word (and, `soft`, at least READABLE_WIDTH where its cells are longer)."""
    floors = []
    for position, (column, (shortest, longest)) in enumerate(zip(table.columns, content)):
        if column.width is not None:
            shortest = longest = column.width
        elif column.no_wrap:
            shortest = longest
        elif soft:
            shortest = min(longest, max(shortest, READABLE_WIDTH))
        floors.append(shortest + table._get_padding_width(position))
    return floors


def _fitted(table: rich_table.Table, content: list[tuple[int, int]], floors: list[int], width: int):
    """A copy of `table` whose columns have fixed widths, the widest narrowed first, none below its
    floor, that fit `width` (the caller checked that the floors do)."""
    widths = [max(longest + table._get_padding_width(position), floor)
              for position, ((_, longest), floor) in enumerate(zip(content, floors))]
    excess = sum(widths) + table._extra_width - width
    while excess > 0:
        widest = max((i for i, (w, f) in enumerate(zip(widths, floors)) if w > f), key=lambda i: (widths[i], i))
        widths[widest] -= 1
        excess -= 1
    fitted = copy.copy(table)
    fitted.columns = [replace(column, width=max(0, w - table._get_padding_width(position)))
                      for position, (column, w) in enumerate(zip(table.columns, widths))]
    return fitted


def _render(table: rich_table.Table, console: Console, options: ConsoleOptions) -> RenderResult:
    """rich's rendering of `table` (as wide as its title's and caption's longest word, so that they
    wrap at spaces too)."""
    words = [word for text in (table.title, table.caption) if text is not None
             for word in (text.plain if isinstance(text, Text) else text).split()]
    if words:
        table = copy.copy(table)
        table.min_width = min(options.max_width, max(max(map(cell_len, words)), table.min_width or 0))
    yield from rich_table.Table.__rich_console__(table, console, options)


def _column_groups(table: rich_table.Table, content: list[tuple[int, int]], width: int,
                   soft: bool) -> list[list[int]] | None:
    """The table's other columns in groups, in order, each of which fits `width` beside the first
    column (at their `_floors`); None when one column does not fit beside it."""
    def fits(group: list[int]) -> bool:
        part = _part(table, group)
        return sum(_floors(part, [content[index] for index in group], soft)) + part._extra_width <= width

    groups: list[list[int]] = []
    for index in range(1, len(table.columns)):
        if groups and fits([*groups[-1], index]):
            groups[-1].append(index)
        elif fits([0, index]):
            groups.append([0, index])
        else:
            return None
    return groups or None


def _part(table: rich_table.Table, group: list[int]):
    """The table of columns `group`, without title or caption (printed once, across the terminal)."""
    part = copy.copy(table)
    part.columns = [replace(table.columns[index], _index=position) for position, index in enumerate(group)]
    part.title = part.caption = None
    return part


def _annotation(text, default_style: str, style, console: Console) -> RenderResult:
    """A title or caption on its own, centred across the terminal."""
    if text:
        text = console.render_str(text) if isinstance(text, str) else text.copy()
        text.stylize(Style.pick_first(style, default_style))
        text.justify = "center"
        yield text


def _records(table: rich_table.Table, console: Console) -> RenderResult:
    """Each row as lines: its first cell, then "header: value" for each other cell that has one."""
    def text(cell) -> Text | None:
        if isinstance(cell, str):
            cell = console.render_str(cell)
        return Text(" ").join(cell.split("\n")) if isinstance(cell, Text) else None

    if table.title:
        yield text(table.title)
    headers = [" ".join(str(column.header).split()) if table.show_header else "" for column in table.columns]
    if not table.rows:
        yield from (Text(header) for header in headers if header)
    for cells in zip(*(column._cells for column in table.columns)):
        for index, (header, cell) in enumerate(zip(headers, cells)):
            value = text(cell)
            if value is None:
                yield cell
            elif value.plain or not index:
                yield Text.assemble("  " if index else "", f"{header}: " if header else "", value)
    if table.caption:
        yield text(table.caption)


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
        err_console.print(styled((f"{command}:", "dim"), " ", redacted_text(message),
                                 (f" ({time.monotonic() - start:.0f} s)", "dim")),
                          highlight=False, soft_wrap=True)
    return progress


# Inside `each_warning_once`: the warnings said so far and what names their part of the work.
_ONCE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("distillscale_warnings_once", default=None)


@contextlib.contextmanager
def each_warning_once():
    """Within it, a warning is said once, the first time, after what `state["label"]` names then (a
    chain's "generation 1 of 4"); the same warning again is not repeated."""
    state: dict = {"seen": set(), "label": ""}
    token = _ONCE.set(state)
    try:
        yield state
    finally:
        _ONCE.reset(token)


def warn(message: str) -> None:
    """A warning on stderr, in one line of its own; a password in it (a URL's, or one taken for a path) as ***.
    Inside `each_warning_once`, once, naming the part of the work that said it."""
    state = _ONCE.get()
    if state is not None:
        if message in state["seen"]:
            return
        state["seen"].add(message)
        message = f"{state['label']}: {message}" if state["label"] else message
    err_console.print(styled(("warning:", "yellow"), " ", redacted_text(message)), highlight=False, soft_wrap=True)
