"""How often a run sees its data: epochs = tokens trained on / unique tokens of its training split.

A run past one epoch repeats its data: past a few epochs the validation loss stops following the
scaling laws (Muennighoff et al. 2023), so `train`, `distill` and `sweep run` say so before training.
"""

from __future__ import annotations

from distillscale.data.sources import BUILTIN_PREFIX


def epochs(tokens: int | float, unique_tokens: int) -> float:
    """Passes over the split: tokens seen / unique tokens (inf for an empty split)."""
    return tokens / unique_tokens if unique_tokens else float("inf")


def repetition_warning(tokens: int | float, unique_tokens: int, split: str, corpus: str,
                       runs: str = "the run") -> str | None:
    """One line saying that `runs` will repeat the data, or None when it fits in one epoch."""
    passes = epochs(tokens, unique_tokens)
    if passes <= 1:
        return None
    return (f"{runs} will see {tokens / 1e6:,.3g}M tokens, {passes:.3g} epochs of the {split} split's "
            f"{unique_tokens / 1e6:,.3g}M unique tokens of {corpus}: repeated data bends the loss away "
            f"from the scaling laws; use a larger corpus (--data {BUILTIN_PREFIX}python-env, every Python "
            f"source of this environment, or your own) or fewer tokens")
