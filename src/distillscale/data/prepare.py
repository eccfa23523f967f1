"""Tokenise a corpus once into memory-mapped token splits, and reuse them while the corpus is unchanged.

A prepared corpus (`data/prepared.py` reads one) is a directory `<cache_dir>/<fingerprint>/` holding
`tokenizer.json`, one flat token file per split (`val.bin`, `teacher.bin`, `student.bin`; documents
joined by the end-of-text token), each placed unit's split and sketch (`units.*.npy`) and `manifest.json`.
How each document is placed whole in one split (a long one in segments), and each split's composition
(recorded in the manifest): `data/splits.py`. The fingerprint
hashes the source files' paths, sizes and modification times, the tokenizer (its JSON hash, or the BPE
training settings), `max_bytes` and the split settings.

The directory is built under a temporary name and renamed into place, so an interrupted preparation
never looks complete. A file lock per fingerprint makes concurrent preparers of the same corpus (a
sweep's processes) wait for the first one and reuse its result. Inside `reusing_prepared()` (a sweep's
worker process, which runs run after run) each corpus is walked and fingerprinted once per process.
A directory `data prepare` made, given as the corpus, is read as that corpus, never as text.
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tokenizers
from filelock import FileLock, Timeout
from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TransferSpeedColumn)
from tokenizers import Tokenizer

import distillscale
from distillscale.console import err_console, warn
from distillscale.data.config import CACHE_ENV, DEFAULT_VOCAB_SIZE, SPLIT_SETTINGS, DataConfig, shown_setting
from distillscale.data.content import corpus_content
from distillscale.data.manifest import describe_prepared, prepared_manifest
from distillscale.data.loss_identity import corpus_tokenizer_identity, tokenizer_identity
from distillscale.data.prepared import (EARLIER_FORMATS, FIXED_SETTINGS, FORMAT, FORMAT_METHOD, ROUTE_DTYPE, PreparedData,
                                       complete_manifest, open_prepared, unusable_reason)
from distillscale.data.sources import Corpus, ReadStats, empty_corpus_message, resolve_corpus
from distillscale.data.splits import (SKETCH_SIZE, SPLITS, SplitComposition, assign_splits, compositions,
                                      cut_segments, placement, run_ends, unit_rule)
from distillscale.data.token_bytes import BYTES_DTYPE, bytes_behind, split_sha256
from distillscale.data.tokenizer import (END_OF_TEXT, load_tokenizer, tokenizer_hash,
                                         tokenizer_vocab_size, train_byte_level_bpe)
from distillscale.errors import UserError
from distillscale.io import atomic_write_json

BYTES_SPLITS = ("val",)  # the splits whose tokens' bytes are kept: what losses are measured on
ENCODE_BATCH_BYTES = 4 << 20  # text per batched (parallel) encode call: enough to keep every core busy


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
    """Tokenise the corpus of `config` into `<cache_dir>/<fingerprint>/`, or reuse it from there; a
    corpus `data prepare` made, given as the path, is that corpus (`prepared.given_prepared`)."""
    key = (config.model_dump_json(), os.getcwd())
    if _remembered is not None and key in _remembered:
        data = _remembered[key]
    else:
        data = given_prepared(config) or _prepare_data(config, progress)
    if _remembered is not None:
        _remembered[key] = data
    if progress or not data.reused:  # every use says them, not only the one that tokenised the corpus
        for message in data.warnings:
            warn(message)
    return data


def prepared_path(config: DataConfig) -> str | None:
    """The `data prepare` directory `config.path` names, resolved (None: it names a corpus)."""
    return None if prepared_manifest(config.path) is None else str(Path(config.path).expanduser().resolve())


def read_path(config: DataConfig, data: PreparedData) -> str | None:
    """`config.path` as it resolved when `data` was read from it, to be read again from any directory:
    the `data prepare` directory it named, or the corpus's path as the preparation resolved it (None:
    the built-in corpus)."""
    if config.path is None:
        return None
    return prepared_path(config) or (data.manifest.get("config") or {}).get("path") or config.path


def given_prepared(config: DataConfig) -> PreparedData | None:
    """The corpus `data prepare` made in `config.path`, taken as that corpus (None: the path is not one).
    Its tokens and split are fixed: a setting given otherwise than it was prepared with (a tokenizer
    whose ids differ, a vocabulary size, a split setting, a route field it did not keep) is refused in
    one line, never prepared anew from the prepared files as text."""
    if prepared_manifest(config.path) is None:
        return None
    data = open_prepared(config.path)
    recorded = data.manifest.get("config") or {}
    differ = []
    for key, flag in FIXED_SETTINGS.items():
        mine, theirs = getattr(config, key), recorded.get(key, DataConfig.model_fields[key].default)
        # text_field is always passed on (its default given as such): only another one than the default differs
        given = key in config.model_fields_set and (key != "text_field" or mine != DataConfig.model_fields[key].default)
        if given and key != "vocab_size" and mine != theirs:
            differ.append(f"{flag} {shown_setting(mine)} (prepared with {shown_setting(theirs)})")
    if config.vocab_size is not None and config.vocab_size != data.vocab_size:
        differ.append(f"--vocab-size {config.vocab_size} (it has {data.vocab_size} ids)")
    if config.route_field is not None and (data.manifest.get("routes") or {}).get("field") != config.route_field:
        differ.append(f"the route field {config.route_field!r} (not kept with it)")
    if config.tokenizer is not None:
        why = _tokenizer_difference(config.tokenizer, data)
        if why is not None:
            differ.append(f"--tokenizer {config.tokenizer} ({why})")
    if differ:
        raise UserError(f"--data {config.path} is a corpus prepared already, its tokens and split fixed, and this "
                        f"asks for another: {'; '.join(dict.fromkeys(differ))}; leave those out to read it as it "
                        "is, or give the corpus's own files to prepare them so")
    return data


def _tokenizer_difference(tokenizer: str, data: PreparedData) -> str | None:
    return corpus_tokenizer_identity(data).differs(tokenizer_identity(load_tokenizer(tokenizer)[0], tokenizer))


@dataclass(frozen=True)
class DataIdentity:
    """What a config's prepared data would be, found without tokenising (one `stat` per corpus file):
    `corpus`, its files (paths, sizes, modification times) whatever the route field; `fingerprint`,
    the prepared data's (`PreparedData.fingerprint`: corpus, tokenizer, format and split settings, as
    this version prepares them); `splits`, what decides which text lands in which split, the tokenizer
    aside: the format, the corpus, max_bytes, val_fraction and the seed."""

    corpus: str
    fingerprint: str
    splits: tuple
    earlier: dict[str, str]  # each of EARLIER_FORMATS -> the fingerprint the same config had under it

    def format_of(self, fingerprint: str) -> str | None:
        """The data format under which this config's data had `fingerprint` (None: under none)."""
        if fingerprint == self.fingerprint:
            return FORMAT
        return next((name for name, earlier in self.earlier.items() if earlier == fingerprint), None)

    def why_other(self, fingerprint: str) -> str:
        """Why data recorded as `fingerprint` is not this config's data now, in words: a data format
        that split the corpus otherwise, or a corpus, tokenizer or setting changed since."""
        earlier = self.format_of(fingerprint)
        if earlier is not None and earlier != FORMAT:
            return (f"it was prepared as {earlier} ({EARLIER_FORMATS[earlier]}), and this version prepares "
                    f"{FORMAT} ({FORMAT_METHOD}), which splits every corpus anew")
        return f"data fingerprint {fingerprint}, {self.fingerprint} now: the corpus or its tokenizer changed since"


def data_identity(config: DataConfig) -> DataIdentity:
    """The `DataIdentity` of `config`'s data now (a missing corpus or tokenizer: a one-line UserError); of a
    corpus `data prepare` made, given as the path, what its manifest records."""
    given = given_prepared(config)
    if given is not None:
        source, recorded = given.manifest["source"]["fingerprint"], given.manifest["config"]
        return DataIdentity(corpus=source, fingerprint=given.fingerprint, earlier={}, splits=(
            FORMAT, source, recorded.get("max_bytes"), recorded.get("val_fraction"), recorded.get("seed")))
    corpus, loaded, source_fingerprint, fingerprint = _identify(config)
    plain = corpus if config.route_field is None else dataclasses.replace(corpus, route_field=None)
    return DataIdentity(corpus=plain.fingerprint(), fingerprint=fingerprint,
                        splits=(FORMAT, plain.fingerprint(), config.max_bytes, config.val_fraction, config.seed),
                        earlier={name: _fingerprint(config, source_fingerprint, loaded, name)
                                 for name in EARLIER_FORMATS})


@dataclass(frozen=True)
class SplitSource:
    """What a config's splits are cut from and how, found by content (`data.content`): the corpus's
    content digest (as read: under max_bytes, what is read) and the split settings that cut it (a
    prepared corpus's own, whatever the config says)."""

    content: str | None
    settings: dict


def split_settings(config: DataConfig) -> dict:
    """The split settings that cut `config`'s data (SPLIT_SETTINGS): a `data prepare` directory's own."""
    given = given_prepared(config)
    if given is None:
        return {name: getattr(config, name) for name in SPLIT_SETTINGS}
    recorded = given.manifest.get("config") or {}
    return {name: recorded.get(name, DataConfig.model_fields[name].default) for name in SPLIT_SETTINGS}


def split_source(config: DataConfig, max_bytes: int | None = None) -> SplitSource:
    """`config`'s `SplitSource` (a missing or unreadable corpus: a one-line UserError); its content as read
    up to `max_bytes` where the config sets none (a corpus `data prepare` made: as it was prepared)."""
    given = given_prepared(config)
    if given is not None:
        return SplitSource(given.manifest["source"].get("content"), split_settings(config))
    corpus = resolve_corpus(config.path, config.text_field)
    read = config.max_bytes if config.max_bytes is not None else max_bytes
    return SplitSource(corpus_content(corpus, config.cache_dir, read), split_settings(config))


def _identify(config: DataConfig) -> tuple[Corpus, tuple[Tokenizer, str] | None, str, str]:
    """(the corpus, the configured tokenizer or None, the corpus's fingerprint, the data's fingerprint)."""
    corpus = resolve_corpus(config.path, config.text_field)
    if config.route_field is not None:  # in the corpus's fingerprint: a routed preparation is another one
        corpus = dataclasses.replace(corpus, route_field=config.route_field)
    loaded = _load_configured_tokenizer(config)
    source_fingerprint = corpus.fingerprint()
    return corpus, loaded, source_fingerprint, _fingerprint(config, source_fingerprint, loaded)


def _prepare_data(config: DataConfig, progress: bool) -> PreparedData:
    corpus, loaded, source_fingerprint, fingerprint = _identify(config)
    cache_dir = usable_cache_dir(config)
    _check_cache_outside_corpus(cache_dir, corpus)
    directory = cache_dir / fingerprint
    manifest = complete_manifest(directory, fingerprint)
    if manifest is not None:
        return PreparedData(directory, manifest, reused=True)

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{_cache_dir_given(config)}: cannot make the cache directory ({exc.strerror or exc}); "
                        f"give a writable directory (--cache-dir DIR or ${CACHE_ENV}=DIR)") from None
    lock = FileLock(str(cache_dir / f"{fingerprint}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            err_console.print(f"waiting for another process preparing {directory} ...")
        lock.acquire()
    try:
        manifest = complete_manifest(directory, fingerprint)  # the other process may have finished it
        if manifest is not None:
            return PreparedData(directory, manifest, reused=True)
        earlier = prepared_manifest(directory)
        if earlier is not None and unusable_reason(directory, earlier) is not None:  # said as `open_prepared` says it
            warn(f"the corpus prepared in {directory} cannot be read as it is: {unusable_reason(directory, earlier)}; "
                 "preparing it again")
        manifest = _build(config, corpus, source_fingerprint, loaded, fingerprint, directory, progress)
    finally:
        lock.release()
    if progress:
        err_console.print(describe_prepared(manifest), highlight=False, soft_wrap=True)
    return PreparedData(directory, manifest, reused=False)


def prepared_directory(config: DataConfig, fingerprint: str) -> Path:
    """Where the data of `config` prepared as `fingerprint` lies (a run records both): the directory given
    as the corpus when `data prepare` made it, else the cache's directory of that fingerprint."""
    if prepared_manifest(config.path) is not None:
        return Path(config.path).expanduser()
    return config.resolved_cache_dir() / fingerprint


def usable_cache_dir(config: DataConfig) -> Path:
    """The cache directory of `config` (--cache-dir, else $DISTILLSCALE_CACHE, else the default), or a
    one-line UserError when it, or a path above it, is a file: no directory can be made there."""
    cache_dir = config.resolved_cache_dir()
    for path in (cache_dir, *cache_dir.parents):
        if path.exists():
            if not path.is_dir():
                where = "" if path == cache_dir else f": {path} is a file"
                raise UserError(f"{_cache_dir_given(config)}{where or ' is a file'}, not a directory: give a "
                                f"directory for prepared corpora (--cache-dir DIR or ${CACHE_ENV}=DIR)")
            break
    return cache_dir


def _cache_dir_given(config: DataConfig) -> str:
    """How the user gave the cache directory, for a message: the flag, the variable, or the default."""
    if config.cache_dir is not None:
        return f"--cache-dir {config.cache_dir}"
    if os.environ.get(CACHE_ENV):
        return f"${CACHE_ENV}={os.environ[CACHE_ENV]}"
    return f"the cache directory {config.resolved_cache_dir()}"


def _check_cache_outside_corpus(cache_dir: Path, corpus: Corpus) -> None:
    """The output rule for the cache: inside the corpus's directory, the next walk would read the prepared
    files (tokenizer.json, manifest.json) as documents, and every preparation would change the corpus."""
    root = Path(corpus.root)
    if corpus.kind not in ("files", "datasets") or not root.is_dir():
        return
    where, root = cache_dir.expanduser().resolve(), root.resolve()
    if where == root or root in where.parents:
        raise UserError(f"the cache directory {cache_dir} is inside the corpus {corpus.root}: the corpus would read "
                        f"the prepared files as text; give --cache-dir (or ${CACHE_ENV}) outside it")


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


def _fingerprint(config: DataConfig, source_fingerprint: str, loaded: tuple[Tokenizer, str] | None,
                 data_format: str = FORMAT) -> str:
    if loaded is None:
        tokenizer = {"train": "byte-level-bpe", "vocab_size": config.vocab_size or DEFAULT_VOCAB_SIZE}
    else:
        tokenizer = {"hash": tokenizer_hash(loaded[0]), "end_of_text": loaded[1]}
    identity = {"format": data_format, "source": source_fingerprint, "max_bytes": config.max_bytes,
                "tokenizer": tokenizer, "tokenizers": tokenizers.__version__,
                "val_fraction": config.val_fraction, "seed": config.seed}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class _FirstPass:
    """What one read of the corpus establishes: the tokenizer, the documents' count and size, and where
    each document (or segment) goes."""

    tokenizer: Tokenizer
    end_of_text: str
    origin: str
    stats: ReadStats
    placed: _Placed


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
                dtype = token_dtype(tokenizer_vocab_size(first.tokenizer))
                first.tokenizer.save(str(work / "tokenizer.json"))
                task = display.add_task("tokenising", total=first.stats.bytes)
                routes = None if config.route_field is None else _Routes(config.route_field)
                documents = corpus.documents(config.max_bytes, ReadStats(), None if routes is None else routes.read)
                made = _write_splits(first.tokenizer, documents, first.placed, config,
                                     first.tokenizer.token_to_id(first.end_of_text), dtype, work,
                                     lambda n_bytes: display.advance(task, n_bytes), routes)
            except UserError:  # the error alone, without the bars of the work it ended
                _stop_silently(display)
                raise
        splits = {name: {"file": f"{name}.bin"} | made[name].record() for name in SPLITS}
        for name in BYTES_SPLITS:
            splits[name]["bytes"] = int(np.fromfile(work / f"{name}.bytes.bin", dtype=BYTES_DTYPE).sum(dtype=np.int64))
            splits[name]["sha256"] = split_sha256(np.fromfile(work / f"{name}.bin", dtype=dtype))
        manifest = _manifest(config, corpus, source_fingerprint, fingerprint, first, dtype, splits)
        manifest["token_bytes"] = {"files": {name: f"{name}.bytes.bin" for name in BYTES_SPLITS}, "dtype": BYTES_DTYPE,
                                   "method": "the UTF-8 bytes of the source text behind each token, from the "
                                             "tokenizer's character offsets: each character with the first token "
                                             "reaching it, uncovered text with the next token, end-of-text 0"}
        manifest["units"] = {"files": UNIT_FILES, "sketch_size": SKETCH_SIZE,
                             "method": "per unit placed (a document, or a segment of a long one), in corpus "
                                       "order: its split (0 val, 1 teacher, 2 student) and its sketch, the "
                                       "sketch_size least salted hashes of its lines (unit_rule)"}
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
    """Read the corpus once: count, measure and place the documents (`_Placed`), training the BPE on the
    way if no tokenizer was given."""
    stats = ReadStats()
    placed = _Placed(config.seed)
    size_hint = corpus.size_bytes()
    if config.max_bytes is not None:
        size_hint = min(size_hint, config.max_bytes)
    task = display.add_task("reading corpus", total=size_hint)

    def documents():
        for text in corpus.documents(config.max_bytes, stats):
            placed.add(text)
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
    else:
        for _ in documents():
            pass
        (tokenizer, end_of_text), origin = loaded, str(config.tokenizer)
    if stats.documents == 0:
        raise UserError(empty_corpus_message(corpus, stats))
    return _FirstPass(tokenizer, end_of_text, origin, stats, placed)


def _manifest(config: DataConfig, corpus: Corpus, source_fingerprint: str, fingerprint: str,
              first: _FirstPass, dtype: np.dtype, splits: dict) -> dict:
    stats = first.stats
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # the corpus's path as it resolved: a relative path would name another corpus from another directory
        "config": {**config.model_dump(), **({"path": corpus.root} if Path(corpus.root).is_absolute()
                                             and config.path is not None else {})},
        "source": {"kind": corpus.kind, "description": corpus.describe(), "files": len(corpus.files),
                   "fingerprint": source_fingerprint,
                   "fingerprint_method": "sha256 of each file's path, size and mtime",
                   "content": corpus_content(corpus, config.cache_dir, config.max_bytes),   # what is read: data.content
                   "documents": stats.documents, "bytes": stats.bytes,
                   "truncated_by_max_bytes": stats.truncated,
                   "skipped_non_utf8": stats.skipped_non_utf8, "skipped_examples": stats.skipped_examples,
                   "duplicates_skipped": stats.duplicates},
        "tokenizer": {"hash": tokenizer_hash(first.tokenizer),
                      "vocab_size": tokenizer_vocab_size(first.tokenizer), "origin": first.origin,
                      "end_of_text": first.end_of_text,
                      "end_of_text_id": first.tokenizer.token_to_id(first.end_of_text)},
        "split": {"method": "each document whole in one split (a document over segment_min_bytes in segments "
                            "cut where its own text says, each whole; unit_rule), never by the corpus's size; its "
                            "split from the salted hash of its anchor, the line of least salted hash: val below "
                            "val_fraction of the hash range, else the teacher half where the hash is even, the "
                            "student half where odd (so a document shared with another corpus, copied, or edited "
                            "away from its anchor lands in the same split); identical documents share a split; "
                            "an end-of-text token closes each document, or each run of its segments in a split",
                  "unit_rule": unit_rule(), "val_fraction": config.val_fraction, "seed": config.seed},
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


@dataclass
class _Placed:
    """Where each unit of the corpus goes, read in corpus order (`add`, once per document): a document
    whole, or the segments of a long one (`splits.cut_segments`), each with its anchor's split hash and
    its sketch (`splits.placement`)."""

    seed: int
    hashes: list[int] = field(default_factory=list)
    sketches: list[tuple[int, ...]] = field(default_factory=list)
    document: list[int] = field(default_factory=list)   # the index of each unit's document
    last: list[bool] = field(default_factory=list)      # whether each unit ends its document
    cuts: dict[int, list[int]] = field(default_factory=dict)   # a long document's segments' byte ends
    sizes: list[int] = field(default_factory=list)      # each document's UTF-8 bytes
    documents: int = 0

    def add(self, text: str) -> None:
        encoded = text.encode("utf-8")
        self.sizes.append(len(encoded))
        segments = cut_segments(encoded)
        if len(segments) > 1:
            self.cuts[self.documents] = np.cumsum([sum(map(len, segment)) for segment in segments]).tolist()
        for number, segment in enumerate(segments):
            placed = placement(segment, self.seed)
            self.hashes.append(placed.split_hash)
            self.sketches.append(placed.sketch)
            self.document.append(self.documents)
            self.last.append(number == len(segments) - 1)
        self.documents += 1

    def texts(self, index: int, text: str) -> list[str]:
        """Document `index` (its `text`) as the texts of its units."""
        if index not in self.cuts:
            return [text]
        encoded = text.encode("utf-8")
        starts = [0, *self.cuts[index][:-1]]
        return [encoded[start:end].decode("utf-8") for start, end in zip(starts, self.cuts[index])]


UNIT_FILES = {"split": "units.split.npy", "sketch": "units.sketch.npy"}  # each unit's split and sketch


def _write_splits(tokenizer: Tokenizer, documents, placed: _Placed, config: DataConfig, end_of_text_id: int,
                  dtype: np.dtype, directory: Path, advance, routes: _Routes | None = None
                  ) -> dict[str, SplitComposition]:
    """Assign each unit `placed` to its split (`splits.assign_splits`), then read the `documents` again and
    tokenise their units in large parallel batches straight into their splits' files, in corpus order, the
    end-of-text token after each document or run of its segments in a split (`splits.run_ends`); for
    BYTES_SPLITS the bytes behind each token (from the offsets only those splits' units are encoded with),
    with `routes` each token's route id; and each unit's split and sketch (UNIT_FILES). Returns each
    split's composition."""
    hashes = np.array(placed.hashes, dtype=np.uint64)
    assignment = assign_splits(hashes, config.val_fraction)
    ends = run_ends(assignment, np.array(placed.last, dtype=bool))
    counts = np.zeros(len(hashes), dtype=np.int64)
    offsets = {SPLITS.index(name) for name in BYTES_SPLITS}
    files = [open(directory / f"{name}.bin", "wb") for name in SPLITS]
    bytes_files = {SPLITS.index(name): open(directory / f"{name}.bytes.bin", "wb") for name in BYTES_SPLITS}
    route_files = [] if routes is None else [open(directory / f"{name}.route.bin", "wb") for name in SPLITS]
    batch: list[tuple[int, str]] = []   # (unit, its text)
    batch_bytes = read = 0

    def flush() -> None:
        nonlocal batch_bytes
        kept = [(unit, text) for unit, text in batch if assignment[unit] in offsets]
        fast = [(unit, text) for unit, text in batch if assignment[unit] not in offsets]
        encoded = dict(zip([unit for unit, _ in kept], tokenizer.encode_batch([text for _, text in kept],
                                                                              add_special_tokens=False)))
        encoded |= dict(zip([unit for unit, _ in fast], tokenizer.encode_batch_fast([text for _, text in fast],
                                                                                   add_special_tokens=False)))
        written = {split: [] for split in range(len(SPLITS))}
        behind = {split: [] for split in offsets}
        route_ids = {split: [] for split in range(len(SPLITS))}
        for unit, text in batch:
            split, ids = int(assignment[unit]), encoded[unit].ids
            counts[unit] = len(ids)
            written[split].append(np.array(ids + [end_of_text_id] * int(ends[unit]), dtype=dtype))
            if split in offsets:
                behind[split].append(bytes_behind(text, encoded[unit].offsets))
                behind[split].append(np.zeros(int(ends[unit]), BYTES_DTYPE))
            if routes is not None:
                route_ids[split].append(np.full(len(ids) + int(ends[unit]), routes.id_of(placed.document[unit]),
                                                dtype=ROUTE_DTYPE))
        for split, arrays in written.items():
            if arrays:
                np.concatenate(arrays).tofile(files[split])
                if routes is not None:
                    np.concatenate(route_ids[split]).tofile(route_files[split])
        for split, arrays in behind.items():
            if arrays:
                np.concatenate(arrays).astype(BYTES_DTYPE).tofile(bytes_files[split])
        advance(batch_bytes)
        batch.clear()
        batch_bytes = 0

    try:
        unit = 0
        for text in documents:
            if read >= placed.documents:
                raise UserError("the corpus grew while it was being prepared: run again once it is stable")
            for piece in placed.texts(read, text):
                if unit >= len(hashes) or placed.document[unit] != read:
                    raise UserError("the corpus changed while it was being prepared: run again once it is stable")
                batch.append((unit, piece))
                unit += 1
            batch_bytes += placed.sizes[read]
            read += 1
            if batch_bytes >= ENCODE_BATCH_BYTES:
                flush()
        if batch:
            flush()
        if read != placed.documents:
            raise UserError("the corpus shrank while it was being prepared: run again once it is stable")
        for file in files + route_files + list(bytes_files.values()):
            file.flush()
            os.fsync(file.fileno())
    finally:
        for file in files + route_files + list(bytes_files.values()):
            file.close()
    np.save(directory / UNIT_FILES["split"], assignment.astype(np.int8), allow_pickle=False)
    np.save(directory / UNIT_FILES["sketch"], np.array(placed.sketches, dtype=np.uint64).reshape(-1, SKETCH_SIZE),
            allow_pickle=False)
    return compositions(assignment, counts, np.array(placed.document, dtype=np.int64), ends, hashes)
