"""bench/gpu_step.py: without a GPU it says so and exits 0; `--device cpu --tiny` runs its whole code
path (the family's step, the HF Llama loop, live-teacher, cache-fed and FSDP steps) on the CPU."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

BENCH = REPO_ROOT / "bench" / "gpu_step.py"


def bench():
    spec = importlib.util.spec_from_file_location("gpu_step_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_the_benchmark_says_so_and_exits_0(capsys):
    assert bench().main([]) == 0
    assert "no CUDA GPU here" in capsys.readouterr().out


@pytest.mark.slow
def test_the_benchmark_runs_its_code_path_on_the_cpu(capsys):
    pytest.importorskip("transformers")
    assert bench().main(["--device", "cpu", "--tiny", "--sizes", "tiny-1", "--steps", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("tiny-1"))
    assert len(row.split()) == 10  # size, params, batch (3), two speeds, ratio, two MFUs
    for arm in ("supervised", "live teacher", "logit cache", "parallel fsdp"):
        assert f"{arm}" in out and "tokens/s" in out
    assert "targets: cache-fed" in out
