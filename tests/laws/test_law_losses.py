"""Every law file says what its losses are (nats/token of which tokenizer, on which text): presets from
their papers, fits from the option given (or "not given", said once), old files as "not given"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import distillscale as ds
from distillscale.data.loss_identity import LossIdentity, TextIdentity
from tests.conftest import TEST_DATA


def test_presets_declare_the_tokenizer_and_text_of_their_papers():
    busbridge = ds.load_laws("busbridge2025").losses
    assert busbridge.tokenizer.vocab_size == 32168 and "C4" in busbridge.text.name
    assert busbridge.tokenizer.vocab_sha256 is None  # the paper's tokenizer was not published
    for name in ("chinchilla2022", "epoch2024"):
        losses = ds.load_laws(name).losses
        assert losses.tokenizer.vocab_size == 32000 and "MassiveText" in losses.text.name
    assert ds.load_laws("busbridge2025").spec == "busbridge2025"  # still the preset, unchanged


def test_old_law_files_load_as_not_given_and_saved_files_keep_the_identity(tmp_path):
    old = ds.load_laws(TEST_DATA / "records" / "law-fitted-2026-11-23.json")
    assert old.losses == LossIdentity() and "not given" in old.losses.describe()
    old.losses = LossIdentity(text=TextIdentity(name="my corpus"))
    old.save(tmp_path / "law.json")
    assert ds.load_laws(tmp_path / "law.json").losses == old.losses
    record = json.loads((tmp_path / "law.json").read_text())
    record["losses"]["tokenizer"] = {"name": "x", "vocab_size": -3}
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(ds.UserError, match="losses.tokenizer.vocab_size"):
        ds.load_laws(tmp_path / "bad.json")


def test_fit_records_the_losses_it_is_told_and_says_once_when_it_is_not(tmp_path, cli):
    runs = tmp_path / "runs.csv"
    runs.write_text("params,tokens,loss\n" + "\n".join(
        f"{n:g},{n * r:g},{1.8 + 400 / n ** 0.34 + 400 / (n * r) ** 0.28}"
        for n in (1e6, 2e6, 4e6, 8e6) for r in (5, 10, 20, 40)) + "\n")
    base = ["fit", "supervised", runs, "--bootstrap", "0", "--form", "chinchilla", "--no-backtest"]
    code, _, err = cli(*base, "--out", tmp_path / "plain.json")
    assert code == 0, err
    assert err.count("not given") == 1 and "--tokenizer and --text" in err
    assert ds.load_laws(tmp_path / "plain.json").losses == LossIdentity()
    code, out, err = cli(*base, "--text", "C4 en validation", "--json", "--out", tmp_path / "named.json")
    assert code == 0, err
    assert json.loads(out)["losses"]["text"] == {"name": "C4 en validation"}
    assert ds.load_laws(tmp_path / "named.json").losses.text.name == "C4 en validation"
    code, _, err = cli(*base, "--text", tmp_path)  # a directory that is no prepared corpus
    assert code == 2 and "is not a prepared corpus" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_fit_from_python_records_its_losses(tmp_path):
    fit = ds.fit_supervised({"params": [1e6, 2e6, 4e6, 1e6, 2e6, 4e6], "tokens": [1e7, 2e7, 4e7, 4e7, 8e7, 1.6e8],
                             "loss": [3.1, 2.9, 2.75, 2.95, 2.8, 2.6]}, form="chinchilla", bootstrap=0, backtest=False)
    losses = ds.loss_identity(text="my corpus")
    assert fit.laws("mine", losses=losses).losses == losses
    fit.save(tmp_path / "law.json", losses=losses)
    assert ds.load_laws(tmp_path / "law.json").losses == losses


def test_predict_json_gives_bits_per_byte_of_the_laws_text(tmp_path, cli, monkeypatch):
    import math

    from distillscale.data import DataConfig, prepare_data
    from distillscale.data.loss_identity import prepared_loss_identity

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"{i}.txt").write_text(f"document {i}: " + "the quick brown fox jumps over the lazy dog " * (10 + i))
    laws = ds.load_laws("busbridge2025")
    laws.name, laws.losses = "mine", prepared_loss_identity(prepare_data(DataConfig(path=str(corpus), vocab_size=300),
                                                                         progress=False))
    laws.save(tmp_path / "law.json")
    code, out, err = cli("predict", "supervised", "--law", tmp_path / "law.json", "--params", "1B", "--tokens", "20B",
                         "--json")
    assert code == 0, err
    record = json.loads(out)
    text = record["losses"]["identity"]["text"]
    assert record["losses"]["bits_per_byte"]["loss"]["loss"] == pytest.approx(
        record["loss"] * text["tokens"] / text["bytes"] / math.log(2))
    code, out, _ = cli("predict", "distillation", "--law", tmp_path / "law.json", "--student-params", "1B",
                       "--student-tokens", "20B", "--teacher-loss", "2.2", "--json")
    bits = json.loads(out)["losses"]["bits_per_byte"]
    assert bits["teacher_loss"]["loss"] == pytest.approx(2.2 * text["tokens"] / text["bytes"] / math.log(2))


def test_a_fit_in_a_tokenizer_prices_with_its_vocabulary_and_keeps_its_split_from_any_directory(tmp_path, cli,
                                                                                               monkeypatch):
    import os

    from distillscale.data import DataConfig, prepare_data

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"{i}.txt").write_text(f"document {i}: " + "the quick brown fox jumps over the lazy dog " * (10 + i))
    prepared = prepare_data(DataConfig(path=str(corpus), vocab_size=300), progress=False)
    runs = tmp_path / "runs.csv"
    runs.write_text("params,tokens,loss\n" + "\n".join(
        f"{n:g},{n * r:g},{1.8 + 400 / n ** 0.34 + 400 / (n * r) ** 0.28}"
        for n in (1e6, 2e6, 4e6, 8e6) for r in (5, 10, 20, 40)) + "\n")
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(prepared.directory, tmp_path)
    code, _, err = cli("fit", "supervised", runs, "--bootstrap", "0", "--form", "chinchilla", "--no-backtest",
                       "--text", relative, "--n-ctx", "128", "--out", "law.json")
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    laws = ds.load_laws("../law.json")
    assert (laws.compute.n_vocab, laws.compute.n_ctx) == (prepared.vocab_size, 128)  # not the preset's 32,168
    assert Path(laws.losses.text.directory) == Path(prepared.directory).resolve()
    # a law file written with a relative split: relative to the file, wherever it is read from
    record = json.loads((tmp_path / "law.json").read_text())
    record["losses"]["text"]["directory"] = relative
    (tmp_path / "relative.json").write_text(json.dumps(record))
    assert Path(ds.load_laws("../relative.json").losses.text.directory) == Path(prepared.directory).resolve()
