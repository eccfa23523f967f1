"""What a corpus is by its content, whatever path names it: the digest its prepared manifest and every
run record (`training.records.RunCorpus`) keep, and what the teacher's-split rule compares
(`data.trained_split`): a corpus moved, copied or named by another path is the same corpus; an edited
one is another.

    corpus_content(resolve_corpus("w/corpus"))     # "sha256:..." of its files' contents in reading order

The digest is sha256 over the text field and each file's size and content digest, in the order the
corpus reads its files (its split depends on that order, not on the files' names). Each file's digest is
computed once per state of the file and kept (`data.file_digest`): asking again costs a stat. A corpus read
up to `max_bytes` is known by what is read, no more: sha256 over the text field and the text of each
document read (the files beyond are never opened; within a process, asked again, a stat per file).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from distillscale.data.config import cache_directory
from distillscale.data.file_digest import file_digests
from distillscale.data.sources import Corpus, ReadStats
from distillscale.errors import UserError

PREFIX = "sha256:"


def corpus_content(corpus: Corpus, cache_dir: str | Path | None = None, max_bytes: int | None = None) -> str:
    """The content digest of `corpus`, read up to `max_bytes` of text (None: all of it; see the module)."""
    if max_bytes is not None:
        return _read_content(corpus, max_bytes, corpus.fingerprint())
    try:
        digests = file_digests(list(corpus.files), cache_directory(cache_dir), what="the corpus's files")
        sizes = [path.stat().st_size for path in corpus.files]
    except OSError as exc:
        raise UserError(f"cannot read {exc.filename or 'a file of the corpus'} ({exc.strerror or exc}): make it "
                        "readable, or leave it out of the corpus") from None
    digest = hashlib.sha256(f"text_field\0{corpus.text_field}\0".encode())
    for path, size in zip(corpus.files, sizes):
        digest.update(f"\0{size}\0{digests[path]}".encode())
    return PREFIX + digest.hexdigest()


@lru_cache(maxsize=64)
def _read_content(corpus: Corpus, max_bytes: int, state: str) -> str:
    """The digest of the text `corpus` reads up to `max_bytes` (`state`, its files' paths, sizes and times:
    a corpus changed since is read again)."""
    digest = hashlib.sha256(f"text_field\0{corpus.text_field}\0read\0".encode())
    try:
        for text in corpus.documents(max_bytes, ReadStats()):
            encoded = text.encode("utf-8")
            digest.update(f"\0{len(encoded)}\0".encode())
            digest.update(encoded)
    except OSError as exc:
        raise UserError(f"cannot read {exc.filename or 'a file of the corpus'} ({exc.strerror or exc}): make it "
                        "readable, or leave it out of the corpus") from None
    return PREFIX + digest.hexdigest()
