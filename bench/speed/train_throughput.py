"""Training throughput: tokens/s and achieved model FLOP/s for a ladder of model sizes, next to the
FLOP/s of a large fp32 matmul measured in the same run (the machine's practical peak).

Each model runs the real training step (`train_step`: the supervised objective with z-loss, backward,
gradient clipping, AdamW over the muP groups) on random tokens. Model FLOPs per token are
3 x `ModelConfig.forward_flops_per_token(seq_len)` (matmuls and attention; backward = 2 x forward);
element-wise work (norms, RoPE, SwiGLU, softmax, the optimizer) is not credited. Utilisation is
achieved / peak, with the peak measured just before and just after each model (their mean), so load
from other processes hits both sides of the ratio alike.

Usage: python bench/speed/train_throughput.py [--seq-len 256] [--batch-size 16] [--steps 4] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from distillscale.model import ModelConfig, Transformer
from distillscale.training.distributed import Distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import build_optimizer
from distillscale.training.step import train_step

# (n_layers, aspect_ratio): d_model = 256, 384, 512, 640
LADDER = ((2, 128), (3, 128), (4, 128), (5, 128))
VOCAB = 8192
HEAD_DIM = 64


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    """Best of `repeats` fp32 [size, size] @ [size, size] products (2 size^3 FLOPs each)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def step_seconds(model_config: ModelConfig, batch_size: int, steps: int) -> float:
    """Median wall time of `steps` training steps after two warm-up steps."""
    torch.manual_seed(0)
    model = Transformer(model_config)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    training_model, group = TrainingModel(model, Distributed()), Distributed()
    objective = SupervisedObjective(z_loss_weight=1e-4)
    shape = (batch_size, model_config.max_seq_len)
    batch = [(torch.randint(0, VOCAB, shape), torch.randint(0, VOCAB, shape))]
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        train_step(training_model, objective, optimizer, batch, grad_clip=1.0, group=group,
                   autocast=contextlib.nullcontext())
        if step >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens_per_step = args.batch_size * args.seq_len
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, seq_len {args.seq_len}, "
          f"batch {args.batch_size} ({tokens_per_step} tokens/step), vocab {VOCAB}")
    print(f"{'d_model':>7} {'non-emb':>8} {'total':>8} {'tokens/s':>9} {'model GFLOP/s':>13} "
          f"{'matmul GFLOP/s':>14} {'utilisation':>11}")
    for n_layers, aspect_ratio in LADDER:
        config = ModelConfig(n_layers=n_layers, aspect_ratio=aspect_ratio, head_dim=HEAD_DIM,
                             vocab_size=VOCAB, max_seq_len=args.seq_len)
        peak_before = matmul_flops_per_second()
        seconds = step_seconds(config, args.batch_size, args.steps)
        peak = (peak_before + matmul_flops_per_second()) / 2
        tokens_per_second = tokens_per_step / seconds
        achieved = 3 * config.forward_flops_per_token(args.seq_len) * tokens_per_second
        print(f"{config.d_model:>7} {config.non_embedding_params / 1e6:>7.2f}M "
              f"{config.total_params / 1e6:>7.2f}M {tokens_per_second:>9.0f} {achieved / 1e9:>13.1f} "
              f"{peak / 1e9:>14.1f} {achieved / peak:>10.0%}")


if __name__ == "__main__":
    main()
