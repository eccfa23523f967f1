"""What the MODEL argument of `distillscale loss` names: a finished distillscale run, a Hugging Face
causal-LM directory with its tokenizer, or a served model's URL; refused in one line otherwise, before
anything is written.

    target = scored_model("models/qwen", trust_remote_code=False, tokenizer=None)
    target.kind, target.location, target.tokenizer, target.fingerprint     # "hf", "models/qwen", ...

A directory is found as `distill` finds a teacher (`training.teachers.find_teacher`), its identity the
hash of its files (`data.loss_record.model_fingerprint`). A URL is shown and recorded without its
credentials (`address` keeps them, for asking the server only); what it serves is identified when it
is asked (`evaluation.served_model`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillscale.data.loss_record import model_fingerprint
from distillscale.errors import UserError
from distillscale.urls import is_url, redacted_url, restored

if TYPE_CHECKING:
    from distillscale.model.sizes import ModelSize


@dataclass(frozen=True)
class ScoredModel:
    """The model to score: where it is (as records and messages show it: a URL without its
    credentials; `address`: where a server is asked, credentials and all), what it is, its tokenizer
    and identity."""

    location: str
    kind: str                        # run, hf or server
    tokenizer: Path | None
    fingerprint: str
    size: ModelSize | None = None    # None for a server
    source: Any = None               # its TeacherSource (a directory)
    address: str | None = field(default=None, repr=False)  # a server's URL as given, credentials and all: never shown


def scored_model(model: str | Path, trust_remote_code: bool, tokenizer: str | Path | None) -> ScoredModel:
    """The model `model` names; `tokenizer`: a served model's only (a directory's is its own)."""
    from distillscale.model.sizes import model_size
    from distillscale.training.teachers import find_teacher

    if is_url(model):
        from distillscale.model.served import api_base

        address = restored(str(model))  # a parent's `for_child` URL is whole again here
        shown = redacted_url(address)
        try:
            api_base(address)   # a server's URL: a bad port or a broken IPv6 host refused before anything runs
        except ValueError as exc:
            raise UserError(f"the model's URL {exc}") from None
        return ScoredModel(shown, "server", None if tokenizer is None else Path(tokenizer).expanduser(),
                           hashlib.sha256(shown.encode()).hexdigest()[:20], address=address)
    if tokenizer is not None:
        raise UserError("--tokenizer is a served model's: a model directory is scored with the tokenizer saved in it")
    size = model_size(model, trust_remote_code, given_as="model")  # a clear refusal first (remote code, not a model)
    source = find_teacher(model, trust_remote_code, given_as="MODEL", role="model", then=", then measure it")
    if source.tokenizer_path is None:
        raise UserError(f"model {source.path} has no tokenizer (tokenizer.json or tokenizer_config.json): a loss is "
                        "measured in the model's own tokens; save its tokenizer there (tokenizer.save_pretrained(DIR))")
    return ScoredModel(str(source.path), source.kind, source.tokenizer_path, model_fingerprint(source.path), size,
                       source)


def check_model(model: str | Path, trust_remote_code: bool = False, tokenizer: str | Path | None = None) -> None:
    """Refuse, in one line, a model `evaluate_loss` cannot score (before anything is written)."""
    scored_model(model, trust_remote_code, tokenizer)
