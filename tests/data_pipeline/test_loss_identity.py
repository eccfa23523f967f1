"""What a loss is measured in (`data.loss_identity`): a prepared corpus's tokenizer and validation split,
its bytes per token, bits per byte, and how two identities are told apart."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from distillscale.data import DataConfig, prepare_data
from distillscale.data.loss_identity import (LossIdentity, TextIdentity, TokenizerIdentity,
                                             corpus_tokenizer_identity, loss_identity, prepared_loss_identity,
                                             split_facts, vocab_sha256)
from distillscale.data.prepared import open_prepared
from distillscale.data.token_bytes import bytes_behind
from distillscale.data.tokenizer import load_tokenizer
from distillscale.errors import UserError
from tests.data_pipeline.test_data import VOCAB, write_text_corpus


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = write_text_corpus(tmp_path / "corpus", [f"doc {i}: naïve café " + "word " * (20 + i) + "\n"
                                                     for i in range(40)])
    return corpus, prepare_data(DataConfig(path=str(corpus), vocab_size=VOCAB), progress=False)


def test_the_validation_splits_bytes_are_its_texts_and_give_bits_per_byte(prepared):
    _, data = prepared
    n_bytes, sha256 = split_facts(data, "val")
    behind = np.asarray(data.token_bytes("val"))
    assert len(behind) == len(data.split("val")) and n_bytes == int(behind.sum())
    assert 0 < n_bytes < data.manifest["source"]["bytes"]
    identity = prepared_loss_identity(data)
    assert identity.text.tokens == data.manifest["splits"]["val"]["tokens"] == len(data.split("val"))
    assert identity.text.bytes == n_bytes and identity.text.split_sha256 == sha256
    assert identity.bytes_per_token == identity.text.bytes / identity.text.tokens
    nats = 2.25
    assert identity.bits_per_byte(nats) == pytest.approx(nats * identity.text.tokens / identity.text.bytes / math.log(2))
    assert identity.tokenizer.vocab_size == data.vocab_size
    assert identity.tokenizer.vocab_sha256 == vocab_sha256(data.tokenizer)
    # counted once: kept beside the splits, read back as counted
    assert split_facts(open_prepared(data.directory), "val") == (n_bytes, sha256)


def test_bytes_behind_tokens_add_up_to_the_text_whatever_the_tokenizer_drops():
    text = "naïve café, 日本語 and   spaces\n"
    offsets = [(0, 5), (6, 10), (10, 11), (12, 15), (16, 19), (22, 28)]  # gaps: what a pre-tokenizer drops
    behind = bytes_behind(text, offsets)
    assert int(behind.sum()) == len(text.encode("utf-8")) and len(behind) == len(offsets)
    assert behind[0] == len("naïve".encode("utf-8"))


def test_a_tokenizer_without_a_decoder_counts_the_same_bytes(prepared, tmp_path):
    """Bytes are the source text's, never the tokens decoded: a byte-level BPE saved without its decoder
    (a common recipe) gives the split the same bytes, so the same bits per byte."""
    corpus, trained = prepared
    data = json.loads((trained.directory / "tokenizer.json").read_text())
    assert data.get("decoder") is not None
    data["decoder"] = None
    bare = tmp_path / "no-decoder.json"
    bare.write_text(json.dumps(data))
    without = prepare_data(DataConfig(path=str(corpus), tokenizer=str(bare)), progress=False)
    assert split_facts(without, "val") == split_facts(trained, "val")
    assert prepared_loss_identity(without).bits_per_byte(2.0) == prepared_loss_identity(trained).bits_per_byte(2.0)


def test_a_tokenizer_with_the_same_vocabulary_and_another_normalizer_is_another_tokenizer(prepared, tmp_path):
    _, trained = prepared
    data = json.loads((trained.directory / "tokenizer.json").read_text())
    data["normalizer"] = {"type": "Lowercase"}
    lower = tmp_path / "lowercase.json"
    lower.write_text(json.dumps(data))
    mine, theirs = corpus_tokenizer_identity(trained), loss_identity(tokenizer=lower).tokenizer
    assert mine.vocab_sha256 == theirs.vocab_sha256  # the same ids for the same tokens ...
    why = mine.differs(theirs)
    assert why is not None and "normalizer" in why and "merges" not in why  # ... and the part that differs named
    with pytest.raises(UserError, match="normalizer"):
        loss_identity(tokenizer=lower, text=trained.directory)


def test_the_same_text_and_tokenizer_give_the_same_split_however_the_tokenizer_is_given(prepared, tmp_path):
    corpus, trained = prepared
    given = prepare_data(DataConfig(path=str(corpus), tokenizer=str(trained.directory / "tokenizer.json")),
                         progress=False)
    assert given.fingerprint != trained.fingerprint  # another preparation ...
    first, second = prepared_loss_identity(trained), prepared_loss_identity(given)
    assert first.differs(second) is None  # ... of the same split, in the same tokenizer
    other = prepare_data(DataConfig(path=str(corpus), vocab_size=VOCAB, val_fraction=0.2), progress=False)
    assert "another text" in first.differs(prepared_loss_identity(other))
    smaller = prepare_data(DataConfig(path=str(corpus), vocab_size=280), progress=False)
    assert "another tokenizer (280 ids, not" in first.differs(prepared_loss_identity(smaller))


def test_identities_given_by_name_and_refused_paths(prepared, tmp_path):
    _, data = prepared
    by_path = loss_identity(tokenizer=data.directory / "tokenizer.json", text="C4 en validation")
    assert by_path.tokenizer.vocab_sha256 == vocab_sha256(load_tokenizer(data.directory / "tokenizer.json")[0])
    assert by_path.text == TextIdentity(name="C4 en validation") and by_path.bytes_per_token is None
    assert by_path.bits_per_byte(2.0) is None
    from_corpus = loss_identity(text=data.directory)
    assert from_corpus == prepared_loss_identity(data)
    with pytest.raises(UserError, match="is not a prepared corpus"):
        loss_identity(text=tmp_path)
    other = tmp_path / "other.json"
    prepare_data(DataConfig(path=str(tmp_path / "corpus"), vocab_size=280), progress=False).tokenizer.save(str(other))
    with pytest.raises(UserError, match="is not the tokenizer of the prepared corpus"):
        loss_identity(tokenizer=other, text=data.directory)


def test_describing_and_comparing_identities():
    nothing = LossIdentity()
    assert not nothing.given and nothing.describe() == "nats/token of a tokenizer and text not given"
    named = LossIdentity(tokenizer=TokenizerIdentity(name="paper's", vocab_size=32000),
                         text=TextIdentity(name="C4"))
    assert named.differs(nothing) is None and nothing.differs(named) is None  # nothing to tell them apart by
    assert named.differs(named) is None
    assert "another text" in named.differs(named.model_copy(update={"text": TextIdentity(name="The Pile")}))
    split = TextIdentity(name="my corpus", split="val", split_sha256="a" * 64)
    assert "another text" in named.differs(named.model_copy(update={"text": split}))
    assert LossIdentity.from_json(named.to_json()) == named and LossIdentity.from_json(None) == nothing


def test_a_post_processor_changes_no_id_and_no_identity(prepared, tmp_path):
    """Every text is encoded without special tokens, so a post-processor (here one that puts the
    end-of-text token before each text, as a BOS template does) changes no id: the same tokenizer."""
    from tokenizers import Tokenizer

    corpus, trained = prepared
    data = json.loads((trained.directory / "tokenizer.json").read_text())
    eot = trained.manifest["tokenizer"]["end_of_text"]
    data["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": eot, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {eot: {"id": eot, "ids": [trained.end_of_text_id], "tokens": [eot]}}}
    templated = tmp_path / "templated.json"
    templated.write_text(json.dumps(data))
    text = "doc 3: naïve café word word\n"
    assert Tokenizer.from_file(str(templated)).encode(text, add_special_tokens=False).ids == \
        trained.tokenizer.encode(text, add_special_tokens=False).ids
    assert corpus_tokenizer_identity(trained).differs(loss_identity(tokenizer=templated).tokenizer) is None
    assert loss_identity(tokenizer=templated, text=trained.directory).given  # not refused as another tokenizer
