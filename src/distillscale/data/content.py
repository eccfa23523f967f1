"""What a corpus is by its content, whatever path names it: the digest its prepared manifest and every
run record (`training.records.RunPlan.corpus`), and what the teacher's-split rule compares
(`data.trained_split`): a corpus moved, copied or named by another path is the same corpus; an edited
one is another.

    corpus_content(resolve_corpus("w/corpus"))     # "sha256:..." of its files' bytes in reading order

The digest is sha256 over the text field and each file's length and bytes, in the order the corpus reads
its files (its split depends on that order, not on the files' names). Reading a large corpus takes a
while, so each digest is kept in distillscale's cache under the corpus's path fingerprint (its files'
paths, sizes and modification times, `Corpus.fingerprint`): a file edited since is read again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from distillscale.data.config import cache_directory
from distillscale.data.sources import Corpus
from distillscale.errors import UserError
from distillscale.io import atomic_write_text

PREFIX = "sha256:"
CHUNK = 1 << 20


def corpus_content(corpus: Corpus, cache_dir: str | Path | None = None) -> str:
    """The content digest of `corpus` (see the module), from the cache where it was computed before."""
    kept = cache_directory(cache_dir) / "content" / corpus.fingerprint()
    try:
        text = kept.read_text(encoding="utf-8").strip()
        if text.startswith(PREFIX):
            return text
    except OSError:
        pass
    digest = hashlib.sha256(f"text_field\0{corpus.text_field}\0".encode())
    for path in corpus.files:
        try:
            digest.update(f"\0{path.stat().st_size}\0".encode())
            with path.open("rb") as handle:
                while block := handle.read(CHUNK):
                    digest.update(block)
        except OSError as exc:
            raise UserError(f"cannot read {path} ({exc.strerror or exc}): make it readable, or leave it out of "
                            "the corpus") from None
    value = PREFIX + digest.hexdigest()
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(kept, value + "\n")
    except OSError:   # a read-only cache: computed again next time
        pass
    return value
