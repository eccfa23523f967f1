"""What a split places, measured on a corpus: documents kept whole, the training fragments' lengths, the
validation text's documents, and how many documents an edited copy of the corpus moves.

For a corpus (default: this interpreter's standard library; `builtin:python-env --max-bytes 100MB` for the
larger one) it reads the documents as `data prepare` does, places them (`data.splits`: no tokenising) and
prints, for one seed and --val-fraction 0.05:

- documents, units placed (documents plus the segments of those over the bound), documents in segments;
- training fragments (the runs between end-of-text tokens of the teacher and student halves): count,
  median and mean bytes, and the share of their bytes in fragments of 4 KB or more;
- the share of the validation bytes from documents that also have text in the teacher's half (only
  documents over the bound can: their segments are placed one by one);
- an edited copy, one line rewritten in every document (its words shuffled, one replaced): the share of
  its validation documents that were documents of the teacher's half, pooled over `--seeds` seeds;
- the split's share of bytes against its fraction, over those seeds, in standard deviations of a split of
  whole documents (copies as one); how far apart the training halves lie, and the largest group of
  documents that share an anchor line (they move together).

Usage:
    python bench/speed/split_documents.py [--data PATH] [--max-bytes 100MB] [--seeds 8]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from distillscale.data.sources import ReadStats, resolve_corpus  # noqa: E402
from distillscale.data.splits import (SEGMENT_MIN_BYTES, assign_splits, cut_segments, placement,  # noqa: E402
                                      run_ends)
from distillscale.units import parse_bytes  # noqa: E402

VAL_FRACTION = 0.05


def edited(text: bytes, rng: random.Random) -> bytes:
    """One line of `text` rewritten: its words shuffled and the first replaced."""
    lines = text.split(b"\n")
    index = rng.randrange(max(1, len(lines) - 1))
    words = lines[index].split() or [b"x"]
    rng.shuffle(words)
    words[0] = b"edited"
    lines[index] = b" ".join(words)
    return b"\n".join(lines)


def place(documents: list[bytes], seed: int):
    """(split hash per unit, unit bytes, document index per unit, whether each unit ends its document)."""
    hashes, sizes, owners, last = [], [], [], []
    for index, text in enumerate(documents):
        segments = cut_segments(text)
        for number, segment in enumerate(segments):
            hashes.append(placement(segment, seed).split_hash)
            sizes.append(sum(map(len, segment)))
            owners.append(index)
            last.append(number == len(segments) - 1)
    return (np.array(hashes, dtype=np.uint64), np.array(sizes, dtype=np.int64), np.array(owners),
            np.array(last, dtype=bool))


def numbered(owners: np.ndarray) -> list[tuple[int, int]]:
    """Each unit as (its document, its number in the document)."""
    seen: dict[int, int] = {}
    keys = []
    for owner in owners.tolist():
        keys.append((owner, seen.get(owner, 0)))
        seen[owner] = keys[-1][1] + 1
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a corpus (default: the standard library)")
    parser.add_argument("--max-bytes", default=None, help="read at most this much text, e.g. 100MB")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    limit = None if args.max_bytes is None else int(parse_bytes(args.max_bytes, "--max-bytes"))
    corpus = resolve_corpus(args.data)
    documents = [text.encode() for text in corpus.documents(limit, ReadStats())]
    started = time.perf_counter()
    hashes, sizes, owners, last = place(documents, seed=0)
    seconds = time.perf_counter() - started
    split = assign_splits(hashes, VAL_FRACTION)
    ends = run_ends(split, last)
    total = sizes.sum()
    print(f"{corpus.describe()}: {len(documents):,} documents, {total / 1e6:,.1f} MB; placed in {seconds:.1f} s "
          f"({total / 1e6 / seconds:,.0f} MB/s, one core)")
    over = sum(len(text) > SEGMENT_MIN_BYTES for text in documents)
    print(f"units placed {len(hashes):,}; documents over {SEGMENT_MIN_BYTES:,} bytes (in segments) {over:,} "
          f"holding {sum(len(t) for t in documents if len(t) > SEGMENT_MIN_BYTES) / total:.1%} of the bytes")
    fragments, current = [], 0
    for index in range(len(hashes)):
        if split[index] > 0:
            current += sizes[index]
        if ends[index] and split[index] > 0:
            fragments.append(current)
        if ends[index]:
            current = 0
    fragments = np.array(fragments)
    print(f"training fragments {len(fragments):,}: median {np.median(fragments):,.0f} bytes, mean "
          f"{fragments.mean():,.0f}; {fragments[fragments >= 4096].sum() / fragments.sum():.1%} of their bytes in "
          "fragments of 4 KB or more")
    teacher_documents = set(owners[split == 1].tolist())
    val = split == 0
    shared = sum(size for size, owner in zip(sizes[val], owners[val]) if owner in teacher_documents)
    print(f"validation: {val.sum():,} units of {len(set(owners[val].tolist())):,} documents; "
          f"{shared / max(sizes[val].sum(), 1):.2%} of its bytes from documents with text in the teacher's half")
    moved = in_val = 0
    deviations, apart, groups = [], [], []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        before, before_sizes, before_owners, _ = place(documents, seed)
        after_hashes, _, after_owners, _ = place([edited(text, rng) for text in documents], seed)
        first = assign_splits(before, VAL_FRACTION)
        second = assign_splits(after_hashes, VAL_FRACTION)
        was = dict(zip(numbered(before_owners), first.tolist()))
        for unit, where in zip(numbered(after_owners), second.tolist()):
            if where == 0:
                in_val += 1
                moved += was.get(unit) == 1
        _, group = np.unique(before, return_inverse=True)
        grouped = np.bincount(group, weights=before_sizes)
        halves = before_sizes[first == 1].sum(), before_sizes[first == 2].sum()
        apart.append(abs(halves[0] - halves[1]) / max(halves))
        groups.append(grouped.max() / total)
        for index, share in enumerate((VAL_FRACTION, (1 - VAL_FRACTION) / 2, (1 - VAL_FRACTION) / 2)):
            deviations.append((before_sizes[first == index].sum() - share * total)
                              / np.sqrt(share * (1 - share) * np.square(grouped).sum()))
    print(f"one line edited in every document, {args.seeds} seeds: {moved} of {in_val} validation documents "
          f"({moved / max(in_val, 1):.2%}) were documents of the teacher's half")
    deviations = np.abs(deviations)
    print(f"split sizes against their fractions over {args.seeds} seeds: median {np.median(deviations):.2f}, "
          f"max {deviations.max():.2f} standard deviations of a split of whole documents (copies as one)")
    print(f"training halves apart: median {np.median(apart):.1%}, max {max(apart):.1%} of the larger; the largest "
          f"group of documents sharing an anchor: median {np.median(groups):.1%}, max {max(groups):.1%} of the bytes")


if __name__ == "__main__":
    main()
