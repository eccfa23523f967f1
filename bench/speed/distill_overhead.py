"""Distillation step overhead: the wall time of a distillation training step (teacher forward
included) relative to a supervised step of the same student, measured side by side in one run.

Both run the real training step (`train_step`: objective, backward, gradient clipping, AdamW over
the muP groups) with the objectives the recipes use: `SupervisedObjective` (CE + z-loss) for
`train`, `DistillationObjective` (forward KL, chunked over 1024 tokens, teacher frozen) for
`distill`. The teacher forward alone is timed too. Steps alternate supervised / distill / teacher
forward, so load from other processes hits all three alike; each figure is the median over the
timed rounds after warm-up rounds. The FLOP-predicted ratio is (3 F_S + F_T) / (3 F_S) with F the
forward FLOPs per token (`ModelConfig.forward_flops_per_token`): the teacher costs one forward,
the student a forward and a backward. On CUDA the recipe's settings apply: bf16 autocast, bf16
teacher weights.

Usage: python bench/speed/distill_overhead.py [--seq-len 256] [--batch-size 8] [--vocab 8192]
       [--steps 6] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from distillscale.model import ModelConfig, Transformer
from distillscale.training.distillation import DistillationObjective
from distillscale.training.distributed import Distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.losses import DistillationLossConfig
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import build_optimizer
from distillscale.training.step import train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.teachers import frozen_teacher  # noqa: E402

# (student n_layers, teacher n_layers) at aspect ratio 128: teachers 2x deeper, so about 8x larger.
PAIRS = ((1, 2), (2, 4), (3, 6))
ASPECT_RATIO, HEAD_DIM = 128, 64
WARMUP_ROUNDS = 2


def training_step(student_config: ModelConfig, objective, batch, device: torch.device):
    """A closure running one optimizer step of a fresh student (the same initial weights every time)."""
    torch.manual_seed(0)
    model = Transformer(student_config).to(device)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    group = Distributed(device=device)
    training_model = TrainingModel(model, group)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    return lambda: train_step(training_model, objective, optimizer, batch, grad_clip=1.0, group=group,
                              autocast=autocast)


def seconds(run, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(student_layers: int, teacher_layers: int, args, device: torch.device) -> dict:
    def config(n_layers: int) -> ModelConfig:
        return ModelConfig(n_layers=n_layers, aspect_ratio=ASPECT_RATIO, head_dim=HEAD_DIM,
                           vocab_size=args.vocab, max_seq_len=args.seq_len)

    student_config, teacher_config = config(student_layers), config(teacher_layers)
    shape = (args.batch_size, args.seq_len)
    generator = torch.Generator().manual_seed(0)
    inputs, targets = (torch.randint(0, args.vocab, shape, generator=generator).to(device) for _ in range(2))
    torch.manual_seed(1)
    teacher = frozen_teacher(teacher_config, device)

    chunk = DistillationLossConfig().chunk_size

    @torch.no_grad()
    def teacher_forward():  # as the distillation loss runs it: hidden states, then logits chunk by chunk
        hidden = teacher.hidden_states(inputs).flatten(0, 1)
        for start in range(0, hidden.shape[0], chunk):
            teacher.head(hidden[start:start + chunk])

    runs = {
        "supervised": training_step(student_config, SupervisedObjective(z_loss_weight=1e-4),
                                    [(inputs, targets)], device),
        "distill": training_step(student_config, DistillationObjective(teacher, DistillationLossConfig(),
                                                                       teacher_val_loss=float("nan")),
                                 [(inputs, targets)], device),
        "teacher_forward": teacher_forward,
    }
    times = {name: [] for name in runs}
    for round_ in range(WARMUP_ROUNDS + args.steps):
        for name, run in runs.items():
            elapsed = seconds(run, device)
            if round_ >= WARMUP_ROUNDS:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    student_flops = 3 * student_config.forward_flops_per_token(args.seq_len)
    teacher_flops = teacher_config.forward_flops_per_token(args.seq_len)
    return {"student": student_config, "teacher": teacher_config, **medians,
            "predicted": (student_flops + teacher_flops) / student_flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=6, help="timed rounds after the warm-up rounds")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {name}, seq_len {args.seq_len}, batch {args.batch_size} "
          f"({args.batch_size * args.seq_len} tokens/step), vocab {args.vocab}, median of {args.steps} rounds")
    print(f"{'student':>8} {'teacher':>8} {'supervised s':>12} {'distill s':>10} {'teacher fwd s':>13} "
          f"{'overhead':>8} {'FLOP-predicted':>14}")
    for student_layers, teacher_layers in PAIRS:
        row = measure(student_layers, teacher_layers, args, device)
        print(f"{row['student'].non_embedding_params / 1e6:>7.2f}M {row['teacher'].non_embedding_params / 1e6:>7.2f}M "
              f"{row['supervised']:>12.4f} {row['distill']:>10.4f} {row['teacher_forward']:>13.4f} "
              f"{row['distill'] / row['supervised']:>7.2f}x {row['predicted']:>13.2f}x")


if __name__ == "__main__":
    main()
