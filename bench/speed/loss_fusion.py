"""The supervised loss eager against compiled (issue 65): `cross_entropy_loss(compile=False)` against
`compile=True` (what `--compile` runs), forward and backward from bf16 logits of `--tokens` x `--vocab`,
side by side in one process, rounds alternating; the median time of each, their ratio and the two losses.

At a small model and a large vocabulary the loss's passes over the [tokens, V] logits are most of a step
(the H100, 2026-11-26: the 6M family step at 0.71x a compiled HF loop whose loss is fused, 0.86x one whose
loss is eager): fused, they are a few passes instead of one per operation.

Usage: python bench/speed/loss_fusion.py [--device cpu|cuda] [--tokens 4096] [--vocab 8192] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from distillscale.training.losses import cross_entropy_loss


def timed(compile: bool, hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> tuple[float, float]:
    hidden.grad = None
    head.weight.grad = None
    if hidden.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(hidden.device.type, dtype=torch.bfloat16):
        output = cross_entropy_loss(hidden, head, targets, z_loss_weight=1e-4, compile=compile)
    output.loss.backward()
    if hidden.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, output.loss.item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--d-model", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    hidden = torch.randn(args.tokens, args.d_model, device=device, requires_grad=True)
    head = torch.nn.Linear(args.d_model, args.vocab, bias=False, device=device)
    targets = torch.randint(0, args.vocab, (args.tokens,), device=device)
    start = time.perf_counter()
    timed(True, hidden, head, targets)  # compiles
    compile_seconds = time.perf_counter() - start
    timed(False, hidden, head, targets)
    times: dict[bool, list[float]] = {False: [], True: []}
    losses = {}
    for _ in range(args.rounds):
        for compile in (False, True):
            seconds, losses[compile] = timed(compile, hidden, head, targets)
            times[compile].append(seconds)
    eager, fused = (statistics.median(times[c]) * 1e3 for c in (False, True))
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}: the supervised loss "
          f"(z-loss 1e-4) forward and backward from bf16 logits of {args.tokens} x {args.vocab}, median of "
          f"{args.rounds} alternating rounds (compiling took {compile_seconds:.1f} s)")
    print(f"   eager     {eager:9.2f} ms   loss {losses[False]:.6f}")
    print(f"   compiled  {fused:9.2f} ms   loss {losses[True]:.6f}   {eager / fused:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
