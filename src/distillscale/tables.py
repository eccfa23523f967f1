"""Tables of runs read from CSV or JSONL, checked the way a fit needs them.

    table = read_table("runs.csv")                       # every row, values as read
    runs = table.numeric(["N", "loss"], drop_invalid=True)  # positive finite floats, bad rows named
    mask = parse_filter("N >= 1e8 and loss < 3").mask(runs.columns)

Rows are named by their line in the file (the CSV header is line 1), so an error message points at
what the user has to fix. Filters are parsed by a small recursive-descent parser, never `eval`.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from distillscale.errors import UserError
from distillscale.io import decode_text
from distillscale.units import parse_number

_SHOWN_ROWS = 5  # bad rows named in one error message before "and N more"
# A run file has a row per training run: thousands at most. Far more rows is another kind of file
# (a metrics log, a dataset), which would fill the memory before the fit could say so.
MAX_ROWS = 1_000_000
_BYTES_PER_CELL = 120  # a str in a dict of the rows, measured on CPython 3.11
_MAX_FILTER_DEPTH = 50  # nested parentheses or `not`s in a filter
_DELIMITERS = ",;\t|"
# What spreadsheets save CSV files in when not UTF-8 (Windows-1252, else Latin-1, which decodes anything).
SPREADSHEET_ENCODINGS = ("cp1252", "latin-1")
_DECIMAL_COMMA = re.compile(r"^[+-]?[0-9]+,[0-9]+(?:[eE][+-]?[0-9]+)?$")


@dataclass(frozen=True)
class ValueRule:
    """What a numeric column's values must be: `valid` maps an array to a mask of the valid ones,
    `needs` says what they must be ("positive numbers") in the one line that refuses the others."""

    valid: Callable[[np.ndarray], np.ndarray]
    needs: str


POSITIVE = ValueRule(lambda v: np.isfinite(v) & (v > 0), "positive numbers")
NON_NEGATIVE = ValueRule(lambda v: np.isfinite(v) & (v >= 0), "numbers 0 or more")
FRACTION = ValueRule(lambda v: np.isfinite(v) & (v >= 0) & (v < 1), "numbers from 0 up to, not including, 1")
STEP_COUNT = ValueRule(lambda v: np.isfinite(v) & (v >= 0) & (v == np.round(v)),
                       "whole numbers of optimizer steps, 0 or more")


@dataclass(frozen=True)
class RunTable:
    """Rows of a run file as read: `rows[i]` maps column name to its raw value; `lines[i]` is the
    line of that row in the file."""

    source: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def require(self, *names: str) -> None:
        """Raise a UserError naming the first missing column and listing the columns found."""
        for name in names:
            if name not in self.columns:
                raise UserError(f"missing column {name!r} in {self.source}; "
                                f"columns found: {', '.join(map(repr, self.columns))}")

    def _check_one_role_each(self, names: list[str], flags: list[str] | None) -> None:
        """A column given for two roles (e.g. as the loss and as the accuracy) would be read as both: refused."""
        for index, name in enumerate(names):
            if name in names[:index]:
                if flags is not None:
                    given = [flags[i] for i, other in enumerate(names) if other == name]
                    roles = f" ({' and '.join(given)})"
                else:
                    roles = " (two of the fit's column options name it)"
                raise UserError(f"column {name!r} of {self.source} is given for two roles{roles}: each role "
                                f"needs a column of its own; name another column for one of them")

    def values(self, name: str) -> list[Any]:
        self.require(name)
        return [row.get(name) for row in self.rows]

    def where(self, text: str, flag: str = "--where") -> "RunTable":
        """The rows matching the filter `text` (as `parse_filter` reads it); none matching is refused."""
        mask = parse_filter(text).mask({name: self.values(name) for name in self.columns})
        if not mask.any():
            raise UserError(f"{flag} {text!r} matches none of the {len(self)} runs in {self.source}: loosen the filter")
        keep = np.flatnonzero(mask)
        return replace(self, rows=tuple(self.rows[i] for i in keep), lines=tuple(self.lines[i] for i in keep))

    def numeric(self, names: list[str], *, drop_invalid: bool = False,
                rules: Mapping[str, ValueRule] | None = None, flags: list[str] | None = None) -> "NumericRuns":
        """The named columns as positive finite floats (a column named in `rules`: as its rule says).

        Each name is one role of the fit (`flags`: the options that gave them, in the same order, for
        the message): one column named for two roles is an error naming it and them. A row with a
        missing, non-numeric, NaN, infinite or non-positive (or against its rule) value in any of them
        is an error naming the rows, or, with `drop_invalid`, is skipped and counted.
        """
        self._check_one_role_each(names, flags)
        self.require(*names)
        values = {name: np.array([_as_float(v) for v in self.values(name)]) for name in names}
        bad = np.zeros(len(self), dtype=bool)
        for name, column in values.items():
            rule = (rules or {}).get(name, POSITIVE)
            with np.errstate(invalid="ignore"):
                invalid = ~rule.valid(column)
            if invalid.any() and not drop_invalid:
                raws = self.values(name)
                shown = [f"{self.lines[i]} ({raws[i]!r})" for i in np.flatnonzero(invalid)]
                more = f" and {len(shown) - _SHOWN_ROWS} more" if len(shown) > _SHOWN_ROWS else ""
                raise UserError(f"column {name!r} in {self.source} needs {rule.needs}; bad values "
                                f"at lines {', '.join(shown[:_SHOWN_ROWS])}{more}: fix them or pass "
                                "--drop-invalid to skip those rows")
            bad |= invalid
        keep = ~bad
        return NumericRuns(source=self.source,
                           columns={name: column[keep] for name, column in values.items()},
                           lines=np.asarray(self.lines)[keep], n_dropped=int(bad.sum()),
                           rows=tuple(row for row, k in zip(self.rows, keep) if k))


@dataclass(frozen=True)
class NumericRuns:
    """Checked numeric columns of the rows that passed (`n_dropped` rows did not)."""

    source: str
    columns: dict[str, np.ndarray]
    lines: np.ndarray
    n_dropped: int
    rows: tuple[dict[str, Any], ...]

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def _as_float(value: Any) -> float:
    """A cell as a float: numbers, numeric text, or sizes as the command line takes them (1.2B);
    NaN for anything else."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return parse_number(value)
    except UserError:
        return math.nan


def read_table(path: str | Path) -> RunTable:
    """Read runs from a CSV file (header row) or a JSONL file (one JSON object per line).

    The format follows the suffix (.jsonl/.ndjson vs anything else); a file whose first character
    is `{` is read as JSONL whatever its name.
    """
    path = Path(path)
    try:
        _check_size(path)
        text = decode_text(path.read_bytes(), f"run file {path}", fallback=SPREADSHEET_ENCODINGS)
    except OSError as exc:
        raise UserError(f"cannot read run file {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise UserError(f"run file {path} is empty: it needs a header row (CSV) or JSON lines")
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{")
    return _read_jsonl(path, text) if is_jsonl else _read_csv(path, text)


def _check_size(path: Path) -> None:
    """Refuse, before reading it, a file with far more rows than a run file has, with an estimate
    of the memory it would take (from the mean length of its first lines)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    lines = head.splitlines()
    if size <= len(head) or len(lines) < 2:
        return
    rows = size / (len(head) / len(lines))
    if rows > MAX_ROWS:
        columns = max(line.count(b",") + 1 for line in lines[:10])
        memory = rows * columns * _BYTES_PER_CELL
        raise UserError(f"run file {path} is {size / 1e6:,.0f} MB, about {rows:,.0f} rows "
                        f"(~{memory / 1e9:,.1f} GB in memory): a run file has one row per training run "
                        f"(at most {MAX_ROWS:,}); keep only the runs' final results")


def _sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV file: comma, semicolon, tab or bar, whichever the header row has most."""
    header = text.lstrip().splitlines()[0]
    counts = {delimiter: header.count(delimiter) for delimiter in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_csv(path: Path, text: str) -> RunTable:
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [name.strip() for name in next(reader)]
    if len(set(header)) != len(header) or "" in header:
        raise UserError(f"the header of {path} has empty or repeated column names: {header}")
    rows, lines = [], []
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            raise UserError(f"line {line} of {path} has {len(record)} fields but the header has "
                            f"{len(header)}: fix the row or the header")
        cells = (cell.strip() for cell in record)
        if delimiter != ",":  # a semicolon or tab file from a locale that writes 2,5 for 2.5
            cells = (cell.replace(",", ".") if _DECIMAL_COMMA.match(cell) else cell for cell in cells)
        rows.append(dict(zip(header, cells)))
        lines.append(line)
    return RunTable(str(path), tuple(header), tuple(rows), tuple(lines))


def _read_jsonl(path: Path, text: str) -> RunTable:
    columns: dict[str, None] = {}  # ordered set: columns in order of first appearance
    rows, lines = [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(f"line {line} of {path} is not valid JSON ({exc.msg}): "
                            "a JSONL file has one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"line {line} of {path} is not a JSON object: "
                            "a JSONL file has one JSON object per line")
        columns.update(dict.fromkeys(row))
        rows.append(row)
        lines.append(line)
    return RunTable(str(path), tuple(columns), tuple(rows), tuple(lines))


# --- filter expressions: `loss > 2.3`, `N >= 1e8 and loss < 3`, `not (kind == 'teacher')` ---------

_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
                "==": operator.eq, "!=": operator.ne}
_TOKEN = re.compile(r"""\s*(?:
      (?P<number>-?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?[kKMBGTP]?(?![A-Za-z_0-9]))
    | (?P<name>[A-Za-z_][A-Za-z_0-9.]*)
    | `(?P<quoted_name>[^`]+)`
    | '(?P<string>[^']*)' | "(?P<dstring>[^"]*)"
    | (?P<op><=|>=|==|!=|<|>|\(|\))
    )""", re.VERBOSE)
_KEYWORDS = ("and", "or", "not")


@dataclass(frozen=True)
class Comparison:
    left: tuple[str, Any]   # ("column", name) | ("number", float) | ("string", str)
    op: str
    right: tuple[str, Any]


@dataclass(frozen=True)
class BoolOp:
    op: str                 # "and" | "or" | "not"
    operands: tuple["Expr", ...]


Expr = Comparison | BoolOp


@dataclass(frozen=True)
class RowFilter:
    """A parsed filter; `mask(columns)` says which rows match."""

    text: str
    expr: Expr

    def names(self) -> set[str]:
        """Column names the filter refers to."""
        found: set[str] = set()

        def walk(node: Expr) -> None:
            if isinstance(node, Comparison):
                found.update(v for kind, v in (node.left, node.right) if kind == "column")
            else:
                for operand in node.operands:
                    walk(operand)

        walk(self.expr)
        return found

    def mask(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Boolean mask over rows. `columns` maps each name to a sequence of row values; numbers
        compare numerically, quoted strings compare with the text of the value."""
        missing = sorted(self.names() - set(columns))
        if missing:
            raise UserError(f"filter {self.text!r} uses unknown column {missing[0]!r}; "
                            f"names available: {', '.join(map(repr, columns))}")
        return self._evaluate(self.expr, columns)

    def _evaluate(self, node: Expr, columns: Mapping[str, Any]) -> np.ndarray:
        if isinstance(node, BoolOp):
            masks = [self._evaluate(operand, columns) for operand in node.operands]
            if node.op == "not":
                return ~masks[0]
            return np.logical_and.reduce(masks) if node.op == "and" else np.logical_or.reduce(masks)
        textual = "string" in (node.left[0], node.right[0])
        if textual and node.op not in ("==", "!="):
            raise UserError(f"filter {self.text!r} orders a text with {node.op}: compare text with == "
                            "or != only, or write the number without quotes")
        left = self._operand(node.left, columns, textual)
        right = self._operand(node.right, columns, textual)
        with np.errstate(invalid="ignore"):
            return np.asarray(_COMPARISONS[node.op](left, right), dtype=bool)

    def _operand(self, operand: tuple[str, Any], columns: Mapping[str, Any], textual: bool):
        kind, value = operand
        if kind != "column":
            return value
        if textual:
            return np.array(["" if v is None else str(v) for v in columns[value]])
        numbers = np.array([_as_float(v) for v in columns[value]], dtype=float)
        if len(numbers) and np.isnan(numbers).all():
            raise UserError(f"filter {self.text!r} compares column {value!r} with a number, but the "
                            f"column holds no numbers: quote the value to compare text, e.g. "
                            f"{value} == 'teacher'")
        return numbers


def parse_filter(text: str) -> RowFilter:
    """Parse `EXPR := OR; OR := AND ('or' AND)*; AND := NOT ('and' NOT)*;
    NOT := 'not' NOT | '(' OR ')' | OPERAND CMP OPERAND`, where an operand is a column name
    (backquote names with spaces: `Model Size`), a number (1e8, 546M) or a quoted string."""
    return RowFilter(text, _Parser(text).parse())


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokenize(text)
        self.position = 0
        self.depth = 0

    def _error(self, what: str) -> UserError:
        return UserError(f"cannot parse filter {self.text!r}: {what}; write comparisons such as "
                         "\"loss > 2.3\" or \"N >= 1e8 and loss < 3\"")

    def _tokenize(self, text: str) -> list[tuple[str, Any]]:
        tokens, position = [], 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise self._error(f"unexpected text at {text[position:].strip()!r}")
            position = match.end()
            kind = match.lastgroup
            value = match.group(kind)
            if kind == "number":
                tokens.append(("number", parse_number(value, "number in the filter")))
            elif kind == "name" and value in _KEYWORDS:
                tokens.append((value, value))
            elif kind in ("name", "quoted_name"):
                tokens.append(("column", value))
            elif kind in ("string", "dstring"):
                tokens.append(("string", value))
            else:
                tokens.append(("op", value))
        if not tokens:
            raise self._error("it is empty")
        return tokens

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, Any]:
        token = self._peek()
        if token is None:
            raise self._error("it ends too early")
        self.position += 1
        return token

    def parse(self) -> Expr:
        expr = self._or()
        if self._peek() is not None:
            raise self._error(f"unexpected {self._peek()[1]!r}")
        return expr

    def _or(self) -> Expr:
        operands = [self._and()]
        while self._peek() == ("or", "or"):
            self._take()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def _and(self) -> Expr:
        operands = [self._not()]
        while self._peek() == ("and", "and"):
            self._take()
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def _not(self) -> Expr:
        token = self._peek()
        if token in (("not", "not"), ("op", "(")):
            # Bounded, so that a hostile filter gets this message rather than a RecursionError.
            self.depth += 1
            if self.depth > _MAX_FILTER_DEPTH:
                raise self._error(f"it nests more than {_MAX_FILTER_DEPTH} parentheses or `not`s")
            self._take()
            if token == ("not", "not"):
                expr = BoolOp("not", (self._not(),))
            else:
                expr = self._or()
                if self._take() != ("op", ")"):
                    raise self._error("a parenthesis is not closed")
            self.depth -= 1
            return expr
        left = self._operand()
        kind, op = self._take()
        if kind != "op" or op not in _COMPARISONS:
            raise self._error(f"expected a comparison (<, <=, >, >=, ==, !=) after {left[1]!r}")
        return Comparison(left, op, self._operand())

    def _operand(self) -> tuple[str, Any]:
        token = self._take()
        if token[0] not in ("column", "number", "string"):
            raise self._error(f"expected a column, number or string, got {token[1]!r}")
        return token
