"""How a corpus is cut into the val / teacher / student splits, and what each split is made of.

A long document would weigh as much as many short ones in whichever split it lands in (one file can be
most of a training half), so documents are first cut into pieces (`cut_document`). Where a piece ends is
decided by the document's own text, never by the corpus's size: after a line (or, in a line too long
for one piece, a word) that its own crc32 marks (with a probability of its length / MEAN_CUT_BYTES, so
that pieces are about as long whatever the lines), once the piece holds MIN_PIECE_BYTES, and before it
would pass MAX_PIECE_BYTES. Each piece's split is then a function of its own text (its salted hash),
`val_fraction` and nothing else (`assign_splits`): validation takes the pieces whose hash falls in the
lowest `val_fraction` of the hash range, the others go to the teacher or student half by another bit of
the hash. So a corpus that shares text with another (a copy with a file added or removed, a line
appended or edited, v2 = v1 plus new shards, a subset, a prefix under --max-bytes) cuts the shared text
into the same pieces and puts each in the same split: the one corpus's training text is never the
other's validation text. A smaller `val_fraction` takes a subset of a larger one's validation pieces.
Identical pieces share a hash and so a split: duplicates never leak across splits. The splits' sizes are
those fractions in expectation, about sqrt(pieces) apart from them (a small corpus's halves differ by a
few pieces).

In a split's token file the pieces keep the corpus order; consecutive pieces of one document that land in
the same split are joined as they were, and the end-of-text token closes each such run (so a document
whose pieces all land in one split reads exactly as before).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from distillscale.errors import UserError

SPLITS = ("val", "teacher", "student")
MIN_PIECE_BYTES = 128      # a piece ends only once it holds this much text (a few lines)
MEAN_CUT_BYTES = 512       # beyond that, each line ends the piece with probability len(line) / this
MAX_PIECE_BYTES = 2048     # and a piece never holds more (a longer line is cut between its words)
HASH_RANGE = 2 ** 64
DOMINANT_SHARE = 0.5  # warn when one document is more than this share of a split's tokens ...
PIECES_FOR_SHARES = 20   # ... of this many pieces at least (fewer: a small corpus's chance, not a document)
HALVES_TOLERANCE = 0.03  # warn when the training halves differ by more than this share of the larger ...
HALVES_SIGMAS = 4        # ... and by more than this many standard deviations of a split by hashes
_WORDS = re.compile(rb"[^ ]* *")


def _units(encoded: bytes) -> list[bytes]:
    """`encoded` as the units a piece is made of: its lines (each with its line end), a line longer
    than MAX_PIECE_BYTES as its words (each with the spaces after it), a word longer than that in
    chunks of at most MAX_PIECE_BYTES cut on character boundaries."""
    lines = encoded.splitlines(keepends=True)
    if max(map(len, lines), default=0) <= MAX_PIECE_BYTES:
        return lines
    units = []
    for line in lines:
        if len(line) <= MAX_PIECE_BYTES:
            units.append(line)
            continue
        for word in _WORDS.findall(line):
            while len(word) > MAX_PIECE_BYTES:
                cut = MAX_PIECE_BYTES
                while cut > 1 and (word[cut] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
                    cut -= 1
                units.append(word[:cut])
                word = word[cut:]
            if word:
                units.append(word)
    return units


def cut_document(encoded: bytes) -> list[bytes]:
    """`encoded` (UTF-8) cut into pieces of at most MAX_PIECE_BYTES where its own text says (see the
    module): text shared with another document is cut alike wherever it lies, and an edit moves only
    the cuts around it."""
    units = _units(encoded)
    lengths = list(map(len, units))
    marks = [crc * MEAN_CUT_BYTES < length << 32 for crc, length in zip(map(zlib.crc32, units), lengths)]
    pieces, start, size = [], 0, 0
    for index, length in enumerate(lengths):
        if size and size + length > MAX_PIECE_BYTES:
            pieces.append(b"".join(units[start:index]))
            start, size = index, 0
        size += length
        if size >= MIN_PIECE_BYTES and marks[index]:
            pieces.append(b"".join(units[start:index + 1]))
            start, size = index + 1, 0
    if start < len(units):
        pieces.append(b"".join(units[start:]))
    return pieces or [encoded]


def piece_rule() -> dict:
    """Where pieces end, as a manifest records it."""
    return {"min_bytes": MIN_PIECE_BYTES, "mean_cut_bytes": MEAN_CUT_BYTES, "max_bytes": MAX_PIECE_BYTES,
            "cut": "after a line (a word, in a line over max_bytes) once the piece holds min_bytes, where "
                   "crc32(unit) * mean_cut_bytes < len(unit) * 2**32; before the piece would pass max_bytes"}


def piece_hash(encoded: bytes, seed: int) -> int:
    """64-bit hash of a piece's UTF-8 text, salted by the split seed."""
    digest = hashlib.blake2b(encoded, digest_size=8, key=seed.to_bytes(8, "little"))
    return int.from_bytes(digest.digest(), "little")


def val_threshold(val_fraction: float) -> int:
    """The hashes below this go to validation: the lowest `val_fraction` of the hash range."""
    return min(HASH_RANGE - 1, int(round(val_fraction * HASH_RANGE)))


def assign_splits(hashes: np.ndarray, tokens: np.ndarray, val_fraction: float) -> np.ndarray:
    """Split of every piece: 0 = val, 1 = teacher, 2 = student, each a function of the piece's own hash
    (see the module): val below `val_threshold`, else the teacher's half where the hash is even. Only a
    corpus too small for that to fill every split (no hash in val's range, or none in one half) moves
    its extreme pieces there: the lowest hash to val, the highest of the fuller half to the empty one.
    Identical pieces share a hash and so a split. Integer arithmetic: the same split on every CPU."""
    distinct, which = np.unique(hashes, return_inverse=True)
    if len(distinct) < len(SPLITS):
        raise UserError(f"the corpus has {len(distinct)} distinct pieces of text, too few for the val, teacher "
                        "and student splits: give a larger corpus (or a larger max_bytes)")
    split = np.where(distinct < np.uint64(val_threshold(val_fraction)), 0,
                     1 + (distinct & np.uint64(1)).astype(np.int64)).astype(np.int8)
    if not (split == 0).any():
        split[0] = 0   # the lowest hash
    for half, other in ((1, 2), (2, 1)):
        if not (split == half).any():
            split[np.flatnonzero(split == other)[-1]] = half
    return split[which]


def run_ends(assignment: np.ndarray, last_of_document: np.ndarray) -> np.ndarray:
    """Whether the end-of-text token follows each piece: at a document's end, or where its next piece
    goes to another split."""
    ends = last_of_document.copy()
    ends[:-1] |= assignment[1:] != assignment[:-1]
    ends[-1] = True
    return ends


@dataclass(frozen=True)
class SplitComposition:
    """What one split is made of (in `manifest.json`'s `splits`)."""

    documents: int  # documents with at least one piece here
    pieces: int
    tokens: int  # end-of-text tokens included
    largest_piece_share: float  # of the split's tokens
    largest_document_share: float  # all of one document's pieces here, of the split's tokens
    spread: float = 0.0  # sqrt of the sum of its pieces' squared tokens: how far chance moves its size

    def record(self) -> dict:
        return asdict(self)


def compositions(assignment: np.ndarray, piece_tokens: np.ndarray, document_of_piece: np.ndarray,
                 ends: np.ndarray) -> dict[str, SplitComposition]:
    """Each split's composition; `piece_tokens` without end-of-text, which `ends` adds."""
    written = piece_tokens.astype(np.int64) + ends
    made = {}
    for index, name in enumerate(SPLITS):
        mine = assignment == index
        tokens = int(written[mine].sum())
        documents = np.unique(document_of_piece[mine])
        per_document = np.bincount(document_of_piece[mine], weights=written[mine])
        made[name] = SplitComposition(
            documents=len(documents), pieces=int(mine.sum()), tokens=tokens,
            largest_piece_share=float(written[mine].max()) / tokens if tokens else 0.0,
            largest_document_share=float(per_document.max()) / tokens if tokens else 0.0,
            spread=float(np.sqrt(np.square(written[mine], dtype=np.float64).sum())))
    return made


def composition_warning(made: dict[str, SplitComposition], documents: int) -> str | None:
    """One line when one of the corpus's `documents` is most of a split, or the training halves differ by
    more than a few percent and more than a split by hashes differs by chance (HALVES_SIGMAS standard
    deviations of its pieces: copies of a text all land in one half), so that comparisons across them
    would measure the split; None when the
    splits look fair. A split of a few pieces (a small corpus's validation split) is not judged by its
    documents: which pieces land in it is chance. A corpus of one document (a book given as one file) is that document by choice."""
    teacher, student = made["teacher"].tokens, made["student"].tokens
    chance = HALVES_SIGMAS * (made["teacher"].spread ** 2 + made["student"].spread ** 2) ** 0.5
    if max(teacher, student) and abs(teacher - student) > max(HALVES_TOLERANCE * max(teacher, student), chance):
        return (f"the training halves differ: teacher {teacher:,} tokens, student {student:,} (repeated text is "
                f"kept in one split): a student-vs-teacher comparison measures the split too; remove the copies "
                f"or split with another seed (data prepare --seed)")
    counted = {name: split for name, split in made.items() if split.pieces >= PIECES_FOR_SHARES}
    if not counted:
        return None
    name, dominant = max(counted.items(), key=lambda item: item[1].largest_document_share)
    if documents > 1 and dominant.largest_document_share > DOMINANT_SHARE:
        return (f"one document is {dominant.largest_document_share:.0%} of the {name} split's tokens: losses "
                f"on this corpus measure mostly that document; add other text or leave it out")
    return None
