"""A directory `data prepare` made, given as a command's --data, is that corpus (its tokenizer and split),
never text: `train` trains on it as `loss` measures on it, a setting that would tokenise or split it
otherwise is refused in one line; and a preparation this version cannot read is refused (when given)
and prepared again (when found in the cache) for one reason, said the same way."""

from __future__ import annotations

import json
import random

import pytest

from distillscale.data import DataConfig, prepare_data
from distillscale.data.sources import resolve_corpus
from distillscale.errors import UserError

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

RUN = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "2k", "--batch-size", "4",
       "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu", "--seq-len", "16")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, cache_dir):
    """A small text corpus prepared with `data prepare` (a BPE of 300 ids), and its directory."""
    rng = random.Random(3)
    words = ["".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(2, 6))) for _ in range(200)]
    corpus = tmp_path_factory.mktemp("corpus")
    for i in range(40):
        (corpus / f"{i:03d}.txt").write_text(" ".join(rng.choice(words) for _ in range(300)) + "\n")
    return corpus, prepare_data(DataConfig(path=str(corpus), vocab_size=300), progress=False)


def test_train_on_a_prepared_directory_trains_on_that_corpus(cli, prepared, tmp_path):
    _, data = prepared
    code, _, err = cli("train", "--out", tmp_path / "run", "--data", data.directory, *RUN)
    assert code == 0, err
    plan = json.loads((tmp_path / "run" / "config.json").read_text())["plan"]
    assert plan["data_fingerprint"] == data.fingerprint  # its splits, not a new corpus read from its files
    assert (tmp_path / "run" / "tokenizer.json").read_bytes() == (data.directory / "tokenizer.json").read_bytes()
    assert "documents" not in err and "dominates" not in err  # no corpus read, no warning about its files
    # `loss` on the run finds the run's data where it trained: the prepared directory itself
    code, out, err = cli("loss", tmp_path / "run", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["losses"]["text"]["directory"] == str(data.directory.resolve())
    assert record["nats_per_token"] == pytest.approx(json.loads((tmp_path / "run" / "result.json").read_text())
                                                     ["val_loss"], abs=2e-6)


def test_settings_that_would_prepare_it_otherwise_are_refused_in_one_line(cli, prepared, tmp_path):
    corpus, data = prepared
    for flags, named in ((("--vocab-size", "512"), "--vocab-size 512"), (("--val-fraction", "0.2"), "--val-fraction 0.2"),
                         (("--max-bytes", "10k"), "--max-bytes 10000")):
        code, _, err = cli("train", "--out", tmp_path / "run", "--data", data.directory, *flags, *RUN)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert named in err and "prepared already" in err
    assert not (tmp_path / "run").exists()
    # a tokenizer whose ids are the corpus's is the corpus's own: taken
    same = DataConfig(path=str(data.directory), tokenizer=str(data.directory / "tokenizer.json"))
    assert prepare_data(same, progress=False).fingerprint == data.fingerprint
    other = prepare_data(DataConfig(path=str(corpus), vocab_size=280), progress=False)
    with pytest.raises(UserError, match="another tokenizer|280 ids"):
        prepare_data(DataConfig(path=str(data.directory), tokenizer=str(other.directory / "tokenizer.json")))


def test_a_prepared_directory_is_never_read_as_text(prepared):
    _, data = prepared
    with pytest.raises(UserError, match="data prepare` made"):
        resolve_corpus(str(data.directory))


def test_an_older_preparation_is_refused_and_prepared_again_for_the_same_reason(cli, prepared, tmp_path,
                                                                             monkeypatch, capsys):
    """A preparation of an earlier version (here: without the bytes behind its tokens) cannot be read:
    given as --data it is refused saying so and how to prepare it again; found in the cache it is
    prepared again, saying the same."""
    import shutil

    corpus, data = prepared
    cache = tmp_path / "cache"
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(cache))
    fresh = prepare_data(DataConfig(path=str(corpus), vocab_size=300), progress=False)
    manifest = json.loads((fresh.directory / "manifest.json").read_text())
    del manifest["token_bytes"]
    (fresh.directory / "manifest.json").write_text(json.dumps(manifest))
    old = tmp_path / "old"
    shutil.copytree(fresh.directory, old)
    code, _, err = cli("train", "--out", tmp_path / "run", "--data", old, *RUN)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    reason = "an earlier version prepared it, keeping no record of the bytes behind its tokens"
    assert reason in err and "format distillscale.data/2" not in err
    assert f"distillscale data prepare --data {corpus} --vocab-size 300" in err
    capsys.readouterr()
    again = prepare_data(DataConfig(path=str(corpus), vocab_size=300), progress=False)
    said = capsys.readouterr().err
    assert not again.reused and "token_bytes" in again.manifest
    assert reason in " ".join(said.split()) and "preparing it again" in " ".join(said.split())


def test_a_run_whose_prepared_directory_is_gone_says_so_and_what_to_give(cli, prepared, tmp_path):
    """Its readers with no --data of their own (`loss RUN`, a student of its own corpus) name the
    directory the run read, and what to give instead, in one line; given the corpus, they read it."""
    import shutil

    corpus, data = prepared
    mine = tmp_path / "prepared"
    shutil.copytree(data.directory, mine)
    code, _, err = cli("train", "--out", tmp_path / "run", "--data", mine, *RUN)
    assert code == 0, err
    shutil.rmtree(mine)
    for args, role in ((("loss", tmp_path / "run"), "run"),
                       (("distill", "--teacher", tmp_path / "run", "--out", tmp_path / "student", *RUN), "teacher")):
        code, _, err = cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert f"{role} {tmp_path / 'run'} trained on data read from {mine}, which is no longer there" in err
        assert "give --data" in err
    assert not (tmp_path / "student").exists()
    code, _, err = cli("loss", tmp_path / "run", "--data", corpus)
    assert code == 0, err
