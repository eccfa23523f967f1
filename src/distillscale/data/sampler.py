"""Batches of token windows: each window once per epoch for training, a fixed sample for evaluation.

Both cut a split into windows of `seq_len + 1` tokens on a grid of `seq_len` (window w holds tokens
w * seq_len .. (w + 1) * seq_len): neighbours share one token, the last target of one being the first
input of the next, so each token but the first is predicted by exactly one window.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch

from distillscale.data.repetition import epoch_tokens, grid_windows
from distillscale.errors import UserError

# The seed of the evaluation windows' sample: the same for every run, whatever its own seed.
EVAL_SEED = 0


class TokenSampler:
    """Training windows of `seq_len + 1` tokens from a token split, each window once per epoch.

    The split's `windows` grid windows are visited in a fresh random order every epoch (a permutation
    seeded by `(seed, epoch)`), and the global batch at `step` takes the next `batch_size` windows of
    that sequence, running on into the next epoch where one ends. So `batch(step)` is a pure function
    of `(seed, step)` computed without replaying earlier steps: resuming at a step, or forking a run
    at one, draws exactly the batches an uninterrupted run would have seen. The ranks of a
    data-parallel run get disjoint slices of one and the same global batch. A split of fewer windows
    than a batch works too: its batches span several epochs.
    """

    # Threads that may call `batch` at once to read the steps ahead (`training.prefetch`): reading tokens
    # takes one; a sampler whose batches take more work says how many (e.g. a logit cache's decoding).
    read_workers = 1

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be positive, got {seq_len} and {batch_size}")
        _require_window(tokens, seq_len)
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.windows = grid_windows(len(tokens), seq_len)
        self._order = lru_cache(maxsize=2)(self._epoch_order)  # this epoch's, and the next one's

    @property
    def unique_tokens(self) -> int:
        """Tokens one epoch trains on (`epoch_tokens`): epochs = tokens seen / unique_tokens."""
        return epoch_tokens(len(self.tokens), self.seq_len)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.windows)

    def window_indices(self, step: int) -> np.ndarray:
        """Grid indices of the global batch's windows at `step` (batch_size of them)."""
        epochs, places = np.divmod(step * self.batch_size + np.arange(self.batch_size), self.windows)
        indices = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            indices[rows] = self._order(int(epoch))[places[rows]]
        return indices

    def window_starts(self, step: int) -> np.ndarray:
        """Start offsets of the global batch at `step` (batch_size of them)."""
        return self.window_indices(step) * self.seq_len

    def _rank_rows(self, rank: int, world_size: int) -> slice:
        """This rank's rows of a global batch: batch_size // world_size of them, the ranks in order."""
        if self.batch_size % world_size:
            raise UserError(f"batch size {self.batch_size} is not divisible by the {world_size} processes: "
                            f"use a multiple of {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        per_rank = self.batch_size // world_size
        return slice(rank * per_rank, (rank + 1) * per_rank)

    def rank_windows(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Grid indices of this rank's share of the global batch at `step`."""
        return self.window_indices(step)[self._rank_rows(rank, world_size)]

    def first_row(self, step: int, rank: int = 0, world_size: int = 1) -> int:
        """The place of this rank's first window at `step` in the stream of windows the sampler deals
        out (the global batch at `step` is places step x batch_size onwards)."""
        return step * self.batch_size + self._rank_rows(rank, world_size).start

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of this rank's share of the global batch at `step`, each a LongTensor
        [batch_size // world_size, seq_len]; targets are the inputs shifted by one token."""
        return _windows(self.tokens, self.rank_windows(step, rank, world_size) * self.seq_len, self.seq_len)


def eval_windows(n_tokens: int, seq_len: int, max_tokens: int | None = None) -> np.ndarray:
    """Grid indices of the windows an evaluation reads, in split order: every window of a split of
    `n_tokens` tokens, or, when `max_tokens` caps the predicted tokens, a fixed random sample of
    `max_tokens // seq_len` windows spread over the whole split (not its first files). The sample's
    seed is EVAL_SEED, not a run's, so every run of a sweep is evaluated on the same tokens, and the
    windows of a smaller cap are among those of a larger one."""
    n_windows = grid_windows(n_tokens, seq_len)
    if max_tokens is not None:
        if max_tokens < seq_len:
            raise UserError(f"the evaluation cap of {max_tokens} tokens is below one sequence of {seq_len}: "
                            "raise the cap or shorten the sequence")
        if max_tokens // seq_len < n_windows:
            sample = np.random.default_rng(EVAL_SEED).permutation(n_windows)[:max_tokens // seq_len]
            return np.sort(sample)
    return np.arange(n_windows)


def iter_eval_batches(tokens: np.ndarray, seq_len: int, batch_size: int,
                      max_tokens: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The windows of `eval_windows` (all of the split's, or a fixed sample of at most `max_tokens`
    predicted tokens), in split order, in batches of up to `batch_size`."""
    _require_window(tokens, seq_len)
    starts = eval_windows(len(tokens), seq_len, max_tokens) * seq_len
    for first in range(0, len(starts), batch_size):
        yield _windows(tokens, starts[first:first + batch_size], seq_len)


def _require_window(tokens: np.ndarray, seq_len: int) -> None:
    if len(tokens) < seq_len + 1:
        raise UserError(f"a split holds {len(tokens)} tokens, fewer than one sequence of {seq_len} + 1: "
                        "use more data (raise max_bytes) or a shorter sequence length")


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows = torch.from_numpy(tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
