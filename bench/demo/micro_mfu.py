"""Micro-model FLOP utilisation, end to end: how much of one core's fp32 matmul peak the demo's training
runs turn into model FLOPs, with everything a run does (data, steps, evaluation, checkpoints) on the clock.

Each setting trains one real run (`distillscale.training.recipe.train`, one thread, a fresh run
directory) of the same model size; MFU = the FLOPs its result.json records / its wall time / the
peak, measured just before and after it (`train_throughput.matmul_flops_per_second`, one thread).
"before" is the demo's old recipe (d_model 16 x depth, batch 16 x 64 tokens, a 32K-token evaluation
every 100 steps, a checkpoint every 200); "after" is the redesigned demo's (report/micro_sweep.toml):
d_model 24 x depth, 16 x 128-token batches, one evaluation at the end, rarer checkpoints.

Usage: python bench/demo/micro_mfu.py [--tokens 600K] [--compile]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.micro import FAMILY
from bench.speed.train_throughput import matmul_flops_per_second

from distillscale.training.config import TrainConfig
from distillscale.training.recipe import train
from distillscale.units import Quantity, parse_quantity

# Both on the demo's corpus (vocabulary 512); "after" is the demo's family at a similar size.
SETTINGS = {
    "before": {"vocab_size": 512, "device": "cpu", "n_layers": 4, "aspect_ratio": 16, "head_dim": 16,
               "seq_len": 64, "batch_size": 16, "eval_every": 100, "eval_tokens": 32_768, "save_every": 200},
    "after": {**FAMILY, "n_layers": 3},
}


def measure(name: str, tokens: float, out: Path, compile: bool) -> dict:
    config = TrainConfig(out=out / name, tokens=tokens, compile=compile, **SETTINGS[name])
    peak_before = matmul_flops_per_second(1024)
    result = train(config, progress=False)
    peak = (peak_before + matmul_flops_per_second(1024)) / 2
    return {"setting": name, "non_embedding_params": result.non_embedding_params,
            "total_params": result.total_params, "tokens": result.tokens,
            "wall_seconds": round(result.wall_seconds, 2), "train_seconds": round(result.train_seconds, 2),
            "model_flops_per_second": result.flops / result.wall_seconds, "peak_flops_per_second": peak,
            "mfu": result.flops / result.wall_seconds / peak,
            "mfu_steps_only": result.flops / result.train_seconds / peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="600K", help="training tokens per run")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (CPU inductor)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokens = parse_quantity(args.tokens, "--tokens", kind=Quantity.TOKENS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in SETTINGS:
            rows.append(measure(name, tokens, Path(tmp), args.compile))
    print(f"{'setting':8} {'N':>8} {'N total':>8} {'wall s':>7} {'GFLOP/s':>8} {'peak':>7} {'MFU':>6} {'steps only':>10}")
    for row in rows:
        print(f"{row['setting']:8} {row['non_embedding_params']:8,} {row['total_params']:8,} "
              f"{row['wall_seconds']:7.1f} {row['model_flops_per_second'] / 1e9:8.2f} "
              f"{row['peak_flops_per_second'] / 1e9:7.1f} {row['mfu']:6.1%} {row['mfu_steps_only']:10.1%}")
    print(f"MFU after / before: {rows[1]['mfu'] / rows[0]['mfu']:.2f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
