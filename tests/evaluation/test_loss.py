"""`distillscale loss`: a model's cross-entropy on a corpus's validation split in nats/token and bits per
byte. On a run it is the run's recorded val_loss again; a Hugging Face export of the run, on the same
corpus split the same way, gives the same number; a served copy too; a measurement is kept and resumed;
bad input is one line."""

from __future__ import annotations

import json
import math
import shutil
import time

import pytest

from distillscale.data.loss_record import LossRecord

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
    # bits per byte = nats/token x tokens/bytes / ln 2, over the UTF-8 bytes of exactly the tokens scored
    assert record["bits_per_byte"] == pytest.approx(record["nats_per_token"] * record["tokens"] / record["bytes"]
                                                    / math.log(2))
    assert record["bytes"] == pytest.approx(record["tokens"] * text["bytes"] / text["tokens"], rel=0.1)
    assert 0 < record["standard_error"] < 0.1 and 0 < record["bits_per_byte_standard_error"] < 0.1
    assert record["tokens_per_second"] == pytest.approx(record["tokens"] / record["seconds"])
    assert not any(p.name == "loss.json" for p in run.iterdir())  # never in the model's directory
    assert LossRecord.load(tmp_path / "loss.json").nats_per_token == record["nats_per_token"]
    again = cli("loss", run, "--json", "--out", tmp_path / "loss.json")  # kept: the same record, at once
    assert again[0] == 0 and json.loads(again[1])["created"] == record["created"]


def test_a_loss_read_back_from_the_cache_says_so_and_when_it_was_measured(cli, run, tmp_path):
    from datetime import datetime, timezone

    args = ("loss", run, "--seq-len", "8", "--max-tokens", "800")
    code, out, err = cli(*args, "--out", tmp_path / "first.json")  # measured now
    assert code == 0, err
    measured = LossRecord.load(tmp_path / "first.json")
    text = " ".join(out.split())
    assert not measured.from_cache and "cache" not in text and f"{measured.seconds:,.1f} s on cpu" in text, text
    code, out, err = cli(*args, "--json", "--out", tmp_path / "again.json")  # asked again: the kept one
    assert code == 0, err
    kept = json.loads(out)
    assert kept["from_cache"] is True and LossRecord.load(tmp_path / "again.json").from_cache
    assert (kept["created"], kept["seconds"]) == (measured.created, measured.seconds)  # when and how it was measured
    when = datetime.fromisoformat(measured.created).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = " ".join(cli(*args)[1].replace("│", " ").split())  # the table's rows, their wrapped lines joined
    assert f"from distillscale's cache, measured {when} in {measured.seconds:,.1f} s on cpu" in text, text


def test_an_export_on_the_runs_corpus_split_the_same_way_has_the_same_loss(cli, run, exported, corpus):
    code, out, err = cli("loss", exported, "--data", corpus, "--max-tokens", "4k", *CORPUS, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["model_kind"] == "hf" and not (exported / "loss.json").exists()
    assert record["nats_per_token"] == pytest.approx(json.loads((run / "result.json").read_text())["val_loss"], abs=2e-5)
    text = cli("loss", exported, "--data", corpus, "--max-tokens", "4k", *CORPUS)[1]
    assert "nats/token" in text and "bits/byte" in text and "tokens/s" in text
    for line in text.splitlines():
        assert len(line) <= 80


def test_an_interrupted_measurement_resumes_from_the_windows_it_kept(cli, run, tmp_path, monkeypatch):
    from distillscale.data.loss_record import MeasurementCache
    from distillscale.evaluation import scoring

    reference = json.loads(cli("loss", run, "--json", "--out", tmp_path / "a.json", "--seq-len", "16")[1])
    shutil.rmtree(MeasurementCache().root)
    calls = []
    real = scoring.LocalScorer.__call__

    def interrupted(self, inputs, targets):  # four slow batches kept, then Ctrl-C
        calls.append(len(inputs))
        if len(calls) == 5:
            raise KeyboardInterrupt
        time.sleep(0.5)
        return real(self, inputs, targets)

    monkeypatch.setattr(scoring, "SAVE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(scoring.LocalScorer, "__call__", interrupted)
    code, _, err = cli("loss", run, "--out", tmp_path / "b.json", "--seq-len", "16")
    assert code == 130 and not (tmp_path / "b.json").exists()
    monkeypatch.setattr(scoring.LocalScorer, "__call__", real)
    scored = []
    monkeypatch.setattr(scoring.LocalScorer, "__call__", lambda self, i, t: scored.append(len(i)) or real(self, i, t))
    code, out, err = cli("loss", run, "--json", "--out", tmp_path / "b.json", "--seq-len", "16")
    assert code == 0, err
    resumed = json.loads(out)
    assert sum(scored) == reference["windows"] - 4 * 8  # the four batches kept are not scored again
    assert resumed["nats_per_token"] == pytest.approx(reference["nats_per_token"], abs=1e-9)
    assert resumed["bits_per_byte"] == pytest.approx(reference["bits_per_byte"], abs=1e-9)
    # the throughput of the whole measurement: every window over both parts' time, not the second's alone
    assert resumed["tokens_per_second"] == pytest.approx(resumed["tokens"] / resumed["seconds"])
    assert resumed["seconds"] >= 2.0 + 0.5 * reference["seconds"]


def test_ctrl_c_before_the_first_save_keeps_what_was_scored_and_says_so(cli, run, tmp_path, monkeypatch):
    """Interrupted within the first SAVE_EVERY_SECONDS (nothing saved on the clock yet), the windows
    scored are kept, said in one line, and the same command resumes from them; interrupted before a
    window is scored, it says nothing was kept."""
    from distillscale.data.loss_record import MeasurementCache
    from distillscale.evaluation import scoring

    assert scoring.SAVE_EVERY_SECONDS >= 30
    real = scoring.LocalScorer.__call__
    calls = []

    def interrupted_at(batch):
        def score(self, inputs, targets):
            calls.append(len(inputs))
            if len(calls) == batch:
                raise KeyboardInterrupt
            return real(self, inputs, targets)
        return score

    shutil.rmtree(MeasurementCache().root, ignore_errors=True)
    monkeypatch.setattr(scoring.LocalScorer, "__call__", interrupted_at(1))
    code, _, err = cli("loss", run, "--seq-len", "16")
    assert code == 130 and "scoring interrupted before a window was scored: nothing kept" in err
    calls.clear()
    monkeypatch.setattr(scoring.LocalScorer, "__call__", interrupted_at(3))   # two batches of 8 scored
    code, _, err = cli("loss", run, "--seq-len", "16")
    assert code == 130 and "scoring interrupted: the 16 of " in " ".join(err.split()), err
    scored = []
    monkeypatch.setattr(scoring.LocalScorer, "__call__", lambda self, i, t: scored.append(len(i)) or real(self, i, t))
    code, out, err = cli("loss", run, "--json", "--seq-len", "16")
    assert code == 0, err
    assert sum(scored) == json.loads(out)["windows"] - 16   # the two batches kept are not scored again


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
    refused("loss", "http://127.0.0.1:9/v1", "--data", corpus, words=["--tokenizer"])
    from distillscale.data import DataConfig, prepare_data  # a corpus prepared with another tokenizer

    prepared = prepare_data(DataConfig(path=str(corpus), vocab_size=300, max_bytes=100_000), progress=False)
    refused("loss", exported, "--data", prepared.directory, words=["another tokenizer", "data prepare --tokenizer"])
    from distillscale.evaluation import cost

    monkeypatch.setattr(cost, "available_memory", lambda device: 1e3)
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


def _other_weights(exported, out):
    """A copy of the export with other weights (each tensor scaled), the same tokenizer and config."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(exported, out)
    tensors = load_file(str(out / "model.safetensors"))
    save_file({name: (value * 1.7).contiguous() for name, value in tensors.items()}, str(out / "model.safetensors"))
    return out


def test_another_model_served_at_the_same_address_is_measured_anew(cli, run, exported, corpus, tmp_path):
    from distillscale.serve.teacher import TeacherService, make_teacher_server
    from tests.training.test_served_teacher import Serving

    other = _other_weights(exported, tmp_path / "other")
    measured = []
    port = 0
    for model in (run, other):
        serving = Serving(make_teacher_server(TeacherService(model, top_k=4), port=port))
        port = serving.port
        try:
            code, out, err = cli("loss", serving.url, "--tokenizer", run / "tokenizer.json", "--data", corpus, *CORPUS,
                                 "--max-tokens", "4k", "--json")
        finally:
            serving.stop()
        assert code == 0, err
        measured.append(json.loads(out))
    assert measured[0]["model_fingerprint"] != measured[1]["model_fingerprint"]
    local = json.loads(cli("loss", other, "--data", corpus, *CORPUS, "--max-tokens", "4k", "--json")[1])
    assert measured[1]["nats_per_token"] == pytest.approx(local["nats_per_token"], abs=1e-3)
    assert abs(measured[1]["nats_per_token"] - measured[0]["nats_per_token"]) > 0.05


def test_a_measurement_is_kept_in_the_cache_by_device_and_precision_never_in_the_models_directory(
        cli, exported, corpus, tmp_path, monkeypatch):
    from distillscale.data.loss_record import MeasurementCache, MeasurementKey

    before = sorted(p.name for p in exported.iterdir())
    first = json.loads(cli("loss", exported, "--data", corpus, *CORPUS, "--max-tokens", "2k", "--json")[1])
    assert sorted(p.name for p in exported.iterdir()) == before  # nothing written beside the weights
    record = MeasurementCache().find_any(MeasurementKey.of(first["model_fingerprint"], _identity(first), 32, 2000,
                                                           "any", "any"))
    assert record is not None and record.created == first["created"]
    key = MeasurementKey.of(first["model_fingerprint"], _identity(first), 32, 2000, "cpu", "float32")
    assert MeasurementCache().find(key) is not None
    assert MeasurementCache().find(key.model_copy(update={"device": "cuda"})) is None  # another device: measured anew
    assert MeasurementCache().find(key.model_copy(update={"precision": "bf16 autocast"})) is None
    # a cache that cannot be written: the result all the same, the temporary cache said once
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(blocked / "cache"))
    prepared = first["losses"]["text"]["directory"]
    code, out, err = cli("loss", exported, "--data", prepared, "--seq-len", "32", "--max-tokens", "1k", "--json")
    assert code == 0 and 900 < json.loads(out)["tokens"] <= 1000, err
    assert err.count("cannot be written") == 1 and "DISTILLSCALE_CACHE" in err


def _identity(record: dict):
    from distillscale.data.loss_identity import LossIdentity

    return LossIdentity.from_json(record["losses"])


def test_a_bad_split_fraction_is_one_line(cli, exported, corpus):
    for value in ("1.5", "0", "nan", "-0.1", "inf"):
        code, _, err = cli("loss", exported, "--data", corpus, "--val-fraction", value)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--val-fraction" in err, (value, err)


def test_a_server_is_measured_within_its_context_as_a_local_model_is(cli, run, corpus, tmp_path):
    """`loss URL` with no --seq-len: its default window is capped to what the server takes (its
    max_model_len less the token after the window), as a local model's is to its context, and said; a
    longer --seq-len is capped the same way, not refused."""
    from distillscale.serve.teacher import TeacherService, make_teacher_server
    from tests.training.test_served_teacher import Serving

    serving = Serving(make_teacher_server(TeacherService(run, top_k=4)))
    try:
        said = []
        for window in ((), ("--seq-len", "64")):
            out = tmp_path / f"served{len(window)}.json"
            code, _, err = cli("loss", serving.url, "--tokenizer", run / "tokenizer.json", "--data", corpus,
                               "--max-bytes", "300k", "--max-tokens", "2k", *window, "--out", out)
            assert code == 0, err
            assert LossRecord.load(out).seq_len == 32
            said.append(" ".join(err.split()))
    finally:
        serving.stop()
    assert "takes at most 32 tokens of context: measured in windows of 32, not the default 2048" in said[0]
    assert "takes at most 32 tokens of context: measured in windows of 32, not 64" in said[1]


def test_one_window_is_said_as_one_with_no_standard_error(cli, exported, corpus):
    code, out, err = cli("loss", exported, "--data", corpus, *CORPUS, "--max-tokens", "32")
    assert code == 0, err
    text = " ".join(out.split())
    assert "1 window of 32" in text and "windows" not in text and "nan" not in text
    assert "no standard error" in text
    record = json.loads(cli("loss", exported, "--data", corpus, *CORPUS, "--max-tokens", "32", "--json")[1])
    assert record["windows"] == 1 and record["standard_error"] is None
    assert record["bits_per_byte_standard_error"] is None


def test_a_loss_names_the_tokenizer_of_the_model_measured(cli, exported, corpus, tmp_path):
    """Two models of one tokenizer (the same file) share one preparation of the corpus; each one's
    loss names its own tokenizer, not the one that prepared the corpus first."""
    other = _other_weights(exported, tmp_path / "other")
    first = json.loads(cli("loss", exported, "--data", corpus, *CORPUS, "--max-tokens", "1k", "--json")[1])
    second = json.loads(cli("loss", other, "--data", corpus, *CORPUS, "--max-tokens", "1k", "--json")[1])
    assert first["losses"]["text"] == second["losses"]["text"]  # one preparation
    assert first["losses"]["tokenizer"]["name"] == str(exported.resolve())
    assert second["losses"]["tokenizer"]["name"] == str(other.resolve())
