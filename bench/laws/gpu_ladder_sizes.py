"""Issue 55 on the GPU ladder with more sizes: does a data exponent that depends on N remove the
one-sided over-prediction once the fit has enough sizes to identify it?

The shipped GPU ladder's held-out check fits 4 teacher sizes (depths 3-6) and predicts the 17.1M
teachers (depth 7): every form over-predicts all 4 of its runs, and Farseer's surface is not identified
on 4 sizes. This ladder adds a size at each end, the ladder's design otherwise unchanged (the same
spec, rates from its law `gpu-ladder-h200`, WSD forks, the same min/max tokens): depth 2 (427K, whose
budgets above 4M tokens are 16 and 32 tokens per parameter) and depth 8 (25.7M at 3 tokens per
parameter, 77M tokens: the largest budget the corpus split holds), both top sizes with 2 seeds. Its
other 21 runs are the shipped ladder's teachers with the same run ids, so they repeat
docs/gpu_ladder_teachers_h200.csv's lr-law arm (a measure of the GPU's run-to-run spread).

    python bench/laws/gpu_ladder_sizes.py run --work DIR [--budget 420]     # on a GPU: DIR/sizes.csv
    bash bench/gpu/gpu_verify.sh --only sizes                              # the same, as gpu_verify's stage
    python bench/laws/gpu_ladder_sizes.py check docs/gpu_ladder_sizes_h200.csv [--forms auto chinchilla ...]

`check` scores every form at four splits, each fitted as `report` fits (100 bootstraps, 90% intervals,
the seeds' spread in the intervals), on the runs below a depth and predicting every larger run:
the shipped split (depths 3-6 -> 7), 5 sizes (2-6 -> 7 and 8), and 6 sizes (2-7 -> 8; 3-7 -> 8).
It prints mean and max |error|, the signed mean, how many runs are over-predicted, how many lie
inside their 90% intervals, and each interaction parameter or why it was not identified.
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
from bench.common.gpu_ladder import GPU_RUNS_PER_GPU, gpu_ladder_sections  # noqa: E402
from bench.common.holdout import supervised_holdout  # noqa: E402

DEPTHS = [8, 7, 6, 5, 4, 3, 2]
SPLITS = [((3, 6), "shipped split: 4 sizes"), ((2, 6), "5 sizes"), ((2, 7), "6 sizes"), ((3, 7), "5 sizes, no depth 2")]


def spec(path: Path) -> None:
    """The GPU ladder's teachers as it ships (rates from its lr_law), at depths 2-8, the two largest seeded."""
    sections, _ = gpu_ladder_sections()
    teachers = {**sections["teachers"], "n_layers": DEPTHS, "seeded_sizes": 2}
    write_spec(path, "gpu-ladder-sizes", {"data": sections["data"], "model": sections["model"], "teachers": teachers})


def run(work: Path, budget: float) -> None:
    """Train the ladder (resuming finished runs), stopped after `budget` seconds; export what completed."""
    work.mkdir(parents=True, exist_ok=True)
    spec(work / "sizes.toml")
    started = time.perf_counter()
    command = [*distillscale(), "sweep", "run", str(work / "sizes.toml"), "--out", str(work / "sweep"),
               "--runs-per-gpu", str(GPU_RUNS_PER_GPU)]
    try:
        code = subprocess.run(command, timeout=budget).returncode
    except subprocess.TimeoutExpired:
        code = "stopped at the budget"
    print(f"sweep: {code} after {time.perf_counter() - started:.0f} s")
    # sizes.csv marks the ladder done (gpu_verify.sh's sizes stage); a stopped sweep's runs go to
    # sizes.partial.csv, and the next call resumes the sweep
    export = work / ("sizes.csv" if code == 0 else "sizes.partial.csv")
    subprocess.run([*distillscale(), "sweep", "export", str(work / "sweep"), "--out", str(export), "--overwrite"],
                   check=True, stdout=subprocess.DEVNULL)


def check(export: Path, forms: list[str]) -> None:
    import pandas as pd

    runs = pd.read_csv(export)
    runs = runs[(runs.get("status", "completed") == "completed") & (runs.kind == "teacher")].reset_index(drop=True)
    print(f"{len(runs)} teachers: " + ", ".join(f"depth {d} x {n}" for d, n in runs.n_layers.value_counts().sort_index().items()))
    print("| fitted depths -> predicted | form | interaction | mean abs. error | max | signed mean | over-predicted | inside 90% |")
    print("|---|---|---|---|---|---|---|---|")
    for (low, high), label in SPLITS:
        if low not in set(runs.n_layers):
            continue
        use = runs[runs.n_layers >= low].reset_index(drop=True)
        fit_rows = (use.n_layers <= high).to_numpy()
        if fit_rows.all() or not fit_rows.any():
            continue
        for form in forms:
            held, law = supervised_holdout(use, fit_rows, form)
            errors = held.errors
            extra = {k: getattr(law, k) for k in ("beta1", "kappa", "nu") if hasattr(law, k)}
            why = {k: v for k, v in (law.fit.not_identified if law.fit else {}).items() if k in extra}
            interaction = ("not identified: " + next(iter(why.values())) if why
                           else ", ".join(f"{k} = {v:.3g}" for k, v in extra.items()) or "-")
            print(f"| {low}-{high} -> {high + 1}-{use.n_layers.max()} ({label}) | {held.form} | {interaction} | "
                  f"{np.abs(errors).mean():.2%} | {np.abs(errors).max():.2%} | {errors.mean():+.2%} | "
                  f"{int((errors > 0).sum())}/{len(errors)} | {sum(bool(r.covered) for r in held.runs)}/{len(errors)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "check", "spec"])
    parser.add_argument("export", nargs="?", type=Path, help="check: the sweep export (CSV)")
    parser.add_argument("--work", type=Path, default=Path("out/gpu_ladder_sizes"))
    parser.add_argument("--budget", type=float, default=420, help="run: seconds before the sweep is stopped")
    parser.add_argument("--forms", nargs="+", default=["auto", "chinchilla", "interaction", "farseer"])
    args = parser.parse_args()
    if args.action == "spec":
        args.work.mkdir(parents=True, exist_ok=True)
        spec(args.work / "sizes.toml")
        print(args.work / "sizes.toml")
    elif args.action == "run":
        run(args.work, args.budget)
    else:
        if args.export is None:
            parser.error("check needs the sweep export, e.g. docs/gpu_ladder_sizes_h200.csv")
        check(args.export, args.forms)


if __name__ == "__main__":
    main()
