"""The training run configuration: one pydantic model behind both the CLI flags and `--config FILE.toml`.

Every key of the TOML file is a flag name (`n_layers` or `n-layers`); flags given on the command line
override the file. Invalid values and unknown keys become a one-line `UserError` naming the key.

Large batches (Hoffer et al. 2017, docs/science.md §7): `reference_batch_size` is the global batch size at
which `lr` and the schedule were tuned. Given it, the peak learning rate is scaled to this run's global
batch by `lr_scaling` (sqrt by default). With `regime_adaptation` the run keeps the reference run's
schedule in optimizer updates: as many steps (and warmup steps) as the reference batch size would take
for the token budget, so at a larger batch it trains on B / B_ref times the budget (result.json
records both the budget and the tokens actually seen).

Warmup-stable-decay (Hägele et al. 2024, docs/science.md §8): `schedule = "wsd"` holds the peak rate after
warmup and cools down over the last `cooldown_fraction` of the steps (linear or 1-sqrt). Runs of one
model that differ only in length then share everything before their cooldown, so a run can be a
*fork*: `fork_from` names the run (its parent) whose stable phase it continues from its cooldown start.
The parent lists the budgets of its forks in `fork_tokens` and keeps a checkpoint at each one's start.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from distillscale.data.config import MIN_VOCAB_SIZE, RUN_DATA_SETTINGS, DataConfig
from distillscale.errors import UserError
from distillscale.model.config import ModelConfig
from distillscale.model.teacher_limits import (DEFAULT_TEACHER_TIMEOUT, MAX_TEACHER_RETRIES, MAX_TEACHER_TIMEOUT,
                                               TEACHER_RETRIES, TEACHER_RETRIES_HELP, TEACHER_TIMEOUT_HELP)
from distillscale.regime.schedules import scale_learning_rate
from distillscale.rules import WARMUP_CAP, WARMUP_FRACTION, warmup_steps
from distillscale.settings import Settings, byte_size, count, counts, quantity
from distillscale.training.hash_rules import (FORK_OWN, NOT_HASHED, fork_own_keys, hash_rule,  # noqa: F401
                                              hashed_unless_default)
from distillscale.training.kd_settings import (CHUNK_LOGITS, TOP_K_KD_WEIGHT, DistillationLossConfig,
                                              OnPolicyConfig, chunk_tokens)
from distillscale.training.start_lr import MUP_BASE_LR, START_LR, with_start_lr
from distillscale.training.teacher_options import (check_mixture, flag, teacher_api_base,
                                                   teacher_location, teacher_name)
from distillscale.units import Quantity, check_quantity
from distillscale.urls import redacted_url, restored


DEFAULT_LR_SCALING = "sqrt"  # Hoffer et al.: keeps the covariance of the weight updates
DEFAULT_COOLDOWN_FRACTION = 0.2  # Hägele et al.: 20% of the steps matches cosine
DEFAULT_COOLDOWN_SHAPE = "1-sqrt"  # their best shape
WARMUP_KEYS = ("warmup_steps", "warmup_tokens", "warmup_tokens_per_param")  # at most one of them

# Warmup when --warmup-steps is not given: the paper's 2000 steps, or a tenth of a shorter run. One
# rule, declared once where the plan's recipes read it too (`distillscale.rules`).
DEFAULT_WARMUP_STEPS, DEFAULT_WARMUP_FRACTION = WARMUP_CAP, WARMUP_FRACTION


class CorpusSettings(Settings):
    section, title = "data", "Data"

    data: Path | None = Field(None, description="corpus: text/.jsonl/.parquet files, a glob or a datasets "
                                                "directory (default: Python's standard library)")
    text_field: str = Field("text", description="field holding the text in .jsonl/.parquet/datasets")
    max_bytes: Annotated[int | None, byte_size("max_bytes")] = Field(
        None, description="read at most this much text, e.g. 20MB")
    val_fraction: float | None = Field(None, gt=0, lt=1, description="documents held out (default: 0.05)")
    tokenizer: Path | None = Field(None, description="tokenizer.json or a tokenizer directory "
                                                     "(default: train a byte-level BPE)")
    vocab_size: int | None = Field(None, ge=MIN_VOCAB_SIZE, description="BPE vocabulary to train (default: 8192)")
    split: Literal["teacher", "student"] = Field("teacher", description="training half: teacher or student")
    # a fixed subset of the split (data.repetition.unique_subset)
    unique_tokens: Annotated[int | None, count("unique_tokens", kind=Quantity.TOKENS)] = Field(
        None, gt=0, json_schema_extra=hashed_unless_default(),
        description="train on a fixed subset of U tokens of the split (1K-token chunks in a fixed "
                    "random order; with --teacher-cache, the cache's first U tokens; whole windows of "
                    "seq_len, so U rounds down to a multiple of it), repeated as the budget needs, e.g. 50K "
                    "(default: the whole split)")

    @field_validator("*", mode="after")
    @classmethod
    def _home(cls, value: Any, info: ValidationInfo) -> Any:
        """`~` in every path setting of the run (this group's and the others'; a config file's path is
        not expanded by a shell) is the home directory, before anything reads or compares it."""
        def expanded(path: Any) -> Any:
            if not isinstance(path, Path):
                return path
            name = teacher_name(path) if info.field_name == "teacher" else None  # NAME=PATH keeps its NAME
            return Path(f"{name}={teacher_location(path).expanduser()}") if name else path.expanduser()

        return [expanded(item) for item in value] if isinstance(value, list) else expanded(value)

    def data_config(self) -> DataConfig:
        """The corpus and tokenizer these settings name, as the data layer takes them."""
        return DataConfig.of_run_settings({key: getattr(self, key) for key in RUN_DATA_SETTINGS})


class ModelSettings(Settings):
    section, title = "model", "Model"

    n_layers: int | None = Field(None, ge=1, description="depth L; d_model = aspect ratio x L (required "
                                                         "unless --student-init)")
    aspect_ratio: int = Field(128, ge=1, description="d_model / n_layers")
    head_dim: int | None = Field(None, ge=1, description="attention head size (default: 128)")
    tie_embeddings: bool = Field(False, description="share input and output embeddings")
    mup: bool = Field(True, description="muP parametrisation")
    dropout: float = Field(0.0, ge=0, lt=1, json_schema_extra=hashed_unless_default(), description=(
        "dropout probability P on the embedding output and each attention and MLP output before the residual "
        "add, in training only (evaluation and teachers: none); the family's model (default: 0, none)"))
    student_init: Path | None = Field(
        None, json_schema_extra=hashed_unless_default(),
        description="start from the weights and shape of this model instead of a random one: a run "
                    "directory, a `distillscale prune` output, or a Hugging Face causal-LM directory "
                    "(Llama/Qwen3 are imported exactly into the family; any other architecture trains through "
                    "AutoModelForCausalLM, the generic path, which has no muP; its FLOPs are counted as the "
                    "family's, from its matmuls and config). Replaces --n-layers, "
                    "--aspect-ratio, --head-dim, --tie-embeddings and --mup; its tokenizer must be the run's")


# The shape settings a start (--student-init) replaces: its model has its own.
STUDENT_INIT_REPLACES = ("n_layers", "aspect_ratio", "head_dim", "tie_embeddings", "mup")


class BudgetSettings(Settings):
    section, title = "budget", "Budget and batch"

    tokens: Annotated[float | None, quantity("tokens", kind=Quantity.TOKENS)] = Field(
        None, json_schema_extra=FORK_OWN, description="training tokens, e.g. 50M")
    tokens_per_param: Annotated[float | None, quantity("tokens_per_param", kind=Quantity.TOKENS_PER_PARAM)] = Field(
        None, json_schema_extra=FORK_OWN, description="training tokens per non-embedding parameter, e.g. 20")
    seq_len: int = Field(256, ge=2, description="tokens per sequence")
    batch_size: int = Field(32, ge=1, description="sequences per micro-batch, over all processes")
    grad_accum: int = Field(1, ge=1, description="micro-batches per step")
    reference_batch_size: int | None = Field(
        None, ge=1, json_schema_extra=hashed_unless_default(),
        description="global batch (sequences) that lr and the schedule were tuned at: lr is "
                    "scaled to this run's batch size x grad accum by lr_scaling (default: "
                    "none, lr as given)")
    lr_scaling: Literal["sqrt", "linear", "none"] | None = Field(
        None, json_schema_extra=hashed_unless_default("reference_batch_size"),
        description=f"sqrt (Hoffer et al. 2017), linear or none (default: {DEFAULT_LR_SCALING})")
    regime_adaptation: bool = Field(
        False, json_schema_extra=hashed_unless_default("reference_batch_size"),
        description="make as many updates as reference_batch_size would on the token budget, i.e. "
                    "train on batch / reference batch times more tokens")


class OptimSettings(Settings):
    section, title = "optim", "Optimisation"

    lr: float = Field(MUP_BASE_LR, gt=0, description=f"peak learning rate (muP base; a --student-init without muP: {START_LR:g})")
    min_lr_ratio: float = Field(1e-3, ge=0, le=1, description="final lr / peak lr")
    warmup_steps: int | None = Field(None, ge=0, description=f"(default: {DEFAULT_WARMUP_FRACTION:.0%} of "
                                                             f"the steps, at most {DEFAULT_WARMUP_STEPS})")
    warmup_tokens: Annotated[float | None, quantity("warmup_tokens", kind=Quantity.TOKENS)] = Field(
        None, json_schema_extra=hashed_unless_default(),
        description="warmup as training tokens, e.g. 2M (rounded up to whole steps), instead of "
                    "--warmup-steps")
    warmup_tokens_per_param: Annotated[float | None, quantity("warmup_tokens_per_param",
                                                              kind=Quantity.TOKENS_PER_PARAM)] = Field(
        None, json_schema_extra=hashed_unless_default(),
        description="warmup as tokens per non-embedding parameter, e.g. 0.5 (rounded up to whole "
                    "steps), instead of --warmup-steps")
    schedule: Literal["cosine", "wsd"] = Field("cosine", json_schema_extra=hashed_unless_default(),
                                               description="cosine, or wsd: warmup, constant, then a cooldown")
    cooldown_fraction: float | None = Field(None, gt=0, le=1, json_schema_extra=hashed_unless_default("schedule"),
                                            description=f"wsd: share of the steps in the "
                                                        f"cooldown (default: {DEFAULT_COOLDOWN_FRACTION})")
    cooldown_shape: Literal["linear", "1-sqrt"] | None = Field(
        None, json_schema_extra=hashed_unless_default("schedule"),
        description=f"wsd: linear or 1-sqrt (default: {DEFAULT_COOLDOWN_SHAPE})")
    weight_decay: float = Field(1e-4, ge=0, description="per-step decay at peak lr, independent of lr")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm, 0 = off")
    z_loss: float = Field(1e-4, ge=0, description="z-loss weight")
    adam_beta1: float = Field(0.9, ge=0, lt=1, json_schema_extra=hashed_unless_default(),
                              description="AdamW beta1 (first-moment decay)")
    adam_beta2: float = Field(0.95, ge=0, lt=1, json_schema_extra=hashed_unless_default(),
                              description="AdamW beta2 (second-moment decay; Porian et al. "
                                          "raise it at small batches, e.g. 0.99)")
    adam_eps: float = Field(1e-8, gt=0, json_schema_extra=hashed_unless_default(), description="AdamW epsilon")


class RunSettings(Settings):
    section, title = "run", "Run directory"

    out: Path = Field(json_schema_extra=NOT_HASHED,
                      description="run directory (created; re-run the same command to resume)")
    seed: int = Field(0, ge=0, description="initialisation and batch order")
    fork_tokens: Annotated[list[int] | None, counts("fork_tokens", kind=Quantity.TOKENS)] = Field(
        None, json_schema_extra=hashed_unless_default() | FORK_OWN,
        description="wsd: budgets of this run's forks, e.g. 1M,2M: keeps the state where each "
                    "one's cooldown starts")
    fork_from: Path | None = Field(None, json_schema_extra=hashed_unless_default() | FORK_OWN,
                                   description="wsd: a run with this run's budget in its fork_tokens: "
                                               "start from its stable phase and train the cooldown only")
    eval_every: int = Field(250, ge=0, description="steps between validations, 0 = only at the end")
    eval_tokens: Annotated[int | None, count("eval_tokens", kind=Quantity.TOKENS)] = Field(
        None, description="validation tokens per evaluation: a fixed random sample of the split's windows, the "
                          "same for every run (default: the whole split)")
    save_every: int = Field(100, ge=1, json_schema_extra=NOT_HASHED, description="steps between checkpoints")
    save_every_seconds: float = Field(60.0, ge=0, json_schema_extra=NOT_HASHED,
                                      description="also a checkpoint whenever this many seconds of "
                                                  "training passed since the last one, so an "
                                                  "interrupted run loses at most about that "
                                                  "(0: by steps only)")
    log_every: int = Field(10, ge=1, json_schema_extra=NOT_HASHED, description="steps between metrics lines")
    overwrite: bool = Field(False, json_schema_extra=NOT_HASHED,
                            description="replace a finished or different run in out")


class HardwareSettings(Settings):
    section, title = "hardware", "Hardware"

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda")
    bf16: bool | None = Field(None, description="bf16 autocast (default: on CUDA only)")
    compile: bool = Field(False, description="torch.compile the trunk, a live teacher's trunk, the supervised loss "
                                             "and a logit cache's distillation loss")
    # sharded checkpoints, which a DDP run cannot resume: hashed (but not while DDP, as before FSDP existed)
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", json_schema_extra=hashed_unless_default(),
        description="several processes: ddp (every rank holds the whole model) or fsdp (parameters, "
                    "gradients and optimizer state sharded per block; sharded checkpoints)")
    activation_checkpointing: bool = Field(
        False, json_schema_extra=NOT_HASHED,
        description="fsdp: recompute each block's activations in the backward pass (less memory)")


# Bases in reverse: pydantic lists the fields of the last base first, so files and --help read data, model, ...
class TrainConfig(HardwareSettings, RunSettings, OptimSettings, BudgetSettings, ModelSettings, CorpusSettings):
    """Everything that defines a supervised training run (see `distillscale train --help`)."""

    _start_lr = model_validator(mode="before")(classmethod(lambda cls, settings: with_start_lr(settings)))

    @model_validator(mode="after")
    def _one_budget(self) -> "TrainConfig":
        if self.student_init is None and self.n_layers is None:
            raise ValueError("give the model's depth with --n-layers (d_model = aspect ratio x depth), or "
                             "start from a model with --student-init DIR")
        fields = type(self).model_fields
        if self.student_init is not None and (given := [k for k in STUDENT_INIT_REPLACES
                                                        if getattr(self, k) != fields[k].default]):
            raise ValueError(f"{flag(given[0])} does not mix with --student-init: the model's shape is "
                             f"the one in {self.student_init}")
        if (self.tokens is None) == (self.tokens_per_param is None):
            raise ValueError("give exactly one token budget: --tokens (e.g. 50M) or --tokens-per-param (e.g. 20)")
        if self.schedule != "wsd":
            given = [key for key in ("cooldown_fraction", "cooldown_shape", "fork_from", "fork_tokens")
                     if getattr(self, key) is not None]
            if given:
                raise ValueError(f"{flag(given[0])} needs --schedule wsd: only a warmup-stable-decay run has a "
                                 f"cooldown to fork")
        if (self.fork_from is not None or self.fork_tokens) and self.regime_adaptation:
            raise ValueError("forks (--fork-from, --fork-tokens) and --regime-adaptation do not mix: a fork's steps "
                             "follow its own batch")
        warmups = [key for key in WARMUP_KEYS if getattr(self, key) is not None]
        if len(warmups) > 1:
            raise ValueError(f"give one warmup, not {' and '.join(flag(key) for key in warmups)}: warmup in "
                             f"steps, in tokens or in tokens per parameter")
        if self.eval_tokens is not None and self.eval_tokens < self.seq_len:
            raise ValueError(f"--eval-tokens {self.eval_tokens} is below one sequence of --seq-len "
                             f"{self.seq_len}: raise eval_tokens or leave it out")
        return self

    @field_validator("lr_scaling", "regime_adaptation")
    @classmethod
    def _needs_reference_batch_size(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, False) and info.data.get("reference_batch_size") is None:
            raise ValueError("needs --reference-batch-size, the global batch size (sequences) that lr "
                             "and the schedule were tuned at")
        return value

    def model_shape(self, vocab_size: int) -> ModelConfig:
        """The network these settings train, at the tokenizer's `vocab_size` and this run's context
        (with --student-init, the shape of that model)."""
        if self.student_init is not None:
            from distillscale.model.pretrained import start_config

            return start_config(self.student_init, vocab_size, self.seq_len).model_copy(update={"dropout": self.dropout})
        optional = {"head_dim": self.head_dim} if self.head_dim else {}
        return ModelConfig(n_layers=self.n_layers, aspect_ratio=self.aspect_ratio, vocab_size=vocab_size,
                           max_seq_len=self.seq_len, tie_embeddings=self.tie_embeddings, mup=self.mup,
                           dropout=self.dropout, **optional)

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
        """The tokens asked for: `tokens`, or `tokens_per_param` x non-embedding parameters (within the
        bounds of a token count). A run settles it once, in its `RunPlan`."""
        if self.tokens is not None:
            return self.tokens
        return check_quantity(self.tokens_per_param * non_embedding_params, "tokens_per_param x parameters (tokens)",
                              kind=Quantity.TOKENS)

    def steps_for(self, tokens: float) -> int:
        """Optimizer steps that cover `tokens` (the last step may overshoot them); with regime
        adaptation, the steps the reference batch size would take for them."""
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

    def resolved_warmup_steps(self, total_steps: int, non_embedding_params: int | None = None) -> int:
        """The warmup in optimizer steps: `warmup_steps`; the steps that cover `warmup_tokens` or
        `warmup_tokens_per_param` x `non_embedding_params` (as `steps_for` counts them, so with regime
        adaptation the reference batch's steps); or the default, a tenth of the steps up to 2000."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        if self.warmup_tokens is not None:
            return self.steps_for(self.warmup_tokens)
        if self.warmup_tokens_per_param is not None:
            if non_embedding_params is None:
                raise ValueError("warmup_tokens_per_param needs the model's non-embedding parameters")
            return self.steps_for(self.warmup_tokens_per_param * non_embedding_params)
        return warmup_steps(total_steps)

    def unhashed_keys(self) -> set[str]:
        """Settings left out of this run's hash, as each field declares: bookkeeping (`NOT_HASHED`),
        and settings this run does not use (`hashed_unless_default`, their leader at its default)."""
        fields = type(self).model_fields
        left_out = set()
        for key in fields:
            rule = hash_rule(type(self), key)
            if rule is False or (isinstance(rule, str) and getattr(self, rule) == fields[rule].default):
                left_out.add(key)
        return left_out

    def record(self) -> dict[str, Any]:
        """The settings as the run directory's config.json keeps them: JSON values, with the user
        name and password of a teacher server's URL redacted (a secret is no part of what the run
        computes, and config.json is shared with the run's results)."""
        values = self.model_dump(mode="json")
        if isinstance(values.get("teacher_url"), list):
            values["teacher_url"] = [redacted_url(url) for url in values["teacher_url"]]
        elif values.get("teacher_url") is not None:
            values["teacher_url"] = redacted_url(values["teacher_url"])
        return values

    def hash(self) -> str:
        """Identifies what the run computes; bookkeeping settings are left out (`unhashed_keys`)."""
        excluded = self.unhashed_keys()
        payload = {key: value for key, value in self.record().items() if key not in excluded}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def differing_keys(self, other: "TrainConfig") -> list[str]:
        """Keys (bookkeeping excluded) whose values differ between two configs."""
        mine, theirs = self.record(), other.record()
        return [key for key in mine if hash_rule(type(self), key) is not False and mine[key] != theirs[key]]


class TeacherSettings(Settings):
    section, title = "teacher", "Teacher"

    teacher: Path | list[Path] | None = Field(
        None, description="a finished `distillscale train` run directory, or a local Hugging Face causal-LM "
                          "directory; `distill` takes it several times: a mixture of teachers (see "
                          "--teacher-weight, --teacher-route)")
    trust_remote_code: bool = Field(False, description="let a Hugging Face teacher (or --student-init model) run its code")
    other_corpus: bool = Field(False, json_schema_extra=NOT_HASHED, description="--data shares no text with the teacher run's "
                               "corpus: split it on its own, without the teacher's split settings or their check")


_LOSS_FIELDS = DistillationLossConfig.model_fields  # the KD settings, declared once


class DistillSettings(Settings):
    section, title = "distill", "Distillation objective"

    # A list only to refuse it (`_one_cache`): given twice, a plain option would keep the last without a word.
    teacher_cache: Path | list[Path] | None = Field(
        None, description="a `distillscale cache-logits` directory, instead of teacher: its cached predictions, "
                          "no teacher in memory (one cache: a mixture of caches is not built)")
    cache_workers: int | None = Field(None, ge=1, json_schema_extra=NOT_HASHED, description=(
        "with --teacher-cache: threads reading and decoding the cache's batches ahead of the steps, the same "
        "batches whatever their number (default: 1 on the CPU; on a GPU up to 4, one core kept for training)"))
    teacher_weight: list[float] | None = Field(
        None, json_schema_extra=hashed_unless_default(),
        description="with several --teacher: one weight per teacher, in their order (default: equal); the "
                    "target is the weighted mixture of their distributions (normalised to sum 1)")
    teacher_route: str | None = Field(
        None, json_schema_extra=hashed_unless_default(),
        description="with several --teacher NAME=PATH: a field of the jsonl/parquet rows that names each "
                    "document's teacher; each position is distilled from its own document's teacher (a window "
                    "over two documents has two teachers)")
    kd: Literal["forward-kl", "reverse-kl", "jsd"] = Field(_LOSS_FIELDS["kd"].default,
                                                           description="divergence: forward-kl, reverse-kl or jsd")
    temperature: float = _LOSS_FIELDS["temperature"]
    kd_weight: float = _LOSS_FIELDS["kd_weight"]
    top_k: int | None = _LOSS_FIELDS["top_k"]
    top_k_tail: bool = _LOSS_FIELDS["top_k_tail"]
    jsd_beta: float = _LOSS_FIELDS["jsd_beta"]
    teacher_url: str | list[str] | None = Field(
        None, json_schema_extra=hashed_unless_default(),
        description="an OpenAI-compatible completions server of the teacher (`distillscale serve-teacher` "
                    "or vLLM), e.g. http://127.0.0.1:8000/v1, instead of teacher: the student reads its "
                    "--top-k log-probabilities (needs --top-k and the teacher's --tokenizer); the tail "
                    "mass outside the top k is 1 - their probabilities (see docs/top_k_teachers.md); given "
                    "several times, a mixture of servers, their top-k merged on the union of ids")
    teacher_timeout: float = Field(DEFAULT_TEACHER_TIMEOUT, gt=0, le=MAX_TEACHER_TIMEOUT, json_schema_extra=NOT_HASHED,
                                   description=TEACHER_TIMEOUT_HELP)
    teacher_retries: int = Field(TEACHER_RETRIES, ge=0, le=MAX_TEACHER_RETRIES, json_schema_extra=NOT_HASHED,
                                 description=TEACHER_RETRIES_HELP)
    # changes memory, and the results only by float rounding (the sums' order): bookkeeping
    loss_chunk_size: int | None = Field(
        None, ge=1, json_schema_extra=NOT_HASHED,
        description=f"tokens whose logits are computed at once (default: as many as keep tokens x "
                    f"vocabulary within {CHUNK_LOGITS // 2**20}M logits, e.g. 1024 at a 32K "
                    f"vocabulary, 65536 at 512); memory only, results equal up to rounding")
    uld_weight: float = Field(1.0, ge=0, description="with a teacher of another tokenizer: weight of ULD's "
                                                     "sorted-probability term next to the KL on shared tokens")
    teacher_parallel: Literal["shard", "replicate"] = Field(
        "replicate", json_schema_extra=NOT_HASHED,
        description="with --parallel fsdp: shard the teacher's blocks over the ranks (for a "
                    "teacher that does not fit on one device) or replicate it on every rank")


class OnPolicySettings(Settings):
    section, title = "on_policy", "On-policy distillation"

    on_policy_fraction: float = Field(
        0.0, ge=0, le=1, json_schema_extra=hashed_unless_default(),
        description="GKD's lambda: share of batches whose continuations the student samples "
                    "from corpus prompts, the KD loss on its own tokens (0: off-policy)")
    on_policy_temperature: float = Field(1.0, ge=0, json_schema_extra=hashed_unless_default("on_policy_fraction"),
                                         description="temperature the student samples at "
                                                     "(0: its most likely token)")
    on_policy_prompt_tokens: int | None = Field(
        None, ge=1, json_schema_extra=hashed_unless_default("on_policy_fraction"),
        description="corpus tokens before each continuation (default: half of seq_len)")
    on_policy_continuation_tokens: int | None = Field(
        None, ge=1, json_schema_extra=hashed_unless_default("on_policy_fraction"),
        description="tokens the student samples per prompt (default: the rest of the window, "
                    "seq_len + 1 - prompt)")
    on_policy_start: float = Field(0.0, ge=0, lt=1, json_schema_extra=hashed_unless_default("on_policy_fraction"),
                                   description="share of the steps trained off-policy before "
                                               "the first on-policy batch")


# The on-policy settings (left out of the hash while off, as their fields declare).
ON_POLICY_KEYS = frozenset(OnPolicySettings.model_fields)


# Settings only one mode of distillation reads, with that mode: given (other than their default) in
# another mode they would be ignored, so they are refused, the on-policy settings as the others.
MODE_SETTINGS: dict[str, tuple[str, Callable[["DistillConfig"], bool]]] = {
    **{key: ("--on-policy-fraction > 0", lambda config: config.on_policy_fraction > 0)
       for key in sorted(ON_POLICY_KEYS - {"on_policy_fraction"})},
    "teacher_timeout": ("--teacher-url", lambda config: config.teacher_url is not None),
    "teacher_retries": ("--teacher-url", lambda config: config.teacher_url is not None),
    "jsd_beta": ("--kd jsd", lambda config: config.kd == "jsd"),
    "cache_workers": ("--teacher-cache", lambda config: config.teacher_cache is not None),
    # the tail of top-k targets: --top-k (a live teacher's, a server's) or a top-k logit cache's
    "top_k_tail": ("--top-k or --teacher-cache", lambda config: config.top_k is not None or config.teacher_cache is not None),
    # a --teacher with another tokenizer than --tokenizer: known once the teacher is found (distill)
    "uld_weight": ("--teacher (of another tokenizer than --tokenizer)", lambda config: config.teacher is not None),
}


# Settings a sweep's student takes from its teacher (the student half, the teacher's tokenizer); `distill` has no
# flag for the tokenizer's (its --split says which half it reads).
TEACHER_FIXED_KEYS, DISTILL_LEFT_OUT = frozenset({"split", "vocab_size"}), frozenset({"vocab_size"})


class DistillConfig(OnPolicySettings, DistillSettings, TeacherSettings, TrainConfig):
    """A training run config plus the teacher and the KD settings (see `distillscale distill --help`)."""

    split: Literal["teacher", "student"] = Field("student", description=(
        "the half of the corpus the student trains on (default: the half its run teacher did not train on); teacher: "
        "the teacher's own, for self-distillation or distillation on a fixed pool (with its --unique-tokens, its subset)"))

    @model_validator(mode="before")
    @classmethod
    def _top_k_default_kd_weight(cls, data: Any) -> Any:
        """Top-k targets give the data a share by default (`TOP_K_KD_WEIGHT`)."""
        if isinstance(data, dict) and data.get("top_k") is not None and data.get("kd_weight") is None:
            data = {**data, "kd_weight": TOP_K_KD_WEIGHT}
        return data

    @field_validator("teacher", "teacher_url", mode="before")
    @classmethod
    def _one_teacher_is_a_path(cls, value: Any) -> Any:
        """A teacher given once is a path or a URL (as before mixtures: the same config.json and hash);
        given several times, a list (a mixture, `training.mixture`)."""
        if isinstance(value, (list, tuple)):
            value = [item for item in value if item is not None]
            return None if not value else value[0] if len(value) == 1 else list(value)
        return value

    @field_validator("teacher_cache", mode="before")
    @classmethod
    def _one_cache(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) > 1:
                raise ValueError(f"--teacher-cache is given {len(value)} times: a mixture of cached teachers is not "
                                 f"built; give one --teacher-cache, or mix the teachers themselves (--teacher, "
                                 f"several times)")
            return value[0] if value else None
        return value

    def teacher_paths(self) -> list[Path]:
        """Every --teacher, in order (one for a single teacher, none with a cache or a server)."""
        if self.teacher is None:
            return []
        return list(self.teacher) if isinstance(self.teacher, list) else [self.teacher]

    def teacher_urls(self) -> list[str]:
        """Every --teacher-url, in order, whole: one a multi-node launch handed on redacted is restored from
        the environment (`urls.restored`); the saved config (`record`) redacts each again."""
        if self.teacher_url is None:
            return []
        return [restored(url) for url in (self.teacher_url if isinstance(self.teacher_url, list) else [self.teacher_url])]

    @property
    def is_mixture(self) -> bool:
        return isinstance(self.teacher, list) or isinstance(self.teacher_url, list)

    @model_validator(mode="after")
    def _one_teacher(self) -> "DistillConfig":
        check_mixture(self)
        given = [name for name in ("teacher", "teacher_cache", "teacher_url") if getattr(self, name) is not None]
        if not given:
            raise ValueError("missing required setting --teacher (a run or Hugging Face directory), "
                             "--teacher-cache (a `distillscale cache-logits` directory) or --teacher-url (a "
                             "teacher server)")
        if given == ["teacher", "teacher_cache"]:
            raise ValueError("give --teacher or --teacher-cache, not both: the cache replaces the teacher")
        if len(given) > 1:
            raise ValueError(f"give one of --teacher, --teacher-cache and --teacher-url, not "
                             f"{' and '.join('--' + name.replace('_', '-') for name in given)}")
        if self.teacher_url is not None:
            for url in self.teacher_urls():
                try:
                    teacher_api_base(url)  # a ValueError saying what is wrong with it
                except ValueError as exc:   # named as the flag that gave it
                    raise ValueError(f"--teacher-url {exc}") from None
            if self.top_k is None:
                raise ValueError("--teacher-url needs --top-k K: a server gives the teacher's K most likely "
                                 "tokens per position (e.g. --top-k 20), not its whole distribution")
            if self.tokenizer is None:
                raise ValueError("--teacher-url needs --tokenizer, the teacher's tokenizer: the server speaks "
                                 "in its token ids")
        if self.teacher_parallel == "shard" and self.parallel != "fsdp":
            raise ValueError("--teacher-parallel shard needs --parallel fsdp: add --parallel fsdp, or leave out "
                             "--teacher-parallel to keep a whole teacher on every rank")
        if self.on_policy_fraction > 0:
            if self.teacher_cache is not None:
                raise ValueError("--on-policy-fraction needs a live --teacher: a logit cache holds the teacher's "
                                 "predictions on the corpus, not on what the student generates")
            if self.parallel == "fsdp":
                raise ValueError("--on-policy-fraction is not available with --parallel fsdp yet (sharded "
                                 "generation is untested): use --parallel ddp")
            prompt, continuation = self._on_policy_lengths()
            if prompt > self.seq_len or prompt + continuation > self.seq_len + 1:
                raise ValueError(f"--on-policy-prompt-tokens {prompt} + --on-policy-continuation-tokens "
                                 f"{continuation} exceed the window of --seq-len + 1 = {self.seq_len + 1} "
                                 f"tokens: shorten them or raise --seq-len")
        unused = [(key, mode) for key, (mode, used) in MODE_SETTINGS.items()
                  if not used(self) and getattr(self, key) != type(self).model_fields[key].default]
        if unused:
            key, mode = unused[0]
            raise ValueError(f"{flag(key)} needs {mode}: this run would not use it; leave it out, or add {mode}")
        return self

    def _on_policy_lengths(self) -> tuple[int, int]:
        prompt = self.on_policy_prompt_tokens or max(1, self.seq_len // 2)
        return prompt, self.on_policy_continuation_tokens or max(1, self.seq_len + 1 - prompt)

    def on_policy_config(self) -> OnPolicyConfig | None:
        """The on-policy settings with the lengths resolved; None for off-policy distillation."""
        if self.on_policy_fraction == 0:
            return None
        prompt, continuation = self._on_policy_lengths()
        return OnPolicyConfig(fraction=self.on_policy_fraction, temperature=self.on_policy_temperature,
                              prompt_tokens=prompt, continuation_tokens=continuation, start=self.on_policy_start)

    def data_config(self) -> DataConfig:
        """The corpus, with each token's route when a mixture is routed by a field (`--teacher-route`)."""
        config = super().data_config()
        return config if self.teacher_route is None else config.model_copy(update={"route_field": self.teacher_route})

    def loss_config(self, vocab_size: int) -> DistillationLossConfig:
        """The objective's settings, the chunk resolved for the student's `vocab_size` (`chunk_tokens`);
        a --top-k that keeps the whole vocabulary is refused (it would train on the full distribution
        at the top-k runs' kd-weight default)."""
        if self.top_k is not None and self.top_k >= vocab_size:
            raise UserError(f"--top-k {self.top_k} keeps all {vocab_size} ids of the vocabulary: that is the full "
                            f"distribution; leave out --top-k (full distillation, kd-weight 1 by default)")
        chunk_size = self.loss_chunk_size or chunk_tokens(vocab_size)
        return DistillationLossConfig(kd=self.kd, temperature=self.temperature, kd_weight=self.kd_weight,
                                      z_loss_weight=self.z_loss, top_k=self.top_k, jsd_beta=self.jsd_beta,
                                      top_k_tail=self.top_k_tail, chunk_size=chunk_size)


# Derived from the fields' declarations, for the sweep spec: the settings never in the hash, and the
# WSD settings (left out while the schedule is cosine).
BOOKKEEPING_KEYS = frozenset(key for key in DistillConfig.model_fields if hash_rule(DistillConfig, key) is False)
WSD_KEYS = frozenset(key for key in TrainConfig.model_fields if hash_rule(TrainConfig, key) == "schedule")
