"""The typed records of a run directory, each owning its JSON file:

- `RunRecord` (config.json): the resolved config, its hash, and the `RunPlan` derived from it once
  the data and the device are known (steps, learning rate, model shape, data fingerprint);
- `RunResult` (result.json): what the finished run reports. Written last (atomically), so its
  presence means the run is over; sweeps, exports, reports and teachers read it back.

`schema_version` guards each format: files written before it existed load as version 1, and a file
from a newer distillscale is refused with a message instead of being misread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_serializer

from distillscale.errors import UserError
from distillscale.io import atomic_write_json, unreadable
from distillscale.data.config import SPLIT_SETTINGS
from distillscale.data.splits import SplitComposition
from distillscale.model import ModelConfig
from distillscale.model.hf_flops import HFFlops
from distillscale.training.kd_settings import DistillationLossConfig, OnPolicyConfig

RESULT_SCHEMA_VERSION = 3  # 2: unique_tokens, epochs, cuda_visible_devices; 3: hidden_lr
RUN_SCHEMA_VERSION = 2  # 2: the plan keeps its token_budget


def read_record(path: Path, what: str, newest: int, fix: str) -> dict[str, Any]:
    """The JSON object in `path` with its `schema_version` (1 when absent), or a one-line UserError."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise unreadable(what, path, exc) from None
    if not isinstance(record, dict):
        raise UserError(f"{path} is not a {what} (not a JSON object){fix}")
    version = record.get("schema_version", 1)
    if not isinstance(version, int) or version > newest:
        raise UserError(f"{path} has {what} schema version {version!r}, newer than this distillscale "
                        f"reads ({newest}): upgrade distillscale to read it")
    return record | {"schema_version": version}


def validated(model: type[BaseModel], record: dict[str, Any], path: Path, what: str, fix: str) -> Any:
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the file"
        raise UserError(f"{path} is not a valid {what}: {where}: {error['msg']}{fix}") from None


class ForkLink(BaseModel):
    """A WSD fork's parent run and the step of the parent's state it starts from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parent: str
    branch_step: int


class HFStudentRecord(BaseModel):
    """A generic Hugging Face student (`--student-init DIR` of an architecture the family does not
    import): its architecture and sizes counted from the loaded model (no ModelConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str
    non_embedding_params: int   # every parameter but the input and output embeddings
    total_params: int
    output_rows: int            # the output layer's rows (>= the tokenizer's ids; the first are trained)
    # Its forward FLOPs per token, counted as the family's are (`model.hf_flops`); None in a run
    # written before they were kept, which counts 2 x its non-embedding parameters, as it did then.
    flops: HFFlops | None = None
    d_model: int | None = None  # its hidden size (the config's `hidden_size`; None: the config does not say)

    def forward_flops_per_token(self, seq_len: int) -> int:
        """As `ModelConfig.forward_flops_per_token`: block and head matmuls plus attention over `seq_len`."""
        return 2 * self.non_embedding_params if self.flops is None else self.flops.forward_flops_per_token(seq_len)

    @property
    def mup_multiplier(self) -> float:
        """1: a generic student trains in its own parametrisation (no muP), as `ModelConfig(mup=False)`."""
        return 1.0

    @property
    def flops_method(self) -> str:
        """How `forward_flops_per_token` counts (an exact count, or 2 x parameters where the config is silent)."""
        return self.flops.method_text if self.flops is not None else "2 x non_embedding_params (an older run)"


class RunCorpus(BaseModel):
    """What a run's data was cut from, whatever path named it: the corpus's path as it resolved (None:
    the built-in corpus), its content digest (`data.content`; None: prepared by an earlier version) and
    the split settings that cut it (a prepared corpus's own). What a reader of the run's corpus compares
    to keep the run's split (`data.trained_split`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    prepared: str | None = None   # the `data prepare` directory the run was given, as it resolved (None: the corpus)
    content: str | None = None
    max_bytes: int | None = None
    val_fraction: float = 0.05
    seed: int = 0
    format: str | None = None   # the data format that split it

    @classmethod
    def of_manifest(cls, manifest: dict, prepared: str | None = None) -> "RunCorpus":
        """The record of prepared data (its manifest: the corpus it read and the settings that split it),
        given as the `data prepare` directory `prepared` or (None) as the corpus itself."""
        recorded = manifest.get("config") or {}
        path = recorded.get("path")
        return cls(path=None if path is None else str(path), prepared=prepared,
                   content=(manifest.get("source") or {}).get("content"),
                   format=manifest.get("format"),
                   **{name: recorded[name] for name in SPLIT_SETTINGS if name in recorded})

    @property
    def read_from(self) -> str | None:
        """Where the run read its data, to be read again from any directory: the prepared directory it
        was given, or its corpus (None: the built-in corpus)."""
        return self.prepared or self.path


class RunPlan(BaseModel):
    """What a config comes to on this data and hardware; a resumed run or a fork checks it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_steps: int
    token_budget: float | None = None  # the tokens asked for (absent from config.json before it was kept)
    warmup_steps: int
    cooldown_steps: int
    lr: float  # the peak rate after large-batch scaling
    tokens_per_step: int
    world_size: int
    device: str
    bf16: bool
    data_fingerprint: str
    corpus: RunCorpus | None = None   # None: a run of an earlier version, which did not record it
    model: ModelConfig | None = None  # None for a generic Hugging Face student (`hf_student`)
    hf_student: HFStudentRecord | None = None
    fork: ForkLink | None = None

    @property
    def hidden_lr(self) -> float:
        """The peak rate the hidden (block) matrices train at: `lr` x the student's muP multiplier
        (`Transformer.param_groups`; 1 without muP), the rate a hyperparameter law's is compared with."""
        return self.lr * self.student.mup_multiplier

    @property
    def lr_unit(self) -> str:
        """What `lr` (the run's --lr) is, as `laws.hyperparameters.rates.parse_lr_unit` reads it:
        muP's base rate at the model's base width, or (no muP) the hidden matrices' peak itself."""
        model = self.model
        return f"mup-base:{model.mup_base_width}" if model is not None and model.mup else "peak"

    @property
    def student(self) -> ModelConfig | HFStudentRecord:
        """The student's record, either kind: its sizes and `forward_flops_per_token(seq_len)`
        (`training.student.StudentRecord`)."""
        return self.model if self.model is not None else self.hf_student

    @property
    def student_flops_method(self) -> str | None:
        """How a generic student's forward FLOPs were counted (None for the family: its exact count)."""
        return None if self.hf_student is None else f"forward_flops_per_token of the generic Hugging Face " \
            f"student: {self.hf_student.flops_method}"

    @property
    def non_embedding_params(self) -> int:
        return self.student.non_embedding_params

    @property
    def total_params(self) -> int:
        return self.student.total_params


def student_fields(student: ModelConfig | HFStudentRecord) -> dict[str, ModelConfig | HFStudentRecord]:
    """The RunPlan field that records `student` (a `StudentModel.record()`): `model` for the family,
    `hf_student` for a generic Hugging Face student."""
    return {"hf_student": student} if isinstance(student, HFStudentRecord) else {"model": student}


class RecordedSettings(BaseModel):
    """config.json's `config`: the settings of the train or distill config the run was started with,
    as `TrainConfig.record()` writes them (JSON values, a teacher server's credentials redacted), kept
    as written, so that a run of an earlier version still reads: the run directory reads them back as
    that command's config (`settings()`), the teacher fields saying which command it was."""

    model_config = ConfigDict(extra="allow", frozen=True)

    teacher: str | list[str] | None = None
    teacher_cache: str | list[str] | None = None
    teacher_url: str | list[str] | None = None

    @property
    def distilled(self) -> bool:
        """Whether they are a distill run's: a teacher, a logit cache or a teacher server given."""
        return any((self.teacher, self.teacher_cache, self.teacher_url))

    def settings(self) -> dict[str, Any]:
        """Every setting as written (unset ones, None, included), and only those: a train run's have
        no teacher keys, which its config class would refuse."""
        written = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in dict(self).items() if key in written}

    @model_serializer(mode="plain")
    def _as_written(self) -> dict[str, Any]:
        return self.settings()


class RunRecord(BaseModel):
    """config.json: the config as resolved (`RecordedSettings`, read back as the train or distill
    config by the run directory), its hash, and the plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RUN_SCHEMA_VERSION
    config: RecordedSettings
    config_hash: str
    plan: RunPlan

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        fix = ": check it (a file of another tool or version?), restore it from a copy, or choose another --out"
        return validated(cls, read_record(path, "run config", RUN_SCHEMA_VERSION, fix), path, "run config", fix)


class TeacherRecord(BaseModel):
    """The teacher of a distillation run: where it came from, its size, its validation loss on the
    student's data and the FLOPs of its forward passes in this run (0 from a logit cache). Whatever
    else its source records about it (e.g. a weights hash) is kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: str  # a directory, or the URL of a teacher server
    kind: str  # run, hf, or server
    teacher_val_loss: float
    non_embedding_params: int | None = None  # None: a server that does not state it (vLLM)
    total_params: int | None = None
    forward_flops_per_token: float | None = None
    flops: float = 0.0
    flops_method: str | None = None
    # A student that trained on its teacher's own training text (self-distillation, a fixed pool of data):
    # the half of the corpus the teacher run trained on, and how much of its text the student read: "split"
    # (the same half), "subset" (the same half and the same fixed subset of --unique-tokens). Absent: the
    # student read other text (the other half, another corpus) or nothing says which (a Hugging Face teacher).
    trained_split: Literal["teacher", "student"] | None = None
    student_read: Literal["split", "subset"] | None = None

    @model_serializer(mode="wrap")
    def _without_unshared_text(self, handler):
        """`trained_split` and `student_read` only where the student read the teacher's training text."""
        values = handler(self)
        return {key: value for key, value in values.items()
                if key not in ("trained_split", "student_read") or value is not None}

    @property
    def student_read_its_text(self) -> bool:
        """Whether the student trained on text its teacher trained on (its own half of the same corpus)."""
        return self.student_read is not None

    def describe_shared_text(self, unique_tokens: int | None = None) -> str:
        """The sentence a summary prints when the student read its teacher's training text ("" otherwise)."""
        if self.student_read is None:
            return ""
        subset = (f", the same fixed subset of {unique_tokens:,} unique tokens" if self.student_read == "subset"
                  and unique_tokens else "")
        return (f"the student trained on its teacher's own training text (the {self.trained_split} half of the "
                f"same corpus{subset}): self-distillation on a fixed pool, not held-out text")


class ForkRecord(BaseModel):
    """result.json's `fork` (training/fork.py): the parent run, the step the fork's cooldown starts
    from, and the tokens and FLOPs the parent spent for it (counted in this run's `flops`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parent: str
    branch_step: int
    shared_tokens: int
    shared_flops: float


class DistillationRecord(DistillationLossConfig):
    """result.json's `distillation`: the KD settings the run optimised, and for a teacher of another
    tokenizer (mode "cross-tokenizer") how the two vocabularies were aligned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None in results of earlier versions, whose top-k targets were renormalised over the k ids
    top_k_tail: bool | None = None
    mode: Literal["cross-tokenizer"] | None = None
    uld_weight: float | None = None
    note: str | None = None
    shared_tokens: int | None = None
    student_vocab_size: int | None = None
    teacher_vocab_size: int | None = None
    aligned_fraction: float | None = None

    @model_serializer(mode="wrap")
    def _without_unused_alignment(self, handler):
        """The alignment fields only where there was an alignment: same-vocabulary runs keep the
        loss settings alone, as result.json has always had them."""
        values = handler(self)
        alignment = set(type(self).model_fields) - set(DistillationLossConfig.model_fields) | {"top_k_tail"}
        return {key: value for key, value in values.items() if key not in alignment or value is not None}


class TeacherServerRecord(BaseModel):
    """result.json's `teacher_server`: the OpenAI-compatible completions server a student read its
    teacher's top-k log-probabilities from (`training.remote_teacher`), and how the exchange went in
    the run's last session (requests, retries and positions counted since it last started or resumed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    model: str
    top_k: int
    requests: int
    retries: int
    prompts: int
    positions: int
    mean_top_k_mass: float | None  # the teacher's mean probability on the k ids it gave
    mean_tail_mass: float | None  # 1 - that (see `tail_mass`)
    timeout_seconds: float
    max_retries: int
    tail_mass: str


class TopKTargetsRecord(BaseModel):
    """result.json's `top_k_targets`: what a top-k teacher gave the student (`training.top_k`): the
    teacher's mean probability mass on its top k ids, measured on the first `checked_tokens` of the
    run's data before training, whether the tail mass outside them was known or estimated (and how),
    and the warning printed when the mass was low."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: int
    path: Literal["in-process", "cache", "served"]
    checked_tokens: int
    mean_top_k_mass: float
    min_top_k_mass: float
    tail_in_loss: bool
    tail: Literal["known", "estimated"]
    tail_source: str
    warning: str | None = None


class OnPolicyRecord(OnPolicyConfig):
    """result.json's `on_policy`: the on-policy settings (training/on_policy.py), what the student
    generated (sequences = on-policy batches x batch size; generated_tokens = sequences x
    continuation_tokens) and what that cost: `generation_flops` (the student's forward passes with
    the KV cache, `planning.flops.generation_flops`; added to the run's `flops`) and
    `teacher_scoring_flops` (the teacher's forward over those sequences' windows,
    `planning.flops.teacher_scoring_flops`; part of `teacher.flops`, which counts every batch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequences: int
    generated_tokens: int
    generation_flops: float
    teacher_scoring_flops: float
    flops_method: str


class CacheRecord(BaseModel):
    """result.json's `teacher_cache`: the logit cache a student read instead of a teacher, with its
    one-time cost (`flops`) and what it kept per position (top-k or sampled targets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    identity_hash: str
    targets: Literal["top-k", "sampled"] = "top-k"  # caches made before sampled targets existed are top-k
    tokens: int
    encoding: str
    bytes_per_token: float
    flops: float
    flops_method: str
    top_k: int | None = None  # top-k targets
    max_log_prob_error: float | None = None
    samples: int | None = None  # sampled targets
    temperature: float | None = None

    @model_serializer(mode="wrap")
    def _without_other_targets(self, handler):
        values = handler(self)
        return {key: value for key, value in values.items() if value is not None}


class RunResult(BaseModel):
    """result.json. Losses in nats/token; `flops` counts the whole run as `planning.flops.run_flops`
    does (plus the teacher's forward passes when distilling); times in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    status: Literal["completed", "diverged"]
    val_loss: float | None
    val_loss_unit: str = "nats/token"
    steps: int
    lr: float                           # the run's peak --lr (after large-batch scaling)
    hidden_lr: float | None = None      # the peak rate its hidden matrices trained at (absent before schema 3)
    lr_unit: str | None = None          # what `lr` is: 'mup-base:256' (muP's base rate) or 'peak' (RunPlan.lr_unit)
    schedule: str
    tokens: int
    token_budget: float
    non_embedding_params: int
    total_params: int
    forward_flops_per_token: float
    flops: float
    flops_6nd: float
    flops_method: str
    wall_seconds: float
    train_seconds: float
    tokens_per_second: float | None
    config_hash: str
    world_size: int
    device: str
    # how often the run saw its data: tokens / unique_tokens of its training split (absent before these
    # were recorded), and the GPU a sweep gave it (CUDA_VISIBLE_DEVICES as the run saw it)
    unique_tokens: int | None = None
    epochs: float | None = None
    # what each split of the data (val, teacher, student) is made of: documents, units placed, tokens, the
    # largest unit's and document's shares of it (data.splits; absent before it was recorded)
    splits: dict[str, SplitComposition] | None = None
    cuda_visible_devices: str | None = None
    # a diverged run: where, and the checkpoint kept
    diverged_at_step: int | None = None
    diverged_loss: float | None = None
    diverged_grad_norm: float | None = None
    checkpoint_step: int | None = None
    # a WSD fork: its parent and what the parent spent for it (training.fork)
    fork: ForkRecord | None = None
    # a distillation run: its teacher, the KD settings, and the logit cache it read instead of a teacher
    teacher: TeacherRecord | None = None
    distillation: DistillationRecord | None = None
    teacher_cache: CacheRecord | None = None
    teacher_server: TeacherServerRecord | None = None
    top_k_targets: TopKTargetsRecord | None = None
    # an on-policy distillation run: what the student generated and its cost
    on_policy: OnPolicyRecord | None = None

    @field_validator("splits", mode="before")
    @classmethod
    def _earlier_compositions(cls, value):
        """An earlier version's record, whose splits placed pieces of documents, read as those units."""
        if isinstance(value, dict):
            return {name: SplitComposition.from_record(split) if isinstance(split, dict) else split
                    for name, split in value.items()}
        return value

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """The content of result.json; the optional sections that do not apply to this run (a
        divergence, a fork, a teacher) are left out."""
        absent = {name for name, field in type(self).model_fields.items()
                  if not field.is_required() and getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=absent)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "RunResult":
        return validated(cls, read_record(path, "run result", RESULT_SCHEMA_VERSION, ""), path, "run result", "")
