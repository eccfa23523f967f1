"""WSD against cosine at equal tokens on the micro family: the final validation loss of each schedule,
same model, seed, data and peak learning rate, and the ratio WSD / cosine (Hägele et al. 2024 find
WSD with a 20% 1-sqrt cooldown matches cosine; ratio ~1 means the forks a WSD sweep makes are as good
as cosine runs from scratch).

Usage: python bench/demo/wsd_vs_cosine.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.micro import micro_run

# (depth, tokens per parameter): two of the demo's sizes at budgets of its sweep.
POINTS = ((2, 8), (3, 2))
SCHEDULES = {"cosine": {"schedule": "cosine"},
             "wsd 1-sqrt": {"schedule": "wsd", "cooldown_shape": "1-sqrt"},
             "wsd linear": {"schedule": "wsd", "cooldown_shape": "linear"}}


def main() -> None:
    rows = []
    for n_layers, m in POINTS:
        losses = {name: micro_run(n_layers=n_layers, tokens_per_param=m, **settings).val_loss
                  for name, settings in SCHEDULES.items()}
        rows.append({"n_layers": n_layers, "tokens_per_param": m, **losses})
        print(f"depth {n_layers}, M = {m}: " + ", ".join(f"{name} {loss:.4f}" for name, loss in losses.items())
              + "; WSD / cosine: " + ", ".join(f"{name} {losses[name] / losses['cosine']:.4f}"
                                               for name in SCHEDULES if name != "cosine"))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
