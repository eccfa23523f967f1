"""What a prepared corpus's manifest says, read without opening its splits: whether a directory is a
corpus `data prepare` made at all (`prepared_manifest`), each split's composition, the corpus's warnings
(kept with it, so a second `train` on the cache warns as the first did) and the one line that describes
it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from distillscale.data.config import DEFAULT_VOCAB_SIZE
from distillscale.data.splits import SPLITS, SplitComposition, composition_warning

MANIFEST_FILE = "manifest.json"
FORMAT_FAMILY = "distillscale.data/"  # every format a preparation was ever written in starts so


def prepared_manifest(path: str | os.PathLike | None) -> dict | None:
    """The manifest of the corpus `data prepare` made in directory `path` (of any version's format), or
    None when `path` is not one: the one test of "a prepared corpus" every command's --data makes, so
    that such a directory is read as that corpus, never as text."""
    if path is None:
        return None
    try:
        manifest = json.loads((Path(path).expanduser() / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith(FORMAT_FAMILY):
        return None
    return manifest


def composition(manifest: dict, name: str) -> SplitComposition:
    return SplitComposition.from_record(manifest["splits"][name])


def data_warnings(manifest: dict) -> list[str]:
    """The warnings of a prepared corpus, read from its manifest: a tokenizer trained smaller than asked
    (the corpus supports no more merges) and splits a document dominates or whose training halves
    differ (`splits.composition_warning`). Kept with the splits, so that a second `train` on the cached
    corpus warns as the first did."""
    messages = []
    asked = manifest["config"].get("vocab_size") or DEFAULT_VOCAB_SIZE
    got = manifest["tokenizer"]["vocab_size"]
    if manifest["config"].get("tokenizer") is None and got < asked:
        messages.append(f"the corpus supports only {got:,} BPE tokens, not the {asked:,} asked for: the "
                        f"tokenizer has {got:,}; give a larger corpus or a smaller --vocab-size")
    made = {name: composition(manifest, name) for name in SPLITS}
    concern = composition_warning(made, manifest["source"]["documents"])
    return messages + ([concern] if concern is not None else [])


def describe_prepared(manifest: dict) -> str:
    """One line: the corpus and its size in bytes and tokens, per split."""
    source, splits = manifest["source"], manifest["splits"]
    total = sum(splits[name]["tokens"] for name in SPLITS)
    duplicates = source.get("duplicates_skipped", 0)
    return (f"prepared {source['description']}: {source['documents']:,} documents"
            + (f" ({duplicates:,} duplicates left out)" if duplicates else "")
            + f", {source['bytes'] / 1e6:,.1f} MB, {total / 1e6:,.2f}M tokens ("
            + ", ".join(f"{name} {splits[name]['tokens'] / 1e6:,.2f}M" for name in SPLITS) + ")")
