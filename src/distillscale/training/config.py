"""The training run configuration: one pydantic model behind both the CLI flags and `--config FILE.toml`.

Every key of the TOML file is a flag name (`n_layers` or `n-layers`); flags given on the command line
override the file. Invalid values and unknown keys become a one-line `UserError` naming the key.

Large batches (Hoffer et al. 2017, science.md §7): `reference_batch_size` is the global batch size at
which `lr` and the schedule were tuned. Given it, the peak learning rate is scaled to this run's global
batch by `lr_scaling` (sqrt by default). With `regime_adaptation` the run keeps the reference run's
schedule in optimizer updates: as many steps (and warmup steps) as the reference batch size would take
for the token budget, so at a larger batch it trains on B / B_ref times the budget (result.json
records both the budget and the tokens actually seen).

Warmup-stable-decay (Hägele et al. 2024, science.md §8): `schedule = "wsd"` holds the peak rate after
warmup and cools down over the last `cooldown_fraction` of the steps (linear or 1-sqrt). Runs of one
model that differ only in length then share everything before their cooldown, so a run can be a
*fork*: `fork_from` names the run (its parent) whose stable phase it continues from its cooldown start.
The parent lists the budgets of its forks in `fork_tokens` and keeps a checkpoint at each one's start.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from distillscale.data.config import MIN_VOCAB_SIZE
from distillscale.errors import UserError
from distillscale.regime.schedules import scale_learning_rate
from distillscale.units import parse_quantity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def _quantity(what: str):
    """A positive number that may be written as `2M`, `1e9`, `7.75B` (strings or numbers)."""
    return BeforeValidator(lambda value: value if value is None else parse_quantity(value, what))


def _count(what: str):
    """Like `_quantity` but an integer: `--max-bytes 2M`."""
    return BeforeValidator(lambda value: value if value is None else int(parse_quantity(value, what)))


def _counts(what: str):
    """A list of counts, as a list or a comma-separated flag: `--fork-tokens 1M,2M`."""
    def parse(value: Any) -> Any:
        if value is None:
            return None
        values = value if isinstance(value, list) else str(value).split(",")
        return [int(parse_quantity(v, what)) for v in values]
    return BeforeValidator(parse)


# Settings that do not change what the run computes: they may differ when an interrupted run resumes.
BOOKKEEPING_KEYS = frozenset({"out", "overwrite", "save_every", "log_every"})
# Large-batch settings: left out of the hash while off (no reference batch size), so that runs without
# them keep the hash they had before these settings existed.
LARGE_BATCH_KEYS = frozenset({"reference_batch_size", "lr_scaling", "regime_adaptation"})
DEFAULT_LR_SCALING = "sqrt"  # Hoffer et al.: keeps the covariance of the weight updates
# WSD settings and fork links: left out of the hash while unused, for the same reason.
WSD_KEYS = frozenset({"schedule", "cooldown_fraction", "cooldown_shape"})
FORK_KEYS = frozenset({"fork_from", "fork_tokens"})
DEFAULT_COOLDOWN_FRACTION = 0.2  # Hägele et al.: 20% of the steps matches cosine
DEFAULT_COOLDOWN_SHAPE = "1-sqrt"  # their best shape

# Warmup when --warmup-steps is not given: the paper's 2000 steps, or a tenth of a shorter run.
DEFAULT_WARMUP_STEPS = 2000
DEFAULT_WARMUP_FRACTION = 0.1


class TrainConfig(BaseModel):
    """Everything that defines a supervised training run (see `distillscale train --help`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # where
    out: Path
    data: Path | None = None
    text_field: str = "text"
    max_bytes: Annotated[int | None, _count("max_bytes")] = None
    val_fraction: float | None = Field(None, gt=0, lt=1)
    tokenizer: Path | None = None
    vocab_size: int | None = Field(None, ge=MIN_VOCAB_SIZE)
    split: Literal["teacher", "student"] = "teacher"
    # model
    n_layers: int = Field(ge=1)
    aspect_ratio: int = Field(128, ge=1)
    head_dim: int | None = Field(None, ge=1)
    tie_embeddings: bool = False
    mup: bool = True
    # budget
    tokens: Annotated[float | None, _quantity("tokens")] = None
    tokens_per_param: Annotated[float | None, _quantity("tokens_per_param")] = None
    seq_len: int = Field(256, ge=2)
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    # large batch
    reference_batch_size: int | None = Field(None, ge=1)
    lr_scaling: Literal["sqrt", "linear", "none"] | None = None  # None: DEFAULT_LR_SCALING
    regime_adaptation: bool = False
    # optimisation
    lr: float = Field(1e-2, gt=0)
    min_lr_ratio: float = Field(1e-3, ge=0, le=1)
    warmup_steps: int | None = Field(None, ge=0)
    schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float | None = Field(None, gt=0, le=1)  # None: DEFAULT_COOLDOWN_FRACTION
    cooldown_shape: Literal["linear", "1-sqrt"] | None = None  # None: DEFAULT_COOLDOWN_SHAPE
    # forks (WSD only)
    fork_from: Path | None = None
    fork_tokens: Annotated[list[int] | None, _counts("fork_tokens")] = None
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    z_loss: float = Field(1e-4, ge=0)
    seed: int = Field(0, ge=0)
    # evaluation and bookkeeping
    eval_every: int = Field(250, ge=0)
    eval_tokens: Annotated[int | None, _count("eval_tokens")] = None
    save_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    # hardware
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool | None = None
    compile: bool = False
    overwrite: bool = False

    @model_validator(mode="after")
    def _one_budget(self) -> "TrainConfig":
        if (self.tokens is None) == (self.tokens_per_param is None):
            raise ValueError("give exactly one token budget: tokens (e.g. 50M) or tokens_per_param (e.g. 20)")
        if self.schedule != "wsd":
            given = [key for key in ("cooldown_fraction", "cooldown_shape", "fork_from", "fork_tokens")
                     if getattr(self, key) is not None]
            if given:
                raise ValueError(f"{given[0]} needs schedule wsd: only a warmup-stable-decay run has a "
                                 f"cooldown to fork")
        if (self.fork_from is not None or self.fork_tokens) and self.regime_adaptation:
            raise ValueError("forks and regime_adaptation do not mix: a fork's steps follow its own batch")
        if self.eval_tokens is not None and self.eval_tokens < self.seq_len:
            raise ValueError(f"eval_tokens {self.eval_tokens} is below one sequence of seq_len "
                             f"{self.seq_len}: raise eval_tokens or leave it out")
        return self

    @field_validator("lr_scaling", "regime_adaptation")
    @classmethod
    def _needs_reference_batch_size(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, False) and info.data.get("reference_batch_size") is None:
            raise ValueError("needs reference_batch_size, the global batch size (sequences) that lr "
                             "and the schedule were tuned at")
        return value

    @property
    def global_batch_size(self) -> int:
        """Sequences per optimizer step, summed over micro-batches and processes."""
        return self.batch_size * self.grad_accum

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step, summed over micro-batches and processes."""
        return self.global_batch_size * self.seq_len

    @property
    def effective_lr(self) -> float:
        """The peak learning rate of the run: `lr`, scaled from `reference_batch_size` to the global
        batch size by `lr_scaling` when a reference batch size is given."""
        if self.reference_batch_size is None:
            return self.lr
        return scale_learning_rate(self.lr, self.global_batch_size, self.reference_batch_size,
                                   self.lr_scaling or DEFAULT_LR_SCALING)

    def token_budget(self, non_embedding_params: int) -> float:
        """The tokens asked for: `tokens`, or `tokens_per_param` x non-embedding parameters."""
        return self.tokens if self.tokens is not None else self.tokens_per_param * non_embedding_params

    def total_steps(self, non_embedding_params: int) -> int:
        """Optimizer steps that cover the token budget (the last step may overshoot it); with regime
        adaptation, the steps the reference batch size would take for it."""
        return self.steps_for(self.token_budget(non_embedding_params))

    def steps_for(self, tokens: float) -> int:
        sequences_per_step = (self.reference_batch_size if self.regime_adaptation
                              else self.global_batch_size)
        return max(1, math.ceil(tokens / (sequences_per_step * self.seq_len)))

    def cooldown_steps(self, total_steps: int) -> int:
        """The WSD cooldown's steps (at least one); 0 for cosine."""
        if self.schedule != "wsd":
            return 0
        fraction = self.cooldown_fraction or DEFAULT_COOLDOWN_FRACTION
        return min(total_steps, max(1, round(fraction * total_steps)))

    def branch_steps(self) -> list[int]:
        """Where the forks listed in `fork_tokens` start their cooldown: the steps whose state this
        run keeps for them (a fork of D tokens shares the first steps_for(D) - cooldown of them)."""
        steps = (self.steps_for(tokens) for tokens in self.fork_tokens or ())
        return sorted({total - self.cooldown_steps(total) for total in steps})

    def resolved_warmup_steps(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(DEFAULT_WARMUP_STEPS, math.ceil(DEFAULT_WARMUP_FRACTION * total_steps))

    def hash(self) -> str:
        """Identifies what the run computes; bookkeeping settings are left out."""
        excluded = (BOOKKEEPING_KEYS | (LARGE_BATCH_KEYS if self.reference_batch_size is None else set())
                    | (WSD_KEYS if self.schedule == "cosine" else set())
                    | {key for key in FORK_KEYS if getattr(self, key) is None})
        payload = self.model_dump(mode="json", exclude=set(excluded))
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def differing_keys(self, other: "TrainConfig") -> list[str]:
        """Keys (bookkeeping excluded) whose values differ between two configs."""
        mine, theirs = self.model_dump(mode="json"), other.model_dump(mode="json")
        return [key for key in mine if key not in BOOKKEEPING_KEYS and mine[key] != theirs[key]]


def load_train_config(path: Path | None = None, overrides: dict[str, Any] | None = None,
                      config_class: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Validate a TOML file (optional) with command-line `overrides` applied on top, as
    `config_class` (TrainConfig, or a subclass such as the distillation config).

    `overrides` holds only the flags the user actually gave (None means "not given").
    """
    settings: dict[str, Any] = {}
    if path is not None:
        settings = _read_toml(Path(path))
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    settings.update(flags)
    try:
        return config_class.model_validate(settings)
    except ValidationError as exc:
        raise UserError(_describe(exc, flags, path)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file {path} not found: give an existing TOML file to --config")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in table.items():
        if isinstance(value, dict):
            raise UserError(f"config file {path}: section [{key}] is not supported; "
                            f"write every setting as a top-level key (e.g. n_layers = 4)")
    return {key.replace("-", "_"): value for key, value in table.items()}


def _describe(exc: ValidationError, flags: dict[str, Any], path: Path | None) -> str:
    """One line for the first problem: where the bad setting came from, and what is wrong with it."""
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else None
    message = error["msg"].removeprefix("Value error, ")
    if key is None:
        return f"invalid training config: {message}"
    if key in flags:
        where = f"--{key.replace('_', '-')}"
    elif path is not None:
        where = f"{key!r} in {path}"
    else:
        where = f"--{key.replace('_', '-')}"
    if error["type"] == "extra_forbidden":
        return f"unknown setting {where}: see the command's --help for the valid names"
    if error["type"] == "missing":
        return f"missing required setting {where}"
    got = repr(error["input"])
    return f"invalid {where}: {message}" + ("" if got in message else f" (got {got})")
