"""The README's Python example runs as written: a notebook user can fit, predict, backtest, plan and
train without importing a private module."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
MARKER = "<!-- tested: the block below runs in tests/test_readme.py -->"


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no python block after {MARKER!r}"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch, cache_dir, one_thread):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_block(), str(README), "exec"), namespace)
    assert (tmp_path / "law.json").is_file()
    assert (tmp_path / "runs" / "tiny" / "result.json").is_file()
    assert namespace["result"].completed and namespace["result"].val_loss > 0
    assert namespace["plan"].verdict in ("distill", "pretrain")
    low, high = namespace["fit"].law.prediction(1e9, 20e9).low, namespace["fit"].law.prediction(1e9, 20e9).high
    assert low < high
