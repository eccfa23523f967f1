"""Distillation when data is the limit, measured at micro scale: students trained alone, self-distillation
chains, a larger teacher and ensembles, all on one fixed pool of unique tokens per cell.

Per corpus, per student depth (1 and 2: 6.9K and 55K non-embedding parameters at aspect ratio 24) and per
pool U (256K, 16K and 4K unique tokens of the teacher split: 1, 16 and 64 epochs of the runs' D = 256K
tokens, 500 optimizer steps of 4 x 128 tokens each), every run reads the same pool the same number of
times (each run one torch thread, `--workers` runs at a time):

- a weight-decay grid first (trained alone at U = 16K: 1e-4, the engine's default, to 1e-1 per step
  at peak lr), whose best value every run of that depth then takes, so the baselines are as a careful
  user would run them;
- trained alone, seeds 0 and 1 (and 2 at U = 16K);
- a self-distillation chain of four generations (two on the 1-epoch pool, where it should not pay):
  generation 1 distilled from the seed-0 run alone, each next one from the previous, same size, same
  pool, same epochs;
- a larger teacher (one layer deeper) trained alone on the pool, and a student distilled from it;
- ensembles of 2 (and 3 at U = 16K) of the seeds trained alone (the engine's teacher mixture, in
  probability space) distilled into one.

Each run is a run directory of the engine (`distillscale train` / `distill`) under STORE/CORPUS/, so the
script resumes where it stopped (a finished run is skipped, an interrupted one resumes from its
checkpoint). `collect` writes every finished run's numbers to bench/data/data_limited_runs.json with the
command that made them.

Usage:
    python bench/distillation/data_limited.py run CORPUS_DIR [CORPUS_DIR ...] --store /work/dl_sweeps [--workers 2]
    python bench/distillation/data_limited.py collect --store /work/dl_sweeps [--out bench/data/data_limited_runs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

DEPTHS = (2, 1)
POOLS = ("256K", "16K", "4K")
FRESH_POOL = "256K"
TOKENS = "256K"
GRID_POOL = "16K"
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
SEEDS = (0, 1, 2)
GENERATIONS = 4
COMMON = ("--aspect-ratio", "24", "--head-dim", "24", "--seq-len", "128", "--batch-size", "4",
          "--tokens", TOKENS, "--lr", "0.003", "--schedule", "wsd", "--eval-tokens", "64K", "--save-every", "250")
SAME_POOL = 'split = "teacher"\n'   # the student reads the teacher's half: the same pool


@dataclass
class Run:
    run_id: str
    command: str                      # train or distill
    depth: int
    pool: str
    role: str                         # grid, alone, chain, larger, student-of-larger, ensemble
    seed: int = 0
    weight_decay: float | None = None  # None: the depth's best from the grid
    teachers: tuple[str, ...] = ()
    generation: int | None = None
    members: int | None = None
    needs: tuple[str, ...] = field(default=())


def plan_runs() -> list[Run]:
    runs: list[Run] = []
    for depth in DEPTHS:
        for wd in WEIGHT_DECAYS:
            runs.append(Run(f"d{depth}-grid-wd{wd:g}", "train", depth, GRID_POOL, "grid", weight_decay=wd))
        grid = tuple(f"d{depth}-grid-wd{wd:g}" for wd in WEIGHT_DECAYS)
        for pool in POOLS:
            cell = f"d{depth}-u{pool}"
            seeds = SEEDS if pool == GRID_POOL else SEEDS[:2]
            for seed in seeds:
                runs.append(Run(f"{cell}-alone-s{seed}", "train", depth, pool, "alone", seed=seed, needs=grid))
            previous = f"{cell}-alone-s0"
            for g in range(1, (2 if pool == FRESH_POOL else GENERATIONS) + 1):
                runs.append(Run(f"{cell}-gen{g}", "distill", depth, pool, "chain", teachers=(previous,),
                                generation=g, needs=grid + (previous,)))
                previous = f"{cell}-gen{g}"
            runs.append(Run(f"{cell}-larger", "train", depth + 1, pool, "larger", needs=grid))
            runs.append(Run(f"{cell}-from-larger", "distill", depth, pool, "student-of-larger",
                            teachers=(f"{cell}-larger",), needs=grid + (f"{cell}-larger",)))
            for k in range(2, len(seeds) + 1):
                members = tuple(f"{cell}-alone-s{s}" for s in seeds[:k])
                runs.append(Run(f"{cell}-ensemble{k}", "distill", depth, pool, "ensemble", teachers=members,
                                members=k, needs=grid + members))
    return runs


def val_loss(run_dir: Path) -> float | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["val_loss"]


def best_weight_decay(root: Path, depth: int) -> float:
    losses = {wd: val_loss(root / f"d{depth}-grid-wd{wd:g}") for wd in WEIGHT_DECAYS}
    return min(losses, key=lambda wd: losses[wd])


def command_line(run: Run, root: Path, corpus: Path, same_pool: Path) -> list[str]:
    wd = run.weight_decay if run.weight_decay is not None else best_weight_decay(root, run.depth)
    args = [sys.executable, "-m", "distillscale.cli", run.command, "--data", str(corpus), "--n-layers", str(run.depth), "--unique-tokens", run.pool, "--weight-decay", f"{wd:g}",
            "--seed", str(run.seed), *COMMON, "--out", str(root / run.run_id)]
    if run.command == "train":
        return args + ["--vocab-size", "512"]
    args += ["--config", str(same_pool)]      # the student takes its teachers' tokenizer and reads their pool
    for teacher in run.teachers:
        args += ["--teacher", str(root / teacher)]
    return args


def run_corpus(corpus: Path, store: Path, workers: int) -> None:
    root = store / corpus.name
    root.mkdir(parents=True, exist_ok=True)
    same_pool = root / "same_pool.toml"
    same_pool.write_text(SAME_POOL)
    runs = {run.run_id: run for run in plan_runs()}
    done = {run_id for run_id in runs if (root / run_id / "result.json").exists()}
    failed: set[str] = set()
    lock = threading.Lock()
    started = time.time()

    def launch(run: Run) -> tuple[str, int, float]:
        t0 = time.time()
        log = root / f"{run.run_id}.log"
        with log.open("a") as handle:
            rc = subprocess.call(command_line(run, root, corpus, same_pool), stdout=handle, stderr=subprocess.STDOUT,
                                 env=os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        return run.run_id, rc, time.time() - t0

    pending = [run for run in runs.values() if run.run_id not in done]
    with ThreadPoolExecutor(workers) as pool:
        active = {}
        while pending or active:
            ready = [run for run in pending if all(n in done for n in run.needs)]
            blocked = [run for run in pending if any(n in failed for n in run.needs)]
            for run in blocked:
                pending.remove(run)
                failed.add(run.run_id)
                print(f"{corpus.name}: {run.run_id} skipped (a run it needs failed)", flush=True)
            for run in ready[:max(0, workers - len(active))]:
                pending.remove(run)
                active[pool.submit(launch, run)] = run.run_id
            if not active:
                break
            finished, _ = wait(list(active), return_when=FIRST_COMPLETED)
            for future in finished:
                run_id, rc, seconds = future.result()
                del active[future]
                with lock:
                    (done if rc == 0 else failed).add(run_id)
                loss = val_loss(root / run_id)
                print(f"{corpus.name}: {run_id} rc={rc} {seconds:.0f} s val_loss={loss} "
                      f"({len(done)}/{len(runs)} done, {time.time() - started:.0f} s)", flush=True)


def collect(store: Path, out: Path, argv: list[str]) -> None:
    records = []
    for root in sorted(p for p in store.iterdir() if p.is_dir()):
        best = {depth: best_weight_decay(root, depth) for depth in DEPTHS
                if all(val_loss(root / f"d{depth}-grid-wd{wd:g}") is not None for wd in WEIGHT_DECAYS)}
        for run in plan_runs():
            path = root / run.run_id / "result.json"
            if not path.exists():
                continue
            result = json.loads(path.read_text())
            config = json.loads((root / run.run_id / "config.json").read_text())
            records.append({
                "corpus": root.name, "run_id": run.run_id, "role": run.role, "depth": run.depth,
                "pool": run.pool, "unique_tokens": config.get("unique_tokens"), "tokens": result.get("tokens"),
                "non_embedding_params": result.get("non_embedding_params"), "seed": run.seed,
                "weight_decay": config.get("weight_decay"), "best_weight_decay": best.get(run.depth),
                "generation": run.generation, "members": run.members,
                "teachers": list(run.teachers), "val_loss": result["val_loss"],
                "teacher_val_loss": (result.get("teacher") or {}).get("val_loss"),
                "train_seconds": result.get("wall_seconds") or result.get("elapsed_seconds"),
            })
    payload = {"command": "python bench/distillation/data_limited.py " + " ".join(argv),
               "design": __doc__.split("Usage:")[0].strip(), "runs": records}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"{len(records)} runs -> {out}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run")
    run.add_argument("corpora", nargs="+", type=Path)
    run.add_argument("--store", type=Path, required=True)
    run.add_argument("--workers", type=int, default=2)
    col = sub.add_parser("collect")
    col.add_argument("--store", type=Path, required=True)
    col.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "data" / "data_limited_runs.json")
    args = parser.parse_args(argv)
    if args.verb == "run":
        for corpus in args.corpora:
            run_corpus(corpus.absolute(), args.store.resolve(), args.workers)
    else:
        collect(args.store.resolve(), args.out, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
