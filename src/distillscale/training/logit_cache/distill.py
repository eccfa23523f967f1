"""Distillation from a logit cache: the student reads the cache's windows and the teacher's cached
predictions at each position (top-k or sampled), so no teacher is in memory and no teacher FLOPs
are spent. The recipe is the supervised one with `CachedWindowSampler` and
`CachedDistillationObjective` (see `logit_cache.objective` for the two losses).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from distillscale.console import warn
from distillscale.data.config import DataConfig
from distillscale.data.prepare import data_identity
from distillscale.data.prepared import PreparedData
from distillscale.errors import UserError
from distillscale.training.config import DistillConfig
from distillscale.training.distributed import Distributed, resolve_device
from distillscale.training.kd_settings import TOP_K_KD_WEIGHT
from distillscale.training.logit_cache.objective import CachedDistillationObjective
from distillscale.training.logit_cache.sampler import CachedWindowSampler
from distillscale.training.logit_cache.store import LogitCache
from distillscale.training.recipe import FLOPS_METHOD, train
from distillscale.training.records import RunPlan, RunResult, TopKTargetsRecord
from distillscale.training.top_k import CHECK_TOKENS, TAIL_FROM_MEAN_MASS, TAIL_KNOWN, check_top_k_mass


def distill_from_cache(config: DistillConfig, progress: bool = True) -> RunResult:
    """`distill` for a config with `teacher_cache`: the run's result.json record."""
    cache = LogitCache(config.teacher_cache)
    config = resolve_cached_student_data(config, cache)

    def make_sampler(data: PreparedData, tokens: np.ndarray) -> CachedWindowSampler:
        check_cache_matches_data(cache, data)  # the cache's split is the run's (resolve_cached_student_data)
        # on a GPU the records are copied as stored and decoded there; on the CPU decoded
        # in the reader's threads, numbers bit for bit those of before
        device = resolve_device(config.device)
        decode = "device" if device.type == "cuda" else "host"
        return CachedWindowSampler(cache, tokens, config.batch_size, config.seed, decode=decode,
                                   workers=config.cache_workers or default_cache_workers(device))

    def make_objective(data: PreparedData, plan: RunPlan, group: Distributed) -> CachedDistillationObjective:
        student_tokens = plan.total_steps * plan.tokens_per_step
        if student_tokens > cache.tokens and group.is_main and config.unique_tokens is None:
            warn(f"the student reads {student_tokens:,} tokens but the cache holds {cache.tokens:,}: its "
                 f"windows repeat (~{student_tokens / cache.tokens:.1f} passes)")
        objective = CachedDistillationObjective(cache, config.loss_config(data.vocab_size), FLOPS_METHOD,
                                                compile=config.compile)
        if cache.targets == "top-k" and config.top_k < cache.encoding.vocab_size:
            objective.top_k_targets = check_cached_top_k(cache, config, report=group.is_main)
        return objective

    return train(config, progress, make_objective=make_objective, make_sampler=make_sampler)


# Reader threads on a GPU when --cache-workers is not given: a whole step's records are read (and, with
# host decoding, decoded) per thread, so 4 cover bursts and a cold page cache's reads.
GPU_CACHE_WORKERS = 4


def default_cache_workers(device: torch.device) -> int:
    """Threads reading the cache's batches ahead when --cache-workers is not given: 1 on the CPU, whose
    cores the step's own threads use; on a GPU up to `GPU_CACHE_WORKERS` of the cores this process may
    use (its share of them under torchrun), one left to the training thread."""
    if device.type != "cuda":
        return 1
    cores = len(os.sched_getaffinity(0)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(GPU_CACHE_WORKERS, cores - 1))


def check_cached_top_k(cache: LogitCache, config: DistillConfig, report: bool = True) -> TopKTargetsRecord:
    """The teacher's top-k mass on the cache's first `CHECK_TOKENS` (training.top_k)."""
    windows = np.arange(min(cache.windows, max(1, CHECK_TOKENS // cache.seq_len)))
    _, log_probs = cache.teacher_predictions(windows)
    log_probs = torch.from_numpy(log_probs).reshape(-1, cache.top_k).topk(config.top_k, dim=-1).values
    known = cache.tail == "known"
    return check_top_k_mass(log_probs, config.top_k, "cache", cache.tail,
                            TAIL_KNOWN if known else TAIL_FROM_MEAN_MASS, config.top_k_tail, report)


def resolve_cached_student_data(config: DistillConfig, cache: LogitCache) -> DistillConfig:
    """The config with the cache's tokenizer, split, sequence length and top-k (or, for a sampled
    cache, its sampling temperature), and (when --data is not given) its corpus; settings that
    contradict the cache are refused."""
    given = config.model_fields_set
    if config.unique_tokens is not None and config.unique_tokens > cache.tokens:
        raise UserError(f"--unique-tokens {config.unique_tokens:,} is more than the {cache.tokens:,} tokens the logit "
                        f"cache {cache.path} holds: give at most {cache.tokens:,}, or leave it out to read the "
                        "whole cache")
    if "seq_len" in given and config.seq_len != cache.seq_len:
        raise UserError(f"--seq-len {config.seq_len} differs from the {cache.seq_len} of the logit cache "
                        f"{cache.path}: leave out --seq-len, or make a cache with --seq-len {config.seq_len}")
    updates: dict[str, Any] = {"teacher_cache": cache.path, "split": cache.manifest["split"],
                               "seq_len": cache.seq_len}
    if cache.targets == "sampled":
        if config.kd != "forward-kl":
            raise UserError(f"--kd {config.kd} cannot be estimated from the sampled logit cache {cache.path}: "
                            f"use --kd forward-kl, or a top-k cache")
        if config.top_k is not None:
            raise UserError(f"--top-k does not apply to the sampled logit cache {cache.path} (it is unbiased "
                            f"over the whole vocabulary): leave out --top-k")
        if not config.top_k_tail:  # ignored otherwise, yet recorded
            raise UserError(f"--no-top-k-tail does not apply to the sampled logit cache {cache.path} (it has no "
                            f"top-k tail): leave out --no-top-k-tail")
        if "temperature" in given and config.temperature != cache.temperature:
            raise UserError(f"--temperature {config.temperature} differs from the {cache.temperature} the "
                            f"logit cache {cache.path} was sampled at: leave out --temperature, or make a "
                            f"cache with --temperature {config.temperature}")
        updates["temperature"] = cache.temperature
    else:
        if config.top_k is not None and config.top_k > cache.top_k:
            raise UserError(f"--top-k {config.top_k} is more than the logit cache {cache.path} holds "
                            f"({cache.top_k}): use --top-k {cache.top_k} or less, or leave it out")
        updates["top_k"] = config.top_k or cache.top_k
        if "kd_weight" not in given:  # top-k targets give the data a share by default
            updates["kd_weight"] = TOP_K_KD_WEIGHT
    if config.tokenizer is None:
        updates["tokenizer"] = cache.tokenizer_path
    if config.data is None:
        corpus = cache.manifest["data"]["corpus"]
        updates |= {key: value for key, value in corpus.items()
                    if value is not None and key not in given}
    return type(config).model_validate(config.model_dump() | updates)


def check_cache_matches_data(cache: LogitCache, data: PreparedData) -> None:
    """Refuse a cache made with another tokenizer or for other data."""
    made_for = cache.manifest["data"]
    if made_for["tokenizer_hash"] != data.tokenizer_hash:
        raise UserError(f"the logit cache {cache.path} was made with another tokenizer (sha256 "
                        f"{made_for['tokenizer_hash'][:12]}, this run's is {data.tokenizer_hash[:12]}): "
                        f"leave out --tokenizer to use the cache's")
    if made_for["fingerprint"] != data.fingerprint:
        why = f"fingerprint {made_for['fingerprint']}, this run's is {data.fingerprint}"
        identity = data_identity(DataConfig.model_validate(data.manifest["config"]))  # the reason, as a teacher's
        if made_for["fingerprint"] in identity.earlier.values():  # an earlier data format's split of this corpus
            why = identity.why_other(made_for["fingerprint"])
        raise UserError(f"the logit cache {cache.path} was made for other data ({why}): train on the data it "
                        f"was made for (leave out --data, --max-bytes, --val-fraction), or make a cache "
                        f"of this data with `distillscale cache-logits`")
