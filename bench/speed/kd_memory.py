"""Peak memory of each distillation loss path, against the size of the logits themselves.

One forward + backward of the loss on student hidden states [tokens, d] with a trained head [V, d] (the
part of a distillation step whose memory grows with tokens x V), four ways:

- full vocabulary: a live teacher, all [tokens, V] logits of both models at once (chunk_size=None);
- chunked: the same, walked in chunks of `chunk_tokens(V)` tokens (what `distill` runs);
- top-k from cache: the teacher as [tokens, k] ids and log-probabilities (a logit cache), chunked;
- top-k live: a live teacher's top k with its tail, chunked.

Peak = the most memory the step's tensors held at once, above what existed before it (inputs and heads
excluded, the gradients of hidden states and head included); the ratio is to the student's logits in the
compute dtype (tokens x V x 2 bytes in bf16): Liger's fused linear + KL reports about 89% less than the
unfused loss at 8K tokens x 128K vocabulary. On CUDA: torch.cuda.max_memory_allocated. On a CPU (no
allocator statistics): `PeakMemory`, a dispatch mode that adds up the storages the step's operations
allocate and drops each when it is freed; it also names the largest single allocation, so that a path
that upcasts whole [tokens, V] logits to float32 while it reads only K columns of them is seen.

Then, on CUDA, the kernels one step of the top-k-from-cache loss launches, eager and compiled (torch.profiler),
at the cache-fed 85M student's shape of bench/gpu/gpu_step.py (32 x 1024 tokens, vocabulary 8192, top-128).

Usage: python bench/speed/kd_memory.py [--device cuda] [--tokens 8192] [--vocab 131072] [--d-model 2048] [--top-k 128]
       python bench/speed/kd_memory.py --device cpu --tiny          # the same code on a small case
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch
import torch.utils._pytree as pytree
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from distillscale.training.kd_settings import chunk_tokens
from distillscale.training.losses import DistillationLossConfig, distillation_loss, sparse_distillation_loss

PATHS = ("full vocabulary", "chunked", "top-k from cache", "top-k live")


class PeakMemory(TorchDispatchMode):
    """Bytes of tensor storage allocated by the operations run under it and still alive: the peak, and
    the largest single allocation (bytes, shape, dtype, operation). Outputs that share an input's
    storage (views, in-place results) are not new allocations."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0
        self.largest: tuple[int, tuple[int, ...], torch.dtype | None, str] = (0, (), None, "")

    def _sweep(self) -> None:
        for key, (ref, size) in list(self.live.items()):
            if ref.expired():
                self.current -= size
                del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        self._sweep()
        for tensor in pytree.tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self.live or storage.nbytes() == 0:
                continue
            self.live[key] = (StorageWeakRef(storage), storage.nbytes())
            self.current += storage.nbytes()
            if storage.nbytes() > self.largest[0]:
                self.largest = (storage.nbytes(), tuple(tensor.shape), tensor.dtype, func.overloadpacket.__name__)
        self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class Case:
    tokens: int
    vocab: int
    d_model: int
    top_k: int
    dtype: torch.dtype
    device: torch.device
    chunk: int | None = None  # tokens per chunk of the chunked paths (None: `chunk_tokens(vocab)`, distill's)

    @property
    def chunk_size(self) -> int:
        return self.chunk or chunk_tokens(self.vocab)

    @property
    def logits_bytes(self) -> int:
        return self.tokens * self.vocab * torch.empty((), dtype=self.dtype).element_size()


def step(path: str, case: Case, compile: bool = False):
    """A function running one forward + backward of `path`'s loss on fresh inputs made here."""
    generator = torch.Generator(device=case.device).manual_seed(0)
    options = {"device": case.device, "dtype": case.dtype, "generator": generator}
    hidden = torch.randn(case.tokens, case.d_model, **options).requires_grad_()
    weight = (torch.randn(case.vocab, case.d_model, **options) / case.d_model ** 0.5).requires_grad_()
    teacher_weight = torch.randn(case.vocab, case.d_model, **options) / case.d_model ** 0.5
    teacher_hidden = torch.randn(case.tokens, case.d_model, **options)
    targets = torch.randint(0, case.vocab, (case.tokens,), device=case.device, generator=generator)
    chunk = None if path == "full vocabulary" else case.chunk_size
    config = DistillationLossConfig(chunk_size=chunk, top_k=case.top_k if "top-k" in path else None)
    head = lambda h: h @ weight.T  # noqa: E731
    teacher_head = lambda h: h @ teacher_weight.T  # noqa: E731
    cached = None
    if path == "top-k from cache":  # what a cache hands the loss: [tokens, k] ids and log-probabilities
        with torch.no_grad():
            values, ids = teacher_head(teacher_hidden).float().log_softmax(-1).topk(case.top_k, dim=-1)
        cached = (ids, values)
        del teacher_hidden

    def run() -> float:
        if cached is not None:
            output = sparse_distillation_loss(hidden, head, *cached, targets, config, compile=compile)
        else:
            output = distillation_loss(hidden, head, teacher_hidden, teacher_head, targets, config)
        output.loss.backward()
        return output.loss.item()

    return run


def measure(path: str, case: Case) -> dict:
    """Peak bytes of one step of `path` above what existed before it (and, on a CPU, the largest single
    allocation)."""
    run = step(path, case)
    if case.device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss = run()
        torch.cuda.synchronize()
        return {"path": path, "peak_bytes": torch.cuda.max_memory_allocated() - before, "largest": None,
                "loss": loss}
    with PeakMemory() as memory:
        loss = run()
    return {"path": path, "peak_bytes": memory.peak, "largest": memory.largest, "loss": loss}


def kernels_per_step(case: Case) -> None:
    """On CUDA: the kernels one forward + backward of the top-k-from-cache loss launches (torch.profiler),
    eager and through torch.compile (`sparse_distillation_loss(compile=True)`, after a warm-up step that
    compiles), at `case`'s shape."""
    from torch.profiler import ProfilerActivity, profile

    print(f"kernels of one top-{case.top_k}-from-cache loss step ({case.tokens:,} tokens x vocabulary {case.vocab:,}, "
          f"d_model {case.d_model}, chunks of {case.chunk_size:,} tokens, bf16):")
    for compile in (False, True):
        run = step("top-k from cache", case, compile=compile)
        run()  # warm-up (compiles)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
            run()
            torch.cuda.synchronize()
        launched = sum(1 for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA)
        busy = sum(e.self_device_time_total for e in profiler.key_averages()) / 1e3
        print(f"   {'compiled' if compile else 'eager':<9} {launched:>6,} kernels, device busy {busy:,.2f} ms")


def report(case: Case) -> list[dict]:
    print(f"KD loss memory, forward + backward: {case.tokens:,} tokens x vocabulary {case.vocab:,}, d_model "
          f"{case.d_model}, top-{case.top_k}, {str(case.dtype).removeprefix('torch.')} on {case.device}; chunk "
          f"{case.chunk_size:,} tokens; the student's logits: {case.logits_bytes / 2**20:,.1f} MiB")
    print(f"   {'path':<18} {'peak MiB':>10} {'x logits':>9}  largest allocation")
    rows = []
    for path in PATHS:
        row = measure(path, case)
        rows.append(row)
        largest = ""
        if row["largest"] is not None:
            size, shape, dtype, op = row["largest"]
            largest = f"{size / 2**20:,.1f} MiB {list(shape)} {str(dtype).removeprefix('torch.')} ({op})"
        print(f"   {path:<18} {row['peak_bytes'] / 2**20:>10,.1f} {row['peak_bytes'] / case.logits_bytes:>9.2f}  "
              f"{largest}")
        if case.device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true",
                        help="a small case (512 tokens, vocabulary 8192, d_model 64, top-16, chunks of 128 tokens)")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=131072)
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=None, help="tokens per chunk (default: distill's for the vocabulary)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run it on a GPU machine, or `--device cpu --tiny` for the same code on a CPU")
        return 0
    for name in ("tokens", "vocab", "d_model", "top_k", "chunk"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive whole number")
    if args.tiny:
        args.tokens, args.vocab, args.d_model, args.top_k, args.chunk = 512, 8192, 64, 16, 128
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    report(Case(args.tokens, args.vocab, args.d_model, args.top_k, dtype, device, args.chunk))
    if device.type == "cuda":  # the cache-fed 85M student's loss, as bench/gpu/gpu_step.py's speed stage runs it
        kernels_per_step(Case(32 * 1024, 8192, 768, 128, dtype, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
