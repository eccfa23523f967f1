"""The ladder designer: which small runs to train so that a law fitted on them predicts a target
model (N, D) best for the FLOPs spent, before any of them is trained.

    plan = design_ladder(target_params=1e9, target_tokens=20e9, budget=1e20)
    plan.chosen.depths, plan.chosen.tokens_per_param, plan.chosen.flops, plan.chosen.expected_error
    plan.designs                  # every candidate within the budget, best first (LadderDesign records)
    plan.runs(plan.chosen)        # its runs: depth, tokens, steps, FLOPs, epochs (LadderRun records)
    print(plan.as_text())

How far a ladder's law misses a target depends, on the validation pack, on how far the target lies
beyond its largest run (dN = ln(N / largest N)) and how wide the ladder spans (ln(largest /
smallest N)): the error left after the cross-ladder bias correction follows the shipped bias
model's error curve (`laws.crossladder.ErrorCurve`, fitted leave-one-ladder-out on the pack; read
through its `typical` and `band` only).

The candidates are ladders of one model family (`LadderFamily`: its sizes by depth, how a run of
each is priced, the token window its runs keep): 4 to 8 sizes at most half the target's, spaced
evenly in log size (neighbours 1.25x-8x apart), spanning at least MIN_SPAN; each size at the
tokens-per-parameter budgets of one set around the target's own that fall inside the window (as
the sweep keeps a ladder's grid points between min_tokens and max_tokens; every size needs one),
under WSD the shorter ones forks of the longest, priced at their cooldown, under any other schedule
each a run of its own; one seed, or with `seed_noise` up to four at the largest size. The window
(`run_window`) is the base spec's min_tokens and max_tokens, narrowed to at least MIN_STEPS
optimizer steps a run (a shorter run is mostly warm-up and cooldown, where the pack's largest
errors came from) and, when the corpus is counted, to one epoch of its training split (no run
repeats its data); the spec carries it. Each design is priced by the family (`distillscale ladder`:
the engine's FLOPs over each run's whole steps, exactly as `sweep plan` counts the spec it writes).

Among those within the budget, the lowest expected error wins; among the designs within TIE of it,
the one with the most (size, tokens) points, then the cheaper: the error curve does not see how
many runs a ladder has, and on the pack (bench/planning/ladder_backtest.py) choosing the most runs among
near-equal designs beat the shipped ladder at equal FLOPs on 8 of 12 ladders.

Seeds: the curve was measured on published ladders with one run per point, their own noise in it.
Run-to-run noise of the user's recipe (`seed_noise`, the relative sd of one run's loss across
seeds; 0 by default) is added to it as the extrapolation of a straight line in ln N through one
point per size (weighted by its seeds) would carry it to the target; more seeds at the largest size
shrink that term, never the curve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Callable

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.crossladder import ErrorCurve, shipped_model
from distillscale.model.config import ModelConfig
from distillscale.planning.flops import run_flops
from distillscale.units import format_quantity

# Fewest sizes of a design (3 fit a law; 4 give its backtest), and the most; the narrowest span.
MIN_SIZES = 4
MAX_SIZES = 8
MIN_SPAN = 4.0
# The ratio between neighbouring sizes of a design (sizes evenly spaced in log N, each the family's
# depth nearest its place).
SIZE_STEPS = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
# The largest sizes a design may end at: one per this factor in N (every depth of a small family).
TOP_GRID = 1.05
# The tokens-per-parameter budgets of each size, as multiples of the target's own D/N.
RATIO_SETS = ((0.5, 1.0), (1.0, 2.0), (0.5, 1.0, 2.0), (0.25, 0.5, 1.0, 2.0, 4.0))
# The ladder's largest size is at most this fraction of the target (beyond it is not a ladder).
MAX_TOP = 0.5
# Expected errors within this relative margin count as equal: the design with the most (size,
# tokens) points wins, then the cheaper (bench/planning/ladder_backtest.py; see the module docstring).
TIE = 0.02
# A run of fewer optimizer steps is not designed (mostly warm-up and cooldown).
MIN_STEPS = 100
# A family's first depths, every one a candidate; beyond them one every ~1% (`family_depths`).
ALL_DEPTHS = 256
# Seeds of the largest size tried when runs are noisy (seed_noise > 0); one otherwise.
SEEDS = (1, 2, 3, 4)
# Where the pack measured the curve: 5%-95% of its runs' tokens per parameter (each ladder weighing
# the same: 0.55-789); a target outside has an expected error the pack never measured.
MEASURED_RATIOS = (0.55, 789.0)
Z90 = NormalDist().inv_cdf(0.95)
# The family when none is given: the GPU ladder's (report/gpu_ladder.toml): aspect ratio 64,
# head_dim 64, a 512-token vocabulary and context, 64 sequences a step, WSD with 20% cooldowns.
GPU_LADDER = {"aspect_ratio": 64, "head_dim": 64, "vocab_size": 512, "seq_len": 512, "batch_size": 64,
              "cooldown_fraction": 0.2}


@dataclass(frozen=True)
class RunCost:
    """What one run costs as the sweep trains it: its optimizer steps, the tokens they train on, the
    FLOPs of the whole run (as its result.json counts them) and what it spends as a WSD fork of a
    longer run (its cooldown; the whole run under a schedule that does not fork)."""

    steps: int
    tokens: int
    flops: float
    fork_flops: float


@dataclass(frozen=True)
class LadderFamily:
    """The model family a ladder is drawn from, as the sweep will build, train and price it: `sizes`,
    depth -> non-embedding N; `price(depth, tokens)`, a run's `RunCost`; `forks`, whether a size's
    shorter budgets fork its longest (WSD); the token window of a run (`min_tokens`, `max_tokens`,
    from `run_window`: the sweep leaves out the asked tokens outside it) and the unique tokens of the
    corpus's training split (`unique_tokens`, None when not counted); `description` and `data`, one
    line each on the family and on its data and window."""

    sizes: dict[int, int]
    price: Callable[[int, int], RunCost] = field(repr=False)
    forks: bool = True
    min_tokens: float = 0.0
    max_tokens: float = math.inf
    unique_tokens: int | None = None
    description: str = ""
    data: str = ""

    def tokens_at(self, depth: int, ratio: float) -> int:
        """The tokens a run of `depth` at D/N `ratio` asks for, as the sweep rounds them."""
        return round(ratio * self.sizes[depth])

    def kept(self, depth: int, ratios: tuple[float, ...]) -> tuple[float, ...]:
        """The budgets of `ratios` a size trains at: those whose tokens lie in the window."""
        return tuple(r for r in ratios if self.min_tokens <= self.tokens_at(depth, r) <= self.max_tokens)


def run_window(tokens_per_step: int, min_tokens: float | None = None, max_tokens: float | None = None,
               unique_tokens: float | None = None) -> tuple[float, float, str]:
    """The tokens a designed run may ask for: at least `min_tokens` and MIN_STEPS optimizer steps of
    `tokens_per_step`, at most `max_tokens` and the whole steps within `unique_tokens` (one epoch);
    and in words, which bound is whose."""
    steps = MIN_STEPS * tokens_per_step
    low = max(min_tokens or 0.0, float(steps))
    epoch = math.inf if unique_tokens is None else float(unique_tokens // tokens_per_step * tokens_per_step)
    high = min(max_tokens or math.inf, epoch)
    why_low = f"{MIN_STEPS} steps of {tokens_per_step:,} tokens" if low == steps else "the base's min_tokens"
    why_high = ("no cap" if math.isinf(high) else "one epoch of the training split" if high == epoch
                else "the base's max_tokens")
    cap = "" if math.isinf(high) else f"-{format_quantity(high)}"
    return low, high, f"{format_quantity(low)}{cap} tokens a run (from {why_low} to {why_high})"


def engine_family(max_params: float, aspect_ratio: int = GPU_LADDER["aspect_ratio"],
                  head_dim: int = GPU_LADDER["head_dim"], vocab_size: int = GPU_LADDER["vocab_size"],
                  seq_len: int = GPU_LADDER["seq_len"], batch_size: int = GPU_LADDER["batch_size"],
                  cooldown_fraction: float | None = GPU_LADDER["cooldown_fraction"], min_tokens: float | None = None,
                  max_tokens: float | None = None, unique_tokens: int | None = None) -> LadderFamily:
    """A family priced with the engine's FLOP count (`planning.flops.run_flops` over whole steps of
    `batch_size` x `seq_len` tokens; a WSD fork its `cooldown_fraction` of them; None: no forks), its
    depths up to `max_params` non-embedding parameters, its runs in `run_window`. `distillscale
    ladder` builds its family from a base spec through the sweep's own resolution instead
    (`sweeps.ladder.base_family`), which gives these prices for the GPU ladder's shape."""
    shapes = {depth: ModelConfig(n_layers=depth, aspect_ratio=aspect_ratio, head_dim=head_dim, vocab_size=vocab_size,
                                 max_seq_len=seq_len)
              for depth in family_depths(aspect_ratio, head_dim, max_params,
                                         lambda d: ModelConfig(n_layers=d, aspect_ratio=aspect_ratio, head_dim=head_dim,
                                                               vocab_size=vocab_size).non_embedding_params)}
    step = batch_size * seq_len

    def price(depth: int, tokens: int) -> RunCost:
        steps = max(1, math.ceil(tokens / step))
        whole = run_flops(shapes[depth], seq_len, steps * step).total
        own = steps if cooldown_fraction is None else min(steps, max(1, round(cooldown_fraction * steps)))
        return RunCost(steps, steps * step, whole * steps / steps, whole * own / steps)

    schedule = "cosine" if cooldown_fraction is None else f"WSD, {cooldown_fraction:g} cooldowns"
    low, high, window = run_window(step, min_tokens, max_tokens, unique_tokens)
    return LadderFamily({d: s.non_embedding_params for d, s in shapes.items()}, price,
                        forks=cooldown_fraction is not None, min_tokens=low, max_tokens=high,
                        unique_tokens=unique_tokens, data=f"runs within {window}", description=(
                            f"aspect ratio {aspect_ratio}, head_dim {head_dim}, vocabulary {vocab_size}, context "
                            f"{seq_len}, {step:,} tokens a step, {schedule}"))


def family_depths(aspect_ratio: int, head_dim: int, max_params: float, params_of: Callable[[int], int]) -> dict[int, int]:
    """depth -> non-embedding N (`params_of`) of a family's depths up to `max_params`: those whose width
    (aspect_ratio x depth) the heads divide, every one of the first ALL_DEPTHS of them, then one
    every ~1% in depth (~3% in N: a ladder's sizes are 1.25x apart or more)."""
    if isinstance(max_params, bool) or not isinstance(max_params, (int, float)) or not 0 < max_params < math.inf:
        raise ParameterError("max_params", "{} must be a positive finite number of parameters, got {value!r}",
                             value=max_params)
    unit = head_dim // math.gcd(aspect_ratio, head_dim)
    out, k = {}, 1
    while True:
        params = params_of(unit * k)
        if params > max_params:
            return out
        out[unit * k] = params
        k = k + 1 if k < ALL_DEPTHS else math.ceil(k * 1.01)


@dataclass(frozen=True)
class LadderRun:
    """One run of a design, as the sweep trains it."""

    depth: int
    params: int               # non-embedding N
    tokens_per_param: float
    tokens: int               # the tokens its whole steps train on
    steps: int
    flops: float              # what it spends (a fork: its cooldown)
    fork: bool
    seed: int
    epochs: float | None      # passes over the corpus's training split (None: not counted)


@dataclass(frozen=True)
class LadderDesign:
    """One candidate ladder: its sizes (non-embedding N, smallest first) and their depths, the
    tokens-per-parameter budgets asked of every size (`tokens_per_param`) and those each trains at
    inside the token window (`kept`, per size), the seeds of its largest size, its training FLOPs,
    and the error it is expected to give at the target, relative to the target's loss: the typical
    |error| and its 90% half-width, the pack's curve (`curve_error`) and the run-to-run noise carried
    to the target (`noise_error`) together."""

    sizes: tuple[int, ...]
    depths: tuple[int, ...]
    tokens_per_param: tuple[float, ...]
    kept: tuple[tuple[float, ...], ...]
    seeds: int
    flops: float
    expected_error: float
    band: float
    distance: float           # target N over the largest size
    curve_error: float
    noise_error: float

    @property
    def runs(self) -> int:
        return self.points + (self.seeds - 1) * len(self.kept[-1])

    @property
    def points(self) -> int:
        """Distinct (size, tokens) points: the runs a law is fitted on, seeds aside."""
        return sum(len(k) for k in self.kept)

    @property
    def span(self) -> float:
        return self.sizes[-1] / self.sizes[0]

    def describe(self) -> str:
        sizes = ", ".join(format_quantity(n) for n in self.sizes)
        ratios = ", ".join(f"{r:.4g}" for r in self.tokens_per_param)
        within = "" if self.points == len(self.sizes) * len(self.tokens_per_param) else " (each within the window)"
        noise = f", run noise {self.noise_error:.2%} of it" if self.noise_error else ""
        return (f"{len(self.sizes)} sizes {sizes} (depths {', '.join(map(str, self.depths))}) x D/N {ratios}{within}, "
                f"{self.seeds} seed(s) at the largest: {self.runs} runs, {self.flops:.4g} FLOPs; {self.distance:.3g}x "
                f"to the target; expected error {self.expected_error:.2%} (90% band ±{self.band:.2%}{noise})")

    def to_dict(self) -> dict:
        return {**asdict(self), "runs": self.runs, "points": self.points, "span": self.span}


@dataclass(frozen=True)
class LadderPlan:
    """The designs within the budget, best first, and the one chosen (the first)."""

    target_params: float
    target_tokens: float
    budget: float
    designs: list[LadderDesign] = field(repr=False)
    over_budget: int                 # candidates priced above the budget
    curve: ErrorCurve = field(repr=False)
    family: LadderFamily = field(repr=False)
    seed_noise: float = 0.0
    source: str = ""

    @property
    def chosen(self) -> LadderDesign:
        return self.designs[0]

    @property
    def measured(self) -> bool:
        """Whether the target's tokens per parameter lie where the pack measured the curve."""
        return MEASURED_RATIOS[0] <= self.target_tokens / self.target_params <= MEASURED_RATIOS[1]

    def runs(self, design: LadderDesign | None = None) -> list[LadderRun]:
        """The runs of `design` (default: the chosen one), largest size first, each size's longest
        budget first, as the sweep launches them."""
        design = design or self.chosen
        family, out = self.family, []
        for depth, params, kept in reversed(list(zip(design.depths, design.sizes, design.kept))):
            for seed in range(design.seeds if depth == design.depths[-1] else 1):
                for i, ratio in enumerate(sorted(kept, reverse=True)):
                    cost = family.price(depth, family.tokens_at(depth, ratio))
                    fork = family.forks and i > 0
                    epochs = None if family.unique_tokens is None else cost.tokens / family.unique_tokens
                    out.append(LadderRun(depth, params, ratio, cost.tokens, cost.steps,
                                         cost.fork_flops if fork else cost.flops, fork, seed, epochs))
        return out

    def frontier(self, most: int = 8) -> list[LadderDesign]:
        """The designs no cheaper design matches (expected error falling by more than TIE as the FLOPs
        grow), at most `most` of them evenly spaced, the chosen one included."""
        out: list[LadderDesign] = []
        for design in sorted(self.designs, key=lambda d: (d.flops, d.expected_error)):
            if design.flops > self.chosen.flops:
                break
            if not out or design.expected_error < out[-1].expected_error * (1 - TIE):
                out.append(design)
        out = [d for d in out if d is not self.chosen and d.flops < self.chosen.flops] + [self.chosen]
        if len(out) > most:
            out = [out[i] for i in np.unique(np.round(np.linspace(0, len(out) - 1, most)).astype(int))]
        return out

    def notes(self) -> list[str]:
        """What the user should know before paying: the data the runs see and how often, the budget a
        window leaves unspent, a target the pack never measured."""
        family = self.family
        notes = [f"data: {family.data}"] if family.data else []
        top = max(self.runs(), key=lambda run: run.tokens)
        if family.unique_tokens is None:
            notes.append(f"the longest run trains {format_quantity(top.tokens)} tokens (its epochs not counted)")
        else:
            notes.append(f"no run repeats its data: the longest, {format_quantity(top.tokens)} tokens, is "
                         f"{top.epochs:.3g} epochs of the training split's {format_quantity(family.unique_tokens)}")
            if self.target_tokens > family.unique_tokens:
                notes.append(f"the target's {format_quantity(self.target_tokens)} tokens are "
                             f"{self.target_tokens / family.unique_tokens:.3g} epochs of that split: the law predicts "
                             "its loss on fresh data, and on this corpus it would repeat (see `plan --unique-tokens`)")
        reach = max(n for n in family.sizes.values() if n <= self.target_params * MAX_TOP)
        if self.over_budget == 0 and max(d.sizes[-1] for d in self.designs) < reach:
            notes.append(f"the window, not the budget, stops this ladder: it spends {100 * self.chosen.flops / self.budget:.2g}% "
                         f"of the budget, its largest size {format_quantity(self.chosen.sizes[-1])} "
                         f"({self.chosen.distance:.3g}x short of the target); a larger window (corpus, max_tokens) "
                         "buys a nearer one")
        if not self.measured:
            notes.append(f"the target's {self.target_tokens / self.target_params:.3g} tokens per parameter lie outside "
                         f"those the pack measured the error curve at ({MEASURED_RATIOS[0]:g}-{MEASURED_RATIOS[1]:g}): "
                         "its expected error is the curve's at that distance, not a measured one")
        return notes

    def to_dict(self) -> dict:
        family = self.family
        return {"target_params": self.target_params, "target_tokens": self.target_tokens, "budget": self.budget,
                "chosen": self.chosen.to_dict(), "runs": [asdict(run) for run in self.runs()],
                "frontier": [d.to_dict() for d in self.frontier()], "designs_within_budget": len(self.designs),
                "over_budget": self.over_budget, "seed_noise": self.seed_noise, "family": family.description,
                "token_window": [family.min_tokens, None if math.isinf(family.max_tokens) else family.max_tokens],
                "unique_tokens": family.unique_tokens, "measured": self.measured, "notes": self.notes(),
                "error_curve": self.curve.model_dump(), "source": self.source}

    def as_text(self) -> str:
        lines = [f"Ladder for a target of {format_quantity(self.target_params)} parameters on "
                 f"{format_quantity(self.target_tokens)} tokens ({self.target_tokens / self.target_params:.3g} "
                 f"tokens per parameter), budget {self.budget:.3g} FLOPs:",
                 f"  family: {self.family.description}",
                 f"  chosen: {self.chosen.describe()}"]
        lines += [f"  {note}" for note in self.notes()]
        lines.append("  cheaper designs (each the lowest expected error at its cost):")
        lines += [f"    {d.flops:10.4g} FLOPs  expected {d.expected_error:.2%} (±{d.band:.2%})  "
                  f"{len(d.sizes)} sizes {format_quantity(d.sizes[0])}-{format_quantity(d.sizes[-1])}, "
                  f"D/N {', '.join(f'{r:.4g}' for r in d.tokens_per_param)}, {d.runs} runs, {d.seeds} seed(s)"
                  for d in self.frontier()]
        lines.append(f"  {len(self.designs)} design{'s' * (len(self.designs) != 1)} within the budget, "
                     f"{self.over_budget} over it; FLOPs as "
                     f"`sweep plan` counts them; error curve: {self.source}")
        return "\n".join(lines)


def design_ladder(target_params: float, target_tokens: float, budget: float, *, family: LadderFamily | None = None,
                  ratio_sets=RATIO_SETS, seeds=SEEDS, seed_noise: float = 0.0, min_sizes: int = MIN_SIZES,
                  max_sizes: int = MAX_SIZES, curve: ErrorCurve | None = None) -> LadderPlan:
    """The ladders worth training for a target of `target_params` non-embedding parameters on
    `target_tokens` tokens, within `budget` training FLOPs (see the module docstring). `family`: the
    candidate sizes, their prices and window (default: the GPU ladder's shape, `engine_family`);
    `seed_noise`: the relative sd of one run's loss across seeds (0: one seed, always); `curve`: the
    error curve (default: the shipped bias model's)."""
    N_t = _positive("target_params", target_params)
    D_t = _positive("target_tokens", target_tokens)
    budget = _positive("budget", budget)
    if isinstance(seed_noise, bool) or not isinstance(seed_noise, (int, float)) or not 0 <= seed_noise < 1:
        raise ParameterError("seed_noise", "{} must be a relative sd between 0 and 1, got {value!r}", value=seed_noise)
    curve, source = _curve(curve)
    family = engine_family(N_t * MAX_TOP) if family is None else family
    if not isinstance(family, LadderFamily):
        raise ParameterError("family", "{} must be a LadderFamily (engine_family, or sweeps.ladder.base_family), "
                             "got {value!r}", value=family)
    depths = sorted(d for d, n in family.sizes.items() if n <= N_t * MAX_TOP)
    if len(depths) < min_sizes:
        raise ParameterError("target_params", "{} " + f"{format_quantity(N_t)} leaves {len(depths)} sizes of the model "
                             f"family at most {MAX_TOP:g}x its size; a ladder needs {min_sizes}: give a larger target")
    search = _Search(family, N_t, budget, curve, float(seed_noise), (1,) if seed_noise == 0 else tuple(seeds))
    for multiples in ratio_sets:
        ratios = tuple(sorted({float(f"{D_t / N_t * m:.4g}") for m in multiples}))
        usable = [d for d in depths if family.kept(d, ratios)]   # sizes with a run inside the window
        for chosen in _size_sets(usable, family.sizes, min_sizes, max_sizes):
            search.add(chosen, ratios)
    if not search.designs:
        raise search.refusal(depths, D_t / N_t, min_sizes)
    best = min(d.expected_error for d in search.designs)
    # within TIE of the lowest expected error, the most (size, tokens) points, then the cheaper
    # (seeds add runs, not points: a second seed wins only on its own expected error)
    designs = sorted(search.designs, key=lambda d: (0, -d.points, d.flops) if d.expected_error <= best * (1 + TIE)
                     else (1, d.expected_error, d.flops))
    return LadderPlan(N_t, D_t, budget, designs, search.over, curve, family, float(seed_noise), source)


def _curve(curve: ErrorCurve | None) -> tuple[ErrorCurve, str]:
    if curve is not None:
        return curve, "given"
    model = shipped_model()
    if model is None or model.error_curve is None:
        raise ParameterError("curve", "no error curve: the shipped bias model (laws/bias_model.json) has none; give {}")
    return model.error_curve, f"the shipped bias model's ({len(model.ladders)} published ladders, {model.date})"


def _size_sets(depths: list[int], sizes: dict[int, int], min_sizes: int, max_sizes: int):
    """Each candidate set of depths (smallest first): a top on a TOP_GRID grid of sizes, 4-8 sizes
    spaced evenly in log N by a SIZE_STEPS ratio, each the depth nearest its place, spanning MIN_SPAN."""
    if len(depths) < min_sizes:
        return
    logs = np.log([sizes[d] for d in depths])
    tops: list[int] = []
    for index in range(len(depths) - 1, -1, -1):  # from the largest down, one per TOP_GRID
        if not tops or logs[tops[-1]] - logs[index] >= math.log(TOP_GRID):
            tops.append(index)
    seen = set()
    for top in tops:
        for step in SIZE_STEPS:
            for count in range(min_sizes, max_sizes + 1):
                places = logs[top] - math.log(step) * np.arange(count)
                if places[-1] < logs[0] - math.log(step) / 2:
                    break
                chosen = tuple(sorted({int(np.argmin(np.abs(logs - place))) for place in places}))
                if len(chosen) < count or math.exp(logs[chosen[-1]] - logs[chosen[0]]) < MIN_SPAN or chosen in seen:
                    continue
                seen.add(chosen)
                yield tuple(depths[i] for i in chosen)


class _Search:
    """The designs of one search: each priced and scored once."""

    def __init__(self, family: LadderFamily, N_t: float, budget: float, curve: ErrorCurve, noise: float, seeds):
        self.family, self.N_t, self.budget, self.curve, self.noise, self.seeds = family, N_t, budget, curve, noise, seeds
        self.designs: list[LadderDesign] = []
        self.over = 0
        self.cheapest = math.inf
        self._sizes: dict[tuple, tuple[float, tuple[float, ...]]] = {}

    def size_cost(self, depth: int, ratios: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
        """FLOPs of one size's runs at the budgets of `ratios` inside the window (its longest run, then
        each shorter one as a fork or a run of its own), and those budgets."""
        key = (depth, ratios)
        if key not in self._sizes:
            kept = self.family.kept(depth, ratios)
            total = 0.0
            for i, ratio in enumerate(sorted(kept, reverse=True)):
                cost = self.family.price(depth, self.family.tokens_at(depth, ratio))
                total += cost.fork_flops if self.family.forks and i > 0 else cost.flops
            self._sizes[key] = (total, kept)
        return self._sizes[key]

    def add(self, depths: tuple[int, ...], ratios: tuple[float, ...]) -> None:
        costs = [self.size_cost(depth, ratios) for depth in depths]
        sizes = tuple(self.family.sizes[d] for d in depths)
        base, top = sum(c for c, _ in costs), costs[-1][0]
        distance, span = self.N_t / sizes[-1], sizes[-1] / sizes[0]
        typical, band = float(self.curve.typical(distance, span)), float(self.curve.band(distance, span))
        for seeds in self.seeds:
            flops = base + (seeds - 1) * top
            self.cheapest = min(self.cheapest, flops)
            if flops > self.budget:
                self.over += 1
                continue
            noise = self.noise * _lever(sizes, seeds, self.N_t)
            self.designs.append(LadderDesign(sizes, depths, ratios, tuple(k for _, k in costs), seeds, flops,
                                             math.hypot(typical, noise), math.hypot(band, Z90 * noise), distance,
                                             typical, noise))

    def refusal(self, depths: list[int], ratio: float, min_sizes: int) -> ParameterError:
        """Why no design is within the budget, in one line naming what to change."""
        if math.isfinite(self.cheapest):
            return ParameterError("budget", "{} " + f"{self.budget:.3g} FLOPs buys no ladder of {min_sizes} sizes for "
                                  f"this target: the cheapest costs {self.cheapest:.3g}; raise the budget or lower the "
                                  "target's tokens")
        family = self.family
        low, high = min(m for ms in RATIO_SETS for m in ms) * ratio, max(m for ms in RATIO_SETS for m in ms) * ratio
        inside = [d for d in depths if family.min_tokens <= high * family.sizes[d]
                  and low * family.sizes[d] <= family.max_tokens]
        sizes = ", ".join(format_quantity(family.sizes[d]) for d in inside) or "none"
        return ParameterError("target_tokens", "{} " + f"at {ratio:.3g} tokens per parameter (budgets of "
                              f"{low:.3g}-{high:.3g} a size) leaves too few sizes of the family with a run inside the "
                              f"token window, {family.data.removeprefix('runs within ')} (sizes: {sizes}): a ladder "
                              f"needs {min_sizes} spanning {MIN_SPAN:g}x; change the target's tokens, or the base "
                              "spec's batch, window or corpus")


def _lever(sizes: tuple[int, ...], seeds: int, N_t: float) -> float:
    """How one run's relative noise carries to the target through a straight line in ln N fitted to
    one point per size, the largest averaged over `seeds`: sqrt(1/W + (x_t - mean)^2 / Sxx)."""
    x = np.log(np.asarray(sizes, float))
    w = np.ones_like(x)
    w[-1] = seeds
    mean = float(np.sum(w * x) / np.sum(w))
    sxx = float(np.sum(w * (x - mean) ** 2))
    return math.sqrt(1 / float(np.sum(w)) + (math.log(N_t) - mean) ** 2 / sxx)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ParameterError(name, "{} must be a positive finite number, got {value!r}", value=value)
    return float(value)
