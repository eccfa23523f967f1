"""A teacher behind a server (`distillscale serve-teacher`) as the planner prices it: `plan
--teacher-model URL`, `teacher --candidates URL`. Its size and FLOPs per token at the plan's context
are what the server states; its tokenizer, as the server states it, must be the law's; its loss L_T
is measured through the server on the law's split (`distillscale loss URL` in a child process, kept in
distillscale's cache by what the server serves: `planning.teacher_loss`).

    teacher = served_teacher("http://host:8000", laws, context=2048)   # ServedTeacher: .params, .loss
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distillscale.data.loss_identity import TokenizerIdentity
from distillscale.data.loss_record import LossRecord
from distillscale.errors import UserError
from distillscale.model.teacher_limits import RequestLimits
from distillscale.planning.teacher_loss import law_split_directory, measure_in_child
from distillscale.planning.teacher_tokenizer import refuse_another_tokenizer

if TYPE_CHECKING:
    from distillscale.laws.lawset import LawSet


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
    notes: tuple[str, ...] = ()      # what the plan says of it (its credentials sent in clear)

    def describe(self) -> str:
        """One line, as `TeacherModel.describe`: N_T, FLOPs per token and L_T, as the server states and serves."""
        return (f"teacher {self.url}: N_T = {self.params:,.0f}, {self.flops_per_token:.4g} FLOPs/token at context "
                f"{self.context} (as its server states); L_T = {self.loss.describe()}, {self.loss_source}")

    @property
    def loss_source(self) -> str:
        """Where L_T came from: measured through the server now, or read back from distillscale's cache."""
        return (f"measured through the server, {self.loss.how_measured()}" if self.loss.from_cache
                else "measured through the server")

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "non_embedding_params": self.params, "forward_flops_per_token": self.flops_per_token,
                "context": self.context, "flops_method": "as its server states", "loss": self.loss.nats_per_token,
                "loss_standard_error": self.loss.standard_error, "bits_per_byte": self.loss.bits_per_byte,
                "loss_source": self.loss_source, "loss_record": self.loss.model_dump(mode="json")}


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
                   given_as: ServedAs = ServedAs.CANDIDATES, limits: RequestLimits = RequestLimits()) -> ServedTeacher:
    """The teacher served at `url` for a plan under `laws` at `context` tokens: refused in one line when
    the server does not state its model's size and FLOPs (vLLM) or its tokenizer is not the law's
    (`given_as`: the flag it came by, and what to give instead); each request given `limits`."""
    from distillscale.model.served import in_clear_warning, served_model, server_url
    from distillscale.urls import redacted_url

    url = url.strip()
    shown = redacted_url(url)
    flag = given_as.flag
    server_url(url, flag)   # not a server's URL (a broken host, port or path): one line before anything reads it
    in_clear = in_clear_warning(url)   # said once, in the plan's warnings (its text and --json), not here
    model = served_model(url, flag, limits)
    about = model.about
    if about.non_embedding_params is None or about.forward_flops_per_token is None:
        raise UserError(f"{flag} {shown}: the server does not state its model's size and FLOPs per token (vLLM "
                        "does not; `distillscale serve-teacher` does): give the teacher's model directory instead, or "
                        f"{given_as.instead} `distillscale loss {shown} --data CORPUS --tokenizer DIR` measures")
    _check_served_tokenizer(shown, about, laws, flag)
    at = min(context, model.max_model_len - 1) if model.max_model_len else context   # the warnings say a shorter one
    directory = law_split_directory(shown, laws, context, flag)
    progress(f"the loss of {shown} on the law's split ({directory}): measured through the server, or kept")
    record = measure_in_child(url, directory, at, False, flag, shown, limits)
    flops = about.forward_flops_per_token
    return ServedTeacher(shown, float(about.non_embedding_params), float(flops.base + flops.per_context_token * at),
                         at, record, about.vocab_size, () if in_clear is None else (in_clear,))


def _check_served_tokenizer(shown: str, about, laws: LawSet, given_as: str) -> None:
    """A served teacher's tokenizer, as its server states it (its identity, no vocabulary hash), refused
    in one line when not the law's (`planning.teacher_tokenizer`)."""
    theirs = laws.losses.tokenizer
    if theirs is None:
        return
    mine = TokenizerIdentity(name=shown, vocab_size=about.vocab_size or theirs.vocab_size,
                             sha256=about.tokenizer_identity, parts=about.tokenizer_parts)
    refuse_another_tokenizer(given_as, shown, mine, laws, unstated="the server does not state its tokenizer's identity",
                             hint="calibrate the laws on your data in the served model's tokenizer (`distillscale "
                                  "data prepare --data DIR --tokenizer ITS_TOKENIZER`, then a sweep on that corpus)")
