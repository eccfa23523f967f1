"""Cache-fed distillation against supervised training of the same student: tokens/s, side by side in
one run (issue 28's CPU case).

A tiny teacher (2 x 96, vocabulary 512) is trained here; `cache-logits` caches K = 12 samples of its
predictions per token on 64-token windows. Then the same 16.5K-parameter student (1 x 32, batch 8)
is trained by the real recipe, alternating arms round by round so that load from other processes
hits them alike:

- supervised: `distillscale train` on the cache's split;
- cache-fed: `distillscale distill --teacher-cache`, batches read by the background reader;
- cache-fed, inline reads: the same with the reader off (`recipe.PREFETCH_STEPS = 0`).

Each figure is result.json's tokens_per_second (tokens over the time spent in training steps,
batch reads included); the ratio to supervised is taken within each round, then the median over
--rounds rounds. Target: cache-fed >= 0.9x supervised.

Usage: python bench/speed/cache_fed_speed.py [--rounds 7] [--student-tokens 20k] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from distillscale.training import recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import run_here  # noqa: E402
from bench.common.tiny import CORPUS  # noqa: E402
from bench.common.tiny import STUDENT as TINY_STUDENT  # noqa: E402
from bench.common.tiny import TEACHER as TINY_TEACHER  # noqa: E402

TEACHER = [*TINY_TEACHER, "--tokens", "40k", "--eval-tokens", "4k"]
STUDENT = [*TINY_STUDENT, "--eval-tokens", "4k", "--save-every", "100000"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--student-tokens", default="20k")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prefetch = getattr(recipe, "PREFETCH_STEPS", 0)  # 0 before the reader existed (measuring old code)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["DISTILLSCALE_CACHE"] = str(root / "data")
        run_here("train", "--out", root / "teacher", *TEACHER, *CORPUS)
        run_here("cache-logits", "--teacher", root / "teacher", "--out", root / "cache", "--targets", "sampled",
            "--samples", 12, "--batch-size", 32, "--eval-tokens", "4k", *CORPUS[2:])
        split = json.loads((root / "cache" / "cache.json").read_text())["split"]
        arms = {
            "supervised (train)": (["train", "--tokenizer", root / "teacher" / "tokenizer.json",
                                    "--split", split], prefetch),
            "cache-fed, background reader": (["distill", "--teacher-cache", root / "cache"], prefetch),
            "cache-fed, inline reads": (["distill", "--teacher-cache", root / "cache"], 0),
        }
        speeds: dict[str, list[float]] = {name: [] for name in arms}
        params = 0
        for round_ in range(args.rounds):
            for index, (name, (command, depth)) in enumerate(arms.items()):
                recipe.PREFETCH_STEPS = depth
                out = root / f"student{index}-{round_}"
                run_here(*command, "--out", out, *STUDENT, "--tokens", args.student_tokens, *CORPUS)
                result = json.loads((out / "result.json").read_text())
                speeds[name].append(result["tokens_per_second"])
                params = result["non_embedding_params"]
        recipe.PREFETCH_STEPS = prefetch

    supervised = speeds["supervised (train)"]
    print(f"\nstudent {params:,} non-embedding parameters, vocabulary 512, 8 x 64 tokens per step, "
          f"{args.student_tokens} tokens per run; sampled cache K = 12; CPU, {args.threads} thread(s); "
          f"{args.rounds} rounds\n")
    print(f"{'arm':<32} {'median tokens/s':>15} {'vs supervised':>14}   per round (tokens/s)")
    for name, values in speeds.items():
        # the ratio within each round (the arms ran back to back), then the median over the rounds:
        # load from other processes changes from round to round far more than within one
        ratio = statistics.median(v / s for v, s in zip(values, supervised))
        print(f"{name:<32} {statistics.median(values):>15,.0f} {ratio:>13.2f}x   "
              + ", ".join(f"{v:,.0f}" for v in values))
    ratio = statistics.median(v / s for v, s in zip(speeds["cache-fed, background reader"], supervised))
    print(f"\ntarget: cache-fed >= 0.9x supervised: {'met' if ratio >= 0.9 else 'MISSED'} ({ratio:.2f}x)")

if __name__ == "__main__":
    main()
