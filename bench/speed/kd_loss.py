"""Naive vs chunked distillation loss: peak memory and time of one forward + backward.

The step is `distillation_loss` (forward KL, the default config) on student hidden states
[tokens, d] with a linear head [V, d] trained, and a frozen teacher head of the same width: the
part of a distillation step whose memory grows with tokens x V. The naive variant
(chunk_size=None) materialises the full [tokens, V] logits of both models; the chunked one
(chunk_size=1024) only one chunk's.

Memory: every variant and repetition runs in a fresh subprocess, so one measurement cannot see
another's allocations. On CUDA, peak = torch.cuda.max_memory_allocated() minus what was allocated
before the first step. On CPU (torch has no allocator statistics there), peak = the process's
resident-set high-water mark (getrusage ru_maxrss) minus the resident set just before the first
step; torch's CPU allocator returns large blocks to the OS when freed, so this is the step's
own peak, inputs and weights excluded. Time: the median of the timed steps after the warm-up
steps; naive and chunked processes alternate so that load from other processes hits both alike.

Usage: python bench/speed/kd_loss.py [--tokens 4096] [--d-model 512] [--vocab 32768 131072]

`--chunks` compares instead, side by side in one process, the chunk of 1024 tokens used before issue 33
with the chunk sized by the vocabulary (`kd_settings.chunk_tokens`: up to CHUNK_LOGITS logits): the
ATen operations one forward + backward issues (counted by a dispatch mode: the host's work per step)
and the median time. Defaults there: a ladder step's 32,768 tokens at d_model 256, vocabularies 512
and 32768 (where the two chunks agree; 4096 on a CPU).

    python bench/speed/kd_loss.py --chunks [--tokens 32768] [--d-model 256] [--vocab 512 32768]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from distillscale.training.kd_settings import chunk_tokens
from distillscale.training.losses import DistillationLossConfig, distillation_loss

CHUNK_SIZE = 1024


def resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def measure(variant: str, tokens: int, d_model: int, vocab: int, warmup: int, steps: int,
            device: str) -> dict:
    """One process, one variant: peak bytes of a step above what existed before it, step times."""
    torch.manual_seed(0)
    student_head = torch.nn.Linear(d_model, vocab, bias=False, device=device)
    teacher_head = torch.nn.Linear(d_model, vocab, bias=False, device=device).requires_grad_(False)
    hidden = torch.randn(tokens, d_model, device=device, requires_grad=True)
    teacher_hidden = torch.randn(tokens, d_model, device=device)
    targets = torch.randint(vocab, (tokens,), device=device)
    config = DistillationLossConfig(chunk_size=None if variant == "naive" else CHUNK_SIZE)

    def synchronize():
        if device == "cuda":
            torch.cuda.synchronize()

    synchronize()
    before = torch.cuda.memory_allocated() if device == "cuda" else resident_bytes()
    seconds = []
    for _ in range(warmup + steps):
        hidden.grad = student_head.weight.grad = None
        start = time.perf_counter()
        out = distillation_loss(hidden, student_head, teacher_hidden, teacher_head, targets, config)
        out.loss.backward()
        synchronize()
        seconds.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak_bytes": peak, "seconds": seconds[warmup:], "loss": float(out.loss)}


def run_in_subprocess(variant: str, args: argparse.Namespace, vocab: int) -> dict:
    command = [sys.executable, __file__, "--worker", variant, "--tokens", str(args.tokens),
               "--d-model", str(args.d_model), "--vocab", str(vocab), "--warmup", str(args.warmup),
               "--steps", str(args.steps),
               "--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def compare(args: argparse.Namespace, vocab: int) -> dict:
    runs = {"naive": [], "chunked": []}
    for repeat in range(args.repeats):
        order = ("naive", "chunked") if repeat % 2 == 0 else ("chunked", "naive")
        for variant in order:
            runs[variant].append(run_in_subprocess(variant, args, vocab))
    summary = {}
    for variant, results in runs.items():
        summary[variant] = {
            "peak_bytes": max(r["peak_bytes"] for r in results),
            "seconds": statistics.median(s for r in results for s in r["seconds"]),
            "loss": results[0]["loss"],
        }
    return summary


def count_ops(fn) -> int:
    """ATen operations that `fn()` dispatches (forward and backward alike)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.ops += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    return Counter.ops


def compare_chunks(args: argparse.Namespace) -> None:
    """The former 1024-token chunk against the vocabulary's chunk: operations and time per step."""
    print(f"chunked distillation loss (forward KL), fwd+bwd: tokens={args.tokens} d_model={args.d_model} "
          f"device={args.device}" + (f", {torch.get_num_threads()} threads" if args.device == "cpu" else ""))
    print(f"{'V':>7} {'chunk before':>12} {'chunk now':>10} {'ops before':>11} {'ops now':>8} {'op ratio':>9} "
          f"{'s before':>9} {'s now':>7} {'time ratio':>11}")
    for vocab in args.vocab:
        torch.manual_seed(0)
        head = torch.nn.Linear(args.d_model, vocab, bias=False, device=args.device)
        teacher_head = torch.nn.Linear(args.d_model, vocab, bias=False, device=args.device).requires_grad_(False)
        hidden = torch.randn(args.tokens, args.d_model, device=args.device, requires_grad=True)
        teacher_hidden = torch.randn(args.tokens, args.d_model, device=args.device)
        targets = torch.randint(vocab, (args.tokens,), device=args.device)
        row = {}
        for name, chunk in (("before", CHUNK_SIZE), ("now", chunk_tokens(vocab))):
            config = DistillationLossConfig(chunk_size=chunk)

            def step():
                hidden.grad = head.weight.grad = None
                out = distillation_loss(hidden, head, teacher_hidden, teacher_head, targets, config)
                out.loss.backward()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                return float(out.loss.detach())

            loss = step()  # warm-up
            ops = count_ops(step)
            seconds = []
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                seconds.append(time.perf_counter() - start)
            row[name] = (chunk, ops, statistics.median(seconds), loss)
        (chunk_b, ops_b, s_b, loss_b), (chunk_n, ops_n, s_n, loss_n) = row["before"], row["now"]
        if abs(loss_b - loss_n) > 1e-5 * abs(loss_b):
            raise SystemExit(f"losses differ: chunk {chunk_b}: {loss_b} vs chunk {chunk_n}: {loss_n}")
        print(f"{vocab:>7} {chunk_b:>12} {chunk_n:>10} {ops_b:>11} {ops_n:>8} {ops_b / ops_n:>8.1f}x "
              f"{s_b:>9.3f} {s_n:>7.3f} {s_b / s_n:>10.2f}x")
    print("op ratio, time ratio = before / now (the same loss: checked to 1e-5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--vocab", type=int, nargs="+", default=[32768, 131072])
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per process")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per variant")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--chunks", action="store_true", help="the former 1024-token chunk against the "
                                                              "vocabulary's: operations and time")
    args = parser.parse_args()
    if args.chunks:
        given = set(sys.argv[1:])
        args.tokens = args.tokens if "--tokens" in given else 32768
        args.d_model = args.d_model if "--d-model" in given else 256
        args.vocab = args.vocab if "--vocab" in given else [512, 32768 if args.device == "cuda" else 4096]
        args.steps = max(args.steps, 3) if "--steps" not in given else args.steps
        compare_chunks(args)
        return

    if args.worker:
        result = measure(args.worker, args.tokens, args.d_model, args.vocab[0], args.warmup,
                         args.steps, args.device)
        print(json.dumps(result))
        return

    threads = f", {torch.get_num_threads()} threads" if args.device == "cpu" else ""
    print(f"distillation loss (forward KL), fwd+bwd: tokens={args.tokens} d_model={args.d_model} "
          f"chunk={CHUNK_SIZE} device={args.device}{threads}")
    header = (f"{'V':>7} {'[tokens,V] fp32':>15} {'naive peak':>11} {'chunked peak':>13} "
              f"{'memory ratio':>13} {'naive s':>8} {'chunked s':>10} {'time ratio':>11}")
    print(header)
    for vocab in args.vocab:
        summary = compare(args, vocab)
        naive, chunked = summary["naive"], summary["chunked"]
        if abs(naive["loss"] - chunked["loss"]) > 1e-4 * abs(naive["loss"]):
            raise SystemExit(f"losses differ: naive {naive['loss']} vs chunked {chunked['loss']}")
        gib = 2 ** 30
        print(f"{vocab:>7} {args.tokens * vocab * 4 / gib:>11.2f} GiB "
              f"{naive['peak_bytes'] / gib:>7.2f} GiB {chunked['peak_bytes'] / gib:>9.2f} GiB "
              f"{naive['peak_bytes'] / chunked['peak_bytes']:>12.1f}x "
              f"{naive['seconds']:>8.2f} {chunked['seconds']:>10.2f} "
              f"{chunked['seconds'] / naive['seconds']:>10.2f}x")
    print("memory ratio = naive peak / chunked peak (target >= 4); "
          "time ratio = chunked / naive (target <= 1.1)")


if __name__ == "__main__":
    main()
