"""Distillation when data is the limit, measured at micro scale where its effects stand clear of seed
noise: models large against a fixed pool of unique tokens read for many epochs, each baseline
regularised as the regime's practitioners do, chains of six generations, ensembles of 2, 4 and 8 with
their own loss and their students, and a larger teacher on the same pool.

The design (`regime`), per corpus (`plan` lists it; 163 trainings, 652 on 4 corpora):

- Students of depth 2 and 3 at aspect ratio 24: 55,632 and 187,272 non-embedding parameters; vocabulary
  512, windows of 128 tokens, batches of 4, every run 256K tokens (500 steps, WSD, peak lr 0.003), the
  loss measured on 64K tokens of the validation split; one torch thread per run, `--workers` at once.
- Pools of the teacher split, every run of a cell reading the same one: 4K (3,968 unique tokens, 64.5
  epochs; 14.0 and 47.2 parameters per unique token), 16K (16 epochs; 3.5 and 11.8) and 256K (1 epoch:
  fresh data, where the law's F is measured and distillation should not pay). A cell is a corpus, a
  size and a pool.
- Regularisation tuned per cell first (trained alone, seed 0): weight decay at dropout 0 on a ladder of
  factor 2 (4K: 0.05-0.4; 16K: 0.0125-0.1) or 10 (256K: 1e-4-1e-2), extended once by a step past the end
  where the best lies; on repeated pools refined half a step (x/÷ sqrt 2) around the best, then dropout
  0.1 and 0.2 at that decay. Every other run of the cell, students included, takes the cell's best
  (weight decay, dropout); `collect` and `summary` say when it lies at a grid's end.
- Trained alone: seeds 1-8 on repeated pools, 1-3 on the fresh one, at the best setting (the tuning
  runs are not among them: the baseline's mean has no winner's curse); their mean and standard
  deviation are each cell's reference.
- Self-distillation: two chains of 6 generations per repeated cell (`distill --generations 6 --split
  teacher`, from seed 1 and from seed 2 alone), one of 2 generations on the fresh pool.
- Ensembles of seeds 1..k alone, k = 2, 4, 8 (2 on the fresh pool), each distilled into one student
  (`distill --teacher` k times). The ensemble's own loss is its mixture's on the validation split, which
  `distill` measures before training on the windows the student is measured on (result.json:
  teacher.teacher_val_loss, each member's beside it).
- A larger teacher on the same pool, one layer deeper, and its student: for depth 2, depth 3's seed-1
  run alone (3.4x its parameters, tuned on the pool); for depth 3, depth 4 (442K, 2.4x) trained at 0.5, 1
  and 2 times the cell's best weight decay (at its best dropout), the best of the three.

Why these sizes (pilot runs on doc-en, the same settings and data format 3; losses in nats/token):

- The regime needs many epochs more than many parameters per token: at 64 epochs (4K pool, weight decay
  0.1) a same-size student beat the model trained alone by 2.7% at depth 2 (4.598 and 4.605 for two seeds
  -> 4.479) and 3.3% at depth 3 (4.635 -> 4.480); at 32 epochs (8K pool) it lost 0.5% at both (depth 2:
  4.262 -> 4.286; depth 3, 23.5 parameters per unique token: 4.285 -> 4.307). Hence 4K, where the regime
  shows, and 16K, where the first generations of bench/data/data_limited_runs.json moved by -1.8% to
  +0.1%.
- Seed noise there is small: 0.004 (0.1%) over 3 seeds at depth 3 and 8K, 0.005 over 2 at depth 2 and
  4K, so 2.7% is about 25 seed sds; the 4K pools of data_limited_runs.json reached 0.054 on stdlib,
  hence 8 seeds.
- The loss is steep in weight decay (depth 2, 4K, dropout 0: 0.03 -> 5.762, 0.05 -> 5.193, 0.1 -> 4.598,
  0.2 -> 4.969, 0.3 -> 5.067): a factor-2 ladder can miss the best by more than the effects, hence the
  refinement; dropout helps at 64 epochs (at 0.1: 0 -> 4.598, 0.1 -> 4.538, 0.2 -> 4.554). With dropout 0.1
  in every run the student still gains, less, and the seeds spread more: alone 4.538 and 4.569 for two
  seeds, the first generation 4.483 (-1.6% against their mean).
- Weight decay of 1 and more: `--weight-decay` is the engine's per-step shrink at peak lr (each step
  multiplies decayed weights by 1 - wd x the schedule's factor), so 1 zeroes them at every step at peak
  and more flips their sign. Measured at depth 3 and 8K: 0.01 -> 5.521, 0.03 -> 4.285, 0.1 -> 4.284, 0.3
  -> 5.316, 1 -> 5.725, 3 diverged at step 91. The practitioners' values (up to about 30x the usual 0.1,
  so about 3) are PyTorch AdamW coefficients, which multiply the lr: at lr 0.003 a coefficient of 3 is
  0.009 per step here; these ladders reach 0.4 (0.8 extended), 40-90x beyond it.
- An ensemble of 3 (depth 3, 8K) gained 1.4% (4.224 against its members' 4.285), its student +0.1%.

Time (`time` on doc-en: one run of each kind with 1 and with 2 at once; each run's CPU seconds with one
worker): training alone 19.8 / 26.6 / 42.4 CPU s at depth 2 / 3 / 4, a student of a same-size teacher
21.0 / 29.5, of a mixture of 8 50.7 / 87.9 (a teacher's forward pass: 4.2 / 8.3 s per student run). The
design is 17,700 CPU s on 4 corpora (4.9 h of one core: the 4K and 16K pools 1.04 h each on 2 cores, the
256K pool 0.38 h): about 2.5 h with 2 workers on 2 free cores. Timed while the machine ran other work
(load average 5-6 on its 2 cores), a run took 1.8-2.0x its CPU time with one worker, and 2 workers gave
1.3x one worker's throughput: 7.9 h with 2 workers then (9.1 h with 1). The runs of data_limited_runs.json
trained twice as slowly as one idle core (depth 2, 16K: a median of 15.4 s of training with 2 workers,
7.6 s alone on an idle machine here), 2 workers giving about one free core: about 4.9 h. A 5th corpus
adds a quarter; run `time` on the measuring machine first.

The runs of bench/data/data_limited_runs.json (one size, pools of 1, 16 and 64 epochs, 4 generations,
ensembles of 2 and 3) were made by an earlier design of this script (`git show
6f2acd1:bench/distillation/data_limited.py`); this design supersedes it.

Usage:
    python bench/distillation/data_limited.py run CORPUS [CORPUS ...] --store /work/dl_regime [--workers 2]
    python bench/distillation/data_limited.py collect --store /work/dl_regime [--out FILE.json]
    python bench/distillation/data_limited.py summary [bench/data/data_limited_regime.json]
    python bench/distillation/data_limited.py time CORPUS --store /tmp/dl_timing [--workers 1,2]
    python bench/distillation/data_limited.py plan [--design regime]

A CORPUS is a directory of text (its name names it in the store) or NAME=SOURCE (e.g.
stdlib=builtin:stdlib). `run` trains every run of the design not yet finished (run again, it resumes:
finished runs are skipped, an interrupted one resumes from its checkpoint); `--design smoke` is the same
design on tiny models and 4K-token runs (minutes in all), to try the machinery. `collect` writes every
finished run's numbers, the cells' seed spread and the commands to a JSON file; `summary` prints each
cell's runs against its runs trained alone, in % and in seed standard deviations. `time` trains one
run of each kind on one corpus, with each number of concurrent runs, and prints the design's estimated
wall time from them (what the estimates above came from; run it on the machine that will measure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from distillscale.model.config import ModelConfig
from distillscale.sweeps.executors import Job
from distillscale.sweeps.run_graph import COMPLETED, GraphRun, run_graph
from distillscale.units import Quantity, parse_quantity

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SQRT2 = math.sqrt(2.0)
# How the corpora of the measurement were made (from what a Debian machine holds; stdlib is the engine's own).
MADE_BY = ["python bench/demo/demo_corpora.py build doc-en man-en c-include --root /work/corpora --cap 4M"]
RUN_COMMAND = ("python bench/distillation/data_limited.py run /work/corpora/doc-en /work/corpora/man-en "
               "stdlib=builtin:stdlib /work/corpora/c-include --store /work/dl_regime --workers 2")
DEFAULT_OUT = Path(__file__).parents[1] / "data" / "data_limited_regime.json"


# ---------------------------------------------------------------------------------------------- design

@dataclass(frozen=True)
class PoolPlan:
    """What is run on one pool of unique tokens, per student size: the weight decays tried at dropout 0
    (`ladder`, extended once past the end where the best lies), a refinement at half a ladder step on
    each side of the best (`refine`), the dropouts tried at the best weight decay, the seeds trained
    alone at the best setting, `chains` self-distillation chains of `generations` (chain c distilled
    from the run alone of the c-th seed), and the ensembles of the first k seeds alone (`members`),
    each distilled into one student."""

    pool: str
    ladder: tuple[float, ...]
    refine: bool
    dropouts: tuple[float, ...]
    seeds: tuple[int, ...]
    generations: int
    chains: int
    members: tuple[int, ...]


@dataclass(frozen=True)
class Design:
    """Student sizes (depths at aspect ratio 24), the pools, and every run's fixed settings. A student's
    larger teacher is one layer deeper: the next student size's first seed alone when that size is in
    the design, else a model of its own tuned on `larger_factors` of the student cell's best weight
    decay (at its best dropout)."""

    depths: tuple[int, ...]
    pools: tuple[PoolPlan, ...]
    larger_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    tokens: str = "256K"
    max_bytes: str = "4M"
    aspect_ratio: int = 24
    head_dim: int = 24
    seq_len: int = 128
    batch_size: int = 4
    lr: float = 0.003
    schedule: str = "wsd"
    vocab_size: int = 512
    eval_tokens: str = "64K"
    save_every: int = 250

    def count(self, quantity: str) -> int:
        return int(parse_quantity(quantity, "tokens", kind=Quantity.TOKENS))

    def unique_tokens(self, pool: str) -> int:
        """The pool's unique tokens as the engine takes them: whole windows of seq_len."""
        return self.count(pool) // self.seq_len * self.seq_len

    def epochs(self, pool: str) -> float:
        return self.count(self.tokens) / self.unique_tokens(pool)

    def params(self, depth: int) -> int:
        """Non-embedding parameters of a model of `depth` layers."""
        return ModelConfig(n_layers=depth, aspect_ratio=self.aspect_ratio, head_dim=self.head_dim,
                           vocab_size=self.vocab_size, max_seq_len=self.seq_len).non_embedding_params

    def pool_plan(self, pool: str) -> PoolPlan:
        return next(plan for plan in self.pools if plan.pool == pool)


REPEATED_SEEDS = tuple(range(1, 9))
REGIME = Design(
    depths=(2, 3),
    pools=(PoolPlan("4K", (0.05, 0.1, 0.2, 0.4), True, (0.1, 0.2), REPEATED_SEEDS, 6, 2, (2, 4, 8)),
           PoolPlan("256K", (1e-4, 1e-3, 1e-2), False, (), (1, 2, 3), 2, 1, (2,)),
           PoolPlan("16K", (0.0125, 0.025, 0.05, 0.1), True, (0.1, 0.2), REPEATED_SEEDS, 6, 2, (2, 4, 8))))
# The same parts on tiny models and 4K-token runs: the machinery end to end in minutes, numbers meaningless.
SMOKE = Design(
    depths=(1, 2),
    pools=(PoolPlan("256", (0.05, 0.1, 0.2), True, (0.1,), (1, 2, 3, 4), 3, 1, (2, 4)),
           PoolPlan("4K", (1e-3, 1e-2), False, (), (1, 2), 1, 1, (2,))),
    tokens="4K", aspect_ratio=16, head_dim=16, seq_len=32, batch_size=4, vocab_size=300, eval_tokens="4K",
    save_every=50)
DESIGNS = {"regime": REGIME, "smoke": SMOKE}


@dataclass(frozen=True)
class Run:
    """One run of the design, a run directory STORE/CORPUS/run_id (a chain's: one per generation inside).

    `command`: train, distill, chain (`distill --generations`) or link (one of `candidates`, the best
    when its needs have finished: a larger teacher). `step` says how its weight decay and dropout are
    found when it starts: ladder (its own `weight_decay`), extension (past the ladder's end where the
    best lies, or not needed), refine (the best so far times `factor`), dropout (the best weight decay
    at `dropout`), best (its cell's best setting), larger (its cell's best weight decay times `factor`,
    its best dropout). `cell_depth` is the student size of its cell (a larger teacher is deeper)."""

    run_id: str
    command: str
    role: str                         # grid, alone, chain, ensemble, larger-grid, larger, student-of-larger
    depth: int
    cell_depth: int
    pool: str
    step: str
    seed: int = 0
    weight_decay: float | None = None
    dropout: float = 0.0
    factor: float = 1.0
    teachers: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()  # a link's
    generations: int | None = None    # a chain's length
    chain: int | None = None          # which chain of the cell
    members: int | None = None        # an ensemble's size
    needs: tuple[str, ...] = ()

    @property
    def cell(self) -> str:
        return cell_id(self.cell_depth, self.pool)


def cell_id(depth: int, pool: str) -> str:
    return f"d{depth}-u{pool}"


def plan_runs(design: Design) -> list[Run]:
    """Every run of the design for one corpus, in the order they are wanted: pool by pool in the design's
    order (the most repeated first, then the fresh pool every fit measures penalties against, then the
    next: a stopped measurement leaves whole pools that fit), size by size, each cell's tuning first."""
    runs: list[Run] = []
    for plan in design.pools:
        for depth in design.depths:
            runs += _cell_runs(design, plan, depth)
    return runs


def tuning_ids(plan: PoolPlan, depth: int) -> tuple[str, ...]:
    """The runs that tune a cell (trained alone, seed 0): the ladder, its extension, the refinement,
    the dropouts."""
    cell = cell_id(depth, plan.pool)
    ids = [f"{cell}-wd{wd:g}" for wd in plan.ladder] + [f"{cell}-wd-ext"]
    ids += [f"{cell}-wd-lo", f"{cell}-wd-hi"] if plan.refine else []
    return tuple(ids + [f"{cell}-do{p:g}" for p in plan.dropouts])


def _cell_runs(design: Design, plan: PoolPlan, depth: int) -> list[Run]:
    cell, pool = cell_id(depth, plan.pool), plan.pool
    ladder = tuple(f"{cell}-wd{wd:g}" for wd in plan.ladder)
    runs = [Run(run_id, "train", "grid", depth, depth, pool, "ladder", weight_decay=wd)
            for run_id, wd in zip(ladder, plan.ladder)]
    runs.append(Run(f"{cell}-wd-ext", "train", "grid", depth, depth, pool, "extension", needs=ladder))
    so_far = ladder + (f"{cell}-wd-ext",)
    if plan.refine:
        runs += [Run(f"{cell}-wd-lo", "train", "grid", depth, depth, pool, "refine", factor=1 / SQRT2, needs=so_far),
                 Run(f"{cell}-wd-hi", "train", "grid", depth, depth, pool, "refine", factor=SQRT2, needs=so_far)]
        so_far += (f"{cell}-wd-lo", f"{cell}-wd-hi")
    runs += [Run(f"{cell}-do{p:g}", "train", "grid", depth, depth, pool, "dropout", dropout=p, needs=so_far)
             for p in plan.dropouts]
    tuning = tuning_ids(plan, depth)
    alone = tuple(f"{cell}-alone-s{seed}" for seed in plan.seeds)
    runs += [Run(run_id, "train", "alone", depth, depth, pool, "best", seed=seed, needs=tuning)
             for run_id, seed in zip(alone, plan.seeds)]
    runs += [Run(f"{cell}-chain{c}", "chain", "chain", depth, depth, pool, "best", teachers=(alone[c - 1],),
                 generations=plan.generations, chain=c, needs=tuning + (alone[c - 1],))
             for c in range(1, plan.chains + 1)]
    runs += [Run(f"{cell}-ensemble{k}", "distill", "ensemble", depth, depth, pool, "best", teachers=alone[:k],
                 members=k, needs=tuning + alone[:k]) for k in plan.members]
    larger = f"{cell}-larger"
    if depth + 1 in design.depths:  # the next size's first seed alone: tuned on the same pool
        candidates = (f"{cell_id(depth + 1, pool)}-alone-s{plan.seeds[0]}",)
    else:
        candidates = tuple(f"{larger}-x{f:g}" for f in design.larger_factors)
        runs += [Run(run_id, "train", "larger-grid", depth + 1, depth, pool, "larger", factor=f, needs=tuning)
                 for run_id, f in zip(candidates, design.larger_factors)]
    runs.append(Run(larger, "link", "larger", depth + 1, depth, pool, "best", candidates=candidates, needs=candidates))
    runs.append(Run(f"{cell}-from-larger", "distill", "student-of-larger", depth, depth, pool, "best",
                    teachers=(larger,), needs=tuning + (larger,)))
    return runs


# ------------------------------------------------------------------------------ reading a store

def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_dirs(run: Run, root: Path) -> list[Path]:
    """The run directories `run` makes: one, or a chain's generations."""
    if run.command == "chain":
        return [root / run.run_id / f"generation-{g}" for g in range(1, run.generations + 1)]
    return [root / run.run_id]


def skipped_path(root: Path, run: Run) -> Path:
    return root / f"{run.run_id}.skipped"


def is_done(run: Run, root: Path) -> bool:
    """Finished: every run directory holds a result.json (a diverged run's too: it is not run again), or
    the run was found not to be needed."""
    return skipped_path(root, run).exists() or all((path / "result.json").is_file() for path in run_dirs(run, root))


def setting_of(run_dir: Path) -> tuple[float, float]:
    """The weight decay and dropout a finished run was trained with."""
    config = read_json(run_dir / "config.json")["config"]
    return config["weight_decay"], config.get("dropout") or 0.0


def val_loss(run_dir: Path) -> float | None:
    """A run's validation loss (nats/token); None when it has none (not finished, or diverged)."""
    result = read_json(run_dir / "result.json")
    return None if result is None else result.get("val_loss")


@dataclass(frozen=True)
class Trial:
    run_id: str
    weight_decay: float
    dropout: float
    loss: float | None                # None: diverged


def trials(root: Path, run_ids: tuple[str, ...]) -> list[Trial]:
    """The finished tuning runs among `run_ids` (a skipped extension is none)."""
    return [Trial(run_id, *setting_of(root / run_id), val_loss(root / run_id)) for run_id in run_ids
            if (root / run_id / "result.json").is_file()]


def best(found: list[Trial]) -> Trial:
    """The trial of the lowest loss (a diverged one never); refused when every one diverged."""
    finite = [trial for trial in found if trial.loss is not None]
    if not finite:
        raise ValueError(f"every tuning run diverged ({', '.join(t.run_id for t in found)}): no setting to take")
    return min(finite, key=lambda trial: trial.loss)


def resolve(run: Run, root: Path, design: Design) -> tuple[float, float] | None:
    """The weight decay and dropout `run` trains with, from the runs it needs (None: an extension that
    is not needed, the best lying inside the ladder)."""
    plan = design.pool_plan(run.pool)
    if run.step == "ladder":
        return run.weight_decay, 0.0
    tuning = tuning_ids(plan, run.cell_depth)
    if run.step == "extension":
        top = best(trials(root, tuning[:len(plan.ladder)]))
        ladder = sorted(plan.ladder)
        ratio = ladder[-1] / ladder[-2] if len(ladder) > 1 else 2.0
        if top.weight_decay == ladder[-1]:
            return ladder[-1] * ratio, 0.0
        if top.weight_decay == ladder[0]:
            return ladder[0] / ratio, 0.0
        return None
    at_zero = [trial for trial in trials(root, tuning) if trial.dropout == 0.0]
    if run.step == "refine":
        return best(at_zero).weight_decay * run.factor, 0.0
    if run.step == "dropout":
        return best(at_zero).weight_decay, run.dropout
    chosen = best(trials(root, tuning))
    if run.step == "larger":
        return chosen.weight_decay * run.factor, chosen.dropout
    return chosen.weight_decay, chosen.dropout


def link_target(run: Run, root: Path) -> str:
    """The run a link stands for: its one candidate, or the best of them."""
    if len(run.candidates) == 1:
        return run.candidates[0]
    return best(trials(root, run.candidates)).run_id


def run_args(run: Run, root: Path, source: str, design: Design, setting: tuple[float, float]) -> tuple[str, ...]:
    """The `distillscale` command line of `run` at `setting` (weight decay, dropout)."""
    wd, dropout = setting
    command = "distill" if run.command == "chain" else run.command
    args = [command, "--data", source, "--max-bytes", design.max_bytes, "--n-layers", str(run.depth),
            "--unique-tokens", run.pool, "--weight-decay", f"{wd:.6g}", "--dropout", f"{dropout:g}",
            "--seed", str(run.seed), "--aspect-ratio", str(design.aspect_ratio), "--head-dim", str(design.head_dim),
            "--seq-len", str(design.seq_len), "--batch-size", str(design.batch_size), "--tokens", design.tokens,
            "--lr", f"{design.lr:g}", "--schedule", design.schedule, "--eval-tokens", design.eval_tokens,
            "--eval-every", "0", "--save-every", str(design.save_every), "--out", str(root / run.run_id)]
    if command == "train":
        return (*args, "--vocab-size", str(design.vocab_size))
    args += ["--split", "teacher"]  # the student reads its teachers' half and, with --unique-tokens, their pool
    for teacher in run.teachers:
        args += ["--teacher", str(root / teacher)]
    if run.command == "chain":
        args += ["--generations", str(run.generations)]
    return tuple(args)


# ---------------------------------------------------------------------------------------------- run

@dataclass(frozen=True)
class Corpus:
    name: str
    source: str                       # a path, or a built-in corpus (builtin:stdlib)


def parse_corpus(text: str) -> Corpus:
    """A corpus argument: NAME=SOURCE, or a path whose last part names it."""
    if "=" in text:
        name, source = text.split("=", 1)
        return Corpus(name, source)
    path = Path(text).absolute()
    return Corpus(path.name, str(path))


def run_design(corpora: list[Corpus], store: Path, design: Design, workers: int) -> dict[str, str]:
    """Every corpus's runs in one pool of `workers` worker processes: each pool level on every corpus
    before the next level, so that a stopped measurement leaves whole pools on every corpus."""
    planned = plan_runs(design)
    runs: dict[str, tuple[Corpus, Run]] = {}
    for plan in design.pools:
        for corpus in corpora:
            (store / corpus.name).mkdir(parents=True, exist_ok=True)
            runs |= {f"{corpus.name}/{run.run_id}": (corpus, run) for run in planned if run.pool == plan.pool}
    root_of = {key: store / corpus.name for key, (corpus, _) in runs.items()}

    def start(key: str) -> Job | str:
        corpus, run = runs[key]
        root = root_of[key]
        if run.command == "link":
            target = link_target(run, root)
            link = root / run.run_id
            if link.is_symlink():
                link.unlink()
            link.symlink_to(target, target_is_directory=True)
            return f"-> {target}"
        setting = resolve(run, root, design)
        if setting is None:
            skipped_path(root, run).write_text("the best weight decay lies inside the ladder: no extension\n")
            return "not needed (the best weight decay lies inside the ladder)"
        args = run_args(run, root, corpus.source, design, setting)
        write_json(root / f"{run.run_id}.command.json", {"argv": ["distillscale", *args]})
        return Job(args, root / f"{run.run_id}.log", dict(THREADS))

    def finished(key: str) -> str:
        _, run = runs[key]
        losses = [val_loss(path) for path in run_dirs(run, root_of[key])]
        return ", validation loss " + " ".join("diverged" if loss is None else f"{loss:.4f}" for loss in losses)

    graph = [GraphRun(key, tuple(f"{key.split('/')[0]}/{need}" for need in run.needs))
             for key, (_, run) in runs.items()]
    return run_graph(graph, lambda key: is_done(runs[key][1], root_of[key]), start, workers,
                     lambda line: print(line, flush=True), finished)


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


DESIGN_FILE = "design.json"


def store_design(store: Path, name: str) -> Design:
    """The design a store is measured with: named in its design.json, written by its first `run`; a store
    of another design is refused."""
    recorded = read_json(store / DESIGN_FILE)
    if recorded is None:
        store.mkdir(parents=True, exist_ok=True)
        write_json(store / DESIGN_FILE, {"design": name, "settings": asdict(DESIGNS[name])})
    elif recorded["design"] != name:
        raise SystemExit(f"--store {store} holds the {recorded['design']} design's runs, not the {name} design's: "
                         f"give --design {recorded['design']} or another --store")
    return DESIGNS[name]


def design_of(store: Path) -> tuple[str, Design]:
    recorded = read_json(store / DESIGN_FILE)
    if recorded is None:
        raise SystemExit(f"--store {store} holds no {DESIGN_FILE}: it is not a store `run` made")
    return recorded["design"], DESIGNS[recorded["design"]]


# ------------------------------------------------------------------------------------------ collect

def collect(store: Path, out: Path, argv: list[str]) -> dict:
    """Every finished run of every corpus in `store` (records), each cell's tuning and its runs trained
    alone (cells), and the commands, written to `out` (a temporary file renamed into place). Run again
    as more runs finish, it reads them too."""
    name, design = design_of(store)
    records, cells = [], {}
    for root in sorted(path for path in store.iterdir() if path.is_dir()):
        for run in plan_runs(design):
            records += run_records(root, run, design)
        for plan in design.pools:
            for depth in design.depths:
                cells[f"{root.name}/{cell_id(depth, plan.pool)}"] = cell_record(root, design, plan, depth)
    payload = {"command": RUN_COMMAND,
               "made_by": [*MADE_BY, "python bench/distillation/data_limited.py " + " ".join(argv)],
               "design": __doc__.split("Usage:")[0].strip(), "design_name": name, "settings": asdict(design),
               "cells": {key: cell for key, cell in cells.items() if cell["alone"]["n"] or cell["tuning"]},
               "runs": records}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, payload)
    print(f"{len(records)} runs, {len(payload['cells'])} cells -> {out}")
    return payload


def run_records(root: Path, run: Run, design: Design) -> list[dict]:
    """The records of `run`'s finished run directories (a chain's generations one each)."""
    records = []
    for g, path in enumerate(run_dirs(run, root), start=1):
        result = read_json(path / "result.json")
        if result is None:
            continue
        record = run_record(root, run, path, result, design)
        if run.command == "chain":
            record |= {"run_id": f"{run.run_id}/generation-{g}", "generation": g,
                       "teachers": [run.teachers[0] if g == 1 else f"{run.run_id}/generation-{g - 1}"]}
        records.append(record)
    return records


def run_record(root: Path, run: Run, path: Path, result: dict, design: Design) -> dict:
    weight_decay, dropout = setting_of(path)
    teacher = result.get("teacher") or {}
    unique = result.get("unique_tokens") or design.unique_tokens(run.pool)
    params = result.get("non_embedding_params")
    command = read_json(root / f"{run.run_id}.command.json")
    if run.command == "link":
        command = read_json(root / f"{Path(os.readlink(root / run.run_id)).name}.command.json")
    return {
        "corpus": root.name, "run_id": run.run_id, "role": run.role, "cell": run.cell, "step": run.step,
        "depth": run.depth, "pool": run.pool, "unique_tokens": unique, "tokens": result.get("tokens"),
        "epochs": result.get("epochs"), "non_embedding_params": params,
        "params_per_unique_token": params / unique if params and unique else None,
        "seed": run.seed, "weight_decay": weight_decay, "dropout": dropout,
        "cell_grid": {f"{t.weight_decay:.6g}": t.loss for t in trials(root, tuning_ids(design.pool_plan(run.pool),
                                                                                        run.cell_depth))
                      if t.dropout == 0.0},
        "generation": None, "chain": run.chain, "members": run.members,
        "teachers": list(run.teachers) if run.command != "link" else [Path(os.readlink(root / run.run_id)).name],
        "val_loss": result.get("val_loss"), "teacher_val_loss": teacher.get("teacher_val_loss"),
        "teacher_params": teacher.get("non_embedding_params"),
        "member_val_losses": [member.get("teacher_val_loss") for member in teacher.get("teachers", [])] or None,
        "status": result.get("status", "completed"),
        "train_seconds": result.get("train_seconds"), "wall_seconds": result.get("wall_seconds"),
        "command": None if command is None else command["argv"],
    }


def cell_record(root: Path, design: Design, plan: PoolPlan, depth: int) -> dict:
    """A cell's tuning (each trial, the best, whether it lies at a grid's end) and its runs trained
    alone: their losses, mean and seed standard deviation (nats/token)."""
    found = trials(root, tuning_ids(plan, depth))
    finite = [t for t in found if t.loss is not None]
    chosen = min(finite, key=lambda t: t.loss) if finite else None
    at_zero = sorted({t.weight_decay for t in found if t.dropout == 0.0})
    losses = [loss for seed in plan.seeds if (loss := val_loss(root / f"{cell_id(depth, plan.pool)}-alone-s{seed}"))
              is not None]
    extension = ("not needed" if (root / f"{cell_id(depth, plan.pool)}-wd-ext.skipped").exists() else
                 "trained" if (root / f"{cell_id(depth, plan.pool)}-wd-ext" / "result.json").is_file() else "pending")
    edge = None  # the best weight decay is the lowest or highest tried (at any dropout)
    if chosen is not None and len(at_zero) > 1 and chosen.weight_decay in (at_zero[0], at_zero[-1]):
        edge = "low" if chosen.weight_decay == at_zero[0] else "high"
    return {
        "depth": depth, "pool": plan.pool, "unique_tokens": design.unique_tokens(plan.pool),
        "epochs": design.epochs(plan.pool), "params": design.params(depth),
        "params_per_unique_token": design.params(depth) / design.unique_tokens(plan.pool),
        "tuning": [asdict(t) for t in found], "extension": extension,
        "best_weight_decay": chosen and chosen.weight_decay, "best_dropout": chosen and chosen.dropout,
        "weight_decay_at_grid_end": edge,
        "dropout_at_grid_end": bool(chosen and plan.dropouts and chosen.dropout == max(plan.dropouts)),
        "alone": {"n": len(losses), "losses": losses, "mean": statistics.fmean(losses) if losses else None,
                  "sd": statistics.stdev(losses) if len(losses) > 1 else None},
    }


# ------------------------------------------------------------------------------------------ summary

def runs_by_cell(data: dict) -> dict[str, list[dict]]:
    """A collected file's runs by cell, keyed CORPUS/CELL as its `cells` are."""
    by_cell: dict[str, list[dict]] = {}
    for record in data["runs"]:
        by_cell.setdefault(f"{record['corpus']}/{record['cell']}", []).append(record)
    return by_cell


def summary(data: dict) -> list[str]:
    """Per cell: the runs trained alone (mean +- seed sd), then each generation, ensemble, ensemble's
    student and the larger teacher's student as its change against that mean, in % and in seed sds (*:
    beyond 2); last, the cells whose gains (a lower loss) exceed 2 seed sds, and what gained."""
    lines, gains = [], {}
    by_cell = runs_by_cell(data)
    for key, cell in data["cells"].items():
        alone = cell["alone"]
        end = cell["weight_decay_at_grid_end"]
        edge = [f"weight decay at the grid's {end} end"] if end else []
        edge += ["dropout at the grid's end"] if cell["dropout_at_grid_end"] else []
        lines.append(f"{key}: {cell['params_per_unique_token']:.1f} params/unique token, {cell['epochs']:.1f} epochs, "
                     f"weight decay {cell['best_weight_decay']}, dropout {cell['best_dropout']}"
                     + (f" ({'; '.join(edge)})" if edge else ""))
        if alone["mean"] is None:
            lines.append("  alone: no run finished")
            continue
        mean, sd = alone["mean"], alone["sd"]
        lines.append(f"  alone {mean:.4f} +- " + ("?" if sd is None else f"{sd:.4f}") +
                     f" nats/token ({alone['n']} seeds)")

        def change(loss: float | None, label: str, counts: bool = True) -> str:
            if loss is None:
                return "diverged"
            text = f"{100 * (loss - mean) / mean:+.2f}%"
            if not sd:
                return text
            sds = (loss - mean) / sd
            if counts and sds < -2:
                gains.setdefault(key, []).append(label)
            return text + f" ({sds:+.1f} sd{'*' if abs(sds) > 2 else ''})"

        runs = by_cell.get(key, [])
        for c in sorted({r["chain"] for r in runs if r["role"] == "chain"}):
            chain = sorted((r for r in runs if r["role"] == "chain" and r["chain"] == c), key=lambda r: r["generation"])
            lines.append(f"  chain {c}:")
            lines += [f"    g{r['generation']} " + change(r["val_loss"], f"c{c}g{r['generation']}") for r in chain]
        for r in sorted((r for r in runs if r["role"] == "ensemble"), key=lambda r: r["members"]):
            k = r["members"]
            lines.append(f"  ensemble of {k}: {change(r['teacher_val_loss'], f'ens{k}')}, its student "
                         f"{change(r['val_loss'], f'ens{k}-student')}")
        for r in (r for r in runs if r["role"] == "larger"):
            lines.append(f"  larger teacher ({r['non_embedding_params']:,} params): "
                         f"{change(r['val_loss'], 'larger', counts=False)}")
        for r in (r for r in runs if r["role"] == "student-of-larger"):
            lines.append(f"  its student: {change(r['val_loss'], 'from-larger')}")
    lines.append(f"cells whose gains exceed 2 seed sds: {len(gains)} of {len(data['cells'])}")
    lines += [f"  {key}: {', '.join(labels)}" for key, labels in gains.items()]
    return lines


def table(data: dict) -> list[str]:
    """The cells as one Markdown table: per corpus, size and pool the setting the tuning found, the runs
    trained alone (mean +- seed sd, seeds), and each kind of run's change against that mean in %: the
    first and last generation (the chains' mean), ensembles of k and their students, the larger teacher
    and its student; a "*" marks a change beyond 2 seed sds."""
    lines = ["| corpus | size, pool | epochs, params/unique token | decay, dropout | alone (+- sd, seeds) | gen 1 | "
             "last gen | ensembles (2, 4, 8) | their students | larger -> student |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by_cell = runs_by_cell(data)
    for key, cell in sorted(data["cells"].items()):
        alone, runs = cell["alone"], by_cell.get(key, [])
        if alone["mean"] is None:
            continue
        mean, sd = alone["mean"], alone["sd"] or 0.0

        def pct(losses: list[float | None]) -> str:
            losses = [loss for loss in losses if loss is not None]
            if not losses:
                return "-"
            loss = sum(losses) / len(losses)
            return f"{100 * (loss - mean) / mean:+.1f}%" + ("*" if sd and abs(loss - mean) > 2 * sd else "")

        chains = [r for r in runs if r["role"] == "chain"]
        last = max((r["generation"] for r in chains), default=None)
        ensembles = sorted((r for r in runs if r["role"] == "ensemble"), key=lambda r: r["members"])
        larger = [r["val_loss"] for r in runs if r["role"] == "larger"]
        student = [r["val_loss"] for r in runs if r["role"] == "student-of-larger"]
        corpus, cell_name = key.split("/")
        lines.append(
            f"| {corpus} | d{cell['depth']}, {cell['pool']} | {cell['epochs']:.0f}, {cell['params_per_unique_token']:.1f} | "
            f"{cell['best_weight_decay']:g}, {cell['best_dropout']:g} | {mean:.3f} (+-{sd:.3f}, {alone['n']}) | "
            f"{pct([r['val_loss'] for r in chains if r['generation'] == 1])} | "
            + (f"g{last} {pct([r['val_loss'] for r in chains if r['generation'] == last])}" if last else "-") + " | "
            + ", ".join(pct([r["teacher_val_loss"]]) for r in ensembles) + " | "
            + ", ".join(pct([r["val_loss"]]) for r in ensembles) + " | "
            + (f"{pct(larger)} -> {pct(student)}" if larger or student else "-") + " |")
    return lines


# ------------------------------------------------------------------------------------------- timing

SETUP_TOKENS = "16K"                  # the teachers of the timed mixtures: their training is not what is timed


def timing_runs(design: Design, prefix: str) -> list[Run]:
    """One run of each kind, at the most repeated pool: training alone at each size and one deeper,
    a student of a same-size teacher, a student of a mixture of 8 (every teacher a short run of setup)."""
    pool, runs = design.pools[0].pool, []
    for depth in (*design.depths, max(design.depths) + 1):
        runs.append(Run(f"{prefix}-train-d{depth}", "train", "timing", depth, depth, pool, "ladder", weight_decay=0.1,
                        dropout=0.1))
    for depth in design.depths:
        teachers = tuple(f"setup-d{depth}-s{seed}" for seed in range(1, 9))
        runs.append(Run(f"{prefix}-distill-d{depth}", "distill", "timing", depth, depth, pool, "ladder",
                        weight_decay=0.1, dropout=0.1, teachers=teachers[:1], needs=teachers[:1]))
        runs.append(Run(f"{prefix}-mixture8-d{depth}", "distill", "timing", depth, depth, pool, "ladder",
                        weight_decay=0.1, dropout=0.1, teachers=teachers, members=8, needs=teachers))
    return runs


def children_cpu() -> float:
    """CPU seconds of this process's children so far: the finished ones and the live ones (the workers)."""
    import resource

    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = total.ru_utime + total.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # ppid; then utime and stime are fields 14 and 15 of the line
            seconds += (int(fields[11]) + int(fields[12])) / tick
    return seconds


def time_kinds(corpus: Corpus, store: Path, design: Design, workers: list[int]) -> dict[int, dict[str, float]]:
    """Seconds of each timed run (from its start to its end, as the runner sees them) with each number
    of workers, and the phase's elapsed and CPU seconds (with one worker, each run's CPU seconds too:
    `cpu:` kinds); the setup's teachers first (not timed)."""
    root = store / corpus.name
    if root.exists():
        raise SystemExit(f"--store {store} already holds {corpus.name}: timing trains every run anew; "
                         "give a new --store")
    root.mkdir(parents=True)
    short = replace(design, tokens=SETUP_TOKENS)
    setup = [Run(f"setup-d{depth}-s{seed}", "train", "timing", depth, depth, design.pools[0].pool, "ladder",
                 seed=seed, weight_decay=0.1) for depth in design.depths for seed in range(1, 9)]
    seconds: dict[int, dict[str, float]] = {}
    for count, (runs, settings) in enumerate([(setup, short)] + [(timing_runs(design, f"w{w}"), design)
                                                                  for w in workers]):
        w = 1 if count == 0 else workers[count - 1]
        began: dict[str, tuple[float, float]] = {}
        took: dict[str, float] = {}
        by_id = {run.run_id: run for run in runs}

        def start(run_id: str) -> Job:
            began[run_id] = time.perf_counter(), children_cpu()
            run = by_id[run_id]
            return Job(run_args(run, root, corpus.source, settings, (run.weight_decay, run.dropout)),
                       root / f"{run_id}.log", dict(THREADS))

        def finished(run_id: str) -> str:
            took[run_id] = time.perf_counter() - began[run_id][0]
            if w == 1:  # the one worker's CPU: the run's
                took["cpu:" + run_id] = children_cpu() - began[run_id][1]
            cpu = f" ({took['cpu:' + run_id]:.1f} CPU s)" if w == 1 else ""
            return f" in {took[run_id]:.1f} s{cpu}, load {os.getloadavg()[0]:.1f}"

        t0, cpu0 = time.perf_counter(), children_cpu()
        status = run_graph([GraphRun(run.run_id, tuple(n for n in run.needs if n in by_id)) for run in runs],
                           lambda run_id: (root / run_id / "result.json").is_file(), start, w,
                           lambda line: print(line, flush=True), finished)
        if any(value != COMPLETED for value in status.values()):
            raise SystemExit(f"a timed run did not complete: see the logs in {root}")
        if count:
            seconds[w] = {run_id.replace(f"w{w}-", ""): value for run_id, value in took.items()}
            seconds[w] |= {"elapsed": time.perf_counter() - t0, "cpu": children_cpu() - cpu0}
    return seconds


def run_seconds(design: Design, kinds: dict[str, float]) -> dict[str, float]:
    """Each run's estimated seconds from the timed kinds: a chain is its generations' students; a student
    of k teachers pays k - 1 more teachers' forward passes (measured by the mixture of 8); a deeper
    teacher's forward pass costs what its training costs more."""
    deepest = max(design.depths) + 1
    train = {d: kinds[f"train-d{d}"] for d in (*design.depths, deepest)}
    student = {d: kinds[f"distill-d{d}"] for d in design.depths}
    forward = {d: (kinds[f"mixture8-d{d}"] - student[d]) / 7 for d in design.depths}
    forward[deepest] = forward[max(design.depths)] * train[deepest] / train[max(design.depths)]
    seconds = {}
    for run in plan_runs(design):
        d = run.depth
        if run.command == "link":
            seconds[run.run_id] = 0.0
        elif run.command == "train":
            seconds[run.run_id] = train[d]
        elif run.command == "chain":
            seconds[run.run_id] = run.generations * student[d]
        elif run.role == "ensemble":
            seconds[run.run_id] = student[d] + (run.members - 1) * forward[d]
        else:  # a student of the larger teacher
            seconds[run.run_id] = student[d] + forward[d + 1] - forward[d]
    return seconds


def estimate_lines(design: Design, seconds: dict[int, dict[str, float]], corpora: int) -> list[str]:
    """The timed kinds (each run's seconds from start to end with w runs at once; with one worker its CPU
    seconds too), and the design's time on `corpora` corpora per pool level and in all: each run at its
    kind's seconds measured with w workers, w at a time; and its CPU seconds shared by w free cores."""
    kinds = [kind for kind in seconds[min(seconds)] if kind not in ("elapsed", "cpu") and not kind.startswith("cpu:")]
    columns = [(f"w={w}", w, "") for w in seconds] + ([("CPU, w=1", 1, "cpu:")] if 1 in seconds else [])
    lines = ["seconds per run     " + "".join(f"{name:>10}" for name, _, _ in columns)]
    lines += [f"  {kind:<18}" + "".join(f"{seconds[w][prefix + kind]:>10.1f}" for _, w, prefix in columns)
              for kind in kinds]
    lines += [f"  {'(all, elapsed)':<18}" + "".join(f"{seconds[w]['elapsed']:>10.1f}" for w in seconds),
              f"  {'(all, CPU)':<18}" + "".join(f"{seconds[w]['cpu']:>10.1f}" for w in seconds)]
    runs = plan_runs(design)
    count = sum(r.generations or 1 for r in runs if r.command != "link") * corpora

    def part_lines(label: str, per_run: dict[str, float], w: int) -> str:
        parts = {plan.pool: sum(per_run[r.run_id] for r in runs if r.pool == plan.pool) * corpora / w
                 for plan in design.pools}
        return (f"{label}: " + ", ".join(f"pool {pool} {value / 3600:.2f} h" for pool, value in parts.items())
                + f"; in all {sum(parts.values()) / 3600:.2f} h")

    lines.append(f"the design on {corpora} corpora ({count} trainings):")
    lines += [part_lines(f"  {w} worker(s), as timed", run_seconds(design, seconds[w]), w) for w in seconds]
    if 1 in seconds:
        cpu = run_seconds(design, {kind.removeprefix("cpu:"): value for kind, value in seconds[1].items()
                                   if kind.startswith("cpu:")})
        lines += [part_lines(f"  CPU shared by {w} free cores", cpu, w) for w in seconds if w > 1]
    return lines


# --------------------------------------------------------------------------------------------- main

def plan_lines(design: Design) -> list[str]:
    """The design's cells and run counts per corpus."""
    runs = plan_runs(design)
    lines = []
    for plan in design.pools:
        for depth in design.depths:
            cell = [r for r in runs if r.cell == cell_id(depth, plan.pool)]
            counts = {role: sum(r.generations or 1 for r in cell if r.role == role and r.command != "link")
                      for role in dict.fromkeys(r.role for r in cell)}
            trainings = sum(r.generations or 1 for r in cell if r.command != "link")
            lines.append(f"{cell_id(depth, plan.pool)}: {design.params(depth):,} params, "
                         f"{design.params(depth) / design.unique_tokens(plan.pool):.1f} params/unique token, "
                         f"{design.epochs(plan.pool):.1f} epochs; {trainings} trainings ("
                         + ", ".join(f"{role} {n}" for role, n in counts.items() if n) + ")")
    total = sum(r.generations or 1 for r in runs if r.command != "link")
    lines.append(f"per corpus: {total} trainings (the extension counted as trained)")
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="train every run of the design not finished yet")
    run.add_argument("corpora", nargs="+", type=parse_corpus)
    run.add_argument("--store", type=Path, required=True)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--design", choices=sorted(DESIGNS), default="regime")
    col = sub.add_parser("collect", help="write every finished run's numbers to a JSON file")
    col.add_argument("--store", type=Path, required=True)
    col.add_argument("--out", type=Path, default=DEFAULT_OUT)
    summ = sub.add_parser("summary", help="each cell's runs against its runs trained alone")
    summ.add_argument("runs", nargs="?", type=Path, default=DEFAULT_OUT)
    tab = sub.add_parser("table", help="the cells as one Markdown table (the docs' table)")
    tab.add_argument("runs", nargs="?", type=Path, default=DEFAULT_OUT)
    tim = sub.add_parser("time", help="time one run of each kind and estimate the design's wall time")
    tim.add_argument("corpus", type=parse_corpus)
    tim.add_argument("--store", type=Path, required=True)
    tim.add_argument("--workers", default="1,2", help="numbers of concurrent runs to time, comma-separated")
    tim.add_argument("--design", choices=sorted(DESIGNS), default="regime")
    tim.add_argument("--corpora", type=int, default=4, help="corpora the estimate is for (default 4)")
    pln = sub.add_parser("plan", help="the design's cells and run counts")
    pln.add_argument("--design", choices=sorted(DESIGNS), default="regime")
    args = parser.parse_args(argv)
    if args.verb == "run":
        store = args.store.absolute()
        design = store_design(store, args.design)
        status = run_design(args.corpora, store, design, args.workers)
        failed = [key for key, value in status.items() if value != COMPLETED]
        print(f"{len(status) - len(failed)} of {len(status)} runs completed" +
              (f"; not completed: {', '.join(failed)}" if failed else ""))
        raise SystemExit(1 if failed else 0)
    if args.verb == "collect":
        collect(args.store.absolute(), args.out, argv)
    elif args.verb == "summary":
        print("\n".join(summary(json.loads(args.runs.read_text(encoding="utf-8")))))
    elif args.verb == "table":
        print("\n".join(table(json.loads(args.runs.read_text(encoding="utf-8")))))
    elif args.verb == "time":
        design = DESIGNS[args.design]
        seconds = time_kinds(args.corpus, args.store.absolute(), design, [int(w) for w in args.workers.split(",")])
        print("\n".join(estimate_lines(design, seconds, args.corpora)))
    else:
        print("\n".join(plan_lines(DESIGNS[args.design])))


if __name__ == "__main__":
    main(sys.argv[1:])
