"""The split a teacher run trained on, one rule for every reader of text beside it (`data.trained_split`):
`plan --teacher-model RUN` and `teacher --candidates RUN` refuse, in one line, a law whose runs split
with a larger validation fraction than the teacher (its validation split would take pieces the teacher
trained on, and the teacher's loss there come out low), and say how to calibrate on the teacher's split;
a law of more or less of the teacher's corpus (another max_bytes) holds none of its training text, and
is read. `loss RUN --data CORPUS` splits the corpus as the run did unless told otherwise, and refuses a
split that would take its training text."""

from __future__ import annotations

import dataclasses
import json

import pytest

import distillscale as ds
from distillscale.data.loss_identity import prepared_loss_identity
from distillscale.laws.lawset import ComputeSettings

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

RUN = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--vocab-size", "300", "--tokens", "2k",
       "--batch-size", "4", "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu", "--seq-len", "16")
PART = 60_000  # the teacher's --max-bytes: about half its corpus


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny teacher run of the first PART bytes of its corpus, and the corpus."""
    import random

    from distillscale.cli import main

    rng = random.Random(2)
    words = ["".join(rng.choice("etaoinshrdlucmfw") for _ in range(rng.randint(2, 7))) for _ in range(300)]
    corpus = tmp_path_factory.mktemp("corpus")
    for i in range(40):
        (corpus / f"{i:03d}.txt").write_text(" ".join(rng.choice(words) for _ in range(rng.randint(400, 600))) + "\n")
    run = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train", "--out", str(run), "--data", str(corpus), "--max-bytes", str(PART), *RUN]) == 0
    return run, corpus


def _law(teacher, tmp_path, max_bytes, val_fraction=0.05):
    """A law whose losses are the teacher's tokenizer on the corpus split with `max_bytes` and `val_fraction`
    (what a sweep on that corpus records); returns its file and the prepared split."""
    from distillscale.data import DataConfig, prepare_data

    run, corpus = teacher
    prepared = prepare_data(DataConfig(path=str(corpus), tokenizer=str(run), max_bytes=max_bytes,
                                       val_fraction=val_fraction), progress=False)
    laws = ds.load_laws("busbridge2025")
    laws.name, laws.losses = "mine", prepared_loss_identity(prepared)
    laws.compute = ComputeSettings(16, prepared.vocab_size, 64.0)
    # its losses halved, as a sweep on this corpus would find them: a 5K-parameter student's below a
    # uniform guess over the 300 ids (5.70), where a plan may print it
    law = laws.supervised   # L = E + (A N^-alpha + B D^-beta)^gamma: each term halved
    supervised = dataclasses.replace(law, E=law.E / 2, A=law.A * 0.5 ** (1 / law.gamma),
                                     B=law.B * 0.5 ** (1 / law.gamma))
    laws.supervised = supervised
    laws.distillation = dataclasses.replace(laws.distillation, student_law=supervised)
    path = tmp_path / f"law-{max_bytes}-{val_fraction}.json"
    laws.save(path)
    return path, prepared


def _refused(cli, *args) -> str:
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return " ".join(err.split())


def test_a_law_that_splits_the_teachers_corpus_otherwise_is_refused(cli, teacher, tmp_path):
    run, corpus = teacher
    law, _ = _law(teacher, tmp_path, PART, val_fraction=0.2)  # its validation split takes the teacher's text
    said = _refused(cli, "plan", "--law", law, "--compute", "1e12", "--student-params", "5K", "--teacher-model", run)
    assert f"the law splits its corpus otherwise than teacher {run} did" in said
    assert "val_fraction 0.2 (the teacher's 0.05)" in said   # a setting the user never gave: not a flag
    assert f"`distillscale demo --data {corpus} --teacher {run}`" in said
    said = _refused(cli, "teacher", "--law", law, "--student-params", "5K", "--student-tokens", "1M",
                    "--candidates", run)
    assert "the law splits its corpus otherwise than teacher" in said
    law, _ = _law(teacher, tmp_path, None)  # the whole corpus, read further than the teacher: none of its text
    code, _, err = cli("plan", "--law", law, "--compute", "1e12", "--student-params", "5K", "--teacher-model", run)
    assert code == 0, err


def test_a_law_on_the_teachers_split_plans_for_it(cli, teacher, tmp_path):
    run, _ = teacher
    law, prepared = _law(teacher, tmp_path, PART)
    code, out, err = cli("plan", "--law", law, "--compute", "1e12", "--student-params", "5K", "--teacher-model", run,
                         "--json")
    assert code == 0, err
    code, measured, err = cli("loss", run, "--data", prepared.directory, "--seq-len", "16", "--json")
    assert code == 0, err
    assert json.loads(out)["teacher_model"]["loss"] == json.loads(measured)["nats_per_token"]


def test_loss_splits_a_runs_corpus_as_the_run_did(cli, teacher, tmp_path):
    run, corpus = teacher
    code, out, err = cli("loss", run, "--data", corpus, "--json")
    assert code == 0, err
    named = json.loads(out)
    code, out, err = cli("loss", run, "--json")  # its own corpus, as it trained
    assert code == 0, err
    assert json.loads(out)["losses"]["text"] == named["losses"]["text"]
    code, _, err = cli("loss", run, "--data", corpus, "--max-bytes", "30000")   # less of it: none of its text
    assert code == 0, err
    said = _refused(cli, "loss", run, "--data", corpus, "--val-fraction", "0.2")
    assert f"the measurement splits its corpus otherwise than model {run} did" in said
    assert "--val-fraction 0.2 (the model's 0.05)" in said and "leave out --val-fraction" in said
    _, larger = _law(teacher, tmp_path, None, val_fraction=0.2)
    said = _refused(cli, "loss", run, "--data", larger.directory)
    assert f"--data {larger.directory} splits its corpus otherwise than model {run}" in said


def test_a_teacher_of_an_earlier_version_is_planned_for_when_told_the_laws_corpus_is_another(cli, teacher, tmp_path):
    import shutil

    run, _ = teacher
    old = tmp_path / "old"
    shutil.copytree(run, old)
    record = json.loads((old / "config.json").read_text())
    record["plan"].pop("corpus")   # as an earlier version recorded it: its split cannot be repeated
    (old / "config.json").write_text(json.dumps(record))
    law, _ = _law(teacher, tmp_path, PART)
    args = ("plan", "--law", law, "--compute", "1e12", "--student-params", "5K", "--teacher-model", old)
    said = _refused(cli, *args)
    assert f"teacher {old} was trained by an earlier version" in said and "--other-corpus" in said
    code, out, err = cli(*args, "--other-corpus", "--json")
    assert code == 0, err
    assert json.loads(out)["teacher_model"]["loss"] > 0
    ranking = ("teacher", "--law", law, "--student-params", "5K", "--student-tokens", "1M", "--candidates", old)
    assert "--other-corpus" in _refused(cli, *ranking)
    code, _, err = cli(*ranking, "--other-corpus")
    assert code == 0, err
