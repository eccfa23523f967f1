"""Read the next steps' batches in the background while the current step trains.

A sampler's `batch(step, ...)` is a pure function of the step, so worker threads can read (and,
for a logit cache, decode) the batches of the steps ahead while the trainer computes: each worker
reads whole steps, and the trainer takes them in the steps' order whatever the timing or the
number of workers, so a run's batches are the same bits with 1 worker or 16, and a resumed run
starts the workers at its next step. On CUDA the workers pin the batches' memory and the trainer
copies them with `non_blocking=True`, so the transfer overlaps the step as well.

    with BatchPrefetcher(read, first_step=done.step, end_step=total_steps, device=device,
                         workers=4) as batches:
        while done.step < total_steps:
            micro_batches = batches.next(done.step)   # [(inputs, targets, *extras)] on `device`

`read(step)` returns the step's micro-batches (tuples of CPU tensors); it runs in several threads
at once when `workers` > 1, so it must not change shared state (a sampler's `batch` does not).
Numpy and torch release the GIL while they work on large arrays, so `workers` threads decode up to
`workers` times as fast on as many free cores (bench/speed/cache_reader_scaling.py). An exception in
`read` is raised by the `next` call that would have returned that step's batches, and the workers
end; leaving the `with` block (at the end, on divergence, on an error in the trainer) stops them
and waits for them. At most max(`depth`, `workers`) steps are read ahead (the memory it takes);
`depth=0` reads in the caller's thread.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import torch

MicroBatches = list[tuple[torch.Tensor, ...]]


class BatchPrefetcher:
    def __init__(self, read: Callable[[int], MicroBatches], first_step: int, end_step: int,
                 device: torch.device, depth: int = 2, workers: int = 1):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._read = read
        self._next_step = first_step  # the step `next` returns next
        self._next_read = first_step  # the first step not yet handed to a worker
        self._end_step = end_step
        self._device = device
        self._pin = device.type == "cuda"
        self._ahead = max(depth, workers) if depth else 0
        self._workers = workers
        self._threads = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()  # steps _next_step, _next_step + 1, ... being read

    def __enter__(self) -> BatchPrefetcher:
        if self._ahead and self._next_step < self._end_step:
            self._threads = min(self._workers, self._end_step - self._next_step)
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="distillscale-batch-reader")
            self._fill()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether a worker is reading (or has a step queued to read)."""
        return any(not future.done() for future in self._pending)

    @property
    def workers(self) -> int:
        """Threads reading at once (0: reads in the caller's thread)."""
        return self._threads

    def next(self, step: int) -> MicroBatches:
        """The micro-batches of `step` (the step after the previous call's) on the device."""
        if step != self._next_step:
            raise ValueError(f"batches are read in order: expected step {self._next_step}, got {step}")
        if step >= self._end_step:
            raise IndexError(f"step {step} is past the last step {self._end_step - 1}")
        self._next_step += 1
        if self._pool is None:
            batches = self._host(step)
        else:
            future = self._pending.popleft()
            try:
                batches = future.result()
            except BaseException:
                self.close()  # the steps after a failed one are not wanted
                raise
            self._fill()
        return [tuple(t.to(self._device, non_blocking=self._pin) for t in micro) for micro in batches]

    def close(self) -> None:
        """Stop the workers (if any) and wait for them; batches read ahead are dropped."""
        while self._pending:
            self._pending.pop().cancel()  # those not started; a running read finishes
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _fill(self) -> None:
        """Hand the steps up to `_ahead` past the one `next` returns next to the workers."""
        while self._next_read < min(self._next_step + self._ahead, self._end_step):
            self._pending.append(self._pool.submit(self._host, self._next_read))
            self._next_read += 1

    def _host(self, step: int) -> MicroBatches:
        batches = self._read(step)
        if self._pin:
            batches = [tuple(t.pin_memory() for t in micro) for micro in batches]
        return batches
