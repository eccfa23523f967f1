"""GPU training step: the model family's real step against a plain Hugging Face Llama loop of the same
shape, side by side in one process (issue 28).

For each size (non-embedding parameters from ~6M to ~680M; vocabulary 8192, 1024-token sequences):

- distillscale: `train_step` (objective, backward, gradient clipping, fused AdamW over the muP
  groups) on `TrainingModel(compile=True)` under bf16 autocast, batches read by the recipe's
  `BatchPrefetcher` from a `TokenSampler`, numbers left on the device (`DivergenceWatch`) as the
  recipe does between logging steps;
- HF Llama: `LlamaForCausalLM` with the same d_model, depth, heads, head size and SwiGLU width
  (`hf_config_for` with plain attention), `torch.compile`, bf16 autocast, gradient clipping at 1.0,
  `torch.optim.AdamW(fused=True)`, the same batches; with both of HF's losses, as users write them:
  `labels=` (the model's own loss) and cross-entropy on float32 logits.

Printed: tokens/s of each, the ratios (target >= 1.0 against both), and MFU = achieved FLOP/s over the
bf16 matmul peak measured in this run (a square bf16 matmul, best of several), with FLOPs per token
3 x `ModelConfig.forward_flops_per_token(seq_len)` for both (the same network). With `--table FILE`
the family's figures are written as a throughput table that `distillscale plan --gpu ID
--throughput-table FILE` and `sweep plan` read (planning.gpu_hours; a table of ours at FILE gains or
replaces this device): how a user measures their own GPU.

Then, for one student size (--student, default the 85M shape), four steps of the same student:
supervised; distilled from a live teacher (twice the depth, bf16 weights, its trunk compiled as
`distill --compile` compiles it, forward KL, the loss in chunks as `distill` takes them:
`chunk_tokens`, 4096 tokens at vocabulary 8192); distilled from a top-128 logit cache (synthetic
records on disk, read and decoded by the background reader: `CachedWindowSampler` +
`CachedDistillationObjective`); and the supervised
step with `--parallel fsdp` (FSDP2 `fully_shard` on a one-rank process group) against the default.

3. (`--ladder`; issue 33) the GPU ladder's own shapes (examples/gpu_ladder.toml: aspect ratio 64, head size
64, vocabulary 512, 512-token sequences, 64 sequences per step), by default its smallest and largest
depths (4 and 9): the compile time of a fresh process with an empty inductor cache (cold) and again
with the cache it left (warm), and the tokens/s of 1, 2 and 4 such runs sharing the GPU at once (each
its own process, as the sweep places them), summed and per run. Printed as a table and, with
--json FILE, written as JSON.

Each figure: --warmup steps (compilation) then --steps timed steps between two synchronisations;
with --profile N, N more steps under torch.profiler: ms per step, the device's busy share and the
operations taking the most device time (where a step loses its time, in the same call).
Without a CUDA GPU the script says so and exits 0; `--device cpu --tiny` runs the same code at tiny
sizes on the CPU (float32, no compile unless --compile), which is how its code path is tested.

Usage: python bench/gpu/gpu_step.py [--sizes 6M,11M,85M,200M,680M] [--steps 20] [--warmup 5]
       python bench/gpu/gpu_step.py --table my-gpu.json [--table-device ID] [--peak-flops 989.4e12] [--no-students]
       python bench/gpu/gpu_step.py --no-family [--student 85M]      # section 2 alone
       python bench/gpu/gpu_step.py --ladder [--ladder-depths 4,9] [--json FILE]
       python bench/gpu/gpu_step.py --device cpu --tiny [--ladder]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from distillscale.data import TokenSampler
from distillscale.model import ModelConfig, Transformer
from distillscale.model.hf_export import hf_config_for
from distillscale.training.distillation import DistillationObjective
from distillscale.training.distributed import Distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.logit_cache import CachedDistillationObjective, CachedWindowSampler, LogitCache
from distillscale.training.logit_cache.distill import default_cache_workers
from distillscale.training.logit_cache.encoding import TopKEncoding
from distillscale.training.logit_cache.store import FORMAT, CacheDirectory, plan_shards
from distillscale.training.kd_settings import chunk_tokens
from distillscale.training.losses import DistillationLossConfig
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import build_optimizer
from distillscale.training.prefetch import BatchPrefetcher
from distillscale.training.step import DivergenceWatch, train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.teachers import frozen_teacher  # noqa: E402


@dataclass(frozen=True)
class Size:
    name: str
    n_layers: int
    aspect_ratio: int
    head_dim: int
    batch_size: int


GPU_SIZES = [Size("6M", 5, 64, 64, 64), Size("11M", 6, 64, 64, 64), Size("85M", 12, 64, 64, 32),
             Size("200M", 16, 64, 128, 16), Size("680M", 24, 64, 128, 16)]
TINY_SIZES = [Size("tiny-1", 1, 32, 32, 4), Size("tiny-2", 2, 32, 32, 4)]
TOP_K = 128


@dataclass(frozen=True)
class Setup:
    device: torch.device
    vocab: int
    seq_len: int
    bf16: bool
    compile: bool
    steps: int
    warmup: int
    profile: int = 0  # steps profiled after the timed ones (--profile)


def model_config(size: Size, setup: Setup, n_layers: int | None = None) -> ModelConfig:
    return ModelConfig(n_layers=n_layers or size.n_layers, aspect_ratio=size.aspect_ratio, head_dim=size.head_dim,
                       vocab_size=setup.vocab, max_seq_len=setup.seq_len)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_second(step: Callable[[int], None], tokens_per_step: int, setup: Setup, label: str = "") -> float:
    for index in range(setup.warmup):
        step(index)
    synchronize(setup.device)
    start = time.perf_counter()
    for index in range(setup.warmup, setup.warmup + setup.steps):
        step(index)
    synchronize(setup.device)
    speed = setup.steps * tokens_per_step / (time.perf_counter() - start)
    if setup.profile:
        profile_steps(step, range(setup.warmup + setup.steps, setup.warmup + setup.steps + setup.profile), setup, label)
    return speed


def profile_steps(step: Callable[[int], None], indices: range, setup: Setup, label: str, rows: int = 12) -> None:
    """--profile: where `indices`' steps spend their time (torch.profiler): wall and device-busy ms per
    step (busy well below wall: the host does not keep the device fed) and the operations taking the
    most self time on the device (on the CPU: on the host), with their share and calls per step."""
    from torch.profiler import ProfilerActivity, profile

    cuda = setup.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        start = time.perf_counter()
        for index in indices:
            step(index)
        synchronize(setup.device)
        wall = (time.perf_counter() - start) / len(indices)
    events = profiler.key_averages()
    own = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    busy = sum(own(e) for e in events) / 1e3 / len(indices)  # µs -> ms per step
    kernels = ""
    if cuda:  # the device's kernels (and copies) launched per step
        launched = sum(1 for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA)
        kernels = f", {launched / len(indices):,.0f} kernels per step"
    print(f"   profile of {label or 'the step'}: {wall * 1e3:.2f} ms per step, {'device' if cuda else 'host'} busy "
          f"{busy:.2f} ms ({busy / (wall * 1e3):.0%}){kernels}; top operations by self "
          f"{'device' if cuda else 'host'} time:")
    for event in sorted(events, key=own, reverse=True)[:rows]:
        print(f"      {own(event) / 1e3 / len(indices):>8.3f} ms {own(event) / max(busy * 1e3 * len(indices), 1e-9):>5.1%}"
              f" {event.count / len(indices):>6.1f}/step  {event.key[:90]}")


def matmul_peak(setup: Setup) -> float:
    """FLOP/s of a square matmul in the dtype the steps compute in (bf16 on CUDA), best of 10."""
    n = 8192 if setup.device.type == "cuda" else 1024
    dtype = torch.bfloat16 if setup.bf16 else torch.float32
    a, b = (torch.randn(n, n, device=setup.device, dtype=dtype) for _ in range(2))
    best = math.inf
    for _ in range(10):
        synchronize(setup.device)
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        synchronize(setup.device)
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * n ** 3 / best


def token_sampler(setup: Setup, batch_size: int, windows: int = 256) -> TokenSampler:
    tokens = np.random.default_rng(0).integers(0, setup.vocab, windows * setup.seq_len + 1).astype(np.uint16)
    return TokenSampler(tokens, setup.seq_len, batch_size, seed=0)


def distillscale_step(config: ModelConfig, setup: Setup, sampler: TokenSampler, objective=None,
                      group: Distributed | None = None, parallel: str = "ddp") -> Callable[[int], None]:
    """The recipe's step: returns step(index), which trains on the sampler's batch `index`."""
    torch.manual_seed(0)
    group = group or Distributed(device=setup.device)
    model = Transformer(config).to(setup.device)
    trained = TrainingModel(model, group, compile=setup.compile, parallel=parallel, bf16=setup.bf16)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    objective = objective or SupervisedObjective(z_loss_weight=1e-4, compile=setup.compile)  # as the recipe
    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16)
    watch = DivergenceWatch(setup.device)
    total = setup.warmup + setup.steps + setup.profile
    reader = BatchPrefetcher(lambda index: [sampler.batch(index)], 0, total, setup.device,
                             workers=sampler.read_workers).__enter__()  # as the recipe reads

    def step(index: int) -> None:
        result = train_step(trained, objective, optimizer, reader.next(index), 1.0, group, autocast,
                            halted=watch.halted)
        watch.record(index + 1, result)
        if index == total - 1:
            reader.close()
            if watch.first_bad() is not None:
                raise SystemExit("a benchmark step was not finite")

    return step


def hf_llama_step(config: ModelConfig, setup: Setup, sampler: TokenSampler,
                  loss: str = "float32") -> Callable[[int], None]:
    """A plain Hugging Face Llama training loop of the same shape; `loss`: "labels" (HF's own loss,
    `labels=`) or "float32" (cross-entropy on the logits cast to float32)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    plain = ModelConfig(**{**config.model_dump(), "qk_norm": False})  # Llama: no QK-norm
    hf_config = hf_config_for(plain, tied=False, dtype=torch.float32, eos_token_id=None)
    model = LlamaForCausalLM(hf_config).to(setup.device)
    compiled = torch.compile(model) if setup.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16)
    total = setup.warmup + setup.steps + setup.profile
    reader = BatchPrefetcher(lambda index: [sampler.batch(index)], 0, total, setup.device).__enter__()

    def step(index: int) -> None:
        ((inputs, targets),) = reader.next(index)
        if loss == "labels":  # as users write it: labels = input_ids, HF shifts them (T - 1 targets)
            with autocast:
                value = compiled(input_ids=inputs, labels=inputs).loss
        else:
            with autocast:
                logits = compiled(input_ids=inputs).logits
            value = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index == total - 1:
            reader.close()

    return step


def synthetic_top_k_cache(path: Path, setup: Setup, windows: int) -> LogitCache:
    """A top-k cache on disk with random (sorted) teacher log-probabilities, laid out as cache-logits
    writes it."""
    encoding = TopKEncoding(setup.vocab, TOP_K)
    directory, generator, sidecars = CacheDirectory(path), torch.Generator().manual_seed(1), []
    for shard in plan_shards(windows, windows_per_shard=16):
        rows = shard.windows * setup.seq_len
        values, ids = (2 * torch.randn(rows, setup.vocab, generator=generator)).topk(TOP_K, dim=-1)
        records = encoding.encode(ids.numpy(), values.numpy()).reshape(shard.windows, setup.seq_len)
        sidecars.append(directory.write_shard(shard, records, "bench", setup.seq_len, statistics={}))
    manifest = {"format": FORMAT, "identity_hash": "bench", "encoding": encoding.describe(),
                "seq_len": setup.seq_len, "windows": windows, "shards": sidecars}
    (path / "cache.json").write_text(json.dumps(manifest))
    return LogitCache(path)


class OneRankGroup(Distributed):
    """A one-process job whose model is sharded for real (FSDP2 on a one-rank process group)."""

    @property
    def enabled(self) -> bool:
        return True


def one_rank_process_group(device: torch.device) -> OneRankGroup:
    import torch.distributed as dist

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    return OneRankGroup(rank=0, world_size=1, device=device)


def family_vs_llama(sizes: list[Size], setup: Setup, peak: float) -> list[dict]:
    """Section 1: the family's step against the HF loop with either loss, per size; the family's figures
    (as a throughput table holds them)."""
    print(f"\n1. the family's step vs a plain HF Llama loop (vocabulary {setup.vocab}, {setup.seq_len}-token "
          f"sequences, bf16 {setup.bf16}, compile {setup.compile}); MFU vs the measured peak")
    print(f"   {'size':>7} {'non-emb':>8} {'batch':>10} {'distillscale tok/s':>19} {'HF labels=':>11} "
          f"{'HF fp32 CE':>11} {'ratios':>11} {'MFU ours':>9} {'MFU HF':>7}")
    figures = []
    for size in sizes:
        config = model_config(size, setup)
        sampler = token_sampler(setup, size.batch_size)
        tokens = size.batch_size * setup.seq_len
        ours = tokens_per_second(distillscale_step(config, setup, sampler), tokens, setup, f"{size.name} distillscale")
        labels = tokens_per_second(hf_llama_step(config, setup, sampler, loss="labels"), tokens, setup,
                                   f"{size.name} HF labels=")
        float32 = tokens_per_second(hf_llama_step(config, setup, sampler, loss="float32"), tokens, setup,
                                    f"{size.name} HF float32 CE")
        flops_per_token = 3 * config.forward_flops_per_token(setup.seq_len)
        print(f"   {size.name:>7} {config.non_embedding_params / 1e6:>7.1f}M {size.batch_size:>4} x {setup.seq_len:<4}"
              f" {ours:>19,.0f} {labels:>11,.0f} {float32:>11,.0f} {ours / labels:>5.2f} {ours / float32:>5.2f}"
              f" {ours * flops_per_token / peak:>8.1%} {max(labels, float32) * flops_per_token / peak:>6.1%}")
        figures.append({"shape": f"{size.n_layers} x {config.d_model}, head {size.head_dim}, vocabulary "
                                 f"{setup.vocab}, {size.batch_size} x {setup.seq_len} tokens per step",
                        "model": {"n_layers": size.n_layers, "aspect_ratio": size.aspect_ratio,
                                  "head_dim": size.head_dim, "vocab_size": setup.vocab, "seq_len": setup.seq_len,
                                  "batch_sequences": size.batch_size},
                        "non_embedding_params": config.non_embedding_params, "flops_per_token": flops_per_token,
                        "tokens_per_second": ours})
        if setup.device.type == "cuda":
            torch.cuda.empty_cache()
    print("   ratios: ours / HF labels=, ours / HF float32 CE (target >= 1.0 against both); MFU HF: the faster loss")
    return figures


def write_table(path: Path, figures: list[dict], setup: Setup, peak: float, device_id: str | None,
                peak_flops: float | None) -> None:
    """The family's figures as a throughput table (planning.gpu_hours) at `path`: a new file, or a table
    of ours that gains (or replaces) this device; anything else is refused."""
    import datetime
    import re

    from distillscale.planning.gpu_hours import FORMAT, DeviceRecord, TableRecord, ThroughputTable

    name = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "CPU"
    device_id = device_id or (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu")
    today = datetime.date.today().isoformat()
    source = f"bench/gpu/gpu_step.py section 1 ({'bf16' if setup.bf16 else 'fp32'}, compile {setup.compile})"
    device = DeviceRecord(id=device_id, name=name, peak_flops=peak_flops or peak,
                          peak_source="given (--peak-flops)" if peak_flops else
                          f"the {'bf16' if setup.bf16 else 'fp32'} matmul peak measured by bench/gpu/gpu_step.py",
                          measured_matmul_peak=peak,
                          figures=[{**figure, "date": today, "torch": torch.__version__, "source": source}
                                   for figure in figures])
    if path.exists():
        table = ThroughputTable.load(path)  # refuses a file that is not a table
        if device_id in table.devices:  # measured in several calls: its sizes not measured now are kept
            measured = {figure["non_embedding_params"] for figure in figures}
            kept = [figure for figure in table.devices[device_id].figures if figure.non_embedding_params not in measured]
            device = device.model_copy(update={"figures": (*kept, *device.figures)})
        table = table.with_device(device)
    else:
        table = ThroughputTable(TableRecord(format=FORMAT, description="measured by bench/gpu/gpu_step.py --table",
                                            devices=(device,)), path)
    table.save(path)
    print(f"\nthroughput table written: {path} (device {device_id!r}); plan on it with "
          f"`distillscale plan ... --gpu {device_id} --throughput-table {path}`")


ARMS = ("supervised", "live", "cache", "host", "fsdp")  # --arms: supervised always runs (the ratios' base)


def student_steps(size: Size, setup: Setup, arms: tuple[str, ...] = ARMS) -> None:
    config = model_config(size, setup)
    teacher_config = model_config(size, setup, n_layers=2 * size.n_layers)
    tokens = size.batch_size * setup.seq_len
    loss = DistillationLossConfig(kd_weight=1.0, chunk_size=chunk_tokens(setup.vocab))  # distill's rule
    windows = 64  # random windows of 64 cached ones: the reads are the same whether they repeat or not
    print(f"\n2. one student ({size.name}: {config.non_embedding_params / 1e6:.1f}M non-embedding, "
          f"{size.batch_size} x {setup.seq_len} tokens per step), four ways")
    with tempfile.TemporaryDirectory() as scratch:
        cache = synthetic_top_k_cache(Path(scratch) / "cache", setup, windows)
        tokens_array = np.random.default_rng(0).integers(0, setup.vocab, cache.tokens + 1).astype(np.uint16)
        # on CUDA the records are copied as stored and decoded on the device, as distill does there
        cached_sampler = CachedWindowSampler(cache, tokens_array, size.batch_size, seed=0,
                                             decode="device" if setup.device.type == "cuda" else "host")
        # decoded on the host by distill's default pool of reader threads on this device
        host_sampler = CachedWindowSampler(cache, tokens_array, size.batch_size, seed=0,
                                           workers=default_cache_workers(setup.device))
        plain_sampler = TokenSampler(tokens_array, setup.seq_len, size.batch_size, seed=0)
        teacher = frozen_teacher(teacher_config, setup.device)
        if setup.compile:  # as distill --compile does (until 2026-11-26 this bench ran the teacher eager)
            teacher.compile_trunk()
        builds = {
            "supervised": lambda: distillscale_step(config, setup, plain_sampler),
            f"live teacher ({teacher_config.non_embedding_params / 1e6:.0f}M, forward KL)":
                lambda: distillscale_step(config, setup, plain_sampler,
                                          DistillationObjective(teacher, loss, teacher_val_loss=math.nan)),
            f"top-{TOP_K} logit cache (background reader{', decoded on the device' * (setup.device.type == 'cuda')})":
                lambda: distillscale_step(config, setup, cached_sampler,
                                          CachedDistillationObjective(cache, loss.model_copy(update={"top_k": TOP_K}),
                                                                      "", compile=setup.compile)),
            **({f"top-{TOP_K} logit cache, decoded on the host ({host_sampler.read_workers} reader threads)":
                lambda: distillscale_step(config, setup, host_sampler,
                                          CachedDistillationObjective(cache, loss.model_copy(update={"top_k": TOP_K}),
                                                                      "", compile=setup.compile))}
               if setup.device.type == "cuda" else {}),
            "supervised, --parallel fsdp (1 rank, sharded)":
                lambda: distillscale_step(config, setup, plain_sampler, group=one_rank_process_group(setup.device),
                                          parallel="fsdp"),
        }
        keys = dict(zip(builds, ("supervised", "live", "cache", *(("host",) if len(builds) == 5 else ()), "fsdp")))
        speeds = {}
        for name, build in builds.items():
            if keys[name] not in arms and name != "supervised":
                continue
            speeds[name] = tokens_per_second(build(), tokens, setup, name)
            if "fsdp" in name:
                torch.distributed.destroy_process_group()  # the one this arm started
            print(f"   {name:<56} {speeds[name]:>12,.0f} tokens/s  {speeds[name] / speeds['supervised']:>5.2f}x "
                  f"supervised")
    base = speeds["supervised"]
    cached = next((v for k, v in speeds.items() if "cache (background" in k), None)
    fsdp = next((v for k, v in speeds.items() if "fsdp" in k), None)
    live = next((v for k, v in speeds.items() if "live teacher" in k), None)
    targets = []
    if cached is not None:
        targets.append(f"cache-fed >= 0.9x supervised: {'met' if cached >= 0.9 * base else 'MISSED'}")
    if live is not None:
        # the live teacher's FLOP-ideal: student training over student training plus the teacher's forward
        student_flops = 3 * config.forward_flops_per_token(setup.seq_len)
        ideal = student_flops / (student_flops + teacher_config.forward_flops_per_token(setup.seq_len))
        live /= base
        print(f"   live teacher: {live:.2f}x supervised, {live / ideal:.0%} of its FLOP-ideal {ideal:.2f}x "
              f"(3 F_S / (3 F_S + F_T))")
        targets.append(f"live teacher >= 90% of its FLOP-ideal: {'met' if live >= 0.9 * ideal else 'MISSED'}")
    if fsdp is not None:
        targets.append(f"FSDP >= 0.9x default: {'met' if fsdp >= 0.9 * base else 'MISSED'}")
    if targets:
        print(f"   targets: {'; '.join(targets)}")


LADDER = Path(__file__).resolve().parents[2] / "examples" / "gpu_ladder.toml"
LADDER_SHARING = (1, 2, 4)


def ladder_shape(tiny: bool) -> tuple[Size, int, int]:
    """(shape at depth 1, vocabulary, sequence length) of the GPU ladder (its spec's [data] and [model])."""
    if tiny:
        return Size("tiny", 1, 32, 32, 4), 512, 64
    import tomllib

    spec = tomllib.loads(LADDER.read_text())
    model, data = spec["model"], spec["data"]
    return (Size("ladder", 1, model["aspect_ratio"], model["head_dim"], model["batch_size"]), data["vocab_size"],
            data["seq_len"])


def ladder_worker(depth: int, setup: Setup, tiny: bool) -> dict:
    """One run of the ladder's shape at `depth` in this process: seconds of its first step (compilation
    with the inductor cache it finds) and tokens/s after the warm-up."""
    shape, vocab, seq_len = ladder_shape(tiny)
    setup = Setup(**{**setup.__dict__, "vocab": vocab, "seq_len": seq_len, "warmup": max(1, setup.warmup)})
    config = model_config(shape, setup, n_layers=depth)
    step = distillscale_step(config, setup, token_sampler(setup, shape.batch_size, windows=64))
    start = time.perf_counter()
    step(0)
    synchronize(setup.device)
    first = time.perf_counter() - start
    for index in range(1, setup.warmup):
        step(index)
    synchronize(setup.device)
    if not sys.stdin.isatty():  # under _ladder_processes: time together with the other runs
        print("ready", flush=True)
        sys.stdin.readline()
    speed = tokens_per_second(lambda index: step(index + max(1, setup.warmup)), shape.batch_size * seq_len,
                              Setup(**{**setup.__dict__, "warmup": 0, "profile": 0}))
    return {"depth": depth, "non_embedding_params": config.non_embedding_params, "first_step_seconds": first,
            "tokens_per_second": speed}


def _ladder_processes(depth: int, count: int, args: argparse.Namespace, cache: str) -> list[dict]:
    """`count` worker processes at once (as a sweep runs several runs per GPU), sharing `cache`."""
    command = [sys.executable, __file__, "--ladder-worker", str(depth), "--device", args.device,
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--tiny"] if args.tiny else []
    command += [] if args.compile is None else ["--compile" if args.compile else "--no-compile"]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
               for _ in range(count)]
    for worker in workers:  # all compiled and warmed up: their timed steps overlap
        if worker.stdout.readline().strip() != "ready":
            worker.wait()
            raise SystemExit(f"a ladder worker failed (exit {worker.returncode}): {' '.join(command)}")
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode:
            raise SystemExit(f"a ladder worker failed (exit {worker.returncode}): {' '.join(command)}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def ladder_steps(depths: list[int], args: argparse.Namespace) -> dict:
    """Section 3: compile cold and warm, then 1, 2 and 4 runs sharing the device, per depth."""
    shape, vocab, seq_len = ladder_shape(args.tiny)
    print(f"\n3. the ladder's shapes (aspect {shape.aspect_ratio}, head {shape.head_dim}, vocabulary {vocab}, "
          f"{shape.batch_size} x {seq_len} tokens per step): compile cold/warm, runs sharing one device")
    print(f"   {'depth':>5} {'non-emb':>8} {'compile cold s':>15} {'warm s':>7} "
          + " ".join(f"{f'{n} run(s) tok/s (each)':>28}" for n in LADDER_SHARING))
    rows = []
    for depth in depths:
        with tempfile.TemporaryDirectory() as cache:
            cold = _ladder_processes(depth, 1, args, cache)[0]
            warm = _ladder_processes(depth, 1, args, cache)[0]
            sharing = {n: [warm] if n == 1 else _ladder_processes(depth, n, args, cache) for n in LADDER_SHARING}
        row = {"depth": depth, "non_embedding_params": cold["non_embedding_params"],
               "compile_cold_seconds": cold["first_step_seconds"], "compile_warm_seconds": warm["first_step_seconds"],
               "sharing": {str(n): [r["tokens_per_second"] for r in results] for n, results in sharing.items()}}
        rows.append(row)
        cells = " ".join(f"{sum(r['tokens_per_second'] for r in results):>14,.0f} ({min(r['tokens_per_second'] for r in results):>10,.0f})"
                         for results in sharing.values())
        print(f"   {depth:>5} {row['non_embedding_params'] / 1e6:>7.1f}M {row['compile_cold_seconds']:>15.1f} "
              f"{row['compile_warm_seconds']:>7.1f} {cells}")
    print("   compile = the first step's seconds in a fresh process (cold: empty inductor cache; warm: the cache "
          "the cold one left); tok/s summed over the runs sharing the device (the slowest run's in brackets)")
    return {"vocab_size": vocab, "seq_len": seq_len, "batch_size": shape.batch_size, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (vocabulary 512, 64-token sequences)")
    parser.add_argument("--sizes", help="comma-separated size names (default: all)")
    parser.add_argument("--student", default=None, help="the size of section 2 (default: 85M, or tiny-2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile both loops (default: on CUDA only)")
    parser.add_argument("--ladder", action="store_true", help="only section 3: the GPU ladder's shapes, compile "
                                                                 "cold and warm, 1/2/4 runs sharing the device")
    parser.add_argument("--ladder-depths", default="4,9", help="depths of section 3 (default: 4,9; tiny: 1)")
    parser.add_argument("--json", type=Path, default=None, help="with --ladder: write its figures here")
    parser.add_argument("--ladder-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, default=None, help="write section 1's figures as a throughput "
                                                                 "table (plan --gpu ID --throughput-table FILE)")
    parser.add_argument("--table-device", default=None, help="the device's id in the table (default: from its name)")
    parser.add_argument("--peak-flops", type=float, default=None, help="the device's dense bf16 peak, FLOP/s "
                                                                         "(default: the matmul peak measured here)")
    parser.add_argument("--no-students", action="store_true", help="leave out section 2 (one student four ways)")
    parser.add_argument("--no-family", action="store_true", help="leave out section 1 (the family vs HF Llama)")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help="section 2's arms beside supervised: live, cache, host (a cache decoded on the host; "
                             "CUDA only), fsdp (default: all)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after each figure's timed steps, profile STEPS more (torch.profiler): ms per step, "
                             "the device's busy share, the operations taking the most device time")
    args = parser.parse_args(argv)
    arms = tuple(args.arms.split(","))
    if not set(arms) <= set(ARMS):
        parser.error(f"--arms takes {', '.join(ARMS)}, comma-separated; got {args.arms}")
    if args.table is not None and args.no_family:
        parser.error("--table writes section 1's figures: leave out --no-family")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: bench/gpu/gpu_step.py measures GPU training steps, so there is nothing to measure "
              "(run it on a GPU machine; `--device cpu --tiny` runs its code path on the CPU)")
        return 0
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sizes = TINY_SIZES if args.tiny else GPU_SIZES
    if args.sizes:
        wanted = args.sizes.split(",")
        sizes = [size for size in sizes if size.name in wanted]
    student = next(size for size in (TINY_SIZES if args.tiny else GPU_SIZES)
                   if size.name == (args.student or ("tiny-2" if args.tiny else "85M")))
    setup = Setup(device=device, vocab=512 if args.tiny else 8192, seq_len=64 if args.tiny else 1024,
                  bf16=cuda and torch.cuda.is_bf16_supported(), compile=cuda if args.compile is None else args.compile,
                  steps=args.steps, warmup=args.warmup, profile=args.profile)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.ladder_worker is not None:
        print(json.dumps(ladder_worker(args.ladder_worker, setup, args.tiny)))
        return 0
    if cuda:
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: CPU ({torch.get_num_threads()} threads), torch {torch.__version__}")
    if args.ladder:
        depths = [int(d) for d in ("1" if args.tiny and args.ladder_depths == "4,9" else args.ladder_depths).split(",")]
        figures = ladder_steps(depths, args)
        if args.json is not None:
            from distillscale.io import atomic_write_json

            atomic_write_json(args.json, {"device": torch.cuda.get_device_name(device) if cuda else "cpu",
                                          "compile": setup.compile, "bf16": setup.bf16, **figures})
        return 0
    peak = matmul_peak(setup)
    print(f"measured matmul peak ({'bf16' if setup.bf16 else 'fp32'}): {peak / 1e12:.3g} TFLOP/s")
    if args.table is not None and args.table.exists():
        from distillscale.errors import UserError
        from distillscale.planning.gpu_hours import ThroughputTable

        try:
            ThroughputTable.load(args.table)  # a file that is not a throughput table is refused before any work
        except UserError as exc:
            print(f"gpu_step: {exc}: give a new file or a table this script wrote", file=sys.stderr)
            return 2
    if not args.no_family:
        figures = family_vs_llama(sizes, setup, peak)
        if args.table is not None:
            write_table(args.table, figures, setup, peak, args.table_device, args.peak_flops)
    if not args.no_students:
        student_steps(student, setup, arms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
