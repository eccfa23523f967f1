"""Fuzzing the CLI in-process: random run files (CSV, JSONL), law files, TOML configs and sweep specs,
and random flag combinations of every command. Whatever comes in, `distillscale` exits 0 or 2,
prints no traceback, and writes nothing outside its temporary directory.

The expensive work behind the commands (fits, training, sweeps, exports) is replaced by a stub that
ends the command with status 0: what is fuzzed is everything before it, where input is checked.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import pytest
import typer

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from distillscale.cli import app, main  # noqa: E402
from distillscale.laws import load_laws  # noqa: E402

# Examples per test in the suite (about a minute in all); set DISTILLSCALE_FUZZ_EXAMPLES for more.
EXAMPLES = int(os.environ.get("DISTILLSCALE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Where the work starts once the input has been accepted.
EXPENSIVE = [
    ("distillscale.laws.fitting", "SupervisedLawFitter.fit"),
    ("distillscale.laws.fitting", "DistillationLawFitter.fit"),
    ("distillscale.training.recipe", "train"),
    ("distillscale.training.distillation", "distill"),
    ("distillscale.training.logit_cache.writer", "cache_logits"),
    ("distillscale.data.prepare", "prepare_data"),
    ("distillscale.model.hf_export", "export_hf"),
    ("distillscale.report.report", "write_report"),
    ("distillscale.report.demo", "run_demo"),
    ("distillscale.sweeps.runner", "run_sweep"),
    ("distillscale.regime.experiment", "run_large_batch_experiment"),
    ("distillscale.planning.plots", "pyplot"),  # drawing a figure takes seconds
]

NUMBERS = ["0", "-1", "1", "2.5", "1e400", "-1e400", "nan", "inf", "1e-400", "546M", "1.2B", "10000000",
           "3,5", "1_000", "0x10", "1e21", "2T", "-0", "+3", ".5", "5."]
TEXT = ["", " ", "abc", "'", '"', "(", "(((", "loss > -1", "N > 'abc'", "`x`", "\\", "é", "\x00", "x" * 300,
        "../..", "/", "-", "--", "--help", "a\nb", "(" * 500 + "loss > 1" + ")" * 500]
COLUMNS = ["params", "tokens", "loss", "N", "D", "Model Size", "Training FLOP", "student_params",
           "student_tokens", "teacher_loss", "teacher_params", "teacher_tokens", "kind", "x"]


def _leaf_commands():
    found = []

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _leaf_commands()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A working directory, data cache and matplotlib config inside a temporary directory, the
    expensive work stubbed, and an audit hook that records every write outside the directory."""
    root = tmp_path_factory.mktemp("fuzz").resolve()
    outside: list[str] = []
    watching = [False]
    allowed = (str(root), os.path.realpath(tempfile.gettempdir()) + "/pytest-of-", "/dev/")

    def audit(event, args):
        if not watching[0]:
            return
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree",
                       "os.truncate", "os.chmod"):
            path, writes = args[0], True
        else:
            return
        if writes and isinstance(path, (str, bytes, os.PathLike)):
            resolved = os.path.realpath(os.fsdecode(path))
            if not resolved.startswith(allowed):
                outside.append(f"{event} {resolved}")

    sys.addaudithook(audit)  # hooks cannot be removed: `watching` turns it off after the module

    class Accepted(typer.Exit):
        """The input got through to the expensive work."""

    def accept(*args, **kwargs):
        raise Accepted(0)

    with pytest.MonkeyPatch.context() as patch:
        import importlib

        for module_name, attribute in EXPENSIVE:
            owner = importlib.import_module(module_name)
            *classes, name = attribute.split(".")
            for class_name in classes:
                owner = getattr(owner, class_name)
            patch.setattr(owner, name, accept)
        patch.chdir(root)
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        patch.setenv("MPLCONFIGDIR", str(root / "mpl"))
        yield root, outside, watching


def run(sandbox, args, capsys) -> tuple[int, str]:
    root, outside, watching = sandbox
    watching[0] = True  # the CLI's writes only, not those of hypothesis or pytest
    try:
        code = main([str(a) for a in args])  # any exception but usage errors propagates: a failure
    finally:
        watching[0] = False
    out, err = capsys.readouterr()
    assert code in (0, 2), (args, code, err)
    assert "Traceback" not in err, (args, err)
    if code == 2:
        assert err.startswith("distillscale: error: ") and len(err.strip().splitlines()) == 1, (args, err)
    assert not outside, (args, outside)
    return code, out


# --- file contents --------------------------------------------------------------------------------

cells = st.one_of(st.sampled_from(NUMBERS + TEXT[:12]), st.floats(allow_nan=True, allow_infinity=True).map(str),
                  st.integers(-10**30, 10**30).map(str), st.text(max_size=8))


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=6))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 1), max_size=12))
    text = "\n".join(delimiter.join(row) for row in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(-10**20, 10**20), st.sampled_from(NUMBERS),
              st.text(max_size=6)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6)


@st.composite
def jsonl_files(draw) -> bytes:
    lines = draw(st.lists(st.one_of(
        st.dictionaries(st.sampled_from(COLUMNS), json_values, max_size=6).map(json.dumps),
        json_values.map(json.dumps), st.text(max_size=20)), max_size=10))
    return "\n".join(lines).encode("utf-8", errors="replace")


# Mostly numbers, the likely hand edits, some of them impossible (NaN, negative, overflowing).
coefficients = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-10, 10),
                         st.sampled_from([0, -1, 1e308, -0.0, 1e-308]), json_values)


@st.composite
def law_files(draw) -> bytes:
    record = load_laws("busbridge2025").to_dict()
    for _ in range(draw(st.integers(0, 3))):
        part = draw(st.sampled_from(["supervised", "distillation"]))
        name = draw(st.sampled_from(sorted(record[part]["coefficients"])))
        record[part]["coefficients"][name] = draw(coefficients)
    if draw(st.booleans()):
        key = draw(st.sampled_from(["format", "name", "compute", "supervised", "distillation", "source"]))
        record[key] = draw(json_values)
    text = json.dumps(record, allow_nan=True)
    return (text if draw(st.integers(0, 9)) else text[:draw(st.integers(0, len(text)))]).encode()


toml_values = st.one_of(st.integers(-10**6, 10**12).map(str), st.floats(allow_nan=False).map(repr),
                        st.sampled_from(['"1.2B"', '"abc"', "true", "false", "[1, 2]", "[]", '""', "nan", "inf",
                                         '"../x"', "{a = 1}"]))
TOML_KEYS = ["n_layers", "tokens", "tokens_per_param", "lr", "batch_size", "seq_len", "vocab_size", "data",
             "out", "overwrite", "name", "kd", "temperature", "max_bytes", "aspect_ratio", "unknown_key"]


@st.composite
def toml_files(draw) -> bytes:
    from distillscale.report.demo import builtin_spec

    lines = builtin_spec(quick=True).read_text().splitlines() if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 4))):
        line = f"{draw(st.sampled_from(TOML_KEYS))} = {draw(toml_values)}"
        lines.insert(draw(st.integers(0, len(lines))), line)
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines).encode("utf-8", errors="replace")


FILES = {"runs.csv": csv_files(), "runs.jsonl": jsonl_files(), "law.json": law_files(), "spec.toml": toml_files()}


# --- command lines --------------------------------------------------------------------------------

def _values(root: Path):
    paths = [str(root / name) for name in (*FILES, "missing.csv", "out", "out.json", "cache")] + [str(root)]
    return st.one_of(st.sampled_from(NUMBERS), st.sampled_from(TEXT), st.sampled_from(paths),
                     st.sampled_from(["busbridge2025", "epoch2024", "chinchilla2022", "cpu", "csv", "jsonl",
                                      "forward-kl", "all", "teacher-inference", "simple", "png", "out.png"]))


@st.composite
def command_lines(draw, root: Path) -> list[str]:
    path, command = draw(st.sampled_from(COMMANDS))
    values = _values(root)
    args = list(path)
    for param in command.params:
        if param.param_type_name == "argument" and draw(st.integers(0, 9)):
            args.append(draw(values))
    options = [p for p in command.params if p.param_type_name == "option" and p.opts[0] not in ("--help",)]
    for param in draw(st.lists(st.sampled_from(options), max_size=5)) if options else []:
        args.append(param.opts[0])
        if not param.is_flag:
            args.append(draw(values))
    if draw(st.integers(0, 9)) == 0:
        args.insert(draw(st.integers(0, len(args))), draw(st.sampled_from(TEXT + ["--nope", "-x"])))
    return args


def _write_files(root: Path, contents: dict[str, bytes]) -> None:
    for name, data in contents.items():
        (root / name).write_bytes(data)


@FUZZ
@given(data=st.data())
def test_commands_reading_fuzzed_files(sandbox, capsys, data):
    root = sandbox[0]
    _write_files(root, {name: data.draw(strategy, label=name) for name, strategy in FILES.items()})
    for args in (["fit", "supervised", root / "runs.csv", "--bootstrap", "0"],
                 ["fit", "supervised", root / "runs.jsonl", "--fit-where", data.draw(st.sampled_from(TEXT[7:9] + TEXT[-1:]))],
                 ["fit", "distillation", root / "runs.csv", "--bootstrap", "0"],
                 ["capacity-gap", "--runs", root / "runs.csv"],
                 ["teacher", "--student-params", "1B", "--student-tokens", "20B", "--candidates",
                  root / "runs.jsonl"],
                 ["predict", "distillation", "--law", root / "law.json", "--student-params", "1B",
                  "--student-tokens", "20B", "--teacher-params", "7B", "--teacher-tokens", "1T"],
                 ["train", "--config", root / "spec.toml", "--out", root / "run"],
                 ["sweep", "run", root / "spec.toml", "--out", root / "sweep"]):
        run(sandbox, args, capsys)
    # A law file is refused, or it predicts a finite loss.
    code, out = run(sandbox, ["predict", "supervised", "--law", root / "law.json", "--params", "1B",
                              "--tokens", "20B", "--json"], capsys)
    assert code == 2 or math.isfinite(json.loads(out)["loss"])


@FUZZ
@given(data=st.data())
def test_random_command_lines(sandbox, capsys, data):
    root = sandbox[0]
    _write_files(root, {name: data.draw(strategy, label=name) for name, strategy in FILES.items()})
    run(sandbox, data.draw(command_lines(root), label="argv"), capsys)
