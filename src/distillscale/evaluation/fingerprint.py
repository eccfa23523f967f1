"""What an lm-eval task's scores depend on besides the model, as one hash: its config as lm-eval's task
index holds it (the YAML with its includes) and the content of every local file it reads.

    fingerprints = task_fingerprints(manager, ["my_task", "arc_easy"])   # task -> TaskFingerprint
    fingerprints["my_task"].files          # {"/data/questions.jsonl": "<sha256>", ...}
    changed_files(fingerprints["my_task"].files)   # None, or which file changed since

A task's local files are its `dataset_path` when that names a file or directory here, its
`dataset_kwargs` paths (`data_files`: a file, a glob, a list or a dict of them; `data_dir`), read where
`datasets.load_dataset` reads them (relative to the working directory), and the Python modules of its
`!function`s. They enter the hash by content, never by path: the same task read from another checkout,
venv or machine has the same fingerprint, and lm-eval's or distillscale's version is no part of it (an
upgrade rescores nothing whose task did not change). Editing a data file changes it: its scores are
stale (`changed_files` says so without lm-eval, from the paths and hashes an eval.json records). A group
or tag is fingerprinted with its member tasks."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_GLOB = set("*?[")
_SKIPPED = {"__pycache__", ".git", ".ipynb_checkpoints"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TaskFingerprint:
    """A task's `fingerprint` (sha256 of its config, local paths replaced by their content's hashes,
    and of its members' fingerprints) and the local `files` it reads: path, directory or glob as
    resolved here -> the sha256 of its content (`local_digest`)."""

    fingerprint: str
    files: dict[str, str] = field(default_factory=dict)


def task_fingerprints(manager, tasks: list[str]) -> dict[str, TaskFingerprint]:
    """task -> its TaskFingerprint, for each of `tasks` lm-eval's index (`manager.task_index`) holds."""
    prints = {task: _fingerprint(manager, task, frozenset()) for task in tasks}
    return {task: found for task, found in prints.items() if found is not None}


def _fingerprint(manager, name: str, seen: frozenset[str]) -> TaskFingerprint | None:
    entry = manager.task_index.get(name)
    if entry is None or name in seen:
        return None
    config, yaml_path = _index_config(entry)
    files: dict[str, str] = {}
    normalized = _normalized(config, files)
    members = {}
    for member in _members(entry, config):
        found = _fingerprint(manager, member, seen | {name})
        if found is not None:
            members[member] = found.fingerprint
            files.update(found.files)
    text = json.dumps({"config": normalized, "members": members}, sort_keys=True, default=str)
    return TaskFingerprint(hashlib.sha256(text.encode("utf-8")).hexdigest(), files)


def _index_config(entry) -> tuple[Any, str | None]:
    """(the task's config as indexed, its YAML's path): lm-eval 0.4.10 on index `Entry`s holding the
    loaded YAML; earlier versions plain dicts naming the YAML, read here (its bytes)."""
    if isinstance(entry, dict):
        yaml_path = entry.get("yaml_path")
        if yaml_path and Path(yaml_path).is_file():
            return {"yaml": hashlib.sha256(Path(yaml_path).read_bytes()).hexdigest()}, str(yaml_path)
        return {key: value for key, value in entry.items() if key != "yaml_path"}, None
    yaml_path = getattr(entry, "yaml_path", None)
    return getattr(entry, "cfg", None), None if yaml_path is None else str(yaml_path)


def _members(entry, config) -> list[str]:
    """The tasks a group lists (by name) or a tag stands for; none for a task."""
    tags = getattr(entry, "tags", None) if getattr(entry, "cfg", None) is None else None
    if tags:
        return sorted(tags)
    if isinstance(config, dict) and "group" in config:
        listed = config.get("task") or []
        return [item for item in (listed if isinstance(listed, list) else [listed]) if isinstance(item, str)]
    return []


def _normalized(value: Any, files: dict[str, str], key: str | None = None) -> Any:
    """`value` with each local path it names (a data key's value, a `!function`'s module) replaced by
    the hash of its content, recorded in `files`."""
    if isinstance(value, dict):
        return {k: _normalized(v, files, key if key == "data_files" else k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalized(v, files, key) for v in value]
    if not isinstance(value, str):
        return value
    module = _function_module(value)
    if module is not None:
        digest = local_digest(str(module))
        files[str(module)] = digest
        return {"function": Path(value).name, "module": digest}
    if key in ("dataset_path", "data_files", "data_dir"):
        resolved = _local(value)
        if resolved is not None:
            digest = local_digest(resolved)
            files[resolved] = digest
            return {"local": digest}
    return value


def _function_module(value: str) -> Path | None:
    """The module file of an unresolved `!function` (lm-eval indexes `!function utils.f` in DIR's YAML
    as "DIR/utils.f"), or None when `value` is no such reference."""
    if not os.path.isabs(value) or "." not in Path(value).name:
        return None
    head, _, _ = value.rpartition(".")
    for candidate in (Path(head + ".py"), Path(head).parent / (Path(head).name.replace(".", "/") + ".py")):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _local(value: str) -> str | None:
    """`value` as a local path, directory or glob that exists here (relative: from the working
    directory, where `datasets` reads it), absolute; None for anything else (a hub dataset's name)."""
    if "://" in value:
        return None
    path = Path(value).expanduser()
    absolute = path if path.is_absolute() else Path.cwd() / path
    if _GLOB & set(value):
        return str(absolute) if glob.glob(str(absolute), recursive=True) else None
    return str(absolute.resolve()) if absolute.exists() else None


def local_digest(spec: str) -> str:
    """sha256 of what `spec` names: a file's bytes, or each file under a directory or matched by a glob
    (by its path relative to the directory or the glob's fixed part, and its bytes); "missing" when it
    names nothing."""
    path = Path(spec)
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        members, root = [p for p in path.rglob("*") if p.is_file() and not _SKIPPED & set(p.parts)], path
    elif _GLOB & set(spec):
        members = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        root = Path(spec[:min(spec.index(c) for c in _GLOB if c in spec)]).parent
    else:
        return "missing"
    listing = sorted((str(member.relative_to(root)), _file_digest(member)) for member in members)
    return hashlib.sha256(json.dumps(listing).encode("utf-8")).hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime): a file is hashed once per process


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def changed_files(files: dict[str, str]) -> str | None:
    """Which of `files` (path -> sha256 when its task was scored) differs now, in words ("/d/q.jsonl
    changed since"); None when every one that is here is as it was (a file not on this machine, a
    sweep's runs read elsewhere, cannot say its scores are stale)."""
    for path, digest in files.items():
        now = local_digest(path)
        if now not in (digest, "missing"):
            return f"{path} changed since"
    return None
