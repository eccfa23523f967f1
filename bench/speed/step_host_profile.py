"""The training step's host time at the small GPU sizes and on the cache path, measured on the CPU: what
a GPU step costs its host before any kernel runs, side by side in one run.

A GPU step is asynchronous: the host dispatches its operations and the device runs them. When the host's
time per step approaches the device's, the device waits, which no GPU measurement can say on its own.
Every dispatched operation costs the host about the same whatever the tensors' sizes, so both
figures are had on the CPU:

- operations dispatched per step (a `TorchDispatchMode` counting every operation that reaches a kernel:
  forward, backward, clipping, the fused AdamW update), at the real shapes (bench/gpu/gpu_step.py's 6M, 11M
  and 85M: vocabulary 8192, eager), one sequence of 64 tokens per step; and per loss chunk (the same
  step with its loss in 8 chunks, less one chunk, over 7);
- host milliseconds per step: the CPU time of the training thread (so other processes on a shared
  machine do not count) for a twin of each size with the same depth and so the same operations, but
  every tensor tiny (d_model 16, vocabulary 256, 64 tokens, one torch thread), where the time is
  dispatch, autograd and Python, not arithmetic; the least of --steps steps; and over its operations,
  the host time per operation.

Three steps per size: supervised (the recipe's `SupervisedObjective`, all logits at once), from a
top-128 logit cache decoded on the host (a CPU run), and decoded on the device
(`decode="device"`: the records' decoding is part of the step, as on a GPU). Then the operations at
the GPU batch (the chunks `distill` takes there: `chunk_tokens(8192)` = 4096 tokens each) and their
host time at the step's time per operation, beside the
H100's measured time per step: the supervised family's from the shipped throughput table
(planning/throughput.json), the cache-fed 85M student's from the H100 run of 2026-11-26 (319,816
tokens/s at 32 x 1024 tokens, the records decoded on the GPU). Host time below the device's is
hidden by the asynchrony; above it, the device waits. This CPU's host time is not an H100 host's:
it is the order of magnitude, and the operation counts are exact.

Usage: python bench/speed/step_host_profile.py [--steps 30] [--sizes 6M,11M,85M]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.gpu.gpu_step import (GPU_SIZES, TOP_K, Setup, distillscale_step, model_config,  # noqa: E402
                      synthetic_top_k_cache, token_sampler)

from distillscale.data import TokenSampler  # noqa: E402
from distillscale.model import ModelConfig  # noqa: E402
from distillscale.training.kd_settings import chunk_tokens  # noqa: E402
from distillscale.training.logit_cache import CachedDistillationObjective, CachedWindowSampler  # noqa: E402
from distillscale.training.losses import DistillationLossConfig  # noqa: E402

TOKENS = 64  # tokens per profiled step: one sequence
H100_CACHE_FED_85M = 319_816  # tokens/s, the 85M student from a top-128 cache decoded on the GPU (2026-11-26)
ARMS = ("supervised", "cache, host decode", "cache, device decode")
MANY = 8  # chunks of the step whose difference from one chunk gives a chunk's figures


class OperationCount(TorchDispatchMode):
    """Counts the operations dispatched to kernels while active (this thread and autograd's)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def make_step(config: ModelConfig, arm: str, chunks: int, steps: int, scratch: Path):
    """step(index) of `arm` for `config` at one sequence of TOKENS tokens, its KD loss in `chunks` chunks."""
    setup = Setup(device=torch.device("cpu"), vocab=config.vocab_size, seq_len=TOKENS, bf16=False, compile=False,
                  steps=steps, warmup=0)
    if arm == "supervised":
        return distillscale_step(config, setup, token_sampler(setup, batch_size=1, windows=8))
    cache = synthetic_top_k_cache(scratch / f"{arm}-{config.vocab_size}-{chunks}", setup, windows=8)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, cache.tokens + 1).astype(np.uint16)
    sampler: TokenSampler = CachedWindowSampler(cache, tokens, 1, seed=0,
                                                decode="device" if "device" in arm else "host")
    loss = DistillationLossConfig(kd_weight=0.5, top_k=TOP_K, chunk_size=TOKENS // chunks)
    return distillscale_step(config, setup, sampler, CachedDistillationObjective(cache, loss, ""))


def operations(config: ModelConfig, arm: str, chunks: int, scratch: Path) -> int:
    """Operations dispatched by one step (the second: the first builds the optimizer's state)."""
    step = make_step(config, arm, chunks, steps=2, scratch=scratch)
    step(0)
    with OperationCount() as counter:
        step(1)
    return counter.count


def host_ms(config: ModelConfig, steps: int, scratch: Path) -> dict[str, float]:
    """Per arm, the training thread's CPU milliseconds per step (the loss in one chunk): the least of
    `steps` after 3 warm-up steps, the arms' steps taking turns so that a shared machine's changing load
    hits them alike (a step's host work has a floor; other jobs' cache traffic and a virtual CPU's
    stolen time only add)."""
    made = {arm: make_step(config, arm, 1, steps=steps + 3, scratch=scratch) for arm in ARMS}
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for index in range(steps + 3):
        for arm, step in made.items():
            start = time.thread_time()
            step(index)
            times[arm].append(time.thread_time() - start)
    return {arm: 1e3 * min(values[3:]) for arm, values in times.items()}


def tiny_twin(config: ModelConfig) -> ModelConfig:
    """The same depth (and so the same operations) with every tensor tiny."""
    return ModelConfig(n_layers=config.n_layers, d_model=16, head_dim=8, vocab_size=256, max_seq_len=TOKENS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per host figure")
    parser.add_argument("--sizes", default="6M,11M,85M")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from distillscale.planning.throughput import ThroughputTable

    h100 = {f.non_embedding_params: f for f in ThroughputTable.load().devices["h100"].figures}
    chunk = chunk_tokens(8192)
    print(f"{datetime.date.today()}; CPU, 1 torch thread, load average {os.getloadavg()[0]:.1f}; torch "
          f"{torch.__version__}; eager steps (no torch.compile), float32; {TOKENS} tokens per profiled step")
    print(f"\n{'size':>5} {'step':<22} {'ops/step':>9} {'ops/chunk':>10} {'host ms/step':>13} {'us/op':>6} "
          f"{'GPU batch':>10} {'chunks':>7} {'ops':>6} {'host ms':>8} {'H100 ms':>8} {'host/H100':>10}")
    with tempfile.TemporaryDirectory() as scratch:
        for size in [s for s in GPU_SIZES if s.name in args.sizes.split(",")]:
            setup = Setup(device=torch.device("cpu"), vocab=8192, seq_len=TOKENS, bf16=False, compile=False,
                          steps=0, warmup=0)
            config = model_config(size, setup)
            batch_tokens = size.batch_size * 1024
            figure = h100.get(config.non_embedding_params)
            twin = tiny_twin(config)
            twin_ms = host_ms(twin, args.steps, Path(scratch))
            for arm in ARMS:
                ops = operations(config, arm, 1, Path(scratch))
                # the supervised loss is not chunked; a KD loss's chunk: (MANY chunks - one) / (MANY - 1)
                per_chunk = 0 if arm == "supervised" else \
                    (operations(config, arm, MANY, Path(scratch)) - ops) // (MANY - 1)
                twin_ops = operations(twin, arm, 1, Path(scratch))
                ms = twin_ms[arm]
                per_op = ms / twin_ops
                chunks = 1 if arm == "supervised" else -(-batch_tokens // chunk)
                at_batch = ops + (chunks - 1) * per_chunk
                device_ms = None
                if arm == "supervised" and figure is not None:
                    device_ms = 1e3 * batch_tokens / figure.tokens_per_second
                elif arm == "cache, device decode" and size.name == "85M":
                    device_ms = 1e3 * batch_tokens / H100_CACHE_FED_85M
                same = "" if twin_ops == ops else f"  (the twin dispatches {twin_ops})"
                print(f"{size.name:>5} {arm:<22} {ops:>9,} {per_chunk or '-':>10} {ms:>13.2f} {1e3 * per_op:>6.1f} "
                      f"{f'{size.batch_size} x 1024':>10} {chunks:>7} {at_batch:>6,} {at_batch * per_op:>8.1f} "
                      f"{f'{device_ms:.1f}' if device_ms else '-':>8} "
                      f"{f'{at_batch * per_op / device_ms:.0%}' if device_ms else '-':>10}{same}", flush=True)
    print(f"\nops/step: dispatched at the real shape, the loss in one chunk; host ms/step: the tiny twin's (the "
          f"training thread's CPU time), and us/op that over its operations; at the GPU batch (the loss in chunks "
          f"of {chunk} tokens): its operations and their host time at that us/op, beside the H100's measured time "
          f"per step at that batch (supervised: the shipped throughput table; the 85M from the cache: its H100 "
          f"figure of 2026-11-26)")


if __name__ == "__main__":
    main()
