"""Fuzzing what users give as files, at the byte level and field by field, and the input classes of
issue 23 that come in files or paths.

- Bytes: every command that reads a user's file (run tables, law files, TOML configs, sweep specs,
  corpora) gets byte-order marks (UTF-8, UTF-16 and UTF-32, both byte orders), text in those
  encodings, invalid UTF-8, NULs and random bytes: it decodes what is properly marked, and refuses
  the rest in one line (exit 2), never with a traceback.
- Law files: every field of a fitted law file (coefficients, compute settings, the fit record with
  its bootstrap, data range and extrapolation error) is mutated in turn to a wrong type, a negative,
  zero, NaN, infinity, a huge number, left out, or joined by an unknown field: the file is refused
  in one line naming the field, or it predicts a finite loss without a numpy warning.
- Quantities out of every sane range, empty paths, and corpora that hold nothing are refused before
  any work.

The expensive work behind the commands (fits, training) is replaced by a stub that ends the command
with status 0: what is tested is the reading and checking before it.
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer

import distillscale as ds
from distillscale.errors import UserError
from distillscale.laws import load_laws
from distillscale.tables import read_table


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TABLE = "params,tokens,loss\n" + "".join(f"{n:g},{d:g},{2 + 400 / n ** 0.34 + 400 / d ** 0.28}\n"
                                         for n in (1e7, 3e7, 1e8, 3e8) for d in (1e9, 3e9, 1e10))
BOMS = {"utf-8-sig": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
        "utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}
EXPENSIVE = [("distillscale.laws.fitting", "SupervisedLawFitter.fit"),
             ("distillscale.laws.fitting", "DistillationLawFitter.fit"),
             ("distillscale.laws.fitting", "_LogLossFitter._fit_subsets"),  # the backtest's fits
             ("distillscale.training.recipe", "train"),
             ("distillscale.sweeps.runner", "run_sweep"),
             ("distillscale.report.calibration", "calibrate")]


def one_line(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert err.startswith("distillscale: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.fixture
def stubbed(monkeypatch, tmp_path, stub_out):
    """The work behind each command ends it with status 0; the working directory is tmp_path."""
    def accept(*args, **kwargs):
        raise typer.Exit(0)

    stub_out(monkeypatch, EXPENSIVE, accept)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def reading_commands(path: Path, good: Path) -> list[list]:
    """Every command line that reads the user file `path` (`good` is a valid run table)."""
    return [["fit", "supervised", path, "--bootstrap", "0"],
            ["fit", "distillation", path, "--bootstrap", "0"],
            ["fit", "distillation", good, "--supervised-law", path, "--bootstrap", "0"],
            ["teacher", "--student-params", "1B", "--student-tokens", "20B", "--candidates", path],
            ["capacity-gap", "--runs", path],
            ["report", path, "--out", path.parent / "report"],
            ["predict", "supervised", "--law", path, "--params", "1B", "--tokens", "20B"],
            ["plan", "--law", path, "--compute", "1e21"],
            ["train", "--config", path, "--out", path.parent / "run"],
            ["sweep", "run", path, "--out", path.parent / "sweep"]]


def payloads() -> dict[str, bytes]:
    rng = np.random.default_rng(23)
    found = {f"{encoding} text": BOMS[encoding] + TABLE.encode(encoding.removesuffix("-sig"))
             for encoding in BOMS}
    found |= {f"{encoding} mark, UTF-8 after": bom + TABLE.encode() for encoding, bom in BOMS.items()}
    found |= {f"{encoding} mark alone": BOMS[encoding] for encoding in ("utf-16-le", "utf-32-be")}
    found |= {"FF FE, odd length": b"\xff\xfe" + TABLE.encode() + b"x",
              "invalid UTF-8": TABLE.encode() + b"1e8,\xc3\x28,3\n",
              "NUL bytes": TABLE.encode().replace(b",", b"\x00", 3),
              "ANSI escape": b"params,tokens,loss\x1b[31m\n1,2,3\n",
              "empty": b""}
    found |= {f"random bytes {i}": rng.integers(0, 256, 200 + 50 * i, dtype=np.uint8).tobytes()
              for i in range(2)}
    return found


PAYLOADS = payloads()


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name.endswith(" text") else name
                                  for name in sorted(PAYLOADS)])  # a decodable table goes further: seconds
def test_every_file_reading_command_decodes_or_refuses_in_one_line(cli, stubbed, name):
    good = stubbed / "good.csv"
    good.write_text(TABLE)
    path = stubbed / "file.csv"
    path.write_bytes(PAYLOADS[name])
    for args in reading_commands(path, good):
        code, _, err = cli(*args)
        one_line(code, err)
        assert "\x1b" not in err  # escape sequences are shown, not sent to the terminal


@pytest.mark.parametrize("encoding", sorted(BOMS))
def test_marked_unicode_tables_read_as_utf8(tmp_path, encoding):
    expected = read_table(_write(tmp_path / "utf8.csv", TABLE.encode()))
    table = read_table(_write(tmp_path / "marked.csv", BOMS[encoding] + TABLE.encode(encoding.removesuffix("-sig"))))
    assert list(table.columns) == list(expected.columns)
    assert table.rows == expected.rows


def test_the_issue_case_ff_fe_then_utf8_is_one_line(cli, tmp_path):
    """Issue 23 item 4: a file beginning with FF FE raised UnicodeDecodeError in five commands."""
    path = _write(tmp_path / "g2.csv", b"\xff\xfe" + TABLE.encode())
    for args in (["fit", "supervised", path], ["fit", "distillation", path], ["capacity-gap", "--runs", path],
                 ["teacher", "--student-params", "1B", "--student-tokens", "20B", "--candidates", path],
                 ["report", path]):
        code, _, err = cli(*args)
        assert code == 2 and "byte-order mark" in err and "UTF-8" in err, err
        one_line(code, err)


def test_a_marked_unicode_corpus_is_read_and_an_unreadable_one_is_one_line(tmp_path):
    from distillscale.data.sources import check_corpus

    text = "def f(x):\n    return x  # ünïcode\n"
    for encoding, bom in BOMS.items():
        _write(tmp_path / encoding / "a.py", bom + text.encode(encoding.removesuffix("-sig")))
        corpus = check_corpus(str(tmp_path / encoding))
        assert list(corpus.documents(None, _stats())) == [text]
    _write(tmp_path / "binary" / "a.bin", b"\xff\xd8\xff\xe0" + bytes(range(256)))
    with pytest.raises(UserError, match="holds no text"):
        check_corpus(str(tmp_path / "binary"))


FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(prefix=st.sampled_from([b""] + list(BOMS.values())), body=st.binary(max_size=300),
       text=st.sampled_from([b"", TABLE.encode(), b'name = "x"\n[data]\n', b'{"format": "distillscale.laws/1"}']))
def test_random_bytes_after_any_mark_are_decoded_or_refused_in_one_line(prefix, body, text):
    from distillscale.io import decode_text

    data = prefix + text + body
    for fallback in ((), ("cp1252", "latin-1")):
        try:
            decoded = decode_text(data, "file x", fallback)
        except UserError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("file x ")
        else:
            assert not any(ord(c) < 0x20 and c not in "\t\n\r\f" for c in decoded)


# --- law files, field by field ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def law_record() -> dict:
    """A law file with every field a fit writes (bootstrap, backtest, extrapolation error, data range)
    and a distillation law."""
    n = np.array([1e7, 3e7, 1e8, 3e8, 1e9])
    runs = pd.DataFrame([(N, D, 2 + 400 / N ** 0.34 + 400 / D ** 0.28) for N in n for D in (1e9, 3e9, 1e10)],
                        columns=["params", "tokens", "loss"])
    record = ds.fit_supervised(runs, form="chinchilla", bootstrap=20).laws("fitted").to_dict()
    record["distillation"] = load_laws("busbridge2025").to_dict()["distillation"]
    record["supervised"]["fit"]["bootstrap"]["samples"] = record["supervised"]["fit"]["bootstrap"]["samples"][:3]
    return record


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value and len(value) <= 4:
        for i, child in enumerate(value):
            yield from _leaves(child, (*path, i))
    else:
        yield path


MUTATIONS = {"text": "x", "true": True, "negative": -1.0, "zero": 0, "nan": math.nan, "inf": math.inf,
             "huge": 1e308, "null": None, "missing": "MISSING", "list": [1], "extra": "EXTRA"}


@pytest.mark.slow
def test_law_files_mutated_field_by_field_are_refused_naming_the_field_or_predict_finitely(law_record, tmp_path):
    from distillscale.laws.predict import predict_distillation, predict_supervised

    path = tmp_path / "law.json"
    checked = 0
    for leaf in _leaves(law_record):
        if "samples" in leaf:
            continue
        for mutation, value in MUTATIONS.items():
            record = copy.deepcopy(law_record)
            owner = record
            for key in leaf[:-1]:
                owner = owner[key]
            if mutation == "missing":
                if not isinstance(owner, dict):
                    continue
                del owner[leaf[-1]]
            elif mutation == "extra":
                if not isinstance(owner, dict):
                    continue
                owner["colour"] = "blue"
            else:
                owner[leaf[-1]] = value
            path.write_text(json.dumps(record, allow_nan=True))
            checked += 1
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy overflow warnings are failures
                try:
                    laws = load_laws(path)
                    losses = [predict_supervised(laws, 1e9, 2e10).prediction.value,
                              predict_distillation(laws, 1e9, 2e10, teacher_loss=2.2).prediction.value]
                except UserError as exc:
                    message = str(exc)
                    if "no better than a uniform guess" in message:   # a law that loads, its prediction refused
                        assert "\n" not in message, message
                        continue
                    assert "\n" not in message and str(path) in message, message
                    field = (*leaf[:-1], "colour") if mutation == "extra" else leaf
                    if field[0] != "format":  # a wrong format is "not a distillscale law file"
                        assert ".".join(str(part) for part in field[:2]) in message, (leaf, mutation, message)
                    continue
            assert all(math.isfinite(loss) for loss in losses), (leaf, mutation, losses)
    assert checked > 1000


@pytest.mark.parametrize("change, message", [
    (("supervised", "fit", "level", 5), "supervised.fit.level = 5"),
    (("compute", "n_ctx", "x"), "compute.n_ctx = 'x'"),
    (("compute", "aspect_ratio", 0), "compute.aspect_ratio = 0"),
    (("supervised", "fit", "extrapolation_error", "q", -0.1), "supervised.fit.extrapolation_error.q = -0.1"),
    (("supervised", "fit", "data_range", "params", [1e9, 1e7]), "params runs from 1e+09 down to 1e+07"),
    (("supervised", "form", "nonsense"), "supervised.form = 'nonsense'"),
    (("supervised", "coefficients", "gamma", True), "supervised.coefficients.gamma = True"),
    (("supervised", "coefficients", "alpha", 1e308), "supervised.coefficients.alpha = 1e+308"),
    (("name", "\x1b[31mred\x1b[0m"), "name = '\\x1b[31mred"),
])
def test_the_issue_law_files_are_one_line_naming_the_field(cli, law_record, tmp_path, change, message):
    record = copy.deepcopy(law_record)
    *keys, last, value = change
    owner = record
    for key in keys:
        owner = owner[key]
    owner[last] = value
    law = _write(tmp_path / "law.json", json.dumps(record).encode())
    runs = _write(tmp_path / "students.csv", b"student_params,student_tokens,teacher_loss,loss\n1e8,1e9,2.5,3\n")
    for args in (["predict", "supervised", "--law", law, "--params", "1B", "--tokens", "20B"],
                 ["plan", "--law", law, "--compute", "1e21"],
                 ["fit", "distillation", runs, "--supervised-law", law, "--out", tmp_path / "d.json"]):
        code, out, err = cli(*args)
        assert code == 2 and message in err and "\x1b" not in err + out, err
        one_line(code, err)
    assert not (tmp_path / "d.json").exists()  # the bad field is never copied into a new law


def test_old_and_hand_written_law_files_still_load(tmp_path):
    hand = {"format": "distillscale.laws/1", "name": "mine",
            "supervised": {"coefficients": {"E": 1.7, "A": 400, "B": 410, "alpha": 0.34, "beta": 0.28}}}
    assert load_laws(_write(tmp_path / "hand.json", json.dumps(hand).encode())).supervised.gamma == 1.0
    for preset in ("busbridge2025", "chinchilla2022", "epoch2024"):
        record = load_laws(preset).to_dict()
        assert load_laws(_write(tmp_path / f"{preset}.json", json.dumps(record).encode())).to_dict() == record


# --- numbers, paths and corpora -------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["predict", "supervised", "--params", "1e-300", "--tokens", "1e-300"], "--params = 1e-300 is outside"),
    (["predict", "supervised", "--params", "1B", "--tokens", "1e30"], "--tokens = 1e+30 is outside"),
    (["plan", "--compute", "1e40"], "--compute = 1e+40 is outside"),
    (["plan", "--compute", "1e21", "--student-params", "1e20"], "--student-params = 1e+20 is outside"),
])
def test_absurd_quantities_are_refused_up_front(cli, args, needle):
    code, out, err = cli(*args)
    assert code == 2 and needle in err and out == "", err
    one_line(code, err)


def test_absurd_quantities_in_configs_and_specs_are_refused(cli, stubbed):
    from distillscale.report.demo import builtin_spec

    config = _write(stubbed / "t.toml", b'tokens = "1e30"\nn_layers = 1\n')
    code, _, err = cli("train", "--config", config, "--out", stubbed / "run")
    assert code == 2 and "tokens = 1e+30 is outside the range of tokens" in err, err
    spec = re.sub(r"tokens_per_param = [^\n]*", "tokens_per_param = 1e30", builtin_spec(quick=True).read_text(),
                  count=1)
    code, _, err = cli("sweep", "run", _write(stubbed / "s.toml", spec.encode()), "--out", stubbed / "sweep")
    assert code == 2 and "tokens_per_param = 1e+30 is outside" in err, err
    with pytest.raises(ds.UserError, match="compute = 1e\\+40 is outside"):
        ds.plan("busbridge2025", compute=1e40)
    from distillscale.laws.predict import predict_supervised

    with pytest.raises(ds.UserError, match="params = 1e-300 is outside"):
        predict_supervised(load_laws("epoch2024"), 1e-300, 1e9)


@pytest.mark.parametrize("args", [
    ["train", "--data", "", "--out", "run", "--n-layers", "1", "--tokens", "1k"],
    ["train", "--data=", "--out", "run", "--n-layers", "1", "--tokens", "1k"],
    ["train", "--out", "", "--n-layers", "1", "--tokens", "1k"],
    ["fit", "supervised", ""],
    ["fit", "supervised", "good.csv", "--out", ""],
    ["report", ""],
    ["export-hf", "", "out"],
    ["plan", "--compute", "1e21", "--plot", ""],
    ["teacher", "--student-params", "1B", "--student-tokens", "20B", "--candidates", ""],
])
def test_an_empty_path_is_refused_like_data_prepare_does(cli, stubbed, args):
    _write(stubbed / "good.csv", TABLE.encode())
    before = sorted(p.name for p in stubbed.iterdir())
    code, _, err = cli(*args)
    assert code == 2 and "is empty: give a path" in err, err
    one_line(code, err)
    assert sorted(p.name for p in stubbed.iterdir()) == before


def test_an_empty_path_in_a_config_is_refused(cli, stubbed):
    config = _write(stubbed / "t.toml", b'data = ""\nn_layers = 1\ntokens = "1k"\n')
    code, _, err = cli("train", "--config", config, "--out", stubbed / "run")
    assert code == 2 and "'data'" in err and "is empty" in err, err


@pytest.mark.parametrize("data", ["empty.csv", "missing-dir", "binary.bin"])
def test_a_sweep_checks_its_corpus_once_before_any_run(cli, tmp_path, monkeypatch, data):
    from distillscale.report.demo import builtin_spec

    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "empty.csv", b"")
    _write(tmp_path / "binary.bin", bytes(range(256)) * 4)
    import distillscale.sweeps.runner as runner

    monkeypatch.setattr(runner, "_Scheduler", lambda *a, **k: pytest.fail("a run was started"))
    spec = builtin_spec(quick=True).read_text().replace("[data]\n", f'[data]\npath = "{data}"\n')
    code, _, err = cli("sweep", "run", _write(tmp_path / "spec.toml", spec.encode()), "--out", tmp_path / "sweep")
    assert code == 2 and ("holds no text" in err or "does not exist" in err), err
    one_line(code, err)
    assert not (tmp_path / "sweep").exists()
    if data != "missing-dir":
        code, _, err = cli("demo", "--quick", "--data", tmp_path / data, "--out", tmp_path / "demo")
        assert code == 2 and "holds no text" in err, err
        one_line(code, err)
        assert not (tmp_path / "demo").exists()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _stats():
    from distillscale.data.sources import ReadStats

    return ReadStats()
