"""Choosing the lowest of several objective values so that rounding cannot change the choice.

Two fits of the same problem, or one objective on neighbouring grid points, can differ only in their
last bits, and which bits depends on the CPU (AVX-512 or not, the BLAS kernel, the order of a sum).
`first_lowest` counts values within TIE_RTOL of the lowest as tied and takes the first of them, so
the choice is made by the stated order (the starts' order, the grid's), not by the rounding.
"""

from __future__ import annotations

import numpy as np

# Relative difference of two objective values (sums over up to thousands of runs in float64, each
# term rounded at ~1e-16) below which they are one value computed twice.
TIE_RTOL = 1e-10


def first_lowest(values, axis: int | None = None, rtol: float = TIE_RTOL):
    """Index of the lowest finite value (along `axis`), the first of those within `rtol` (relative)
    of it; NaN and infinities count as +inf (all of them non-finite: index 0)."""
    values = np.asarray(values, float)
    values = np.where(np.isfinite(values), values, np.inf)
    lowest = np.min(values, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        tied = (values <= lowest + rtol * np.abs(lowest)) | (values == lowest)
    index = np.argmax(tied, axis=axis)
    return int(index) if axis is None else index


def rounded(values, rtol: float = TIE_RTOL) -> np.ndarray:
    """Positive values on a log grid of step `rtol`, to sort by (stably, so ties keep their stated
    order): values that differ only by rounding share a step, unless a step's edge falls between
    them (once in about rtol / 1e-16 pairs). Zero and below sort first, NaN last."""
    values = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.floor(np.log(values) / rtol)
    return np.where(values > 0, steps, np.where(np.isnan(values), np.inf, -np.inf))
