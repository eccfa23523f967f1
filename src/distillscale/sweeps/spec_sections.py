"""The sections of a sweep spec file (`sweeps/spec.py` resolves them into runs): each section's keys,
checked by the same rules as the flags they stand for (the settings classes' own fields), and the
one-line message for a key that does not pass."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model,
                      model_validator)

from distillscale.errors import UserError
from distillscale.rules import batch_for_min_steps
from distillscale.training.config import ON_POLICY_KEYS, OnPolicySettings, TrainConfig, hash_rule
from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.prune_config import PruneSettings
from distillscale.units import Quantity, parse_quantity

RunKind = Literal["teacher", "student", "baseline", "pruned"]
StudentInit = Literal["scratch", "pruned"]

# [data] keys and the train setting each one sets.
DATA_KEYS = {"path": "data", "text_field": "text_field", "vocab_size": "vocab_size",
             "tokenizer": "tokenizer", "max_bytes": "max_bytes", "val_fraction": "val_fraction",
             "seq_len": "seq_len"}
# [model] keys: the model family's shape and the training hyperparameters, named as in `train`.
MODEL_KEYS = ("aspect_ratio", "head_dim", "tie_embeddings", "mup", "batch_size", "grad_accum", "lr",
              "min_lr_ratio", "warmup_steps", "schedule", "cooldown_fraction", "cooldown_shape", "weight_decay", "dropout", "grad_clip", "z_loss", "seed", "eval_every",
              "eval_tokens", "save_every", "log_every", "device", "bf16", "compile",
              "adam_beta1", "adam_beta2", "adam_eps", "warmup_tokens", "warmup_tokens_per_param",
              "save_every_seconds")
# [model] keys added after sweeps existed: left out of every run's settings while at their default,
# so that earlier sweeps keep their spec and run ids: those a run's hash leaves out while at their
# default (`hashed_unless_default`; the schedule too, which is left out below while cosine anyway).
LATER_MODEL_KEYS = frozenset({key for key in MODEL_KEYS if hash_rule(TrainConfig, key) == key}
                             | {"save_every_seconds"})
# [distill] keys passed to `distill` (the objective's settings, named as its flags).
DISTILL_KEYS = ("kd", "temperature", "kd_weight", "top_k")
# [distill] on-policy keys passed to `distill` (its --on-policy-* flags); left out of every run's
# settings while on_policy_fraction is 0, so that off-policy sweeps keep their spec and run ids.
ON_POLICY_DISTILL_KEYS = tuple(sorted(ON_POLICY_KEYS))


def _section(name: str, source: type[BaseModel], keys: dict[str, str], **extra: Any) -> type[BaseModel]:
    """A spec section whose keys are fields of `source` (same types, limits and defaults), so a setting
    is checked by the same rule in a spec as on the command line."""
    fields = {key: (source.model_fields[source_key].annotation, source.model_fields[source_key])
              for key, source_key in keys.items()}
    return create_model(name, __config__=ConfigDict(extra="forbid", frozen=True), **fields, **extra)


def _quantity(what: str, kind: Quantity | None):
    """A positive quantity (`"1.8M"`, `2e6`) counting `kind`, or None."""
    return BeforeValidator(lambda value: value if value is None else parse_quantity(value, what, kind=kind))


def _positive_list(what: str, kind: Quantity | None):
    """A list of positive quantities (`[20, 80]`, `["1e15", "3e15"]`); a single value is a list of one."""
    def parse(value: Any) -> Any:
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        return [parse_quantity(v, what, kind=kind) for v in values]
    return BeforeValidator(parse)


class Ladder(BaseModel):
    """Model sizes (depths) and how long each trains: a fixed M = D/N, or an IsoFLOP profile per budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layers: list[int]
    tokens_per_param: Annotated[list[float] | None, _positive_list("tokens_per_param", Quantity.TOKENS_PER_PARAM)] = None
    budgets: Annotated[list[float] | None, _positive_list("budget", Quantity.FLOPS)] = None
    seeds: int = Field(1, ge=1, description="seeds of each of the `seeded_sizes` smallest (or largest) depths")
    seeded_sizes: int = Field(1, ge=1)
    # which end of the ladder `seeded_sizes` counts from: the cheapest sizes, or the largest (a
    # held-out size trained with several seeds, so that one unlucky run cannot move the whole check)
    seeded: Literal["smallest", "largest"] = "smallest"
    # A token window: grid points outside it are left out (e.g. max: what the corpus holds without
    # repeating; min: enough optimizer steps), so one M list can serve sizes 100x apart.
    min_tokens: Annotated[float | None, _quantity("min_tokens", Quantity.TOKENS)] = None
    max_tokens: Annotated[float | None, _quantity("max_tokens", Quantity.TOKENS)] = None
    # Enough optimizer steps for the laws: each size trains at the largest batch ([model] batch_size,
    # halved as needed, at least 1 sequence) whose shortest run takes at least this many steps, so a
    # small model's few tokens are not spent in a few large steps still in training's early transient.
    min_steps: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_grid(self) -> "Ladder":
        if not self.n_layers:
            raise ValueError("n_layers is empty: list at least one depth, e.g. n_layers = [1, 2]")
        bad = [n for n in self.n_layers if n < 1]
        if bad:
            raise ValueError(f"n_layers must be positive depths, got {bad[0]}")
        if (self.tokens_per_param is None) == (self.budgets is None):
            raise ValueError("give exactly one of tokens_per_param (fixed M = D/N) or budgets (IsoFLOP "
                             "profiles, FLOPs)")
        for name in ("n_layers", "tokens_per_param", "budgets"):
            values = getattr(self, name)
            if values is not None and not values:
                raise ValueError(f"{name} is empty: list at least one value")
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"{name} lists a value twice: {values}")
        return self

    @property
    def protocol(self) -> str:
        return "isoflop" if self.budgets is not None else "fixed-M"

    def section(self) -> dict[str, Any]:
        """As spec.toml writes it; unused options are left out, so earlier sweeps keep their spec."""
        unused = ({"seeds", "seeded_sizes", "seeded"} if self.seeds == 1
                  else {"seeded"} if self.seeded == "smallest" else set())
        return {key: value for key, value in self.model_dump(mode="json").items()
                if key not in unused and not ((key.endswith("_tokens") or key == "min_steps") and value is None)}

    def batch_for(self, shortest_tokens: float, batch_size: int, tokens_per_sequence: int) -> int:
        """The batch (sequences) a size trains at: `batch_size`, halved until its shortest run of
        `shortest_tokens` takes at least `min_steps` optimizer steps (1 at the least)."""
        return batch_for_min_steps(shortest_tokens, batch_size, tokens_per_sequence, self.min_steps)

    def in_window(self, tokens: float) -> bool:
        return (self.min_tokens or 0) <= tokens <= (self.max_tokens or float("inf"))

    def seeds_of(self, n_layers: int) -> int:
        depths = sorted(self.n_layers, reverse=self.seeded == "largest")
        return self.seeds if n_layers in depths[:self.seeded_sizes] else 1


class StudentLadder(Ladder):
    """The students' ladder, and where they start: from scratch, pruned from each teacher, or both."""

    student_init: Annotated[list[StudentInit], BeforeValidator(lambda v: v if isinstance(v, list) else [v])] = ["scratch"]

    @model_validator(mode="after")
    def _check_inits(self) -> "StudentLadder":
        if not self.student_init:
            raise ValueError('student_init is empty: list "scratch", "pruned" or both')
        if len(set(self.student_init)) != len(self.student_init):
            raise ValueError(f"student_init lists a value twice: {self.student_init}")
        return self

    def section(self) -> dict[str, Any]:
        section = super().section()
        if self.student_init == ["scratch"]:  # left out, so that earlier sweeps keep their spec
            section.pop("student_init")
        return section


# [prune] keys: how the pruned students are cut from their teachers, as `prune`'s flags.
PRUNE_KEYS = ("importance", "depth_by", "calibration_tokens")
PruneSection = _section("PruneSection", PruneSettings, {key: key for key in PRUNE_KEYS})
DataSection = _section("DataSection", TrainConfig, DATA_KEYS)
# A learning rate per size (optional, one of the two): a width rule, lr x (d_model /
# lr_reference_width) ** lr_width_exponent, or a hyperparameter law (`lr_law`: a preset name or a file
# `distillscale fit hyperparameters --out` wrote) read at each size's N and longest D.
LR_RULE_KEYS = ("lr_width_exponent", "lr_reference_width", "lr_law")
ModelSection = _section("ModelSection", TrainConfig, {key: key for key in MODEL_KEYS},
                        lr_width_exponent=(float | None, None),
                        lr_reference_width=(int | None, Field(None, gt=0)),
                        lr_law=(str | None, Field(None, min_length=1)))


DistillSection = _section("DistillSection", DistillationLossConfig, {key: key for key in DISTILL_KEYS},
                          supervised_baselines=(bool, True), teach_from=(Literal["all", "longest"], "all"),
                          **{key: (OnPolicySettings.model_fields[key].annotation, OnPolicySettings.model_fields[key])
                             for key in ON_POLICY_DISTILL_KEYS})


class _SpecShape(BaseModel):
    """The top level of a spec file; sections are checked by their own models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$",
                      description="names the default sweep directory, sweeps/<name>")
    data: dict[str, Any] = {}
    model: dict[str, Any] = {}
    teachers: dict[str, Any]
    students: dict[str, Any] | None = None
    distill: dict[str, Any] = {}
    repetition: dict[str, Any] | None = None
    prune: dict[str, Any] | None = None
    tune: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None


_as_list = BeforeValidator(lambda value: value if value is None or isinstance(value, list) else [value])


class TuneSection(BaseModel):
    """An lr x batch grid: every run of one ladder once per (lr, batch_size) pair, in place of
    [model]'s lr and batch_size (the runs `distillscale fit hyperparameters` fits its laws on). A key
    left out keeps [model]'s value. `ladder = "students"`: the student sizes' baselines and their
    distilled students, each student at its baseline's point (does distillation move the optimum?),
    the teachers at [model]'s values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: Annotated[list[float] | None, _as_list] = None
    batch_size: Annotated[list[int] | None, _as_list] = None
    ladder: Literal["teachers", "students"] = "teachers"

    @model_validator(mode="after")
    def _check_grid(self) -> "TuneSection":
        if self.lr is None and self.batch_size is None:
            raise ValueError("[tune] lists no values: give lr = [...] (peak learning rates) and/or batch_size = "
                             "[...] (sequences per micro-batch), e.g. lr = [1e-3, 3e-3, 1e-2]")
        for name, example in (("lr", "lr = [1e-3, 3e-3, 1e-2]"), ("batch_size", "batch_size = [8, 16]")):
            values = getattr(self, name)
            if values is None:
                continue
            if not values:
                raise ValueError(f"{name} is empty: list at least one value, e.g. {example}")
            bad = [value for value in values if not 0 < value < math.inf]
            if bad:
                raise ValueError(f"{name} values must be positive numbers, got {bad[0]:g}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a value twice: {values}")
        return self

    def points(self, lr: float, batch_size: int) -> list[tuple[float, int]]:
        """The grid's (lr, batch_size) pairs, lr varying fastest; [model]'s value for a key left out."""
        return [(rate, batch) for batch in (self.batch_size or [batch_size]) for rate in (self.lr or [lr])]

    def grid(self) -> dict[str, list]:
        """The lists given, by key (lr, batch_size)."""
        return {key: getattr(self, key) for key in ("lr", "batch_size") if getattr(self, key) is not None}

    def section(self) -> dict[str, Any]:
        return self.grid() | ({"ladder": self.ladder} if self.ladder != "teachers" else {})


# The runs [eval] scores: those with a validation loss that the laws read (a "pruned" run trains nothing).
EVALUATED_KINDS = ("teacher", "baseline", "student")


class EvalSection(BaseModel):
    """[eval]: each finished run (teacher, baseline, student) scored on lm-eval-harness tasks after it
    trains, by `distillscale eval RUN` (the `eval` extra), its eval.json beside its result.json. The keys
    are `eval`'s flags; include_path is taken from the spec file's directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: Annotated[list[str], _as_list]
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1)
    include_path: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check_tasks(self) -> "EvalSection":
        tasks = [task.strip() for task in self.tasks]
        if not tasks or not all(tasks) or any("," in task for task in tasks):
            raise ValueError('tasks must list lm-eval task names, e.g. tasks = ["arc_easy", "hellaswag"]')
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks lists a task twice: {tasks}")
        return self

    def args(self, tasks: list[str] | None = None) -> tuple[str, ...]:
        """`distillscale eval`'s flags for these keys (after the run directory), scoring `tasks` of
        them (default: all)."""
        args = ["--tasks", ",".join(tasks or self.tasks), "--batch-size", str(self.batch_size)]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        if self.include_path is not None:
            args += ["--include-path", self.include_path]
        return tuple(args)

    def describe(self) -> str:
        limit = "" if self.limit is None else f", the first {self.limit} examples of each"
        return f"[eval]: {', '.join(self.tasks)}{limit}"


class RepetitionSection(BaseModel):
    """Repeated-data runs: the epochs over a fixed subset at which each student size's longest budget
    is trained again (Muennighoff et al.'s repetitions, R = epochs - 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: list[float]

    @model_validator(mode="after")
    def _check_epochs(self) -> "RepetitionSection":
        if not self.epochs:
            raise ValueError("epochs is empty: list the passes over the subset, e.g. epochs = [1, 2, 4, 8, 16]")
        if any(e < 1 for e in self.epochs):
            raise ValueError(f"epochs must be at least 1 (passes over the subset), got {min(self.epochs):g}")
        if len(set(self.epochs)) != len(self.epochs):
            raise ValueError(f"epochs lists a value twice: {self.epochs}")
        return self


def _validate(model: type[BaseModel], values: dict[str, Any], source: str, prefix: str):
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise UserError(_describe(exc, source, prefix, model)) from None


def _describe(exc: ValidationError, source: str, prefix: str, model: type[BaseModel] | None = None) -> str:
    error = exc.errors()[0]
    location = prefix + ".".join(str(part) for part in error["loc"])
    location = location.rstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{source}: unknown key {location!r}: check its spelling (see `distillscale sweep run --help`)"
    if error["type"] == "missing":
        field = (model.model_fields.get(str(error["loc"][0])) if model is not None and error["loc"] else None)
        if not prefix and field is not None and "dict" in str(field.annotation):  # a [section] of the file
            return f"{source}: missing section [{location}]"
        return f"{source}: missing key {location!r}" + (" (at the top, before any [section])" if not prefix else "")
    if not location:
        return f"{source}: {message}"
    got = repr(error["input"])
    suffix = "" if got in message or isinstance(error["input"], dict) else f" (got {got})"
    return f"{source}: invalid {location!r}: {message}{suffix}"
