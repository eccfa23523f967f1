"""`CachedWindowSampler`: the student's batches on the logit cache's window grid, with the cached
teacher predictions of the same windows."""

from __future__ import annotations

import numpy as np
import torch

from distillscale.data import TokenSampler
from distillscale.training.logit_cache.store import LogitCache


class CachedWindowSampler(TokenSampler):
    """A `TokenSampler` over the cached windows: they lie on the sampler's own grid (window w starts
    at w * seq_len of the split), so each cached window is drawn once per epoch, as a pure function
    of (seed, step).

    `batch` returns (inputs, targets, teacher_ids, teacher_values): the teacher's cached
    predictions at every position of the same windows, as `LogitCache.teacher_predictions` gives
    them (top-k ids and log-probabilities, or sampled ids and the teacher's entropy), decoded here
    (`decode="host"`, in the background reader's thread); or, with `decode="device"`, (inputs,
    targets, record_bytes): the records as stored, [b, seq_len, bytes_per_token] uint8, which the
    objective decodes on the device (`LogitCache.predictions_from_bytes`): a quarter of the bytes
    to copy at k = 128 and next to no work on the host.

    `workers`: threads that read (and decode) the steps ahead at once (`training.prefetch`), each a
    whole step; `batch` is a pure function of the step, so the batches are the same bits whatever
    their number.
    """

    DECODE = ("host", "device")

    def __init__(self, cache: LogitCache, tokens: np.ndarray, batch_size: int, seed: int, decode: str = "host",
                 workers: int = 1):
        super().__init__(tokens[:cache.tokens + 1], cache.seq_len, batch_size, seed)  # cache.windows windows
        if decode not in self.DECODE:
            raise ValueError(f"decode must be one of {self.DECODE}, got {decode!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.cache = cache
        self.decode = decode
        self.read_workers = workers

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        inputs, targets = super().batch(step, rank, world_size)
        windows = self.rank_windows(step, rank, world_size)
        if self.decode == "device":
            return inputs, targets, torch.from_numpy(self.cache.record_bytes(windows))
        ids, values = self.cache.teacher_predictions(windows)
        return inputs, targets, torch.from_numpy(ids.astype(np.int32)), torch.from_numpy(values)
