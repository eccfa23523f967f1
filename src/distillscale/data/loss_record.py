"""A measured loss and where it is kept: the record (`LossRecord`, what `distillscale loss` prints and
writes to `--out`), the identity of what was measured (`MeasurementKey`: the model, the tokenizer, the
text, the windows, the device and precision) and distillscale's own cache of measurements, found by
that key (`MeasurementCache`).

A measurement is never written into a directory the user gave (a model's, a corpus's): it is kept in
distillscale's cache (`$DISTILLSCALE_CACHE/losses/`, or ~/.cache/distillscale), and a loss.json
only where `--out` says. Asking again costs nothing; `plan --teacher-model` and `demo` find it by the
same key. A cache that cannot be written (a read-only home) is replaced by a temporary one, said once.

    key = MeasurementKey(model=..., tokenizer=..., text=..., seq_len=2048, max_tokens=None,
                         device="cpu", precision="float32")
    cache = MeasurementCache()
    cache.find(key) or cache.find_any(key)     # a LossRecord or None
    cache.save(key, record)

The units (`LossIdentity`: nats/token of a tokenizer on a text) are `data.loss_identity`'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from distillscale.checks import checked
from distillscale.data.loss_identity import LossIdentity

LOSS_FORMAT = "distillscale.loss/1"
LOSS_FILE = "loss.json"
LOSSES_DIR = "losses"  # in distillscale's cache: the measurements, one directory per model, text and windows


class LossRecord(BaseModel):
    """A model's cross-entropy on a text (`distillscale loss`): what was scored (the model, its
    fingerprint, the identity of the loss: tokenizer and split), the loss in nats/token with its
    standard error over the windows scored, in bits per byte too (the UTF-8 bytes of exactly the
    text scored), and how it was measured (device and precision, time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["distillscale.loss/1"] = LOSS_FORMAT
    model: str                        # the directory or the server's URL (never with its credentials)
    model_kind: Literal["run", "hf", "server"]
    model_fingerprint: str            # `MeasurementKey.model`: the files scored, or what the server serves
    losses: LossIdentity
    nats_per_token: float
    standard_error: float | None      # of the mean over windows (nats/token); None: one window, no spread
    bits_per_byte: float | None
    bits_per_byte_standard_error: float | None
    tokens: int                       # targets scored
    bytes: float | None               # the UTF-8 bytes of their source text
    windows: int
    seq_len: int
    max_tokens: int | None            # the evaluation cap (None: the whole split)
    device: str
    dtype: str
    seconds: float                    # the measurement's own time (a resumed one: every part's)
    tokens_per_second: float
    created: str                      # when it was measured (UTC, ISO 8601)
    from_cache: bool = False          # this answer is a measurement kept in distillscale's cache, not one made now

    @field_validator("model")
    @classmethod
    def _no_credentials(cls, model: str) -> str:
        """A server's URL enters a record without its user name and password, also one read back
        from a file that holds them."""
        from distillscale.urls import is_url, redacted_url

        return redacted_url(model) if is_url(model) else model

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
            f" = {with_error(self.bits_per_byte, self.bits_per_byte_standard_error, 'bits/byte')}")
        return (f"{with_error(self.nats_per_token, self.standard_error, 'nats/token')}{bits} "
                f"({self.losses.describe().removeprefix('nats/token ')}; {self.tokens:,} tokens at context "
                f"{self.seq_len})")


    def how_measured(self) -> str:
        """When, how long and where it was measured, and whether this answer is that measurement read
        back from distillscale's cache ("from the cache, measured 2026-11-28 14:02 UTC in 0.1 s on cpu")."""
        how = f"{self.seconds:,.1f} s on {self.device}, {self.tokens_per_second:,.0f} tokens/s"
        if not self.from_cache:
            return how
        try:
            when = datetime.fromisoformat(self.created).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            when = self.created
        return f"from distillscale's cache, measured {when} in {how}"


def with_error(value: float, error: float | None, unit: str, plus: str = "+/-") -> str:
    """A measured value with its standard error and unit ("3.1416 +/- 0.0123 nats/token"); without one (a
    single window has no spread to estimate it from), said so instead of a number."""
    if error is None or not math.isfinite(error):
        return f"{value:.4f} {unit} (one window: no standard error)"
    return f"{value:.4f} {plus} {error:.4f} {unit}"


def windows_text(windows: int, seq_len: int) -> str:
    """"125 windows of 32", "1 window of 32"."""
    return f"{windows:,} window{'' if windows == 1 else 's'} of {seq_len:,}"


def is_loss_file(path: Path) -> bool:
    """`is_ours` of loss.json: a file `distillscale loss` wrote."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("format") == LOSS_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


MODEL_FILES = (".safetensors", ".bin", ".pt", ".json", ".model", ".txt")  # what a model directory's identity covers
NOT_MODEL_FILES = (LOSS_FILE, "eval.json", "result.json", "metrics.jsonl", "split_facts.json")


WEIGHT_FILES = (".safetensors", ".bin", ".pt")


def model_fingerprint(path: str | Path, kinds: tuple[str, ...] = MODEL_FILES) -> str:
    """The identity of the model in directory `path`: sha256 of the name, size and content (sha256) of
    each of its weight, config and tokenizer files (top level; not the outputs a run writes beside
    them: result.json, metrics.jsonl). A file's content is read once per state of the file and kept
    (`data.file_digest`): asking again costs a stat, and weights rewritten with their old size and
    modification time are seen as the new weights they are. `kinds`: the files' endings
    (`WEIGHT_FILES`: its weights alone)."""
    from distillscale.data.file_digest import file_digests

    path = Path(path)
    files = [file for file in sorted(path.iterdir())
             if file.is_file() and file.name.endswith(kinds) and file.name not in NOT_MODEL_FILES]
    digests = file_digests(files, what="the model's files")
    entries = [(file.name, file.stat().st_size, digests[file]) for file in files]
    return hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()[:20]


class MeasurementKey(BaseModel):
    """What makes two measurements the same: the model (`model_fingerprint`, or for a served model
    what the server says it serves and its answers on fixed probe tokens), the tokenizer (its
    identity), the text (the split's tokens' sha256), the windows (context and cap) and how the model
    ran (device and precision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    tokenizer: str
    text: str
    seq_len: int
    max_tokens: int | None
    device: str      # cpu, cuda or server
    precision: str   # float32, bf16 autocast, as served

    @classmethod
    def of(cls, model: str, losses: LossIdentity, seq_len: int, max_tokens: int | None, device: str,
           precision: str) -> "MeasurementKey":
        tokenizer = losses.tokenizer.sha256 or losses.tokenizer.vocab_sha256 or ""
        return cls(model=model, tokenizer=tokenizer, text=losses.text.split_sha256 or "", seq_len=seq_len,
                   max_tokens=max_tokens, device=device, precision=precision)

    @property
    def what(self) -> str:
        """The key without the device and precision: one directory of the cache."""
        return hashlib.sha256(json.dumps([self.model, self.tokenizer, self.text, self.seq_len, self.max_tokens])
                              .encode("utf-8")).hexdigest()[:24]

    @property
    def how(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in f"{self.device}-{self.precision}")


_said_elsewhere: set[str] = set()


class MeasurementCache:
    """distillscale's cache of measurements: `<root>/<key.what>/<key.how>.json` (and `.partial.json`
    beside it while a measurement is under way). `root`: default `$DISTILLSCALE_CACHE/losses` (or
    ~/.cache/distillscale/losses); where that cannot be written, a temporary directory, said once."""

    def __init__(self, root: str | Path | None = None, warn=None):
        from distillscale.data.config import cache_directory

        self.root = Path(root) if root is not None else cache_directory() / LOSSES_DIR
        self._warn = warn

    def path(self, key: MeasurementKey) -> Path:
        return self.root / key.what / f"{key.how}.json"

    def partial(self, key: MeasurementKey) -> Path:
        return self.path(key).with_suffix(".partial.json")

    def find(self, key: MeasurementKey) -> LossRecord | None:
        """The measurement of exactly this key (None: none, or unreadable)."""
        return _read(self.path(key))

    def find_any(self, key: MeasurementKey) -> LossRecord | None:
        """A measurement of this model, tokenizer, text and windows on any device and precision (the
        newest), or None."""
        directory = self.path(key).parent
        try:
            files = [f for f in directory.glob("*.json") if not f.name.endswith(".partial.json")]
        except OSError:
            return None
        for file in sorted(files, key=lambda f: f.stat().st_mtime_ns, reverse=True):
            record = _read(file)
            if record is not None:
                return record
        return None

    def writable_root(self) -> Path:
        """The root, made; where it cannot be written, a temporary directory instead (said once)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-", delete=True)
            probe.close()
            return self.root
        except OSError as exc:
            fallback = Path(tempfile.gettempdir()) / f"distillscale-{os.getuid() if hasattr(os, 'getuid') else 0}" / LOSSES_DIR
            if str(self.root) not in _said_elsewhere:
                _said_elsewhere.add(str(self.root))
                if self._warn is not None:
                    self._warn(f"the measurement cache {self.root} cannot be written ({exc.strerror or exc}): "
                               f"measurements are kept in {fallback} this time (set $DISTILLSCALE_CACHE to a "
                               "writable directory to keep them)")
            fallback.mkdir(parents=True, exist_ok=True)
            self.root = fallback
            return fallback

    def save(self, key: MeasurementKey, record: LossRecord) -> Path:
        """Keep `record` under `key` (in a writable root); returns where."""
        self.writable_root()
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record.save(path)
        self.partial(key).unlink(missing_ok=True)
        return path


def _read(path: Path) -> LossRecord | None:
    from distillscale.errors import UserError

    if not path.is_file():
        return None
    try:
        return LossRecord.load(path)
    except UserError:  # an unreadable record is measured again
        return None
