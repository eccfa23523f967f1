"""A model's identity is its files' content: weights rewritten in place with their old size and
modification time (what `rsync -a` and `touch -r` keep) are another model, the same bytes touched are
the same model, and the content is read once per state of a file (kept in distillscale's cache)."""

from __future__ import annotations

import os

import pytest

from distillscale.data.loss_record import model_fingerprint


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text('{"n_layers": 1}')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return directory


def rewrite_keeping_size_and_time(file, content: bytes) -> None:
    """What `rsync -a` or an archive does: new bytes, the old size and modification time."""
    before = os.stat(file)
    assert len(content) == before.st_size
    file.write_bytes(content)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_weights_rewritten_with_the_same_size_and_time_are_another_model(model):
    weights = model / "model.safetensors"
    first, before = model_fingerprint(model), os.stat(weights)
    rewrite_keeping_size_and_time(weights, bytes(reversed(range(256))) * 64)
    after = os.stat(weights)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert model_fingerprint(model) != first
    rewrite_keeping_size_and_time(weights, bytes(range(256)) * 64)   # the first weights back: the first model
    assert model_fingerprint(model) == first


def test_the_same_bytes_touched_or_copied_are_the_same_model(model, tmp_path):
    import shutil

    first = model_fingerprint(model)
    os.utime(model / "model.safetensors", ns=(1, 1_000_000_000))
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)   # new inodes and times, the same content
    assert model_fingerprint(model) == model_fingerprint(copy) == first


def test_a_second_ask_reads_no_file_once_its_state_is_settled(model, monkeypatch):
    from distillscale.data import file_digest

    read = []
    digest = file_digest._sha256
    monkeypatch.setattr(file_digest, "_sha256", lambda file: read.append(file.name) or digest(file))
    first = model_fingerprint(model)
    assert sorted(read) == ["config.json", "model.safetensors"]
    # just written: in doubt (a write in the same clock step would not show), so read again ...
    assert model_fingerprint(model) == first and len(read) == 4
    monkeypatch.setattr(file_digest, "SETTLED_NS", 0)   # ... until the state is older than the clock's step
    assert model_fingerprint(model) == first and len(read) == 4   # kept: a stat per file, no read
    assert model_fingerprint(model) == first and len(read) == 4
    (model / "config.json").write_text('{"n_layers": 2}')         # another state: read again, that file only
    assert model_fingerprint(model) != first and read[4:] == ["config.json"]
    index = (model.parent / "cache" / file_digest.INDEX_FILE)
    assert index.is_file() and str((model / "model.safetensors").resolve()) in index.read_text()


def test_a_cache_that_cannot_be_written_still_gives_the_content_identity(model, monkeypatch, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(blocked))
    first = model_fingerprint(model)
    rewrite_keeping_size_and_time(model / "model.safetensors", bytes(reversed(range(256))) * 64)
    assert model_fingerprint(model) != first


def test_a_corpus_read_up_to_max_bytes_is_known_by_what_is_read(tmp_path, monkeypatch):
    """Under --max-bytes the content digest reads what the preparation reads, not every byte of the
    corpus: the files past the read are never hashed, and changing them changes nothing."""
    from distillscale.data import DataConfig
    from distillscale.data import content
    from distillscale.data.prepare import split_source

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (corpus / name).write_text(f"the text of {name}\n" * 500)
    read = DataConfig(path=str(corpus), max_bytes=4000)
    before, whole = split_source(read).content, split_source(DataConfig(path=str(corpus))).content

    def no_whole_file(*args, **kwargs):
        raise AssertionError("a whole file hashed under --max-bytes")

    monkeypatch.setattr(content, "file_digests", no_whole_file)
    with open(corpus / "c.txt", "a") as handle:   # past the first 4,000 bytes
        handle.write("an appended line\n")
    assert split_source(read).content == before != whole
    (corpus / "a.txt").write_text("other text\n" * 500)   # what is read: another corpus
    assert split_source(read).content != before
