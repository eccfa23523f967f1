"""bench/gpu/gpu_verify.sh (issue 33): the script parses, refuses bad arguments in one line, and without CUDA
a real run says "no GPU" and exits 4 (its --check mode, which runs each stage's entry point, is run by
hand: about a minute of Python start-ups)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu" / "gpu_verify.sh"


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args, "--out", str(tmp_path / "verify")], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_script_parses_and_refuses_bad_arguments(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    bad = run("--budget", "soon", tmp_path=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "gpu_verify: --budget needs whole seconds, e.g. --budget 540"
    bad = run("--only", "recipe,ladders", tmp_path=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "gpu_verify: unknown stage ladders in --only: use step, recipe, ladder, tests, lrgrid, tuned, sizes, speed, family, family2, profile, gpuhours, reader, kdmem or kdspeed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_a_real_run_says_so_and_fails(tmp_path):
    result = run(tmp_path=tmp_path)
    assert result.returncode == 4, result.stderr
    assert result.stderr.strip().startswith("gpu_verify: no GPU: CUDA is not usable here")
    assert not (tmp_path / "verify").exists()  # nothing written
