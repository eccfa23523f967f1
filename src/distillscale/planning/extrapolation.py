"""Where a law can be trusted: the parameter and token ranges of the runs behind it.

A fitted law records its data range in its `fit` metadata; for the published presets the ranges
below are read from the papers, roughly. Plans far outside them are extrapolations and say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from distillscale.laws import LawSet
from distillscale.units import format_quantity

# How far beyond the data a quantity may go before the warning: a law extrapolates reasonably
# over a few-fold (Busbridge et al. report ~1% error from weaker to stronger models).
FAR_BEYOND = 10.0


@dataclass(frozen=True)
class DataRange:
    """The smallest and largest model sizes and token counts the law was fitted on."""

    params: tuple[float, float]
    tokens: tuple[float, float]


PUBLISHED_RANGES = {
    # Busbridge et al. 2025: models 143M..12.6B; teachers up to 512B tokens, students at 20..320
    # tokens per parameter.
    "busbridge2025": DataRange(params=(143e6, 12.6e9), tokens=(2.86e9, 1e12)),
    # Hoffmann et al. 2022: 70M..16B parameters, 5B..500B tokens (Epoch refit the same runs).
    "chinchilla2022": DataRange(params=(70e6, 16e9), tokens=(5e9, 500e9)),
    "epoch2024": DataRange(params=(70e6, 16e9), tokens=(5e9, 500e9)),
}


def data_range(laws: LawSet) -> DataRange | None:
    """The fitted data range of the supervised law, or the published one of a preset."""
    fit = laws.supervised.fit if laws.supervised is not None else None
    recorded = (fit or {}).get("data_range")
    if recorded:
        return DataRange(params=tuple(recorded["params"]), tokens=tuple(recorded["tokens"]))
    return PUBLISHED_RANGES.get(laws.name)


def extrapolation_warnings(laws: LawSet, params: dict[str, float | None],
                           tokens: dict[str, float | None]) -> list[str]:
    """One message per named quantity lying more than FAR_BEYOND times outside the data range."""
    known = data_range(laws)
    if known is None:
        return []
    messages = []
    for kind, quantities, (low, high) in (("parameters", params, known.params),
                                          ("tokens", tokens, known.tokens)):
        for name, value in quantities.items():
            if value is None or low / FAR_BEYOND <= value <= high * FAR_BEYOND:
                continue
            side = f"above the largest ({format_quantity(high)})" if value > high else \
                f"below the smallest ({format_quantity(low)})"
            messages.append(
                f"{name} ({format_quantity(value)} {kind}) is far {side} in the data behind law "
                f"{laws.name!r}: the prediction is an extrapolation")
    return messages
