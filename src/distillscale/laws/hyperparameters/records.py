"""The records a hyperparameter fit keeps (in the law file's `fit`): each cell's optimum, how the
surface window and the B* form were chosen, and the backtest's scores."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunPoint(_Record):
    """One measured run: its rate, batch (tokens) and loss."""

    lr: float
    batch_tokens: float
    loss: float


class CellOptimum(_Record):
    """A cell's optimum from its surface (the best run's point where the surface is not convex),
    with bootstrap intervals at the law's level (None without resamples, or a batch not varied)."""

    params: float
    tokens: float
    runs: int
    runs_fitted: int
    lr: float
    lr_interval: tuple[float, float] | None
    batch_tokens: float
    batch_interval: tuple[float, float] | None
    loss: float
    convex: bool
    at_edge: bool                       # the surface's minimum lay outside the measured ranges (clamped)
    best_run: RunPoint
    lr_batch_exponent: float | None     # d ln lr* / d ln B along the ridge (Hoffer's sqrt rule: 0.5)
    sqrt_penalty: float | None          # relative loss of the sqrt rule against the ridge, at 4x B*
    beta2: float | None = None          # the setting the surface was fitted at (None: no such column)
    warmup: float | None = None         # warmup steps of that setting (None: no such column)
    settings: int = 1                   # how many (beta2, warmup) settings the cell ran


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


class Selection(_Record):
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

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


class FitSummary(_Record):
    """How a law was fitted: the chosen window and B* form, each cell's optimum, the backtest."""

    window: float | None
    batch_form: str
    selection: Selection
    method: str = "optima"              # how the laws across cells were fitted (laws.hyperparameters.across)
    cells: list[CellOptimum]
    notes: list[str] = []
    sqrt_penalty: float | None = None   # the median over cells of CellOptimum.sqrt_penalty
    backtest: list[CellScore] | None = None
