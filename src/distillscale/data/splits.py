"""How a corpus is cut into the val / teacher / student splits, and what each split is made of.

A document (a text file, a JSONL line, a parquet or dataset row) is the unit a split places: it goes whole
into one split, so a model trains on whole documents and is scored on documents it never read a line of.
Only a document longer than SEGMENT_MIN_BYTES (64 KiB: a book, a large module) may be cut, into segments of
at least that size, and only where its own text says (`cut_segments`): after a line whose own crc32 marks it
(with a probability of its length / SEGMENT_MEAN_EXTRA_BYTES), once the segment holds SEGMENT_MIN_BYTES,
and before it would pass SEGMENT_MAX_BYTES. Each segment is then placed whole, like a document.

Where a document (or segment) goes follows from what it shares, never from the corpus around it
(`placement`): its lines (a line longer than UNIT_MAX_BYTES is cut into chunks where a rolling hash of its
own bytes says, `units`) are hashed with the split's salt, whitespace at their ends aside; the line of least
hash among those with at least ANCHOR_MIN_BYTES of text is the document's anchor, and a second, independent
salted hash of the anchor decides the split: validation if it falls in the lowest `val_fraction` of the
hash range, else the teacher or the student half by its parity (`assign_splits`). So a copy of the document,
the same document in a superset or a subset of the corpus, or read as a prefix under --max-bytes lands where
it was, and an edit moves it only when it touches the anchor line (or adds a line of lower hash): about two
lines in every hundred of a document. Identical documents share a split; a smaller `val_fraction` takes a
subset of a larger one's validation documents. The split's sizes are the fractions in expectation, about
sqrt(sum of squared sizes) apart from them.

Each document also keeps a sketch of itself: the SKETCH_SIZE least line hashes (`placement`), by which a
reader of an edited copy of a run's corpus can count the run's training documents that moved into its
validation split (`shared_documents`).

In a split's token file the documents keep the corpus order; consecutive segments of one document that land
in the same split are joined as they were, and the end-of-text token closes each document, or each run of
its segments (`run_ends`): never inside a segment.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from distillscale.errors import UserError

SPLITS = ("val", "teacher", "student")
SEGMENT_MIN_BYTES = 64 << 10         # a document up to this size is always one unit; longer ones are cut
SEGMENT_MEAN_EXTRA_BYTES = 64 << 10  # beyond it, each line ends the segment with probability len(line) / this
SEGMENT_MAX_BYTES = 256 << 10        # and a segment never holds more
UNIT_MAX_BYTES = 2048      # a longer line is cut into chunks where a rolling hash of its bytes says ...
CHUNK_MIN_BYTES = 64       # ... once the chunk holds this much,
CHUNK_MASK = 511           # ... where the hash's 9 bits are 0 (a chunk of about 512 bytes past the minimum)
ROLLING_WINDOW = 32        # bytes the rolling hash reads
ANCHOR_MIN_BYTES = 16      # a line anchors its document only with this much text (a "}" or "else:" is common)
SKETCH_SIZE = 8            # line hashes a document keeps to be known by
SKETCH_EMPTY = np.uint64(2 ** 64 - 1)
HASH_RANGE = 2 ** 64
DOMINANT_SHARE = 0.5  # warn when one document is more than this share of a split's tokens ...
UNITS_FOR_SHARES = {"val": 20, "teacher": 5, "student": 5}  # ... of this many units at least (fewer: which
# documents a small split holds is chance; a small validation split of a few documents is always most one)
HALVES_TOLERANCE = 0.03  # warn when the training halves differ by more than this share of the larger ...
HALVES_SIGMAS = 4        # ... and by more than this many standard deviations of a split by hashes.
# Also noted, whatever chance allows: halves more than HALVES_NOTED apart behind which a family of documents
# sharing their anchor line (placed together) is GROUP_NOTED of a half or more, the cause named (a small
# corpus of independent documents is uneven by chance alone, and is not noted).
HALVES_NOTED = 0.10
GROUP_NOTED = 0.10

# The rolling hash's table: a fixed 64-bit value per byte, the same on every machine.
_GEAR = np.array([int.from_bytes(hashlib.blake2b(bytes([byte]), digest_size=8, person=b"gear").digest(), "little")
                  for byte in range(256)], dtype=np.uint64)


def _chunks(line: bytes) -> list[bytes]:
    """A line longer than UNIT_MAX_BYTES cut where its own bytes say: after a byte where the rolling hash of
    the ROLLING_WINDOW bytes ending there has its CHUNK_MASK bits 0, once the chunk holds CHUNK_MIN_BYTES,
    and before it would pass UNIT_MAX_BYTES; never inside a UTF-8 sequence. The hash reads only the window,
    so an inserted character moves the cuts within a window of it, no further."""
    raw = np.frombuffer(line, dtype=np.uint8)
    gear = _GEAR[raw]
    rolled = gear.copy()
    for shift in range(1, ROLLING_WINDOW):
        rolled[shift:] += gear[:-shift] << np.uint64(shift)
    starts_character = np.append((raw[1:] & 0xC0) != 0x80, True)   # a cut after byte i leaves i + 1 a start
    marked = np.flatnonzero(((rolled >> np.uint64(40)) & np.uint64(CHUNK_MASK)) == 0) + 1
    marked = marked[starts_character[marked - 1]]
    chunks, start = [], 0
    while len(line) - start > UNIT_MAX_BYTES:
        index = np.searchsorted(marked, start + CHUNK_MIN_BYTES)
        if index < len(marked) and marked[index] - start <= UNIT_MAX_BYTES:
            cut = int(marked[index])
        else:
            cut = start + UNIT_MAX_BYTES
            while cut > start + 1 and (line[cut] & 0xC0) == 0x80:
                cut -= 1
        chunks.append(line[start:cut])
        start = cut
    chunks.append(line[start:])
    return chunks


def units(encoded: bytes) -> list[bytes]:
    """`encoded` (UTF-8) as the units its hashes and cuts are made of: its lines, each with its line end,
    and a line longer than UNIT_MAX_BYTES (minified JSON, base64, a paragraph of CJK) in `_chunks`."""
    lines = encoded.splitlines(keepends=True)
    if max(map(len, lines), default=0) <= UNIT_MAX_BYTES:
        return lines
    return [chunk for line in lines for chunk in (_chunks(line) if len(line) > UNIT_MAX_BYTES else (line,))]


def cut_segments(encoded: bytes) -> list[list[bytes]]:
    """`encoded` (a whole document) as segments, each a list of its units (see the module): one segment
    for a document up to SEGMENT_MIN_BYTES; a longer one cut where its own text says, so that the same text
    is cut alike wherever it lies and an edit moves only the cuts around it."""
    made = units(encoded)
    if len(encoded) <= SEGMENT_MIN_BYTES:
        return [made]
    segments, start, size = [], 0, 0
    for index, unit in enumerate(made):
        if size and size + len(unit) > SEGMENT_MAX_BYTES:
            segments.append(made[start:index])
            start, size = index, 0
        size += len(unit)
        if size >= SEGMENT_MIN_BYTES and zlib.crc32(unit) * SEGMENT_MEAN_EXTRA_BYTES < len(unit) << 32:
            segments.append(made[start:index + 1])
            start, size = index + 1, 0
    if start < len(made):
        segments.append(made[start:])
    return segments or [made]


def line_hash(key: bytes, seed: int) -> int:
    """The salted 64-bit hash a line (whitespace at its ends stripped) is known by: which line anchors a
    document, and its sketch."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, key=seed.to_bytes(8, "little"),
                                          person=b"anchor").digest(), "little")


def split_hash(key: bytes, seed: int) -> int:
    """The salted 64-bit hash of an anchor that decides its document's split: independent of `line_hash`,
    so the split is as likely for a long document as for a short one."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, key=seed.to_bytes(8, "little"),
                                          person=b"split").digest(), "little")


@dataclass(frozen=True)
class DocumentPlacement:
    """Where a unit of placement (a document, or a segment of a long one) goes and what it is known by:
    `split_hash`, the hash of its anchor (`assign_splits` reads it), and `sketch`, its SKETCH_SIZE least
    line hashes (SKETCH_EMPTY where it has fewer lines)."""

    split_hash: int
    sketch: tuple[int, ...]


def placement(pieces: list[bytes], seed: int) -> DocumentPlacement:
    """The `DocumentPlacement` of a document or segment made of `pieces` (its units): anchored at the line of least
    `line_hash` among those with ANCHOR_MIN_BYTES of text (whitespace at the ends aside), else among its
    non-blank lines, else its whole text."""
    keys = {unit.strip() for unit in pieces}
    candidates = [key for key in keys if len(key) >= ANCHOR_MIN_BYTES] or [key for key in keys if key]
    if not candidates:
        candidates = [b"".join(pieces)]
    hashes = sorted((line_hash(key, seed), key) for key in candidates)
    sketch = tuple(value for value, _ in hashes[:SKETCH_SIZE])
    return DocumentPlacement(split_hash(hashes[0][1], seed), sketch + (int(SKETCH_EMPTY),) * (SKETCH_SIZE - len(sketch)))


def unit_rule() -> dict:
    """What a split places and how, as a manifest records it."""
    return {"unit": "a document (a file, a JSONL line, a parquet or dataset row), whole; a document over "
                    "segment_min_bytes is cut into segments after a line where crc32(line) * segment_mean_extra_bytes "
                    "< len(line) * 2**32, once the segment holds segment_min_bytes, before it passes segment_max_bytes",
            "segment_min_bytes": SEGMENT_MIN_BYTES, "segment_mean_extra_bytes": SEGMENT_MEAN_EXTRA_BYTES,
            "segment_max_bytes": SEGMENT_MAX_BYTES,
            "lines": f"a line over {UNIT_MAX_BYTES} bytes is cut where a rolling hash of its last {ROLLING_WINDOW} "
                     f"bytes has {CHUNK_MASK.bit_length()} bits 0, into chunks of {CHUNK_MIN_BYTES} to "
                     f"{UNIT_MAX_BYTES} bytes",
            "anchor": f"the line of least salted blake2b hash (ends stripped) among lines of {ANCHOR_MIN_BYTES} "
                      "bytes or more; its second salted hash decides the split",
            "sketch_size": SKETCH_SIZE}


def val_threshold(val_fraction: float) -> int:
    """The hashes below this go to validation: the lowest `val_fraction` of the hash range."""
    return min(HASH_RANGE - 1, int(round(val_fraction * HASH_RANGE)))


def assign_splits(hashes: np.ndarray, val_fraction: float) -> np.ndarray:
    """Split of every unit from its `split_hash`: 0 = val, 1 = teacher, 2 = student, each a function of the
    unit's own hash (see the module): val below `val_threshold`, else the teacher's half where the hash is
    even. Only a corpus too small for that to fill every split moves units into an empty split, from the
    split holding the most (the lowest hash into val, the highest of the donor into a half). Units of one
    hash share a split. Integer arithmetic: the same split on every CPU."""
    distinct, which = np.unique(hashes, return_inverse=True)
    if len(distinct) < len(SPLITS):
        raise UserError(f"the corpus has {len(distinct)} distinct document{'s' if len(distinct) != 1 else ''}, too "
                        "few for the val, teacher and student splits, which each take whole documents: give a "
                        "corpus of 3 documents or more (a file each, or a JSONL line each)")
    split = np.where(distinct < np.uint64(val_threshold(val_fraction)), 0,
                     1 + (distinct & np.uint64(1)).astype(np.int64)).astype(np.int8)
    for target in range(len(SPLITS)):
        if (split == target).any():
            continue
        counts = np.bincount(split, minlength=len(SPLITS))
        donor = int(np.argmax(counts))   # it holds 2 or more: 3 or more units in at most two splits
        members = np.flatnonzero(split == donor)
        split[members[0] if target == 0 else members[-1]] = target
    return split[which]


def run_ends(assignment: np.ndarray, last_of_document: np.ndarray) -> np.ndarray:
    """Whether the end-of-text token follows each unit: at a document's end, or where its next segment
    goes to another split."""
    ends = last_of_document.copy()
    ends[:-1] |= assignment[1:] != assignment[:-1]
    ends[-1] = True
    return ends


def shared_documents(reader_sketches: np.ndarray, run_sketches: np.ndarray) -> np.ndarray:
    """For each of the reader's units (a row of SKETCH_SIZE line hashes), whether a unit of the run's
    (`run_sketches`) is the same document, edited or not: they share at least half of the smaller one's
    least line hashes (unrelated documents that share a common line or two share fewer). Both salted with
    one seed."""
    owners: dict[int, list[int]] = {}
    for row, sketch in enumerate(run_sketches.tolist()):
        for value in sketch:
            if value != int(SKETCH_EMPTY):
                owners.setdefault(value, []).append(row)
    filled = (run_sketches != SKETCH_EMPTY).sum(axis=1)
    found = np.zeros(len(reader_sketches), dtype=bool)
    for index, sketch in enumerate(reader_sketches.tolist()):
        mine = [value for value in sketch if value != int(SKETCH_EMPTY)]
        shared: dict[int, int] = {}
        for value in mine:
            for row in owners.get(value, ()):
                shared[row] = shared.get(row, 0) + 1
        found[index] = any(2 * count >= min(len(mine), int(filled[row])) for row, count in shared.items())
    return found


@dataclass(frozen=True)
class SplitComposition:
    """What one split is made of (in `manifest.json`'s `splits`)."""

    documents: int  # documents with at least one unit here
    units: int      # what the split placed: whole documents, and segments of long ones
    tokens: int  # end-of-text tokens included
    largest_unit_share: float  # of the split's tokens
    largest_document_share: float  # all of one document's units here, of the split's tokens
    spread: float = 0.0  # sqrt of the sum of its units' squared tokens (copies as one): how far chance moves its size
    largest_group_share: float = 0.0  # the largest group of units that share an anchor (copies, a family of
    #                                   similar documents), of the split's tokens: they move together

    def record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, recorded: dict) -> "SplitComposition":
        """A composition as a manifest or a run record keeps it; an earlier version's, whose split placed
        pieces of documents (`pieces`, `largest_piece_share`), read as those units."""
        renamed = {"pieces": "units", "largest_piece_share": "largest_unit_share"}
        return cls(**{renamed.get(key, key): value for key, value in recorded.items()
                      if renamed.get(key, key) in cls.__dataclass_fields__})


def compositions(assignment: np.ndarray, unit_tokens: np.ndarray, document_of_unit: np.ndarray,
                 ends: np.ndarray, hashes: np.ndarray) -> dict[str, SplitComposition]:
    """Each split's composition; `unit_tokens` without end-of-text, which `ends` adds. Units of one split
    hash (copies, near-copies anchored alike) move together: the spread counts each such group as one."""
    written = unit_tokens.astype(np.int64) + ends
    _, group = np.unique(hashes, return_inverse=True)
    made = {}
    for index, name in enumerate(SPLITS):
        mine = assignment == index
        tokens = int(written[mine].sum())
        documents = np.unique(document_of_unit[mine])
        per_document = np.bincount(document_of_unit[mine], weights=written[mine])
        per_group = np.bincount(group[mine], weights=written[mine])
        made[name] = SplitComposition(
            documents=len(documents), units=int(mine.sum()), tokens=tokens,
            largest_unit_share=float(written[mine].max()) / tokens if tokens else 0.0,
            largest_document_share=float(per_document.max()) / tokens if tokens else 0.0,
            spread=float(np.sqrt(np.square(per_group, dtype=np.float64).sum())),
            largest_group_share=float(per_group.max()) / tokens if tokens else 0.0)
    return made


def composition_warning(made: dict[str, SplitComposition], documents: int) -> str | None:
    """One line when one of the corpus's `documents` is most of a split, or the training halves differ by
    more than a few percent and more than a split by hashes differs by chance (HALVES_SIGMAS standard
    deviations of its units: copies of a text all land in one half), so that comparisons across them
    would measure the split; and when the halves differ by more than HALVES_NOTED whatever chance allows
    while a family of documents sharing their anchor line (placed whole, together; more than its largest
    document) is GROUP_NOTED of a half or more; None when the splits look fair. A split of a few units
    (a small corpus's validation split) is not judged by its documents (UNITS_FOR_SHARES): which land in
    it is chance. A corpus of one document (a book given as one file) is that document by choice."""
    teacher, student = made["teacher"].tokens, made["student"].tokens
    chance = HALVES_SIGMAS * (made["teacher"].spread ** 2 + made["student"].spread ** 2) ** 0.5
    apart, larger_half = abs(teacher - student), max(teacher, student)
    if larger_half and apart > max(HALVES_TOLERANCE * larger_half, chance):
        return (f"the training halves differ: teacher {teacher:,} tokens, student {student:,} (repeated text is "
                f"kept in one split): a student-vs-teacher comparison measures the split too; remove the copies "
                f"or split with another seed (data prepare --seed)")
    counted = {name: split for name, split in made.items() if split.units >= UNITS_FOR_SHARES[name]}
    if counted:
        name, dominant = max(counted.items(), key=lambda item: item[1].largest_document_share)
        if documents > 1 and dominant.largest_document_share > DOMINANT_SHARE:
            return (f"one document is {dominant.largest_document_share:.0%} of the {name} split's tokens: losses "
                    f"on this corpus measure mostly that document; add other text or leave it out")
    name, larger = max(((name, made[name]) for name in ("teacher", "student")),
                       key=lambda item: item[1].largest_group_share)
    family = larger.largest_group_share > larger.largest_document_share   # several documents, not one long one
    if larger_half and apart > HALVES_NOTED * larger_half and larger.largest_group_share >= GROUP_NOTED and family:
        return (f"the training halves differ by {apart / larger_half:.0%}: teacher {teacher:,} tokens, student "
                f"{student:,} (whole documents are placed, and documents that share their anchor line move "
                f"together: the largest such group is {larger.largest_group_share:.0%} of the {name} split): a "
                f"student-vs-teacher comparison measures the split too; split with another seed (data prepare "
                f"--seed) for other halves")
    return None
