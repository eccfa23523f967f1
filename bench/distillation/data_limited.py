"""Distillation when data is the limit, measured at micro scale: students trained alone, self-distillation
chains, a larger teacher and ensembles, all on one fixed pool of unique tokens per cell.

Per corpus, for students of depth 2 and 1 (`--depths 2,1`: 55K and 6.9K non-embedding parameters at aspect
ratio 24; each one's larger teacher one layer deeper: 186K and 55K) and per pool U (256K, 16K and 4K unique tokens of the teacher split: 1, 16 and 64 epochs
of the runs' D = 256K tokens, 500 optimizer steps of 4 x 128 tokens each), every run reads the same pool
the same number of times (each run one torch thread, `--workers` runs at a time):

- a weight-decay grid first, per pool (trained alone, seed 0: 1e-4, 1e-3 and 1e-2 per step at peak lr on
  the 1-epoch pool, 1e-2, 3e-2 and 1e-1 at 16 epochs, to 3e-1 at 64; the engine's default 1e-4 lost by 26% at 16 epochs
  on the first corpus): its best run is
  the cell's seed-0 run trained alone (linked, not trained again), and every other run of the cell,
  students included, takes its weight decay, so the baselines are as a careful user would run them (the
  best decay moves with the epochs: 16 epochs wanted 3x more than 1);
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
    python bench/distillation/data_limited.py run CORPUS_DIR [CORPUS_DIR ...] --store /work/dl_sweeps [--workers 2] [--depths 2,1]
    python bench/distillation/data_limited.py collect --store /work/dl_sweeps [--out bench/data/data_limited_runs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

DEPTHS = (2,)                         # student depths (`--depths`); each one's larger teacher is one deeper
POOLS = ("256K", "16K", "4K")
FRESH_POOL = "256K"
TOKENS = "256K"
SEED_POOL = "16K"                     # the pool with a third seed and an ensemble of 3
# Weight decays tried per pool (per step at peak lr; the engine's default is 1e-4): three around where the
# first corpus's best lay for the pool's epochs; a best at a grid's end is reported as such.
# The 64-epoch pools' grid reaches 3e-1: with three values every first corpus's best lay at 1e-1, the
# grid's end, and on one of them 3e-1 was better still (by 2.8%).
GRIDS = {"256K": (1e-4, 1e-3, 1e-2), "16K": (1e-2, 3e-2, 1e-1), "4K": (1e-2, 3e-2, 1e-1, 3e-1)}
SEEDS = (0, 1, 2)
GENERATIONS = 4
COMMON = ("--aspect-ratio", "24", "--head-dim", "24", "--seq-len", "128", "--batch-size", "4",
          "--tokens", TOKENS, "--lr", "0.003", "--schedule", "wsd", "--eval-tokens", "64K", "--save-every", "250")
SAME_POOL = 'split = "teacher"\n'   # the student reads the teacher's half: the same pool
# How the committed bench/data/data_limited_runs.json was made (corpora from what a Debian machine holds).
MADE_BY = ["python bench/demo/demo_corpora.py build doc-en man-en c-include --root /work/corpora --cap 4M",
           "ln -s \"$(python -c 'import sysconfig; print(sysconfig.get_paths()[\"stdlib\"])')\" /work/corpora/stdlib"]
RUN_COMMAND = ("python bench/distillation/data_limited.py run /work/corpora/doc-en /work/corpora/stdlib "
               "/work/corpora/man-en /work/corpora/c-include --store /work/dl_sweeps --workers 2")


@dataclass
class Run:
    run_id: str
    command: str                      # train, distill, or link (alone-s0: the best of the cell's grid)
    depth: int
    pool: str
    role: str                         # grid, alone, chain, larger, student-of-larger, ensemble
    seed: int = 0
    weight_decay: float | None = None  # None: the cell's best from its grid
    teachers: tuple[str, ...] = ()
    generation: int | None = None
    members: int | None = None
    needs: tuple[str, ...] = field(default=())

    @property
    def cell(self) -> str:
        return self.run_id.split("-", 2)[0] + "-" + self.run_id.split("-", 2)[1]


def grid_id(cell: str, wd: float) -> str:
    return f"{cell}-wd{wd:g}"


def plan_runs(depths=DEPTHS) -> list[Run]:
    runs: list[Run] = []
    for depth in depths:
        for pool in POOLS:
            cell = f"d{depth}-u{pool}"
            grid = tuple(grid_id(cell, wd) for wd in GRIDS[pool])
            runs += [Run(grid_id(cell, wd), "train", depth, pool, "grid", weight_decay=wd) for wd in GRIDS[pool]]
            runs.append(Run(f"{cell}-alone-s0", "link", depth, pool, "alone", needs=grid))
            seeds = SEEDS if pool == SEED_POOL else SEEDS[:2]
            for seed in seeds[1:]:
                runs.append(Run(f"{cell}-alone-s{seed}", "train", depth, pool, "alone", seed=seed, needs=grid))
            previous = f"{cell}-alone-s0"
            for g in range(1, (2 if pool == FRESH_POOL else GENERATIONS) + 1):
                runs.append(Run(f"{cell}-gen{g}", "distill", depth, pool, "chain", teachers=(previous,),
                                generation=g, needs=(previous,)))
                previous = f"{cell}-gen{g}"
            runs.append(Run(f"{cell}-larger", "train", depth + 1, pool, "larger", needs=grid))
            runs.append(Run(f"{cell}-from-larger", "distill", depth, pool, "student-of-larger",
                            teachers=(f"{cell}-larger",), needs=(f"{cell}-larger",)))
            for k in range(2, len(seeds) + 1):
                members = tuple(f"{cell}-alone-s{s}" for s in seeds[:k])
                runs.append(Run(f"{cell}-ensemble{k}", "distill", depth, pool, "ensemble", teachers=members,
                                members=k, needs=members))
    return runs


def val_loss(run_dir: Path) -> float | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["val_loss"]


def best_weight_decay(root: Path, cell: str) -> float:
    """The cell's weight decay whose run trained alone (seed 0) has the lowest validation loss."""
    losses = {wd: val_loss(root / grid_id(cell, wd)) for wd in GRIDS[cell.split("-u")[1]]}
    return min((wd for wd in losses if losses[wd] is not None), key=lambda wd: losses[wd])


def link_best(root: Path, run: Run) -> int:
    """alone-s0 of a cell: its grid's best run, linked (not trained again)."""
    link = root / run.run_id
    if not link.exists():
        link.symlink_to(grid_id(run.cell, best_weight_decay(root, run.cell)))
    return 0


def command_line(run: Run, root: Path, corpus: Path, same_pool: Path) -> list[str]:
    wd = run.weight_decay if run.weight_decay is not None else best_weight_decay(root, run.cell)
    args = [sys.executable, "-m", "distillscale.cli", run.command, "--data", str(corpus), "--n-layers", str(run.depth), "--unique-tokens", run.pool, "--weight-decay", f"{wd:g}",
            "--seed", str(run.seed), *COMMON, "--out", str(root / run.run_id)]
    if run.command == "train":
        return args + ["--vocab-size", "512"]
    args += ["--config", str(same_pool)]      # the student takes its teachers' tokenizer and reads their pool
    for teacher in run.teachers:
        args += ["--teacher", str(root / teacher)]
    return args


def run_corpora(corpora: list[Path], store: Path, workers: int, depths=DEPTHS) -> None:
    """Every corpus's runs in one pool of workers, the 1-epoch and 16-epoch pools of every corpus before
    the 64-epoch ones (so that a stopped measurement leaves whole pools on every corpus)."""
    order = {pool: i for i, pool in enumerate(("256K", "16K", "4K"))}
    runs, roots = {}, {}
    for corpus in corpora:
        root = store / corpus.name
        root.mkdir(parents=True, exist_ok=True)
        (root / "same_pool.toml").write_text(SAME_POOL)
        roots[corpus.name] = (root, corpus)
        runs |= {(corpus.name, run.run_id): run for run in plan_runs(depths)}
    done = {key for key in runs if (roots[key[0]][0] / key[1] / "result.json").exists()}
    failed: set = set()
    started = time.time()

    def launch(key) -> tuple:
        run, (root, corpus) = runs[key], roots[key[0]]
        t0 = time.time()
        if run.command == "link":
            return key, link_best(root, run), 0.0
        with (root / f"{run.run_id}.log").open("a") as handle:
            rc = subprocess.call(command_line(run, root, corpus, root / "same_pool.toml"), stdout=handle,
                                 stderr=subprocess.STDOUT, env=os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        return key, rc, time.time() - t0

    pending = sorted((key for key in runs if key not in done),
                     key=lambda key: (order[runs[key].pool], [c.name for c in corpora].index(key[0])))
    with ThreadPoolExecutor(workers) as pool:
        active = {}
        while pending or active:
            for key in [key for key in pending if any((key[0], n) in failed for n in runs[key].needs)]:
                pending.remove(key)
                failed.add(key)
                print(f"{key[0]}: {key[1]} skipped (a run it needs failed)", flush=True)
            ready = [key for key in pending if all((key[0], n) in done for n in runs[key].needs)]
            for key in ready[:max(0, workers - len(active))]:
                pending.remove(key)
                active[pool.submit(launch, key)] = key
            if not active:
                break
            finished, _ = wait(list(active), return_when=FIRST_COMPLETED)
            for future in finished:
                key, rc, seconds = future.result()
                del active[future]
                (done if rc == 0 else failed).add(key)
                print(f"{key[0]}: {key[1]} rc={rc} {seconds:.0f} s val_loss={val_loss(roots[key[0]][0] / key[1])} "
                      f"({len(done)}/{len(runs)} done, {time.time() - started:.0f} s)", flush=True)


def collect(store: Path, out: Path, argv: list[str]) -> None:
    records = []
    for root in sorted(p for p in store.iterdir() if p.is_dir()):
        for run in plan_runs((1, 2, 3)):
            path = root / run.run_id / "result.json"
            if not path.exists():
                continue
            result = json.loads(path.read_text())
            config = json.loads((root / run.run_id / "config.json").read_text())
            records.append({
                "corpus": root.name, "run_id": run.run_id, "role": run.role, "depth": run.depth,
                "pool": run.pool, "unique_tokens": config.get("unique_tokens"), "tokens": result.get("tokens"),
                "non_embedding_params": result.get("non_embedding_params"), "seed": run.seed,
                "weight_decay": config.get("weight_decay"), "cell_grid": {f"{wd:g}": val_loss(root / grid_id(run.cell, wd)) for wd in GRIDS[run.pool]},
                "generation": run.generation, "members": run.members,
                "teachers": list(run.teachers), "val_loss": result["val_loss"],
                "teacher_val_loss": (result.get("teacher") or {}).get("teacher_val_loss"),
                "train_seconds": result.get("wall_seconds") or result.get("elapsed_seconds"),
            })
    payload = {"command": RUN_COMMAND, "made_by": [*MADE_BY, "python bench/distillation/data_limited.py " + " ".join(argv)],
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
    run.add_argument("--depths", default="2", help="student depths, comma-separated (default: 2)")
    col = sub.add_parser("collect")
    col.add_argument("--store", type=Path, required=True)
    col.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "data" / "data_limited_runs.json")
    args = parser.parse_args(argv)
    if args.verb == "run":
        run_corpora([corpus.absolute() for corpus in args.corpora], args.store.resolve(), args.workers,
                    tuple(int(d) for d in args.depths.split(",")))
    else:
        collect(args.store.resolve(), args.out, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
