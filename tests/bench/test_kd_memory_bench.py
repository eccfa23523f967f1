"""bench/speed/kd_memory.py: the KD losses' peak memory against their logits. On a small bf16 case on the CPU
(its dispatch-mode accounting), the full-vocabulary path holds [tokens, V] logits, and no chunked path
(plain, top-k from a cache, top-k live) allocates more than one chunk's float32 logits at once: none
upcasts the whole logits while it reads only K columns of them."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from bench.speed.kd_memory import PATHS, Case, PeakMemory, main, measure  # noqa: E402

CASE = Case(tokens=64, vocab=2048, d_model=8, top_k=16, dtype=torch.bfloat16, device=torch.device("cpu"), chunk=16)


def test_no_chunked_path_allocates_more_than_one_chunks_float32_logits():
    rows = {path: measure(path, CASE) for path in PATHS}
    full_logits_float32 = CASE.tokens * CASE.vocab * 4
    chunk_float32 = CASE.chunk * CASE.vocab * 4
    assert rows["full vocabulary"]["largest"][0] >= full_logits_float32  # the accounting sees them
    for path in ("chunked", "top-k from cache", "top-k live"):
        size, shape, dtype, op = rows[path]["largest"]
        assert size <= chunk_float32, (path, shape, dtype, op)
        assert rows[path]["peak_bytes"] < rows["full vocabulary"]["peak_bytes"] / 2, path
    assert rows["top-k from cache"]["peak_bytes"] <= rows["top-k live"]["peak_bytes"]


def test_the_accounting_frees_what_is_dropped_and_ignores_views():
    with PeakMemory() as memory:
        a = torch.ones(1024)  # 4 KiB
        a.view(32, 32).add_(1)  # a view and an in-place result: nothing new
        del a
        b = torch.ones(512)  # 2 KiB, after a was freed
    assert memory.peak == 4096 and memory.largest[:2] == (4096, (1024,)) and memory.current == 2048
    del b


def test_without_a_gpu_the_default_run_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    assert main([]) == 0 and "no CUDA GPU here" in capsys.readouterr().out
