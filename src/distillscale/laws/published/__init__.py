"""A validation pack of published language-model training runs: final validation loss with model
size and tokens, from others' papers and their released data, for testing how laws extrapolate.

    from distillscale.laws import published
    published.names()                      # ('epoch2024_chinchilla', 'gadre2024_c4', ...)
    published.family("gadre2024_c4")       # 'gadre2024': the sets that leave out together
    runs = published.load("gadre2024_c4")  # PublishedRuns: .runs (a DataFrame), .provenance, ...
    runs.runs[["params", "tokens", "loss"]]

Each set lives in a folder beside this module with `runs.csv` and `PROVENANCE.md` (source
repository and commit, licence, how the rows were extracted, what N counts). Every table has the
columns `params` (N without embeddings where the source gives it; see `params_counts`),
`total_params` (N with them), `tokens` (D) and `loss` (nats/token), one row per finished run; the
sets of runs that repeat their data (`repeated_names()`) add `unique_tokens` (U) and `epochs` (D / U)
and are left out of `names()` (the supervised ladders).
`epoch2024_chinchilla` is not stored here: it is read from ../shared/data (or $DISTILLSCALE_SHARED)
when that reference data sits beside the checkout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from distillscale.errors import UserError

HERE = Path(__file__).resolve().parent

# What `params` counts in each set (the provenance file says how it was derived).
PARAMS_COUNTS = {
    "epoch2024_chinchilla": "total (Hoffmann et al. count embeddings; the source has no other count)",
    "gadre2024_c4": "non-embedding",
    "gadre2024_redpajama": "non-embedding",
    "gadre2024_refinedweb": "non-embedding",
    "porian2024_openwebtext2": "non-embedding",
    "porian2024_refinedweb": "non-embedding",
    "muennighoff2023_c4": "total (embeddings included; the source has no other count)",
    "porian2024_openwebtext2_tuned": "non-embedding",
    "porian2024_refinedweb_tuned": "non-embedding",
    "marin2026_comma": "non-embedding",
    "marin2026_dclm": "non-embedding",
    "marin2026_nemotron": "non-embedding",
    "li2025_fineweb": "non-embedding",
}
# Sets of runs that repeat their data: each row also has unique_tokens (U) and epochs (D / U).
REPEATED = ("muennighoff2023_c4",)
EPOCH_FILE = "chinchilla_fig4_epoch_extracted.csv"


@dataclass(frozen=True)
class PublishedRuns:
    """One published set of runs: `runs` has params, total_params, tokens, loss (and the source's
    own columns); `provenance` is the text of its PROVENANCE.md."""

    name: str
    runs: pd.DataFrame = field(repr=False)
    provenance: str = field(repr=False)
    params_counts: str
    path: Path

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def repeated(self) -> bool:
        """Whether the runs repeat their data (the table has `unique_tokens`)."""
        return "unique_tokens" in self.runs

    def columns(self, params: str = "params"):
        """(N, D, loss) as float arrays; `params="total_params"` for N with embeddings."""
        return (self.runs[params].to_numpy(float), self.runs["tokens"].to_numpy(float),
                self.runs["loss"].to_numpy(float))


def shared_dir() -> Path:
    """The reference data beside the checkout: $DISTILLSCALE_SHARED, else ../shared."""
    return Path(os.environ.get("DISTILLSCALE_SHARED", HERE.parents[4] / "shared"))


def names(*, available: bool = False) -> tuple[str, ...]:
    """Every supervised ladder's name (not the sets that repeat data: `repeated_names()`); with
    `available`, only those that can be loaded here."""
    every = tuple(sorted(set(PARAMS_COUNTS) - set(REPEATED)))
    if not available:
        return every
    return tuple(n for n in every if n != "epoch2024_chinchilla" or (shared_dir() / "data" / EPOCH_FILE).is_file())


def family(name: str) -> str:
    """The family of ladders a set belongs to: the sets of one source (one paper's or project's recipe
    on several corpora, or at two settings) share it, so that a set is never scored by what its
    siblings taught (leave one family out): the name's source part, before its first underscore
    (gadre2024: its three corpora; marin2026: three; porian2024: four; epoch2024 and li2025 alone)."""
    return name.split("_", 1)[0]


def repeated_names() -> tuple[str, ...]:
    """The sets of runs that repeat their data (columns unique_tokens and epochs as well)."""
    return REPEATED


def load(name: str) -> PublishedRuns:
    """The runs of one published set (see `names()`), sorted by params then tokens."""
    if not isinstance(name, str) or name not in PARAMS_COUNTS:
        raise UserError(f"unknown published set {name!r}: use one of {', '.join(names() + REPEATED)}")
    folder = HERE / name
    provenance = (folder / "PROVENANCE.md").read_text(encoding="utf-8")
    if name == "epoch2024_chinchilla":
        source = shared_dir() / "data" / EPOCH_FILE
        if not source.is_file():
            raise UserError(f"{name} is read from {source}, which is absent: put the reference data "
                            "there or set DISTILLSCALE_SHARED to its folder")
        raw = pd.read_csv(source)
        # Epoch's own analysis drops the five highest losses (outliers of the plot extraction).
        raw = raw.drop(index=raw["loss"].nlargest(5).index)
        n = raw["Model Size"].astype(float)
        runs = pd.DataFrame({"params": n, "total_params": n, "tokens": raw["Training FLOP"] / (6 * n),
                             "flops": raw["Training FLOP"], "loss": raw["loss"]})
    else:
        runs = pd.read_csv(folder / "runs.csv")
    runs = runs.sort_values(["params", "tokens"], kind="stable").reset_index(drop=True)
    return PublishedRuns(name, runs, provenance, PARAMS_COUNTS[name], folder)
