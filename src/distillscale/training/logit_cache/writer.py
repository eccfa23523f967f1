"""`cache_logits(config)`: run a teacher once over the student's tokens and store its top-k, or
K ids sampled from its distribution (`--targets sampled`).

The cache covers the first `tokens` of the split (all of it by default), cut into windows of
`seq_len` tokens on a fixed grid; the teacher reads each window from its start, as the student
will (see `CachedWindowSampler`), so the cached predictions are made in the very context the
student sees. Shards are written one at a time; an interrupted run keeps the finished shards
(their checksums verified) and computes only the rest. A shard's samples are drawn from a
generator seeded by (seed, shard index), so a resumed cache equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from typing import Any

import numpy as np
import torch

from distillscale.console import err_console
from distillscale.data import iter_eval_batches, prepare_data
from distillscale.data.prepare import read_path
from distillscale.errors import UserError
from distillscale.io import atomic_write, atomic_write_json
from distillscale.training.logit_cache.config import CacheConfig
from distillscale.training.distributed import resolve_device
from distillscale.training.evaluation import bf16_autocast, default_bf16, evaluate
from distillscale.training.logit_cache.encoding import (
    Encoding,
    SampledEncoding,
    TopKEncoding,
)
from distillscale.training.logit_cache.store import (
    FORMAT,
    CacheDirectory,
    plan_shards,
    sha256_of_files,
)
from distillscale.training.run_dir import input_paths
from distillscale.training.teachers import (
    Teacher,
    TeacherSource,
    compute_dtype,
    find_teacher,
    load_teacher,
    resolve_student_data,
)

# Cached ids travel to the loss as float32 (see `CachedDistillationObjective`), exact below 2^24.
MAX_VOCAB_SIZE = 1 << 24
LOGITS_CHUNK = 1024  # positions whose [chunk, V] logits exist at once


def cache_logits(config: CacheConfig, progress: bool = True) -> dict[str, Any]:
    """Write (or finish, or check) the cache of `config`; returns the content of cache.json."""
    started = time.perf_counter()
    source = find_teacher(config.teacher, config.trust_remote_code)
    config = resolve_student_data(config, source)
    directory = CacheDirectory(config.out)
    directory.check_usable(inputs=input_paths(config))
    data = prepare_data(config.data_config(), progress=progress)
    tokens = data.split(config.split)
    windows = _windows_to_cache(config, len(tokens))
    if config.targets == "top-k" and config.top_k >= data.vocab_size:  # as `distill --top-k` refuses it
        raise UserError(f"--top-k {config.top_k} keeps all {data.vocab_size} ids of the vocabulary: that is the "
                        f"full distribution, which a student would read as top-k targets (kd-weight 0.5 by "
                        f"default); use --top-k {data.vocab_size - 1} or less, or --targets sampled")
    if data.vocab_size > MAX_VOCAB_SIZE:
        raise UserError(f"the vocabulary has {data.vocab_size} ids; logit caches support up to {MAX_VOCAB_SIZE}")
    encoding = (TopKEncoding(data.vocab_size, config.top_k) if config.targets == "top-k"
                else SampledEncoding(data.vocab_size, config.samples))
    identity = {
        "format": FORMAT,
        "teacher": {"path": str(source.path), "kind": source.kind, "weights_sha256": _weights_hash(source)},
        "data_fingerprint": data.fingerprint, "tokenizer_hash": data.tokenizer_hash, "split": config.split,
        "seq_len": config.seq_len, "windows": windows,
        "windows_per_shard": max(1, config.shard_tokens // config.seq_len),
        "encoding": encoding.describe(),
    }
    if config.targets == "sampled":
        identity["sampling"] = {"temperature": config.temperature, "seed": config.seed}
    identity_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    directory.claim(identity_hash, config.overwrite)

    shards = plan_shards(windows, identity["windows_per_shard"])
    done = {shard.index: sidecar for shard in shards
            if (sidecar := directory.finished_shard(shard, identity_hash, encoding)) is not None}
    todo = [shard for shard in shards if shard.index not in done]
    if not todo and directory.manifest_path.is_file():
        return json.loads(directory.manifest_path.read_text(encoding="utf-8"))
    if done and progress:
        err_console.print(f"resuming {directory.path}: {len(done)} of {len(shards)} shards are done and intact",
                          soft_wrap=True, highlight=False)

    device = resolve_device(config.device)
    # L_T on the fp32 master weights under a run's default autocast, as the teacher's own val_loss was
    # measured; then bf16 weights on CUDA for the cached predictions.
    teacher = load_teacher(source, data.vocab_size, device, config.seq_len, config.trust_remote_code,
                           dtype=torch.float32)
    teacher_val_loss = evaluate(teacher, data.split("val"), config.seq_len, config.batch_size, config.eval_tokens,
                                autocast=bf16_autocast(device, default_bf16(device)))
    teacher.to(compute_dtype(device))
    with _progress(progress) as bar:
        task = bar.add_task("cache", total=windows, completed=sum(done[i]["windows"] for i in done))
        for shard in todo:
            shard_tokens = tokens[shard.first_window * config.seq_len:
                                  (shard.first_window + shard.windows) * config.seq_len + 1]
            generator = torch.Generator(device).manual_seed(config.seed * 1_000_003 + shard.index)
            records, statistics = _predict(teacher, encoding, shard_tokens, config, generator,
                                           advance=lambda n: bar.advance(task, n))
            done[shard.index] = directory.write_shard(shard, records, identity_hash, config.seq_len, statistics)

    atomic_write(directory.tokenizer_path, lambda tmp: shutil.copyfile(data.directory / "tokenizer.json", tmp))
    manifest = _manifest(config, identity, identity_hash, teacher, teacher_val_loss, data,
                         [done[shard.index] for shard in shards], time.perf_counter() - started)
    atomic_write_json(directory.manifest_path, manifest)
    return manifest


def _windows_to_cache(config: CacheConfig, split_tokens: int) -> int:
    available = (split_tokens - 1) // config.seq_len
    if available < 1:
        raise UserError(f"the {config.split} split holds {split_tokens} tokens, fewer than one window of "
                        f"--seq-len {config.seq_len} + 1: use more data or a shorter --seq-len")
    if config.tokens is None:
        return available
    if config.tokens < config.seq_len:
        raise UserError(f"--tokens {config.tokens} is less than one window of --seq-len {config.seq_len}")
    if config.tokens > available * config.seq_len:
        raise UserError(f"--tokens {config.tokens} is more than the {config.split} split holds in windows of "
                        f"{config.seq_len} ({available * config.seq_len}): use --tokens "
                        f"{available * config.seq_len} or less, or leave it out to cache the whole split")
    return config.tokens // config.seq_len


@torch.inference_mode()
def _predict(teacher: Teacher, encoding: Encoding, tokens: np.ndarray, config: CacheConfig,
             generator: torch.Generator, advance) -> tuple[np.ndarray, dict[str, float]]:
    """Records [windows, seq_len] of the teacher's predictions over consecutive windows of `tokens`,
    and sums of what the teacher saw: its cross-entropy, and the probability mass of the ids
    stored (the top k, or the distinct sampled ids) over the tokens."""
    device = next(teacher.parameters()).device
    seq_len = config.seq_len
    windows = (len(tokens) - 1) // seq_len
    records = np.empty(windows * seq_len, dtype=encoding.record_dtype)
    written, nats, target_mass, max_step = 0, 0.0, 0.0, 0.0
    for inputs, targets in iter_eval_batches(tokens, seq_len, config.batch_size):
        hidden = teacher.hidden_states(inputs.to(device)).flatten(0, 1)
        targets = targets.to(device).flatten()
        for start in range(0, len(hidden), LOGITS_CHUNK):
            logits = teacher.head(hidden[start:start + LOGITS_CHUNK]).float()
            log_normaliser = logits.logsumexp(-1)
            target_logits = logits.gather(-1, targets[start:start + LOGITS_CHUNK, None]).squeeze(-1)
            nats += (log_normaliser - target_logits).sum().item()
            if isinstance(encoding, SampledEncoding):
                log_probs = (logits / config.temperature).log_softmax(-1)
                ids = torch.multinomial(log_probs.exp(), encoding.samples, replacement=True, generator=generator)
                entropy = -(log_probs.exp() * log_probs).sum(-1)
                drawn = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, ids, True)
                target_mass += (logits.softmax(-1) * drawn).sum().item()
                chunk = encoding.encode(ids.cpu().numpy(), entropy.cpu().numpy())
            else:
                top_logits, top_ids = logits.topk(encoding.top_k, dim=-1)
                target_mass += (top_logits.logsumexp(-1) - log_normaliser).exp().sum().item()
                top_log_probs = top_logits - log_normaliser.unsqueeze(-1)  # normalised: the mass is stored
                chunk = encoding.encode(top_ids.cpu().numpy(), top_log_probs.cpu().numpy())
                max_step = max(max_step, float(chunk["step"].max()))
            records[written:written + len(chunk)] = chunk
            written += len(chunk)
        advance(len(inputs))
    statistics = {"tokens": written, "teacher_nats": nats, "target_mass": target_mass, "max_step": max_step}
    return records.reshape(windows, seq_len), statistics


def _weights_hash(source: TeacherSource) -> str:
    """sha256 of the teacher's config and weight files: what makes its predictions."""
    if source.kind == "run":
        files = [source.path / "model_config.json", source.path / "model.safetensors"]
    else:
        files = [source.path / "config.json", *sorted(source.path.glob("*.safetensors")),
                 *sorted(source.path.glob("*.bin"))]
    return sha256_of_files([path for path in files if path.is_file()])


def _manifest(config: CacheConfig, identity: dict, identity_hash: str, teacher: Teacher,
              teacher_val_loss: float, data, sidecars: list[dict], wall_seconds: float) -> dict[str, Any]:
    info = teacher.info
    tokens = identity["windows"] * config.seq_len
    total_bytes = sum(sidecar["bytes"] for sidecar in sidecars)
    statistics = {key: sum(sidecar["statistics"][key] for sidecar in sidecars)
                  for key in ("teacher_nats", "target_mass")}
    max_step = max(sidecar["statistics"]["max_step"] for sidecar in sidecars)
    if config.targets == "sampled":
        targets = {"targets": "sampled", "samples": config.samples, "sampling": identity["sampling"],
                   "estimator": "forward KL: tau^2 (-mean_i log q_S(x_i) - H_T) over the K samples x_i ~ "
                                "softmax(z_T / tau); unbiased in value and gradient",
                   "mean_sampled_mass": statistics["target_mass"] / tokens}
    else:
        targets = {"targets": "top-k", "top_k": config.top_k,
                   "mean_top_k_mass": statistics["target_mass"] / tokens,
                   "quantisation": {"max_step": max_step, "max_log_prob_error": max_step / 2,
                                    "bound": "per token, |KD(cache) - KD(exact top-k)| <= tau^2 (2h + (exp(2h) "
                                             "- 1) E_{p_T^k} |log p_T^k - log p_S|), h = step / (2 tau)"}}
    return {
        "format": FORMAT,
        "identity_hash": identity_hash,
        "teacher": identity["teacher"] | {
            "teacher_val_loss": teacher_val_loss, "non_embedding_params": info.non_embedding_params,
            "total_params": info.total_params, "forward_flops_per_token": info.forward_flops_per_token,
            "flops_method": info.flops_method},
        "data": {"fingerprint": data.fingerprint, "tokenizer_hash": data.tokenizer_hash,
                 "vocab_size": data.vocab_size, "split": config.split,
                 "corpus": {"data": read_path(config.data_config(), data),   # as it resolved: from any directory
                            "text_field": config.text_field, "max_bytes": config.max_bytes,
                            "val_fraction": config.val_fraction}},
        "split": config.split,
        "seq_len": config.seq_len,
        "windows": identity["windows"],
        "tokens": tokens,
        **targets,
        "context": f"window w holds the teacher's predictions after reading tokens w*{config.seq_len} .. "
                   f"w*{config.seq_len}+t of the {config.split} split (t = 0..{config.seq_len - 1}); "
                   f"students read the same windows",
        "encoding": identity["encoding"],
        "bytes_per_token": total_bytes / tokens,
        "teacher_loss_on_cached_tokens": statistics["teacher_nats"] / tokens,
        "flops": info.forward_flops_per_token * tokens,
        "flops_method": "one-time cost: the teacher's forward_flops_per_token x cached tokens "
                        "(its validation pass not counted)",
        "shards": [{key: sidecar[key] for key in ("file", "first_window", "windows", "bytes", "sha256")}
                   for sidecar in sidecars],
        "device": str(next(teacher.parameters()).device),
        "wall_seconds": wall_seconds,
    }


def _progress(enabled: bool):
    if enabled and not err_console.is_terminal:  # a log, CI, Slurm: plain lines
        from distillscale.training.metrics import PlainProgress

        return PlainProgress("cache-logits", "window")
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]cache-logits[/bold]"), BarColumn(),
                    TextColumn("window {task.completed}/{task.total}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
                    disable=not (enabled and err_console.is_terminal), transient=False)
