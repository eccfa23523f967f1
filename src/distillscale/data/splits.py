"""How a corpus is cut into the val / teacher / student splits, and what each split is made of.

A long document would weigh as much as many short ones in whichever split it lands in (one file can be
most of a training half), so documents are first cut into pieces of at most `piece_bytes(...)`: a
twentieth of the smallest split's share of the text, at a line end where there is one (else at a space,
else at a character boundary). Pieces, not documents, are then assigned: validation takes each piece that
still fits in `val_fraction` of the tokens, the rest go to whichever training half holds fewer tokens.
Identical pieces share a hash and so a split: duplicates never leak across splits.

In a split's token file the pieces keep the corpus order; consecutive pieces of one document that land in
the same split are joined as they were, and the end-of-text token closes each such run (so a document
whose pieces all land in one split reads exactly as before).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from distillscale.errors import UserError

SPLITS = ("val", "teacher", "student")
PIECES_PER_SPLIT = 20  # the smallest split holds at least this many pieces' worth of text
MIN_PIECE_BYTES = 16  # never cut finer than this (a few words), however small the corpus
DOMINANT_SHARE = 0.5  # warn when one document is more than this share of a split's tokens
HALVES_TOLERANCE = 0.03  # warn when the training halves differ by more than this share of the larger


def piece_bytes(total_bytes: int, val_fraction: float) -> int:
    """The longest piece of text a document is cut into, for a corpus of `total_bytes`."""
    smallest_split = min(val_fraction, (1.0 - val_fraction) / 2) * total_bytes
    return max(MIN_PIECE_BYTES, int(smallest_split // PIECES_PER_SPLIT))


def cut_document(encoded: bytes, limit: int) -> list[bytes]:
    """`encoded` (UTF-8) cut into pieces of at most `limit` bytes, each piece about the same length:
    after a line end near each cut if there is one, else after a space, else on a character boundary."""
    if len(encoded) <= limit:
        return [encoded]
    count = -(-len(encoded) // limit)
    target = len(encoded) / count
    pieces, start = [], 0
    while len(encoded) - start > limit:
        ideal = start + int(target)
        lowest, highest = start + max(1, int(target) // 2), start + limit
        cut = -1
        for separator in (b"\n", b" "):
            before = encoded.rfind(separator, lowest, ideal)
            after = encoded.find(separator, ideal, highest)
            if before >= 0 or after >= 0:
                cut = 1 + (before if after < 0 or (before >= 0 and ideal - before <= after - ideal) else after)
                break
        if cut < 0:  # one long word: a character boundary (never inside a UTF-8 sequence)
            cut = ideal
            while cut > start + 1 and (encoded[cut] & 0xC0) == 0x80:
                cut -= 1
        pieces.append(encoded[start:cut])
        start = cut
    pieces.append(encoded[start:])
    return pieces


def piece_hash(encoded: bytes, seed: int) -> int:
    """64-bit hash of a piece's UTF-8 text, salted by the split seed."""
    digest = hashlib.blake2b(encoded, digest_size=8, key=seed.to_bytes(8, "little"))
    return int.from_bytes(digest.digest(), "little")


def assign_splits(hashes: np.ndarray, tokens: np.ndarray, val_fraction: float) -> np.ndarray:
    """Split of every piece: 0 = val, 1 = teacher, 2 = student.

    Distinct pieces are visited in order of their (salted) hash. Validation takes each one that still fits
    in `val_fraction` of the tokens (at least the smallest piece); every other one goes to whichever
    training half holds fewer tokens, so the halves differ by at most one piece (with its copies).
    Identical pieces share a hash and so a split. Integer arithmetic: the same split on every CPU.
    """
    distinct, which = np.unique(hashes, return_inverse=True)
    if len(distinct) < len(SPLITS):
        raise UserError(f"the corpus has {len(distinct)} distinct pieces of text, too few for the val, teacher "
                        "and student splits: give a larger corpus (or a larger max_bytes)")
    sizes = np.bincount(which, weights=tokens, minlength=len(distinct)).astype(np.int64)
    val_budget = int(val_fraction * int(sizes.sum()))
    split = np.full(len(distinct), -1, dtype=np.int8)
    val_tokens = 0
    for index, size in enumerate(sizes.tolist()):
        if val_tokens + size <= val_budget:
            split[index] = 0
            val_tokens += size
    if val_tokens == 0:
        split[np.argmin(sizes)] = 0
    half_tokens, half_pieces = [0, 0], [0, 0]  # pieces break ties: no half is left empty by pieces of 0 tokens
    for index in np.flatnonzero(split < 0).tolist():
        half = 0 if (half_tokens[0], half_pieces[0]) <= (half_tokens[1], half_pieces[1]) else 1
        split[index] = 1 + half
        half_tokens[half] += int(sizes[index])
        half_pieces[half] += 1
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
            largest_document_share=float(per_document.max()) / tokens if tokens else 0.0)
    return made


def composition_warning(made: dict[str, SplitComposition], documents: int) -> str | None:
    """One line when one of the corpus's `documents` is most of a split, or the training halves differ by
    more than a few percent (so that comparisons across them would measure the split); None when the
    splits look fair. A corpus of one document (a book given as one file) is that document by choice."""
    teacher, student = made["teacher"].tokens, made["student"].tokens
    if max(teacher, student) and abs(teacher - student) > HALVES_TOLERANCE * max(teacher, student):
        return (f"the training halves differ: teacher {teacher:,} tokens, student {student:,} (repeated text is "
                f"kept in one split): a student-vs-teacher comparison measures the split too; remove the copies "
                f"or split with another seed (data prepare --seed)")
    name, dominant = max(made.items(), key=lambda item: item[1].largest_document_share)
    if documents > 1 and dominant.largest_document_share > DOMINANT_SHARE:
        return (f"one document is {dominant.largest_document_share:.0%} of the {name} split's tokens: losses "
                f"on this corpus measure mostly that document; add other text or leave it out")
    return None
