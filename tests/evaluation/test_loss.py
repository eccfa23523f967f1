"""`distillscale loss`: a model's cross-entropy on a corpus's validation split in nats/token and bits per
byte. On a run it is the run's recorded val_loss again; a Hugging Face export of the run, on the same
corpus split the same way, gives the same number; a served copy too; a measurement is kept and resumed;
bad input is one line."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from distillscale.data.loss_identity import LossRecord

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

CORPUS = ("--max-bytes", "300k", "--seq-len", "32")
RUN = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", "320", "--tokens", "10k",
       "--batch-size", "8", "--eval-tokens", "4k", "--eval-every", "0", "--device", "cpu", *CORPUS)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("etaoinshrdlucmfw") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(120):
        picked = [rng.choice(words[:50] if rng.random() < 0.6 else words) for _ in range(rng.randint(400, 900))]
        (folder / f"{i:03d}.txt").write_text(" ".join(picked) + "\n")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus):
    from distillscale.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), "--data", str(corpus), *RUN]) == 0
    return out


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    from distillscale.cli import main

    out = tmp_path_factory.mktemp("hf") / "model"
    assert main(["export-hf", str(run), str(out)]) == 0
    return out


def test_loss_of_a_run_is_its_recorded_val_loss_with_bits_per_byte(cli, run, tmp_path):
    code, out, err = cli("loss", run, "--json", "--out", tmp_path / "loss.json")
    assert code == 0, err
    record = json.loads(out)
    result = json.loads((run / "result.json").read_text())
    assert record["nats_per_token"] == pytest.approx(result["val_loss"], abs=2e-6)
    assert record["tokens"] == 4000 and record["windows"] == 125 and record["seq_len"] == 32  # the run's cap
    text = record["losses"]["text"]
    assert text["split"] == "val" and text["tokens"] == result["splits"]["val"]["tokens"]
    # bits per byte = nats/token x tokens/bytes / ln 2, at the split's bytes per token
    assert record["bits_per_byte"] == pytest.approx(record["nats_per_token"] * text["tokens"] / text["bytes"] / math.log(2))
    assert record["bytes"] == pytest.approx(record["tokens"] * text["bytes"] / text["tokens"])
    assert 0 < record["standard_error"] < 0.1 and record["tokens_per_second"] > 0
    assert LossRecord.load(tmp_path / "loss.json").nats_per_token == record["nats_per_token"]
    again = cli("loss", run, "--json", "--out", tmp_path / "loss.json")  # kept: the same record, at once
    assert again[0] == 0 and json.loads(again[1])["created"] == record["created"]


def test_an_export_on_the_runs_corpus_split_the_same_way_has_the_same_loss(cli, run, exported, corpus):
    code, out, err = cli("loss", exported, "--data", corpus, "--max-tokens", "4k", *CORPUS, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["model_kind"] == "hf" and (exported / "loss.json").is_file()
    assert record["nats_per_token"] == pytest.approx(json.loads((run / "result.json").read_text())["val_loss"], abs=2e-5)
    text = cli("loss", exported, "--data", corpus, "--max-tokens", "4k", *CORPUS)[1]
    assert "nats/token" in text and "bits/byte" in text and "tokens/s" in text
    for line in text.splitlines():
        assert len(line) <= 80


def test_an_interrupted_measurement_resumes_from_the_windows_it_kept(cli, run, tmp_path, monkeypatch):
    from distillscale.evaluation import loss as loss_module

    reference = json.loads(cli("loss", run, "--json", "--out", tmp_path / "a.json", "--seq-len", "16")[1])
    for kept in loss_module.Path(reference["losses"]["text"]["directory"]).glob("losses/*.json"):
        kept.unlink()
    calls = []
    real = loss_module._LocalScorer.__call__

    def interrupted(self, inputs, targets):
        calls.append(len(inputs))
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, inputs, targets)

    monkeypatch.setattr(loss_module, "SAVE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(loss_module._LocalScorer, "__call__", interrupted)
    code, _, err = cli("loss", run, "--out", tmp_path / "b.json", "--seq-len", "16")
    assert code == 130 and not (tmp_path / "b.json").exists()
    monkeypatch.setattr(loss_module._LocalScorer, "__call__", real)
    scored = []
    monkeypatch.setattr(loss_module._LocalScorer, "__call__", lambda self, i, t: scored.append(len(i)) or real(self, i, t))
    code, out, err = cli("loss", run, "--json", "--out", tmp_path / "b.json", "--seq-len", "16")
    assert code == 0, err
    resumed = json.loads(out)
    assert sum(scored) == reference["windows"] - 4 * 8  # the four batches kept are not scored again
    assert resumed["nats_per_token"] == pytest.approx(reference["nats_per_token"], abs=1e-9)


def test_bad_models_and_data_are_one_line_and_exit_2(cli, exported, corpus, tmp_path, monkeypatch):
    def refused(*args, words):
        code, _, err = cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        for word in words:
            assert word in err, err

    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    refused("loss", bare, "--data", corpus, words=["has no tokenizer", "save its tokenizer"])
    remote = tmp_path / "remote"
    shutil.copytree(exported, remote)
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "x.Model"}}))
    refused("loss", remote, "--data", corpus, words=["needs its own code", "--trust-remote-code"])
    refused("loss", exported, words=["give --data"])
    refused("loss", "http://127.0.0.1:9/v1", "--data", corpus, words=["--out"])
    from distillscale.data import DataConfig, prepare_data  # a corpus prepared with another tokenizer

    prepared = prepare_data(DataConfig(path=str(corpus), vocab_size=300, max_bytes=100_000), progress=False)
    refused("loss", exported, "--data", prepared.directory, words=["another tokenizer", "data prepare --tokenizer"])
    from distillscale.evaluation import loss as loss_module

    monkeypatch.setattr(loss_module, "_available_memory", lambda device: 1e3)
    refused("loss", exported, "--data", corpus, *CORPUS, "--out", tmp_path / "x.json",
            words=["too large", "MB", "FLOPs", "about"])


def test_a_served_copy_of_the_run_has_its_loss(cli, run, corpus, tmp_path):
    from distillscale.serve.teacher import TeacherService, make_teacher_server
    from tests.training.test_served_teacher import Serving

    serving = Serving(make_teacher_server(TeacherService(run, top_k=4)))
    try:
        code, out, err = cli("loss", serving.url, "--tokenizer", run / "tokenizer.json", "--data", corpus, *CORPUS,
                             "--max-tokens", "4k", "--out", tmp_path / "served.json", "--json")
    finally:
        serving.stop()
    assert code == 0, err
    record = json.loads(out)
    assert record["model_kind"] == "server" and record["tokens"] == 4000
    # the server's log-probabilities, rounded for JSON, of the same windows
    assert record["nats_per_token"] == pytest.approx(json.loads((run / "result.json").read_text())["val_loss"], abs=1e-4)
