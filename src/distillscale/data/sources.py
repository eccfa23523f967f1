"""Where the text comes from: find a corpus's files and read its documents in a fixed order.

A document is a whole text file, one `.jsonl` line, one `.parquet` row, or one row of a `datasets`
directory saved with `save_to_disk`. Every other file is read as UTF-8 text; files (and `.jsonl`
lines) that are not valid UTF-8 are skipped and counted.

Two corpora are built in, needing no download: `stdlib` (the default: this interpreter's standard
library sources, ~12 MB) and `python-env` (every Python source file of the running environment: the
standard library plus the installed packages, hundreds of MB with PyTorch installed; files with the
same content, e.g. vendored copies, are read once). Name them as the data path `builtin:stdlib` and
`builtin:python-env`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from distillscale.data.manifest import prepared_manifest
from distillscale.errors import UserError
from distillscale.io import decode_unicode

STDLIB_EXCLUDED_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
BUILTIN_PREFIX = "builtin:"
BUILTIN_SOURCES = {"stdlib": "this interpreter's standard library sources (the default)",
                   "python-env": "every Python source file of this environment: standard library and "
                                 "installed packages, each distinct file once"}
GLOB_CHARACTERS = set("*?[")
PARQUET_BATCH_ROWS = 1024


@dataclass
class ReadStats:
    """What one pass over a corpus read."""

    documents: int = 0
    bytes: int = 0
    skipped_non_utf8: int = 0
    skipped_examples: list[str] = field(default_factory=list)  # the first few, for the message
    duplicates: int = 0  # documents left out as copies of one read before (python-env)
    truncated: bool = False  # max_bytes cut the corpus short

    def skip(self, where: str) -> None:
        self.skipped_non_utf8 += 1
        if len(self.skipped_examples) < 5:
            self.skipped_examples.append(where)


@dataclass(frozen=True)
class Corpus:
    """A resolved source: files (`kind` "stdlib", "python-env" or "files") or a `datasets` directory.
    A python-env corpus reads each distinct file content once."""

    kind: str
    root: str
    files: tuple[Path, ...]
    text_field: str = "text"
    route_field: str | None = None  # a field of the jsonl/parquet rows each document's route is read from

    def describe(self) -> str:
        if self.kind == "stdlib":
            return f"Python {sysconfig.get_python_version()} standard library ({self.root})"
        if self.kind == "python-env":
            return f"Python {sysconfig.get_python_version()} environment sources ({self.root})"
        if self.kind == "datasets":
            return f"datasets directory {self.root}"
        return self.root

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)

    def fingerprint(self) -> str:
        """Hash of every file's path, size and modification time.

        Metadata, not content: checking whether a prepared corpus is still valid costs one `stat`
        per file instead of a read of the whole corpus. Editing a file changes its mtime.
        """
        route = "" if self.route_field is None else f"\0route:{self.route_field}"
        digest = hashlib.sha256(f"{self.kind}\0{self.text_field}{route}".encode())
        for path in self.files:
            stat = path.stat()
            digest.update(f"\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def documents(self, max_bytes: int | None, stats: ReadStats, routes: list | None = None) -> Iterator[str]:
        """Yield the non-empty documents in order, stopping once `max_bytes` of text were read
        (the last document is cut on a character boundary). Counts go into `stats`; with `routes`,
        each yielded document's `route_field` value (None where the row has none) is appended to it."""
        budget = max_bytes
        for text, route in self._raw_records(stats):
            encoded = text.encode("utf-8")
            if budget is not None and len(encoded) > budget:
                text = encoded[:budget].decode("utf-8", errors="ignore")
                encoded = text.encode("utf-8")
                stats.truncated = True
            if text.strip():
                stats.documents += 1
                stats.bytes += len(encoded)
                if routes is not None:
                    routes.append(route)
                yield text
            if budget is not None:
                budget -= len(encoded)
                if stats.truncated or budget <= 0:
                    return

    def _raw_records(self, stats: ReadStats) -> Iterator[tuple[str, str | None]]:
        """(text, route) of each document; the route is None without a `route_field`."""
        if self.route_field is None:
            for text in self._raw_documents(stats):
                yield text, None
            return
        for path in self.files:
            if self.kind != "files" or path.suffix not in (".jsonl", ".parquet"):
                raise UserError(f"--teacher-route {self.route_field} reads a field of jsonl or parquet rows, and "
                                f"{path} is neither: give a corpus of .jsonl or .parquet files")
            if path.suffix == ".jsonl":
                yield from _jsonl_documents(path, self.text_field, stats, self.route_field)
            else:
                yield from _parquet_documents(path, self.text_field, self.route_field)

    def _raw_documents(self, stats: ReadStats) -> Iterator[str]:
        if self.kind == "datasets":
            yield from _dataset_documents(Path(self.root), self.text_field)
            return
        seen: set[bytes] = set()
        for path in self.files:
            if self.kind == "python-env":
                raw = path.read_bytes()
                digest = hashlib.blake2b(raw, digest_size=16).digest()
                if digest in seen:
                    stats.duplicates += 1
                    continue
                seen.add(digest)
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    stats.skip(str(path))
            elif path.suffix == ".jsonl":
                yield from _jsonl_documents(path, self.text_field, stats)
            elif path.suffix == ".parquet":
                yield from _parquet_documents(path, self.text_field)
            else:
                try:
                    yield decode_unicode(path.read_bytes())
                except UnicodeDecodeError:
                    stats.skip(str(path))


def resolve_corpus(path: str | None, text_field: str = "text") -> Corpus:
    """Find the files of the corpus at `path` (None = the standard library; `builtin:NAME` a built-in
    corpus), in a fixed order."""
    if path is not None and path.startswith(BUILTIN_PREFIX):
        name = path.removeprefix(BUILTIN_PREFIX)
        if name == "python-env":
            return python_env_corpus(text_field=text_field)
        if name != "stdlib":
            raise UserError(f"unknown built-in corpus {path!r}: use " +
                            " or ".join(BUILTIN_PREFIX + known for known in BUILTIN_SOURCES))
        path = None
    if path is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        return Corpus("stdlib", str(root), _walk(root, suffix=".py", excluded=STDLIB_EXCLUDED_DIRS),
                      text_field)
    if GLOB_CHARACTERS & set(path):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(path), recursive=True))
        files = tuple(p.resolve() for p in matches if p.is_file())
        if not files:
            raise UserError(f"no files match {path!r}: check the pattern (use ** to search subdirectories)")
        return Corpus("files", path, files, text_field)
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"data path {path} does not exist: give a directory, a file or a glob of text files")
    root = root.resolve()
    if root.is_file():
        return Corpus("files", str(root), (root,), text_field)
    if prepared_manifest(root) is not None:  # its token files and manifest are no text: `prepare_data` opens it
        raise UserError(f"data path {path} is a corpus `distillscale data prepare` made: it is read as that corpus "
                        "(prepare_data, or --data of a command), never as text; give the corpus's own files to "
                        "read their text")
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return Corpus("datasets", str(root), _walk(root), text_field)
    files = _walk(root)
    if not files:
        raise UserError(f"data directory {root} holds no files: put text, .jsonl or .parquet files in it")
    return Corpus("files", str(root), files, text_field)


def python_env_roots() -> list[Path]:
    """Where this environment's Python sources live: the standard library and the package directories."""
    paths = sysconfig.get_paths()
    roots = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(key)]
    return [Path(root) for root in dict.fromkeys(roots) if Path(root).is_dir()]


def python_env_corpus(roots: list[Path] | None = None, text_field: str = "text") -> Corpus:
    """Every `.py` file under `roots` (default: `python_env_roots()`), each path once, in a fixed order
    (sorted by path); files of the same content are read once (`Corpus.documents`)."""
    roots = python_env_roots() if roots is None else [Path(root) for root in roots]
    # A root inside another (the standard library holding site-packages) is walked twice: each path
    # counts once. Paths are not resolved (a realpath per file costs seconds); same content reads once.
    files = sorted({path for root in roots for path in _walk(root, suffix=".py", excluded={"__pycache__"})})
    if not files:
        raise UserError(f"no Python source files under {', '.join(map(str, roots))}: use another --data")
    return Corpus("python-env", os.pathsep.join(map(str, roots)), tuple(files), text_field)


# The directories a walk could not read, said once per process (a command resolves its corpus several times).
_unreadable_said: set[str] = set()


def _walk(root: Path, suffix: str | None = None, excluded: set[str] = frozenset()) -> tuple[Path, ...]:
    """All files under `root` in sorted order, leaving out hidden files and `excluded` directories. A
    directory below `root` that cannot be read is left out with a warning naming it (the corpus is then
    what can be read, and another corpus than where it could); `root` itself, unreadable, holds no files."""
    found, unreadable = [], []

    def skipped(error: OSError) -> None:
        if error.filename is not None and Path(error.filename) != root:
            unreadable.append(f"{error.filename} ({error.strerror or error})")

    for directory, subdirectories, names in os.walk(root, onerror=skipped):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and d not in excluded]
        found.extend(Path(directory, name) for name in names
                     if not name.startswith(".") and (suffix is None or name.endswith(suffix)))
    _say_unreadable(root, unreadable)
    return tuple(sorted(found))


def _say_unreadable(root: Path, unreadable: list[str]) -> None:
    """One warning naming the directories under `root` a walk could not read (once per process)."""
    new = [what for what in unreadable if what not in _unreadable_said]
    if not new:
        return
    from distillscale.console import warn

    _unreadable_said.update(new)
    shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
    warn(f"the corpus {root} leaves out what cannot be read: {shown}; make it readable to read its text, or "
         "move it out of the corpus to read the rest without this warning")


def _jsonl_documents(path: Path, text_field: str, stats: ReadStats, route_field: str | None = None) -> Iterator:
    """The texts of a jsonl file's rows; with `route_field`, (text, that field's value as text or None)."""
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                stats.skip(f"{path}:{number}")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} line {number} is not valid JSON ({exc.msg}): "
                                "fix or remove the line") from None
            if not isinstance(record, dict) or text_field not in record:
                raise UserError(f"{path} line {number} has no field {text_field!r}: "
                                "name the text field with --text-field")
            text = _text_value(record[text_field], f"{path} line {number}", text_field)
            yield text if route_field is None else (text, _route_value(record.get(route_field)))


def _parquet_documents(path: Path, text_field: str, route_field: str | None = None) -> Iterator:
    """The texts of a parquet file's rows; with `route_field`, (text, that column's value or None)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise UserError(f"cannot read parquet file {path}: {first_line(exc)}") from None
    columns = parquet.schema_arrow.names
    if text_field not in columns:
        raise UserError(f"{path} has no column {text_field!r} (columns: {', '.join(columns)}): "
                        "name the text column with --text-field")
    if route_field is not None:
        if route_field not in columns:
            raise UserError(f"{path} has no column {route_field!r} (columns: {', '.join(columns)}): name the "
                            f"teachers' field with --teacher-route")
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field, route_field]):
            for value, route in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                yield _text_value(value, str(path), text_field), _route_value(route)
        return
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            yield _text_value(value, str(path), text_field)


def _route_value(value) -> str | None:
    """A row's route: its field's value as text (None: the row has none)."""
    return None if value is None else str(value)


def _dataset_documents(root: Path, text_field: str) -> Iterator[str]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as exc:  # datasets raises several types for damaged directories
        raise UserError(f"cannot load the datasets directory {root}: {first_line(exc)}") from None
    # A DatasetDict's splits are read one after another, by name; distillscale makes its own split.
    parts = ([loaded[name] for name in sorted(loaded)] if isinstance(loaded, datasets.DatasetDict)
             else [loaded])
    for part in parts:
        if text_field not in part.column_names:
            raise UserError(f"datasets directory {root} has no column {text_field!r} "
                            f"(columns: {', '.join(part.column_names)}): name it with --text-field")
        for batch in part.select_columns([text_field]).iter(batch_size=PARQUET_BATCH_ROWS):
            for value in batch[text_field]:
                yield _text_value(value, str(root), text_field)


def first_line(exc: BaseException) -> str:
    """A library's exception message cut to one line, to quote inside a UserError."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _text_value(value, where: str, text_field: str) -> str:
    """Missing text (null) counts as an empty document; anything but a string is an error."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{where}: field {text_field!r} holds {type(value).__name__}, not text: "
                        "name the text field with --text-field")
    return value


def empty_corpus_message(corpus: Corpus, stats: ReadStats) -> str:
    skipped = ""
    if stats.skipped_non_utf8:
        skipped = (f"; {stats.skipped_non_utf8} skipped as not UTF-8 "
                   f"(e.g. {stats.skipped_examples[0]})")
    return (f"the corpus {corpus.describe()} holds no text ({len(corpus.files)} files read{skipped}): "
            "point --data at UTF-8 text, .jsonl or .parquet files")


def check_corpus(path: str | None, text_field: str = "text") -> Corpus | None:
    """The corpus at `path` if it exists and holds some text (read up to its first document), else a
    one-line UserError: what a sweep checks once before it starts any run on the corpus. A corpus `data
    prepare` made is no text to read: None (opening it checks it)."""
    if prepared_manifest(path) is not None:
        return None
    corpus = resolve_corpus(path, text_field)
    stats = ReadStats()
    if next(iter(corpus.documents(None, stats)), None) is None:
        raise UserError(empty_corpus_message(corpus, stats))
    return corpus
