"""What a loss is measured in: nats per token of one tokenizer, on one text.

Cross-entropy in nats/token depends on the tokenizer (a larger vocabulary packs more bytes into each
token, so the same model on the same text has a higher loss per token) and on the text scored (C4 is
not your domain). Every loss a law is fitted on, a teacher's measured loss and a plan's losses carry a
`LossIdentity`: the unit, the tokenizer (its name, vocabulary size and a hash of its vocabulary) and
the text (a prepared corpus's validation split, by the sha256 of its tokens, or a named public
set). Two losses compare only when their identities do (`LossIdentity.differs`).

Bits per byte put losses of different tokenizers on one scale: nats/token x tokens/bytes / ln 2,
with the split's bytes per token measured by decoding it (`split_facts`).

    identity = prepared_loss_identity(prepare_data(config))    # a corpus prepared by `data prepare`
    identity.describe(), identity.bits_per_byte(2.31), identity.differs(law.losses)

This module needs pydantic and numpy only: a law file's identity is read without tokenizers or torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from distillscale.checks import checked

UNIT = "nats/token"
NOT_GIVEN = "a tokenizer and text not given"
FACTS_FILE = "split_facts.json"  # in a prepared corpus's directory: each split's bytes and sha256, once counted
DECODE_BLOCK_TOKENS = 1 << 20    # tokens decoded (and hashed) per call when reading a split


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenizerIdentity(_Record):
    """A tokenizer: where it came from, its ids (one more than the largest) and the sha256 of its
    vocabulary (token -> id, `vocab_sha256`; None where it was never published, a paper's)."""

    name: str = Field(max_length=1000)
    vocab_size: int = Field(ge=1)
    vocab_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    def describe(self) -> str:
        digest = f", vocabulary sha256 {self.vocab_sha256[:12]}" if self.vocab_sha256 else ""
        return f"tokenizer {self.name} ({self.vocab_size:,} ids{digest})"

    def differs(self, other: "TokenizerIdentity") -> str | None:
        """Why `other` is another tokenizer (None: the same, or no way to tell them apart)."""
        if self.vocab_size != other.vocab_size:
            return f"{other.vocab_size:,} ids, not {self.vocab_size:,}"
        if self.vocab_sha256 and other.vocab_sha256 and self.vocab_sha256 != other.vocab_sha256:
            return (f"vocabulary sha256 {other.vocab_sha256[:12]}, not {self.vocab_sha256[:12]} (the same size, "
                    "other tokens)")
        return None

    def verifiable(self, other: "TokenizerIdentity") -> bool:
        """Whether the two can be told equal: both vocabularies hashed."""
        return bool(self.vocab_sha256 and other.vocab_sha256)


class TextIdentity(_Record):
    """A text losses are measured on: a split of a prepared corpus, fingerprinted by the sha256 of its
    token ids (`split_sha256`: the same text, tokenizer and split settings give the same split,
    whichever way the tokenizer was given), or a named public set (no fingerprint). `tokens` and
    `bytes`: the split's size, when measured; `data_fingerprint` and `directory`: the prepared data
    it was read from."""

    name: str = Field(max_length=1000)
    split: str | None = Field(None, max_length=100)
    split_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    tokens: int | None = Field(None, ge=1)
    bytes: int | None = Field(None, ge=1)
    data_fingerprint: str | None = Field(None, pattern=r"^[0-9a-f]{8,64}$")
    directory: str | None = Field(None, max_length=4096)

    def describe(self) -> str:
        if self.split_sha256 is None and self.data_fingerprint is None:
            return self.name
        which = f"split sha256 {self.split_sha256[:12]}" if self.split_sha256 else f"prepared data {self.data_fingerprint}"
        return f"the {self.split or 'val'} split of {self.name} ({which})"

    def differs(self, other: "TextIdentity") -> str | None:
        """Why `other` is another text (None: the same, or no way to tell them apart)."""
        for key in ("split_sha256", "data_fingerprint"):  # the split's tokens, else the prepared data's
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine and theirs:
                return None if mine == theirs else f"{other.describe()}, not {self.describe()}"
        if self.data_fingerprint or other.data_fingerprint or self.name != other.name:
            return f"{other.describe()}, not {self.describe()}"
        return None


class LossIdentity(_Record):
    """What a loss is: its unit, the tokenizer and the text it was measured on. Each part None when
    not given (a law file written before they were recorded, a fit to a table without them)."""

    unit: Literal["nats/token"] = UNIT
    tokenizer: TokenizerIdentity | None = None
    text: TextIdentity | None = None

    @property
    def given(self) -> bool:
        return self.tokenizer is not None and self.text is not None

    @property
    def bytes_per_token(self) -> float | None:
        """UTF-8 bytes per token of the text under the tokenizer (None: not measured)."""
        text = self.text
        return None if text is None or not (text.tokens and text.bytes) else text.bytes / text.tokens

    def bits_per_byte(self, nats_per_token: float | None) -> float | None:
        """`nats_per_token` as bits per byte of this text: nats/token x tokens/bytes / ln 2 (None
        without the split's bytes)."""
        per_token = self.bytes_per_token
        if per_token is None or nats_per_token is None or not math.isfinite(float(nats_per_token)):
            return None
        return float(nats_per_token) / per_token / math.log(2)

    def units_record(self, predictions: dict[str, tuple[float, float | None, float | None]] | None = None
                     ) -> dict[str, Any]:
        """What `--json` says of losses in these units: the identity, and each named (loss, low, high)
        in bits per byte (None where the text's bytes were not measured, or no interval)."""
        bits = self.bits_per_byte
        return {"unit": self.unit, "described": self.describe(), "identity": self.to_json(),
                "bits_per_byte": None if self.bytes_per_token is None or predictions is None else {
                    name: {"loss": bits(loss), "interval": None if low is None or high is None else [bits(low), bits(high)]}
                    for name, (loss, low, high) in predictions.items()}}

    def describe(self) -> str:
        """One phrase: "nats/token of tokenizer X (V ids, ...) on the val split of Y (...)"."""
        if self.tokenizer is None and self.text is None:
            return f"{UNIT} of {NOT_GIVEN}"
        tokenizer = self.tokenizer.describe() if self.tokenizer else "a tokenizer not given"
        text = self.text.describe() if self.text else "a text not given"
        return f"{UNIT} of {tokenizer} on {text}"

    def differs(self, other: "LossIdentity") -> str | None:
        """Why a loss of identity `other` is not in these units (None: it is, as far as both say)."""
        if self.tokenizer is not None and other.tokenizer is not None:
            why = self.tokenizer.differs(other.tokenizer)
            if why:
                return f"another tokenizer ({why})"
        if self.text is not None and other.text is not None:
            why = self.text.differs(other.text)
            if why:
                return f"another text ({why})"
        return None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    @checked
    def from_json(cls, data: Any) -> "LossIdentity":
        """The identity a file records (None or absent: not given)."""
        return cls() if data is None else cls.model_validate(data)


def vocab_sha256(tokenizer) -> str:
    """sha256 of a `tokenizers.Tokenizer`'s vocabulary (every token and its id, added tokens too):
    equal for two tokenizers exactly when every token has the same id in both."""
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: (item[1], item[0]))
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def tokenizer_identity(tokenizer, name: str) -> TokenizerIdentity:
    """The identity of a loaded `tokenizers.Tokenizer`, named `name` (its path or origin)."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return TokenizerIdentity(name=name, vocab_size=max(vocab.values()) + 1, vocab_sha256=vocab_sha256(tokenizer))


def split_facts(data, split: str = "val") -> tuple[int, str]:
    """(UTF-8 bytes of its text, sha256 of its token ids as uint32) of a prepared corpus's split
    (`data`: a `PreparedData`). The bytes: its tokens decoded, a run of pieces between end-of-text
    tokens at a time (each a whole stretch of text, so no character is cut). Counted once and kept in
    the prepared directory (`FACTS_FILE`)."""
    from distillscale.io import atomic_write_json

    path = Path(data.directory) / FACTS_FILE
    known = _read_facts(path).get(split)
    if known is not None:
        return known["bytes"], known["sha256"]
    tokens = np.asarray(data.split(split))
    digest = hashlib.sha256()
    for first in range(0, len(tokens), DECODE_BLOCK_TOKENS):
        digest.update(tokens[first:first + DECODE_BLOCK_TOKENS].astype("<u4").tobytes())
    ends = np.flatnonzero(tokens == data.end_of_text_id)
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [len(tokens)]])
    total, batch, batch_tokens = 0, [], 0
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if stop > start:
            batch.append(tokens[start:stop].tolist())
            batch_tokens += stop - start
        if batch and batch_tokens >= DECODE_BLOCK_TOKENS:
            total += _decoded_bytes(data.tokenizer, batch)
            batch, batch_tokens = [], 0
    if batch:
        total += _decoded_bytes(data.tokenizer, batch)
    facts = {"bytes": total, "sha256": digest.hexdigest()}
    try:  # a cache: a directory we cannot write leaves the facts uncounted next time too
        atomic_write_json(path, {**_read_facts(path), split: facts})
    except (OSError, ValueError):
        pass
    return total, facts["sha256"]


def _decoded_bytes(tokenizer, sequences: list[list[int]]) -> int:
    return sum(len(text.encode("utf-8")) for text in tokenizer.decode_batch(sequences, skip_special_tokens=True))


def _read_facts(path: Path) -> dict[str, dict]:
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(facts, dict):
        return {}
    return {key: value for key, value in facts.items() if isinstance(value, dict)
            and isinstance(value.get("bytes"), int) and isinstance(value.get("sha256"), str)}


def prepared_loss_identity(data, split: str = "val") -> LossIdentity:
    """The identity of losses measured on split `split` of a prepared corpus (`data`: a
    `PreparedData`): its tokenizer, and the split by the sha256 of its tokens, with its tokens
    and UTF-8 bytes (`split_facts`)."""
    manifest = data.manifest
    tokenizer = tokenizer_identity(data.tokenizer, str(manifest["tokenizer"].get("origin") or "tokenizer.json"))
    n_bytes, sha256 = split_facts(data, split)
    text = TextIdentity(name=str(manifest["source"]["description"]), split=split, split_sha256=sha256,
                        tokens=int(manifest["splits"][split]["tokens"]), bytes=n_bytes or None,
                        data_fingerprint=data.fingerprint, directory=str(data.directory))
    return LossIdentity(tokenizer=tokenizer, text=text)


def is_prepared_dir(path: str | Path) -> bool:
    """Whether `path` is a prepared corpus's directory (it holds manifest.json)."""
    return (Path(path).expanduser() / "manifest.json").is_file()


def loss_identity(tokenizer: str | Path | None = None, text: str | Path | None = None) -> LossIdentity:
    """The identity of losses measured under `tokenizer` (a tokenizer.json, or a tokenizer or model
    directory) on `text`: a prepared corpus's directory (its validation split, and its tokenizer when
    `tokenizer` is not given; given, it must be that one) or the name of a public set ("C4 en
    validation"). Either None: not given. A bad path is a one-line UserError."""
    from distillscale.errors import UserError

    if text is not None and is_prepared_dir(text):
        from distillscale.data.prepare import open_prepared

        identity = prepared_loss_identity(open_prepared(text))
        if tokenizer is not None:
            why = identity.tokenizer.differs(_loaded_identity(tokenizer))
            if why:
                raise UserError(f"tokenizer {tokenizer} is not the tokenizer of the prepared corpus {text} ({why}): "
                                "give the tokenizer the losses were measured with, or leave it out to take the "
                                "corpus's")
        return identity
    if text is not None and (Path(str(text)).expanduser().exists() or not str(text).strip()):
        raise UserError(f"text {text} is not a prepared corpus (no manifest.json): give the directory `distillscale "
                        "data prepare` printed, or the name of the text the losses were measured on")
    return LossIdentity(tokenizer=None if tokenizer is None else _loaded_identity(tokenizer),
                        text=None if text is None else TextIdentity(name=str(text)))


def _loaded_identity(path: str | Path) -> TokenizerIdentity:
    from distillscale.data.tokenizer import load_tokenizer

    loaded, _ = load_tokenizer(path)
    return tokenizer_identity(loaded, str(path))


LOSS_FORMAT = "distillscale.loss/1"
LOSS_FILE = "loss.json"


class LossRecord(_Record):
    """loss.json: a model's cross-entropy on a text (`distillscale loss`): what was scored (the model,
    its fingerprint, the identity of the loss: tokenizer and split), the loss in nats/token with its
    standard error over the windows scored, in bits per byte too, and how it was measured."""

    format: Literal["distillscale.loss/1"] = LOSS_FORMAT
    model: str                        # the directory or the server's URL
    model_kind: Literal["run", "hf", "server"]
    model_fingerprint: str            # `model_fingerprint`: the files scored (or the served model's name)
    losses: LossIdentity
    nats_per_token: float
    standard_error: float             # of the mean over windows (nats/token)
    bits_per_byte: float | None
    bits_per_byte_standard_error: float | None
    tokens: int                       # targets scored
    bytes: float | None               # their text's UTF-8 bytes, at the split's bytes per token
    windows: int
    seq_len: int
    max_tokens: int | None            # the evaluation cap (None: the whole split)
    device: str
    dtype: str
    seconds: float
    tokens_per_second: float
    created: str

    def save(self, path: str | Path) -> None:
        from distillscale.io import atomic_write_json

        atomic_write_json(path, self.model_dump(mode="json"))

    @classmethod
    @checked
    def load(cls, path: str | Path) -> "LossRecord":
        """loss.json, or a one-line UserError saying what is wrong with the file."""
        from pydantic import ValidationError

        from distillscale.errors import UserError

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        if not isinstance(data, dict) or data.get("format") != LOSS_FORMAT:
            raise UserError(f"{path} is not a loss file written by `distillscale loss` (no \"format\": "
                            f"\"{LOSS_FORMAT}\"): measure the model with `distillscale loss`")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the file"
            raise UserError(f"{path} is not a valid loss file: {where}: {error['msg']}; measure the model "
                            "again with `distillscale loss`") from None

    def describe(self) -> str:
        """One line: the loss with its error, in both units, and what it was measured on."""
        bits = "" if self.bits_per_byte is None else (
            f" = {self.bits_per_byte:.4f} +/- {self.bits_per_byte_standard_error:.4f} bits/byte")
        return (f"{self.nats_per_token:.4f} +/- {self.standard_error:.4f} nats/token{bits} "
                f"({self.losses.describe().removeprefix('nats/token ')}; {self.tokens:,} tokens at context "
                f"{self.seq_len})")


def is_loss_file(path: Path) -> bool:
    """`is_ours` of loss.json: a file `distillscale loss` wrote."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("format") == LOSS_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


MODEL_FILES = (".safetensors", ".bin", ".pt", ".json", ".model", ".txt")  # what a model directory's identity covers
NOT_MODEL_FILES = (LOSS_FILE, "eval.json", "result.json", "metrics.jsonl", "split_facts.json")


LOSSES_DIR = "losses"  # in a prepared corpus's directory: one measured loss per model, split and context


def cache_path(directory: str | Path, fingerprint: str, identity: LossIdentity, seq_len: int,
               max_tokens: int | None) -> Path:
    """Where the measurement of a model (its `model_fingerprint`) on the split `identity` names, in
    windows of `seq_len` (at most `max_tokens`), is kept: in the prepared corpus's directory."""
    key = json.dumps([fingerprint, identity.text.split_sha256, identity.tokenizer.vocab_sha256, seq_len, max_tokens])
    return Path(directory) / LOSSES_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def model_fingerprint(path: str | Path) -> str:
    """The identity of the model in directory `path`: sha256 of the name, size and modification time of
    each of its weight, config and tokenizer files (top level; not the outputs written beside them:
    loss.json, eval.json), as a corpus is fingerprinted by its files' stats."""
    path = Path(path)
    entries = []
    for file in sorted(path.iterdir()):
        if file.is_file() and file.name.endswith(MODEL_FILES) and file.name not in NOT_MODEL_FILES:
            stat = file.stat()
            entries.append((file.name, stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()[:20]
