"""Every table the CLI prints, at 80 and 120 columns (a pipe, a small window) and wide (issue 71): each
number of the command's --json output that its text shows wide is shown whole at 80 and 120 too (no
digit cut, no number folded over two lines: `5.3e+19` never reads `5.3e+1`, `0.01589` never `0.0158`
then `9`).

A number is found in the text as a token (1,234, 2.72B, 5.3e+19, 45.0%, 0.000263) that equals it to
the digits printed. Which JSON numbers a command shows is read from its own wide output, so the test
holds as the tables change; each case also names a few it must show. A new table-printing command
gets a case here (see the console.Table docstring)."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest

import distillscale.console as console_module
from tests.conftest import REPO_ROOT

WIDTHS = (80, 120)
WIDE = 1000
_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "P": 1e15}
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?[KMBTP]?%?(?![\w.]*\d)")


def numbers_in(text: str) -> list[tuple[float, float]]:
    """(value, half the unit of its last printed digit) of each number token of `text`."""
    found = []
    for match in _NUMBER.finditer(text):
        token = match.group().replace(",", "")
        scale = 1.0
        if token.endswith("%"):
            token, scale = token[:-1], 0.01
        if token[-1] in _SUFFIX:
            token, scale = token[:-1], scale * _SUFFIX[token[-1]]
        mantissa, _, exponent = token.lower().partition("e")
        power = -len(mantissa.partition(".")[2]) + (int(exponent) if exponent else 0)
        if abs(power) < 300:  # a run of digits that is no number (an id's hash) can be any length
            found.append((float(token) * scale, 0.5 * 10.0 ** power * scale))
    return found


def precision(value: float, numbers: list[tuple[float, float]]) -> float | None:
    """The finest precision (half a unit of the last digit) of the tokens of `numbers` equal to `value`
    to their digits; None where none is."""
    matches = [tolerance for printed, tolerance in numbers if abs(value - printed) <= tolerance * (1 + 1e-9)]
    return min(matches, default=None)


def shown(value: float, numbers: list[tuple[float, float]], finest: float = math.inf) -> bool:
    """Whether `value` is among `numbers` with every digit it had where printed at `finest` (a number
    whose last digits were cut reads as one rounded coarser: 0.0031724 as 0.00317)."""
    found = precision(value, numbers)
    return found is not None and found <= finest * (1 + 1e-9)


def json_numbers(data) -> list[float]:
    """Every finite, non-zero number of a JSON document (booleans aside), each once."""
    values: set[float] = set()

    def walk(node):
        if isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node) and node:
            values.add(float(node))

    walk(data)
    return sorted(values)


def printed(cli, monkeypatch, args) -> list:
    """What the command printed on stdout, as the calls to the console it made (each renderable, a
    table too, re-rendered at any width by `render`)."""
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(console_module.console, "print", lambda *objects, **kwargs: calls.append((objects, kwargs)))
        code, _, err = cli(*args)
    assert code == 0, err
    return calls


def render(calls: list, width: int) -> str:
    buffer = io.StringIO()
    console = console_module.PlainConsole(file=buffer, width=width, color_system=None)
    for objects, kwargs in calls:
        console.print(*objects, **kwargs)
    return buffer.getvalue()


def run_at(cli, monkeypatch, width: int, args) -> str:
    return render(printed(cli, monkeypatch, args), width)


def check_tables(cli, monkeypatch, args, must_show=(), minimum: int = 5) -> None:
    """The JSON numbers `args` shows wide are shown at 80 and 120 columns; `must_show` are among them."""
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    values = json_numbers(json.loads(out))
    calls = printed(cli, monkeypatch, args)
    assert any(isinstance(obj, console_module.Table) for objects, _ in calls for obj in objects), "no table"
    wide = numbers_in(render(calls, WIDE))
    expected = {value: finest for value in values if (finest := precision(value, wide)) is not None}
    assert len(expected) >= minimum, f"only {len(expected)} JSON numbers in the wide text of {args}"
    for value in must_show:
        assert value in expected, f"{value} not in the wide text of {args}"
    for width in WIDTHS:
        text = render(calls, width)
        numbers = numbers_in(text)
        lost = [value for value, finest in expected.items() if not shown(value, numbers, finest)]
        assert not lost, f"at {width} columns {args} lost {lost[:8]}:\n{text}"


TUNED_SPEC = """
name = "tuned-2b"
[data]
vocab_size = 512
seq_len = 512
[model]
aspect_ratio = 128
head_dim = 64
batch_size = 64
schedule = "wsd"
[teachers]
n_layers = [24, 20]
tokens_per_param = [20, 40]
[tune]
lr = [1e-3, 3e-3, 1e-2]
batch_size = [32, 64, 128]
"""


def test_sweep_plan(cli, monkeypatch, tmp_path):
    """A tuned 2.7B ladder: long run ids, FLOPs of 1.8e+21, 7-digit GPU seconds, fork steps 663590/3317948."""
    spec = tmp_path / "spec.toml"
    spec.write_text(TUNED_SPEC)
    plan = json.loads(cli("sweep", "plan", spec, "--gpus", "8", "--json")[1])
    check_tables(cli, monkeypatch, ("sweep", "plan", spec, "--gpus", "8"),
                 must_show=[plan["runs"][0]["flops"], plan["runs"][0]["device_seconds"]], minimum=8)
    check_tables(cli, monkeypatch, ("sweep", "plan", REPO_ROOT / "src/distillscale/report/micro_sweep.toml",
                                    "--gpus", "none"))


def test_sweep_status(cli, monkeypatch, tmp_path):
    from tests.sweeps.test_status_scoring import _sweep

    _sweep(tmp_path / "sweep", evaluation=True)
    check_tables(cli, monkeypatch, ("sweep", "status", tmp_path / "sweep"), minimum=3)


@pytest.mark.parametrize("args", [
    ("plan", "--compute", "5.3e19", "--gpu", "h100"),  # the four scenarios, the run sheet, GPU-hours
    ("plan", "--compute", "1e21", "--student-params", "546M", "--teacher-params", "7.75B", "--teacher-tokens",
     "155B"),
    ("plan", "--student-params", "546M", "--teacher-params", "7.75B", "--teacher-tokens", "155B", "--compute",
     "1e21", "--on-policy"),
    ("plan", "--law", "chinchilla2022", "--compute", "1e21"),
    ("teacher", "--student-params", "546M", "--student-tokens", "11B"),
    ("capacity-gap",),
    ("predict", "distillation", "--student-params", "546M", "--student-tokens", "11B", "--teacher-loss", "2.1"),
], ids=lambda args: " ".join(args[:2]))
@pytest.mark.slow
def test_planner_tables(cli, monkeypatch, args):
    check_tables(cli, monkeypatch, args)


@pytest.mark.slow
def test_plan_keeps_the_budget_and_every_rate(cli, monkeypatch):
    """The cases of the report: `plan` at 80 columns showed the budget as 5.3e+19 but `sweep plan`'s
    FLOPs as `5.3e+1`, and folded the run sheet's --lr (`0.0158` then `9`)."""
    args = ("plan", "--compute", "5.3e19", "--gpu", "h100")
    rates = [recipe["train_lr"] for recipe in json.loads(cli(*args, "--json")[1])["recipes"].values()]
    calls = printed(cli, monkeypatch, args)
    wide, text = numbers_in(render(calls, WIDE)), render(calls, 80)
    assert "5.3e+19" in text.split() and len(rates) >= 5
    assert all(shown(rate, numbers_in(text), precision(rate, wide)) for rate in rates), text


@pytest.mark.slow
def test_fit_tables(cli, monkeypatch, tmp_path):
    from distillscale.laws import load_laws
    from tests.laws.test_cli_fit import SMALL_GRID

    truth = load_laws("epoch2024").supervised
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 16))
    D = N * np.exp(rng.uniform(np.log(2), np.log(500), 16))
    runs = tmp_path / "runs.csv"
    runs.write_text("N,D,loss\n" + "".join(f"{n},{d},{truth.predict(n, d)}\n" for n, d in zip(N, D)))
    grid = [item.replace("log_B=5,10", "log_B=5") for item in SMALL_GRID]
    check_tables(cli, monkeypatch, ("fit", "supervised", runs, "--params-col", "N", "--tokens-col", "D", *grid,
                                    "--form", "chinchilla", "--bootstrap", "0"))
    losses = np.linspace(2.2, 4.0, 8)
    table = tmp_path / "downstream.csv"
    table.write_text("loss,error\n" + "".join(f"{l},{0.75 - 12 * np.exp(-1.3 * l)}\n" for l in losses))
    check_tables(cli, monkeypatch, ("fit", "downstream", table, "--bootstrap", "20"), minimum=3)


@pytest.mark.slow
@pytest.mark.usefixtures("cache_dir", "one_thread", "offline_datasets")
def test_engine_tables(cli, monkeypatch, tmp_path):
    """`data prepare`'s corpus, `export-hf`'s model, `loss`'s measurement, `eval`'s scores (with lm-eval)
    and `experiment large-batch`'s regimes."""
    from tests.regime.test_experiment_large_batch import TINY

    prepare = ("data", "prepare", "--max-bytes", "20k", "--vocab-size", "300")
    check_tables(cli, monkeypatch, prepare, minimum=3)
    run = tmp_path / "run"
    code, _, err = cli("train", "--out", run, "--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16",
                       "--tokens", "1k", "--vocab-size", "320", "--max-bytes", "50k", "--seq-len", "32",
                       "--batch-size", "4", "--eval-every", "0", "--device", "cpu")
    assert code == 0, err
    check_tables(cli, monkeypatch, ("export-hf", run, tmp_path / "hf", "--overwrite"), minimum=2)
    check_tables(cli, monkeypatch, ("loss", run, "--out", tmp_path / "loss.json"), minimum=3)
    try:
        import lm_eval  # noqa: F401
    except ImportError:  # the eval extra
        pass
    else:
        data = REPO_ROOT / "tests" / "data" / "lm_eval_tiny"
        (tmp_path / "tasks").mkdir()
        (tmp_path / "tasks" / "tiny_mc.yaml").write_text(
            (data / "tiny_mc.yaml").read_text().replace("questions.jsonl", str(data / "questions.jsonl")))
        check_tables(cli, monkeypatch, ("eval", run, "--tasks", "distillscale_tiny_mc", "--include-path",
                                        tmp_path / "tasks", "--out", tmp_path / "eval.json", "--overwrite"),
                     minimum=2)
    check_tables(cli, monkeypatch, ("experiment", "large-batch", *TINY, "--out", tmp_path / "mnist",
                                    "--overwrite"), minimum=3)
