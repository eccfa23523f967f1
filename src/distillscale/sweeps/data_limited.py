"""Distillation when data is the limit: the runs of `demo --data-limited`, planned and run.

One student size trained on fixed pools of unique tokens of the corpus's teacher split, each read for
as many epochs as the run's token budget takes (a pool as large as the budget: one epoch, fresh data):

- per pool, a weight-decay grid first (trained alone, seed 0), whose best run is the pool's seed-0 run
  trained alone (a link to it, not trained again) and whose best value every other run of the pool
  takes (`best_weight_decay`), so that the runs trained alone are as a careful user would run them (the
  best decay moves with the epochs: 16 epochs want several times more than one);
- then the student size trained alone with the other seeds; a chain of generations, each distilled
  from the previous one (the first from the seed-0 run alone), same size, same pool; a larger teacher
  trained alone and its student; the runs trained alone, as an ensemble (the engine's mixture of
  teachers), distilled into one.

Each run is a run directory of the engine (`distillscale train` / `distill`) under the sweep directory,
named as the runs of bench/data/data_limited_runs.json: d2-u16K-wd0.03,
d2-u16K-alone-s0, d2-u16K-gen1, d2-u16K-larger, d2-u16K-from-larger, d2-u16K-ensemble2. The runs go
through the sweep's local executor (long-lived worker processes, one torch thread per run, `run_graph`),
each as soon as the runs it needs have finished; a run with a result.json is done and is never run again, an
interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from distillscale.errors import UserError
from distillscale.units import Quantity, parse_quantity

SAME_POOL_CONFIG = "same_pool.toml"
SAME_POOL = 'split = "teacher"\n'  # a student reads its teachers' half of the corpus: the same pool
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class DataLimitedDesign:
    """The sizes, budgets and pools of the runs. `pools[0]` is the 1-epoch pool (as many unique tokens
    as the budget `tokens`: fresh data), against which the others' repetition penalty is measured;
    `grids` the weight decays tried on each pool (per step at peak lr)."""

    depth: int = 2
    larger_depth: int = 3
    aspect_ratio: int = 24
    head_dim: int = 24
    seq_len: int = 128
    batch_size: int = 4
    tokens: str = "256K"
    lr: float = 0.003
    schedule: str = "wsd"
    vocab_size: int = 512
    eval_tokens: str = "64K"
    save_every: int = 250
    pools: tuple[str, ...] = ("256K", "16K")
    grids: dict[str, tuple[float, ...]] = field(default_factory=lambda: {"256K": (1e-4, 1e-3, 1e-2),
                                                                         "16K": (1e-2, 3e-2, 1e-1)})
    seeds: tuple[int, ...] = (0, 1)
    generations: int = 3

    def count(self, quantity: str) -> int:
        return int(parse_quantity(quantity, "tokens", kind=Quantity.TOKENS))

    def epochs(self, pool: str) -> float:
        return self.count(self.tokens) / self.count(pool)

    def to_json(self) -> dict:
        return asdict(self)


DEMO_DESIGN = DataLimitedDesign()
# `demo --data-limited --quick`: the design shrunk to seconds (tiny models, 2,048-token runs, a 1-epoch and a
# 4-epoch pool): every part of the demo runs, its numbers say nothing of a real model; what the tests run.
QUICK_DESIGN = DataLimitedDesign(depth=1, larger_depth=2, aspect_ratio=16, head_dim=16, seq_len=16, batch_size=2,
                                 tokens="2048", vocab_size=300, eval_tokens="1K", save_every=20, pools=("2048", "512"),
                                 grids={"2048": (1e-3, 1e-1), "512": (1e-3, 1e-2, 1e-1)}, seeds=(0, 1), generations=2)


@dataclass(frozen=True)
class DataLimitedRun:
    """One run: `command` train, distill, or link (the seed-0 run alone: the best of its pool's grid);
    `role` grid, alone, chain, larger, student-of-larger or ensemble; `weight_decay` None takes the
    pool's best; `needs` the runs that must finish first."""

    run_id: str
    command: str
    depth: int
    pool: str
    role: str
    seed: int = 0
    weight_decay: float | None = None
    teachers: tuple[str, ...] = ()
    generation: int | None = None
    needs: tuple[str, ...] = field(default=())


def grid_id(design: DataLimitedDesign, pool: str, weight_decay: float) -> str:
    return f"{cell_id(design, pool)}-wd{weight_decay:g}"


def cell_id(design: DataLimitedDesign, pool: str) -> str:
    return f"d{design.depth}-u{pool}"


def plan_runs(design: DataLimitedDesign) -> list[DataLimitedRun]:
    """Every run of the design: every pool's grid first (the runs everything else waits for: the demo
    ends about a minute sooner on 2 cores), then pool by pool, the 1-epoch pool first."""
    runs = []
    for pool in design.pools:
        cell = cell_id(design, pool)
        grid = tuple(grid_id(design, pool, wd) for wd in design.grids[pool])
        runs += [DataLimitedRun(run_id, "train", design.depth, pool, "grid", seed=design.seeds[0], weight_decay=wd)
                 for run_id, wd in zip(grid, design.grids[pool])]
        alone = tuple(f"{cell}-alone-s{seed}" for seed in design.seeds)
        runs.append(DataLimitedRun(alone[0], "link", design.depth, pool, "alone", seed=design.seeds[0], needs=grid))
        runs += [DataLimitedRun(run_id, "train", design.depth, pool, "alone", seed=seed, needs=grid)
                 for run_id, seed in zip(alone[1:], design.seeds[1:])]
        previous = alone[0]
        for g in range(1, design.generations + 1):
            runs.append(DataLimitedRun(f"{cell}-gen{g}", "distill", design.depth, pool, "chain", teachers=(previous,),
                                       generation=g, needs=grid + (previous,)))
            previous = f"{cell}-gen{g}"
        runs.append(DataLimitedRun(f"{cell}-larger", "train", design.larger_depth, pool, "larger", needs=grid))
        runs.append(DataLimitedRun(f"{cell}-from-larger", "distill", design.depth, pool, "student-of-larger",
                                   teachers=(f"{cell}-larger",), needs=grid + (f"{cell}-larger",)))
        runs.append(DataLimitedRun(f"{cell}-ensemble{len(alone)}", "distill", design.depth, pool, "ensemble",
                                   teachers=alone, needs=grid + alone))
    return sorted(runs, key=lambda run: run.role != "grid")  # stable: the order within each part is kept


def read_result(run_dir: Path) -> dict | None:
    """A finished run's result.json, or None."""
    import json

    path = run_dir / "result.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@dataclass(frozen=True)
class WeightDecayChoice:
    """The grid's losses (nats/token) per weight decay, its best value, and whether the best lies inside
    the grid (an edge could hide a better value beyond it)."""

    losses: dict[float, float]
    best: float
    inside: bool


def best_weight_decay(root: Path, design: DataLimitedDesign, pool: str) -> WeightDecayChoice:
    """The weight decay of the pool's grid's lowest validation loss (every grid run finished)."""
    grid = design.grids[pool]
    losses = {wd: read_result(root / grid_id(design, pool, wd))["val_loss"] for wd in grid}
    best = min(losses, key=lambda wd: losses[wd])
    return WeightDecayChoice(losses, best, min(grid) < best < max(grid))


def link_best(root: Path, run: DataLimitedRun, design: DataLimitedDesign) -> float:
    """Make `run` (the pool's seed-0 run alone) a link to the best run of its pool's grid; its weight decay."""
    best = best_weight_decay(root, design, run.pool).best
    link = root / run.run_id
    if link.is_symlink():
        link.unlink()
    link.symlink_to(grid_id(design, run.pool, best), target_is_directory=True)
    return best


def run_args(run: DataLimitedRun, root: Path, data: str, design: DataLimitedDesign) -> tuple[str, ...]:
    """The `distillscale` command line of `run` (the grid's best weight decay once it has finished)."""
    wd = run.weight_decay if run.weight_decay is not None else best_weight_decay(root, design, run.pool).best
    args = [run.command, "--data", data, "--n-layers", str(run.depth), "--unique-tokens", run.pool,
            "--weight-decay", f"{wd:g}", "--seed", str(run.seed), "--aspect-ratio", str(design.aspect_ratio),
            "--head-dim", str(design.head_dim), "--seq-len", str(design.seq_len), "--batch-size",
            str(design.batch_size), "--tokens", design.tokens, "--lr", f"{design.lr:g}", "--schedule",
            design.schedule, "--eval-tokens", design.eval_tokens, "--eval-every", "0", "--save-every",
            str(design.save_every), "--out", str(root / run.run_id)]
    if run.command == "train":
        return (*args, "--vocab-size", str(design.vocab_size))
    args += ["--config", str(root / SAME_POOL_CONFIG)]  # the student takes its teachers' tokenizer and pool
    for teacher in run.teachers:
        args += ["--teacher", str(root / teacher)]
    return tuple(args)


def run_plan(runs: list[DataLimitedRun], root: Path, data: str, design: DataLimitedDesign, workers: int,
             progress: Callable[[str], None] = lambda message: None) -> dict[str, str]:
    """Run every run of `runs` without a result.json in `root`, `workers` at a time, each once the
    runs it needs have finished (`run_graph`); returns each run's status: completed (now or before),
    failed, or blocked (a run it needs failed)."""
    from distillscale.sweeps.executors import Job
    from distillscale.sweeps.run_graph import GraphRun, run_graph

    (root / SAME_POOL_CONFIG).write_text(SAME_POOL, encoding="utf-8")
    by_id = {run.run_id: run for run in runs}

    def start(run_id: str) -> Job | str:
        run = by_id[run_id]
        if run.command == "link":
            return f"the best of its pool's grid, weight decay {link_best(root, run, design):g}"
        return Job(run_args(run, root, data, design), root / f"{run_id}.log", dict(THREADS))

    def finished(run_id: str) -> str:
        return f", validation loss {read_result(root / run_id)['val_loss']:.4f} nats/token"

    return run_graph([GraphRun(run.run_id, run.needs) for run in runs], lambda run_id: _completed(root / run_id),
                     start, workers, progress, finished)


def _completed(run_dir: Path) -> bool:
    result = read_result(run_dir)
    return result is not None and result.get("status", "completed") == "completed"


def teacher_split_tokens(data: str, design: DataLimitedDesign) -> int:
    """The unique tokens of the corpus's teacher split as a run of the design counts them (the corpus
    prepared now, in the runs' tokenizer, as their first run would)."""
    from distillscale.data import prepare_data
    from distillscale.data.repetition import epoch_tokens
    from distillscale.training.config import TrainConfig

    config = TrainConfig.model_validate({"data": data, "vocab_size": design.vocab_size, "seq_len": design.seq_len,
                                         "n_layers": design.depth, "tokens": design.tokens,
                                         "out": "."})
    prepared = prepare_data(config.data_config())
    return epoch_tokens(prepared.manifest["splits"]["teacher"]["tokens"], design.seq_len)


def check_corpus_size(data: str, design: DataLimitedDesign) -> None:
    """Refuse, in one line, a corpus whose teacher split holds fewer unique tokens than the largest pool."""
    need = max(design.count(pool) for pool in design.pools)
    have = teacher_split_tokens(data, design)
    if have < need:
        raise UserError(f"--data {data}: its teacher split holds {have:,} tokens of the {design.vocab_size}-id "
                        f"tokenizer, fewer than the {need:,} unique tokens of the 1-epoch pool: give a corpus at "
                        f"least {need / have:.2g}x as large (its teacher split must hold {need:,} tokens)")
