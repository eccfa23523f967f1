"""GhostBatchNorm vs nn.BatchNorm1d/2d: forward + backward time at the same batch (target <= 1.5x).

For each input shape, three variants run on the same input: nn.BatchNorm (one set of statistics
for the whole batch, the fused native kernel), GhostBatchNorm with ghost batches of 128
(vectorised: one kernel call for all full ghost batches plus one for a remainder), and, for
reference, the naive alternative that loops in Python over chunks with nn.BatchNorm. Time per
step is the median over repetitions; the variants alternate repetition by repetition, so load
from other processes hits all of them alike. Ratios are to nn.BatchNorm measured in this run.

Usage: python bench/speed/ghost_bn.py [--ghost 128] [--repeats 30] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from distillscale.regime import GhostBatchNorm

SHAPES = [(4096, 64), (4096, 256), (4096 + 100, 256), (1024, 64, 40), (512, 32, 16, 16)]


class ChunkedBatchNorm(nn.Module):
    """The naive Ghost BN: nn.BatchNorm applied to each chunk in a Python loop."""

    def __init__(self, norm: nn.Module, ghost: int) -> None:
        super().__init__()
        self.norm, self.ghost = norm, ghost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.norm(chunk) for chunk in x.split(self.ghost)])


def step_seconds(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    x.grad = None
    module(x).backward(grad)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ghost", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (one is steadier on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"forward + backward, median of {args.repeats} (device {args.device}, "
          f"{torch.get_num_threads()} threads, ghost batch {args.ghost})")
    print(f"{'input shape':>22} {'BatchNorm ms':>13} {'GhostBN ms':>11} {'ratio':>6} "
          f"{'loop ms':>9} {'ratio':>6}")
    for shape in SHAPES:
        torch.manual_seed(0)
        x = torch.randn(*shape, device=args.device, requires_grad=True)
        grad = torch.randn(*shape, device=args.device)
        batch_norm_type = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
        variants = {
            "bn": batch_norm_type(shape[1]).to(args.device),
            "ghost": GhostBatchNorm(shape[1], args.ghost).to(args.device),
            "loop": ChunkedBatchNorm(batch_norm_type(shape[1]).to(args.device), args.ghost),
        }
        times = {name: [] for name in variants}
        for repeat in range(args.repeats + 3):  # the first 3 are warm-up
            for name, module in variants.items():
                seconds = step_seconds(module, x, grad)
                if repeat >= 3:
                    times[name].append(seconds)
        ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
        print(f"{str(tuple(shape)):>22} {ms['bn']:13.3f} {ms['ghost']:11.3f} "
              f"{ms['ghost'] / ms['bn']:5.2f}x {ms['loop']:9.3f} {ms['loop'] / ms['bn']:5.2f}x")


if __name__ == "__main__":
    main()
