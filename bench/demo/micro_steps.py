"""Is the micro demo's one-sided supervised error its runs' shortness (too few optimizer steps)?

The demo's teachers (report/micro_sweep.toml's [teachers], one corpus) trained several ways, each a
teachers-only sweep, then the report's held-out check (depths 1-3 fitted, the 6 runs of depth 4
predicted; 100 bootstraps, 90% intervals), raw (no correction):

  b16       the earlier design: 16 x 128-token batches, runs of 100K-1.8M tokens (49-870 steps), lr 0.003
  b4        4 x 128-token batches (4x the steps for the same tokens: 218-3,477), lr 0.0015 (the
            square-root rule from batch 16)
  b4hi      4 x 128-token batches at lr 0.003
  steps500  min_steps = 500 on the earlier window: each size's batch halved until its shortest run takes
            500 steps (1-4 sequences: 732-13,908 steps, the small sizes far below the batch law's B*)
  shipped   the design as it ships: min_steps = 500 on runs of 256K-1.8M tokens (4 sequences for
            every size: 732-3,477 steps)

    nice python bench/demo/micro_steps.py run [--work DIR] [--data builtin:stdlib] [--arms shipped b16]
    python bench/demo/micro_steps.py check [--work DIR] [--arms ...]

About 5 minutes an arm on 2 cores.
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

# arm -> ([model] overrides, [teachers] overrides)
ARMS = {"b16": ({"batch_size": 16}, {"min_tokens": "100K", "min_steps": None}),
        "b4": ({"batch_size": 4, "lr": 0.0015}, {"min_tokens": "100K", "min_steps": None}),
        "b4hi": ({"batch_size": 4}, {"min_tokens": "100K", "min_steps": None}),
        "steps500": ({}, {"min_tokens": "100K", "min_steps": 500}),
        "shipped": ({}, {})}


def run(work: Path, data: str, arms: list[str]) -> None:
    from distillscale.report.demo import builtin_sweep

    sections = builtin_sweep(scale="micro").sections
    work.mkdir(parents=True, exist_ok=True)
    for arm in arms:
        model, teachers = ARMS[arm]
        write_spec(work / f"{arm}.toml", arm, {"data": {**sections["data"], "path": data},
                                               "model": {**sections["model"], **model},
                                               "teachers": {**sections["teachers"], **teachers}})
        started = time.perf_counter()
        subprocess.run([*distillscale(), "sweep", "run", str(work / f"{arm}.toml"), "--out", str(work / arm),
                        "--workers", "2"], check=True, stdout=subprocess.DEVNULL)
        print(f"{arm}: {time.perf_counter() - started:.0f} s")
        subprocess.run([*distillscale(), "sweep", "export", str(work / arm), "--out", str(work / f"{arm}.csv"),
                        "--overwrite"], check=True, stdout=subprocess.DEVNULL)


def check(work: Path, arms: list[str]) -> None:
    import pandas as pd

    for arm in arms:
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
    parser.add_argument("--work", type=Path, required=True, help="a directory of yours for the sweeps")
    parser.add_argument("--data", default="builtin:stdlib")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["shipped", "steps500", "b16"])
    args = parser.parse_args()
    run(args.work, args.data, args.arms) if args.action == "run" else check(args.work, args.arms)


if __name__ == "__main__":
    main()
