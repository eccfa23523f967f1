"""Distillation from a logit cache: the student reads the cache's windows and the teacher's cached
top-k at each position, so no teacher is in memory and no teacher FLOPs are spent.

The loss is the same `distillation_loss` as with a live teacher, top-k branch: the cached
predictions play the teacher's hidden states and `sparse_teacher_head` its head, returning logits
that are the cached relative log-probabilities on the k ids and -inf elsewhere. Its top-k is
exactly the cached ids, renormalised as the live top-k loss does (softmax over the k values), so
the two agree up to the quantisation bound of `encoding`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from distillscale.console import warn
from distillscale.data import TokenSampler
from distillscale.data.prepare import PreparedData
from distillscale.errors import UserError
from distillscale.model import ModelConfig
from distillscale.training.config import DistillConfig
from distillscale.training.distributed import Distributed
from distillscale.training.losses import DistillationLossConfig, Head, LossOutput, distillation_loss
from distillscale.training.logit_cache.store import LogitCache



def distill_from_cache(config: DistillConfig, progress: bool = True) -> dict[str, Any]:
    """`distill` for a config with `teacher_cache`: returns the content of result.json."""
    from distillscale.training.recipe import FLOPS_METHOD, train

    cache = LogitCache(config.teacher_cache)
    config = resolve_cached_student_data(config, cache)

    def make_sampler(data: PreparedData) -> CachedWindowSampler:
        check_cache_matches_data(cache, data)
        return CachedWindowSampler(cache, data.split(cache.manifest["split"]), config.batch_size, config.seed)

    def make_objective(data: PreparedData, student: ModelConfig, group: Distributed) -> CachedDistillationObjective:
        student_tokens = config.total_steps(student.non_embedding_params) * config.tokens_per_step
        if student_tokens > cache.tokens and group.is_main:
            warn(f"the student reads {student_tokens:,} tokens but the cache holds {cache.tokens:,}: its "
                 f"windows repeat (~{student_tokens / cache.tokens:.1f} passes)")
        return CachedDistillationObjective(cache, config.loss_config(), FLOPS_METHOD)

    return train(config, progress, make_objective=make_objective, make_sampler=make_sampler)


def resolve_cached_student_data(config: DistillConfig, cache: LogitCache) -> DistillConfig:
    """The config with the cache's tokenizer, split, sequence length and top-k, and (when --data is
    not given) its corpus; settings that contradict the cache are refused."""
    given = config.model_fields_set
    if "seq_len" in given and config.seq_len != cache.seq_len:
        raise UserError(f"--seq-len {config.seq_len} differs from the {cache.seq_len} of the logit cache "
                        f"{cache.path}: leave out --seq-len, or make a cache with --seq-len {config.seq_len}")
    if config.top_k is not None and config.top_k > cache.top_k:
        raise UserError(f"--top-k {config.top_k} is more than the logit cache {cache.path} holds "
                        f"({cache.top_k}): use --top-k {cache.top_k} or less, or leave it out")
    updates: dict[str, Any] = {"teacher_cache": cache.path, "split": cache.manifest["split"],
                               "seq_len": cache.seq_len, "top_k": config.top_k or cache.top_k}
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
        raise UserError(f"the logit cache {cache.path} was made for other data (fingerprint "
                        f"{made_for['fingerprint']}, this run's is {data.fingerprint}): train on the data it "
                        f"was made for (leave out --data, --max-bytes, --val-fraction), or make a cache "
                        f"of this data with `distillscale cache-logits`")


class CachedWindowSampler(TokenSampler):
    """A `TokenSampler` whose windows start on the cache's grid (window w starts at w * seq_len of
    the split), drawn uniformly from the cached windows as a pure function of (seed, step).

    `batch` returns (inputs, targets, teacher_ids, teacher_log_probs); the last two [b, seq_len, k]
    are the teacher's cached predictions at every position of the same windows.
    """

    def __init__(self, cache: LogitCache, tokens: np.ndarray, batch_size: int, seed: int):
        super().__init__(tokens[:cache.tokens + 1], cache.seq_len, batch_size, seed)
        self.cache = cache

    def window_starts(self, step: int) -> np.ndarray:
        generator = np.random.default_rng([self.seed, step])
        return self.seq_len * generator.integers(0, self.cache.windows, size=self.batch_size)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        inputs, targets = super().batch(step, rank, world_size)
        per_rank = self.batch_size // world_size
        windows = self.window_starts(step)[rank * per_rank:(rank + 1) * per_rank] // self.seq_len
        ids, log_probs = self.cache.teacher_predictions(windows)
        return inputs, targets, torch.from_numpy(ids.astype(np.int32)), torch.from_numpy(log_probs)


def sparse_teacher_head(vocab_size: int, top_k: int) -> Head:
    """A teacher head over cached predictions: rows [n, 2k] of (ids as floats, log-probabilities)
    -> logits [n, vocab_size], the log-probabilities on the ids and -inf elsewhere."""

    def head(packed: torch.Tensor) -> torch.Tensor:
        ids, log_probs = packed[:, :top_k].long(), packed[:, top_k:]
        logits = log_probs.new_full((len(packed), vocab_size), -torch.inf)
        return logits.scatter_(1, ids, log_probs)

    return head


class CachedDistillationObjective:
    """The distillation objective with the teacher's top-k read from a logit cache."""

    extra_flops_per_token = 0  # the cache's one-time teacher cost is in its cache.json

    def __init__(self, cache: LogitCache, loss_config: DistillationLossConfig, flops_method: str):
        self.cache = cache
        self.loss_config = loss_config
        self.teacher_head = sparse_teacher_head(cache.encoding.vocab_size, cache.top_k)
        self.flops_method = flops_method

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, teacher_ids: torch.Tensor,
                 teacher_log_probs: torch.Tensor) -> LossOutput:
        student_hidden = model.hidden_states(inputs)
        # The loss walks rows of one teacher tensor, so ids and values travel together (as float32:
        # exact for ids below 2^24, which cache-logits checks).
        packed = torch.cat([teacher_ids.float(), teacher_log_probs.float()], dim=-1)
        return distillation_loss(student_hidden.flatten(0, 1), model.head, packed.flatten(0, 1),
                                 self.teacher_head, targets.flatten(), self.loss_config)

    def result_fields(self, tokens: int) -> dict[str, Any]:
        manifest = self.cache.manifest
        return {
            "teacher": manifest["teacher"] | {"flops": 0, "cache": str(self.cache.path)},
            "teacher_cache": {"path": str(self.cache.path), "identity_hash": manifest["identity_hash"],
                              "top_k": self.cache.top_k, "tokens": self.cache.tokens,
                              "encoding": manifest["encoding"]["name"],
                              "bytes_per_token": manifest["bytes_per_token"],
                              "max_log_prob_error": manifest["quantisation"]["max_log_prob_error"],
                              "flops": manifest["flops"], "flops_method": manifest["flops_method"]},
            "distillation": self.loss_config.model_dump(),
            "flops_method": f"{self.flops_method}; the teacher's predictions were read from the logit cache: "
                            f"no teacher FLOPs in this run (the cache's one-time cost is teacher_cache.flops)",
        }
