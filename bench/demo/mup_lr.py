"""Does muP keep the best learning rate fixed across widths? A small learning-rate sweep at two widths
of the micro family (same depth, same tokens, same seed): the final validation loss per rate, and
the best rate at each width. Under muP (model/transformer.py) the best base rate should not move
with d_model; with --no-mup it should fall as the width grows.

Usage: python bench/demo/mup_lr.py [--no-mup] [--tokens 200K]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.micro import micro_run

from distillscale.units import Quantity, parse_quantity

N_LAYERS = 2
WIDTHS = {"narrow": 16, "wide": 64}  # aspect ratios: d_model 32 and 128 (head_dim 16)
RATES = (0.003, 0.01, 0.03, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-mup", action="store_true", help="standard parametrisation instead")
    parser.add_argument("--tokens", default="200K", help="training tokens per run")
    args = parser.parse_args()
    tokens = parse_quantity(args.tokens, "--tokens", kind=Quantity.TOKENS)
    table = {}
    for name, aspect_ratio in WIDTHS.items():
        table[name] = {lr: micro_run(n_layers=N_LAYERS, aspect_ratio=aspect_ratio, head_dim=16, tokens=tokens,
                                     lr=lr, mup=not args.no_mup).val_loss for lr in RATES}
        losses = table[name]
        print(f"{name:6} d_model {N_LAYERS * aspect_ratio:4}: "
              + "  ".join(f"lr {lr:g}: {loss:.4f}" for lr, loss in losses.items())
              + f"  -> best {min(losses, key=losses.get):g}", flush=True)
    best = {name: min(losses, key=losses.get) for name, losses in table.items()}
    print(f"best rate narrow {best['narrow']:g}, wide {best['wide']:g}: "
          + ("the optimum stays fixed" if best["narrow"] == best["wide"] else "the optimum moves"))
    print(json.dumps({name: {str(lr): loss for lr, loss in losses.items()} for name, losses in table.items()}))


if __name__ == "__main__":
    main()
