"""console.Table at any terminal width (issue 71): no word of a cell is ever cut or folded (a number
keeps every digit, an id every letter), no line is wider than the terminal, and a table too wide for
it is printed in parts (column groups under the first column again) or as one block per row."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich import box

from distillscale.console import READABLE_WIDTH, PlainConsole, Table

_BORDERS = re.compile(r"[\s│┃┆┊║|─━┏┓┗┛┡┩┠┨┣┫╇╋┳┻┼├┤┌┐└┘╭╮╰╯]+")


def render(table, width: int) -> str:
    buffer = io.StringIO()
    PlainConsole(file=buffer, width=width, color_system=None, highlight=False).print(table)
    return buffer.getvalue()


def words_of(table) -> list[str]:
    """Every word of the table's cells and shown headers (a column with a header and no value at all
    may leave its header out, narrower than one row's block)."""
    cells = [cell for column in table.columns
             for cell in ((column.header,) if table.show_header and (not table.rows or any(
                 str(c).strip() for c in column._cells)) else ()) + tuple(column._cells)]
    return [word for cell in cells for word in str(cell).split()]


def assert_whole(table, text: str, width: int) -> None:
    """Every word of every cell appears whole in `text`, and no line is wider than `width`."""
    shown = {word.rstrip(":") for word in _BORDERS.split(text)}  # a block per row reads "header: value"
    cut = [word for word in words_of(table) if word.rstrip(":") not in shown]
    assert not cut, f"cut at {width} columns: {cut[:5]}\n{text}"
    assert max(map(len, text.splitlines()), default=0) <= width, text


def sweep_plan_table(rows: int = 6) -> Table:
    """`sweep plan`'s table of a tuned 2.7B ladder: long ids, 7-character FLOPs, 7-digit seconds."""
    table = Table("run", "kind", "N", "D", "D/N", "steps", "FLOPs", "GPU s", "start", box=None, pad_edge=False)
    for column in table.columns:
        column.no_wrap = True
    for i in range(rows):
        table.add_row(f"t-L24-M40-lr0.001-B{32 << i}-7e3f289{i}", "fork", "2.72B", "54.4B", "20",
                      "663590/3317948", "5.3e+19", "4095052.4", "47.4d")
    return table


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 200])
def test_a_wide_table_keeps_every_digit_at_any_width(width):
    table = sweep_plan_table()
    text = render(table, width)
    assert_whole(table, text, width)
    assert text.count("5.3e+19") == 6 and "5.3e+1 " not in text


def test_a_table_too_wide_is_printed_in_column_groups_under_its_first_column():
    table = sweep_plan_table(rows=3)
    text = render(table, 80)
    headers = [line.split() for line in text.splitlines() if line.startswith("run")]
    assert len(headers) == 2 and headers[0][:2] == ["run", "kind"] and headers[1][0] == "run"
    assert sum(headers, [])[1:].count("run") == 1  # each other column once
    assert sorted(set(sum(headers, []))) == sorted(["run", "kind", "N", "D", "D/N", "steps", "FLOPs", "GPU", "s",
                                                    "start"])
    assert render(table, 160).count("run") == 1  # one table where it fits


def test_numbers_never_fold_in_a_wrapping_column():
    """The run sheet's case: columns that may wrap, squeezed by rich to less than their numbers
    (`0.0158` then `9`): a column is never narrower than its longest word."""
    table = Table(title="Run sheet", box=box.SIMPLE_HEAD, caption="a caption " * 12)
    for header in ("run", "N", "D", "peak lr\n(90%)", "batch", "steps", "warmup", "--lr", "GPU-h"):
        table.add_column(header, justify="right")
    for i in range(4):
        table.add_row(f"teacher-pretraining-inference: student {i}", "2.78B", "2.78B",
                      "0.000263\n0.00020–0.00035", "143K 35 seq", "19,365", "1,937", f"0.0031{i}72", "33.1")
    for width in range(30, 161, 7):
        assert_whole(table, render(table, width), width)


def test_text_is_not_spread_over_many_lines():
    """A column of names is not narrowed below READABLE_WIDTH while the table can be split instead."""
    table = Table("scenario", *(f"value {i}" for i in range(6)))
    table.add_row("teacher pretraining inference with a long name", *(f"{1.2345 * i:.4f}" for i in range(6)))
    text = render(table, 80)
    name_lines = [line for line in text.splitlines() if re.search(r"teacher|pretraining|inference|long|name", line)]
    width = max(len(part) for line in name_lines for part in line.split("│") if part.strip())
    assert width >= READABLE_WIDTH and len(name_lines) <= 4, text


def test_narrower_than_one_column_beside_the_first_prints_a_block_per_row():
    table = Table("run", "path", title="Runs", caption="paths as written")
    table.add_row("t-L24-M40-lr0.001-B32-7e3f289e", "/very/long/directory/of/runs/t-L24-M40-lr0.001-B32-7e3f289e")
    text = render(table, 70)
    assert_whole(table, text, 70)
    assert "run: t-L24-M40-lr0.001-B32-7e3f289e" in text.splitlines()
    assert "  path: /very/long/directory/of/runs/t-L24-M40-lr0.001-B32-7e3f289e" in text.splitlines()
    assert text.splitlines()[0].strip() == "Runs" and text.splitlines()[-1].strip() == "paths as written"


def test_a_title_wider_than_its_table_wraps_at_spaces():
    table = Table("task", "value", title="lm-eval 0.4.13 on /a/run/directory/with-a-long-name-1234567 (written)")
    table.add_row("tiny", "0.5000")
    text = render(table, 80)
    assert "/a/run/directory/with-a-long-name-1234567" in text.split()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.data())
def test_any_table_at_any_width_keeps_every_word(data):
    word = st.one_of(st.floats(1e-9, 1e25).map(lambda v: f"{v:.4g}"), st.from_regex(r"[a-z][a-z0-9-]{0,24}",
                                                                                     fullmatch=True))
    cell = st.lists(word, min_size=0, max_size=4).map(" ".join)
    n_columns = data.draw(st.integers(1, 9))
    table = Table(*(data.draw(word) for _ in range(n_columns)),
                  box=data.draw(st.sampled_from([None, box.SIMPLE_HEAD, box.HEAVY_HEAD])),
                  show_header=data.draw(st.booleans()))
    for _ in range(data.draw(st.integers(0, 5))):
        table.add_row(*(data.draw(cell) for _ in range(n_columns)))
    longest = max(map(len, words_of(table)), default=1)
    width = data.draw(st.integers(longest + 4, 200))
    assert_whole(table, render(table, width), width)
