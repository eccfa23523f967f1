"""A run's corpus is known by what it is, not by the path that named it (`data.trained_split`): a
teacher trained on part of a corpus named by a relative path, then read from another directory, from a
moved or a copied corpus, or trained on a `data prepare` directory of it, hands its readers its split,
and the student's validation split holds none of the teacher's training text. Each route measures
that text (the share of the reader's validation 12-grams found in the teacher's training tokens),
not only the exit status; a reader that cannot tell refuses in one line."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from distillscale.errors import UserError
from tests.data_pipeline.test_shared_text import overlap
from tests.report.test_demo_teacher_split import TINY
from tests.report.test_own_teacher import markov_corpus

PART = 30_000   # the teacher's --max-bytes: about a third of the corpus


def _run(*args: str) -> None:
    from distillscale.cli import main

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in args])
    assert code == 0, err.getvalue()[-2000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """w/corpus, and w/tt: a teacher trained from inside w on `--data corpus --max-bytes PART` (a relative
    path); the data cache under the root."""
    root = tmp_path_factory.mktemp("split-by-content")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        corpus = markov_corpus(root / "w" / "corpus", documents=60, words=300)
        patch.chdir(root / "w")
        _run("train", "--data", "corpus", "--max-bytes", PART, "--out", "tt", *TINY)
    return root, corpus, root / "w" / "tt"


def _distill_data(teacher: Path, data: Path):
    """The student's prepared data as `distill --teacher TEACHER --data DATA` resolves it."""
    from distillscale.data import prepare_data
    from distillscale.training.config import DistillConfig
    from distillscale.training.teachers import find_teacher, resolve_student_data

    config = DistillConfig.model_validate({"teacher": teacher, "data": data, "out": teacher.parent / "s",
                                           "n_layers": 1, "tokens": 512})
    return prepare_data(resolve_student_data(config, find_teacher(teacher)).data_config(), False)


def _loss_data(teacher: Path, data: Path):
    """The text `loss TEACHER --data DATA` scores the teacher on."""
    from distillscale.evaluation.loss_data import scored_data
    from distillscale.evaluation.model_argument import scored_model

    return scored_data(scored_model(teacher, False, None), data, None, None, None, False)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["relative", "moved", "copied"])
def test_a_corpus_named_another_way_keeps_the_teachers_split(world, route, tmp_path, monkeypatch):
    root, corpus, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    monkeypatch.chdir(tmp_path)   # the reader's directory, not the run's
    if route == "relative":
        data = Path(os.path.relpath(corpus, tmp_path))
    else:
        data = tmp_path / "elsewhere"
        shutil.copytree(corpus, data)
    try:
        if route == "moved":
            shutil.rmtree(corpus)
        for prepared in (_distill_data(teacher, data), _loss_data(teacher, data)):
            assert prepared.manifest["config"]["max_bytes"] == PART
            assert overlap(teacher, prepared) < 0.01
        # a reader of the whole corpus (not the teacher's first PART bytes) holds none either: each piece's
        # split is its own, whatever else is read
        from distillscale.data import DataConfig, prepare_data

        whole = prepare_data(DataConfig(path=str(data), tokenizer=str(teacher / "tokenizer.json")), False)
        assert overlap(teacher, whole) < 0.01 and len(whole.split("val")) > len(prepared.split("val"))
    finally:
        if route == "moved":
            shutil.copytree(data, corpus)


@pytest.mark.slow
def test_a_teacher_trained_on_a_prepared_directory_hands_on_the_preparations_split(world, tmp_path, monkeypatch):
    root, corpus, _ = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    monkeypatch.chdir(tmp_path)
    from distillscale.data import DataConfig, prepare_data

    prepared_dir = prepare_data(DataConfig(path=str(corpus), max_bytes=PART, vocab_size=300), False).directory
    teacher = tmp_path / "tP"
    _run("train", "--data", prepared_dir, "--out", teacher, *[a for a in TINY if a not in ("--vocab-size", "300")])
    record = json.loads((teacher / "config.json").read_text())
    assert record["config"].get("max_bytes") is None and record["plan"]["corpus"]["max_bytes"] == PART
    for prepared in (_distill_data(teacher, corpus), _loss_data(teacher, corpus)):
        assert prepared.manifest["config"]["max_bytes"] == PART
        assert overlap(teacher, prepared) < 0.01


@pytest.mark.slow
def test_a_run_given_a_prepared_directory_by_a_relative_path_is_read_from_anywhere(world, tmp_path, monkeypatch,
                                                                                    cli):
    """The run records the prepared directory as it resolved: `loss RUN` and a student of the run's own
    data, from another directory, read that preparation (its tokenizer, its split), not its corpus."""
    root, corpus, _ = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    from distillscale.data import DataConfig, prepare_data
    from distillscale.training.run_dir import RunDirectory

    prepared_dir = prepare_data(DataConfig(path=str(corpus), max_bytes=PART, vocab_size=300), False).directory
    monkeypatch.chdir(prepared_dir.parent)
    teacher = tmp_path / "tR"
    _run("train", "--data", prepared_dir.name, "--out", teacher, *[a for a in TINY if a not in ("--vocab-size", "300")])
    monkeypatch.chdir(tmp_path)
    assert RunDirectory(teacher).recorded_data()[0].path == str(prepared_dir.resolve())
    code, out, err = cli("loss", teacher, "--json")
    assert code == 0, err
    assert json.loads(out)["nats_per_token"] == pytest.approx(
        json.loads((teacher / "result.json").read_text())["val_loss"], abs=2e-6)
    student = _distill_data(teacher, None)
    assert student.directory.resolve() == prepared_dir.resolve() and overlap(teacher, student) < 0.01


@pytest.mark.slow
def test_a_logit_cache_and_a_teachers_own_corpus_named_relatively_are_read_from_another_directory(world, tmp_path,
                                                                                                 monkeypatch):
    """A cache made inside w of `--data corpus`, and the teacher's own corpus (no --data), are read from
    elsewhere as they resolved where they were named: a student distils from each, never reading a
    `corpus` of the reader's directory."""
    root, corpus, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    monkeypatch.chdir(root / "w")
    cache = tmp_path / "cache"
    _run("cache-logits", "--teacher", "tt", "--data", "corpus", "--out", cache, "--top-k", "4", "--tokens", "512",
         "--seq-len", "16")
    assert json.loads((cache / "cache.json").read_text())["data"]["corpus"]["data"] == str(corpus.resolve())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()   # a reader's own `corpus`, which neither may read
    shape = dict(zip(TINY[::2], TINY[1::2]))
    del shape["--vocab-size"], shape["--seq-len"]   # the cache's
    _run("distill", "--teacher-cache", cache, "--out", tmp_path / "from-cache", *[x for kv in shape.items() for x in kv])
    student = _distill_data(teacher, None)
    assert student.manifest["config"]["max_bytes"] == PART and overlap(teacher, student) < 0.01


@pytest.mark.slow
def test_the_demo_and_the_plan_read_the_teachers_split_from_another_directory(world, tmp_path, monkeypatch):
    root, corpus, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    monkeypatch.chdir(tmp_path)
    from distillscale.report.demo import builtin_sweep

    spec = builtin_sweep(quick=True, data=Path(os.path.relpath(corpus, tmp_path)),
                         teacher=Path(os.path.relpath(teacher, tmp_path)))
    assert {run.settings.get("max_bytes") for run in spec.runs} == {PART}


@pytest.mark.slow
def test_a_teacher_of_an_earlier_version_is_refused_in_one_line(world, tmp_path, monkeypatch, cli):
    """A teacher of an earlier version (its config.json records neither its corpus's content nor its
    path as it resolved) whose relative path reads nothing from here: refused, not guessed."""
    root, corpus, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    old = tmp_path / "old-teacher"
    shutil.copytree(teacher, old)
    record = json.loads((old / "config.json").read_text())
    del record["plan"]["corpus"]
    (old / "config.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="trained by an earlier version, which split its corpus otherwise .* "
                                        "shares no text with the corpus it trained on, give --other-corpus"):
        _distill_data(old, corpus)
    code, _, err = cli("distill", "--teacher", old, "--data", corpus, "--out", tmp_path / "s", "--n-layers", "1",
                       "--tokens", "512")
    assert code == 2 and "earlier version" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
