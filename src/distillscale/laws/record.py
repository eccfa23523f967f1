"""The fit record: how a law was fitted, kept with the law and saved with it in law.json.

    law.fit.form, law.fit.intervals, law.fit.level          # the form fitted, coefficient intervals
    law.fit.data_range, law.fit.extrapolation_error         # where the law was fitted, its error beyond
    law.fit.selection, law.fit.backtest                      # the candidate forms and the chosen one's backtest
    law.fit.not_identified, law.fit.profile                  # coefficients the runs cannot pin down, E's range
    law.fit.bias_correction                                  # the cross-ladder correction beyond the runs

`laws.fitting` writes it, `laws.selection` adds the selection and the backtest, and `LawSet`
saves and loads it as the `fit` of each law in law.json. `schema_version` guards the format: a record
written before it existed loads as version 1, and one from a newer distillscale is refused with a
message instead of being misread.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from distillscale.checks import checked
from distillscale.errors import UserError
from distillscale.laws.crossladder import BiasCorrection
from distillscale.laws.distillation_interval import IntervalScale
from distillscale.laws.pack_interval import CalibratedInterval
from distillscale.laws.schema import Count0, Level, Positive, describe, read_schema_version
from distillscale.laws.uncertainty import ExtrapolationError

# 2: `profile` (the laws the runs allow for a coefficient they cannot pin down).
# 3: `marginal_e` (E marginalized over a grid in the default fit's member forms).
# 4: `bias_correction` (the cross-ladder correction of predictions beyond the runs).
# 5: `bias_correction.family` (a builtin design's own term beside it).
# 6: `interval` (the extrapolation error calibrated across the published ladders).
# 7: `interval.stated` (a published law's own error inside its runs: the presets').
# 8: `interval_scale` (a distillation law's own interval calibrated across corpora).
FIT_SCHEMA_VERSION = 8


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataRange(_Record):
    """The smallest and largest model sizes, token counts and tokens per parameter (D/N) a law
    was fitted on."""

    params: tuple[Positive, Positive]
    tokens: tuple[Positive, Positive]
    tokens_per_param: tuple[Positive, Positive]

    @model_validator(mode="before")
    @classmethod
    def _widest_ratios(cls, data: Any) -> Any:
        """Records from before `tokens_per_param` get the widest ratios their spans allow."""
        if isinstance(data, dict) and data.get("tokens_per_param") is None and "params" in data \
                and "tokens" in data:
            try:
                (n_low, n_high), (d_low, d_high) = data["params"], data["tokens"]
                data = {**data, "tokens_per_param": (d_low / n_high, d_high / n_low)}
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                pass  # the fields' own checks say what is wrong
        return data

    @model_validator(mode="after")
    def _ordered(self) -> "DataRange":
        for name in ("params", "tokens", "tokens_per_param"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} runs from {low:g} down to {high:g}: give [smallest, largest]")
        return self


class Diagnostics(_Record):
    rmse_log_loss: float
    max_relative_error: float
    on_bound: list[str]                  # log-space parameters that ended on a bound of the box
    best_start_on_grid_edge: list[str]   # parameters whose best start was an edge of the grid


class Bootstrap(_Record):
    """The bootstrap's coefficient samples: predictions take their interval from them."""

    resamples: int
    seed: int
    convergence: dict[str, Any]
    coefficients: list[str]          # the columns of `samples`; the law's other coefficients are fixed
    samples: list[list[float]]


class Profile(_Record):
    """The values of a coefficient the runs cannot pin down (`not_identified`) that fit them as well
    as the fitted one (a profile-likelihood interval at `level`), each with the law refitted with
    it held: predictions take the span of these laws into their intervals (`laws.forms`)."""

    coefficient: str
    level: Level
    values: list[float]
    laws: list[dict[str, float]]


class MarginalE(_Record):
    """E marginalized, not fitted (`laws.marginal`, `fit_supervised(marginal_e=True)`): for each member form, E's
    posterior mean and central interval at `level` (nats/token), over a uniform prior on (0,
    `lowest_loss`), with a likelihood that counts the runs' `sizes` distinct model sizes."""

    sizes: Count0
    level: Level
    lowest_loss: Positive
    forms: dict[str, tuple[float, float, float]]  # form -> (mean, low, high)


class Selection(_Record):
    """The candidate forms, each with its backtest score, and why `chosen` won."""

    chosen: str
    reason: str
    candidates: list[dict[str, Any]]


class FitRecord(_Record):
    """What a fitted law records of its fit. Intervals are at `level` (None without a bootstrap);
    `parameters` are the log-space solution; `source` says which file and columns it came from.
    `laws.fitting` fills in every field up to `diagnostics`; a law written by hand may record only
    what it knows (say, an extrapolation error and a data range), so all are optional."""

    schema_version: int = FIT_SCHEMA_VERSION
    form: Literal["chinchilla", "tied", "busbridge", "interaction", "farseer", "distillation", "distillation-tied",
                  "distillation-interaction", "distillation-interaction-tied"] | None = None
    constraints: dict[str, Any] = {}
    objective: str | None = None
    huber_delta: float | None = None
    n_runs: Count0 | None = None
    data_hash: str | None = None
    data_range: DataRange | None = None
    solver: str | None = None
    grid: dict[str, Any] | None = None
    bounds: dict[str, tuple[float, float]] | None = None
    parameters: dict[str, float] = {}
    convergence: dict[str, Any] | None = None
    diagnostics: Diagnostics | None = None
    level: Level | None = None
    intervals: dict[str, tuple[float, float]] = {}
    not_identified: dict[str, str] = {}
    bootstrap: Bootstrap | None = None
    profile: Profile | None = None
    marginal_e: MarginalE | None = None
    selection: Selection | None = None
    backtest: dict[str, Any] | None = None       # the chosen form's backtest (`Backtest.to_dict`)
    extrapolation_error: ExtrapolationError | None = None
    # The cross-ladder bias model and the summary of the fitted runs: predictions beyond them are
    # corrected by it (`laws.crossladder`); None: the law's raw predictions.
    bias_correction: BiasCorrection | None = None
    # The extrapolation part of the intervals calibrated across the published ladders and the summary
    # of the fitted runs (`laws.pack_interval`), in place of the backtest's; None: the backtest's.
    interval: CalibratedInterval | None = None
    # A distillation law's own interval times a factor calibrated across corpora
    # (`laws.distillation_interval`); None: its own interval.
    interval_scale: IntervalScale | None = None
    source: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _level_of_the_intervals(self) -> "FitRecord":
        if self.level is None and (self.bootstrap is not None or self.intervals):
            raise ValueError("level is missing: a record with bootstrap intervals needs their level")
        return self

    def to_json(self, *, bootstrap: bool = True) -> dict[str, Any]:
        """The record as law.json holds it (without the bootstrap samples if `bootstrap` is False)."""
        return self.model_dump(mode="json", exclude_none=True, exclude=None if bootstrap else {"bootstrap"})

    @classmethod
    @checked
    def from_json(cls, data: Any) -> "FitRecord":
        """A record read from law.json; a UserError names what is wrong with a malformed one, or
        says that a newer distillscale wrote it."""
        if not isinstance(data, dict):
            raise UserError(f"fit = {type(data).__name__}: the fit record must be a JSON object")
        version = read_schema_version(data, FIT_SCHEMA_VERSION, "fit.schema_version", "the fit record")
        try:
            return cls.model_validate({**data, "schema_version": version})
        except ValidationError as exc:
            raise UserError(describe(exc, "fit")) from None
