"""A run teacher's data is checked: `distill --teacher RUN` (and cache-logits, prune, a mixture's every
teacher, a --student-init start) refuses, in one line and before any training, a teacher whose training
text may lie in the student's validation split: one of an earlier version, whose split of its corpus
(distillscale.data/1: whole documents by bytes; /2: pieces by the corpus's size) cannot be repeated, and
a student that splits with a larger validation fraction. A teacher whose corpus changed since is read
(each piece keeps its split), and so is a student of another corpus."""

from __future__ import annotations

import json
import os

import pytest

from distillscale.data import DataConfig

from distillscale.training.run_dir import RunDirectory

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

SHAPE = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "512", "--seq-len", "16",
         "--batch-size", "4", "--eval-tokens", "256", "--eval-every", "0", "--device", "cpu")


def _corpus(path, words=3000):
    rows = ({"text": f"document {i}: " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(60))}
            for i in range(words // 60))
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A finished 1-layer teacher of a small corpus of its own."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("teacher")
    corpus = _corpus(root / "corpus.jsonl")
    assert main(["train", "--data", str(corpus), "--vocab-size", "300", "--out", str(root / "run"), *SHAPE]) == 0
    return root / "run", corpus


def _refused(cli, *args) -> str:
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return " ".join(err.split())


def _recorded_as(run, fingerprint):
    """The run's config.json saying it trained on data of `fingerprint`, as a run of an earlier version
    did: one that recorded neither its corpus's content nor the split settings that cut it."""
    record = json.loads((run / "config.json").read_text())
    record["plan"]["data_fingerprint"] = fingerprint
    record["plan"].pop("corpus", None)
    (run / "config.json").write_text(json.dumps(record))


def test_a_teacher_of_an_earlier_data_format_is_refused(cli, tmp_path, teacher):
    import shutil

    from distillscale.data.prepare import data_identity

    run = tmp_path / "format1"
    shutil.copytree(teacher[0], run)
    data, fingerprint = RunDirectory(run).recorded_data()
    assert data_identity(data).fingerprint == fingerprint  # as trained: this version's split of its corpus
    _recorded_as(run, data_identity(data).earlier["distillscale.data/1"])
    said = _refused(cli, "distill", "--teacher", run, "--out", tmp_path / "student", *SHAPE)
    assert f"teacher {run} was trained by an earlier version, which split its corpus otherwise" in said
    assert "(distillscale.data/1: whole documents, split by bytes)" in said
    assert "the student's validation split could hold text the teacher trained on" in said
    assert not (tmp_path / "student").exists()
    # its siblings: a logit cache of it, a model pruned from it
    assert "by an earlier version" in _refused(cli, "cache-logits", "--teacher", run, "--out", tmp_path / "cache",
                                                "--top-k", "4", "--tokens", "512", "--seq-len", "16")
    assert "by an earlier version" in _refused(cli, "prune", run, "--out", tmp_path / "pruned", "--n-layers", "1")


def test_a_teacher_whose_corpus_changed_since_is_read_and_an_earlier_versions_refused(cli, tmp_path, teacher):
    import shutil

    root = tmp_path / "copy"
    root.mkdir()
    corpus = _corpus(root / "corpus.jsonl")
    run = root / "run"
    shutil.copytree(teacher[0], run)
    record = json.loads((run / "config.json").read_text())
    record["config"]["data"] = record["plan"]["corpus"]["path"] = str(corpus)   # as if trained on this copy
    (run / "config.json").write_text(json.dumps(record))
    assert cli("distill", "--teacher", run, "--out", tmp_path / "ok", *SHAPE)[0] == 0  # the same data: distils
    with open(corpus, "a") as fh:
        fh.write(json.dumps({"text": "a document added after the teacher trained"}) + "\n")
    code, _, err = cli("distill", "--teacher", run, "--out", tmp_path / "grown", *SHAPE)  # its pieces keep their split
    assert code == 0, err
    # a run of an earlier version (no record of its corpus's content or split) is refused, even on its own corpus
    from distillscale.data.prepare import data_identity

    data, _ = RunDirectory(run).recorded_data()
    _recorded_as(run, data_identity(data).earlier["distillscale.data/2"])
    said = _refused(cli, "distill", "--teacher", run, "--out", tmp_path / "student", *SHAPE)
    assert "earlier version, which split its corpus otherwise (distillscale.data/2: pieces of a size" in said


def test_a_student_that_splits_the_corpus_otherwise_is_refused(cli, tmp_path, teacher):
    run, corpus = teacher
    said = _refused(cli, "distill", "--teacher", run, "--out", tmp_path / "student", "--val-fraction", "0.2", *SHAPE)
    assert f"the student splits its corpus otherwise than teacher {run.resolve()} did" in said
    assert "--val-fraction 0.2 (the teacher's 0.05)" in said   # named as the user gave it
    # a student of another corpus reads no split of the teacher's: distilled as before
    other = _corpus(tmp_path / "other.jsonl", words=2400)
    code, _, err = cli("distill", "--teacher", run, "--data", other, "--out", tmp_path / "elsewhere", *SHAPE)
    assert code == 0, err
    assert os.path.isfile(tmp_path / "elsewhere" / "result.json")


def test_a_logit_cache_of_an_earlier_data_format_says_so(cli, tmp_path, teacher, cache_dir):
    """The check a teacher's data now shares with a logit cache's: a cache made for an earlier format's
    split was refused as "other data"; it says which format now."""
    from distillscale.data.prepare import data_identity

    run, _ = teacher
    cache = tmp_path / "cache"
    code, _, err = cli("cache-logits", "--teacher", run, "--out", cache, "--top-k", "4", "--tokens", "512",
                       "--seq-len", "16")
    assert code == 0, err
    record = json.loads((cache / "cache.json").read_text())
    prepared = json.loads((cache_dir / record["data"]["fingerprint"] / "manifest.json").read_text())
    record["data"]["fingerprint"] = data_identity(DataConfig(**prepared["config"])).earlier["distillscale.data/1"]
    (cache / "cache.json").write_text(json.dumps(record))
    said = _refused(cli, "distill", "--teacher-cache", cache, "--out", tmp_path / "student", *SHAPE)
    assert f"the logit cache {cache}" in said and "it was prepared as distillscale.data/1" in said


def test_a_start_trained_on_an_earlier_data_format_is_refused(cli, tmp_path, teacher):
    """Sibling: a student started from a run (`--student-init RUN`) trains and is scored beside the
    start's training text the same way; a start pruned from a teacher is checked through its teacher."""
    import shutil

    from distillscale.data.prepare import data_identity

    start = tmp_path / "start"
    shutil.copytree(teacher[0], start)
    data, _ = RunDirectory(start).recorded_data()
    _recorded_as(start, data_identity(data).earlier["distillscale.data/1"])
    args = ("--data", teacher[1], "--tokenizer", start / "tokenizer.json", *SHAPE[6:])  # the start's shape
    said = _refused(cli, "train", "--student-init", start, "--out", tmp_path / "student", *args)
    assert f"start {start} was trained by an earlier version" in said
    assert "distillscale.data/1" in said and not (tmp_path / "student" / "result.json").exists()
