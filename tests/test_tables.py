import json

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.tables import parse_filter, read_table


def write(path, text):
    path.write_text(text)
    return path


def test_csv_and_jsonl_give_the_same_runs(tmp_path):
    csv_table = read_table(write(tmp_path / "runs.csv", "N,loss\n1e8,3.1\n\n2e8,2.9\n"))
    jsonl_table = read_table(write(tmp_path / "runs.jsonl",
                                   '{"N": 1e8, "loss": 3.1}\n\n{"N": 2e8, "loss": 2.9}\n'))
    for table in (csv_table, jsonl_table):
        runs = table.numeric(["N", "loss"])
        np.testing.assert_allclose(runs["N"], [1e8, 2e8])
        np.testing.assert_allclose(runs["loss"], [3.1, 2.9])
    assert csv_table.lines == (2, 4)  # blank line skipped, rows keep their file lines
    assert jsonl_table.lines == (1, 3)


def test_jsonl_is_recognised_by_content(tmp_path):
    table = read_table(write(tmp_path / "runs.txt", json.dumps({"N": 5, "loss": 2}) + "\n"))
    assert table.columns == ("N", "loss")


def test_missing_column_lists_columns_found(tmp_path):
    table = read_table(write(tmp_path / "runs.csv", "params,loss\n1,2\n"))
    with pytest.raises(UserError, match=r"missing column 'N' in .*columns found: 'params', 'loss'"):
        table.numeric(["N", "loss"])


def test_invalid_values_are_named_by_line_or_dropped_and_counted(tmp_path):
    table = read_table(write(tmp_path / "runs.csv", "N,loss\n1e8,3\n-1,2.9\n2e8,nan\n3e8,abc\n4e8,2.5\n"))
    with pytest.raises(UserError, match=r"column 'N' .* lines 3 \('-1'\): fix them or pass --drop-invalid"):
        table.numeric(["N", "loss"])
    with pytest.raises(UserError, match=r"column 'loss' .* lines 4 \('nan'\), 5 \('abc'\)"):
        table.numeric(["loss"])
    runs = table.numeric(["N", "loss"], drop_invalid=True)
    assert runs.n_dropped == 3 and len(runs) == 2
    assert list(runs.lines) == [2, 6]


def test_long_lists_of_bad_rows_are_shortened(tmp_path):
    table = read_table(write(tmp_path / "runs.csv", "loss\n" + "0\n" * 8))
    with pytest.raises(UserError, match="and 3 more"):
        table.numeric(["loss"])


@pytest.mark.parametrize("name, content, fragment", [
    ("runs.csv", "", "is empty"),
    ("runs.csv", "N,N\n1,2\n", "empty or repeated column names"),
    ("runs.csv", "N,loss\n1,2,3\n", "line 2 of .* has 3 fields but the header has 2"),
    ("runs.jsonl", '{"N": 1}\n{"N": \n', "line 2 of .* is not valid JSON"),
    ("runs.jsonl", '{"N": 1}\n[1, 2]\n', "line 2 of .* is not a JSON object"),
])
def test_malformed_files(tmp_path, name, content, fragment):
    with pytest.raises(UserError, match=fragment):
        read_table(write(tmp_path / name, content))


def test_unreadable_file(tmp_path):
    with pytest.raises(UserError, match="cannot read run file .*missing.csv"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="cannot read run file"):
        read_table(tmp_path)


COLUMNS = {"N": [1e7, 1e8, 1e9, 2e9], "loss": [3.5, 3.0, 2.2, 2.1], "Model Size": [1, 2, 3, 4],
           "kind": ["teacher", "student", "student", "teacher"]}


@pytest.mark.parametrize("text, expected", [
    ("loss > 2.3", [1, 1, 0, 0]),
    ("N >= 1e8 and loss < 3", [0, 0, 1, 1]),
    ("N >= 100M and loss < 3", [0, 0, 1, 1]),
    ("loss > 3.2 or N > 1.5B", [1, 0, 0, 1]),
    ("not (loss > 2.3) and `Model Size` != 4", [0, 0, 1, 0]),
    ("kind == 'teacher'", [1, 0, 0, 1]),
    ('kind != "teacher" or (N < 1e8)', [1, 1, 1, 0]),
    ("2.5 < loss", [1, 1, 0, 0]),
])
def test_filters(text, expected):
    assert parse_filter(text).mask(COLUMNS).tolist() == [bool(v) for v in expected]


@pytest.mark.parametrize("text, fragment", [
    ("", "it is empty"),
    ("loss >", "it ends too early"),
    ("loss 2", "expected a comparison"),
    ("(loss > 2", "it ends too early"),
    ("loss > 2 2", "unexpected 2.0"),
    ("loss > 2 and", "it ends too early"),
    ("__import__('os') > 1", "expected a comparison"),
    ("loss = 2", "unexpected text"),
    ("> 2", "expected a column, number or string"),
])
def test_filter_syntax_errors(text, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_filter(text)


def test_filter_with_unknown_column_lists_names():
    with pytest.raises(UserError, match=r"unknown column 'tokens'; names available: 'N', 'loss'"):
        parse_filter("tokens > 1").mask(COLUMNS)


@pytest.mark.parametrize("text, expected", [
    ("loss > -1", [1, 1, 1, 1]),
    ("N > 0", [1, 1, 1, 1]),
    ("-1 < loss and loss < 3", [0, 0, 1, 1]),
])
def test_filters_take_negative_numbers_and_zero(text, expected):
    assert parse_filter(text).mask(COLUMNS).tolist() == [bool(v) for v in expected]


@pytest.mark.parametrize("text, fragment", [
    ("N > 'abc'", "orders a text with >"),
    ("kind > 3", "column 'kind' with a number, but the column holds no numbers"),
])
def test_filter_type_mismatches_are_errors(text, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_filter(text).mask(COLUMNS)


def test_deeply_nested_filter_is_refused_without_recursion_error():
    with pytest.raises(UserError, match="nests more than 50"):
        parse_filter("(" * 500 + "loss > 2" + ")" * 500)
    with pytest.raises(UserError, match="nests more than 50"):
        parse_filter("not " * 500 + "loss > 2")
    sequential = " or ".join(["(loss > 2)"] * 200)  # many groups, none deep
    assert parse_filter(sequential).mask(COLUMNS).tolist() == [True, True, True, True]


@pytest.mark.parametrize("content, encoding", [
    ("N;loss;name\n1e8;3,1;Café\n2e8;2,9;Zoë\n", "utf-8"),
    ("N\tloss\tname\n1e8\t3,1\tCafé\n2e8\t2,9\tZoë\n", "latin-1"),
    ("N,loss,name\n1e8,3.1,Café\n2e8,2.9,Zoë\n", "cp1252"),
    ("N,loss,name\n100M,3.1,Café\n0.2B,2.9,Zoë\n", "utf-16"),
])
def test_delimiters_decimal_commas_encodings_and_size_suffixes(tmp_path, content, encoding):
    path = tmp_path / "runs.csv"
    path.write_bytes(content.encode(encoding))
    table = read_table(path)
    assert table.columns == ("N", "loss", "name") and table.values("name") == ["Café", "Zoë"]
    runs = table.numeric(["N", "loss"])
    np.testing.assert_allclose(runs["N"], [1e8, 2e8])
    np.testing.assert_allclose(runs["loss"], [3.1, 2.9])


def test_thousands_separators_are_not_taken_for_decimal_commas(tmp_path):
    table = read_table(write(tmp_path / "runs.csv", 'N,loss\n"1,000",3.1\n'))
    with pytest.raises(UserError, match="needs positive numbers"):
        table.numeric(["N"])


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import distillscale.tables as tables

    monkeypatch.setattr(tables, "MAX_ROWS", 1000)
    path = write(tmp_path / "log.csv", "step,loss\n" + "".join(f"{i},{3 + 1 / (i + 1):.6f}\n" for i in range(20000)))
    with pytest.raises(UserError, match=r"about 20,\d{3} rows \(~0.0 GB in memory\): a run file has one row"):
        read_table(path)
