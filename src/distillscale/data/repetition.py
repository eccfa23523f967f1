"""How often a run sees its data: epochs = tokens trained on / unique tokens of its training split.

A run past one epoch repeats its data: past a few epochs the validation loss stops following the
scaling laws (Muennighoff et al. 2023), so `train`, `distill` and `sweep run` say so before training.

A run can also repeat data on purpose, to measure what repetition costs: `unique_tokens` (the
`--unique-tokens` setting of `train` and `distill`) restricts it to a fixed subset of its split, the
split's first U tokens (whole documents in the split's order, which the document hash shuffles), so
the runs of a repetition sweep draw their D tokens from D / U passes over the same U tokens, and the
subsets of different U are nested.
"""

from __future__ import annotations

import numpy as np

from distillscale.data.sources import BUILTIN_PREFIX
from distillscale.errors import UserError


def epochs(tokens: int | float, unique_tokens: int) -> float:
    """Passes over the split: tokens seen / unique tokens (inf for an empty split)."""
    return tokens / unique_tokens if unique_tokens else float("inf")


def repetition_warning(tokens: int | float, unique_tokens: int, split: str, corpus: str,
                       runs: str = "the run", subset: bool = False) -> str | None:
    """One line saying that `runs` will repeat the data, or None when it fits in one epoch; `subset`:
    the repetition was asked for (a fixed subset of the split, `unique_subset`)."""
    passes = epochs(tokens, unique_tokens)
    if passes <= 1:
        return None
    if subset:
        return (f"{runs} will see {tokens / 1e6:,.3g}M tokens, {passes:.3g} epochs of the fixed subset of "
                f"{unique_tokens / 1e6:,.3g}M unique tokens of the {split} split (--unique-tokens)")
    return (f"{runs} will see {tokens / 1e6:,.3g}M tokens, {passes:.3g} epochs of the {split} split's "
            f"{unique_tokens / 1e6:,.3g}M unique tokens of {corpus}: repeated data bends the loss away "
            f"from the scaling laws; use a larger corpus (--data {BUILTIN_PREFIX}python-env, every Python "
            f"source of this environment, or your own) or fewer tokens")


def unique_subset(tokens: np.ndarray, unique_tokens: int | None, split: str) -> np.ndarray:
    """The fixed subset a run trains on: the first `unique_tokens` tokens of the split's `tokens`
    (all of them when None); a one-line UserError when the split holds fewer."""
    if unique_tokens is None:
        return tokens
    if unique_tokens > len(tokens):
        raise UserError(f"--unique-tokens {unique_tokens:,} is more than the {split} split's {len(tokens):,} "
                        f"tokens: use at most {len(tokens):,}, or a larger corpus")
    return tokens[:unique_tokens]
