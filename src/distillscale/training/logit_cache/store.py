"""The logit cache on disk: shards of encoded records, their checksums, and cache.json.

    cache.json           written last; its presence means the cache is complete
    tokenizer.json       the tokenizer the cached tokens were encoded with
    shard-00000.bin      records [windows, seq_len] of the `TopKEncoding` or `SampledEncoding`
                         (a raw memory-mappable array; cache.json's `encoding` says which)
    shard-00000.json     that shard's windows, size, sha256 and statistics, written after the shard

Window w covers tokens [w * seq_len, (w + 1) * seq_len] of the split (inputs and the shifted
targets); the record at (w, t) is the teacher's prediction of token w * seq_len + t + 1 after
reading tokens w * seq_len .. w * seq_len + t. Every file is written atomically; a shard whose
sidecar is missing, belongs to other settings, or disagrees with the bytes on disk is rebuilt by
`cache-logits` and refused by `LogitCache`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillscale.errors import UserError
from distillscale.io import TEMP_PREFIX, atomic_write, atomic_write_json, check_output_dir, unreadable
from distillscale.training.logit_cache.encoding import (
    Encoding,
    SampledEncoding,
    encoding_from,
)
from distillscale.training.top_k import normalise_relative, normalise_relative_tensor

FORMAT = "distillscale.logit_cache/1"
MANIFEST_FILE = "cache.json"
TOKENIZER_FILE = "tokenizer.json"
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Shard:
    """Windows [first_window, first_window + windows) of the cache."""

    index: int
    first_window: int
    windows: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def plan_shards(windows: int, windows_per_shard: int) -> list[Shard]:
    return [Shard(index, first, min(windows_per_shard, windows - first))
            for index, first in enumerate(range(0, windows, windows_per_shard))]


def sha256_of_files(paths: list[Path]) -> str:
    """sha256 over the contents of `paths`, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


class CacheDirectory:
    """A cache directory being written: which shards are done, and the rules that protect it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest_path = self.path / MANIFEST_FILE
        self.tokenizer_path = self.path / TOKENIZER_FILE

    def bin_path(self, shard: Shard) -> Path:
        return self.path / f"{shard.name}.bin"

    def sidecar_path(self, shard: Shard) -> Path:
        return self.path / f"{shard.name}.json"

    def _own_files(self) -> list[Path]:
        return [p for p in self.path.iterdir()
                if p.name in (MANIFEST_FILE, TOKENIZER_FILE) or p.name.startswith(("shard-", TEMP_PREFIX))]

    def check_usable(self, inputs: Iterable = ()) -> None:
        """Refuse a path that is a file, an input (the teacher, the corpus, the tokenizer) or inside
        or around one, or a directory holding anything but a logit cache."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file: give a directory for the cache")
        check_output_dir(self.path, is_ours=lambda path: True, inputs=inputs, what="logit cache")
        if self.path.is_dir() and len(self._own_files()) != len(list(self.path.iterdir())):
            raise UserError(f"--out {self.path} holds files that are not part of a logit cache: "
                            f"give a new or empty directory")

    def claim(self, identity_hash: str, overwrite: bool) -> None:
        """Keep a cache (finished or not) of these settings; replace one of other settings only
        with `overwrite`."""
        self.check_usable()
        if not self.path.is_dir():
            return
        for partial in self.path.glob(f"{TEMP_PREFIX}*"):  # a write cut short by a killed run
            partial.unlink()
        found = {_read_json(p).get("identity_hash") for p in self.path.glob("*.json")
                 if p.name != TOKENIZER_FILE}
        if found <= {identity_hash}:
            return
        if not overwrite:
            state = "a logit cache" if self.manifest_path.exists() else "an unfinished logit cache"
            raise UserError(f"{self.path} holds {state} of another teacher, data or settings: choose "
                            f"another --out, or pass --overwrite to replace it")
        for path in self._own_files():
            path.unlink()

    def finished_shard(self, shard: Shard, identity_hash: str, encoding: Encoding) -> dict | None:
        """The sidecar of `shard` if the shard is complete, of these settings and intact."""
        sidecar = _read_json(self.sidecar_path(shard))
        if sidecar.get("identity_hash") != identity_hash:
            return None
        expected_bytes = shard.windows * sidecar["seq_len"] * encoding.bytes_per_token
        return None if check_shard(self.bin_path(shard), sidecar, expected_bytes) else sidecar

    def write_shard(self, shard: Shard, records: np.ndarray, identity_hash: str, seq_len: int,
                    statistics: dict[str, float]) -> dict:
        path = self.bin_path(shard)
        atomic_write(path, lambda tmp: records.tofile(tmp))
        sidecar = {"identity_hash": identity_hash, "file": path.name, "first_window": shard.first_window,
                   "windows": shard.windows, "seq_len": seq_len, "bytes": path.stat().st_size,
                   "sha256": sha256_of_files([path]), "statistics": statistics}
        atomic_write_json(self.sidecar_path(shard), sidecar)
        return sidecar


def check_shard(path: Path, entry: dict, expected_bytes: int) -> str | None:
    """What is wrong with a shard file (missing, truncated, checksum mismatch), or None."""
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size != expected_bytes or size != entry.get("bytes"):
        return f"is truncated or padded ({size} bytes, expected {expected_bytes})"
    if sha256_of_files([path]) != entry.get("sha256"):
        return "is corrupted (sha256 mismatch)"
    return None


class LogitCache:
    """A finished logit cache, opened read-only; its shards are checked (size and sha256) on open.

        cache = LogitCache("caches/teacher-top128")
        ids, log_probs = cache.teacher_predictions(np.array([0, 5]))  # [2, seq_len, k] each
        # a sampled cache (cache.targets == "sampled"): ids [2, seq_len, K], entropies [2, seq_len]
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        manifest_path = self.path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise UserError(f"{self.path} is not a finished logit cache (no {MANIFEST_FILE}): run its "
                            f"`distillscale cache-logits` command again to finish it")
        self.manifest = _read_json(manifest_path, required=True)
        if self.manifest.get("format") != FORMAT:
            raise UserError(f"{manifest_path} is not a distillscale logit cache of format {FORMAT}: "
                            f"make the cache again with `distillscale cache-logits`")
        self.encoding = encoding_from(self.manifest["encoding"])
        self.seq_len: int = self.manifest["seq_len"]
        self.windows: int = self.manifest["windows"]
        shards = self.manifest["shards"]
        self._first_windows = np.array([entry["first_window"] for entry in shards])
        self._shards = []
        for entry in shards:
            path = self.path / entry["file"]
            expected = entry["windows"] * self.seq_len * self.encoding.bytes_per_token
            problem = check_shard(path, entry, expected)
            if problem:
                raise UserError(f"logit cache shard {path} {problem}: run the `distillscale cache-logits` "
                                f"command that made {self.path} again to rebuild it")
            self._shards.append(np.memmap(path, dtype=self.encoding.record_dtype, mode="r",
                                          shape=(entry["windows"], self.seq_len)))

    @property
    def targets(self) -> str:
        """"top-k" or "sampled"."""
        return self.encoding.targets

    @property
    def top_k(self) -> int:
        """Ids stored per position: the top k, or the K samples."""
        return self.encoding.samples if isinstance(self.encoding, SampledEncoding) else self.encoding.top_k

    @property
    def temperature(self) -> float:
        """The temperature a sampled cache's ids were drawn at (a top-k cache stores tau = 1)."""
        return self.manifest.get("sampling", {}).get("temperature", 1.0)

    @property
    def tokens(self) -> int:
        return self.windows * self.seq_len

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    def records(self, windows: np.ndarray) -> np.ndarray:
        """Encoded records [len(windows), seq_len] of the given window indices."""
        windows = np.asarray(windows)
        if windows.size and (windows.min() < 0 or windows.max() >= self.windows):
            raise IndexError(f"window indices must be in 0..{self.windows - 1}")
        shard_of = np.searchsorted(self._first_windows, windows, side="right") - 1
        out = np.empty((len(windows), self.seq_len), dtype=self.encoding.record_dtype)
        for shard in np.unique(shard_of):
            rows = shard_of == shard
            out[rows] = self._shards[shard][windows[rows] - self._first_windows[shard]]
        return out

    def record_bytes(self, windows: np.ndarray) -> np.ndarray:
        """The encoded records of the given windows as raw bytes [len(windows), seq_len, bytes_per_token]
        (uint8): what `predictions_from_bytes` decodes on the device, at the records' size per token."""
        return self.records(windows).view(np.uint8).reshape(len(windows), self.seq_len, -1)

    def predictions_from_bytes(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`teacher_predictions` from record bytes [..., bytes_per_token] (`record_bytes`), decoded in
        torch on their device: ids [..., k] int64 (the same ids) and log-probabilities [..., k] (top-k:
        normalised as `teacher_predictions` does, to float32 rounding) or entropies [...] (sampled)."""
        shape = raw.shape[:-1]
        ids, values, *rest = self.encoding.decode_tensors(raw)
        if self.targets == "top-k":
            values = normalise_relative_tensor(values, rest[0], self.manifest.get("mean_top_k_mass"))
        return ids.reshape(*shape, self.top_k), values.reshape(*shape, *values.shape[1:])

    @property
    def tail(self) -> str:
        """How a top-k cache's tail mass (outside the k ids) is had: "known" (the records store the
        top-k mass) or "estimated" (a cache made before they did: `training.top_k.TAIL_FROM_MEAN_MASS`)."""
        return "known" if getattr(self.encoding, "with_mass", False) else "estimated"

    def teacher_predictions(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For window indices [b]: the teacher's top-k ids [b, seq_len, k] (int64) and their
        log-probabilities normalised over the whole vocabulary [b, seq_len, k] (float32; for a cache
        without the stored mass, normalised to the mean top-k mass of cache.json, an estimate, see
        `tail`); or, for a sampled cache, the sampled ids [b, seq_len, K] and the teacher's entropy
        [b, seq_len]. Records that do not decode (a shard changed on disk after it was checked) are a
        `UserError` naming the shard."""
        try:
            ids, values, *rest = self.encoding.decode(self.records(windows))
        except ValueError:  # the Elias-Fano bits hold another count of ids than the encoding's
            raise self._undecodable(np.asarray(windows)) from None
        if self.targets == "top-k":
            values = normalise_relative(values, rest[1], self.manifest.get("mean_top_k_mass"))
        shape = (len(windows), self.seq_len)
        return ids.reshape(*shape, self.top_k), values.reshape(*shape, *values.shape[1:])

    def _undecodable(self, windows: np.ndarray) -> UserError:
        """The error for records of `windows` that do not decode, naming the shards whose do not."""
        shard_of = np.searchsorted(self._first_windows, windows, side="right") - 1
        bad = []
        for shard in np.unique(shard_of):
            try:
                self.encoding.decode(self.records(windows[shard_of == shard]))
            except ValueError:
                bad.append(self.manifest["shards"][shard]["file"])
        return UserError(f"logit cache {self.path}: the records of {', '.join(bad)} do not decode (the file "
                         f"changed on disk after the cache was opened and checked): run the `distillscale "
                         f"cache-logits` command that made {self.path} again to rebuild it")


def _read_json(path: Path, required: bool = False) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        value = {}
    except (OSError, ValueError) as exc:
        if required:
            raise unreadable("logit cache file", path, exc) from None
        value = {}  # a damaged sidecar: its shard is rebuilt
    return value if isinstance(value, dict) else {}
