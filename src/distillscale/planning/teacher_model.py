"""A model directory as the plan's existing teacher (`plan --teacher-model DIR`) or its student
(`plan --student-model DIR`): a distillscale run or any Hugging Face causal LM; or a teacher behind
`distillscale serve-teacher` (`plan --teacher-model URL`, `teacher --candidates URL`: `served_teacher`).

N and the forward FLOPs per token come from the model's config, counted as the engine counts every
model it trains or distils from (`model.sizes`: non-embedding parameters, every matmul and attention
at the plan's context). The teacher's loss L_T must be in the law's units: nats/token of the law's
tokenizer on the law's text (`LawSet.losses`). It is the measurement `distillscale loss` kept in
distillscale's cache (the same key: the model's files, the tokenizer, the split, the context), or a
loss.json in the model's directory, or measured on the law's split now (`distillscale loss` in a
child process: the planner itself loads no model). A teacher of
another tokenizer, or a loss.json of another text, is refused in one line that says how to calibrate
the laws on the teacher's tokenizer.

    teacher = teacher_model("models/qwen", laws, n_ctx=2048)   # TeacherModel: .params, .flops_per_token, .loss
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillscale.data.loss_identity import TokenizerIdentity
from distillscale.data.loss_record import LOSS_FILE, LossRecord, MeasurementCache, MeasurementKey, model_fingerprint
from distillscale.errors import ParameterError, UserError

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


def student_size(path: str | Path, n_ctx: int | None, context: int, trust_remote_code: bool = False
                 ) -> tuple[float, float, ModelSize]:
    """(N_S, F(N_S), its size) of a student model directory (a run, a prune output or a Hugging Face
    directory), priced at the plan's context `context` (the law's, or `n_ctx` when given), at most the
    model's own."""
    from distillscale.model.sizes import model_size

    size = model_size(path, trust_remote_code, given_as="--student-model")
    longest = size.context
    if n_ctx is not None and longest is not None and n_ctx > longest:
        raise ParameterError(("n_ctx", "student_model", "n_ctx"), f"{{}} {n_ctx} is longer than the context of {{}} "
                             f"({longest} tokens): give {{}} {longest} or less")
    at = min(context, longest) if longest else context
    return float(size.non_embedding_params), float(size.forward_flops_per_token(at)), size


def teacher_model(path: str | Path, laws: LawSet, context: int, trust_remote_code: bool = False,
                  progress=lambda message: None, given_as: str = "--teacher-model") -> TeacherModel:
    """The teacher in `path` for a plan under `laws` at `context` tokens: refused in one line when its
    tokenizer is not the law's; L_T from its loss.json, the measurement kept with the law's split, or
    measured there now (`progress(message)` is told before). Messages name it as `given_as` (the flag)."""
    from distillscale.model.sizes import model_size

    path = Path(path).expanduser()
    size = model_size(path, trust_remote_code, given_as=given_as)
    _check_tokenizer(path, laws, given_as)
    _check_split(path, laws)
    at = min(context, size.context) if size.context else context
    if at < context:
        progress(f"{given_as} {path} takes at most {at} tokens of context: measured and priced at {at}, not "
                 f"{context}")
    record, source = _measured_loss(path, laws, at, trust_remote_code, progress, given_as)
    return TeacherModel(str(path), size, float(size.forward_flops_per_token(at)), at, record, source)


@dataclass(frozen=True)
class ServedTeacher:
    """A teacher behind a server (`distillscale serve-teacher`), as the planner prices it: its size and
    FLOPs per token at the plan's context as the server states them, and its loss measured on the
    law's split through the server (`distillscale loss URL`, kept in distillscale's cache by what the
    server serves)."""

    url: str
    params: float
    flops_per_token: float
    context: int
    loss: LossRecord
    output_rows: int | None = None   # the vocabulary the server states

    def describe(self) -> str:
        """One line, as `TeacherModel.describe`: N_T, FLOPs per token and L_T, as the server states and serves."""
        return (f"teacher {self.url}: N_T = {self.params:,.0f}, {self.flops_per_token:.4g} FLOPs/token at context "
                f"{self.context} (as its server states); L_T = {self.loss.describe()}, measured through the server")

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "non_embedding_params": self.params, "forward_flops_per_token": self.flops_per_token,
                "context": self.context, "flops_method": "as its server states", "loss": self.loss.nats_per_token,
                "loss_standard_error": self.loss.standard_error, "bits_per_byte": self.loss.bits_per_byte,
                "loss_source": "measured through the server", "loss_record": self.loss.model_dump(mode="json")}


class ServedAs(enum.Enum):
    """How a served teacher was given: its flag, and what to give instead of a server that does not
    state its model's size (the teacher's N, with the loss `distillscale loss URL` measures)."""

    TEACHER_MODEL = ("--teacher-model", "--teacher-params N with the --teacher-loss")
    CANDIDATES = ("--candidates", "a CSV row with its teacher_params and the teacher_loss")

    def __init__(self, flag: str, instead: str):
        self.flag, self.instead = flag, instead

    def __str__(self) -> str:
        return self.flag


def served_teacher(url: str, laws: LawSet, context: int, progress=lambda message: None,
                   given_as: ServedAs = ServedAs.CANDIDATES) -> ServedTeacher:
    """The teacher served at `url` for a plan under `laws` at `context` tokens: refused in one line when
    the server does not state its model's size and FLOPs (vLLM) or its tokenizer is not the law's
    (`given_as`: the flag it came by, and what to give instead)."""
    from distillscale.model.served import served_model
    from distillscale.urls import redacted_url

    shown = redacted_url(url)
    flag = given_as.flag
    model = served_model(url, flag)
    about = model.about
    if about.non_embedding_params is None or about.forward_flops_per_token is None:
        raise UserError(f"{flag} {shown}: the server does not state its model's size and FLOPs per token (vLLM "
                        "does not; `distillscale serve-teacher` does): give the teacher's model directory instead, or "
                        f"{given_as.instead} `distillscale loss {shown} --data CORPUS --tokenizer DIR` measures")
    _check_served_tokenizer(shown, about, laws, flag)
    at = min(context, model.max_model_len - 1) if model.max_model_len else context
    if at < context:
        progress(f"{flag} {shown} takes at most {at} tokens of context: measured and priced at {at}, not {context}")
    directory = _split_directory(shown, laws, context, flag)
    progress(f"the loss of {shown} on the law's split ({directory}): measured through the server, or kept")
    record = _measure(url, directory, at, False, flag, shown)
    flops = about.forward_flops_per_token
    return ServedTeacher(shown, float(about.non_embedding_params), float(flops.base + flops.per_context_token * at),
                         at, record, about.vocab_size)


def _check_served_tokenizer(shown: str, about, laws: LawSet, given_as: str) -> None:
    """A served teacher's tokenizer, as its server states it (its identity, no vocabulary hash), refused
    in one line when not the law's (`_refuse_another_tokenizer`)."""
    theirs = laws.losses.tokenizer
    if theirs is None:
        return
    mine = TokenizerIdentity(name=shown, vocab_size=about.vocab_size or theirs.vocab_size,
                             sha256=about.tokenizer_identity, parts=about.tokenizer_parts)
    _refuse_another_tokenizer(given_as, shown, mine, laws, unstated="the server does not state its tokenizer's identity",
                              hint="calibrate the laws on your data in the served model's tokenizer (`distillscale "
                                   "data prepare --data DIR --tokenizer ITS_TOKENIZER`, then a sweep on that corpus)")


def calibrate_hint(path: Path) -> str:
    """How to get laws in a teacher's own tokenizer: a sweep on your data prepared with it."""
    return (f"calibrate the laws on your data in this teacher's tokenizer: `distillscale demo --data DIR --teacher "
            f"{path}` (or `distillscale data prepare --data DIR --tokenizer {path}`, then a sweep on that corpus)")


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
        _refuse_another_tokenizer(given_as, path, mine, laws, unstated=None, hint=calibrate_hint(path))
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
    law_data = DataConfig.model_validate(open_prepared(text.directory).manifest["config"])
    split.check(law_data, who="the law", fix=f"calibrate the laws on the teacher's split: `distillscale demo --data "
                                             f"{law_data.path or 'CORPUS'} --teacher {path}` splits the corpus as the "
                                             "teacher did")


def _refuse_another_tokenizer(given_as: str, shown, mine: TokenizerIdentity, laws: LawSet, unstated: str | None,
                              hint: str) -> None:
    """One line refusing a teacher whose tokenizer `mine` is not the law's, or cannot be told to be: the
    vocabularies' hashes decide where both have one; a served model (`unstated`: why, when it states
    no identity) states only its tokenizer's identity, compared with the law's; a law whose tokenizer
    was never published cannot be compared with."""
    theirs = laws.losses.tokenizer
    why = theirs.differs(mine)
    if why is None and not theirs.verifiable(mine):
        if unstated is None or not theirs.sha256:
            why = f"the law's tokenizer, {theirs.name}, is not published to compare with"
        elif not mine.sha256:
            why = unstated
        elif mine.sha256 != theirs.sha256:
            why = f"identity sha256 {mine.sha256[:12]}, not {theirs.sha256[:12]}"
    if why is not None:
        raise UserError(f"{given_as} {shown} speaks another tokenizer than law {laws.name!r} ({why}): the law's "
                        f"losses are {laws.losses.describe()}, and a teacher's loss in another tokenizer is in other "
                        f"units; {hint}")


def _measured_loss(path: Path, laws: LawSet, context: int, trust_remote_code: bool, progress,
                   given_as: str) -> tuple[LossRecord, str]:
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
    directory = _split_directory(path, laws, context, given_as)
    progress(f"measuring the loss of {path} on the law's split ({directory})")
    record = _measure(path, directory, context, trust_remote_code, given_as)
    return record, f"measured now on the law's split ({directory})"


def _split_directory(path, laws: LawSet, context: int, given_as: str) -> Path:
    """The prepared split of the law's runs, to measure a teacher on; refused in one line when the law
    records none or it is gone."""
    text = laws.losses.text
    directory = Path(text.directory) if text is not None and text.directory else None
    if directory is None or not (directory / "manifest.json").is_file():
        where = "records no prepared split" if directory is None else f"was fitted on a split no longer at {directory}"
        raise UserError(f"{given_as} {path} has no measured loss and law {laws.name!r} {where} to measure it on: "
                        f"measure the teacher on the text of the law's runs with `distillscale loss {path} --data "
                        f"CORPUS --seq-len {context}`, or give --teacher-params and --teacher-loss")
    return directory


def _check_text(file: Path, record: LossRecord, laws: LawSet, path: Path, context: int) -> None:
    """A loss.json of another tokenizer or text than the law's, refused in one line."""
    why = laws.losses.differs(record.losses)
    if why is not None:
        where = (f"--data {laws.losses.text.directory}" if laws.losses.text and laws.losses.text.directory
                 else "--data CORPUS (the text of the law's runs)")
        raise UserError(f"{file} is the teacher's loss on {why.removeprefix('another ')}: the law's losses are "
                        f"{laws.losses.describe()}; measure the teacher there: `distillscale loss {path} {where} "
                        f"--seq-len {context}`")


def _measure(path: Path | str, directory: Path, context: int, trust_remote_code: bool, given_as: str,
             shown: str | None = None) -> LossRecord:
    """`distillscale loss` in a child process (the planner loads no model itself); its refusal, if
    any, becomes this one's, in one line (naming the model as `shown`: a URL without its password).
    A URL's credentials go to the child in its environment, never on its command line (`for_child`)."""
    from distillscale.urls import for_child

    argument, secret = for_child(str(path))
    with tempfile.TemporaryDirectory(prefix="distillscale-loss-") as scratch:
        out = Path(scratch) / LOSS_FILE
        command = [sys.executable, "-m", "distillscale.cli", "loss", argument, "--data", str(directory),
                   "--seq-len", str(context), "--out", str(out)] + ["--trust-remote-code"] * trust_remote_code
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, **secret})
        error = None
        for line in child.stderr:
            if line.startswith("distillscale: error: "):
                error = line.removeprefix("distillscale: error: ").strip()
            elif line.strip():
                sys.stderr.write(line)
        if child.wait() != 0 or not out.is_file():
            raise UserError(f"measuring {given_as} {shown or path} on the law's split: "
                            f"{error or f'exit {child.returncode}'}")
        return LossRecord.load(out)
