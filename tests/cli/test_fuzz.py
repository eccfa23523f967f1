"""Fuzzing the CLI in-process: random run files (CSV, JSONL), law files, TOML configs and sweep specs,
and random flag combinations of every command. Whatever comes in, `distillscale` exits 0 or 2,
prints no traceback, and writes nothing outside its temporary directory.

The expensive work behind the commands (fits, training, sweeps, exports) is replaced by a stub that
ends the command with status 0: what is fuzzed is everything before it, where input is checked.
"""

from __future__ import annotations

import itertools
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

from distillscale.cli import main  # noqa: E402
from distillscale.laws import load_laws  # noqa: E402
from distillscale.laws.downstream import fit_downstream  # noqa: E402
from tests.cli.conftest import leaf_commands  # noqa: E402

# Examples per test in the suite (about a minute in all); set DISTILLSCALE_FUZZ_EXAMPLES for more.
EXAMPLES = int(os.environ.get("DISTILLSCALE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Where the work starts once the input has been accepted.
EXPENSIVE = [
    ("distillscale.laws.fitting", "SupervisedLawFitter.fit"),
    ("distillscale.laws.fitting", "DistillationLawFitter.fit"),
    ("distillscale.laws.fitting", "_LogLossFitter._fit_subsets"),  # the backtest's fits
    ("distillscale.training.recipe", "train"),
    ("distillscale.training.distillation", "distill"),
    ("distillscale.training.logit_cache.writer", "cache_logits"),
    ("distillscale.serve.teacher", "TeacherService"),  # loading a teacher, then serving forever
    ("distillscale.data.prepare", "prepare_data"),
    ("distillscale.model.hf_export", "export_hf"),
    ("distillscale.training.pruning", "prune_teacher"),
    ("distillscale.report.report", "write_report"),
    ("distillscale.report.demo", "run_demo"),
    ("distillscale.sweeps.runner", "run_sweep"),
    ("distillscale.regime.experiment", "run_large_batch_experiment"),
    ("distillscale.planning.plots", "pyplot"),  # drawing a figure takes seconds
    ("distillscale.evaluation.loss", "evaluate_loss"),  # scoring a model on a corpus
]

NUMBERS = ["0", "-1", "1", "2.5", "1e400", "-1e400", "nan", "inf", "1e-400", "546M", "1.2B", "10000000",
           "3,5", "1_000", "0x10", "1e21", "2T", "-0", "+3", ".5", "5."]
TEXT = ["", " ", "abc", "'", '"', "(", "(((", "loss > -1", "N > 'abc'", "`x`", "\\", "é", "\x00", "x" * 300,
        "../..", "/", "-", "--", "--help", "a\nb", "(" * 500 + "loss > 1" + ")" * 500]
# User text that format templates, rich markup and terminals read as their own: none may change a
# message's class, break it, or reach the terminal raw.
HOSTILE = ["{}", "{a}", "{0}", "%s", "%(x)s", "[bold]x", "[/x]", "[link=x]y", "\x1b[31mred", "a\rb", "\x00", "{", "}"]
TEXT += HOSTILE
COLUMNS = ["params", "tokens", "loss", "N", "D", "Model Size", "Training FLOP", "student_params",
           "student_tokens", "teacher_loss", "teacher_params", "teacher_tokens", "kind", "x"]


COMMANDS = leaf_commands()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, stub_out):
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
        stub_out(patch, EXPENSIVE, accept)
        patch.chdir(root)
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        patch.setenv("MPLCONFIGDIR", str(root / "mpl"))
        yield root, outside, watching


_last_error = [""]  # the stderr of the latest run()


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
    if code == 2:   # one error line, after the lines of a served teacher's retries (what it waited for)
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning: the teacher server at ")]
        assert len(lines) == 1 and lines[0].startswith("distillscale: error: "), (args, err)
    _last_error[0] = err
    assert not outside, (args, outside)
    assert not any(c in out + err for c in "\x1b\x00\r"), (args, out + err)  # control characters shown escaped
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


@pytest.mark.slow
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


# --- hostile text in every flag -------------------------------------------------------------------

def _valid_files(root: Path) -> dict[str, Path]:
    """Inputs the base command lines read, each valid, so that a hostile value gets as far as it can."""
    from distillscale.report.demo import builtin_spec

    files = {"law": root / "valid_law.json", "runs": root / "valid_runs.csv",
             "students": root / "valid_students.csv", "spec": root / "valid_spec.toml",
             "grid": root / "valid_grid.csv", "downstream": root / "valid_downstream.csv",
             "downstream_law": root / "valid_downstream_law.json"}
    load_laws("busbridge2025").save(files["law"]) if not files["law"].exists() else None
    rows = [(n, n * r, 10 ** (0.3 + 250 / n ** 0.34) + 1.7) for n in (1e7, 3e7, 1e8, 3e8) for r in (10, 20, 40)]
    files["runs"].write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{loss:.4f}\n" for n, d, loss in rows))
    files["students"].write_text("student_params,student_tokens,teacher_loss,teacher_params,student_loss,loss\n"
                                 "1e8,2e9,2.5,1e9,3.1,3.1\n1e8,2e9,2.8,2e9,3.0,3.0\n2e8,4e9,2.5,1e9,2.9,2.9\n"
                                 "2e8,4e9,2.8,4e9,2.8,2.8\n")
    files["spec"].write_text(builtin_spec(quick=True).read_text())
    grid = [(lr, b, 3 + 0.02 * math.log(lr / 1e-3) ** 2 + 0.01 * math.log(b / 2 ** 19) ** 2)
            for lr in (5e-4, 1e-3, 2e-3) for b in (2 ** 18, 2 ** 19, 2 ** 20)]
    files["grid"].write_text("params,tokens,lr,batch_tokens,loss\n" + "".join(
        f"1e8,2e9,{lr:g},{b:g},{loss:.4f}\n" for lr, b, loss in grid))
    losses = [2.6 + 0.2 * i for i in range(8)]
    errors = [0.75 - 12 * math.exp(-1.3 * loss) for loss in losses]
    files["downstream"].write_text("loss,error\n" + "".join(f"{l:g},{e:.5f}\n" for l, e in zip(losses, errors)))
    if not files["downstream_law"].exists():
        fit_downstream(losses, errors, holdout=0, bootstrap=0).save(files["downstream_law"])
    return files


def _base_lines(root: Path) -> dict[str, list[str]]:
    f = {name: str(path) for name, path in _valid_files(root).items()}
    return {
        "plan": ["--compute", "1e21"], "distill-map": ["--out", str(root / "map.png")],
        "teacher": ["--student-params", "1B", "--student-tokens", "20B"], "capacity-gap": [],
        "serve": ["--port", "-1"],  # refused before listening: the server itself is fuzzed over HTTP
        "serve-teacher": [str(root), "--port", "-1"],  # refused before loading a teacher
        "train": ["--data", str(root)], "distill": ["--data", str(root)], "cache-logits": ["--data", str(root)],
        "export-hf": [str(root), str(root / "export")], "report": [f["runs"]], "demo": [],
        "prune": [str(root), "--out", str(root / "pruned"), "--d-model", "8"],
        "predict supervised": ["--params", "1B", "--tokens", "20B"],
        "predict distillation": ["--student-params", "1B", "--student-tokens", "20B", "--teacher-loss", "2.5"],
        "fit supervised": [f["runs"], "--bootstrap", "0", "--no-backtest", "--form", "chinchilla"], "fit distillation": [f["students"], "--bootstrap", "0"],
        "predict hyperparameters": ["--params", "1B", "--tokens", "20B"], "fit hyperparameters": [f["grid"], "--bootstrap", "0"],
        "eval": [str(root), "--tasks", "tiny"],  # refused before lm-eval loads: root is no run or model
        "loss": [str(root)],  # refused before any scoring: root is no run or model
        "fit downstream": [f["downstream"], "--bootstrap", "0", "--holdout", "0"],
        "predict downstream": ["--law", f["downstream_law"], "--loss", "3.0"],
        "data prepare": ["--data", str(root)], "sweep run": [f["spec"]], "sweep plan": [f["spec"]],
        "sweep status": [str(root)],
        "sweep export": [str(root)], "experiment large-batch": [],
        "ladder": ["--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19"],
    }


@pytest.mark.slow
def test_hostile_text_in_every_flag_of_every_command(sandbox, capsys):
    """Each option and argument of each command, given text with braces, percent signs, rich markup
    and control characters: one line and exit 2 (or success), and nothing raw on the terminal."""
    root = sandbox[0]
    bases = _base_lines(root)
    assert set(bases) == {" ".join(path) for path, _ in COMMANDS}, "a command without a base line"
    turn = itertools.count()
    for path, command in COMMANDS:
        base = bases[" ".join(path)]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        options = [p for p in command.params if p.param_type_name == "option" and not p.is_flag
                   and p.opts[0] != "--help"]
        for param in arguments + options:
            for hostile in (HOSTILE[next(turn) % len(HOSTILE)],):  # in turn: each string, many flags
                if param.param_type_name == "argument":
                    args = list(base)
                    position = arguments.index(param)
                    args[position:position + 1] = [hostile]
                else:
                    args = [*base, param.opts[0], hostile]
                run(sandbox, [*path, *args], capsys)


URL = "http://user:secret@127.0.0.1:9/v1"  # nothing listens there: a command that asks it is refused at once


@pytest.mark.slow
def test_a_url_given_for_any_path_is_refused_in_one_line_that_shows_it_whole_and_redacted(sandbox, capsys,
                                                                                           monkeypatch):
    """Each argument and option of each command that takes a path (read as typed: <path> arguments,
    PATH options), given a server's URL with credentials where nothing listens: exit 2, one line that
    names it as typed with its credentials hidden (never `http:/host`, never the password), whether
    the setting refuses a URL or (plan --teacher-model) asks the server."""
    import distillscale.serve.server as server
    from distillscale.cli_options import is_path_parameter

    def no_server(*args, **kwargs):
        raise typer.Exit(0)

    monkeypatch.setattr(server, "make_server", no_server)  # `serve` with a valid port: stopped before listening
    bases = _base_lines(sandbox[0]) | {"serve": ["--port", "0"], "serve-teacher": [str(sandbox[0]), "--port", "0"],
                                       "plan": ["--compute", "1e21", "--student-params", "546M"]}  # the server asked
    tried = []
    for path, command in COMMANDS:
        base = bases[" ".join(path)]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        for param in command.params:
            if not is_path_parameter(param):
                continue
            if param.param_type_name == "argument":
                position = arguments.index(param)
                args = [*base[:position], URL, *base[position + 1:]]
            else:
                args = [*base, param.opts[0], URL]
            code, _ = run(sandbox, [*path, *args], capsys)
            err = _last_error[0]
            assert code == 2 and "http://***@127.0.0.1:9/v1" in err and "secret" not in err, (path, args, err)
            tried.append(" ".join(path) + " " + (param.opts[0] if param.param_type_name == "option" else param.name))
    assert len(tried) >= 60, tried  # every command's paths were found (68 today)
    assert {"export-hf run_dir", "serve-teacher teacher", "train --data", "train --config", "prune teacher",
            "plan --student-model", "plan --teacher-model", "demo --teacher"} <= set(tried)


def _float_options(command) -> list[str]:
    """The flags of `command` that take a float (its settings' annotations: float or float | None)."""
    annotations = getattr(command.callback, "__annotations__", {})
    return [p.opts[0] for p in command.params if p.param_type_name == "option" and not p.is_flag
            and annotations.get(p.name) in (float, float | None)]


EDGE_FLOATS = ["0", "1", "-1", "1.5", "-inf"]  # each flag one of these in turn, and nan and inf


@pytest.mark.slow
def test_every_float_option_takes_zero_one_negative_nan_and_inf_in_one_line(sandbox, capsys):
    """Each float flag of each command given nan, inf and in turn 0, 1, a negative number, 1.5 or -inf:
    exit 0 or 2 with one line (`run`), never a traceback; nan, a value no setting means, is refused."""
    bases = _base_lines(sandbox[0])
    tried, failed, turn = 0, [], itertools.count()
    for path, command in COMMANDS:
        for flag in _float_options(command):
            for value in ("nan", "inf", EDGE_FLOATS[next(turn) % len(EDGE_FLOATS)]):
                line = [*path, *bases[" ".join(path)], flag, value]
                try:
                    code, _ = run(sandbox, line, capsys)
                    assert code == 2 or value != "nan", "nan accepted"
                except Exception as exc:  # noqa: BLE001 (every failing line reported at once)
                    failed.append(f"{' '.join(map(str, line))}: {type(exc).__name__} {str(exc)[:200]}")
                tried += 1
    assert not failed, "\n".join(failed)
    assert tried >= 3 * 25  # every command's float flags were found (28 today)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_the_python_api_is_a_parameter_error(hostile):
    import distillscale as ds

    for call in (lambda: ds.plan("busbridge2025", compute=1e21, scenario=hostile),
                 lambda: ds.plan("busbridge2025", compute=hostile),
                 lambda: ds.plan("busbridge2025", compute={hostile: 1}),
                 lambda: ds.plan("busbridge2025", compute=1e21, flops=hostile),
                 lambda: ds.plan_supervised("busbridge2025", compute=hostile),
                 lambda: ds.fit_supervised({"params": [1e8, 2e8], "tokens": [2e9, 4e9], "loss": [3, 2.9]},
                                           form=hostile),
                 lambda: ds.fit_supervised({"params": [1e8, 2e8], "tokens": [2e9, 4e9], "loss": [3, 2.9]},
                                           params=hostile),
                 lambda: ds.calibrate({"params": [1e8, 2e8], "tokens": [2e9, 4e9], "loss": [3, 2.9]},
                                      distillation_form=hostile)):
        with pytest.raises(ds.UserError) as caught:
            call()
        assert len(str(caught.value).splitlines()) <= 1


# --- the planner page over HTTP -------------------------------------------------------------------

@pytest.fixture(scope="module")
def planner_page():
    import threading

    from distillscale.serve.api import Planner
    from distillscale.serve.server import make_server

    httpd = make_server(Planner(), host="127.0.0.1", port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def _check_answer(status: int, content_type: str, body: bytes, method: str = "POST") -> dict | None:
    assert 200 <= status < 500, (status, body)  # never a server error, never a dropped connection
    if method == "HEAD" or (method == "GET" and status == 200):  # the page, its files, the law menu
        return None
    assert content_type.startswith("application/json"), (status, content_type, body)
    answer = json.loads(body)
    assert isinstance(answer, dict) and (answer.get("ok") is True) == (status == 200), (status, answer)
    return answer


PAGE_CONTROLS = ["law", "compute", "student", "scenario", "teacher", "teacher_params", "teacher_tokens",
                 "teacher_loss", "student_init", "student_params", "x"]
json_controls = st.dictionaries(st.sampled_from(PAGE_CONTROLS), st.one_of(
    json_values, st.sampled_from(HOSTILE + NUMBERS + ["all", "best", "best-case", "teacher-inference", "none",
                                                      "tokens", "loss", "busbridge2025", "epoch2024", "pruned", "scratch"]),
    st.integers(-10**400, 10**400)), max_size=6)


@FUZZ
@given(body=st.one_of(json_controls.map(lambda d: json.dumps(d).encode()), json_values.map(
    lambda v: json.dumps(v).encode()), st.binary(max_size=40), st.sampled_from(
    [b"NaN", b'{"compute": NaN}', b'{"compute": 1e999}', b"[" * 3000, b'{"compute": "1e21"' + b"}" * 3,
     b"\xff\xfe{\x00}", b'{"compute": 1' + b"0" * 5000 + b"}"])),
       path=st.sampled_from(["/api/plan", "/api/curve"]))
def test_planner_page_answers_fuzzed_bodies_with_json(planner_page, body, path):
    status, content_type, answer = _request(planner_page, "POST", path, body,
                                            {"Content-Type": "application/json", "Content-Length": str(len(body))})
    _check_answer(status, content_type, answer)


@pytest.mark.parametrize(("method", "path", "body", "headers", "expected"), [
    ("POST", "/api/plan", b'{"compute": "1e21", "scenario": "all"}', None, 400),
    ("POST", "/api/plan", b'{"compute": {"a": 1}}', None, 400),
    ("POST", "/api/plan", b'{"compute": "{a}"}', None, 400),
    ("POST", "/api/plan", b'{"compute": "1e21"}', {"Content-Length": "abc"}, 400),
    ("POST", "/api/plan", b"", {"Content-Length": "-1"}, 400),
    ("POST", "/api/plan", b"", {"Content-Length": "\u00b2"}, 400),  # "²".isdigit(), int("²") fails: was a 500
    ("POST", "/api/plan", b"", {"Content-Length": None}, 411),
    ("POST", "/api/plan", b"x" * 70_000, None, 413),
    ("POST", "/api/plan", b"{}", {"Content-Type": "text/html"}, 415),
    ("POST", "/api/plan", b'{"compute": "1e21"}', None, 200),
    ("POST", "/api/plan", b'{"compute": 1e21}', None, 200),
    ("POST", "/api/nope", b"{}", None, 404),
    ("POST", "/", b"{}", None, 405),
    ("GET", "/api/plan", b"", None, 405),
    ("GET", "/nowhere", b"", None, 404),
    ("PUT", "/api/plan", b"{}", None, 405),
    ("DELETE", "/", b"", None, 405),
    ("HEAD", "/api/plan", b"", None, 405),
])
def test_planner_page_answers_every_request_with_a_status(planner_page, method, path, body, headers, expected):
    given = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    given.update(headers or {})
    status, content_type, answer = _request(planner_page, method, path, body,
                                            {k: v for k, v in given.items() if v is not None})
    assert status == expected, answer
    _check_answer(status, content_type, answer, method)


def test_planner_page_does_not_wait_for_a_body_that_was_never_sent(planner_page):
    """Content-Length larger than the body: the server answers (408) once its timeout passes; a
    negative one is refused at once (it used to hang)."""
    import socket

    with socket.create_connection(("127.0.0.1", planner_page), timeout=30) as connection:
        connection.sendall(b"POST /api/plan HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        assert connection.recv(100).startswith(b"HTTP/1.0 400")


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["Content-Length", "Content-Type", "Transfer-Encoding", "X-A"]),
                               st.sampled_from(["abc", "-1", "0", "1", "99999999999999999999", " 2", "+2", "1e3",
                                                "application/json", "text/plain", "x/y; charset=utf-16", "chunked",
                                                "{}", "%s"]), max_size=3),
       method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "PATCH"]),
       path=st.sampled_from(["/", "/api/plan", "/api/curve", "/api/laws", "/x", "/api/plan?x=1", "//", "/%7B%7D"]))
def test_planner_page_answers_fuzzed_headers(planner_page, headers, method, path):
    body = b'{"compute": "1e21"}'
    status, content_type, answer = _request(planner_page, method, path, body[:int(headers["Content-Length"])]
                                            if headers.get("Content-Length", "").isdigit()
                                            and int(headers["Content-Length"]) < 100 else body, headers)
    if status != 408:
        _check_answer(status, content_type, answer, method)


@pytest.mark.slow
def test_a_refused_value_names_its_own_flag(sandbox, capsys):
    """A value no flag accepts ('bogus-choice'): where the message quotes it, it names the flag that
    took it, not another flag of the command (`fit distillation --form` once said --supervised-form)."""
    root = sandbox[0]
    bases = _base_lines(root)
    for path, command in COMMANDS:
        for param in command.params:
            if param.param_type_name != "option" or param.is_flag or param.opts[0] in ("--help", "--out", "--name"):
                continue  # (any text is a fine --out or --name)
            code, _ = run(sandbox, [*path, *bases[" ".join(path)], param.opts[0], "bogus-choice"], capsys)
            err = capsys.readouterr().err if code == 0 else _last_error[0]
            if code == 2 and "bogus-choice" in err:
                others = [flag for p in command.params if p.param_type_name == "option" and p is not param
                          for flag in p.opts if flag in err and not any(flag in own for own in param.opts)]
                assert not others, (path, param.opts, err)
                if "unknown" in err or "one of" in err:  # a choice: the message names the flag
                    assert any(flag in err or flag.lstrip("-").replace("-", " ") in err
                               for flag in param.opts), (path, param.opts, err)
