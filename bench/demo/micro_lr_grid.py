"""Issue 53's CPU micro grid: does a hyperparameter law fitted on 3 model sizes predict the best
learning rate and batch of a 4th, larger one?

For each corpus (the default stdlib Python code corpus, and English prose: this machine's license
texts and package READMEs/copyright files, bench/common/corpora.py's `plain_corpus`) the script writes
a sweep spec with an lr x batch grid (`[tune]`) over 4 sizes of the family (aspect ratio fixed,
n_layers --depths) at one tokens-per-parameter budget, runs it with `sweep run` (finished runs are
reused when run again), exports it (`sweep export`) and

- fits the hyperparameter law (`ds.fit_hyperparameters`, what `fit hyperparameters` runs) on the 3
  smaller sizes' runs (never on the largest's; the window chosen by leave-one-cell-out over those 3);
- predicts the largest size's lr and batch (`law.recommend`, what `predict hyperparameters` prints);
- scores the prediction as the fit's own backtest does: the loss of the grid run nearest the
  prediction in (ln lr, ln B) against the size's best run (%), and the same for the engine's
  default lr and batch (the "untuned" baseline: lr 0.01, the muP base rate, at 32 sequences) and
  for the demo's lr 0.003 at its batch.

Printed: a markdown table per corpus (each size's best grid point and loss, the law's prediction at
the held-out size and the penalties) and the commands that reproduce the fit by hand. Everything is
kept under --work (the sweeps, their exports, `<corpus>/law.json`, micro_lr_grid.json).

Usage: nice -n 5 python bench/demo/micro_lr_grid.py --work /tmp/micro-lr-grid [--corpora stdlib,prose]
       [--depths 2,3,4,5] [--lrs 1e-3,3e-3,1e-2,3e-2] [--batch-sizes 8,16] [--tokens-per-param 6]
       [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import run_here  # noqa: E402
from bench.common.corpora import plain_corpus  # noqa: E402
from bench.common.specs import write_spec  # noqa: E402

import distillscale as ds
from distillscale.laws.hyperparameters.fit import score_cells
from distillscale.laws.hyperparameters.surface import nearest_run_loss, split_cells
from distillscale.training.config import TrainConfig

# The family at these sizes: d_model = aspect_ratio x depth; seq_len 64 so that the smallest size's
# budget still takes 80+ optimizer steps at the larger batch.
DATA = {"vocab_size": 512, "seq_len": 64, "max_bytes": "12M"}
MODEL = {"aspect_ratio": 12, "head_dim": 12, "schedule": "wsd", "eval_every": 0, "eval_tokens": "64K",
         "save_every": 100000, "log_every": 100000}
DEMO_LR, DEMO_BATCH = 0.003, 16   # report/micro_sweep.toml's lr and batch_size


def grid_spec(path: Path, name: str, data: dict, args) -> None:
    write_spec(path, name, {
        "data": data,
        "model": {**MODEL, "lr": DEMO_LR, "batch_size": DEMO_BATCH},
        "teachers": {"n_layers": args.depths[::-1], "tokens_per_param": [args.tokens_per_param]},
        "tune": {"lr": args.lrs, "batch_size": args.batch_sizes},
    })


def read_export(path: Path) -> dict[str, np.ndarray]:
    """The completed runs' columns (N, D, lr, batch tokens, validation loss); diverged runs left out."""
    with path.open() as f:
        rows = [row for row in csv.DictReader(f) if row["status"] == "completed" and row["val_loss"]]
    columns = {"params": "non_embedding_params", "tokens": "tokens", "lr": "lr", "batch_tokens": "batch_tokens",
               "loss": "val_loss"}
    return {key: np.array([float(row[col]) for row in rows]) for key, col in columns.items()}


def penalty(cell, lr: float, batch_tokens: float) -> tuple[float, float]:
    """The loss of the grid run nearest (lr, B) and its excess over the cell's best, in %."""
    nearest = nearest_run_loss(cell, lr, batch_tokens)
    return nearest, 100 * (nearest / float(cell.loss.min()) - 1)


def corpus_grid(name: str, data: dict, args) -> dict:
    root = args.work / name
    root.mkdir(parents=True, exist_ok=True)
    spec, sweep, export = root / "spec.toml", root / "sweep", root / "runs.csv"
    grid_spec(spec, f"lr-grid-{name}", data, args)
    started = time.perf_counter()
    # exit status 1: a run diverged (a high rate may) or failed; the export leaves it out of the fit
    run_here("sweep", "run", spec, "--out", sweep, "--workers", args.workers, allowed=(0, None, 1))
    wall = time.perf_counter() - started
    run_here("sweep", "export", sweep, "--out", export, "--overwrite")
    columns = read_export(export)
    cells = split_cells(*(columns[k] for k in ("params", "tokens", "lr", "batch_tokens", "loss")))
    sizes = sorted({cell.params for cell in cells})
    if len(sizes) != 4 or len(cells) != 4:
        raise SystemExit(f"{name}: expected 4 cells of 4 sizes (one budget per size), got {len(cells)}")
    held = cells[-1]
    smaller = {key: values[columns["params"] < sizes[-1]] for key, values in columns.items()}
    with (root / "runs_smaller.csv").open("w", newline="") as f:   # the fit's input, for the CLI by hand
        writer = csv.writer(f)
        writer.writerow(list(smaller))
        writer.writerows(zip(*(values.tolist() for values in smaller.values())))
    fit = ds.fit_hyperparameters(smaller, backtest=False, name=f"micro-{name}", lr_unit="mup-base:256")
    fit.save(root / "law.json")
    score = score_cells(fit.law, [held], fit.selection.window)[0]
    rec = fit.law.recommend(held.params, held.tokens)
    default_batch_tokens = TrainConfig.model_fields["batch_size"].default * DATA["seq_len"]
    default_lr = TrainConfig.model_fields["lr"].default
    untuned = penalty(held, default_lr, default_batch_tokens)
    demo = penalty(held, DEMO_LR, DEMO_BATCH * DATA["seq_len"])
    best = [{"params": c.params, "tokens": c.tokens, "lr": float(c.lr[c.best]),
             "batch_tokens": float(c.batch_tokens[c.best]), "loss": float(c.loss[c.best]), "runs": int(c.loss.size)}
            for c in cells]
    return {
        "corpus": name, "sweep_wall_s": wall, "cells": best,
        "fit": {"window": fit.selection.window, "batch_form": fit.selection.batch_form,
                "lr_law": fit.law.lr.model_dump(mode="json"),
                "batch_law": fit.law.batch.model_dump(mode="json") if fit.law.batch is not None else None,
                "cell_optima": [{"params": c.params, "lr": c.lr, "batch_tokens": c.batch_tokens} for c in fit.cells]},
        "prediction": {"lr": rec.lr, "lr_interval": rec.lr_interval, "batch_tokens": rec.batch_tokens,
                       "batch_interval": rec.batch_interval, "nearest_loss": score.nearest_loss,
                       "best_loss": score.best_loss, "penalty_pct": 100 * score.penalty},
        "untuned": {"lr": default_lr, "batch_tokens": default_batch_tokens, "nearest_loss": untuned[0],
                    "penalty_pct": untuned[1]},
        "demo": {"lr": DEMO_LR, "batch_tokens": DEMO_BATCH * DATA["seq_len"], "nearest_loss": demo[0],
                 "penalty_pct": demo[1]},
    }


def print_table(report: dict, args) -> None:
    p, u, d = report["prediction"], report["untuned"], report["demo"]
    print(f"\n### {report['corpus']} ({args.tokens_per_param:g} tokens/parameter; sweep {report['sweep_wall_s']:.0f} s)\n")
    print("| depth (d_model) | N | D | runs | best lr, B (tokens) | best loss | law's lr\\*, B\\* |")
    print("|---|---|---|---|---|---|---|")
    optima = {o["params"]: o for o in report["fit"]["cell_optima"]}
    for depth, cell in zip(args.depths, report["cells"]):
        fitted = optima.get(cell["params"])
        law = f"{fitted['lr']:.2g}, {fitted['batch_tokens']:.0f}" if fitted else "held out"
        print(f"| {depth} ({depth * MODEL['aspect_ratio']}) | {cell['params']:.3g} | {cell['tokens']:.3g} | "
              f"{cell['runs']} | {cell['lr']:g}, {cell['batch_tokens']:.0f} | {cell['loss']:.4f} | {law} |")
    lo, hi = p["lr_interval"] if p["lr_interval"] else (float("nan"),) * 2
    print(f"\nheld-out size: predicted lr {p['lr']:.2g} [{lo:.2g}, {hi:.2g}], B {p['batch_tokens']:.0f} tokens; "
          f"nearest grid run {p['nearest_loss']:.4f} vs best {p['best_loss']:.4f}: **{p['penalty_pct']:.2f}%** "
          f"(target 0.5%); untuned (lr {u['lr']:g}, B {u['batch_tokens']:.0f}): {u['nearest_loss']:.4f}, "
          f"{u['penalty_pct']:.2f}%; demo's (lr {d['lr']:g}, B {d['batch_tokens']:.0f}): {d['penalty_pct']:.2f}%")
    print(f"law ({report['fit']['batch_form']}, window {report['fit']['window']}): "
          f"lr* = {report['fit']['lr_law']['coefficient']:.3g} N^{report['fit']['lr_law']['exponents'][0]:.3f} "
          f"D^{report['fit']['lr_law']['exponents'][1]:.3f}")
    root = args.work / report["corpus"]
    held = report["cells"][-1]
    print(f"by hand: distillscale fit hyperparameters {root}/runs_smaller.csv --no-backtest --out {root}/law.json; "
          f"distillscale predict hyperparameters --law {root}/law.json --params {held['params']:.0f} "
          f"--tokens {held['tokens']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/micro-lr-grid"))
    parser.add_argument("--corpora", default="stdlib,prose")
    parser.add_argument("--depths", default="2,3,4,5", help="4 depths; the largest is held out")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2", help="muP base learning rates")
    parser.add_argument("--batch-sizes", default="8,16", help="sequences per step")
    parser.add_argument("--tokens-per-param", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.depths = [int(v) for v in args.depths.split(",")]
    args.lrs = [float(v) for v in args.lrs.split(",")]
    args.batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    corpora = {"stdlib": DATA, "prose": {**DATA, "path": str(plain_corpus(args.work / "prose-text"))}}
    summary = args.work / "micro_lr_grid.json"   # one report per corpus, kept across invocations
    reports = {r["corpus"]: r for r in json.loads(summary.read_text())} if summary.exists() else {}
    started = time.perf_counter()
    for name in args.corpora.split(","):
        reports[name] = {**corpus_grid(name, corpora[name], args), "batch_sizes": args.batch_sizes, "lrs": args.lrs}
        summary.write_text(json.dumps(list(reports.values()), indent=1))
        print_table(reports[name], args)
    print(f"\ntotal wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
