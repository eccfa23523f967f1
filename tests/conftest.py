"""Shared test fixtures: run the CLI in-process, and find the reference data beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distillscale.cli import main

SHARED = Path(os.environ.get("DISTILLSCALE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture
def cli(capsys):
    """cli(*args) -> (exit_code, stdout, stderr), running `distillscale ARGS` in this process."""

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when the reference data is not beside this checkout."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("reference data ../shared/data is absent")
    return data
