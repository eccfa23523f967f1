"""Batches of token windows: random ones for training, consecutive ones for evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from distillscale.errors import UserError


class TokenSampler:
    """Random windows of `seq_len + 1` tokens from a token split.

    `batch(step)` draws the global batch's window starts from a generator seeded by `(seed, step)`, so
    it is a pure function: resuming at a step replays exactly the batches an uninterrupted run would
    have seen, and the ranks of a data-parallel run get disjoint slices of one and the same global batch.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be positive, got {seq_len} and {batch_size}")
        _require_window(tokens, seq_len)
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed

    def window_starts(self, step: int) -> np.ndarray:
        """Start offsets of the global batch at `step` (batch_size of them)."""
        generator = np.random.default_rng([self.seed, step])
        return generator.integers(0, len(self.tokens) - self.seq_len, size=self.batch_size)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of this rank's share of the global batch at `step`, each a LongTensor
        [batch_size // world_size, seq_len]; targets are the inputs shifted by one token."""
        if self.batch_size % world_size:
            raise UserError(f"batch size {self.batch_size} is not divisible by the {world_size} processes: "
                            f"use a multiple of {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        per_rank = self.batch_size // world_size
        starts = self.window_starts(step)[rank * per_rank:(rank + 1) * per_rank]
        return _windows(self.tokens, starts, self.seq_len)


def iter_eval_batches(tokens: np.ndarray, seq_len: int, batch_size: int,
                      max_tokens: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive non-overlapping windows over `tokens` (the last partial window is left out), in
    batches of up to `batch_size`; at most `max_tokens` predicted tokens when given."""
    _require_window(tokens, seq_len)
    n_windows = (len(tokens) - 1) // seq_len
    if max_tokens is not None:
        if max_tokens < seq_len:
            raise UserError(f"the evaluation cap of {max_tokens} tokens is below one sequence of {seq_len}: "
                            "raise the cap or shorten the sequence")
        n_windows = min(n_windows, max_tokens // seq_len)
    starts = np.arange(n_windows) * seq_len
    for first in range(0, n_windows, batch_size):
        yield _windows(tokens, starts[first:first + batch_size], seq_len)


def _require_window(tokens: np.ndarray, seq_len: int) -> None:
    if len(tokens) < seq_len + 1:
        raise UserError(f"a split holds {len(tokens)} tokens, fewer than one sequence of {seq_len} + 1: "
                        "use more data (raise max_bytes) or a shorter sequence length")


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows = torch.from_numpy(tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
