"""The sha256 of a file's content, computed once per state of the file and kept in distillscale's
cache (`file_digests`), so that a model's identity can be its weights' content at the cost of a stat.

A file's state is its size, modification time, inode, device and change time (ctime). Tools that
copy or rewrite a file can keep its size and modification time (`rsync -a`, `touch -r`, archives
unpacked with their times), but not its ctime: the kernel sets it on every write or rename, and no
call sets it back. A kept digest is used only while the file's state is the one it was computed at,
and only once that state is older than the clock's resolution (a file written in the same instant it
was hashed could be written again without a visible change): in doubt, the file is read again.

The index is one small JSON file in distillscale's cache (`$DISTILLSCALE_CACHE/file-digests.json`),
an entry per file path; where it cannot be written, digests are computed every time, never kept
elsewhere."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

INDEX_FILE = "file-digests.json"
SETTLED_NS = 2_000_000_000   # a state this much older than its hashing is trusted (2 s: FAT's time step)


# Reading more than this many bytes to hash them shows a progress bar (a large model's weights, a corpus).
SHOWN_BYTES = 1 << 30


def file_digests(files: list[Path], cache: Path | None = None, what: str = "files") -> dict[Path, str]:
    """The sha256 (hex) of each file's content: from the index in `cache` (default: distillscale's
    cache) while the file's state is the one it was hashed at, else read now (and kept). Reading
    more than SHOWN_BYTES shows a progress bar on stderr, naming `what` is read."""
    from distillscale.data.config import cache_directory

    index_path = (cache if cache is not None else cache_directory()) / INDEX_FILE
    index = _read(index_path)
    digests, changed, unread = {}, False, []
    for file in files:
        key = str(Path(file).resolve())
        state = _state(file)
        kept = index.get(key)
        if isinstance(kept, dict) and kept.get("state") == state and _settled(state, kept.get("hashed_at")) \
                and isinstance(kept.get("sha256"), str):
            digests[file] = kept["sha256"]
        else:
            unread.append((file, key, state))
    with _progress(sum(state[0] for _, _, state in unread), what) as advance:
        for file, key, state in unread:
            hashed_at = time.time_ns()
            digests[file] = _sha256(file)
            advance(state[0])
            if _state(file) == state:  # not written while it was read
                index[key] = {"state": state, "sha256": digests[file], "hashed_at": hashed_at}
                changed = True
    if changed:
        _write(index_path, {key: entry for key, entry in index.items() if os.path.exists(key)})
    return {file: digests[file] for file in files}


class _progress:
    """A progress bar over `total` bytes read to hash `what` (none below SHOWN_BYTES); entered, it
    gives the function that advances it."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.bar = total, what, None

    def __enter__(self):
        if self.total < SHOWN_BYTES:
            return lambda count: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        from distillscale.console import err_console

        self.bar = Progress(TextColumn(f"reading {self.what} for their identity (once; kept)"), BarColumn(),
                            DownloadColumn(), TimeRemainingColumn(), console=err_console, transient=True)
        self.bar.start()
        task = self.bar.add_task("hash", total=self.total)
        return lambda count: self.bar.advance(task, count)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _state(file: Path) -> list[int]:
    stat = os.stat(file)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _settled(state: list[int], hashed_at) -> bool:
    """Whether the file's last change (mtime or ctime) came clearly before it was hashed."""
    return isinstance(hashed_at, int) and max(state[1], state[2]) < hashed_at - SETTLED_NS


def _sha256(file: Path) -> str:
    with open(file, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read(path: Path) -> dict:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _write(path: Path, index: dict) -> None:
    from distillscale.io import atomic_write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, index)
    except OSError:  # a read-only cache: the digests are computed again next time
        pass
