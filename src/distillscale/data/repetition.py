"""How often a run sees its data: epochs = tokens trained on / unique tokens of its training split.

The unique tokens are those one epoch of the sampler's windows predicts (`epoch_tokens`: the split
cut into windows of seq_len + 1 tokens on a grid of seq_len, the last partial window left out), and
the sampler (`data.sampler.TokenSampler`) draws each window once per epoch, so a run recorded as e
epochs has seen each window floor(e) or ceil(e) times, never a window twice before all were seen.

A run past one epoch repeats its data: past a few epochs the validation loss stops following the
scaling laws (Muennighoff et al. 2023), so `train`, `distill` and `sweep run` say so before training.

A run can also repeat data on purpose, to measure what repetition costs: `unique_tokens` (the
`--unique-tokens` setting of `train` and `distill`) restricts it to a fixed subset of its split, so
the runs of a repetition sweep draw their D tokens from D / U passes over the same U tokens. The
subset is a random sample of the split, not its first U tokens (which are the first files of the
corpus in its reading order, e.g. alphabetical, and unlike the rest of it): the split cut into
SUBSET_CHUNK-token chunks, the chunks in a fixed random order (seed SUBSET_SEED, the same for every
run), the first U + 1 tokens of that order (U tokens predicted: windows of seq_len + 1 tokens share
their boundary token). Subsets of different U are nested.
"""

from __future__ import annotations

import numpy as np

from distillscale.data.sources import BUILTIN_PREFIX
from distillscale.errors import UserError
from distillscale.units import format_count


def grid_windows(n_tokens: int, seq_len: int) -> int:
    """Windows of `seq_len + 1` tokens on the `seq_len` grid of a split of `n_tokens` tokens."""
    return max(0, (n_tokens - 1) // seq_len)


def epoch_tokens(n_tokens: int, seq_len: int) -> int:
    """The unique tokens of a split of `n_tokens` to a training run: those one epoch of its windows
    predicts (the last partial window is left out), so that epochs = tokens trained on / these."""
    return grid_windows(n_tokens, seq_len) * seq_len


def epochs(tokens: int | float, unique_tokens: int) -> float:
    """Passes over the split: tokens seen / unique tokens (inf for an empty split)."""
    return tokens / unique_tokens if unique_tokens else float("inf")


def repetition_warning(tokens: int | float, unique_tokens: int, split: str, corpus: str,
                       runs: str = "the run", subset: int | None = None) -> str | None:
    """One line saying that `runs` will repeat the data, or None when it fits in one epoch; `subset`: the
    --unique-tokens asked for (a fixed subset of the split, `unique_subset`), said where whole windows
    round it down to `unique_tokens`."""
    passes = epochs(tokens, unique_tokens)
    if passes <= 1:
        return None
    if subset is not None:
        return (f"{runs} will see {format_count(tokens)} tokens, {passes:.3g} epochs of the fixed subset of "
                f"{format_count(unique_tokens)} unique tokens of the {split} split (--unique-tokens"
                + ("" if subset == unique_tokens else f" {format_count(subset)}, in whole windows") + ")")
    return (f"{runs} will see {format_count(tokens)} tokens, {passes:.3g} epochs of the {split} split's "
            f"{format_count(unique_tokens)} unique tokens of {corpus}: repeated data bends the loss away "
            f"from the scaling laws; use a larger corpus (--data {BUILTIN_PREFIX}python-env, every Python "
            f"source of this environment, or your own) or fewer tokens")


def rounded_subset_note(asked: int | None, unique_tokens: int, seq_len: int) -> str | None:
    """What --unique-tokens `asked` becomes: whole windows of `seq_len` (`epoch_tokens`), said where
    that is fewer (100 -> 64 at --seq-len 64; 1.5K -> 1,472); None where nothing is rounded."""
    if asked is None or asked == unique_tokens:
        return None
    return (f"--unique-tokens {format_count(asked)} trains on {format_count(unique_tokens)} unique tokens: whole windows "
            f"of --seq-len {seq_len} (give a multiple of {seq_len} to train on exactly that many)")


# Chunks of the split that a subset samples (8 windows of 128 tokens), and the seed of their order.
SUBSET_CHUNK = 1024
SUBSET_SEED = 0


def unique_subset(tokens: np.ndarray, unique_tokens: int | None, split: str) -> np.ndarray:
    """The fixed subset a run trains on: `unique_tokens` + 1 tokens of the split's `tokens` (its
    windows predict `unique_tokens` of them) drawn as SUBSET_CHUNK-token chunks in a fixed random
    order (all of `tokens` when None); a one-line UserError when the split holds fewer."""
    if unique_tokens is None:
        return tokens
    if unique_tokens + 1 > len(tokens):
        raise UserError(f"--unique-tokens {unique_tokens:,} is more than the {split} split's {len(tokens) - 1:,} "
                        f"tokens to predict: use at most {len(tokens) - 1:,}, or a larger corpus")
    starts = np.arange(0, len(tokens), SUBSET_CHUNK)
    order = starts[np.random.default_rng(SUBSET_SEED).permutation(len(starts))]
    pieces, total = [], 0
    for start in order:
        pieces.append(tokens[start:start + SUBSET_CHUNK])
        total += len(pieces[-1])
        if total > unique_tokens:
            break
    return np.concatenate(pieces)[:unique_tokens + 1]
