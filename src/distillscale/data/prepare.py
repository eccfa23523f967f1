"""Tokenise a corpus once into memory-mapped token splits, and reuse them while the corpus is unchanged.

A prepared corpus is a directory `<cache_dir>/<fingerprint>/` holding `tokenizer.json`, one flat token
file per split (`val.bin`, `teacher.bin`, `student.bin`; documents joined by the end-of-text token) and
`manifest.json`. The fingerprint hashes the source files' paths, sizes and modification times, the
tokenizer (its JSON hash, or the BPE training settings), `max_bytes` and the split settings.

The directory is built under a temporary name and renamed into place, so an interrupted preparation
never looks complete. A file lock per fingerprint makes concurrent preparers of the same corpus (a
sweep's processes) wait for the first one and reuse its result. Inside `reusing_prepared()` (a sweep's
worker process, which runs run after run) each corpus is walked and fingerprinted once per process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
import tokenizers
from filelock import FileLock, Timeout
from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TransferSpeedColumn)
from tokenizers import Tokenizer

import distillscale
from distillscale.console import err_console, warn
from distillscale.data.config import DataConfig
from distillscale.data.sources import Corpus, ReadStats, empty_corpus_message, resolve_corpus
from distillscale.data.tokenizer import (END_OF_TEXT, load_tokenizer, tokenizer_hash,
                                         tokenizer_vocab_size, train_byte_level_bpe)
from distillscale.errors import UserError
from distillscale.io import atomic_write_json

FORMAT = "distillscale.data/1"
SPLITS = ("val", "teacher", "student")
DEFAULT_VOCAB_SIZE = 8192
ROUTE_DTYPE = "uint8"  # a document's route: the index of its field's value (a mixture's teacher)
ENCODE_BATCH_BYTES = 4 << 20  # text per batched (parallel) encode call: enough to keep every core busy


class PreparedData:
    """A tokenised corpus on disk. `split(name)` maps a split's tokens without reading them."""

    def __init__(self, directory: Path, manifest: dict, reused: bool):
        self.directory = directory
        self.manifest = manifest
        self.reused = reused  # True when an earlier preparation was found and nothing was tokenised

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_file(str(self.directory / "tokenizer.json"))

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def vocab_size(self) -> int:
        return self.manifest["tokenizer"]["vocab_size"]

    @property
    def tokenizer_hash(self) -> str:
        return self.manifest["tokenizer"]["hash"]

    @property
    def end_of_text_id(self) -> int:
        return self.manifest["tokenizer"]["end_of_text_id"]

    def split(self, name: str) -> np.memmap:
        """Token ids of split `name` ("val", "teacher" or "student"), read-only, memory-mapped."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: choose from {', '.join(SPLITS)}")
        return np.memmap(self.directory / f"{name}.bin", dtype=self.manifest["dtype"], mode="r")

    @property
    def route_values(self) -> list[str | None] | None:
        """The values of the route field (`DataConfig.route_field`), in the order of their ids; None when
        the corpus was prepared without one."""
        routes = self.manifest.get("routes")
        return None if routes is None else routes["values"]

    def routes(self, name: str) -> np.memmap:
        """The route id of every token of split `name` (an index into `route_values`), memory-mapped."""
        if self.route_values is None:
            raise ValueError("this corpus was prepared without a route field")
        return np.memmap(self.directory / self.manifest["routes"]["files"][name], dtype=ROUTE_DTYPE, mode="r")

    def __repr__(self) -> str:
        tokens = ", ".join(f"{name}={self.manifest['splits'][name]['tokens']}" for name in SPLITS)
        return f"PreparedData({str(self.directory)!r}, vocab_size={self.vocab_size}, tokens: {tokens})"


# The corpora prepared in this process while `reusing_prepared()` holds, by config and working
# directory (None: each prepare_data call walks its corpus anew).
_remembered: dict[tuple[str, str], PreparedData] | None = None


@contextmanager
def reusing_prepared() -> Iterator[None]:
    """Within the block, `prepare_data` walks, fingerprints and checks each corpus once: a later call
    with the same config returns the first call's result. For a sweep's worker process, whose runs
    read one corpus that the sweep does not expect to change under it."""
    global _remembered
    outer, _remembered = _remembered, {} if _remembered is None else _remembered
    try:
        yield
    finally:
        _remembered = outer


def prepare_data(config: DataConfig, progress: bool = True) -> PreparedData:
    """Tokenise the corpus of `config` into `<cache_dir>/<fingerprint>/`, or reuse it from there."""
    key = (config.model_dump_json(), os.getcwd())
    if _remembered is not None and key in _remembered:
        return _remembered[key]
    data = _prepare_data(config, progress)
    if _remembered is not None:
        _remembered[key] = data
    return data


def _prepare_data(config: DataConfig, progress: bool) -> PreparedData:
    corpus = resolve_corpus(config.path, config.text_field)
    if config.route_field is not None:  # in the corpus's fingerprint: a routed preparation is another one
        corpus = dataclasses.replace(corpus, route_field=config.route_field)
    loaded = _load_configured_tokenizer(config)
    source_fingerprint = corpus.fingerprint()
    fingerprint = _fingerprint(config, source_fingerprint, loaded)
    cache_dir = config.resolved_cache_dir()
    directory = cache_dir / fingerprint
    manifest = _complete_manifest(directory, fingerprint)
    if manifest is not None:
        return PreparedData(directory, manifest, reused=True)

    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache_dir / f"{fingerprint}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            err_console.print(f"waiting for another process preparing {directory} ...")
        lock.acquire()
    try:
        manifest = _complete_manifest(directory, fingerprint)  # the other process may have finished it
        if manifest is not None:
            return PreparedData(directory, manifest, reused=True)
        manifest = _build(config, corpus, source_fingerprint, loaded, fingerprint, directory, progress)
    finally:
        lock.release()
    if progress:
        err_console.print(describe_prepared(manifest), highlight=False, soft_wrap=True)
    return PreparedData(directory, manifest, reused=False)


def describe_prepared(manifest: dict) -> str:
    """One line: the corpus and its size in bytes and tokens, per split."""
    source, splits = manifest["source"], manifest["splits"]
    total = sum(splits[name]["tokens"] for name in SPLITS)
    duplicates = source.get("duplicates_skipped", 0)
    return (f"prepared {source['description']}: {source['documents']:,} documents"
            + (f" ({duplicates:,} duplicates left out)" if duplicates else "")
            + f", {source['bytes'] / 1e6:,.1f} MB, {total / 1e6:,.2f}M tokens ("
            + ", ".join(f"{name} {splits[name]['tokens'] / 1e6:,.2f}M" for name in SPLITS) + ")")


def assign_splits(document_hashes: np.ndarray, document_bytes: np.ndarray,
                  val_fraction: float) -> np.ndarray:
    """Split of every document: 0 = val, 1 = teacher, 2 = student. Documents are never cut.

    Distinct documents are visited in order of their (salted) hash. Validation takes each one that still
    fits in `val_fraction` of the text (at least the smallest document); every other one goes to
    whichever training half holds less text, so the halves differ by at most one document's size.
    Identical documents share a hash and so a split: duplicates never leak across splits.
    """
    distinct, which = np.unique(document_hashes, return_inverse=True)
    if len(distinct) < len(SPLITS):
        raise UserError(f"the corpus has {len(distinct)} distinct documents, too few for the val, teacher "
                        "and student splits: give a corpus with at least 3 documents (or a larger max_bytes)")
    sizes = np.bincount(which, weights=document_bytes, minlength=len(distinct))
    val_budget = val_fraction * sizes.sum()
    split = np.full(len(distinct), -1, dtype=np.int8)
    val_bytes = 0.0
    for index, size in enumerate(sizes):
        if val_bytes + size <= val_budget:
            split[index] = 0
            val_bytes += size
    if val_bytes == 0:
        split[np.argmin(sizes)] = 0
    half_bytes = [0.0, 0.0]
    for index in np.flatnonzero(split < 0):
        half = 0 if half_bytes[0] <= half_bytes[1] else 1
        split[index] = 1 + half
        half_bytes[half] += sizes[index]
    return split[which]


def document_hash(text: bytes, seed: int) -> int:
    """64-bit hash of a document's UTF-8 text, salted by the split seed."""
    digest = hashlib.blake2b(text, digest_size=8, key=seed.to_bytes(8, "little"))
    return int.from_bytes(digest.digest(), "little")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def _load_configured_tokenizer(config: DataConfig) -> tuple[Tokenizer, str] | None:
    """The tokenizer named in the config with its end-of-text token, or None to train one."""
    if config.tokenizer is None:
        return None
    tokenizer, end_of_text = load_tokenizer(config.tokenizer)
    if config.vocab_size is not None and config.vocab_size != tokenizer_vocab_size(tokenizer):
        raise UserError(f"vocab_size {config.vocab_size} conflicts with tokenizer {config.tokenizer}, "
                        f"which has {tokenizer_vocab_size(tokenizer)} tokens: leave out the vocabulary size")
    return tokenizer, end_of_text


def _fingerprint(config: DataConfig, source_fingerprint: str, loaded: tuple[Tokenizer, str] | None) -> str:
    if loaded is None:
        tokenizer = {"train": "byte-level-bpe", "vocab_size": config.vocab_size or DEFAULT_VOCAB_SIZE}
    else:
        tokenizer = {"hash": tokenizer_hash(loaded[0]), "end_of_text": loaded[1]}
    identity = {"format": FORMAT, "source": source_fingerprint, "max_bytes": config.max_bytes,
                "tokenizer": tokenizer, "tokenizers": tokenizers.__version__,
                "val_fraction": config.val_fraction, "seed": config.seed}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _complete_manifest(directory: Path, fingerprint: str) -> dict | None:
    """The manifest of a finished preparation in `directory`, or None if there is none."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        if manifest["format"] != FORMAT or manifest["fingerprint"] != fingerprint:
            return None
        expected_sizes = {name: manifest["splits"][name]["tokens"] * np.dtype(manifest["dtype"]).itemsize
                          for name in SPLITS}
    except (KeyError, TypeError):  # not a manifest this version wrote
        return None
    for name, size in expected_sizes.items():
        path = directory / f"{name}.bin"
        if not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


@dataclass
class _FirstPass:
    """What one read of the corpus establishes: the tokenizer, and each document's hash and size."""

    tokenizer: Tokenizer
    end_of_text: str
    origin: str
    stats: ReadStats
    hashes: np.ndarray
    sizes: np.ndarray


def _build(config: DataConfig, corpus: Corpus, source_fingerprint: str,
           loaded: tuple[Tokenizer, str] | None, fingerprint: str, directory: Path, progress: bool) -> dict:
    """Prepare the corpus in a temporary directory, then rename it to `directory`. Call with the lock held."""
    for leftover in directory.parent.glob(f".{fingerprint}.*"):  # from preparers that were killed
        shutil.rmtree(leftover, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{fingerprint}.", dir=directory.parent))
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeElapsedColumn(), console=err_console,
                      disable=not progress) as display:
            try:
                first = _first_pass(config, corpus, loaded, display)
                assignment = assign_splits(first.hashes, first.sizes, config.val_fraction)
            except UserError:  # the error alone, without the bars of the work it ended
                _stop_silently(display)
                raise
            dtype = token_dtype(tokenizer_vocab_size(first.tokenizer))
            first.tokenizer.save(str(work / "tokenizer.json"))
            task = display.add_task("tokenising", total=first.stats.bytes)
            routes = None if config.route_field is None else _Routes(config.route_field)
            splits = _write_splits(first.tokenizer, corpus.documents(config.max_bytes, ReadStats(),
                                                                     None if routes is None else routes.read),
                                   assignment, first.tokenizer.token_to_id(first.end_of_text), dtype, work,
                                   lambda n_bytes: display.advance(task, n_bytes), routes)
        manifest = _manifest(config, corpus, source_fingerprint, fingerprint, first, dtype, splits)
        if routes is not None:
            manifest["routes"] = {"field": routes.field, "values": routes.values, "dtype": ROUTE_DTYPE,
                                  "files": {name: f"{name}.route.bin" for name in SPLITS},
                                  "method": "each token of a document (its end-of-text token included) holds "
                                            "the index in `values` of the document's field"}
        atomic_write_json(work / "manifest.json", manifest)
        if directory.exists():  # an unfinished or damaged preparation: the lock says nobody uses it
            shutil.rmtree(directory)
        os.rename(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _stop_silently(display: Progress) -> None:
    """End the progress display leaving nothing behind (on a terminal the bars are erased; elsewhere
    they are not printed), so that an error is the only thing the user reads."""
    for task_id in list(display.task_ids):
        display.remove_task(task_id)
    display.live.transient = True
    quiet = display.console.quiet
    display.console.quiet = quiet or not display.console.is_terminal
    try:
        display.stop()
    finally:
        display.console.quiet = quiet
    display.stop = lambda: None  # the `with` block's exit would stop it again, printing a blank line


def _first_pass(config: DataConfig, corpus: Corpus, loaded: tuple[Tokenizer, str] | None,
                display: Progress) -> _FirstPass:
    """Read the corpus once: hash and measure every document, training the BPE on the way if no
    tokenizer was given."""
    stats = ReadStats()
    hashes: list[int] = []
    sizes: list[int] = []
    size_hint = corpus.size_bytes()
    if config.max_bytes is not None:
        size_hint = min(size_hint, config.max_bytes)
    task = display.add_task("reading corpus", total=size_hint)

    def documents():
        for text in corpus.documents(config.max_bytes, stats):
            encoded = text.encode("utf-8")
            hashes.append(document_hash(encoded, config.seed))
            sizes.append(len(encoded))
            display.update(task, completed=stats.bytes)
            yield text
        display.update(task, completed=size_hint,
                       description="learning BPE merges" if loaded is None else "read corpus")

    if loaded is None:
        asked = config.vocab_size or DEFAULT_VOCAB_SIZE
        tokenizer = train_byte_level_bpe(documents(), asked)
        end_of_text, origin = END_OF_TEXT, "byte-level BPE trained on the corpus"
        if stats.documents == 0:  # before the warning about the vocabulary: this is the real error
            raise UserError(empty_corpus_message(corpus, stats))
        if tokenizer_vocab_size(tokenizer) < asked:
            warn(f"the corpus supports only {tokenizer_vocab_size(tokenizer):,} BPE tokens, not the "
                 f"{asked:,} asked for: the tokenizer has {tokenizer_vocab_size(tokenizer):,}; give a larger "
                 "corpus or a smaller --vocab-size")
    else:
        for _ in documents():
            pass
        (tokenizer, end_of_text), origin = loaded, str(config.tokenizer)
    if stats.documents == 0:
        raise UserError(empty_corpus_message(corpus, stats))
    return _FirstPass(tokenizer, end_of_text, origin, stats, np.array(hashes, dtype=np.uint64),
                      np.array(sizes, dtype=np.int64))


def _manifest(config: DataConfig, corpus: Corpus, source_fingerprint: str, fingerprint: str,
              first: _FirstPass, dtype: np.dtype, splits: dict) -> dict:
    stats = first.stats
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.model_dump(),
        "source": {"kind": corpus.kind, "description": corpus.describe(), "files": len(corpus.files),
                   "fingerprint": source_fingerprint,
                   "fingerprint_method": "sha256 of each file's path, size and mtime",
                   "documents": stats.documents, "bytes": stats.bytes,
                   "truncated_by_max_bytes": stats.truncated,
                   "skipped_non_utf8": stats.skipped_non_utf8, "skipped_examples": stats.skipped_examples,
                   "duplicates_skipped": stats.duplicates},
        "tokenizer": {"hash": tokenizer_hash(first.tokenizer),
                      "vocab_size": tokenizer_vocab_size(first.tokenizer), "origin": first.origin,
                      "end_of_text": first.end_of_text,
                      "end_of_text_id": first.tokenizer.token_to_id(first.end_of_text)},
        "split": {"method": "whole documents in salted blake2b hash order: val takes those that fit in "
                            "val_fraction of the text, the rest go to the teacher or student half holding "
                            "less text",
                  "val_fraction": config.val_fraction, "seed": config.seed},
        "dtype": dtype.name,
        "splits": splits,
        "versions": {"distillscale": distillscale.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }


class _Routes:
    """The route of each document read (`read`, in order) and the distinct values, numbered as met."""

    def __init__(self, field: str):
        self.field = field
        self.read: list[str | None] = []
        self.values: list[str | None] = []
        self._ids: dict[str | None, int] = {}

    def id_of(self, index: int) -> int:
        value = self.read[index]
        if value not in self._ids:
            if len(self.values) >= np.iinfo(ROUTE_DTYPE).max:
                raise UserError(f"field {self.field!r} takes more than {np.iinfo(ROUTE_DTYPE).max} values: a "
                                f"route names one teacher of a mixture, give a field with a few values")
            self._ids[value] = len(self.values)
            self.values.append(value)
        return self._ids[value]


def _write_splits(tokenizer: Tokenizer, documents, assignment: np.ndarray, end_of_text_id: int,
                  dtype: np.dtype, directory: Path, advance, routes: _Routes | None = None) -> dict:
    """Encode documents in large parallel batches and append each, followed by the end-of-text token,
    to its split's file (and with `routes`, the document's route id for each of its tokens to the
    split's .route.bin). Returns documents and tokens per split."""
    counts = {name: {"documents": 0, "tokens": 0, "file": f"{name}.bin"} for name in SPLITS}
    files = [open(directory / f"{name}.bin", "wb") for name in SPLITS]
    route_files = [] if routes is None else [open(directory / f"{name}.route.bin", "wb") for name in SPLITS]
    batch: list[str] = []
    batch_bytes = 0
    index = 0

    def flush() -> None:
        nonlocal index, batch_bytes
        encodings = tokenizer.encode_batch_fast(batch, add_special_tokens=False)
        pieces: list[list[np.ndarray]] = [[] for _ in SPLITS]
        route_pieces: list[list[np.ndarray]] = [[] for _ in SPLITS]
        for encoding in encodings:
            split = assignment[index]
            pieces[split].append(np.array(encoding.ids + [end_of_text_id], dtype=dtype))
            if routes is not None:
                route_pieces[split].append(np.full(len(encoding.ids) + 1, routes.id_of(index), dtype=ROUTE_DTYPE))
            counts[SPLITS[split]]["documents"] += 1
            index += 1
        for split, arrays in enumerate(pieces):
            if arrays:
                tokens = np.concatenate(arrays)
                tokens.tofile(files[split])
                counts[SPLITS[split]]["tokens"] += len(tokens)
                if routes is not None:
                    np.concatenate(route_pieces[split]).tofile(route_files[split])
        advance(batch_bytes)
        batch.clear()
        batch_bytes = 0

    try:
        for text in documents:
            if index + len(batch) >= len(assignment):
                raise UserError("the corpus grew while it was being prepared: run again once it is stable")
            batch.append(text)
            batch_bytes += len(text.encode("utf-8"))
            if batch_bytes >= ENCODE_BATCH_BYTES:
                flush()
        if batch:
            flush()
        if index != len(assignment):
            raise UserError("the corpus shrank while it was being prepared: run again once it is stable")
        for file in files + route_files:
            file.flush()
            os.fsync(file.fileno())
    finally:
        for file in files + route_files:
            file.close()
    return counts
