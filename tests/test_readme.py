"""The documentation's examples run as written, wherever they live: every block after a
`<!-- tested: NAME ... -->` marker in README.md or a page of docs/ is run by the test named for it
here. A notebook user can fit, predict, backtest, plan and train without importing a private module,
and the Epoch example's data can be made from the reference data."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tested: "
TESTED_BLOCK = re.compile(r"<!-- tested: ([a-z0-9-]+)[^>]*-->\s*```(\w+)\n(.*?)```", re.S)
# README.md and docs/ once had 4 blocks that tests ran (the full Python example, now on the API
# reference page, the one-liner that makes epoch240.csv, the predict session, the published runs):
# they never run fewer.
BLOCKS_RUN_AT_LEAST = 4


@dataclass(frozen=True)
class MarkedBlock:
    path: Path
    language: str
    code: str


def documentation_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def marked_blocks() -> dict[str, MarkedBlock]:
    """Every marked block of the README and docs/, by its name."""
    blocks: dict[str, MarkedBlock] = {}
    for path in documentation_files():
        text = path.read_text(encoding="utf-8")
        found = TESTED_BLOCK.findall(text)
        assert len(found) == text.count(MARKER), f"{path.name}: a {MARKER!r} marker is not followed by a code block"
        for name, language, code in found:
            assert name not in blocks, f"two blocks are marked {name!r}: {blocks[name].path.name} and {path.name}"
            blocks[name] = MarkedBlock(path, language, code)
    return blocks


def test_every_marked_block_is_run_here_and_none_was_lost():
    blocks = marked_blocks()
    assert set(blocks) == {"python-api", "python-quick", "epoch240", "predict", "published"}, \
        "each marked block needs its test in this file"
    assert len(blocks) >= BLOCKS_RUN_AT_LEAST
    assert {blocks["predict"].path.name, blocks["python-quick"].path.name} == {"README.md"}  # the first screen


def test_the_readmes_python_example_prints_a_plan_with_its_verdict(capsys):
    block = marked_blocks()["python-quick"]
    assert block.language == "python"
    namespace: dict = {}
    exec(compile(block.code, str(block.path), "exec"), namespace)
    verdict = namespace["plan"].verdict
    assert verdict in ("distill", "pretrain", "too close to call")
    out = capsys.readouterr().out
    assert out.startswith(verdict) and "nats/token" in out


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path, monkeypatch, cache_dir, one_thread):
    block = marked_blocks()["python-api"]
    assert block.language == "python"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.code, str(block.path), "exec"), namespace)
    assert (tmp_path / "law.json").is_file()
    assert (tmp_path / "runs" / "tiny" / "result.json").is_file()
    assert namespace["result"].completed and namespace["result"].val_loss > 0
    assert namespace["plan"].verdict in ("distill", "pretrain", "too close to call")
    low, high = namespace["fit"].law.prediction(1e9, 20e9).low, namespace["fit"].law.prediction(1e9, 20e9).high
    assert low < high


def test_the_epoch_example_says_how_to_make_epoch240(tmp_path, monkeypatch, shared_data):
    """The Epoch example needs epoch240.csv: its one-liner makes it from the reference data."""
    import pandas as pd

    block = marked_blocks()["epoch240"]
    assert "github.com/epoch-research/analyzing-chinchilla" in block.path.read_text(encoding="utf-8")
    command = re.fullmatch(r'\$ python -c "(.*epoch240\.csv.*)"\n', block.code).group(1)
    monkeypatch.chdir(tmp_path)
    exec(command.replace("../shared/data", str(shared_data)), {})
    runs = pd.read_csv(tmp_path / "epoch240.csv")
    full = pd.read_csv(shared_data / "chinchilla_fig4_epoch_extracted.csv")
    assert len(runs) == 240 and runs["loss"].max() == sorted(full["loss"])[-6]


def test_the_console_example_prints_what_it_shows(cli):
    """Each `$ distillscale ...` line of the block prints the lines under it, exactly."""
    block = marked_blocks()["predict"]
    assert block.language == "console"
    sessions = re.findall(r"^\$ distillscale (.*)\n((?:(?!\$ ).*\n)*)", block.code, re.M)
    assert sessions
    for command, shown in sessions:
        code, out, err = cli(*shlex.split(command))
        assert code == 0, err
        assert out.rstrip() == shown.rstrip(), f"distillscale {command}"


def test_the_published_runs_example_loads_a_set_with_its_provenance(capsys):
    block = marked_blocks()["published"]
    namespace: dict = {}
    exec(compile(block.code, str(block.path), "exec"), namespace)
    runs = namespace["runs"]
    assert len(runs.runs) > 0 and {"params", "tokens", "loss"} <= set(runs.runs.columns)
    assert "github.com/mlfoundations/scaling" in capsys.readouterr().out
