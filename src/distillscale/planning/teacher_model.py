"""A model directory as the plan's existing teacher (`plan --teacher-model DIR`): a distillscale run
or any Hugging Face causal LM. A teacher behind a server is `planning.served_teacher`'s, a student
directory `planning.student_model`'s.

N and the forward FLOPs per token come from the model's config, counted as the engine counts every
model it trains or distils from (`model.sizes`: non-embedding parameters, every matmul and attention
at the plan's context). The teacher's loss L_T must be in the law's units: nats/token of the law's
tokenizer on the law's text (`LawSet.losses`; another tokenizer is refused in one line that says how
to calibrate the laws on the teacher's: `planning.teacher_tokenizer`). It is the measurement
`distillscale loss` kept in distillscale's cache (the same key: the model's files, the tokenizer, the
split, the context), or a loss.json in the model's directory, or measured on the law's split now
(`distillscale loss` in a child process, `planning.teacher_loss`: the planner itself loads no model).

    teacher = teacher_model("models/qwen", laws, n_ctx=2048)   # TeacherModel: .params, .flops_per_token, .loss
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillscale.data.loss_identity import TokenizerIdentity
from distillscale.data.loss_record import LOSS_FILE, LossRecord, MeasurementCache, MeasurementKey, model_fingerprint
from distillscale.errors import UserError
from distillscale.planning.teacher_loss import law_split_directory, measure_in_child
from distillscale.planning.teacher_tokenizer import calibrate_hint, refuse_another_tokenizer

if TYPE_CHECKING:
    from distillscale.laws.lawset import LawSet
    from distillscale.model.sizes import ModelSize


@dataclass(frozen=True)
class TeacherModel:
    """The teacher a plan was given as a model: its size, its FLOPs per token at the plan's context,
    and its measured loss (`loss`, with `source` saying where it came from)."""

    path: str
    size: ModelSize
    flops_per_token: float
    context: int
    loss: LossRecord
    source: str

    @property
    def params(self) -> float:
        return float(self.size.non_embedding_params)

    @property
    def output_rows(self) -> int:
        return self.size.output_rows

    def describe(self) -> str:
        """One line: the teacher's N, FLOPs per token and L_T, and where L_T came from."""
        return (f"teacher {self.path}: N_T = {self.size.describe_params()}, "
                f"{self.flops_per_token:.4g} FLOPs/token at context {self.context} ({self.size.architecture}); "
                f"L_T = {self.loss.describe()}, from {self.source}")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "architecture": self.size.architecture,
                "non_embedding_params": self.size.non_embedding_params, "total_params": self.size.total_params,
                "active_params": self.size.active_params,
                "forward_flops_per_token": self.flops_per_token, "context": self.context,
                "flops_method": self.size.flops_method, "loss": self.loss.nats_per_token,
                "loss_standard_error": self.loss.standard_error, "bits_per_byte": self.loss.bits_per_byte,
                "loss_source": self.source, "loss_record": self.loss.model_dump(mode="json")}


def teacher_model(path: str | Path, laws: LawSet, context: int, trust_remote_code: bool = False,
                  progress=lambda message: None, given_as: str = "--teacher-model",
                  other_corpus: bool = False) -> TeacherModel:
    """The teacher in `path` for a plan under `laws` at `context` tokens: refused in one line when its
    tokenizer is not the law's; L_T from its loss.json, the measurement kept with the law's split, or
    measured there now (`progress(message)` is told before). Messages name it as `given_as` (the flag).
    `other_corpus`: the law's corpus shares no text with a teacher run's (its split is not checked)."""
    from distillscale.model.sizes import model_size

    path = Path(path).expanduser()
    size = model_size(path, trust_remote_code, given_as=given_as)
    _check_tokenizer(path, laws, given_as)
    if not other_corpus:
        _check_split(path, laws)
    at = min(context, size.context) if size.context else context   # a shorter context: the plan's warnings say it
    record, source = _measured_loss(path, laws, at, trust_remote_code, progress, given_as, other_corpus)
    return TeacherModel(str(path), size, float(size.forward_flops_per_token(at)), at, record, source)


def _check_tokenizer(path: Path, laws: LawSet, given_as: str) -> TokenizerIdentity:
    """The teacher's tokenizer, refused in one line when it is not the law's."""
    from distillscale.data.loss_identity import loss_identity
    from distillscale.model.pretrained import tokenizer_of

    found = tokenizer_of(path)
    if found is None:
        raise UserError(f"{given_as} {path} has no tokenizer (tokenizer.json or tokenizer_config.json): its loss "
                        "and the law's must be in the same tokenizer; save the teacher's tokenizer there")
    mine = loss_identity(tokenizer=found).tokenizer
    if laws.losses.tokenizer is not None:
        refuse_another_tokenizer(given_as, path, mine, laws, unstated=None, hint=calibrate_hint(path))
    return mine


def _check_split(path: Path, laws: LawSet) -> None:
    """A teacher run of the corpus the law's runs read, refused in one line when they split it otherwise
    (`data.trained_split`): its loss on the law's validation split, text it may have trained on, would
    come out low. A Hugging Face teacher, or a law whose prepared split is gone, is not checked."""
    from distillscale.data import DataConfig
    from distillscale.data.prepare import open_prepared
    from distillscale.data.trained_split import TrainedSplit

    split = TrainedSplit.of_run(path)
    text = laws.losses.text
    if split is None or text is None or not text.directory or not (Path(text.directory) / "manifest.json").is_file():
        return
    law_data = DataConfig(path=str(text.directory))   # the law's prepared corpus: its own split, recorded
    corpus = (open_prepared(text.directory).manifest.get("config") or {}).get("path")
    split.check(law_data, who="the law", fix=f"calibrate the laws on the teacher's split: `distillscale demo --data "
                                             f"{corpus or 'CORPUS'} --teacher {path}` splits the corpus as the "
                                             "teacher did")


def _measured_loss(path: Path, laws: LawSet, context: int, trust_remote_code: bool, progress,
                   given_as: str, other_corpus: bool = False) -> tuple[LossRecord, str]:
    """(L_T's record, where it came from): a measurement of this model on the law's split at this
    context in distillscale's cache (on any device and precision: `MeasurementCache.find_any`, the key
    `distillscale loss` keeps it by), else a loss.json the user put in the model's directory, else
    measured on the law's split now."""
    fingerprint = model_fingerprint(path)
    own = path / LOSS_FILE
    text = laws.losses.text
    if laws.losses.given and text.split_sha256:
        key = MeasurementKey.of(fingerprint, laws.losses, context, None, "any", "any")
        kept = MeasurementCache().find_any(key)
        if kept is not None:
            return kept, f"the measurement in distillscale's cache ({kept.device}, {kept.dtype}, {kept.created})"
    if own.is_file():
        record = LossRecord.load(own)
        if record.model_fingerprint != fingerprint:
            raise UserError(f"{own} measured other files than {given_as} {path} holds now (a model changed "
                            f"since): measure it again with `distillscale loss {path} --data CORPUS`")
        _check_text(own, record, laws, path, context)
        return record, str(own)
    directory = law_split_directory(path, laws, context, given_as)
    progress(f"measuring the loss of {path} on the law's split ({directory})")
    record = measure_in_child(path, directory, context, trust_remote_code, given_as, other_corpus=other_corpus)
    return record, f"measured now on the law's split ({directory})"


def _check_text(file: Path, record: LossRecord, laws: LawSet, path: Path, context: int) -> None:
    """A loss.json of another tokenizer or text than the law's, refused in one line."""
    why = laws.losses.differs(record.losses)
    if why is not None:
        where = (f"--data {laws.losses.text.directory}" if laws.losses.text and laws.losses.text.directory
                 else "--data CORPUS (the text of the law's runs)")
        raise UserError(f"{file} is the teacher's loss on {why.removeprefix('another ')}: the law's losses are "
                        f"{laws.losses.describe()}; measure the teacher there: `distillscale loss {path} {where} "
                        f"--seq-len {context}`")


