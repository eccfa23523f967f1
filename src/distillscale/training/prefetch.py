"""Read the next steps' batches in the background while the current step trains.

A sampler's `batch(step, ...)` is a pure function of the step, so a worker thread can read (and,
for a logit cache, decode) the batches of the steps ahead while the trainer computes: the order
is the steps' order, whatever the timing, and a resumed run starts the worker at its next step.
On CUDA the worker pins the batches' memory and the trainer copies them with `non_blocking=True`,
so the transfer overlaps the step as well.

    with BatchPrefetcher(read, first_step=done.step, end_step=total_steps, device=device) as batches:
        while done.step < total_steps:
            micro_batches = batches.next(done.step)   # [(inputs, targets, *extras)] on `device`

`read(step)` returns the step's micro-batches (tuples of CPU tensors). An exception in it stops the
worker and is raised by the `next` call that would have returned that step's batches; leaving the
`with` block (at the end, on divergence, on an error in the trainer) stops the worker and waits for
it. `depth` bounds the steps read ahead (and so the memory); `depth=0` reads in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

import torch

MicroBatches = list[tuple[torch.Tensor, ...]]
_POLL_SECONDS = 0.1  # how often a worker blocked on a full queue checks whether it should stop


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class BatchPrefetcher:
    def __init__(self, read: Callable[[int], MicroBatches], first_step: int, end_step: int,
                 device: torch.device, depth: int = 2):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self._read = read
        self._next_step = first_step
        self._end_step = end_step
        self._device = device
        self._pin = device.type == "cuda"
        self._depth = depth
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BatchPrefetcher:
        if self._depth and self._next_step < self._end_step:
            self._thread = threading.Thread(target=self._work, args=(self._next_step,),
                                            name="distillscale-batch-reader", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def next(self, step: int) -> MicroBatches:
        """The micro-batches of `step` (the step after the previous call's) on the device."""
        if step != self._next_step:
            raise ValueError(f"batches are read in order: expected step {self._next_step}, got {step}")
        if step >= self._end_step:
            raise IndexError(f"step {step} is past the last step {self._end_step - 1}")
        self._next_step += 1
        if self._thread is None:
            batches = self._host(step)
        else:
            item = self._queue.get()
            if isinstance(item, _Failure):
                self._thread.join()
                raise item.error
            batches = item
        return [tuple(t.to(self._device, non_blocking=self._pin) for t in micro) for micro in batches]

    def close(self) -> None:
        """Stop the worker (if any) and wait for it; batches read ahead are dropped."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a worker waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=_POLL_SECONDS)

    def _host(self, step: int) -> MicroBatches:
        batches = self._read(step)
        if self._pin:
            batches = [tuple(t.pin_memory() for t in micro) for micro in batches]
        return batches

    def _work(self, first_step: int) -> None:
        try:
            for step in range(first_step, self._end_step):
                if self._stop.is_set() or not self._put(self._host(step)):
                    return
        except BaseException as error:  # handed to the trainer, which raises it
            self._put(_Failure(error))

    def _put(self, item) -> bool:
        """Queue `item` unless asked to stop meanwhile; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
