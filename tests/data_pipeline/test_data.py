"""distillscale.data: sources, tokenizers, cached splits, samplers, and `distillscale data prepare`."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from distillscale.data import DataConfig, PreparedData, TokenSampler, eval_windows, iter_eval_batches, prepare_data
from distillscale.data import prepare as prepare_module
from distillscale.data.prepare import assign_splits, token_dtype
from distillscale.data.repetition import epochs
from distillscale.data.sources import resolve_corpus
from distillscale.data.tokenizer import END_OF_TEXT, tokenizer_hash, train_byte_level_bpe
from distillscale.errors import UserError

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega").split()
VOCAB = 300


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(cache))
    return cache


def document(i: int) -> str:
    rng = random.Random(i)
    return f"doc{i:03d}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 200))) + ".\n"


DOCUMENTS = [document(i) for i in range(24)]


def write_text_corpus(directory, documents=DOCUMENTS):
    directory.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(documents):
        (directory / f"{i:03d}{'.py' if i % 2 else '.txt'}").write_text(text, encoding="utf-8")
    return directory


def split_documents(prepared: PreparedData, name: str) -> list[str]:
    """The texts of a split (runs of one document's pieces), recovered by cutting at end-of-text tokens
    and decoding."""
    tokens = prepared.split(name)
    ends = np.flatnonzero(tokens == prepared.end_of_text_id)
    assert len(ends) and ends[-1] == len(tokens) - 1, "every document ends with the end-of-text token"
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [prepared.tokenizer.decode(tokens[a:b].tolist()) for a, b in zip(starts, ends)]


def all_split_documents(prepared: PreparedData) -> dict[str, list[str]]:
    return {name: split_documents(prepared, name) for name in ("val", "teacher", "student")}


def assert_disjoint_cover(splits: dict[str, list[str]], documents: list[str]) -> None:
    """Each byte of the corpus (`documents` in reading order) in exactly one split, in order: every
    document is the concatenation of the next texts of the splits, which hold them in corpus order."""
    assert all(splits.values()), "no split is empty"
    next_text = dict.fromkeys(splits, 0)
    for document in documents:
        rest = document
        while rest:
            matches = [name for name, texts in splits.items()
                       if next_text[name] < len(texts) and texts[next_text[name]]
                       and rest.startswith(texts[next_text[name]])]
            assert matches, f"no split continues {rest[:40]!r}"
            name = max(matches, key=lambda name: len(splits[name][next_text[name]]))
            rest = rest[len(splits[name][next_text[name]]):]
            next_text[name] += 1
    assert all(next_text[name] == len(texts) for name, texts in splits.items()), "text beyond the corpus"


# --- sources -------------------------------------------------------------------------------------

def test_text_directory_splits_are_disjoint_and_cover_the_corpus(tmp_path):
    prepared = prepare_data(DataConfig(path=write_text_corpus(tmp_path / "corpus"), vocab_size=VOCAB),
                            progress=False)
    splits = all_split_documents(prepared)
    assert_disjoint_cover(splits, DOCUMENTS)
    manifest = prepared.manifest
    assert manifest["source"]["documents"] == len(DOCUMENTS)
    for name, texts in splits.items():   # whole documents: each one a unit of its split, ended once
        assert manifest["splits"][name]["units"] == manifest["splits"][name]["documents"] == len(texts)
        assert manifest["splits"][name]["tokens"] == len(prepared.split(name))
    assert sum(len(texts) for texts in splits.values()) == len(DOCUMENTS)
    assert prepared.split("val").dtype == np.uint16
    assert prepared.vocab_size == prepared.tokenizer.get_vocab_size() <= VOCAB
    assert prepared.tokenizer_hash == tokenizer_hash(prepared.tokenizer)
    assert (prepared.directory / "tokenizer.json").is_file()
    teacher, student = (prepared.composition(name) for name in ("teacher", "student"))
    # halves split by hashes: as far apart as chance puts them, no further
    assert abs(teacher.tokens - student.tokens) <= 4 * (teacher.spread ** 2 + student.spread ** 2) ** 0.5


def test_glob_selects_matching_files(tmp_path):
    corpus = write_text_corpus(tmp_path / "corpus")
    prepared = prepare_data(DataConfig(path=str(corpus / "*.txt"), vocab_size=VOCAB), progress=False)
    assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS[::2])


def test_jsonl_with_a_named_text_field(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": i, "content": text}) + "\n"
                            for i, text in enumerate(DOCUMENTS)))
    prepared = prepare_data(DataConfig(path=path, text_field="content", vocab_size=VOCAB), progress=False)
    assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS)
    with pytest.raises(UserError, match=r"corpus.jsonl line 1 has no field 'text'"):
        prepare_data(DataConfig(path=path, vocab_size=VOCAB), progress=False)


def test_jsonl_with_a_broken_line_is_an_error(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"text": DOCUMENTS[0]}) + "\n{not json\n")
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        prepare_data(DataConfig(path=path, vocab_size=VOCAB), progress=False)


def test_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"body": DOCUMENTS, "n": list(range(len(DOCUMENTS)))}), path)
    prepared = prepare_data(DataConfig(path=path, text_field="body", vocab_size=VOCAB), progress=False)
    assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS)
    with pytest.raises(UserError, match=r"has no column 'text' \(columns: body, n\)"):
        prepare_data(DataConfig(path=path, vocab_size=VOCAB), progress=False)


def test_datasets_save_to_disk_directory(tmp_path):
    import datasets

    half = len(DOCUMENTS) // 2
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": DOCUMENTS[:half]}),
        "validation": datasets.Dataset.from_dict({"text": DOCUMENTS[half:]}),
    }).save_to_disk(str(tmp_path / "saved"))
    datasets.Dataset.from_dict({"text": DOCUMENTS}).save_to_disk(str(tmp_path / "single"))
    for saved in ("saved", "single"):  # a DatasetDict (splits read by name) and a single Dataset
        prepared = prepare_data(DataConfig(path=tmp_path / saved, vocab_size=VOCAB), progress=False)
        assert prepared.manifest["source"]["kind"] == "datasets"
        assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS)


def test_default_corpus_is_the_standard_library():
    corpus = resolve_corpus(None)
    assert corpus.kind == "stdlib" and len(corpus.files) > 100
    assert all(path.suffix == ".py" for path in corpus.files)
    assert not any({"test", "tests", "site-packages"} & set(path.parts) for path in corpus.files)
    assert list(corpus.files) == sorted(corpus.files)

    prepared = prepare_data(DataConfig(vocab_size=VOCAB, max_bytes="200K"), progress=False)
    source = prepared.manifest["source"]
    assert source["kind"] == "stdlib"
    assert source["bytes"] == 200_000 and source["truncated_by_max_bytes"]
    assert all(prepared.manifest["splits"][name]["tokens"] > 0 for name in ("val", "teacher", "student"))


def test_non_utf8_files_are_skipped_and_counted(tmp_path, cli):
    corpus = write_text_corpus(tmp_path / "corpus")
    (corpus / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    (corpus / "blob.bin").write_bytes(bytes(range(128, 256)))
    (corpus / "records.jsonl").write_bytes(b'{"text": "caf\xe9"}\n' + json.dumps({"text": "extra"}).encode())
    prepared = prepare_data(DataConfig(path=corpus, vocab_size=VOCAB), progress=False)
    assert prepared.manifest["source"]["skipped_non_utf8"] == 3
    skipped = prepared.manifest["source"]["skipped_examples"]
    assert any(where.endswith("records.jsonl:1") for where in skipped)
    assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS + ["extra"])

    code, out, _ = cli("data", "prepare", "--data", corpus, "--vocab-size", VOCAB)
    assert code == 0
    assert "3 not UTF-8" in out and "reused" in out


# --- bad inputs ----------------------------------------------------------------------------------

def test_corpus_without_text_is_an_error(tmp_path, cli):
    corpus = tmp_path / "binary"
    corpus.mkdir()
    (corpus / "a.dat").write_bytes(b"\xff\xfe\x00")
    code, _, err = cli("data", "prepare", "--data", corpus, "--vocab-size", VOCAB)
    last_line = err.splitlines()[-1]  # after the progress display
    assert code == 2 and last_line.startswith("distillscale: error: the corpus")
    assert "holds no text (1 files read; 1 skipped as not UTF-8" in last_line


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: tmp / "empty", "holds no files"),
    (lambda tmp: tmp / "empty" / "*.txt", "no files match"),
])
def test_bad_data_path_is_an_error(tmp_path, cli, make_path, message):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("data", "prepare", "--data", make_path(tmp_path))
    assert code == 2 and message in err and err.startswith("distillscale: error: ")


def test_a_cache_inside_the_corpus_is_refused(tmp_path, monkeypatch):
    corpus = write_text_corpus(tmp_path / "corpus")
    for cache in (corpus / "cache", corpus):
        with pytest.raises(UserError, match="is inside the corpus"):
            prepare_data(DataConfig(path=corpus, vocab_size=VOCAB, cache_dir=cache), progress=False)
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(corpus / "prepared"))
    with pytest.raises(UserError, match=r"outside it"):
        prepare_data(DataConfig(path=corpus, vocab_size=VOCAB), progress=False)
    assert sorted(path.name for path in corpus.iterdir()) == sorted(f"{i:03d}{'.py' if i % 2 else '.txt'}"
                                                                    for i in range(len(DOCUMENTS)))


def test_too_little_text_is_an_error(tmp_path):
    corpus = write_text_corpus(tmp_path / "corpus", ["one document\n", "another\n"])
    with pytest.raises(UserError, match="2 distinct documents, too few"):
        prepare_data(DataConfig(path=corpus, vocab_size=VOCAB), progress=False)


def test_a_corpus_of_two_documents_is_refused_in_one_line_and_three_are_split(tmp_path):
    """Whole documents: two (however long, under the segment bound) cannot fill three splits; three do."""
    texts = ["".join(DOCUMENTS[i::3]) for i in range(3)]   # three documents of eight lines each
    with pytest.raises(UserError, match="2 distinct documents, too few .*give a corpus of 3 documents or more"):
        prepare_data(DataConfig(path=write_text_corpus(tmp_path / "two", texts[:2]), vocab_size=VOCAB), progress=False)
    splits = all_split_documents(prepare_data(DataConfig(path=write_text_corpus(tmp_path / "three", texts),
                                                         vocab_size=VOCAB), progress=False))
    assert sorted(text for texts_ in splits.values() for text in texts_) == sorted(texts)


@pytest.mark.parametrize("flag, value, message", [
    ("--vocab-size", "100", "--vocab-size: Input should be greater than or equal to 257"),
    ("--val-fraction", "1.5", "--val-fraction: Input should be less than 1"),
    ("--max-bytes", "lots", "malformed --max-bytes 'lots'"),
])
def test_bad_prepare_flags_are_errors(cli, flag, value, message):
    code, _, err = cli("data", "prepare", flag, value)
    assert code == 2 and message in err


def test_prepare_has_help(cli):
    code, out, _ = cli("data", "prepare", "--help")
    assert code == 0 and "--max-bytes" in out and "--tokenizer" in out


def test_data_config_is_strict():
    with pytest.raises(ValueError, match="extra"):
        DataConfig(vocab=512)
    assert DataConfig(max_bytes="1.5M").max_bytes == 1_500_000


# --- cache ---------------------------------------------------------------------------------------

def test_second_prepare_reuses_the_manifest(tmp_path, monkeypatch, cli):
    config = DataConfig(path=write_text_corpus(tmp_path / "corpus"), vocab_size=VOCAB)
    first = prepare_data(config, progress=False)
    mtimes = {path.name: path.stat().st_mtime_ns for path in first.directory.iterdir()}

    def must_not_tokenise(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(prepare_module, "_write_splits", must_not_tokenise)
    second = prepare_data(config, progress=False)
    assert second.reused and not first.reused
    assert second.directory == first.directory and second.manifest == first.manifest
    assert {path.name: path.stat().st_mtime_ns for path in second.directory.iterdir()} == mtimes

    code, out, _ = cli("data", "prepare", "--data", tmp_path / "corpus", "--vocab-size", VOCAB, "--json")
    assert code == 0 and json.loads(out)["reused"] is True


def test_changed_source_or_settings_prepare_afresh(tmp_path):
    corpus = write_text_corpus(tmp_path / "corpus")
    first = prepare_data(DataConfig(path=corpus, vocab_size=VOCAB), progress=False)
    reseeded = prepare_data(DataConfig(path=corpus, vocab_size=VOCAB, seed=1), progress=False)
    assert reseeded.fingerprint != first.fingerprint and not reseeded.reused
    assert reseeded.tokenizer_hash == first.tokenizer_hash  # the seed only moves documents between splits
    assert all_split_documents(reseeded) != all_split_documents(first)

    (corpus / "000.txt").write_text("an edited document, longer than before\n")
    edited = prepare_data(DataConfig(path=corpus, vocab_size=VOCAB), progress=False)
    assert edited.fingerprint != first.fingerprint and not edited.reused
    assert "an edited document, longer than before\n" in sum(all_split_documents(edited).values(), [])


def test_interrupted_preparation_never_looks_complete(tmp_path, cache_dir, monkeypatch):
    config = DataConfig(path=write_text_corpus(tmp_path / "corpus"), vocab_size=VOCAB)
    write_splits = prepare_module._write_splits

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "_write_splits", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(config, progress=False)
    assert not [path for path in cache_dir.iterdir() if path.is_dir()]  # no directory, no leftovers

    with monkeypatch.context() as kill_9:  # no clean-up at all: the half-written work stays behind
        kill_9.setattr(prepare_module.shutil, "rmtree", lambda *args, **kwargs: None)
        with pytest.raises(KeyboardInterrupt):
            prepare_data(config, progress=False)
    [leftover] = [path for path in cache_dir.iterdir() if path.is_dir()]
    assert leftover.name.startswith(".") and not (leftover / "manifest.json").exists()

    monkeypatch.setattr(prepare_module, "_write_splits", write_splits)
    prepared = prepare_data(config, progress=False)
    assert not prepared.reused and not leftover.exists()
    assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS)


def test_damaged_preparation_is_rebuilt(tmp_path):
    config = DataConfig(path=write_text_corpus(tmp_path / "corpus"), vocab_size=VOCAB)
    first = prepare_data(config, progress=False)
    with open(first.directory / "teacher.bin", "r+b") as tokens:
        tokens.truncate(10)
    again = prepare_data(config, progress=False)
    assert not again.reused and again.directory == first.directory
    assert len(again.split("teacher")) == first.manifest["splits"]["teacher"]["tokens"]


PREPARE_AFTER_BARRIER = """
import json, sys, time
from pathlib import Path
from distillscale.data import prepare as prepare_module
from distillscale.data.config import DataConfig

corpus, barrier, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
write_splits = prepare_module._write_splits

def slow_write_splits(*args, **kwargs):  # hold the lock until the other process surely waits for it
    time.sleep(1)
    return write_splits(*args, **kwargs)

prepare_module._write_splits = slow_write_splits
(barrier / name).touch()
while len(list(barrier.iterdir())) < 2:
    time.sleep(0.01)
prepared = prepare_module.prepare_data(DataConfig(path=corpus, vocab_size=int(sys.argv[4])))
print(json.dumps([str(prepared.directory), prepared.reused]))
"""


def test_concurrent_preparers_share_one_result(tmp_path, cache_dir):
    corpus = write_text_corpus(tmp_path / "corpus")
    (tmp_path / "barrier").mkdir()
    preparers = [subprocess.Popen([sys.executable, "-c", PREPARE_AFTER_BARRIER, str(corpus),
                                   str(tmp_path / "barrier"), name, str(VOCAB)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
    outputs = [preparer.communicate(timeout=60) for preparer in preparers]
    results = [json.loads(out) for out, _ in outputs]
    assert results[0][0] == results[1][0]
    assert sorted(reused for _, reused in results) == [False, True]  # one tokenised, the other waited
    assert sum("waiting for another process" in err for _, err in outputs) == 1
    assert [path for path in cache_dir.iterdir() if path.is_dir()] == [Path(results[0][0])]


# --- splits and tokenizers -----------------------------------------------------------------------

def test_assign_splits_keeps_duplicates_together_and_respects_the_fraction():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, size=2000, dtype=np.uint64)
    hashes[100:120] = hashes[0]  # 21 copies of one document
    splits = assign_splits(hashes, val_fraction=0.1)
    assert len(set(splits[hashes == hashes[0]])) == 1
    val_share = (splits == 0).mean()
    assert 0.08 < val_share < 0.12   # 10% of the documents, as chance draws them
    np.testing.assert_array_equal(splits, assign_splits(hashes, val_fraction=0.1))
    teacher, student = (splits == 1).sum(), (splits == 2).sum()
    assert abs(teacher - student) < 4 * np.sqrt(len(hashes))


def test_each_documents_split_is_its_own_whatever_the_other_documents():
    """A document's split follows from its hash and the fraction alone: the same in a corpus of other
    documents (a superset, a subset), and a smaller fraction's validation documents are a larger one's."""
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    whole = assign_splits(hashes, 0.05)
    np.testing.assert_array_equal(assign_splits(hashes[:1000], 0.05), whole[:1000])
    np.testing.assert_array_equal(assign_splits(hashes[500:], 0.05), whole[500:])
    smaller = assign_splits(hashes, 0.02)
    assert (whole[smaller == 0] == 0).all() and (smaller == 0).sum() < (whole == 0).sum()
    training = whole > 0
    np.testing.assert_array_equal(smaller[training], whole[training])   # the halves keep their documents


def test_validation_gets_the_lowest_hash_when_none_falls_in_its_range():
    splits = assign_splits(np.array([2**63 + 3, 2**62, 2**63 + 2], dtype=np.uint64), val_fraction=0.01)
    assert splits.tolist() == [2, 0, 1]  # 2**62 -> val; the odd hash -> student, the even one -> teacher


@pytest.mark.parametrize("val_fraction", [0.05, 0.6, 0.9, 0.99])
def test_every_split_is_filled_from_the_fullest_whatever_the_fraction(val_fraction):
    """A tiny corpus at any fraction: each split gets a document, taken from the split that holds the most
    (the lowest hash into validation, the highest into a half); never an index error."""
    for seed in range(50):
        hashes = np.random.default_rng(seed).integers(0, 2**64, size=3 + seed % 4, dtype=np.uint64)
        splits = assign_splits(hashes, val_fraction)
        assert set(splits.tolist()) == {0, 1, 2}, (seed, splits)


def test_token_dtype_follows_the_vocabulary():
    assert token_dtype(2**16) == np.uint16 and token_dtype(2**16 + 1) == np.uint32


def test_large_vocabulary_is_stored_as_uint32(tmp_path):
    vocab = {f"w{i}": i for i in range(2**16)}  # w0 stands for unknown words
    vocab.update({word: 2**16 + i for i, word in enumerate(WORDS)})  # ids beyond uint16
    vocab[END_OF_TEXT] = 70_000  # gaps are allowed: the model needs max id + 1 rows
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    prepared = prepare_data(DataConfig(path=write_text_corpus(tmp_path / "corpus"),
                                       tokenizer=tmp_path / "tokenizer.json"), progress=False)
    assert prepared.vocab_size == 70_001
    teacher = prepared.split("teacher")
    assert teacher.dtype == np.uint32 and teacher.max() == 70_000 and (teacher > 65_535).mean() > 0.9


def test_loading_a_tokenizer_json_file_or_directory(tmp_path):
    corpus = write_text_corpus(tmp_path / "corpus")
    tokenizer = train_byte_level_bpe(DOCUMENTS, 280)
    (tmp_path / "tok").mkdir()
    tokenizer.save(str(tmp_path / "tok" / "tokenizer.json"))
    for source in (tmp_path / "tok" / "tokenizer.json", tmp_path / "tok"):
        prepared = prepare_data(DataConfig(path=corpus, tokenizer=source), progress=False)
        assert prepared.tokenizer_hash == tokenizer_hash(tokenizer)
        assert prepared.vocab_size == 280
        assert prepared.manifest["tokenizer"]["end_of_text"] == END_OF_TEXT
        assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS)
    with pytest.raises(UserError, match="vocab_size 512 conflicts with tokenizer .* which has 280 tokens"):
        prepare_data(DataConfig(path=corpus, tokenizer=tmp_path / "tok", vocab_size=512), progress=False)


def test_loading_a_hugging_face_tokenizer_directory(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(DOCUMENTS, trainers.BpeTrainer(
        vocab_size=290, special_tokens=["<bos>", "<stop>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>",
                            eos_token="<stop>").save_pretrained(str(tmp_path / "hf"))
    corpus = write_text_corpus(tmp_path / "corpus")
    prepared = prepare_data(DataConfig(path=corpus, tokenizer=tmp_path / "hf"), progress=False)
    assert prepared.manifest["tokenizer"]["end_of_text"] == "<stop>"  # declared eos, not a guessed name
    assert prepared.end_of_text_id == tokenizer.token_to_id("<stop>")
    assert_disjoint_cover(all_split_documents(prepared), DOCUMENTS)


def test_tokenizer_without_end_of_text_token_is_an_error(tmp_path):
    tokenizer = Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(UserError, match="has no end-of-text token"):
        prepare_data(DataConfig(path=write_text_corpus(tmp_path / "corpus"),
                                tokenizer=tmp_path / "tokenizer.json"), progress=False)


def test_byte_level_bpe_training_is_deterministic():
    assert tokenizer_hash(train_byte_level_bpe(DOCUMENTS, VOCAB)) == \
        tokenizer_hash(train_byte_level_bpe(DOCUMENTS, VOCAB))


# --- samplers ------------------------------------------------------------------------------------

TOKENS = np.arange(1000, dtype=np.uint16)


def assert_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and torch.equal(actual, expected)


def test_sampler_batch_is_a_pure_function_of_seed_and_step():
    sampler = TokenSampler(TOKENS, seq_len=16, batch_size=8, seed=3)
    inputs, targets = sampler.batch(5)
    assert inputs.shape == targets.shape == (8, 16) and inputs.dtype == torch.long
    assert_equal(targets[:, :-1], inputs[:, 1:])
    assert_equal(inputs[:, 1:] - inputs[:, :-1], torch.ones(8, 15, dtype=torch.long))  # windows
    again = TokenSampler(TOKENS, seq_len=16, batch_size=8, seed=3).batch(5)
    assert_equal(again[0], inputs)
    assert not torch.equal(sampler.batch(6)[0], inputs)
    assert not torch.equal(TokenSampler(TOKENS, 16, 8, seed=4).batch(5)[0], inputs)


def test_ranks_get_disjoint_slices_of_the_global_batch():
    sampler = TokenSampler(TOKENS, seq_len=16, batch_size=8, seed=0)
    global_inputs, global_targets = sampler.batch(2)
    shards = [sampler.batch(2, rank=rank, world_size=4) for rank in range(4)]
    assert all(inputs.shape == (2, 16) for inputs, _ in shards)
    assert_equal(torch.cat([inputs for inputs, _ in shards]), global_inputs)
    assert_equal(torch.cat([targets for _, targets in shards]), global_targets)
    with pytest.raises(UserError, match="batch size 8 is not divisible by the 3 processes"):
        sampler.batch(0, rank=0, world_size=3)


@pytest.mark.parametrize("n_tokens, seq_len, batch_size", [
    (1000, 16, 8),      # 62 windows: batches straddle the epochs' ends
    (1000, 7, 5),       # 142 windows, a partial window left out
    (100_001, 64, 32),  # 1,562 windows
    (60, 16, 8),        # 3 windows, fewer than one batch: each batch spans epochs
])
def test_each_window_once_per_epoch_and_epochs_are_tokens_over_unique_tokens(n_tokens, seq_len, batch_size):
    sampler = TokenSampler(np.arange(n_tokens, dtype=np.uint32), seq_len, batch_size, seed=5)
    windows = (n_tokens - 1) // seq_len
    assert sampler.windows == windows and sampler.unique_tokens == windows * seq_len
    steps = -(-3 * windows // batch_size)  # three epochs
    drawn = np.concatenate([sampler.window_starts(step) for step in range(steps)])
    assert np.all(drawn % seq_len == 0) and drawn.max() + seq_len < n_tokens
    first = drawn[:windows] // seq_len
    for epoch in range(3):  # every window once, none twice, in an order of its own
        order = drawn[epoch * windows:(epoch + 1) * windows] // seq_len
        assert sorted(order) == list(range(windows))
        assert epoch == 0 or windows < 4 or not np.array_equal(order, first)
    # the epochs a run records, tokens trained on / unique tokens, are the passes its tokens made
    for step in (1, steps // 2, steps):
        seen = np.zeros(n_tokens, dtype=int)
        for start in np.concatenate([sampler.window_starts(s) for s in range(step)]):
            seen[start + 1:start + seq_len + 1] += 1   # the tokens the window predicts
        trained = step * batch_size * seq_len
        predicted = seen[1:sampler.unique_tokens + 1]
        assert seen.sum() == predicted.sum() == trained
        assert epochs(trained, sampler.unique_tokens) == pytest.approx(predicted.mean())
        assert predicted.max() - predicted.min() <= 1   # no token seen twice before every token once
    # random access: a fresh sampler asked for a late step first agrees (resume, forks)
    assert_equal(TokenSampler(sampler.tokens, seq_len, batch_size, seed=5).batch(steps - 1)[0],
                 sampler.batch(steps - 1)[0])


def test_ranks_of_one_epoch_never_share_a_window():
    sampler = TokenSampler(TOKENS, seq_len=16, batch_size=8, seed=0)   # 62 windows: 7 whole steps
    per_rank = [np.concatenate([sampler.batch(step, rank, 4)[0][:, 0].numpy() for step in range(7)])
                for rank in range(4)]
    firsts = np.concatenate(per_rank)
    assert len(set(firsts.tolist())) == len(firsts) == 56


def test_sampler_needs_one_full_window():
    with pytest.raises(UserError, match="holds 16 tokens, fewer than one sequence of 16 \\+ 1"):
        TokenSampler(TOKENS[:16], seq_len=16, batch_size=2, seed=0)


def test_eval_batches_cover_the_split_in_order():
    batches = list(iter_eval_batches(TOKENS, seq_len=64, batch_size=4))
    inputs = torch.cat([inputs for inputs, _ in batches])
    targets = torch.cat([targets for _, targets in batches])
    n_windows = (len(TOKENS) - 1) // 64
    assert [len(b[0]) for b in batches] == [4, 4, 4, n_windows - 12]
    np.testing.assert_array_equal(inputs.flatten().numpy(), TOKENS[:n_windows * 64])
    np.testing.assert_array_equal(targets.flatten().numpy(), TOKENS[1:n_windows * 64 + 1])
    capped = list(iter_eval_batches(TOKENS, seq_len=64, batch_size=4, max_tokens=300))
    assert sum(len(b[0]) for b in capped) == 4
    with pytest.raises(UserError, match="cap of 10 tokens is below one sequence of 64"):
        list(iter_eval_batches(TOKENS, seq_len=64, batch_size=4, max_tokens=10))


def test_a_capped_evaluation_reads_a_fixed_sample_spread_over_the_split():
    """--eval-tokens: a random sample of the split's windows, not its first files; the same for
    every run (no run seed involved), nested for smaller caps, in split order."""
    split = np.arange(1_000_001, dtype=np.uint32)
    chosen = eval_windows(len(split), 100, max_tokens=20_000)        # 200 of 10,000 windows
    assert len(chosen) == 200 and np.all(np.diff(chosen) > 0)
    assert chosen.max() > 9_000 and chosen.min() < 1_000              # from across the split
    assert np.histogram(chosen, bins=4, range=(0, 10_000))[0].min() >= 30
    assert np.array_equal(eval_windows(len(split), 100, max_tokens=20_000), chosen)
    assert set(eval_windows(len(split), 100, max_tokens=5_000)) <= set(chosen.tolist())
    assert np.array_equal(eval_windows(len(split), 100), np.arange(10_000))   # uncapped: every window
    batches = list(iter_eval_batches(split, seq_len=100, batch_size=64, max_tokens=20_000))
    inputs = torch.cat([inputs for inputs, _ in batches])
    assert [len(b[0]) for b in batches] == [64, 64, 64, 8]
    np.testing.assert_array_equal(inputs[:, 0].numpy(), chosen * 100)


def test_a_vocabulary_larger_than_the_corpus_supports_is_warned_about(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text("".join(f'{{"text": "document {i}: a tiny corpus of text, line {i}."}}\n' for i in range(12)))
    code, _, err = cli("data", "prepare", "--data", corpus, "--vocab-size", "10000000")
    assert code == 0, err
    text = " ".join(err.split())
    assert "the corpus supports only" in text and "not the 10,000,000 asked for" in text


def test_a_corpus_without_utf8_text_is_one_line_and_nothing_before_it(cli, tmp_path, cache_dir):
    """The real error alone: no vocabulary warning and no progress bar of the work it ended."""
    corpus = tmp_path / "binary"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(bytes(random.Random(0).randrange(128, 256) for _ in range(20_000)))
    code, _, err = cli("data", "prepare", "--data", corpus)
    assert code == 2 and err.splitlines() == [err.strip()] and err.startswith("distillscale: error: the corpus"), err
    assert "holds no text" in err and "skipped as not UTF-8" in err


def skewed_corpus(directory, documents: int = 30, big: int = 7, factor: int = 50, lines: int = 15) -> list[str]:
    """`documents` files of `lines` lines of ten words, one of them `factor` times longer."""
    texts = []
    for i in range(documents):
        rng = random.Random(i)
        lines_here = lines * (factor if i == big else 1)
        texts.append("".join(" ".join(rng.choice(WORDS) for _ in range(10)) + "\n" for _ in range(lines_here)))
    write_text_corpus(directory, texts)
    return texts


def test_a_document_over_the_bound_is_placed_in_segments_so_that_the_halves_balance(tmp_path, capsys):
    """30 short documents and one of about 700 KB: the long one is cut into segments of SEGMENT_MIN_BYTES
    or more, each placed whole; the short ones stay whole; the halves are as far apart as chance puts them."""
    from distillscale.data.splits import SEGMENT_MIN_BYTES

    texts = skewed_corpus(tmp_path / "corpus", documents=30, lines=15, factor=800)
    assert len(texts[7].encode()) > 8 * SEGMENT_MIN_BYTES
    prepared = prepare_data(DataConfig(path=tmp_path / "corpus", vocab_size=VOCAB), progress=False)
    made = {name: prepared.composition(name) for name in ("val", "teacher", "student")}
    teacher, student = made["teacher"], made["student"]
    assert abs(teacher.tokens - student.tokens) <= 4 * (teacher.spread ** 2 + student.spread ** 2) ** 0.5
    assert sum(split.units for split in made.values()) > len(texts)   # the long one in segments
    assert sum(split.documents for split in made.values()) > len(texts)   # ... in more than one split
    pieces = all_split_documents(prepared)
    assert_disjoint_cover(pieces, texts)
    short = set(texts) - {texts[7]}
    assert short <= {text for split in pieces.values() for text in split}   # every short document whole
    assert all(len(text.encode()) >= SEGMENT_MIN_BYTES for split in pieces.values() for text in split
               if text not in short and not texts[7].endswith(text))


def test_a_document_under_the_bound_stays_whole_and_a_warning_says_it_dominates(tmp_path, capsys):
    texts = skewed_corpus(tmp_path / "corpus", documents=30, lines=15, factor=50)   # the long one ~45 KB
    prepared = prepare_data(DataConfig(path=tmp_path / "corpus", vocab_size=VOCAB), progress=False)
    assert sum(prepared.composition(name).units for name in ("val", "teacher", "student")) == len(texts)
    assert texts[7] in {text for split in all_split_documents(prepared).values() for text in split}
    assert "one document is" in capsys.readouterr().err


def test_segments_and_units_end_where_their_text_says():
    from distillscale.data.splits import (SEGMENT_MAX_BYTES, SEGMENT_MIN_BYTES, UNIT_MAX_BYTES, cut_segments,
                                          units)

    lines = [f"line {i} " + "héllo wörld " * (i % 13) + "\n" for i in range(12_000)]
    text = "".join(lines).encode()
    segments = [b"".join(segment) for segment in cut_segments(text)]
    assert b"".join(segments) == text and len(segments) > 3
    assert all(SEGMENT_MIN_BYTES <= len(segment) <= SEGMENT_MAX_BYTES for segment in segments[:-1])
    assert all(segment.endswith(b"\n") for segment in segments)
    assert cut_segments(text[:SEGMENT_MIN_BYTES]) == [units(text[:SEGMENT_MIN_BYTES])]   # under the bound: whole
    # the same text elsewhere is cut alike; an edit or an appended line moves only the cuts around it
    rest = b"".join(segments[2:])
    assert [b"".join(segment) for segment in cut_segments(rest)] == segments[2:]
    edited = text.replace(b"line 7000 ", b"line seven thousand, edited ")
    assert len(set(b"".join(s) for s in cut_segments(edited)) ^ set(segments)) <= 4
    assert [b"".join(s) for s in cut_segments(text + b"one more line\n")][:-1] == segments[:-1]


@pytest.mark.parametrize("line", ["é" * 30_000, '{"k":' * 12_000, "QUJD" * 15_000, "日本語のテキスト" * 4_000])
def test_a_long_line_without_spaces_is_cut_where_its_bytes_say(line):
    """Minified JSON, base64, CJK: chunks of at most UNIT_MAX_BYTES, never inside a character, and one
    character inserted moves the cuts near it only (fixed offsets re-cut the rest of the line)."""
    from distillscale.data.splits import UNIT_MAX_BYTES, units

    encoded = line.encode()
    chunks = units(encoded)
    assert b"".join(chunks) == encoded and all(len(chunk) <= UNIT_MAX_BYTES for chunk in chunks)
    assert all(chunk.decode() for chunk in chunks)   # each a whole number of characters
    middle = len(line) // 2
    inserted = units((line[:middle] + "x" + line[middle:]).encode())
    if len(set(chunks)) > 10:   # a line with varied bytes: content-defined cuts
        assert len(set(chunks) & set(inserted)) >= 0.8 * len(set(chunks))


def test_the_composition_warning_names_a_dominant_document_or_unequal_halves():
    from distillscale.data.splits import SplitComposition, composition_warning

    def split(tokens, document_share=0.1):
        return SplitComposition(documents=5, units=50, tokens=tokens, largest_unit_share=0.02, spread=10.0,
                                largest_document_share=document_share)

    fair = {"val": split(50), "teacher": split(1000), "student": split(990)}
    assert composition_warning(fair, documents=30) is None
    unequal = {"val": split(50), "teacher": split(1000), "student": split(700)}
    assert "teacher 1,000 tokens, student 700" in composition_warning(unequal, documents=30)
    dominated = {"val": split(50, 0.6), "teacher": split(1000, 0.62), "student": split(990, 0.64)}
    assert "one document is 64% of the student split" in composition_warning(dominated, documents=30)
    assert composition_warning(dominated, documents=1) is None  # a single file is that file by choice
    # whole documents in families that share an anchor: halves 27% apart within chance, said all the same
    family = {"val": split(50), "teacher": SplitComposition(documents=300, units=308, tokens=4_027_801,
                                                            largest_unit_share=0.02, largest_document_share=0.02,
                                                            spread=524_940.0, largest_group_share=0.12),
              "student": SplitComposition(documents=374, units=381, tokens=2_948_228, largest_unit_share=0.02,
                                          largest_document_share=0.02, spread=314_337.0, largest_group_share=0.05)}
    said = composition_warning(family, documents=695)
    assert said.startswith("the training halves differ by 27%: teacher 4,027,801 tokens, student 2,948,228")
    assert "the largest such group is 12% of the teacher split" in said and "--seed" in said
    # the same halves of independent documents (no family of a tenth of a half): uneven by chance, unsaid
    scattered = {name: dataclasses.replace(split, largest_group_share=0.05) for name, split in family.items()}
    assert composition_warning(scattered, documents=695) is None
