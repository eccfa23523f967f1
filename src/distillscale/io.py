"""Atomic file writes, and the one rule every command that writes follows.

Atomic: write to a temporary file in the same directory, then rename, so a reader never sees a
half-written artifact that looks complete, even after `kill -9`.

The output rule (`check_output_file`, `check_output_dir`), checked before any work starts:
- never write over an input;
- never write into an existing directory that distillscale did not make, with --overwrite or not;
- replace an existing file only when asked (--overwrite).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from distillscale.errors import UserError

# Longest file name most file systems take (bytes); a longer --out fails with ENAMETOOLONG.
NAME_MAX = 255


# Names of atomic_write's temporary files; one left behind by a killed process is a partial write.
TEMP_PREFIX = ".tmp-"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then atomically move tmp_path to `path` (fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A short name: the output's own name may already be as long as the file system allows.
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file owner-only; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    """Let numpy scalars and arrays pass through json.dumps."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_output_file(path: str | os.PathLike, *, overwrite: bool, inputs: Iterable = (),
                      flag: str = "--out") -> Path:
    """Check, before the work starts, that a file may be written at `path`: not an input, not a
    directory, a usable name, and replaced only with `overwrite`. Returns the path."""
    path = Path(path)
    _check_name(path, flag)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory: give the name of a file to write")
    _check_not_an_input(path, inputs, flag)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UserError(f"{flag} {path} exists: pass --overwrite to replace it, or choose another name")
    for parent in path.parents:  # the first one that exists must be a directory
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
            break
    return path


def check_output_dir(path: str | os.PathLike, *, is_ours: Callable[[Path], bool], inputs: Iterable = (),
                     flag: str = "--out", what: str = "distillscale output") -> Path:
    """Check, before the work starts, that `path` is a directory distillscale may write into: new,
    empty, or one that `is_ours` recognises (a run, cache, sweep or export it made earlier), and no
    input. --overwrite never lets a command into a directory that is not its own. Returns the path."""
    path = Path(path)
    _check_name(path, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file: give a directory (new, empty, or one it made)")
    _check_not_an_input(path, inputs, flag)
    if path.is_dir() and any(path.iterdir()) and not is_ours(path):
        raise UserError(f"{flag} {path} is not empty and is not a {what}: distillscale only writes into "
                        f"a new or empty directory or one it made; choose another {flag}")
    return path


def _check_name(path: Path, flag: str) -> None:
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise UserError(f"{flag} {str(path)[:60]}...: a file or directory name longer than {NAME_MAX} "
                        "bytes cannot be created; choose a shorter name")


def _check_not_an_input(path: Path, inputs: Iterable, flag: str) -> None:
    for item in inputs:
        if item is not None and _same_path(path, Path(item)):
            raise UserError(f"{flag} {path} is also an input of this command: writing it would destroy "
                            f"the input; choose another {flag}")


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
