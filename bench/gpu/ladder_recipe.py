"""The GPU ladder's recipe, measured: a learning-rate x AdamW beta2 grid at two widths inside the ladder
(issue 33).

examples/gpu_ladder.toml sets lr = 0.003 x (d_model / 128) ** -0.87 (its [model] lr rule) and beta2 = 0.95,
a rule measured on two CPU widths (32 and 128) at 200K tokens and applied at widths 256-576 on runs
25-380x longer. This bench trains, at two of the ladder's depths (default 4 and 7: d_model 256 and 448)
with the ladder's own shapes and settings (WSD, bf16, compile, batch, sequence length, corpus), each
depth's median-length ladder run (its tokens), at 0.5 / 1 / 2 / 4 x the rule's lr and beta2 0.95 / 0.99:
16 runs. It prints the validation loss of every cell, the best lr multiplier (and beta2) per width,
and the per-width rule those two points give: lr = lr_128 x (d_model / 128) ** exponent, fitted
through the two widths' best rates. A best cell on the grid's edge is flagged: widen the grid there.

Each cell is a run directory under --out (default out/ladder_recipe): a finished cell is read
back, an interrupted one resumes from its checkpoint (save_every_seconds), so back-to-back calls of
limited length finish the grid (bench/gpu/gpu_verify.sh).

`--tiny` (the default without CUDA) runs the same grid on the CPU in a few minutes: depths 1 and 2
(d_model 64 and 128) on the default corpus, 64-token sequences, 24K tokens (48 steps) per run, float32, no
compile; the rule's lr at those widths. Its numbers test the code path, not the ladder.

Usage: python bench/gpu/ladder_recipe.py [--tiny] [--out DIR] [--json FILE] [--depths 4 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from distillscale.io import atomic_write_json
from distillscale.sweeps.spec import load_sweep_spec, lr_for_width
from distillscale.training.config import TrainConfig
from distillscale.training.recipe import train
from distillscale.training.run_dir import RunDirectory

LADDER = Path(__file__).resolve().parents[2] / "examples" / "gpu_ladder.toml"
LR_MULTIPLIERS = (0.5, 1.0, 2.0, 4.0)
BETA2S = (0.95, 0.99)
# The tiny CPU version: the ladder's structure (WSD, a lr rule per width) at sizes a CPU trains in seconds.
TINY_SETTINGS = {"aspect_ratio": 64, "head_dim": 32, "vocab_size": 320, "max_bytes": 300_000, "seq_len": 64,
                 "batch_size": 8, "tokens": 24_576, "schedule": "wsd", "eval_every": 0, "eval_tokens": 8192,
                 "log_every": 1000, "device": "cpu", "bf16": False, "compile": False}
TINY_DEPTHS = (1, 2)
RULE = (0.003, -0.87, 128)  # the ladder's lr, lr_width_exponent, lr_reference_width


@dataclass(frozen=True)
class Cell:
    n_layers: int
    d_model: int
    tokens: int
    lr_multiplier: float
    beta2: float
    lr: float
    val_loss: float | None
    seconds: float


def ladder_settings(depths: list[int]) -> dict[int, dict]:
    """Each depth's median-length teacher run of the GPU ladder, as `train` settings (the lr rule applied)."""
    spec = load_sweep_spec(LADDER)
    settings = {}
    for depth in depths:
        runs = sorted((run for run in spec.runs if run.kind == "teacher" and run.n_layers == depth),
                      key=lambda run: run.tokens)
        if not runs:
            raise SystemExit(f"depth {depth} is not in {LADDER}'s teacher ladder")
        median = runs[len(runs) // 2]
        settings[depth] = {key: value for key, value in median.settings.items() if key != "fork_tokens"}
    return settings


def tiny_settings(depths: list[int]) -> dict[int, dict]:
    lr, exponent, width = RULE
    return {depth: {**TINY_SETTINGS, "n_layers": depth, "save_every_seconds": 30,
                    "lr": lr_for_width(lr, TINY_SETTINGS["aspect_ratio"] * depth, exponent, width)}
            for depth in depths}


def run_cell(settings: dict, multiplier: float, beta2: float, out: Path) -> Cell:
    config = TrainConfig.model_validate({**settings, "lr": settings["lr"] * multiplier, "adam_beta2": beta2,
                                         "out": str(out)})
    run = RunDirectory(out)
    start = time.perf_counter()
    result = run.read_result() if run.result_path.exists() else train(config, progress=False)
    d_model = config.aspect_ratio * config.n_layers
    return Cell(n_layers=config.n_layers, d_model=d_model, tokens=result.tokens, lr_multiplier=multiplier,
                beta2=beta2, lr=config.lr, val_loss=result.val_loss, seconds=time.perf_counter() - start)


def best_per_width(cells: list[Cell]) -> dict[int, Cell]:
    best: dict[int, Cell] = {}
    for cell in cells:
        if cell.val_loss is None or not math.isfinite(cell.val_loss):
            continue  # diverged
        if cell.d_model not in best or cell.val_loss < best[cell.d_model].val_loss:
            best[cell.d_model] = cell
    return best


def fitted_rule(best: dict[int, Cell], reference_width: int = 128) -> tuple[float, float] | None:
    """(lr at reference_width, exponent) of the power law through the two widths' best rates."""
    if len(best) != 2:
        return None
    (w1, c1), (w2, c2) = sorted(best.items())
    exponent = math.log(c2.lr / c1.lr) / math.log(w2 / w1)
    return c1.lr * (reference_width / w1) ** exponent, exponent


def table(cells: list[Cell], best: dict[int, Cell], rule: tuple[float, float] | None, rule_text: str) -> str:
    lines = [f"{'depth':>5} {'d_model':>7} {'tokens':>10} {'beta2':>5} "
             + " ".join(f"{f'{m:g}x lr':>10}" for m in LR_MULTIPLIERS)]
    for (depth, d_model, tokens), group in _groups(cells):
        for beta2 in BETA2S:
            row = {cell.lr_multiplier: cell for cell in group if cell.beta2 == beta2}
            losses = " ".join(f"{_loss(row[m]) + ('*' if best.get(d_model) is row[m] else ''):>10}"
                              for m in LR_MULTIPLIERS)
            lines.append(f"{depth:>5} {d_model:>7} {tokens:>10,} {beta2:>5g} {losses}")
    lines.append("val loss (nats/token) per cell; * the best cell of each width")
    lines.append(f"rule tried: {rule_text}")
    for d_model, cell in sorted(best.items()):
        edge = (" (on the grid's edge: widen the grid)" if cell.lr_multiplier in (LR_MULTIPLIERS[0], LR_MULTIPLIERS[-1])
                else "")
        lines.append(f"best at d_model {d_model}: {cell.lr_multiplier:g}x the rule (lr {cell.lr:.4g}), "
                     f"beta2 {cell.beta2:g}{edge}")
    if rule is not None:
        lines.append(f"per-width rule from the grid: lr = {rule[0]:.4g} x (d_model / 128) ** {rule[1]:.2f} "
                     f"(through the two best rates)")
    return "\n".join(lines)


def _groups(cells: list[Cell]):
    keys = sorted({(c.n_layers, c.d_model, c.tokens) for c in cells})
    return [(key, [c for c in cells if (c.n_layers, c.d_model, c.tokens) == key]) for key in keys]


def _loss(cell: Cell) -> str:
    return "diverged" if cell.val_loss is None else f"{cell.val_loss:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None,
                        help="the tiny CPU grid (default: on without CUDA)")
    parser.add_argument("--depths", type=int, nargs=2, default=None, help="two depths (default: 4 7; tiny 1 2)")
    parser.add_argument("--out", type=Path, default=Path("out/ladder_recipe"), help="the cells' run directories")
    parser.add_argument("--json", type=Path, default=None, help="write the grid and the rule here")
    parser.add_argument("--plan", action="store_true", help="print the grid's runs and exit (nothing is trained)")
    args = parser.parse_args(argv)
    tiny = args.tiny if args.tiny is not None else not torch.cuda.is_available()
    if args.plan:
        depths = args.depths or list(TINY_DEPTHS if tiny else (4, 7))
        for depth, settings in (tiny_settings(depths) if tiny else ladder_settings(depths)).items():
            config = TrainConfig.model_validate({**settings, "out": "."})
            print(f"depth {depth}: d_model {config.aspect_ratio * depth}, {config.tokens:,.0f} tokens, "
                  f"{config.steps_for(config.tokens)} steps, lr {', '.join(f'{config.lr * m:.4g}' for m in LR_MULTIPLIERS)}"
                  f" x beta2 {', '.join(f'{b:g}' for b in BETA2S)}")
        return 0
    if not tiny and not torch.cuda.is_available():
        print("no GPU: the ladder-scale grid needs CUDA (run with --tiny for the CPU version)", file=sys.stderr)
        return 1
    depths = args.depths or list(TINY_DEPTHS if tiny else (4, 7))
    settings = tiny_settings(depths) if tiny else ladder_settings(depths)
    if tiny:
        torch.set_num_threads(1)  # tiny models run fastest on one thread (and on a busy machine)
    started = time.perf_counter()
    cells = []
    for depth in depths:
        for beta2 in BETA2S:
            for multiplier in LR_MULTIPLIERS:
                name = f"L{depth}-lr{multiplier:g}x-b{beta2:g}"
                cell = run_cell(settings[depth], multiplier, beta2, args.out / name)
                print(f"{name}: val loss {_loss(cell)} ({cell.seconds:.1f} s)", file=sys.stderr, flush=True)
                cells.append(cell)
    best = best_per_width(cells)
    rule = fitted_rule(best)
    rule_text = "lr = 0.003 x (d_model / 128) ** -0.87, beta2 0.95 (examples/gpu_ladder.toml)"
    print(("tiny CPU grid (tests the code path, not the ladder)\n" if tiny else "")
          + table(cells, best, rule, rule_text))
    print(f"{len(cells)} runs in {time.perf_counter() - started:.0f} s; median run "
          f"{statistics.median(c.seconds for c in cells):.1f} s")
    if args.json is not None:
        atomic_write_json(args.json, {
            "tiny": tiny, "device": "cpu" if tiny else torch.cuda.get_device_name(),
            "lr_multipliers": LR_MULTIPLIERS, "beta2s": BETA2S, "rule_tried": rule_text,
            "cells": [asdict(cell) for cell in cells],
            "best": {str(width): asdict(cell) for width, cell in best.items()},
            "fitted_rule": None if rule is None else {"lr_at_128": rule[0], "exponent": rule[1]}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
