"""Corpora the bench scripts build from what this machine already holds (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path


def plain_corpus(directory: Path) -> Path:
    """A plain-text corpus of this machine's license texts and package documentation, one file per
    document (sorted, so the same machine builds the same corpus)."""
    if not directory.is_dir():
        directory.mkdir(parents=True)
        sources = sorted(Path("/usr/share/common-licenses").glob("*"))
        sources += sorted(p for p in Path("/usr/share/doc").rglob("*")
                          if p.is_file() and not p.name.endswith(".gz")
                          and (p.suffix == ".txt" or p.name.startswith("README") or p.name in ("NEWS", "copyright")))
        for index, path in enumerate(p for p in sources if p.is_file()):
            shutil.copyfile(path, directory / f"doc{index}.txt")
    return directory
