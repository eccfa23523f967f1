"""The logit cache's reader on the CPU, side by side in one run (issue 65 item 1): what feeds a
cache-fed student on a GPU, and so what predicts its bottleneck there.

The cache is bench/gpu/gpu_step.py's: top-128 of a vocabulary of 8192 (264 bytes per token), 1024-token
windows on disk, batches of 32 windows (the 85M student's 32 x 1024 tokens per step), random windows.
One thread (torch and numpy on one core), best of --repeats:

1. decoding only, records in memory, tokens/s per core: the decode before issue 65 (kept here as the
   reference), the host decode now (the same bits), and the records decoded in torch (what a GPU run
   does on the device; timed here on the CPU, so only an upper bound of its cost);
2. the reader (`CachedWindowSampler.batch`: random windows read from the memory-mapped shards, the
   tokens, decoded or not), tokens/s per core, host decode and records only (`decode="device"`),
   and with --threads reader threads at once (numpy and torch release the GIL while they work);
3. what a reader thread costs the training thread: a loop of small torch operations in the main
   thread (a stand-in for a GPU step's kernel launches, which need the GIL) alone and beside a reader
   thread that reads one batch per step of the 85M student at its supervised speed, as a ratio;
4. the loss: the 85M student's head (768 -> 8192) with its loss, forward and backward, on --loss-tokens
   tokens: supervised (cross-entropy and z-loss, as `train`) against the top-128 cached KD loss
   (chunks of 1024, as bench/gpu/gpu_step.py's arm); and the bytes each step copies to the device.

Then the cores that sustain 3 x the 85M student's measured supervised speed on an H200 (526,571
tokens/s, issue 65) for each way, from the per-core figures of section 2.

Usage: python bench/speed/cache_reader.py [--repeats 5] [--threads 2] [--batches 8] [--loss-tokens 2048]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from distillscale.training.logit_cache import CachedWindowSampler, LogitCache
from distillscale.training.logit_cache.encoding import TopKEncoding, _read_bit_spans
from distillscale.training.logit_cache.store import FORMAT, CacheDirectory, plan_shards
from distillscale.training.top_k import normalise_relative

VOCAB, TOP_K, SEQ_LEN, BATCH, WINDOWS = 8192, 128, 1024, 32, 64
SUPERVISED_85M = 526_571  # tokens/s, the 85M student trained supervised on one H200 (issue 65)
TARGET = 3


def reference_decode(encoding: TopKEncoding, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`LogitCache.teacher_predictions`' decoding before issue 65 (its low bits by `_read_bit_spans`, the
    reader of that time): ids int32 and normalised values."""
    records = records.reshape(-1)
    n, k, l, high = len(records), encoding.top_k, encoding.ids.low_bits, encoding.ids.high_bits
    unary = np.unpackbits(records["ids_high"], axis=1, count=high).view(bool)
    positions = np.flatnonzero(unary).reshape(n, k) - (np.arange(n) * high)[:, None]
    ids = (positions - np.arange(k)) << l | _read_bit_spans(records["ids_low"], k, l)
    relative = (records["codes"].astype(np.float32) * -records["step"][:, None]).astype(np.float32)
    top = relative.max(axis=1, keepdims=True)
    log_sum = top + np.log(np.exp(relative - top).sum(axis=1, keepdims=True))
    return ids.astype(np.int32), (relative - log_sum + records["log_mass"].reshape(-1, 1)).astype(np.float32)


def synthetic_cache(path: Path) -> LogitCache:
    """bench/gpu/gpu_step.py's cache, its records drawn from 4096 random teacher distributions."""
    encoding = TopKEncoding(VOCAB, TOP_K)
    generator = torch.Generator().manual_seed(1)
    top = torch.log_softmax(2 * torch.randn(4096, VOCAB, generator=generator), -1).topk(TOP_K, dim=-1)
    distinct = encoding.encode(top.indices.numpy(), top.values.numpy())
    directory, sidecars = CacheDirectory(path), []
    for shard in plan_shards(WINDOWS, windows_per_shard=16):
        order = np.random.default_rng(shard.index).integers(0, len(distinct), shard.windows * SEQ_LEN)
        sidecars.append(directory.write_shard(shard, distinct[order].reshape(shard.windows, SEQ_LEN), "bench",
                                              SEQ_LEN, statistics={}))
    (path / "cache.json").write_text(json.dumps({"format": FORMAT, "identity_hash": "bench", "encoding":
                                                 encoding.describe(), "seq_len": SEQ_LEN, "windows": WINDOWS,
                                                 "shards": sidecars}))
    return LogitCache(path)


def best_rate(work, tokens: int, repeats: int) -> float:
    """Tokens/s of `work()` (which handles `tokens` tokens), best of `repeats`."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return tokens / best


def decode_section(cache: LogitCache, repeats: int) -> None:
    records = cache.records(np.arange(BATCH))
    raw = torch.from_numpy(cache.record_bytes(np.arange(BATCH)))
    tokens = BATCH * SEQ_LEN
    ids, values = cache.teacher_predictions(np.arange(BATCH))
    before_ids, before_values = reference_decode(cache.encoding, records)
    assert np.array_equal(before_ids, ids.reshape(-1, TOP_K).astype(np.int32))
    assert before_values.tobytes() == values.reshape(-1, TOP_K).tobytes()  # bit for bit
    ways = {"before issue 65 (numpy)": lambda: reference_decode(cache.encoding, records),
            "host decode now (numpy, same bits)": lambda: cache.teacher_predictions(np.arange(BATCH)),
            "records decoded in torch (on the CPU)": lambda: cache.predictions_from_bytes(raw)}
    rates = {name: best_rate(work, tokens, repeats) for name, work in ways.items()}
    first = next(iter(rates.values()))
    print(f"\n1. decoding a batch ({BATCH} x {SEQ_LEN} tokens, top-{TOP_K} of {VOCAB}) in memory, one core")
    for name, rate in rates.items():
        print(f"   {name:<40} {rate:>12,.0f} tokens/s  {rate / first:>5.2f}x")


def reader_rates(cache: LogitCache, tokens_array: np.ndarray, repeats: int, batches: int,
                 threads: int) -> dict[str, tuple[float, float]]:
    """Per mode: (tokens/s of one reader thread, tokens/s of `threads` reader threads together)."""
    found = {}
    for mode in ("host", "device"):
        sampler = CachedWindowSampler(cache, tokens_array, BATCH, seed=0, decode=mode)
        one = best_rate(lambda: [sampler.batch(step) for step in range(batches)], batches * BATCH * SEQ_LEN, repeats)

        def many():
            workers = [threading.Thread(target=lambda offset=offset: [sampler.batch(offset * batches + step)
                                                                      for step in range(batches)])
                       for offset in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        found[mode] = (one, best_rate(many, threads * batches * BATCH * SEQ_LEN, repeats))
    return found


def contention(cache: LogitCache, tokens_array: np.ndarray, seconds: float = 2.0) -> dict[str, float]:
    """Small torch operations per second in this thread: alone, and beside a reader thread that reads
    one batch per step of the 85M student at its supervised speed (as the prefetcher does, a step ahead:
    62 ms per 32 x 1024 tokens), with host decode or records only."""
    a, b = torch.ones(64), torch.ones(64)
    period = BATCH * SEQ_LEN / SUPERVISED_85M

    def launches(stop_after: float) -> float:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < stop_after:
            for _ in range(100):
                torch.add(a, b)
            count += 100
        return count / (time.perf_counter() - start)

    rates = {"alone": launches(seconds)}
    for mode in ("host", "device"):
        sampler, stop = CachedWindowSampler(cache, tokens_array, BATCH, seed=0, decode=mode), threading.Event()
        busy = []

        def read():
            step, start = 0, time.perf_counter()
            while not stop.is_set():
                began = time.perf_counter()
                sampler.batch(step)
                busy.append(time.perf_counter() - began)
                step += 1
                stop.wait(max(0.0, start + step * period - time.perf_counter()))  # the next step's turn

        reader = threading.Thread(target=read)
        reader.start()
        rates[mode] = launches(seconds)
        stop.set()
        reader.join()
        rates[f"{mode} busy"] = sum(busy) / (len(busy) * period)
    return rates


def loss_section(cache: LogitCache, tokens: int, repeats: int) -> None:
    from distillscale.training.logit_cache import CachedDistillationObjective
    from distillscale.training.losses import DistillationLossConfig
    from distillscale.training.objective import SupervisedObjective

    torch.manual_seed(0)
    head = torch.nn.Linear(768, VOCAB, bias=False)
    hidden = torch.randn(tokens // SEQ_LEN, SEQ_LEN, 768, requires_grad=True)
    model = type("Student", (), {"hidden_states": staticmethod(lambda inputs: hidden), "head": head})()
    sampler = CachedWindowSampler(cache, np.zeros(cache.tokens + 1, np.uint16), tokens // SEQ_LEN, seed=0)
    inputs, targets, ids, values = sampler.batch(0)
    supervised = SupervisedObjective(z_loss_weight=1e-4)
    cached = CachedDistillationObjective(cache, DistillationLossConfig(kd_weight=1.0, top_k=TOP_K, chunk_size=1024), "")
    arms = {"supervised (cross-entropy + z-loss)": lambda: supervised(model, inputs, targets).loss.backward(),
            f"top-{TOP_K} cached KD (chunks of 1024)": lambda: cached(model, inputs, targets, ids, values).loss.backward()}
    rates = {name: best_rate(work, tokens, repeats) for name, work in arms.items()}
    first = next(iter(rates.values()))
    print(f"\n4. the 85M student's head (768 -> {VOCAB}) and its loss, forward and backward, {tokens} tokens, one core")
    for name, rate in rates.items():
        print(f"   {name:<40} {rate:>12,.0f} tokens/s  {rate / first:>5.2f}x")
    step = BATCH * SEQ_LEN
    decoded, stored = step * TOP_K * 8, step * cache.encoding.bytes_per_token
    print(f"   copied to the device per {BATCH} x {SEQ_LEN} step: {decoded / 2**20:.1f} MiB decoded (host decode), "
          f"{stored / 2**20:.1f} MiB as stored (decoded on the device), beside {step * 4 / 2**20:.2f} MiB of tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=8, help="batches per timed read")
    parser.add_argument("--threads", type=int, default=2, help="reader threads at once in section 2")
    parser.add_argument("--loss-tokens", type=int, default=2048, help="tokens of section 4's loss (0: skip it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        cache = synthetic_cache(Path(scratch) / "cache")
        tokens_array = np.random.default_rng(0).integers(0, VOCAB, cache.tokens + 1).astype(np.uint16)
        print(f"logit cache: top-{TOP_K} of {VOCAB}, {cache.encoding.bytes_per_token} bytes per token "
              f"(decoded: {TOP_K * 8} bytes of int32 ids and float32 values); torch {torch.__version__}, "
              f"numpy {np.__version__}, 1 thread each")
        decode_section(cache, args.repeats)
        rates = reader_rates(cache, tokens_array, args.repeats, args.batches, args.threads)
        print(f"\n2. the reader (CachedWindowSampler.batch: random windows from the shards on disk), batches of "
              f"{BATCH} x {SEQ_LEN}")
        print(f"   {'':<40} {'1 thread':>12} {f'{args.threads} threads':>12} {'scaling':>8}")
        labels = {"host": "host decode (CPU runs)", "device": "records only (GPU runs)"}
        for mode, (one, many) in rates.items():
            print(f"   {labels[mode]:<40} {one:>12,.0f} {many:>12,.0f} {many / one:>7.2f}x  tokens/s")
        launches = contention(cache, tokens_array)
        print(f"\n3. small torch operations per second in the training thread (a GPU step's launches need the GIL), "
              f"beside a reader of one batch per {1e3 * BATCH * SEQ_LEN / SUPERVISED_85M:.0f} ms step (the 85M "
              f"student at its supervised speed)")
        print(f"   {'alone':<40} {launches['alone']:>12,.0f} ops/s  1.00x")
        for mode in ("host", "device"):
            print(f"   {'beside a reader, ' + labels[mode]:<40} {launches[mode]:>12,.0f} ops/s  "
                  f"{launches[mode] / launches['alone']:>5.2f}x  (the reader busy {launches[mode + ' busy']:.0%} "
                  f"of each step)")
        if args.loss_tokens:
            loss_section(cache, args.loss_tokens, max(2, args.repeats // 2))
    need = TARGET * SUPERVISED_85M
    print(f"\ncores to feed the 85M student at {TARGET} x its supervised {SUPERVISED_85M:,} tokens/s (H200) = "
          f"{need:,.0f} tokens/s, from one thread's rate in section 2:")
    for mode, (one, _) in rates.items():
        print(f"   {labels[mode]:<40} {math.ceil(need / one):>3} core(s)  ({need / one:.2f})")


if __name__ == "__main__":
    main()
