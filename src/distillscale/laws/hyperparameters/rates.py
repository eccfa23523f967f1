"""What a hyperparameter law's learning rate is, and the one conversion to the `--lr` of a model.

A learning rate is a rate for a parametrisation and a width. The family trains under simple muP
(`model.transformer.Transformer.param_groups`): its hidden (block) matrices train at
`--lr x mup_base_width / d_model`, the embeddings, head and norm gains at `--lr`. A law's `lr` is
one of two things, and the law record says which (`HyperparameterLaw.lr_unit`):

- `peak`: the peak rate the hidden matrices train at. In the standard parametrisation every matrix
  trains at it (Step Law and DeepSeek's laws are in this unit).
- `mup-base` (with a base width, 256 by default): muP's base rate, the `--lr` of a muP model whose
  base width is that: its hidden matrices train at lr x base_width / d_model. A law fitted on a muP
  sweep's runs is in this unit (`sweep export`'s `lr` is each run's `--lr`).

    unit = parse_lr_unit("mup-base")                       # LrUnit(kind="mup-base", base_width=256)
    unit.hidden_lr(0.006, d_model=1024)                     # 0.0015: the hidden matrices' peak rate
    train_lr(0.006, unit, d_model=1024, mup_multiplier=0.25)   # 0.006: the `--lr` that trains them there

`train_lr` is the only place a law's rate becomes a `--lr`: `plan`'s recipes, a sweep's `lr_law`,
`demo --lr-law`, `train`'s warning and the planner page all call it. A run records both its `--lr`
and the rate its hidden matrices trained at (`RunResult.hidden_lr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distillscale.errors import UserError
from distillscale.units import format_quantity

DEFAULT_BASE_WIDTH = 256   # the family's `ModelConfig.mup_base_width` (a test holds the two equal)
LR_UNIT_HELP = ("what the lr column is: 'peak' (the rate the hidden matrices trained at: the standard "
                "parametrisation's one rate) or 'mup-base' (muP's base --lr, hidden matrices at lr x 256 / d_model; "
                "'mup-base:W' for base width W): a `sweep export` file says it in its lr_unit column")


class LrUnit(BaseModel):
    """The unit of a law's learning rate (module docstring): `peak`, or `mup-base` at `base_width`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["peak", "mup-base"]
    base_width: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _width(self) -> "LrUnit":
        if (self.kind == "mup-base") != (self.base_width is not None):
            raise ValueError("a 'mup-base' rate needs its base_width (the muP base width, e.g. 256); a 'peak' rate has none")
        return self

    def hidden_lr(self, lr: float, d_model: float) -> float:
        """The peak rate the hidden matrices of a model `d_model` wide train at, for a rate `lr` in this unit."""
        return lr if self.kind == "peak" else lr * self.base_width / d_model

    def text(self) -> str:
        """'peak' or 'mup-base:256', as `--lr-unit` and an export's lr_unit column write it."""
        return self.kind if self.kind == "peak" else f"mup-base:{self.base_width}"

    def describe(self) -> str:
        """The unit in words, for a printed rate."""
        if self.kind == "peak":
            return "the hidden matrices' peak rate"
        return f"muP base --lr at base width {self.base_width} (hidden matrices at lr x {self.base_width} / d_model)"


PEAK = LrUnit(kind="peak")


def parse_lr_unit(text: str) -> LrUnit:
    """'peak', 'mup-base' (base width 256) or 'mup-base:W'; anything else is refused in one line."""
    value = str(text).strip().lower()
    kind, _, width = value.partition(":")
    if kind == "peak" and not width:
        return PEAK
    if kind == "mup-base":
        if not width:
            return LrUnit(kind="mup-base", base_width=DEFAULT_BASE_WIDTH)
        if width.isdigit() and int(width) > 0:
            return LrUnit(kind="mup-base", base_width=int(width))
    raise UserError(f"lr unit {text!r} is not one distillscale knows: give 'peak' (the hidden matrices' peak "
                    "rate, the standard parametrisation's) or 'mup-base' / 'mup-base:W' (muP's base --lr at base width W)")


def train_lr(lr: float, unit: LrUnit, d_model: float, mup_multiplier: float) -> float:
    """The `--lr` that trains the hidden matrices of a model `d_model` wide at the rate `lr` (in
    `unit`) means there; `mup_multiplier` is the model's (base_width / d_model under muP, 1 without)."""
    return unit.hidden_lr(lr, d_model) / mup_multiplier


@dataclass(frozen=True)
class RunRate:
    """A law's rate as a model `d_model` wide trains at it: the hidden matrices' peak rate (`peak`,
    with its `interval`: what every output labels "peak lr") and the `--lr` that trains them there
    (`train_lr`: muP's base --lr at `mup_base_width`, what every output labels "--lr")."""

    d_model: float
    peak: float
    interval: tuple[float, float]
    train_lr: float
    mup_base_width: int = DEFAULT_BASE_WIDTH


def run_rate(lr: float, interval: tuple[float, float], unit: LrUnit, d_model: float,
             base_width: int = DEFAULT_BASE_WIDTH) -> RunRate:
    """The rate `lr` (in `unit`, with its `interval`) for a muP model of the family `d_model` wide."""
    multiplier = family_mup_multiplier(d_model, True, base_width)
    return RunRate(d_model, unit.hidden_lr(lr, d_model), (unit.hidden_lr(interval[0], d_model),
                   unit.hidden_lr(interval[1], d_model)), train_lr(lr, unit, d_model, multiplier), base_width)


LR_MAX = 1.0   # a peak rate above this diverges: no language model trains there (LMs: about 1e-4 to 1e-2)


def recipe_problems(peak: float, train: float, batch_tokens: float | None = None,
                    tokens: float | None = None) -> list[str]:
    """Why a recommended run is no run to train (empty: nothing), one clause each: its hidden matrices'
    peak rate or the `--lr` that trains them there above LR_MAX, where training diverges; a batch of
    more tokens than the run trains on (one step of less than a batch)."""
    problems = []
    above = [text for text, value in ((f"peak lr {peak:.3g}", peak), (f"--lr {train:.4g}", train)) if value > LR_MAX]
    if above:
        problems.append(f"{' and '.join(above)} {'is' if len(above) == 1 else 'are'} above {LR_MAX:g}, where "
                        f"training diverges (language models train at peak rates of about 1e-4 to 1e-2)")
    if batch_tokens is not None and tokens is not None and batch_tokens > tokens:
        problems.append(f"its batch of {format_quantity(batch_tokens)} tokens is more than the "
                        f"{format_quantity(tokens)} tokens it trains on: a single step of less than one batch, not a "
                        f"training run (a batch well below the run's tokens, --batch-tokens, is)")
    return problems


def family_mup_multiplier(d_model: float, mup: bool = True, base_width: int = DEFAULT_BASE_WIDTH) -> float:
    """The family's muP multiplier at width `d_model` (`ModelConfig.mup_multiplier`), for a model
    known by its width alone (a plan's model of N parameters)."""
    return base_width / d_model if mup else 1.0


def table_lr_unit(runs, given: str | LrUnit | None) -> LrUnit:
    """The unit of a table's lr column: `given` (a unit or its text), else the table's `lr_unit`
    column (one value throughout: `sweep export` writes it), else PEAK. A column that mixes units,
    or one that disagrees with `given`, is refused in one line."""
    column = None
    if isinstance(runs, dict) or hasattr(runs, "columns"):
        column = runs["lr_unit"] if "lr_unit" in (runs.keys() if isinstance(runs, dict) else runs.columns) else None
    stated = None
    if column is not None:
        texts = sorted({str(value) for value in column if str(value) not in ("", "nan", "None")})
        if len(texts) > 1:
            raise UserError(f"the lr_unit column mixes units ({', '.join(texts)}): one law is fitted in one unit; "
                            "fit the runs of each unit apart (a muP sweep's runs are all 'mup-base:256')")
        stated = parse_lr_unit(texts[0]) if texts else None
    unit = given if isinstance(given, LrUnit) else parse_lr_unit(given) if given is not None else None
    if unit is not None and stated is not None and unit != stated:
        raise UserError(f"the lr unit given ({unit.text()}) is not the table's lr_unit column ({stated.text()}): "
                        "leave the unit out to take the table's")
    return unit or stated or PEAK
