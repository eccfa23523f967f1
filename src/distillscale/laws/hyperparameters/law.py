"""A hyperparameter law: the optimal peak learning rate and batch size (tokens) as power laws in N
(non-embedding parameters) and D (training tokens), with intervals, and what it knows of the surface
around the optimum (the batch exponent of the optimal rate, the loss's rise along the ridge, the
loss's slope in D) for the rate and the loss at a batch other than B*.

    law = load_hyperparameter_law("steplaw2025")          # a preset, or a file `fit hyperparameters` wrote
    rec = law.recommend(1e9, 20e9)                          # Recommendation: lr, batch_tokens, intervals
    rec = law.recommend(1e9, 20e9, batch_tokens=4e6)        # the lr at that batch, its loss penalty
    law.at_batch(1e9, 20e9, 4e6)                            # BatchAdaptation
    law.save("hp.json")

A law file carries `format` and `schema_version`; a newer or malformed file is refused in one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, SkipValidation, ValidationError, model_validator

from distillscale.checks import checked
from distillscale.errors import ParameterError, UserError
from distillscale.io import atomic_write_json, read_text_file
from distillscale.laws.hyperparameters.records import GridFit, SettingChoice
from distillscale.laws.hyperparameters.rates import PEAK, LrUnit
from distillscale.laws.schema import describe, read_schema_version
from distillscale.rules import lr_at_batch

HYPERPARAMETER_SCHEMA_VERSION = 2   # 2: lr_unit, what the law's rate is (laws.hyperparameters.rates)
FORMAT = "distillscale hyperparameter law"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FAR_FACTOR = 2.0   # a recommendation this far outside the law's N or D says so (`Recommendation.notes`)
# Where a law does not say how its batch exponent of the optimal rate spreads (fitted on one cell, or
# a file from before): the spread of the cells' exponents around their median on Step Law's public
# grid (15 cells: 0.22-0.67 around 0.40, docs/guides/hyperparameters.md), as offsets from the exponent.
BATCH_EXPONENT_SPREAD = (-0.18, 0.27)
DATA_RANGE_KEYS = ("params", "tokens", "batch_tokens", "compute")   # compute: C = 6 N D, in FLOPs


class PowerLaw(_Record):
    """value = coefficient * N^exponents[0] * D^exponents[1]; its uncertainty in ln space: the
    covariance of (ln coefficient, exponent N, exponent D) plus the scatter of the cells around it
    (`residual_sd`), so an interval is where the optimum of a new cell may lie. An exponent the
    cells could not identify (`not_identified`: "N", "D"; their runs did not vary it beyond the
    others) is held at 0 with a stated prior spread in the covariance, so the interval widens with
    the distance from the data along it."""

    coefficient: float
    exponents: tuple[float, float]
    covariance: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]] = (
        (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    residual_sd: float = 0.0
    not_identified: tuple[Literal["N", "D"], ...] = ()

    def __call__(self, params: float, tokens: float) -> float:
        with np.errstate(all="ignore"):   # in logs: a value beyond float range is inf, not an error
            return float(np.exp(np.log(self.coefficient) + self.exponents[0] * np.log(params)
                                + self.exponents[1] * np.log(tokens)))

    def interval(self, params: float, tokens: float, level: float) -> tuple[float, float]:
        """The central interval at `level` of the optimum at (N, D)."""
        design = np.array([1.0, math.log(params), math.log(tokens)])
        with np.errstate(all="ignore"):
            sd = float(np.sqrt(max(float(design @ np.array(self.covariance) @ design), 0.0) + self.residual_sd ** 2))
            # The stdlib's normal quantile: scipy.stats would add a second to every training process's start.
            z = NormalDist().inv_cdf(0.5 + level / 2) if level < 1 else math.inf
            value = self(params, tokens)
            return float(value * np.exp(-z * sd)), float(value * np.exp(z * sd))

    @property
    def finite(self) -> bool:
        return bool(np.isfinite([self.coefficient, *self.exponents, self.residual_sd]).all()
                    and np.isfinite(self.covariance).all() and self.coefficient > 0)

    @property
    def problem(self) -> str | None:
        """What makes the law unusable (None: nothing): a non-finite or non-positive coefficient,
        a negative spread or variance."""
        if not self.finite:
            return "coefficient, exponents and spread must be finite, the coefficient positive"
        if self.residual_sd < 0 or min(np.diag(np.array(self.covariance))) < 0:
            return "residual_sd and the covariance's variances (its diagonal) must be 0 or more"
        return None


class BatchAdaptation(_Record):
    """A batch the user fixed (not B*): the rate to use there (the law's
    batch exponent, not a fixed square root), the loss penalty at the same tokens against B*, and
    the tokens that recover it. A field the law cannot give is None and `notes` says why."""

    batch_tokens: float
    optimal_batch_tokens: float
    lr: float
    lr_batch_exponent: float
    loss_penalty: float | None        # relative (0.01 = 1%) at the same tokens
    extra_tokens_factor: float | None  # tokens x this factor recover the penalty
    extra_tokens: float | None
    notes: SkipValidation[list[str]] = []   # kept as given: a note outside the data is an `OutsideData`


class Recommendation(_Record):
    """The peak learning rate and batch size (tokens) a law recommends at (N, D), with intervals at
    `level`; at a batch the user fixed, `adaptation` and the loss `penalty` there."""

    law: str
    params: float
    tokens: float
    lr: float                                      # in `lr_unit` (the law's: `rates.train_lr` makes it a --lr)
    lr_interval: tuple[float, float]
    batch_tokens: float
    batch_interval: tuple[float, float] | None     # None: the batch is the user's, or the law's only one
    optimal_batch_tokens: float | None             # B* (None: the law was fitted at one batch)
    lr_batch_exponent: float | None                # d ln lr* / d ln B (Hoffer's sqrt rule: 0.5)
    penalty: float | None                          # relative loss penalty of the batch against B*
    level: float
    adaptation: BatchAdaptation | None = None
    extrapolation: float = 1.0                     # how far (N, D) lies outside the law's data, as a factor
    beta2: float | None = None                     # AdamW beta2 the law's runs chose or held (None: unknown)
    warmup: float | None = None                    # warmup steps the law's runs chose or held (None: unknown)
    notes: SkipValidation[list[str]] = []          # kept as given: a note outside the data is an `OutsideData`
    lr_unit: LrUnit = PEAK                         # what `lr` is: the law's unit

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class HyperparameterLaw(_Record):
    """lr*(N, D) and B*(N, D), with the surface facts a batch other than B* needs (None when unknown).
    When the runs did not vary the batch within a cell, `batch` is None and the lr law is for the
    batch the runs used: `fixed_batch_tokens` (one batch throughout) or `batch_used` (each size its
    own batch: a power law through the cells' batches, a description of the runs, not an optimum)."""

    format: Literal["distillscale hyperparameter law"] = FORMAT
    schema_version: int = HYPERPARAMETER_SCHEMA_VERSION
    name: str
    source: str
    lr_unit: LrUnit                                   # what `lr` is: the hidden matrices' peak, or muP's base --lr
    lr: PowerLaw
    batch: PowerLaw | None = None
    fixed_batch_tokens: float | None = None
    batch_used: PowerLaw | None = None
    level: float = 0.9
    lr_batch_exponent: float | None = None            # the median over cells of d ln lr* / d ln B
    lr_batch_exponent_interval: tuple[float, float] | None = None
    ridge_curvature: float | None = None              # relative loss per (ln B - ln B*)^2 along the ridge
    loss_tokens_exponent: float | None = None         # d ln L* / d ln D at fixed N, from the cells' best losses
    data_range: dict[str, tuple[float, float]] | None = None
    fit: GridFit | None = None                        # how it was fitted: cells, selection, backtest
    beta2: SettingChoice | None = None                # AdamW beta2 of its runs (None: not recorded)
    warmup: SettingChoice | None = None               # warmup steps of its runs (None: not recorded)

    @property
    def conditions(self) -> list[str]:
        """The settings the law carries, each with whether the runs chose it or held it."""
        return [choice.describe(name) for name, choice in (("beta2", self.beta2), ("warmup", self.warmup))
                if choice is not None]

    @model_validator(mode="after")
    def _usable(self) -> "HyperparameterLaw":
        """Every field a recommendation reads is checked here, when the law is made or loaded: a
        file that loads gives a recommendation or says in one line why it cannot."""
        for field, law in (("lr", self.lr), ("batch", self.batch), ("batch_used", self.batch_used)):
            if law is not None and law.problem is not None:
                raise ValueError(f"{field}: {law.problem}")
        for field, value in (("lr_batch_exponent", self.lr_batch_exponent),
                             ("loss_tokens_exponent", self.loss_tokens_exponent)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{field} must be a finite number (or absent), got {value!r}")
        if self.ridge_curvature is not None and not (math.isfinite(self.ridge_curvature)
                                                     and self.ridge_curvature >= 0):
            raise ValueError(f"ridge_curvature must be 0 or more (the loss rises away from B* along the ridge), "
                             f"got {self.ridge_curvature!r}")
        interval = self.lr_batch_exponent_interval
        if interval is not None and not (all(math.isfinite(v) for v in interval) and interval[0] <= interval[1]):
            raise ValueError(f"lr_batch_exponent_interval must be two finite numbers, low first, got {list(interval)}")
        for key, bounds in (self.data_range or {}).items():
            if key not in DATA_RANGE_KEYS:
                raise ValueError(f"data_range has an unknown key {key!r}: its keys are {', '.join(DATA_RANGE_KEYS)}")
            if not (all(math.isfinite(v) for v in bounds) and 0 < bounds[0] <= bounds[1]):
                raise ValueError(f"data_range {key} must be two positive numbers, low first, got {list(bounds)}")
        if sum(v is not None for v in (self.batch, self.fixed_batch_tokens, self.batch_used)) != 1:
            raise ValueError("give one of batch (a B* law), fixed_batch_tokens (the one batch the runs used) or "
                             "batch_used (the batch the runs used at each size)")
        if self.fixed_batch_tokens is not None and not (math.isfinite(self.fixed_batch_tokens)
                                                        and self.fixed_batch_tokens > 0):
            raise ValueError("fixed_batch_tokens must be a positive number of tokens")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be between 0 and 1, got {self.level!r}")
        return self

    def recommend(self, params: float, tokens: float, batch_tokens: float | None = None) -> Recommendation:
        """The recommended peak lr and batch at N non-embedding parameters and D tokens; with
        `batch_tokens`, the lr at that batch (`at_batch`) and its loss penalty."""
        params, tokens = _positive("params", params), _positive("tokens", tokens)
        lr, lr_interval = self.lr(params, tokens), self.lr.interval(params, tokens, self.level)
        factor, where = self.extrapolation(params, tokens)
        recommendation = self._recommend(params, tokens, batch_tokens, lr, lr_interval)
        return recommendation.model_copy(update={"extrapolation": factor, "lr_unit": self.lr_unit,
                                                 "beta2": None if self.beta2 is None else self.beta2.value,
                                                 "warmup": None if self.warmup is None else self.warmup.value,
                                                 "notes": [where] * bool(where) + recommendation.notes})

    def extrapolation(self, params: float, tokens: float) -> tuple[float, str | None]:
        """How far (N, D) lies outside the N, D (and compute C = 6 N D, where the law gives its range)
        the law was fitted on: the largest factor (1 inside, or when the law does not say its data),
        and a note when it is beyond FAR_FACTOR."""
        values = {"params": params, "tokens": tokens, "compute": 6 * params * tokens}
        factors = {}
        for key, value in values.items():
            low, high = (self.data_range or {}).get(key, (0.0, math.inf))
            factors[key] = low / value if value < low else value / high if value > high else 1.0
        key = max(factors, key=lambda name: factors[name])
        factor = factors[key]
        if factor <= FAR_FACTOR:
            return factor, None
        from distillscale.laws.extrapolation import FAR_BEYOND, beyond_data

        value, (low, high) = values[key], self.data_range[key]
        name, kind = {"params": ("N", "parameters"), "tokens": ("D", "tokens"), "compute": ("C = 6ND", "FLOPs")}[key]
        return factor, beyond_data(name, value, kind, low, high, self.name, "the rate (and batch)",
                                   far=factor > FAR_BEYOND)

    def _recommend(self, params: float, tokens: float, batch_tokens: float | None, lr: float,
                   lr_interval: tuple[float, float]) -> Recommendation:
        notes: list[str] = []
        if self.batch is None:
            used = self.fixed_batch_tokens if self.batch_used is None else self.batch_used(params, tokens)
            if batch_tokens is not None and not math.isclose(batch_tokens, used, rel_tol=1e-6):
                raise ParameterError("batch_tokens", f"{{}}: this law's runs did not vary the batch within a cell "
                                     f"or did not locate B* (its rate is at {used:.4g} tokens at this size), so it "
                                     "cannot say the rate at another; leave the batch out, or fit runs at 3 or more "
                                     "batch sizes that bracket B*")
            notes.append(f"the law's runs did not vary the batch or did not locate B*: the lr is for the batch it was "
                         f"fitted at, {used:.4g} tokens"
                         + (" at this size (not an optimum)" if self.batch_used is not None else ""))
            return Recommendation(law=self.name, params=params, tokens=tokens, lr=lr, lr_interval=lr_interval,
                                  batch_tokens=used, batch_interval=None, optimal_batch_tokens=None,
                                  lr_batch_exponent=None, penalty=None, level=self.level, notes=notes)
        optimal = self.batch(params, tokens)
        if batch_tokens is None:
            return Recommendation(law=self.name, params=params, tokens=tokens, lr=lr, lr_interval=lr_interval,
                                  batch_tokens=optimal, batch_interval=self.batch.interval(params, tokens, self.level),
                                  optimal_batch_tokens=optimal, lr_batch_exponent=self.lr_batch_exponent,
                                  penalty=0.0, level=self.level, notes=notes)
        adaptation = self.at_batch(params, tokens, batch_tokens)
        return Recommendation(law=self.name, params=params, tokens=tokens, lr=adaptation.lr,
                              lr_interval=self._adapted_interval(lr, lr_interval, adaptation),
                              batch_tokens=adaptation.batch_tokens, batch_interval=None, optimal_batch_tokens=optimal,
                              lr_batch_exponent=self.lr_batch_exponent, penalty=adaptation.loss_penalty,
                              level=self.level, adaptation=adaptation, notes=adaptation.notes)

    @property
    def batch_exponent_interval(self) -> tuple[float, float] | None:
        """Where a new cell's batch exponent of the optimal rate may lie: the law's interval, or
        BATCH_EXPONENT_SPREAD around its exponent where it does not say (None: no exponent)."""
        if self.lr_batch_exponent is None:
            return None
        if self.lr_batch_exponent_interval is not None:
            return self.lr_batch_exponent_interval
        return tuple(self.lr_batch_exponent + offset for offset in BATCH_EXPONENT_SPREAD)

    def _adapted_interval(self, lr: float, lr_interval: tuple[float, float],
                          adaptation: BatchAdaptation) -> tuple[float, float]:
        """The interval of the rate at the user's batch: the law's interval of lr* moved with the
        rate, widened (in ln space, in quadrature: two independent spreads at one level) by where
        the batch exponent may lie times ln(B / B*). B*'s own uncertainty is left out: lr* and B*
        err together along the ridge (a cell's optimum is loosest there), and along it the rate at
        a fixed batch does not move."""
        step = math.log(adaptation.batch_tokens / adaptation.optimal_batch_tokens)
        moved = [math.log(lr / lr_interval[0]), math.log(lr_interval[1] / lr)]
        shifts = [(bound - self.lr_batch_exponent) * step for bound in self.batch_exponent_interval]
        below = math.hypot(moved[0], max(0.0, -min(shifts)))
        above = math.hypot(moved[1], max(0.0, max(shifts)))
        return adaptation.lr * math.exp(-below), adaptation.lr * math.exp(above)

    def at_batch(self, params: float, tokens: float, batch_tokens: float) -> BatchAdaptation:
        """At a batch the user fixed (say, above B* to fill many GPUs): the rate to use there, the
        loss penalty at the same tokens and the extra tokens that recover it."""
        params, tokens = _positive("params", params), _positive("tokens", tokens)
        batch_tokens = _positive("batch_tokens", batch_tokens)
        if self.batch is None:
            raise UserError(f"law {self.name}'s runs did not vary the batch or did not locate B*: it has no B* or "
                            "batch exponent to adapt the rate to another batch; fit runs at 3 or more batch sizes "
                            "that bracket B*")
        if self.lr_batch_exponent is None:
            raise UserError(f"law {self.name} has no measured batch exponent of the optimal rate: it cannot "
                            "adapt the rate to another batch; fit your own lr x batch grid")
        optimal = self.batch(params, tokens)
        step = math.log(batch_tokens / optimal)
        lr = lr_at_batch(self.lr(params, tokens), batch_tokens, optimal, self.lr_batch_exponent)
        notes, penalty, factor = [], None, None
        low, high = (self.data_range or {}).get("batch_tokens", (0.0, math.inf))
        if not low * (1 - 1e-9) <= batch_tokens <= high * (1 + 1e-9):
            side, far = ("above", batch_tokens / high) if batch_tokens > high else ("below", low / batch_tokens)
            from distillscale.laws.extrapolation import OutsideData

            extrapolated = "the rate's batch exponent" + (" and the loss penalty kappa (ln B/B*)^2" if
                                                          self.ridge_curvature is not None else "")
            notes.append(OutsideData(f"the batch {batch_tokens:,.0f} tokens is {far:.3g}x {side} the batches law "
                                     f"{self.name}'s cells measured ({low:,.0f}-{high:,.0f} tokens): {extrapolated} "
                                     f"{'are' if self.ridge_curvature is not None else 'is'} extrapolated there",
                                     self.name, side, far, "batches", "the rate's batch exponent extrapolated"))
        if self.ridge_curvature is None:
            notes.append(f"law {self.name} has no loss surface: it cannot give the loss penalty of this batch")
        else:
            penalty = self.ridge_curvature * step * step
            if self.loss_tokens_exponent is None or self.loss_tokens_exponent >= 0:
                notes.append(f"law {self.name} has no loss-vs-tokens slope (its runs had one D per N): it "
                             "cannot give the tokens that recover the penalty")
            else:
                factor = (1 + penalty) ** (-1 / self.loss_tokens_exponent)
        return BatchAdaptation(batch_tokens=batch_tokens, optimal_batch_tokens=optimal, lr=lr,
                                lr_batch_exponent=self.lr_batch_exponent, loss_penalty=penalty,
                                extra_tokens_factor=factor,
                                extra_tokens=None if factor is None else tokens * (factor - 1), notes=notes)

    def save(self, path: str | Path) -> Path:
        """Write the law as JSON (atomically), readable by `load_hyperparameter_law` and `--law FILE`."""
        atomic_write_json(path, self.model_dump(mode="json"))
        return Path(path)

    @classmethod
    @checked
    def load(cls, path: str | Path) -> "HyperparameterLaw":
        """A law file `save` wrote; a malformed or newer one is refused in one line."""
        text = read_text_file(path, "hyperparameter law")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not JSON ({exc.msg}, line {exc.lineno}): give a file "
                            "`distillscale fit hyperparameters --out` wrote") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path} is not a hyperparameter law: give a file `distillscale fit hyperparameters "
                            "--out` wrote, or a preset's name (steplaw2025, ...)")
        version = read_schema_version(data, HYPERPARAMETER_SCHEMA_VERSION, f"{path}: schema_version",
                                      "the hyperparameter law")
        if "lr_unit" not in data:
            raise UserError(f"{path} does not say what its lr is (written before laws declared it, schema "
                            f"{version}): refit it, or add \"lr_unit\": {{\"kind\": \"mup-base\", \"base_width\": 256}} "
                            "if its rates are a muP sweep's --lr (`sweep export`), {\"kind\": \"peak\"} if they are "
                            "the rate every matrix trained at")
        try:
            return cls.model_validate({**data, "schema_version": version})
        except ValidationError as exc:
            raise UserError(f"{path}: " + describe(exc, "law")) from None


def is_hyperparameter_law_file(path: Path) -> bool:
    """Whether `path` is a hyperparameter law this package wrote (so --overwrite may replace it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return f'"format": "{FORMAT}"' in fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


def _positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, "{} must be a number, got {value!r}", value=value) from None
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(name, "{} must be positive and finite, got {value!r}", value=value)
    return value
