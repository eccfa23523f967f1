"""A document is the unit a split places (data.splits): it lies whole in one split, decided by what it
shares (its anchor line), so a model trains on whole documents and is scored on documents it never read a
line of; an edited copy of a corpus keeps almost every document where it was, and a reader whose corpus
moved some of its teacher's training documents into validation says how many."""

from __future__ import annotations

import random

import numpy as np
import pytest

from distillscale.data import DataConfig, prepare_data
from distillscale.data.splits import (SEGMENT_MIN_BYTES, SPLITS, assign_splits, cut_segments, placement)
from distillscale.errors import UserError
from tests.report.test_own_teacher import markov_corpus


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))


def _fragments(prepared, name: str) -> list[list[int]]:
    """The token runs between end-of-text tokens of split `name`."""
    tokens = np.asarray(prepared.split(name))
    ends = np.flatnonzero(tokens == prepared.end_of_text_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokens[a:b].tolist() for a, b in zip(starts, ends)]


def _varied_corpus(folder, documents: int = 60, seed: int = 0):
    """Text files of 2 to 40 KB (markov text, one per file) and one of about 400 KB."""
    rng = random.Random(seed)
    markov_corpus(folder, documents=documents, words=300)
    markov_corpus(folder.with_name("long"), documents=1, words=70_000)
    for index, path in enumerate(sorted(folder.iterdir())):
        text = (folder.with_name("long") / "doc0000.txt").read_text() if index == 5 else path.read_text()
        path.write_text(text * (1 if index == 5 else rng.randint(1, 16)))
    return sorted(folder.iterdir())


@pytest.mark.slow
def test_no_document_under_the_bound_lies_in_two_splits_and_training_reads_whole_documents(tmp_path):
    files = _varied_corpus(tmp_path / "corpus")
    prepared = prepare_data(DataConfig(path=str(tmp_path / "corpus"), vocab_size=400), progress=False)
    texts = [path.read_text() for path in files]
    tokenizer = prepared.tokenizer
    whole = {tuple(tokenizer.encode(text, add_special_tokens=False).ids): text for text in texts
             if len(text.encode()) <= SEGMENT_MIN_BYTES}
    placed = {name: [tuple(fragment) for fragment in _fragments(prepared, name)] for name in SPLITS}
    homes: dict[str, list[str]] = {}
    for name, fragments in placed.items():
        for fragment in fragments:
            if fragment in whole:
                homes.setdefault(whole[fragment], []).append(name)
    # every document under the bound is exactly one fragment (its tokens whole), in exactly one split
    assert sorted(homes) == sorted(whole.values()) and all(len(where) == 1 for where in homes.values())
    # the training halves are whole documents, as long as the documents: each fragment is one of them, or a
    # segment (SEGMENT_MIN_BYTES or more) of the one long document
    for name in ("teacher", "student"):
        for fragment in placed[name]:
            assert fragment in whole or len(tokenizer.decode(list(fragment)).encode()) >= SEGMENT_MIN_BYTES / 2
    lengths = [len(fragment) for name in ("teacher", "student") for fragment in placed[name] if fragment in whole]
    assert np.mean(lengths) > 400   # tokens: whole documents of 2-40 KB, not pieces of about 1 KB
    made = sum(prepared.composition(name).units for name in SPLITS)
    assert made > len(texts)   # the ~200 KB document in segments


@pytest.mark.parametrize("documents", [1, 2, 3, 4, 6])
def test_any_val_fraction_and_seed_on_a_tiny_corpus_splits_or_says_why_not_in_one_line(tmp_path, documents):
    markov_corpus(tmp_path / "corpus", documents=documents, words=120)
    for val_fraction in (0.05, 0.3, 0.6, 0.9, 0.99):
        for seed in range(8):
            config = DataConfig(path=str(tmp_path / "corpus"), vocab_size=300, val_fraction=val_fraction, seed=seed)
            if documents < 3:
                with pytest.raises(UserError, match=f"{documents} distinct documents?, too few .*3 documents or more"):
                    prepare_data(config, progress=False)
                continue
            prepared = prepare_data(config, progress=False)
            assert all(prepared.composition(name).units >= 1 for name in SPLITS), (val_fraction, seed)


def _placed(texts: list[bytes], seed: int) -> list[tuple[int, tuple]]:
    return [(placement(segment, seed).split_hash, placement(segment, seed).sketch)
            for text in texts for segment in cut_segments(text)]


@pytest.mark.parametrize("val_fraction", [0.05, 0.2])
def test_split_sizes_lie_within_chance_of_their_fractions(val_fraction):
    """Over seeds, each split's share of the bytes is its fraction to within 4 standard deviations of a
    split of whole documents (copies move together: counted as one)."""
    rng = random.Random(1)
    vocabulary = ["".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(1, 8))) for _ in range(3000)]
    texts = ["".join(" ".join(rng.choice(vocabulary) for _ in range(12)) + "\n" for _ in range(rng.randint(3, 300)))
             .encode() for _ in range(300)]
    texts += texts[:20]   # copies: one split each with their originals
    sizes = np.array([len(text) for text in texts], dtype=float)
    deviations = []
    for seed in range(12):
        hashes = np.array([hash_ for hash_, _ in _placed(texts, seed)], dtype=np.uint64)
        split = assign_splits(hashes, val_fraction)
        _, group = np.unique(hashes, return_inverse=True)
        grouped = np.bincount(group, weights=sizes)
        for index, share in enumerate((val_fraction, (1 - val_fraction) / 2, (1 - val_fraction) / 2)):
            deviations.append((sizes[split == index].sum() - share * sizes.sum())
                              / np.sqrt(share * (1 - share) * np.square(grouped).sum()))
    assert max(map(abs, deviations)) < 4 and abs(np.mean(deviations)) < 1


def _edit_one_line(text: str, rng: random.Random) -> str:
    """One line of `text` rewritten: its words shuffled and one replaced."""
    lines = text.split("\n")
    index = rng.randrange(len(lines) - 1)
    words = lines[index].split() or ["x"]
    rng.shuffle(words)
    words[0] = "edited"
    lines[index] = " ".join(words)
    return "\n".join(lines)


def test_a_copy_with_one_line_edited_in_every_document_keeps_its_validation_split_clean(tmp_path):
    """Documents of about 7.5 KB, one line edited in each: at most 2% of the copy's validation documents
    were the teacher's training documents (pooled over 8 seeds); an edit moves a document only when it
    touches its anchor line (or writes a line of lower hash)."""
    folder = markov_corpus(tmp_path / "corpus", documents=400, words=1300)
    rng = random.Random(3)
    original = [path.read_text() for path in sorted(folder.iterdir())]
    edited = [_edit_one_line(text, rng) for text in original]
    val_documents, were_teachers = 0, 0
    for seed in range(8):
        before = assign_splits(np.array([hash_ for hash_, _ in _placed([t.encode() for t in original], seed)],
                                        dtype=np.uint64), 0.05)
        after = assign_splits(np.array([hash_ for hash_, _ in _placed([t.encode() for t in edited], seed)],
                                       dtype=np.uint64), 0.05)
        val_documents += int((after == 0).sum())
        were_teachers += int(((after == 0) & (before == 1)).sum())
    assert val_documents > 100 and were_teachers / val_documents <= 0.02


@pytest.mark.slow
def test_a_student_of_an_edited_copy_is_told_how_many_of_its_teachers_documents_moved(tmp_path, monkeypatch, cli):
    """The teacher trains on a corpus of short documents; a copy with one line edited in each moves a few of
    them into validation: `distill` and `loss` say how many, the count the corpora's own splits give."""
    from tests.data_pipeline.test_shared_text import distill_data, loss_data
    from tests.report.test_demo_teacher_split import TINY
    from distillscale.training.teachers import find_teacher, warn_moved_documents

    corpus = markov_corpus(tmp_path / "v1", documents=400, words=60)
    code, _, err = cli("train", "--data", corpus, "--out", tmp_path / "tt", *TINY)
    assert code == 0, err
    copy = tmp_path / "copy"
    copy.mkdir()
    rng = random.Random(5)
    for path in sorted(corpus.iterdir()):
        (copy / path.name).write_text(_edit_one_line(path.read_text(), rng))
    teacher_data = loss_data(tmp_path / "tt", None)
    student_data = distill_data(tmp_path / "tt", copy)
    # the truth, from the two preparations' own splits, document by document (one file each, in order)
    before = np.load(teacher_data.directory / "units.split.npy")
    after = np.load(student_data.directory / "units.split.npy")
    moved = int(((after == 0) & (before == 1)).sum())
    assert moved >= 1   # short documents (about four lines): some edits touch the anchor
    from distillscale.data.trained_split import TrainedSplit

    counted = TrainedSplit.of_run(tmp_path / "tt").moved_into_validation(student_data)
    assert (counted.count, counted.of) == (moved, int((after == 0).sum()))
    said = []
    monkeypatch.setattr("distillscale.training.teachers.warn", said.append)
    warn_moved_documents([find_teacher(tmp_path / "tt")], student_data, None)
    assert len(said) == 1 and said[0].startswith(f"{moved} of the {int((after == 0).sum())} documents of the "
                                                 "student's validation split are documents teacher")
    code, _, err = cli("loss", tmp_path / "tt", "--data", copy)
    assert code == 0, err
    assert f"{moved} of the {int((after == 0).sum())} documents of --data {copy}'s validation" in " ".join(err.split())
