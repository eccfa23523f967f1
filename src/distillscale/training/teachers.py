"""Teachers for distillation: a distillscale run directory or a local Hugging Face causal LM.

A teacher is frozen (eval mode, no gradients; bf16 weights on CUDA, `compute_dtype`) and seen through the same
interface as our `Transformer`: `hidden_states(idx) -> [B, T, d]` and `head(h) -> logits`, so the
chunked distillation loss computes its logits one chunk at a time.

Vocabulary alignment: the student speaks the teacher's tokenizer. When the teacher's output layer
has more rows than the tokenizer has ids (embeddings padded to a multiple of 64 or 128 for speed),
the head keeps the first `vocab_size` logits: the padding rows are never the right answer, and the
two distributions must cover the same ids. A student with another tokenizer is distilled by
`training.cross_tokenizer` (text-aligned positions, no shared vocabulary needed); a logit cache,
which stores the teacher's ids, refuses one.

    source = find_teacher("runs/teacher")          # what it is, without loading weights
    teacher = load_teacher(source, vocab_size=8192, device=torch.device("cuda"), seq_len=256)
    logits = teacher.head(teacher.hidden_states(idx))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from distillscale.console import warn
from distillscale.data.sources import first_line
from distillscale.data.loss_identity import tokenizer_identity
from distillscale.data.tokenizer import load_tokenizer
from distillscale.data.trained_split import TrainedSplit
from distillscale.errors import UserError, path_kind
from distillscale.model.sizes import HFParameterCounts, hf_parameter_counts
from distillscale.planning.flops import ForwardCount
from distillscale.settings import TConfig
from distillscale.training.records import TeacherRecord
from distillscale.training.run_dir import RunDirectory, check_finished_model, read_config_json

# The settings of a teacher run that say which corpus it trained on; a student distilled from it
# reads the same corpus by default, and so trains on the other half of it.
CORPUS_SETTINGS = ("data", "text_field", "max_bytes", "val_fraction")
OTHER_HALF = {"teacher": "student", "student": "teacher"}
STUDENT_SPLIT_SETTINGS = ("max_bytes", "val_fraction")  # a student's settings that split its corpus (its seed is 0)


@dataclass(frozen=True)
class TeacherSource:
    """Where a teacher lives and which tokenizer it speaks, found without loading its weights."""

    path: Path
    kind: Literal["run", "hf"]
    tokenizer_path: Path | None  # None: a Hugging Face directory saved without its tokenizer
    corpus: dict[str, Any] = field(default_factory=dict)  # a run teacher's CORPUS_SETTINGS
    trained_split: str | None = None  # the half of its corpus a run teacher trained on
    trained_unique_tokens: int | None = None  # a run teacher's --unique-tokens (None: its whole half)


@dataclass(frozen=True)
class TeacherInfo:
    """What result.json records about a teacher."""

    path: str
    kind: Literal["run", "hf"]
    non_embedding_params: int
    total_params: int
    output_rows: int                # logits the teacher computes; more than vocab_size when padded
    forward_flops_per_token: int    # at the run's context: `count.forward_flops_per_token(seq_len)`
    flops_method: str
    count: ForwardCount             # its count at any context (the family's ModelConfig; `HFFlops`)
    context: int | None = None      # the longest sequence it reads (None: not stated)

    def record(self, teacher_val_loss: float, tokens: int, **more: Any) -> TeacherRecord:
        """result.json's `teacher` after a run of `tokens` tokens with this teacher's forward passes."""
        return TeacherRecord(path=self.path, kind=self.kind, teacher_val_loss=teacher_val_loss,
                             non_embedding_params=self.non_embedding_params, total_params=self.total_params,
                             forward_flops_per_token=self.forward_flops_per_token,
                             flops=self.forward_flops_per_token * tokens, flops_method=self.flops_method, **more)


def find_teacher(path: str | Path, trust_remote_code: bool = False, given_as: str = "--teacher",
                 role: str = "teacher", then: str = ", then distil from it") -> TeacherSource:
    """Tell a distillscale run directory from a Hugging Face model directory (whose config must
    load), or refuse the path (`given_as`: how the user gave it; `role`: what the model is to the
    command, "teacher" or "model"; `then`: what the user does with it once a run is finished: all
    named in the messages); the weights are not read."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"{role} {path} {path_kind(path)}, not a directory: give a distillscale run directory or a "
                        f"local Hugging Face model directory as {given_as}")
    if (path / "model_config.json").is_file():
        return _run_source(path, role, then)
    if _is_hf_model(path):
        _check_hf_config(path, trust_remote_code)
        has_tokenizer = (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()
        return TeacherSource(path=path, kind="hf", tokenizer_path=path if has_tokenizer else None)
    raise UserError(f"{role} {path} is neither a distillscale run directory (no model_config.json) nor "
                    f"a Hugging Face model directory (no config.json with a model_type): give the "
                    f"directory of a finished `distillscale train` run or of a saved causal LM")


def _run_source(path: Path, role: str = "teacher", then: str = ", then distil from it") -> TeacherSource:
    check_finished_model(path, f"{role} run", then=then)
    tokenizer_path = path / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise UserError(f"{role} run {path} has no tokenizer.json: copy back the tokenizer it was "
                        f"trained with")
    settings = _read_json(path / "config.json").get("config", {})
    corpus = {key: settings[key] for key in CORPUS_SETTINGS if settings.get(key) is not None}
    recorded = RunDirectory(path).recorded_data()
    if "data" in corpus and recorded is not None and recorded[0].path is not None:
        corpus["data"] = recorded[0].path   # as it resolved when the run read it: from any directory
    return TeacherSource(path=path, kind="run", tokenizer_path=tokenizer_path, corpus=corpus,
                         trained_split=settings.get("split"), trained_unique_tokens=settings.get("unique_tokens"))


def _is_hf_model(path: Path) -> bool:
    config_path = path / "config.json"
    return config_path.is_file() and "model_type" in _read_json(config_path)


def _check_hf_config(path: Path, trust_remote_code: bool) -> None:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise hf_load_error(path, exc, trust_remote_code) from None


def hf_load_error(path: Path, exc: Exception, trust_remote_code: bool) -> UserError:
    hint = "" if trust_remote_code else " (if it needs its own code, pass --trust-remote-code)"
    return UserError(f"cannot load the Hugging Face model in {path}: {first_line(exc)}{hint}")


def load_hf_causal_lm(path: Path, trust_remote_code: bool, **options: Any) -> nn.Module:
    """`AutoModelForCausalLM.from_pretrained(path, **options)`, the one place the generic path (a
    teacher, a student, served or cached) loads a Hugging Face model: a directory it cannot load (a
    missing or bad file, truncated or corrupt safetensors weights) is a one-line UserError."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **options)
    except SafetensorError as exc:
        raise UserError(f"cannot load the Hugging Face model in {path}: its safetensors weights are truncated or "
                        f"corrupt ({first_line(exc)}): download or save them again") from None
    except (OSError, ValueError, KeyError) as exc:
        raise hf_load_error(path, exc, trust_remote_code) from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    if path.name == "config.json":   # garbage or unreadable: said as such
        return read_config_json(path.parent)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError:
        raise UserError(f"{path} cannot be read by this user (permission denied): make it readable") from None
    except (OSError, ValueError):
        raise UserError(f"{path} is not a readable JSON file: restore it") from None
    return value if isinstance(value, dict) else {}


def resolve_student_data(config: TConfig, source: TeacherSource, other_tokenizer: bool = False) -> TConfig:
    """`config` names a teacher and its student's data (a DistillConfig, or the logit cache's
    CacheConfig). The config with the teacher's tokenizer and, when --data is not given, a run
    teacher's corpus, of which the student takes the half the teacher did not train on (unless `split` is set).
    A --tokenizer other than the teacher's is refused unless `other_tokenizer` (cross-tokenizer
    distillation; a logit cache stores the teacher's ids and needs its tokenizer).

    Written to config.json as resolved, so a resumed run checks it reads the same data. A run teacher
    whose training text may lie in the student's validation split is refused (`check_teacher_data`).
    """
    updates: dict[str, Any] = {"teacher": source.path}
    other_corpus = other_corpus_given(config)
    if config.tokenizer is None:
        if source.tokenizer_path is None:
            raise UserError(f"the teacher {source.path} has no tokenizer (tokenizer.json or "
                            f"tokenizer_config.json): save it there, or pass the teacher's tokenizer "
                            f"with --tokenizer")
        updates["tokenizer"] = source.tokenizer_path
    elif source.tokenizer_path is not None and not other_tokenizer:
        check_same_tokenizer(source.tokenizer_path, config.tokenizer)
    if config.data is None:
        if source.kind == "run" and "data" in source.corpus:   # the teacher's own corpus, still where it read it
            RunDirectory(source.path).data_to_read(role="teacher")
        updates |= {key: value for key, value in source.corpus.items() if getattr(config, key) is None}
        if source.trained_split is not None and "split" not in config.model_fields_set:
            updates["split"] = OTHER_HALF[source.trained_split]
    resolved = type(config).model_validate(config.model_dump() | updates)
    given = {key for key in STUDENT_SPLIT_SETTINGS if getattr(config, key) is not None}
    trained = TrainedSplit.of_run(source.path) if source.kind == "run" and not other_corpus else None
    if trained is not None and config.data is not None:
        # split as the teacher did (its seed and fraction; its max_bytes on its own corpus), unless told otherwise
        adopted = trained.as_trained(resolved.data_config(), given)   # a prepared corpus keeps its own split
        unset = {key: getattr(adopted, key) for key in STUDENT_SPLIT_SETTINGS
                 if key not in given and getattr(adopted, key) != getattr(resolved.data_config(), key)}
        resolved = type(config).model_validate(resolved.model_dump() | unset)
    check_teacher_data(source, resolved.data_config(), given=given, other_corpus=other_corpus)
    return resolved


def other_corpus_given(config) -> bool:
    """Whether the user said that --data shares no text with the teacher's corpus (`--other-corpus`), which
    names --data: refused in one line without it."""
    if not getattr(config, "other_corpus", False):
        return False
    if config.data is None:
        raise UserError("--other-corpus says that --data shares no text with the teacher's corpus: give --data, "
                        "or leave out --other-corpus to read the teacher's own corpus")
    return True


def check_teacher_data(source: TeacherSource, student_data, role: str = "teacher", given=(),
                       other_corpus: bool = False) -> None:
    """Refuse a run teacher whose training text may lie in the student's validation split, in one line
    (the teacher's loss, measured there, would be biased low): the rule every reader of a run's corpus
    follows (`data.trained_split`). The teacher's recorded data fingerprint is checked as a logit
    cache's is (`logit_cache.distill.check_cache_matches_data`): when the student reads the teacher's
    corpus (the same files), the teacher's data must be what its settings prepare from that corpus now
    (not an earlier data format's split, not a corpus changed since), and the student must split it as
    the teacher did. A student of another corpus, and a Hugging Face teacher, are not checked: nothing
    says which text they trained on. `student_data`: the student's DataConfig; `role`: what the run is
    to the student, for the message ("teacher", "start"); `given`, the split settings the user gave;
    `other_corpus`: the user said the student's corpus shares no text with the run's (not checked)."""
    split = TrainedSplit.of_run(source.path, role) if source.kind == "run" and not other_corpus else None
    if split is not None:
        split.check(student_data, given=given,
                    fix=f"give the corpus itself as --data, which is then split as the {role} did")


def warn_moved_documents(sources: list[TeacherSource], data, config, is_main: bool = True) -> None:
    """Say, in one line per run teacher, how many of the student's validation documents (`data`, prepared)
    are documents that teacher trained on, edited since (a copy of its corpus with lines changed:
    `TrainedSplit.moved_into_validation`): the teacher's loss measured there reads low. Nothing for a
    Hugging Face teacher, or --other-corpus."""
    if not is_main or getattr(config, "other_corpus", False):
        return
    for source in sources:
        trained = TrainedSplit.of_run(source.path) if source.kind == "run" else None
        moved = trained.moved_into_validation(data) if trained is not None else None
        if moved is not None and moved.warning() is not None:
            warn(moved.warning())


def shared_text(source: TeacherSource, config) -> dict[str, str]:
    """What result.json's `teacher` says when the student (`config`, resolved) trains on its run teacher's
    own training text: the same half of the same corpus ({"trained_split", "student_read": "split"}), and
    with the teacher's --unique-tokens, the very subset it trained on ("subset": subsets are a fixed order of
    the half's chunks, `data.repetition.unique_subset`). {} for other text: the other half, another corpus
    (--other-corpus, or --data with other content), a Hugging Face teacher (nothing says what it read).
    A legitimate choice (`distill --split teacher`): the validation split, which the leak check guards
    (`check_teacher_data`), is the same either way."""
    if source.kind != "run" or source.trained_split is None or config.split != source.trained_split \
            or getattr(config, "other_corpus", False):
        return {}
    trained = TrainedSplit.of_run(source.path)
    if trained is None or not trained.reads_my_corpus(config.data_config()):
        return {}
    same_subset = config.unique_tokens is not None and config.unique_tokens == source.trained_unique_tokens
    return {"trained_split": source.trained_split, "student_read": "subset" if same_subset else "split"}


def check_start_data(start: str | Path, student_data, other_corpus: bool = False) -> None:
    """A student's start (`--student-init`), checked as a teacher is (`check_teacher_data`): a run, its
    own data; a model pruned from a teacher run (its prune.json names it), the teacher's. A Hugging
    Face start is not checked."""
    start = Path(start).expanduser()
    pruned_from = _read_json(start / "prune.json").get("teacher") if (start / "prune.json").is_file() else None
    if pruned_from is not None:
        check_teacher_data(TeacherSource(path=Path(pruned_from), kind="run", tokenizer_path=None), student_data,
                           other_corpus=other_corpus)
    elif (start / "config.json").is_file():
        check_teacher_data(TeacherSource(path=start, kind="run", tokenizer_path=None), student_data, role="start",
                           other_corpus=other_corpus)


def tokenizer_difference(teacher_tokenizer: Path, student_tokenizer: Path) -> str | None:
    """How the student's tokenizer differs from the teacher's (`TokenizerIdentity.differs`: the
    vocabulary, merges, special tokens, normalizer, pre-tokenizer or post-processor), None: the same."""
    return tokenizer_identity(load_tokenizer(teacher_tokenizer)[0], str(teacher_tokenizer)).differs(
        tokenizer_identity(load_tokenizer(student_tokenizer)[0], str(student_tokenizer)))


def same_tokenizer(teacher_tokenizer: Path, student_tokenizer: Path) -> bool:
    """Whether the two tokenizers are the same tokenizer (every text the same ids)."""
    return tokenizer_difference(teacher_tokenizer, student_tokenizer) is None


def check_same_tokenizer(teacher_tokenizer: Path, student_tokenizer: Path) -> None:
    """Refuse a student tokenizer other than the teacher's: another vocabulary gives its ids other
    meanings, another normalizer or pre-tokenizer feeds the teacher text cut otherwise."""
    why = tokenizer_difference(teacher_tokenizer, student_tokenizer)
    if why is None:
        return
    teacher_vocab = load_tokenizer(teacher_tokenizer)[0].get_vocab(with_added_tokens=True)
    student_vocab = load_tokenizer(student_tokenizer)[0].get_vocab(with_added_tokens=True)
    differing = sorted(set(teacher_vocab.items()) ^ set(student_vocab.items()), key=lambda item: item[1])
    example = "" if not differing else (f"; e.g. {differing[0][0]!r} is id {student_vocab.get(differing[0][0], 'absent')}"
                                        f" vs {teacher_vocab.get(differing[0][0], 'absent')}")
    raise UserError(
        f"tokenizer {student_tokenizer} differs from the teacher's {teacher_tokenizer} ({why}{example}): a logit "
        f"cache stores the teacher's token ids for the teacher's text, so leave out --tokenizer to use the "
        f"teacher's (`distill --teacher` distils across tokenizers)")


class Teacher(nn.Module):
    """A frozen model with `hidden_states(idx)` and `head(h)`; the head returns logits over the
    first `vocab_size` ids (the tokenizer's), slicing off padded rows of the output layer."""

    def __init__(self, model: nn.Module, vocab_size: int, info: TeacherInfo):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.vocab_size = vocab_size
        self.info = info

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # never leaves eval mode (no dropout), whoever asks

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        compiled = self.__dict__.get("_compiled_hidden_states")
        return compiled(idx) if compiled is not None else self.model.hidden_states(idx)

    def compile_trunk(self) -> Teacher:
        """Run the trunk (`hidden_states`) through torch.compile from now on, as `--compile` does the
        student's: the teacher's forward is otherwise hundreds of eager operations per step."""
        # Kept out of the module's registry (a plain attribute): no second copy in state_dict or modules().
        self.__dict__["_compiled_hidden_states"] = torch.compile(self.model.hidden_states)
        return self

    def head(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.model.head(h)
        return logits if logits.shape[-1] == self.vocab_size else logits[..., :self.vocab_size]


@dataclass(frozen=True)
class LogitTransform:
    """What some architectures do to the output layer's logits, read from their config: a scale
    (Cohere's `logit_scale` multiplies them, Granite's `logits_scaling` divides them), then a soft
    cap (Gemma-2/3's `final_logit_softcapping`: cap * tanh(logits / cap)). Elementwise, so it applies
    to a chunk of positions as to the whole (the chunked losses apply the head chunk by chunk)."""

    scale: float = 1.0
    softcap: float | None = None

    @classmethod
    def of(cls, config: Any) -> "LogitTransform":
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        scale = float(getattr(text, "logit_scale", None) or 1.0)
        scale /= float(getattr(text, "logits_scaling", None) or 1.0)
        softcap = getattr(text, "final_logit_softcapping", None)
        return cls(scale, float(softcap) if softcap else None)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def describe(self) -> str | None:
        """In words, for what the teacher is (None: logits are the output layer's own)."""
        parts = ([f"its logits scaled by {self.scale:g}"] if self.scale != 1.0 else []) + (
            [f"soft-capped at {self.softcap:g}"] if self.softcap is not None else [])
        return " and ".join(parts) or None


class HFCausalLM(nn.Module):
    """A Hugging Face causal LM through our model interface: the base model's last hidden state, and
    the output embedding as the head, followed by the elementwise transform its config names
    (`LogitTransform`: soft-capping, logit scaling)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.logit_transform = LogitTransform.of(model.config)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.base_model(input_ids=idx, use_cache=False).last_hidden_state

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.logit_transform(self.model.get_output_embeddings()(h))

    def parameter_counts(self) -> HFParameterCounts:
        """Its parameters, counted from the loaded model (one place for teachers and students: `model.sizes`)."""
        return hf_parameter_counts(self.model)


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype of a teacher's weights in the forward passes that make a student's targets: bf16 on
    CUDA, float32 elsewhere. Its loss L_T is measured before, on float32 weights under the run's
    autocast, as a run's own val_loss is (`load_teacher(..., dtype=torch.float32)`, then `.to` this)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_teacher(source: TeacherSource, vocab_size: int, device: torch.device, seq_len: int,
                 trust_remote_code: bool = False, dtype: torch.dtype | None = None) -> Teacher:
    """Load the teacher on `device` with weights in `dtype` (default: `compute_dtype(device)`),
    checked against the student's `vocab_size` (its tokenizer's) and context `seq_len`."""
    dtype = dtype or compute_dtype(device)
    try:
        if source.kind == "run":
            model, info = _load_run(source.path, device, dtype, seq_len)
        else:
            model, info = _load_hf(source.path, device, dtype, seq_len, trust_remote_code)
    except (UserError, torch.cuda.OutOfMemoryError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 (a truncated or damaged file fails in its loader's own words)
        raise UserError(_cannot_run(source, exc)) from None
    if info.output_rows < vocab_size:
        raise UserError(f"teacher {source.path} predicts {info.output_rows} token ids but the tokenizer has "
                        f"{vocab_size}: the tokenizer does not belong to this teacher")
    return Teacher(model, vocab_size, info)


PROBE_WINDOW = 16  # tokens of the forward that checks a teacher runs


def _cannot_run(source: TeacherSource, exc: Exception) -> str:
    """Why a teacher cannot be loaded or run, in one line: a file of it this user may not read, said so
    (its loader may call it missing or damaged); else the loader's own words."""
    from distillscale.io import permission_denied, unreadable_file

    blocked = unreadable_file(source.path)
    if blocked is not None:
        return permission_denied(blocked, who=f"teacher {source.path}: ")
    reason = (str(exc).strip().splitlines() or [""])[0]
    return (f"teacher {source.path} cannot be loaded and run ({type(exc).__name__}{': ' if reason else ''}{reason}): "
            "its weights are damaged or are not its config's; save the model again")


def check_teacher_runs(source: TeacherSource, vocab_size: int, context: int, trust_remote_code: bool = False) -> None:
    """One forward of the teacher on the CPU, on a short window, before anything is spent on it:
    weights that cannot be read or run, or logits that are not finite, are a one-line UserError
    (instead of a failure after the work that needed them). `context`: one it takes."""
    window = max(1, min(PROBE_WINDOW, context))
    teacher = load_teacher(source, vocab_size, torch.device("cpu"), window, trust_remote_code, dtype=torch.float32)
    try:
        with torch.no_grad():
            logits = teacher.head(teacher.hidden_states(torch.arange(window)[None] % vocab_size))
    except (RuntimeError, ValueError, IndexError) as exc:
        raise UserError(_cannot_run(source, exc)) from None
    if not torch.isfinite(logits).all():
        raise UserError(f"teacher {source.path} gives logits that are not finite on a test window: its weights are "
                        "damaged (nan or inf); save the model again")


def _load_run(path: Path, device: torch.device, dtype: torch.dtype,
              seq_len: int) -> tuple[nn.Module, TeacherInfo]:
    from distillscale.model import load_pretrained

    model = load_pretrained(path, device).to(dtype)
    return model, _family_teacher_info(path, model.config, seq_len, "run",
                                       "exact: the teacher's ModelConfig.forward_flops_per_token(seq_len)")


def _family_teacher_info(path: Path, config, seq_len: int, kind: str, flops_method: str) -> TeacherInfo:
    """A teacher of the family (a run, or an imported Llama/Qwen3): its context checked against
    --seq-len, its sizes and exact FLOPs from its ModelConfig."""
    if seq_len > config.max_seq_len:
        raise UserError(f"--seq-len {seq_len} is longer than the teacher's context ({config.max_seq_len} "
                        f"tokens): use --seq-len {config.max_seq_len} or less")
    return TeacherInfo(path=str(path), kind=kind, non_embedding_params=config.non_embedding_params,
                       total_params=config.total_params, output_rows=config.vocab_size,
                       forward_flops_per_token=config.forward_flops_per_token(seq_len),
                       flops_method=flops_method, context=config.max_seq_len, count=config)


def _load_hf(path: Path, device: torch.device, dtype: torch.dtype, seq_len: int,
             trust_remote_code: bool) -> tuple[nn.Module, TeacherInfo]:
    from distillscale.model.hf_flops import hf_forward_flops
    from distillscale.model.hf_import import unsupported_reason

    if not _read_json(path / "config.json").get("auto_map") and unsupported_reason(path) is None:
        return _load_imported(path, device, dtype, seq_len)

    model = load_hf_causal_lm(path, trust_remote_code, dtype=dtype)
    context = getattr(model.config, "max_position_embeddings", None)
    if context is not None and seq_len > context:
        raise UserError(f"--seq-len {seq_len} is longer than the teacher's context ({context} tokens): "
                        f"use --seq-len {context} or less")
    model = HFCausalLM(model.to(device))
    check_logits_are_head_of_hidden(model, path, device)

    counts = model.parameter_counts()
    flops = hf_forward_flops(model.model)  # the one count for any Hugging Face model, teacher or student
    info = TeacherInfo(path=str(path), kind="hf", non_embedding_params=counts.non_embedding,
                       total_params=counts.total, output_rows=counts.output_rows,
                       forward_flops_per_token=flops.forward_flops_per_token(seq_len),
                       flops_method=flops.method_text,
                       context=getattr(model.model.config, "max_position_embeddings", None), count=flops)
    return model, info


def _load_imported(path: Path, device: torch.device, dtype: torch.dtype,
                   seq_len: int) -> tuple[nn.Module, TeacherInfo]:
    """A Llama / Qwen3 directory, imported as a model of the family (same logits): the fast path
    (our fused kernels, --compile) and exact FLOPs."""
    from distillscale.model.hf_import import import_hf

    model = import_hf(path, device, dtype)
    return model, _family_teacher_info(path, model.config, seq_len, "hf",
                                       "exact: imported as the family (Llama/Qwen3), the teacher's "
                                       "ModelConfig.forward_flops_per_token(seq_len)")


@torch.no_grad()
def check_logits_are_head_of_hidden(model: HFCausalLM, path: Path, device: torch.device) -> None:
    """Some architectures change the logits after the output layer; the chunked loss applies the head
    by itself, so the head with the transform its config names (`LogitTransform`) must be the whole
    story: any other change (one the config does not name, or not elementwise) is refused."""
    probe = torch.arange(8, device=device).unsqueeze(0)
    logits = model.model(input_ids=probe, use_cache=False).logits
    head = model.head(model.hidden_states(probe))  # a student's head keeps the tokenizer's rows
    if not torch.allclose(head, logits[..., :head.shape[-1]], rtol=1e-3, atol=1e-3):
        known = model.logit_transform.describe()
        raise UserError(f"the model in {path} transforms its logits after the output layer in a way its config "
                        f"does not name{f' (beyond {known})' if known else ''}, which distillscale cannot reproduce "
                        f"chunk by chunk: use a model whose logits are its output layer applied to the last hidden "
                        f"state, soft-capped or scaled as its config says")
