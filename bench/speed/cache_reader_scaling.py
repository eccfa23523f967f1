"""The logit cache's reader at 1, 2 and all cores, beside what a supervised step consumes, side by side in
one run.

The cache is bench/speed/cache_reader.py's: top-128 of a vocabulary of 8192 (264 bytes per token), 1024-token
windows memory-mapped from shards on disk, batches of 32 random windows.

1. The reader as `distill --teacher-cache` runs it: `BatchPrefetcher(workers=N)` over
   `CachedWindowSampler.batch` (the tokens and the records of the batch's windows, decoded on the host
   as a CPU run does, or the records only, as a GPU run reads them and decodes them on the device),
   tokens/s for N = 1, 2 and every core this process may use (best of --repeats, the worker counts
   alternating within each repeat so that load from other processes hits them alike), and the
   scaling over one worker. Beside it the alternative design, worker processes (a torch `DataLoader`
   with N workers over the same sampler: no GIL, but each batch crosses shared memory), at the same
   counts.
2. The need: the tokens/s a supervised step consumes, which a cache-fed step of the same student must
   be fed at. The family's smallest GPU size (6M: 5 x 320, vocabulary 8192, 1024-token sequences)
   trained supervised on this CPU by the recipe's step (measured here, --cpu-batch sequences per step,
   torch on every core), and the supervised tokens/s measured on an H100 for each size of the shipped
   throughput table (planning/throughput.json, with its date). For each, the reader's tokens/s at 1, 2
   and all cores as a multiple of the need (>= 1: the reader keeps up), and the cores host decoding
   would need.

Usage: python bench/speed/cache_reader_scaling.py [--repeats 3] [--steps 8] [--cpu-batch 2] [--no-processes]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.speed.cache_reader import BATCH, SEQ_LEN, VOCAB, synthetic_cache  # noqa: E402  (this directory's script)

from distillscale.training.logit_cache import CachedWindowSampler, LogitCache  # noqa: E402
from distillscale.training.prefetch import BatchPrefetcher  # noqa: E402

MODES = {"host": "host decode (CPU runs)", "device": "records only (GPU runs)"}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def worker_counts() -> list[int]:
    cores = len(os.sched_getaffinity(0))
    return sorted({1, 2, cores})


def children_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (the stat line's 14th and 15th)
    return total / os.sysconf("SC_CLK_TCK")


def threads_rate(sampler: CachedWindowSampler, workers: int, steps: int) -> tuple[float, float]:
    """(tokens/s, cores busy) of `steps` steps read by `BatchPrefetcher(workers=...)` after `workers`
    warm-up steps (the pool started and full), as the training loop takes them; cores busy: this
    process's CPU seconds over the wall seconds."""
    warm = workers
    with BatchPrefetcher(lambda step: [sampler.batch(step)], 0, warm + steps, torch.device("cpu"),
                         depth=workers, workers=workers) as batches:
        for step in range(warm):
            batches.next(step)
        start, cpu = time.perf_counter(), time.process_time()
        for step in range(warm, warm + steps):
            batches.next(step)
        wall = time.perf_counter() - start
        return steps * BATCH * SEQ_LEN / wall, (time.process_time() - cpu) / wall


class _Steps(torch.utils.data.Dataset):
    """The sampler's batch of each step, for a `DataLoader` (its workers fork with the memory-mapped cache)."""

    def __init__(self, sampler: CachedWindowSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, step: int):
        return self.sampler.batch(step)


def processes_rate(sampler: CachedWindowSampler, workers: int, steps: int) -> tuple[float, float]:
    """(tokens/s, cores busy) of `steps` steps read by a `DataLoader` of `workers` processes (in order),
    after a warm-up of 2 x `workers` steps (the processes started and their prefetch full); cores busy
    counts the worker processes' CPU seconds and this process's."""
    warm = 2 * workers
    loader = torch.utils.data.DataLoader(_Steps(sampler), batch_size=None, num_workers=workers,
                                         sampler=range(warm + steps), prefetch_factor=2)
    batches = iter(loader)
    for _ in range(warm):
        next(batches)
    pids = [worker.pid for worker in batches._workers]
    start, cpu = time.perf_counter(), time.process_time() + children_cpu_seconds(pids)
    for _ in range(steps):
        next(batches)
    wall = time.perf_counter() - start
    busy = (time.process_time() + children_cpu_seconds(pids) - cpu) / wall
    del batches
    return steps * BATCH * SEQ_LEN / wall, busy


def reader_section(cache: LogitCache, tokens: np.ndarray, args: argparse.Namespace) -> dict:
    """{(design, mode): {workers: best tokens/s}}."""
    counts = worker_counts()
    designs = {"threads": threads_rate} | ({} if args.no_processes else {"processes": processes_rate})
    found: dict = {(design, mode): {n: (0.0, 0.0) for n in counts} for design in designs for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            sampler = CachedWindowSampler(cache, tokens, BATCH, seed=0, decode=mode)
            for design, rate in designs.items():
                for n in counts:
                    best = found[(design, mode)]
                    best[n] = max(best[n], rate(sampler, n, args.steps))  # the fastest, with its cores busy
    print(f"\n1. the reader: tokens/s of batches of {BATCH} x {SEQ_LEN} tokens (random windows from the shards "
          f"on disk), best of {args.repeats}, with the cores it kept busy (CPU seconds / wall seconds); scaling "
          f"over 1 worker")
    head = " ".join(f"{f'{n} worker(s)':>14} {'cores':>5}" for n in counts)
    print(f"   {'':<48} {head}  scaling at {counts[-1]}")
    for (design, mode), rates in found.items():
        cells = " ".join(f"{rates[n][0]:>14,.0f} {rates[n][1]:>5.2f}" for n in counts)
        label = f"{MODES[mode]}, {'threads (distill)' if design == 'threads' else 'processes (DataLoader)'}"
        print(f"   {label:<48} {cells}  {rates[counts[-1]][0] / rates[1][0]:>5.2f}x")
    return {key: {n: rate for n, (rate, _) in rates.items()} for key, rates in found.items()}


def cpu_supervised_rate(batch: int, repeats: int) -> float:
    """Tokens/s of the recipe's supervised step for the family's 6M shape on this CPU (float32, eager)."""
    from bench.gpu.gpu_step import Setup, Size, distillscale_step, model_config, token_sampler

    setup = Setup(device=torch.device("cpu"), vocab=VOCAB, seq_len=SEQ_LEN, bf16=False, compile=False,
                  steps=repeats, warmup=1)
    size = Size("6M", 5, 64, 64, batch)
    step = distillscale_step(model_config(size, setup), setup, token_sampler(setup, batch, windows=16))
    step(0)  # warm-up
    best = math.inf
    for index in range(1, repeats + 1):
        start = time.perf_counter()
        step(index)
        best = min(best, time.perf_counter() - start)
    return batch * SEQ_LEN / best


def need_section(found: dict, args: argparse.Namespace) -> None:
    from distillscale.planning.throughput import ThroughputTable

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cpu = cpu_supervised_rate(args.cpu_batch, args.repeats)
    torch.set_num_threads(1)
    needs = [(f"this CPU, 6M, {args.cpu_batch} x {SEQ_LEN} tokens/step ({len(os.sched_getaffinity(0))} threads)",
              cpu)]
    h100 = ThroughputTable.load().devices["h100"]
    for figure in sorted(h100.figures, key=lambda f: f.non_embedding_params):
        if figure.model is not None and figure.model.vocab_size == VOCAB:
            needs.append((f"H100 {figure.non_embedding_params / 1e6:.0f}M ({figure.date}, {figure.torch})",
                          figure.tokens_per_second))
    counts = worker_counts()
    print(f"\n2. the reader's tokens/s as a multiple of what a supervised step consumes (>= 1: it keeps up); "
          f"threads, as distill reads")
    head = " ".join(f"{f'{n} core(s)':>10}" for n in counts)
    print(f"   {'supervised step':<50} {'tokens/s':>10}   host decode: {head}   records only: {head}   "
          f"cores to decode on the host")
    for name, need in needs:
        host, records = found[("threads", "host")], found[("threads", "device")]
        print(f"   {name:<50} {need:>10,.0f}                {' '.join(f'{host[n] / need:>9.2f}x' for n in counts)}"
              f"                 {' '.join(f'{records[n] / need:>9.2f}x' for n in counts)}   "
              f"{need / host[1]:>6.2f}")
    print("   cores to decode on the host: the need over one worker's host-decode tokens/s (the scaling of "
          "section 1 says how far more cores deliver it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per figure")
    parser.add_argument("--cpu-batch", type=int, default=2, help="sequences per step of the CPU supervised step")
    parser.add_argument("--no-processes", action="store_true", help="leave out the DataLoader processes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"{datetime.date.today()}; {cpu_name()}, "
          f"{len(os.sched_getaffinity(0))} cores usable, load average {load[0]:.1f}; torch {torch.__version__}, "
          f"numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        cache = synthetic_cache(Path(scratch) / "cache")
        tokens = np.random.default_rng(0).integers(0, VOCAB, cache.tokens + 1).astype(np.uint16)
        print(f"logit cache: top-128 of {VOCAB}, {cache.encoding.bytes_per_token} bytes per token")
        found = reader_section(cache, tokens, args)
        need_section(found, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (other processes share these cores)")


if __name__ == "__main__":
    main()
