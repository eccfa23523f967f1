"""The ladder designer (issue 64): which small runs to train so that a law fitted on them predicts a
target model (N, D) best for the FLOPs spent, before any of them is trained.

    plan = design_ladder(target_params=1e9, target_tokens=20e9, budget=1e20)
    plan.chosen.depths, plan.chosen.tokens_per_param, plan.chosen.flops, plan.chosen.expected_error
    plan.designs                  # every candidate within the budget, best first (LadderDesign records)
    print(plan.as_text())

How far a ladder's law misses a target depends, on the validation pack, on how far the target lies
beyond its largest run (dN = ln(N / largest N)) and how wide the ladder spans (ln(largest /
smallest N)): the error left after the cross-ladder bias correction follows the shipped bias
model's error curve (`laws.crossladder.ErrorCurve`, fitted leave-one-ladder-out on the pack). The
designer enumerates ladders of a model family (sizes by depth at a fixed aspect ratio, as sweeps
build them; or any candidate sizes given), each with a few tokens-per-parameter budgets around the
target's own (WSD forks: one stable run per size, each shorter budget a cooldown of it) and one or
two seeds at the largest size, prices each in training FLOPs (6 N D, a fork's cooldown counting
`cooldown_fraction` of its tokens, as `sweep plan` counts them), and ranks those within the budget by
expected error at the target; among the designs within TIE of the best, the one with the most runs
wins (then the cheaper): the error curve does not see how many runs a ladder has, and on the pack
(bench/ladder_backtest.py) the cheapest of equal expected error, with few runs a size, lost. A law
needs at least 3 sizes to fit and 4 for its backtest (measured intervals), so every design has at
least MIN_SIZES, spanning at least MIN_SPAN (the pack's fits, where the curve was measured, span 2.4x
or more in 9 of 10).

Seeds: more seeds at the largest size average its run noise (`seed_noise`, the relative sd of one
run's loss across seeds; 0 by default, as the pack cannot say), which the error curve's floor holds
once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.crossladder import ErrorCurve, shipped_model
from distillscale.units import format_quantity

# Fewest sizes of a design (3 fit a law; 4 give its backtest), and the most; the narrowest span.
MIN_SIZES = 4
MAX_SIZES = 8
MIN_SPAN = 4.0
# The tokens-per-parameter budgets of each size, as multiples of the target's own D/N (WSD forks).
RATIO_SETS = ((0.5, 1.0), (1.0, 2.0), (0.5, 1.0, 2.0), (0.25, 0.5, 1.0, 2.0, 4.0))
# The ladder's largest size is at most this fraction of the target (beyond it is not a ladder).
MAX_TOP = 0.5
# Expected errors within this relative margin count as equal: the cheaper design wins.
TIE = 0.02
COOLDOWN_FRACTION = 0.2
# The model family when no sizes are given: the GPU ladder's (examples/gpu_ladder.toml).
FAMILY = {"aspect_ratio": 64, "head_dim": 64}
MAX_DEPTH = 128


@dataclass(frozen=True)
class LadderDesign:
    """One candidate ladder: its sizes (non-embedding N, smallest first; `depths` when sizes come from
    a model family), the tokens-per-parameter budgets every size trains at, the seeds of its largest
    size, its training FLOPs, and the error it is expected to give at the target: the typical
    |relative error| and the 90% half-width of that error (both relative to the target's loss)."""

    sizes: tuple[float, ...]
    tokens_per_param: tuple[float, ...]
    seeds: int
    flops: float
    expected_error: float
    band: float
    distance: float           # target N over the largest size
    depths: tuple[int, ...] | None = None

    @property
    def runs(self) -> int:
        return len(self.sizes) * len(self.tokens_per_param) + (self.seeds - 1) * len(self.tokens_per_param)

    @property
    def span(self) -> float:
        return self.sizes[-1] / self.sizes[0]

    def describe(self) -> str:
        sizes = ", ".join(format_quantity(n) for n in self.sizes)
        depths = f" (depths {', '.join(map(str, self.depths))})" if self.depths else ""
        ratios = ", ".join(f"{r:.3g}" for r in self.tokens_per_param)
        return (f"{len(self.sizes)} sizes {sizes}{depths} x D/N {ratios}, {self.seeds} seed(s) at the largest: "
                f"{self.runs} runs, {self.flops:.3g} FLOPs; {self.distance:.3g}x to the target; expected error "
                f"{self.expected_error:.2%} (90% band ±{self.band:.2%})")

    def to_dict(self) -> dict:
        return {**asdict(self), "runs": self.runs, "span": self.span}


@dataclass(frozen=True)
class LadderPlan:
    """The designs within the budget, best first, and the one chosen (the first)."""

    target_params: float
    target_tokens: float
    budget: float
    designs: list[LadderDesign] = field(repr=False)
    over_budget: int                 # candidates priced above the budget
    curve: ErrorCurve = field(repr=False)
    source: str = ""

    @property
    def chosen(self) -> LadderDesign:
        return self.designs[0]

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

    def to_dict(self) -> dict:
        return {"target_params": self.target_params, "target_tokens": self.target_tokens, "budget": self.budget,
                "chosen": self.chosen.to_dict(), "frontier": [d.to_dict() for d in self.frontier()],
                "designs_within_budget": len(self.designs), "over_budget": self.over_budget,
                "error_curve": self.curve.model_dump(), "source": self.source}

    def as_text(self) -> str:
        lines = [f"Ladder for a target of {format_quantity(self.target_params)} parameters on "
                 f"{format_quantity(self.target_tokens)} tokens ({self.target_tokens / self.target_params:.3g} "
                 f"tokens per parameter), budget {self.budget:.3g} FLOPs:",
                 f"  chosen: {self.chosen.describe()}",
                 "  cheaper and costlier designs (each the lowest expected error at its cost):"]
        lines += [f"    {d.flops:9.3g} FLOPs  expected {d.expected_error:.2%} (±{d.band:.2%})  "
                  f"{len(d.sizes)} sizes {format_quantity(d.sizes[0])}-{format_quantity(d.sizes[-1])}, "
                  f"D/N {', '.join(f'{r:.3g}' for r in d.tokens_per_param)}, {d.seeds} seed(s)"
                  for d in self.frontier()]
        lines.append(f"  {len(self.designs)} designs within the budget, {self.over_budget} over it; error curve: "
                     f"{self.source}")
        return "\n".join(lines)


def family_sizes(aspect_ratio: int = FAMILY["aspect_ratio"], head_dim: int = FAMILY["head_dim"],
                 max_params: float = math.inf) -> dict[int, float]:
    """depth -> non-embedding N of a ladder family (fixed aspect ratio, as sweeps build sizes), every
    depth whose width is a multiple of head_dim, up to `max_params`."""
    from distillscale.model.config import ModelConfig

    sizes = {}
    for depth in range(1, MAX_DEPTH + 1):
        if (aspect_ratio * depth) % head_dim:
            continue
        n = float(ModelConfig(n_layers=depth, aspect_ratio=aspect_ratio, head_dim=head_dim,
                              vocab_size=512).non_embedding_params)
        if n > max_params:
            break
        sizes[depth] = n
    return sizes


def ladder_flops(sizes, tokens_per_param, seeds: int = 1, cooldown_fraction: float = COOLDOWN_FRACTION) -> float:
    """Training FLOPs (6 N D) of a ladder under WSD: per size its longest budget once, each shorter
    one a cooldown of `cooldown_fraction` of its tokens; the largest size `seeds` times."""
    ratios = sorted(tokens_per_param)
    per_param = ratios[-1] + cooldown_fraction * sum(ratios[:-1])   # D / N of one size's runs, forks priced
    sizes = np.asarray(sorted(sizes), float)
    return float(6.0 * per_param * (np.sum(sizes ** 2) + (seeds - 1) * sizes[-1] ** 2))


def design_ladder(target_params: float, target_tokens: float, budget: float, *, sizes=None,
                  aspect_ratio: int = FAMILY["aspect_ratio"], head_dim: int = FAMILY["head_dim"],
                  ratio_sets=RATIO_SETS, seeds=(1, 2), seed_noise: float = 0.0,
                  cooldown_fraction: float = COOLDOWN_FRACTION, min_sizes: int = MIN_SIZES,
                  max_sizes: int = MAX_SIZES, curve: ErrorCurve | None = None) -> LadderPlan:
    """The ladders worth training for a target of `target_params` non-embedding parameters on
    `target_tokens` tokens, within `budget` training FLOPs (see the module docstring). `sizes`: the
    candidate model sizes (default: the depths of the family `aspect_ratio`, `head_dim`); `curve`:
    the error curve (default: the shipped bias model's)."""
    N_t = _positive("target_params", target_params)
    D_t = _positive("target_tokens", target_tokens)
    budget = _positive("budget", budget)
    if not 0 <= seed_noise < 1:
        raise ParameterError("seed_noise", "{} must be a relative sd between 0 and 1, got {value!r}", value=seed_noise)
    if curve is None:
        model = shipped_model()
        if model is None or model.error_curve is None:
            raise ParameterError("curve", "no error curve: the shipped bias model (laws/bias_model.json) has none; "
                                          "give {}")
        curve, source = model.error_curve, (f"the shipped bias model's ({len(model.ladders)} published ladders, "
                                            f"{model.date})")
    else:
        source = "given"
    if sizes is None:
        by_depth = family_sizes(aspect_ratio, head_dim, N_t * MAX_TOP)
        depths, values = list(by_depth), list(by_depth.values())
    else:
        values = sorted(_positive("sizes", float(n)) for n in sizes)
        values = [n for n in values if n <= N_t * MAX_TOP]
        depths = None
    if len(values) < min_sizes:
        raise ParameterError("target_params", "{} " + f"{format_quantity(N_t)} leaves {len(values)} candidate sizes at "
                             f"most {MAX_TOP:g}x its size; a ladder needs {min_sizes}: give a larger target or "
                             "smaller sizes")
    ratio_t = D_t / N_t
    designs, over = [], 0
    for top in range(min_sizes - 1, len(values)):
        for count in range(min_sizes, max_sizes + 1):
            for step in (1, 2, 3):
                first = top - step * (count - 1)
                if first < 0 or values[top] / values[first] < MIN_SPAN:
                    continue
                chosen = list(range(first, top + 1, step))
                ns = tuple(values[i] for i in chosen)
                for multiples in ratio_sets:
                    ratios = tuple(sorted(ratio_t * m for m in multiples))
                    for n_seeds in seeds:
                        flops = ladder_flops(ns, ratios, n_seeds, cooldown_fraction)
                        if flops > budget:
                            over += 1
                            continue
                        distance = N_t / ns[-1]
                        typical = float(curve.typical(distance, ns[-1] / ns[0]))
                        # extra seeds average the largest size's run noise, which the floor holds once
                        typical = math.sqrt(max(typical ** 2 - seed_noise ** 2 * (1 - 1 / n_seeds), 0.0))
                        designs.append(LadderDesign(ns, ratios, n_seeds, flops, typical, typical * curve.band_ratio,
                                                    distance, tuple(depths[i] for i in chosen) if depths else None))
    if not designs:
        cheapest = min(ladder_flops(values[:min_sizes], sorted(ratio_t * m for m in ratio_set), 1, cooldown_fraction)
                       for ratio_set in ratio_sets)
        raise ParameterError("budget", "{} " + f"{budget:.3g} FLOPs buys no ladder of {min_sizes} sizes for this target: "
                             f"the cheapest costs {cheapest:.3g}; raise the budget or lower the target's tokens")
    best = min(d.expected_error for d in designs)
    # within TIE of the lowest expected error, the design with the most runs (more data for the same
    # expected error; on the pack the sparse ones lost), then the cheaper; the rest by expected error
    designs.sort(key=lambda d: (0, -d.runs, d.flops) if d.expected_error <= best * (1 + TIE)
                 else (1, d.expected_error, d.flops))
    return LadderPlan(N_t, D_t, budget, designs, over, curve, source)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ParameterError(name, "{} must be a positive finite number, got {value!r}", value=value)
    return float(value)
