"""Logit cache: bytes per token, read throughput against a training step, and the student's
validation loss from the cache against live-teacher distillation, measured side by side in one run.

1. Size. Synthetic teacher logits over V = 32768 ids (Zipf-shaped, log-rank slope 1.1, plus noise)
   are encoded at k = 32 and 128; bytes/token is the record size (what a shard file holds per
   token), next to uint16 ids + float16 log-probs and full float32 logits. The quantisation error
   of the decoded relative log-probabilities and its effect on the top-k forward KL against a
   random student are measured too.
2. Read throughput. A cache of synthetic records (V = 32768, k = 128, 256-token windows) is written
   to disk and opened as `LogitCache` (checksums verified); `CachedWindowSampler.batch` (random
   windows: memory-mapped reads + decoding) is timed against one training step of a student that
   consumes it (`train_step` with `CachedDistillationObjective`), alternating, medians.
3. Student quality. A tiny teacher trained here, its top-k cached with `cache-logits`, and three
   students with the same init and settings: live top-k distillation (`distill --top-k k`, random
   windows), live top-k on the cache's windows (the same batches as the cached run: isolates the
   quantisation), and `distill --teacher-cache`. Validation losses are printed side by side, with the
   KD term itself from the cache and from the live teacher on the same batches (what quantisation
   changes directly; the validation losses also carry the chaos of training trajectories).

Usage: python bench/distillation/logit_cache.py [--threads 1] [--reads 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distillscale.model import ModelConfig, Transformer
from distillscale.training.distillation import DistillationObjective
from distillscale.training.distributed import Distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.logit_cache import (CachedDistillationObjective, CachedWindowSampler, LogitCache,
                                               TopKEncoding)
from distillscale.training.logit_cache.store import FORMAT, CacheDirectory, plan_shards
from distillscale.training.losses import DistillationLossConfig, kd_divergence
from distillscale.training.optim import build_optimizer
from distillscale.training.step import train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import run_here  # noqa: E402

VOCAB = 32768


def synthetic_logits(tokens: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """Zipf-like teacher logits: log-probability falling as -1.1 log(rank), with noise, shuffled ids."""
    ranks = torch.arange(1, vocab + 1, dtype=torch.float32)
    logits = -1.1 * ranks.log() + 0.5 * torch.randn(tokens, vocab, generator=generator)
    order = torch.argsort(torch.rand(tokens, vocab, generator=generator), dim=-1)
    return logits.gather(-1, order)


def encode_top_k(logits: torch.Tensor, encoding: TopKEncoding) -> np.ndarray:
    top_logits, top_ids = logits.topk(encoding.top_k, dim=-1)
    return encoding.encode(top_ids.numpy(), top_logits.numpy())


class LiveTeacherOnCachedWindows(DistillationObjective):
    """The live-teacher objective fed by `CachedWindowSampler`: it ignores the cached predictions."""

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, *cached: torch.Tensor):
        return super().__call__(model, inputs, targets)


def size_section() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = synthetic_logits(2048, VOCAB, generator)
    student_logits = synthetic_logits(2048, VOCAB, generator)
    print(f"1. bytes per token, V = {VOCAB} (synthetic Zipf-shaped teacher logits, 2048 tokens)")
    print(f"   {'k':>4} {'cache':>7} {'uint16+fp16':>12} {'fp32 logits':>12} {'max |dr|':>9} "
          f"{'mean |dKD| (nats)':>18}")
    for k in (32, 128):
        encoding = TopKEncoding(VOCAB, k)
        records = encode_top_k(logits, encoding)
        ids, relative, step, _ = encoding.decode(records)
        top_logits = logits.gather(-1, torch.from_numpy(ids))
        exact = top_logits - top_logits.max(-1, keepdim=True).values
        max_error = (torch.from_numpy(relative) - exact).abs().max().item()
        dense = torch.full_like(logits, -torch.inf).scatter_(-1, torch.from_numpy(ids), torch.from_numpy(relative))
        kd_exact = kd_divergence(student_logits, logits, top_k=k)
        kd_cached = kd_divergence(student_logits, dense, top_k=k)
        print(f"   {k:>4} {records.itemsize:>7} {k * 4:>12} {VOCAB * 4:>12} {max_error:>9.4f} "
              f"{(kd_cached - kd_exact).abs().mean().item():>18.2e}")
    print(f"   target: <= 300 bytes/token at k = 128: {'met' if TopKEncoding(VOCAB, 128).bytes_per_token <= 300 else 'MISSED'}")


def synthetic_cache(path: Path, windows: int, seq_len: int, encoding: TopKEncoding) -> LogitCache:
    """A cache of synthetic records on disk, in the layout `cache-logits` writes."""
    directory = CacheDirectory(path)
    generator = torch.Generator().manual_seed(1)
    sidecars = []
    for shard in plan_shards(windows, windows_per_shard=64):
        records = np.concatenate([encode_top_k(synthetic_logits(seq_len, VOCAB, generator), encoding)
                                  for _ in range(shard.windows)]).reshape(shard.windows, seq_len)
        sidecars.append(directory.write_shard(shard, records, "bench", seq_len, statistics={}))
    manifest = {"format": FORMAT, "identity_hash": "bench", "encoding": encoding.describe(), "seq_len": seq_len,
                "windows": windows, "shards": sidecars}
    (path / "cache.json").write_text(json.dumps(manifest))
    return LogitCache(path)


def throughput_section(args) -> None:
    seq_len, batch_size, windows = 256, 8, 64
    encoding = TopKEncoding(VOCAB, 128)
    with tempfile.TemporaryDirectory() as tmp:
        cache = synthetic_cache(Path(tmp) / "cache", windows, seq_len, encoding)
        tokens = np.random.default_rng(0).integers(0, VOCAB, windows * seq_len + 1).astype(np.uint16)
        sampler = CachedWindowSampler(cache, tokens, batch_size, seed=0)
        student = ModelConfig(n_layers=2, aspect_ratio=64, head_dim=64, vocab_size=VOCAB, max_seq_len=seq_len)
        torch.manual_seed(0)
        model = Transformer(student)
        optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
        group = Distributed()
        objective = CachedDistillationObjective(cache, DistillationLossConfig(top_k=128, kd_weight=0.7), "")
        read_times, step_times = [], []
        for step in range(args.reads):
            start = time.perf_counter()
            batch = sampler.batch(step)
            read_times.append(time.perf_counter() - start)
            if step < args.steps:
                start = time.perf_counter()
                train_step(TrainingModel(model, group), objective, optimizer, [batch], 1.0, group,
                           torch.autocast("cpu", enabled=False))
                step_times.append(time.perf_counter() - start)
    batch_tokens = batch_size * seq_len
    read_rate = batch_tokens / statistics.median(read_times)
    step_rate = batch_tokens / statistics.median(step_times)
    print(f"\n2. read throughput, V = {VOCAB}, k = 128, batches of {batch_size} x {seq_len} random cached windows "
          f"(CPU, {torch.get_num_threads()} thread(s))")
    print(f"   cache reads (mmap + decode): {read_rate:>10,.0f} tokens/s  (median of {len(read_times)})")
    print(f"   training step of a {student.non_embedding_params / 1e6:.1f}M-parameter student from the cache: "
          f"{step_rate:>8,.0f} tokens/s  (median of {len(step_times)})")
    print(f"   ratio: {read_rate / step_rate:.1f}x (target >= 10x)")


def quality_section() -> None:
    from distillscale.model import load_pretrained
    from distillscale.training.config import DistillConfig
    from distillscale.training.recipe import train
    from distillscale.training.teachers import find_teacher, load_teacher

    shape = ["--aspect-ratio", "64", "--head-dim", "32", "--seq-len", "64", "--batch-size", "8",
             "--eval-tokens", "16k", "--eval-every", "0", "--device", "cpu"]
    k = 32
    student = ["--n-layers", "1", "--tokens", "40k", "--kd-weight", "0.7", "--top-k", str(k), *shape]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["DISTILLSCALE_CACHE"] = str(tmp / "data")

        run_here("train", "--out", tmp / "teacher", "--n-layers", "2", "--tokens", "200k", "--vocab-size", "1024",
            "--max-bytes", "1M", *shape)
        run_here("cache-logits", "--teacher", tmp / "teacher", "--out", tmp / "cache", "--top-k", k, "--seq-len", 64,
            "--tokens", "64k", "--device", "cpu", "--eval-tokens", "16k")
        run_here("distill", "--teacher", tmp / "teacher", "--out", tmp / "live", *student)
        run_here("distill", "--teacher-cache", tmp / "cache", "--out", tmp / "cached", *student)

        # Live teacher on the cache's windows: the cached run's batches, the teacher computed live.
        cache = LogitCache(tmp / "cache")
        cached_config = json.loads((tmp / "cached" / "config.json").read_text())["config"]
        config = DistillConfig.model_validate(cached_config | {"out": tmp / "live-aligned", "teacher_cache": None,
                                                               "teacher": tmp / "teacher"})
        teacher = load_teacher(find_teacher(config.teacher), cache.encoding.vocab_size, torch.device("cpu"),
                               config.seq_len)
        live_objective = LiveTeacherOnCachedWindows(teacher, config.loss_config(), teacher_val_loss=math.nan)
        samplers = []

        def make_sampler(data, tokens):
            samplers.append(CachedWindowSampler(cache, tokens, config.batch_size, config.seed))
            return samplers[-1]

        train(config, progress=False, make_objective=lambda *_: live_objective, make_sampler=make_sampler)
        # The loss itself: KD from the cache against KD from the live teacher, same batches, trained student.
        student_model = load_pretrained(tmp / "cached")
        cached_objective = CachedDistillationObjective(cache, config.loss_config(), "")
        kd_errors = []
        with torch.no_grad():
            for step in range(20):
                inputs, targets, ids, log_probs = samplers[0].batch(step)
                kd_errors.append((cached_objective(student_model, inputs, targets, ids, log_probs).kd
                                  - live_objective(student_model, inputs, targets).kd).item())
        results = {name: json.loads((tmp / name / "result.json").read_text())
                   for name in ("teacher", "live", "live-aligned", "cached")}
    print(f"\n3. student validation loss (nats/token), tiny setup: teacher {results['teacher']['non_embedding_params']:,} "
          f"non-embedding parameters, student {results['cached']['non_embedding_params']:,}, top-{k}, lambda = 0.7, "
          f"{results['cached']['tokens']:,} student tokens, {cache.tokens:,} cached")
    print(f"   teacher                                   {results['teacher']['val_loss']:.4f}")
    print(f"   live teacher, random windows (distill)    {results['live']['val_loss']:.4f}")
    print(f"   live teacher, the cache's windows         {results['live-aligned']['val_loss']:.4f}")
    print(f"   from the cache (distill --teacher-cache)  {results['cached']['val_loss']:.4f}")
    print(f"   cache - live on the same windows: {results['cached']['val_loss'] - results['live-aligned']['val_loss']:+.5f}"
          f" (quantisation, grown through training); cache - live distill: "
          f"{results['cached']['val_loss'] - results['live']['val_loss']:+.5f} (also other batches)")
    print(f"   KD term, cache - live teacher, 20 batches of the trained student: "
          f"mean {statistics.mean(kd_errors):+.2e}, max |.| {max(map(abs, kd_errors)):.2e} nats/token")
    print(f"   teacher FLOPs in the student run: live {results['live']['teacher']['flops']:.3g}, "
          f"cached {results['cached']['teacher']['flops']:.3g} (one-time cache cost {cache.manifest['flops']:.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--reads", type=int, default=20, help="timed cache reads")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size_section()
    throughput_section(args)
    quality_section()


if __name__ == "__main__":
    main()
