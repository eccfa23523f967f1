"""What a loss is measured in: nats per token of one tokenizer, on one text.

Cross-entropy in nats/token depends on the tokenizer (a larger vocabulary packs more bytes into each
token, so the same model on the same text has a higher loss per token) and on the text scored (C4 is
not your domain). Every loss a law is fitted on, a teacher's measured loss and a plan's losses carry a
`LossIdentity`: the unit, the tokenizer (its name, vocabulary size and a hash of its vocabulary) and
the text (a prepared corpus's validation split, by the sha256 of its tokens, or a named public
set). Two losses compare only when their identities do (`LossIdentity.differs`).

Bits per byte put losses of different tokenizers on one scale: nats x tokens / (bytes x ln 2), the
bytes those of the source text behind the tokens (`split_facts`, `bits_per_byte`).

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

from pydantic import BaseModel, ConfigDict, Field

from distillscale.checks import checked

UNIT = "nats/token"
NOT_GIVEN = "a tokenizer and text not given"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenizerIdentity(_Record):
    """A tokenizer: where it came from, its ids (one more than the largest), the sha256 of its
    vocabulary (token -> id, `vocab_sha256`; None where it was never published, a paper's) and its
    identity: the sha256 (`sha256`) of the parts of its own serialisation that decide which ids a text
    becomes (`parts`: vocabulary and merges, special tokens, normalizer and pre-tokenizer, each hashed;
    `identity_parts`). A record written before the parts were kept has the vocabulary's hash alone."""

    name: str = Field(max_length=1000)
    vocab_size: int = Field(ge=1)
    vocab_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    parts: dict[str, str] | None = None

    def describe(self) -> str:
        digest = (f", identity sha256 {self.sha256[:12]}" if self.sha256 else
                  f", vocabulary sha256 {self.vocab_sha256[:12]}" if self.vocab_sha256 else "")
        return f"tokenizer {self.name} ({self.vocab_size:,} ids{digest})"

    def differs(self, other: "TokenizerIdentity") -> str | None:
        """Why `other` is another tokenizer, naming what differs (None: the same, or no way to tell
        them apart)."""
        if self.vocab_size != other.vocab_size:
            return f"{other.vocab_size:,} ids, not {self.vocab_size:,}"
        if self.vocab_sha256 and other.vocab_sha256 and self.vocab_sha256 != other.vocab_sha256:
            return (f"vocabulary sha256 {other.vocab_sha256[:12]}, not {self.vocab_sha256[:12]} (the same size, "
                    "other tokens)")
        if self.parts and other.parts and parts_differ(self.parts, other.parts):  # the parts that decide ids
            return (f"the same vocabulary, another {' and '.join(parts_differ(self.parts, other.parts)) or 'tokenizer'}"
                    f" (identity sha256 {(other.sha256 or '?')[:12]}, not {(self.sha256 or '?')[:12]})")
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
        """`nats_per_token` (a prediction for this text) as bits per byte at the split's bytes per token
        (`bits_per_byte`; None without the split's bytes)."""
        text = self.text
        if text is None or not (text.tokens and text.bytes):
            return None
        return bits_per_byte(nats_per_token, text.tokens, text.bytes)

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


# The parts of a tokenizer's own serialisation that decide which ids a text becomes (its decoder,
# truncation and padding do not), in the order a mismatch names them, with their names in words. Its
# post-processor decides none: every text here is encoded without special tokens
# (`add_special_tokens=False`: a corpus, a teacher's windows, a cross-tokenizer alignment), so it is
# never applied; it is hashed as none whatever it is (`identity_parts`), so the identities recorded
# while it counted (as none, for every tokenizer that adds no token) stay the same.
IDENTITY_PARTS = {"model": "vocabulary and merges", "added_tokens": "special tokens", "normalizer": "normalizer",
                  "pre_tokenizer": "pre-tokenizer"}
UNUSED_PARTS = ("post_processor",)


def identity_parts(tokenizer) -> dict[str, str]:
    """sha256 (16 hex digits) of each of a `tokenizers.Tokenizer`'s IDENTITY_PARTS, read from its own
    serialisation (keys sorted): two tokenizers are the same exactly when every part is. The
    UNUSED_PARTS, which change no id, are hashed as none."""
    data = json.loads(tokenizer.to_str())
    for part in UNUSED_PARTS:
        data[part] = None
    return {part: hashlib.sha256(json.dumps(data.get(part), sort_keys=True, ensure_ascii=False).encode("utf-8"))
            .hexdigest()[:16] for part in (*IDENTITY_PARTS, *UNUSED_PARTS)}


def identity_sha256(parts: dict[str, str]) -> str:
    """The identity of a tokenizer from its `identity_parts`: one sha256."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def parts_differ(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """The IDENTITY_PARTS, in words, in which two tokenizers' `identity_parts` differ."""
    return [words for part, words in IDENTITY_PARTS.items() if mine.get(part) != theirs.get(part)]


def bits_per_byte(nats_per_token: float | None, tokens: float, n_bytes: float) -> float | None:
    """A loss in nats/token over `tokens` tokens whose source text is `n_bytes` UTF-8 bytes, in bits per
    byte: nats x tokens / (bytes x ln 2). The one conversion every printed bits-per-byte goes through
    (a measurement's: its windows' tokens and bytes; a prediction's: its text's split)."""
    if nats_per_token is None or not math.isfinite(float(nats_per_token)) or not (tokens and n_bytes):
        return None
    return float(nats_per_token) * float(tokens) / (float(n_bytes) * math.log(2))


def vocab_sha256(tokenizer) -> str:
    """sha256 of a `tokenizers.Tokenizer`'s vocabulary (every token and its id, added tokens too):
    equal for two tokenizers exactly when every token has the same id in both."""
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: (item[1], item[0]))
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def tokenizer_identity(tokenizer, name: str) -> TokenizerIdentity:
    """The identity of a loaded `tokenizers.Tokenizer`, named `name` (its path or origin): the one
    notion of "the same tokenizer" every check uses (a corpus, a law, a teacher, a student, a server)."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    parts = identity_parts(tokenizer)
    return TokenizerIdentity(name=name, vocab_size=max(vocab.values()) + 1, vocab_sha256=vocab_sha256(tokenizer),
                             sha256=identity_sha256(parts), parts=parts)


def split_facts(data, split: str = "val") -> tuple[int, str]:
    """(UTF-8 bytes of its source text, sha256 of its token ids as uint32) of a prepared corpus's split
    (`data`: a `PreparedData`), as the preparation counted them (`data.prepare.BYTES_SPLITS`): the
    bytes are the text's as it was read, not its tokens decoded, so a tokenizer without a decoder
    counts the same."""
    recorded = data.manifest["splits"][split]
    return int(recorded["bytes"]), str(recorded["sha256"])


def corpus_tokenizer_identity(data) -> TokenizerIdentity:
    """The identity of a prepared corpus's tokenizer (`data`: a `PreparedData`), named by its origin."""
    return tokenizer_identity(data.tokenizer, str(data.manifest["tokenizer"].get("origin") or "tokenizer.json"))


def prepared_loss_identity(data, split: str = "val") -> LossIdentity:
    """The identity of losses measured on split `split` of a prepared corpus (`data`: a
    `PreparedData`): its tokenizer, and the split by the sha256 of its tokens, with its tokens
    and UTF-8 bytes (`split_facts`)."""
    manifest = data.manifest
    tokenizer = corpus_tokenizer_identity(data)
    n_bytes, sha256 = split_facts(data, split)
    text = TextIdentity(name=str(manifest["source"]["description"]), split=split, split_sha256=sha256,
                        tokens=int(manifest["splits"][split]["tokens"]), bytes=n_bytes or None,
                        data_fingerprint=data.fingerprint, directory=str(Path(data.directory).expanduser().resolve()))
    return LossIdentity(tokenizer=tokenizer, text=text)


def is_prepared_dir(path: str | Path) -> bool:
    """Whether `path` is a corpus `data prepare` made (`data.manifest.prepared_manifest`)."""
    from distillscale.data.manifest import prepared_manifest

    return prepared_manifest(path) is not None


def loss_identity(tokenizer: str | Path | None = None, text: str | Path | None = None) -> LossIdentity:
    """The identity of losses measured under `tokenizer` (a tokenizer.json, or a tokenizer or model
    directory) on `text`: a prepared corpus's directory (its validation split, and its tokenizer when
    `tokenizer` is not given; given, it must be that one) or the name of a public set ("C4 en
    validation"). Either None: not given. A bad path is a one-line UserError."""
    from distillscale.errors import UserError

    if text is not None and is_prepared_dir(text):
        from distillscale.data.prepared import open_prepared

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
