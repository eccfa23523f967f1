"""Issue 55: is the micro demo's one-sided supervised error its runs' shortness (55-870 optimizer steps)?

The demo's teachers (report/micro_sweep.toml, teachers only, one corpus) trained three ways, each a
teachers-only sweep, then the report's held-out check (depths 1-3 fitted, the 6 runs of depth 4
predicted; 100 bootstraps, 90% intervals) for the default form and chinchilla:
  b16   the demo as it ships: 16 x 128-token batches, lr 0.003
  b4    4 x 128-token batches (4x the optimizer steps for the same tokens: 218-3,477), lr 0.0015
        (the square-root rule from batch 16)
  b4hi  4 x 128-token batches at the demo's lr 0.003

    nice python bench/demo/micro_steps.py run [--work /work/batch] [--data builtin:stdlib]   # ~13 min on 2 cores
    python bench/demo/micro_steps.py check [--work /work/batch]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import distillscale  # noqa: E402
from bench.common.specs import write_spec  # noqa: E402
from bench.common.holdout import supervised_holdout  # noqa: E402

ARMS = {"b16": (16, 0.003), "b4": (4, 0.0015), "b4hi": (4, 0.003)}


def run(work: Path, data: str) -> None:
    from distillscale.report.demo import builtin_sweep

    sections = builtin_sweep(scale="micro").sections
    work.mkdir(parents=True, exist_ok=True)
    for arm, (batch, lr) in ARMS.items():
        write_spec(work / f"{arm}.toml", arm, {"data": {**sections["data"], "path": data},
                                               "model": {**sections["model"], "batch_size": batch, "lr": lr},
                                               "teachers": sections["teachers"]})
        started = time.perf_counter()
        subprocess.run([*distillscale(), "sweep", "run", str(work / f"{arm}.toml"), "--out", str(work / arm),
                        "--workers", "2"], check=True, stdout=subprocess.DEVNULL)
        print(f"{arm}: {time.perf_counter() - started:.0f} s")
        subprocess.run([*distillscale(), "sweep", "export", str(work / arm), "--out", str(work / f"{arm}.csv"),
                        "--overwrite"], check=True, stdout=subprocess.DEVNULL)


def check(work: Path) -> None:
    import pandas as pd

    for arm in ARMS:
        runs = pd.read_csv(work / f"{arm}.csv")
        runs = runs[(runs.status == "completed") & (runs.kind == "teacher")].reset_index(drop=True)
        N, D, L = (runs[k].to_numpy(float) for k in ("non_embedding_params", "tokens", "val_loss"))
        steps = D / runs.batch_tokens.to_numpy(float)
        fitted = N < N.max()
        print(f"{arm}: {len(runs)} teachers, {steps.min():.0f}-{steps.max():.0f} steps; held-out losses "
              + ", ".join(f"{loss:.3f}" for loss in L[~fitted]))
        for form in ("auto", "chinchilla"):
            held, _ = supervised_holdout(runs, fitted, form)
            errors = held.errors
            print(f"   {form}: {np.abs(errors).mean():.2%} (signed {errors.mean():+.2%}, {int((errors > 0).sum())}/"
                  f"{len(errors)} over, {sum(bool(r.covered) for r in held.runs)}/{len(errors)} inside 90%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "check"])
    parser.add_argument("--work", type=Path, default=Path("/work/batch"))
    parser.add_argument("--data", default="builtin:stdlib")
    args = parser.parse_args()
    run(args.work, args.data) if args.action == "run" else check(args.work)


if __name__ == "__main__":
    main()
