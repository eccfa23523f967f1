"""`demo --data CORPUS --teacher RUN` with a teacher run trained on part of the corpus (`train --max-bytes`):
the sweep splits the corpus as the teacher did (its max_bytes and val_fraction), so the laws' validation
split holds none of the teacher's training text, and the planned student's config carries that split:
the printed `distill --config` runs as printed. A teacher whose data its corpus no longer gives is
refused in one line before the sweep."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tests.report.test_own_teacher import TEACHER, markov_corpus

PART = 600_000  # the teacher's --max-bytes: half the corpus
TINY = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--vocab-size", "300", "--tokens", "512",
        "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "256", "--eval-every", "0", "--device", "cpu")


def _teacher_run(root: Path, max_bytes: int, shape, **corpus) -> tuple[Path, Path, Path]:
    """(root, corpus, teacher): a teacher run trained on the first `max_bytes` of a corpus, with the
    data cache `root / "cache"`."""
    from distillscale.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        corpus = markov_corpus(root / "corpus", **corpus)
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            assert main(["train", "--data", str(corpus), "--max-bytes", str(max_bytes), "--out", str(root / "teacher"),
                         *shape]) == 0
    return root, corpus, root / "teacher"


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory):
    """A 1-layer teacher run of the first 20 KB of a corpus of about 50 KB: seconds."""
    return _teacher_run(tmp_path_factory.mktemp("small-teacher"), 20_000, TINY, documents=40, words=200)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """The own-teacher demo's teacher (tests/report/test_own_teacher.py), a run of the first PART bytes
    of a corpus of about 1 MB."""
    return _teacher_run(tmp_path_factory.mktemp("teacher-split"), PART, TEACHER, documents=200)


def test_the_sweep_splits_the_corpus_as_the_teacher_run_did(small_teacher, monkeypatch):
    from distillscale.report.demo import builtin_sweep

    root, corpus, teacher = small_teacher
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    said = []
    spec = builtin_sweep(quick=True, data=corpus, teacher=teacher, progress=said.append)
    assert {run.settings.get("max_bytes") for run in spec.runs} == {20_000}
    assert {run.settings.get("val_fraction") for run in spec.runs} == {0.05}
    assert len(said) == 1 and "max_bytes 20000" in said[0] and "splits it the same way" in said[0]
    # a sweep of another corpus, or without the teacher, reads the whole corpus as before
    assert {run.settings.get("max_bytes") for run in builtin_sweep(quick=True, data=corpus).runs} == {None}
    other = markov_corpus(root / "other", documents=20, words=100)
    assert {run.settings.get("max_bytes") for run in builtin_sweep(quick=True, data=other, teacher=teacher).runs} \
        == {None}


def test_a_teacher_whose_data_its_corpus_no_longer_gives_is_refused_before_the_sweep(small_teacher, cli, monkeypatch,
                                                                                    tmp_path):
    import shutil

    root, corpus, teacher = small_teacher
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    stale = tmp_path / "stale"
    shutil.copytree(teacher, stale)
    record = json.loads((stale / "config.json").read_text())
    record["plan"]["data_fingerprint"] = "0" * 20   # as a run of an earlier version: its data by fingerprint alone
    record["plan"].pop("corpus", None)
    (stale / "config.json").write_text(json.dumps(record))
    code, _, err = cli("demo", "--quick", "--data", corpus, "--teacher", stale, "--out", tmp_path / "sweep")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    said = " ".join(err.split())
    assert f"teacher {stale} was trained by an earlier version, which split its corpus otherwise" in said
    assert "the sweep's validation split could hold text the teacher trained on" in said and "--other-corpus" in said
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_the_planned_student_of_a_teacher_trained_on_part_of_the_corpus_distils_as_printed(teacher_run, cli,
                                                                                           monkeypatch, tmp_path,
                                                                                           pipeline_demo):
    """The main job with a teacher run trained on part of the corpus: the quick demo (the pipeline tests'
    design: tests/report/conftest.py), then the command it prints, run as printed (before, `distill`
    refused it: the student split the corpus otherwise)."""
    import tomllib

    root, corpus, teacher = teacher_run
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    sweep = tmp_path / "sweep"
    code, out, err = cli("demo", "--quick", "--data", corpus, "--teacher", teacher, "--out", sweep)
    assert code == 0, err[-3000:]
    assert f"max_bytes {PART}" in " ".join(err.split())
    section = json.loads((sweep / "report.json").read_text())["teacher"]
    assert section.get("plan") is not None, section.get("skipped")
    config = tomllib.loads(Path(section["student_config"]).read_text())
    assert config["data"]["max_bytes"] == PART
    printed = re.search(r"distillscale (distill --config \S+)", " ".join(out.split()))
    assert printed, out
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*printed.group(1).split())
    assert code == 0, err[-3000:]
    assert (sweep / "planned-student" / "result.json").is_file()
