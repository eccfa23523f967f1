"""What WSD forks save, measured: one model's four budgets (2 to 16 tokens per parameter) trained as
a forked sweep (the longest run plus three cooldowns, `schedule = "wsd"`) and as four separate WSD
runs from scratch. Prints the FLOPs and the wall time of each, their ratios, and the largest loss
difference between a fork and the separate run of its length (zero: a fork is exact).

Usage: python bench/demo/fork_compute.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.micro import FAMILY

from distillscale.model import ModelConfig
from distillscale.sweeps.compute import sweep_compute
from distillscale.training.config import TrainConfig
from distillscale.training.recipe import train

N_LAYERS = 2
BUDGETS = (16, 8, 4, 2)  # tokens per parameter, longest first: the parent


def main() -> None:
    torch.set_num_threads(1)
    settings = {**FAMILY, "n_layers": N_LAYERS, "schedule": "wsd", "warmup_steps": 6}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = ModelConfig(n_layers=N_LAYERS, aspect_ratio=FAMILY["aspect_ratio"], head_dim=FAMILY["head_dim"],
                        vocab_size=FAMILY["vocab_size"]).non_embedding_params
        tokens = [round(m * n) for m in BUDGETS]
        forked = [train(TrainConfig(out=root / "parent", tokens=tokens[0], fork_tokens=tokens[1:], **settings),
                        progress=False)]
        forked += [train(TrainConfig(out=root / f"fork-{t}", tokens=t, fork_from=root / "parent", **settings),
                         progress=False) for t in tokens[1:]]
        separate = [train(TrainConfig(out=root / f"scratch-{t}", tokens=t, **settings), progress=False)
                    for t in tokens]
    spent, alone = (sweep_compute(r.to_json() for r in runs) for runs in (forked, separate))
    wall_forked = sum(r.wall_seconds for r in forked)
    wall_separate = sum(r.wall_seconds for r in separate)
    worst = max(abs(f.val_loss - s.val_loss) for f, s in zip(forked, separate))
    print(f"FLOPs: forked {spent.spent:.3g}, separate {alone.spent:.3g}, ratio {spent.spent / alone.spent:.3f}")
    print(f"wall (in-process, excluding start-up): forked {wall_forked:.1f} s, separate {wall_separate:.1f} s, "
          f"ratio {wall_forked / wall_separate:.3f}")
    print(f"largest |fork - separate| final loss: {worst:.2e} nats/token")
    print(json.dumps({"flops_forked": spent.spent, "flops_separate": alone.spent, "wall_forked": wall_forked,
                      "wall_separate": wall_separate, "max_loss_difference": worst}))


if __name__ == "__main__":
    main()
