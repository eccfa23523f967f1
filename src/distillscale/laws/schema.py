"""The schema of a law file (law.json), checked in full when one is read.

A law file is data a person may have edited by hand, so every field is validated before any of it
is used: coefficients are finite numbers in the range a law can have (a negative exponent, an E
below zero, or alpha = 1e308 would predict nonsense or overflow), the compute settings are positive
integers and ratios, text fields hold no control characters, and nothing unknown is accepted. A
bad field is one `UserError` line naming it: `supervised.coefficients.alpha = -1.0: ...`.

    validate_law_file(json.loads(text))   # the same dict, or a UserError

The fit record of each law (`fit`) is validated by `laws.record.FitRecord`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from distillscale.data.loss_identity import LossIdentity
from distillscale.errors import UserError

# Ranges wide enough for every law the fitter can produce (its boxes: log A, log B in [-20, 60],
# exponents in [0, 4], c0 in [-10, 20], c1 in [0, 5000], f1 in [0.01, 10], log d1 in [-3, 3]) and
# every published one, and narrow enough that a prediction cannot overflow.
MAX_COEFFICIENT = 1e30    # A, B
MAX_EXPONENT = 10.0       # alpha, beta, gamma
MAX_LOSS = 100.0          # E, in nats/token
MAX_SHAPE = 1e6           # c0, c1, f1, d1
MAX_CONTEXT = 10 ** 8     # n_ctx, n_vocab
MAX_TEXT = 1000           # name, source: characters


def read_schema_version(data: dict, newest: int, field: str, record: str) -> int:
    """A record's `schema_version` (1 when absent: files written before versions existed), checked:
    a positive integer no newer than `newest`, the version this distillscale writes. `field` and
    `record` name it in the one-line UserError ("fit.schema_version", "the fit record")."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{field} = {version!r}: {record}'s schema version must be a positive integer")
    if version > newest:
        raise UserError(f"{field} = {version}: {record} is newer than this distillscale reads ({newest}): "
                        "upgrade distillscale to read it")
    return version


def _number(value: Any) -> float:
    """A JSON number (not a boolean, not text) that is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError("must be a finite number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        raise ValueError(f"must be a whole number, not {value!r}"[:80])
    return int(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, not {type(value).__name__}")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        raise ValueError("must not hold control characters (escape sequences)")
    return value


Number = Annotated[float, BeforeValidator(_number)]
Positive = Annotated[float, BeforeValidator(_number), Field(gt=0)]
NonNegative = Annotated[float, BeforeValidator(_number), Field(ge=0)]
Level = Annotated[float, BeforeValidator(_number), Field(gt=0, lt=1)]   # an interval's coverage
# A relative error (0.04 = 4%); a hundredfold error says nothing, and larger ones overflow.
RelativeError = Annotated[float, BeforeValidator(_number), Field(ge=0, le=100)]
Count0 = Annotated[int, BeforeValidator(_integer), Field(ge=0)]
Coefficient = Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_COEFFICIENT)]
Exponent = Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_EXPONENT)]
# A data exponent may end on the fitter's lower bound, 0 (the term is then flat, and the fit record
# says the coefficient is not identified): a law the fitter saves must load.
DataExponent = Annotated[float, BeforeValidator(_number), Field(ge=0, le=MAX_EXPONENT)]
Shape = Annotated[float, BeforeValidator(_number), Field(ge=-MAX_SHAPE, le=MAX_SHAPE)]
PositiveShape = Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_SHAPE)]
Count = Annotated[int, BeforeValidator(_integer), Field(ge=1, le=MAX_CONTEXT)]
Text = Annotated[str, BeforeValidator(_text), Field(max_length=MAX_TEXT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Compute(_Strict):
    n_ctx: Count = 4096
    n_vocab: Count = 32168
    aspect_ratio: Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_SHAPE)] = 128.0


class SupervisedCoefficients(_Strict):
    E: Annotated[float, BeforeValidator(_number), Field(ge=0, le=MAX_LOSS)]
    A: Coefficient
    B: Coefficient
    alpha: DataExponent
    beta: DataExponent
    gamma: Exponent = 1.0
    # the interaction form's (`laws.interaction_law`): the data exponent's change per e-fold of N, and N's origin
    beta1: Annotated[float, BeforeValidator(_number), Field(ge=-MAX_EXPONENT, le=MAX_EXPONENT)] | None = None
    N0: Coefficient | None = None
    # the farseer form's (`laws.interaction_law`): the data coefficient's and data exponent's powers of N/N0
    kappa: Annotated[float, BeforeValidator(_number), Field(ge=-MAX_EXPONENT, le=MAX_EXPONENT)] | None = None
    nu: Annotated[float, BeforeValidator(_number), Field(ge=-MAX_EXPONENT, le=MAX_EXPONENT)] | None = None


class DistillationCoefficients(_Strict):
    A: Coefficient
    B: Coefficient
    alpha: DataExponent
    beta: DataExponent
    gamma: Exponent
    c0: Shape
    c1: Shape
    f1: PositiveShape
    d1: PositiveShape


class RepetitionPart(_Strict):
    """The decay of repeated data a law was fitted with (`laws.repetition`, Muennighoff et al.)."""

    R_D_star: Positive
    R_N_star: Positive | None = None
    R_D_star_interval: tuple[Positive, Positive] | None = None
    source: Text = ""
    backtest: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "RepetitionPart":
        if self.R_D_star_interval is not None and self.R_D_star_interval[0] > self.R_D_star_interval[1]:
            raise ValueError("R_D_star_interval must be [low, high]")
        return self


class SupervisedPart(_Strict):
    form: Literal["chinchilla", "tied", "busbridge", "interaction", "farseer"] | None = None
    coefficients: SupervisedCoefficients
    fit: dict[str, Any] | None = None   # FitRecord validates it
    repetition: RepetitionPart | None = None

    @model_validator(mode="after")
    def _interaction(self) -> "SupervisedPart":
        own = {"interaction": ("beta1", "N0"), "farseer": ("kappa", "nu", "N0")}
        given = {name for name in ("beta1", "kappa", "nu", "N0") if getattr(self.coefficients, name) is not None}
        if given != set(own.get(self.form or "", ())):
            raise ValueError("beta1 and N0 are the interaction form's coefficients, kappa, nu and N0 the farseer "
                             "form's: give all of them, with that form, and none with another")
        return self


class DistillationPart(_Strict):
    form: Literal["distillation", "distillation-tied", "tied", "free"] | None = None
    coefficients: DistillationCoefficients
    fit: dict[str, Any] | None = None
    repetition: RepetitionPart | None = None   # the distilled students' own, when a sweep measured it


class LawFile(_Strict):
    format: str
    name: Text = "unnamed"
    source: Text = ""
    compute: Compute = Compute()
    losses: LossIdentity | None = None   # what the laws' losses are (`data.loss_identity`); absent: not given
    supervised: SupervisedPart | None = None
    distillation: DistillationPart | None = None
    recipe: dict[str, Any] | None = None   # how the sweep it was fitted on trained (`laws.sweep_recipe` validates it)


def describe(error: ValidationError, prefix: str = "") -> str:
    """One line for the first error of `error`: the dotted field, the value, what is wrong."""
    first = error.errors()[0]
    where = ".".join([prefix] * bool(prefix) + [str(part) for part in first["loc"]]) or "the file"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"{where} is missing"
    if first["type"] == "extra_forbidden":
        return f"{where} is not a field of a law file (remove it)"
    if not first["loc"]:  # a check of several fields together: the message names them
        return f"{where}: {message}"
    shown = repr(first.get("input"))
    return f"{where} = {shown[:40] + '...' if len(shown) > 43 else shown}: {message}"


def validate_law_file(data: Any) -> dict[str, Any]:
    """`data` if it is a valid law file; a UserError naming the first bad field otherwise."""
    if not isinstance(data, dict):
        raise UserError(f"a law file holds a JSON object, not {type(data).__name__}")
    if data.get("distillation") and not data.get("supervised"):
        raise UserError("supervised is missing: a distillation law needs the student's supervised law")
    try:
        LawFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe(exc) + "; fix the file or fit the law again") from None
    return data
