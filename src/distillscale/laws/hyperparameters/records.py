"""The records a hyperparameter fit keeps (in the law file's `fit`): each cell's optimum, how the
surface window and the B* form were chosen, and the backtest's scores."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunPoint(_Record):
    """One measured run: its rate, batch (tokens) and loss."""

    lr: float
    batch_tokens: float
    loss: float


Edge = Literal["below", "above"]


class CellOptimum(_Record):
    """A cell's optimum from its surface (the best run's point where the surface is not convex),
    with bootstrap intervals at the law's level (None without resamples, or a batch not varied).

    An optimum the grid did not bracket (`lr_edge`, `batch_edge`: it lies "below" the smallest
    value the cell measured or "above" the largest) is clamped there and its interval is one-sided,
    None on the open side: lr* <= the smallest rate is (None, smallest). An interval end a resample
    reached the edge at is open too. `located`: whether the law was fitted through this cell (the
    rate inside the rates, and B* inside the batches where the cell varied them); a cell with 2
    batch sizes cannot locate B* (`batch_located` False) and its rate is at its best run's batch."""

    params: float
    tokens: float
    runs: int
    runs_fitted: int
    lr: float
    lr_interval: tuple[float | None, float | None] | None
    batch_tokens: float
    batch_interval: tuple[float | None, float | None] | None
    loss: float
    convex: bool
    at_edge: bool                       # the surface's minimum lay outside the measured ranges (clamped)
    best_run: RunPoint
    lr_batch_exponent: float | None     # d ln lr* / d ln B along the ridge (Hoffer's sqrt rule: 0.5)
    sqrt_penalty: float | None          # relative loss of the sqrt rule against the ridge, at 4x B*
    beta2: float | None = None          # the setting the surface was fitted at (None: no such column)
    warmup: float | None = None         # warmup steps of that setting (None: no such column)
    settings: int = 1                   # how many (beta2, warmup) settings the cell ran
    lr_edge: Edge | None = None         # lr* lies beyond the cell's rates on this side (clamped there)
    batch_edge: Edge | None = None      # B* lies beyond the cell's batch sizes on this side (clamped there)
    batch_located: bool = True          # False: B* not located (2 batch sizes, beyond them, or not varied)
    located: bool = True                # the law was fitted through this cell's optimum

    def describe(self) -> str | None:
        """One line for an optimum the grid did not locate ("lr* <= 0.0016 (beyond the grid's
        smallest rate)"), None for a located one."""
        parts = []
        if self.lr_edge is not None:
            sign, end = ("<=", "smallest") if self.lr_edge == "below" else (">=", "largest")
            parts.append(f"lr* {sign} {self.lr:.3g} (beyond the grid's {end} rate)")
        if self.batch_edge is not None:
            sign, end = ("<=", "smallest") if self.batch_edge == "below" else (">=", "largest")
            parts.append(f"B* {sign} {self.batch_tokens:,.0f} tokens (beyond the grid's {end} batch)"
                         + (f"; lr {self.lr:.3g} is the best rate at that batch" if self.lr_edge is None else ""))
        elif not self.located and self.lr_edge is None:   # B* not located: fewer than 3 batch sizes
            parts.append(f"B* not located (too few batch sizes); lr {self.lr:.3g} is the best rate at its best "
                         f"run's batch, {self.batch_tokens:,.0f} tokens")
        return "; ".join(parts) or None


class SettingChoice(_Record):
    """A setting besides lr and batch (beta2, warmup steps) as the law carries it: `value`, the one
    its recommendation uses, chosen by `cells` of the `of_cells` cells (their best runs' setting);
    not `varied`: every run used it, a condition the law holds under."""

    value: float
    cells: int
    of_cells: int
    varied: bool

    def describe(self, name: str) -> str:
        value = f"{self.value:g}" + (" steps" if name == "warmup" else "")
        if not self.varied:
            return f"{name} {value} (every run: the law holds at it)"
        return f"{name} {value} (the best in {self.cells} of {self.of_cells} cells)"


class WindowCandidate(_Record):
    """A way of fitting the laws across cells (`method`, laws.hyperparameters.across), a surface
    window and a B* form, with its leave-one-cell-out score (relative loss penalties)."""

    window: float | None
    batch_form: str
    mean_penalty: float
    max_penalty: float
    method: str = "optima"              # files written before the methods existed fitted through the optima


class WindowSelection(_Record):
    """The surface window and B* form a fit chose, why, and each candidate's score."""

    window: float | None
    batch_form: str
    reason: str
    method: str = "optima"
    candidates: list[WindowCandidate] = []


class CellScore(_Record):
    """How a law's recommendation fared on one measured cell: the loss of the run nearest it in
    (ln lr, ln B) against the cell's best run (`penalty`, relative), and the recommendation against
    the cell's own optimum (`lr_ratio`, `batch_ratio`)."""

    params: float
    tokens: float
    lr: float
    batch_tokens: float
    optimum_lr: float
    optimum_batch_tokens: float
    lr_ratio: float
    batch_ratio: float
    best_loss: float
    nearest_loss: float
    penalty: float
    lr_batch_exponent: float | None
    beta2: float | None = None          # the setting the nearest run was taken at (None: no such column)
    warmup: float | None = None
    optimum_located: bool = True        # False: the cell's optimum lies beyond its grid (the ratios are to its edge)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


class GridFit(_Record):
    """How a law was fitted: the chosen window and B* form, each cell's optimum, the backtest."""

    window: float | None
    batch_form: str
    selection: WindowSelection
    method: str = "optima"              # how the laws across cells were fitted (laws.hyperparameters.across)
    cells: list[CellOptimum]
    notes: list[str] = []
    sqrt_penalty: float | None = None   # the median over cells of CellOptimum.sqrt_penalty
    backtest: list[CellScore] | None = None
