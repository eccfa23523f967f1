"""How many fewer distillation tokens does a student pruned from its teacher need than a student
distilled from scratch (issue 35's target: >= 5x, on a code and a natural-language corpus)?

Setting (docs/student_init.md): a 2 x 64 teacher of the family (107K non-embedding parameters,
vocabulary 512, seq 64) trained on --teacher-tokens of the corpus's teacher half; `prune` cuts it to
the 1 x 32 ladder shape (2 heads, d_ff 128; 16.5K) by --importance on 16K calibration tokens of the
student half; then, on the student half, with the same recipe (batch 16, cosine schedule, the
family's default lr, forward KL):
- the from-scratch student of the same shape, distilled on --scratch-tokens (one run per seed);
- the pruned student, distilled on each of --budgets (a complete run each: warm-up and decay fit
  the budget, as a user who trains the pruned model for that many tokens would run it).

The factor: the budget B* at which the pruned student's final loss equals the from-scratch student's
final loss (each averaged over the seeds), interpolated linearly in log B between the two budgets
that bracket it; factor = scratch tokens / B*. When even the smallest budget beats the scratch
student, the factor is reported as a lower bound. The curve of one long pruned run (loss at 10K,
20K, ... of a 100K-token schedule) would understate the gain: mid-run, its learning rate is still
high. Both are printed: `mid-run` is the pruned student's --scratch-tokens run read at the
scratch student's final loss.

Usage: python bench/distillation/pruned_start.py [--data PATH] [--max-bytes 3M] [--out DIR] [--teacher RUN]
       [--teacher-tokens 200K] [--scratch-tokens 100K] [--budgets 10K,20K,33K] [--seeds 0,1]
       [--importance gradient]
Wall time on 2 free CPU cores: about 10 minutes per corpus (the teacher's 200K tokens, 2 x 100K
scratch and 2 x 163K pruned distillation tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from distillscale.units import Quantity, parse_quantity

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import cli, run_once  # noqa: E402 (a bench script beside this one)

SHAPE = ["--seq-len", "64", "--batch-size", "16"]


def student_shape(layers: int) -> tuple[list[str], list[str]]:
    """The student's shape (layers x 32, 2 heads of 16, d_ff 128) as `distill` and as `prune` take it."""
    return (["--n-layers", str(layers), "--aspect-ratio", str(32 // layers), "--head-dim", "16"],
            ["--n-layers", str(layers), "--d-model", "32", "--n-heads", "2", "--d-ff", "128"])


def tokens(text: str) -> int:
    """A token count as the CLI reads it (100K, 2M, 1e6)."""
    return int(parse_quantity(text, "tokens", kind=Quantity.TOKENS))


def curve(run: Path) -> list[tuple[float, float]]:
    """(tokens, val loss) of every evaluation in the run's metrics.jsonl."""
    points = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val_loss" in row and "tokens" in row:
            points.append((float(row["tokens"]), float(row["val_loss"])))
    return points


def crossing(points: list[tuple[float, float]], target: float) -> float | None:
    """The first token count where the loss reaches `target`, linear in log tokens between points."""
    if points and points[0][1] <= target:
        return points[0][0]  # reached by the first point: an upper bound on the tokens
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if l0 > target >= l1:
            return math.exp(math.log(t0) + (math.log(t1) - math.log(t0)) * (l0 - target) / (l0 - l1))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="corpus (default: Python's standard library)")
    parser.add_argument("--max-bytes", default="3M")
    parser.add_argument("--out", type=Path, default=Path("bench-out/pruned_start"))
    parser.add_argument("--teacher", type=Path, default=None, help="a finished teacher run to reuse")
    parser.add_argument("--teacher-tokens", default="200K")
    parser.add_argument("--scratch-tokens", default="100K")
    parser.add_argument("--budgets", default="5K,10K,20K,33K")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--student-layers", type=int, default=1, choices=[1, 2],
                        help="1: the 1 x 32 cut (16.5K from 107K, 6.5x); 2: 2 x 32 (width only, 3.3x)")
    parser.add_argument("--pruned-lr", default=None, help="peak lr of the pruned students (default: the recipe's)")
    parser.add_argument("--importance", default="gradient", choices=["gradient", "activation"])
    args = parser.parse_args()
    data = ["--data", args.data] if args.data else []
    seeds = [s.strip() for s in args.seeds.split(",")]
    budgets = sorted(tokens(b) for b in args.budgets.split(","))
    scratch_tokens = tokens(args.scratch_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    teacher = args.teacher or args.out / "teacher"
    teacher_result = run_once(teacher, "train", *data, "--max-bytes", args.max_bytes, "--vocab-size", "512",
                              "--n-layers", "2", "--aspect-ratio", "32", "--head-dim", "16", *SHAPE,
                              "--tokens", args.teacher_tokens) if args.teacher is None else \
        json.loads((teacher / "result.json").read_text())
    student, prune_to = student_shape(args.student_layers)
    pruned = args.out / f"pruned-{args.importance}"
    if not (pruned / "prune.json").is_file():
        cli("prune", str(teacher), "--out", str(pruned), *prune_to, "--seq-len", "64",
            "--calibration-tokens", "16K", "--importance", args.importance)
    distill = ["distill", "--teacher", str(teacher), *SHAPE, "--eval-tokens", "8K"]

    scratch = {s: run_once(args.out / f"scratch-{s}", *distill, *student, "--tokens", str(scratch_tokens),
                           "--eval-every", "10", "--seed", s) for s in seeds}
    if args.pruned_lr:
        distill_pruned = [*distill, "--lr", args.pruned_lr]
    else:
        distill_pruned = distill
    started = {(b, s): run_once(args.out / f"pruned-{b}-{s}", *distill_pruned, "--student-init", str(pruned),
                                "--tokens", str(b), "--seed", s, "--eval-every", "10" if b == scratch_tokens else "0")
               for b in budgets for s in seeds}
    long_run = {s: run_once(args.out / f"pruned-{scratch_tokens}-{s}", *distill_pruned, "--student-init", str(pruned),
                            "--tokens", str(scratch_tokens), "--seed", s, "--eval-every", "10") for s in seeds}

    target = sum(r["val_loss"] for r in scratch.values()) / len(seeds)
    final = {b: sum(started[b, s]["val_loss"] for s in seeds) / len(seeds) for b in budgets}
    final[scratch_tokens] = sum(r["val_loss"] for r in long_run.values()) / len(seeds)
    points = sorted(final.items())
    print(f"\ncorpus: {args.data or 'stdlib'}; teacher val {teacher_result['val_loss']:.3f} nats/token "
          f"({teacher_result['non_embedding_params']:,} params); importance {args.importance}; seeds {','.join(seeds)}")
    print("| student | tokens | final val loss (nats/token), per seed | mean |")
    print("|---|---|---|---|")
    def row(name: str, budget: int, results: list[dict]) -> None:
        losses = [r["val_loss"] for r in results]
        print(f"| {name} | {budget // 1000}K | {' / '.join(f'{x:.3f}' for x in losses)} | "
              f"{sum(losses) / len(losses):.3f} |")

    row("from scratch", scratch_tokens, [scratch[s] for s in seeds])
    for b in budgets:
        row("pruned", b, [started[b, s] for s in seeds])
    row("pruned", scratch_tokens, [long_run[s] for s in seeds])
    if points[0][1] <= target:
        factor = f">= {scratch_tokens / points[0][0]:.1f}x (the smallest budget already reaches it)"
    else:
        at = crossing(points, target)
        factor = f"{scratch_tokens / at:.1f}x (B* = {at / 1000:.1f}K tokens)" if at else "< 1x (never reached)"
    mid = [crossing(curve(args.out / f"pruned-{scratch_tokens}-{s}"), scratch[s]["val_loss"]) for s in seeds]
    first = {curve(args.out / f"pruned-{scratch_tokens}-{s}")[0][0] for s in seeds}
    mid_text = " / ".join(("" if m not in first else ">= ") + f"{scratch_tokens / m:.1f}x" if m else "never"
                          for m in mid)
    print(f"\ntokens saved, complete runs: {factor}")
    print(f"tokens saved, read off one {scratch_tokens // 1000}K-token pruned run (per seed): {mid_text}")
    print(f"wall: {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
