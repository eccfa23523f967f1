"""A reader that shares text with a run's corpus (a copy with a file added or removed, a line appended or
edited, corpus v2 = v1 plus new shards, a subset, the run's own symlink re-pointed at such a copy, a
`data prepare` directory of one, another --val-fraction or --max-bytes) never gets the run's training text
in its validation split: pieces are cut where their own text says, not where the corpus's size says, and
each piece's split follows from its own text. Each route measures that text (the share of the reader's
validation 24-grams found in the teacher's training tokens), through the two readers a user meets
(`distill --teacher T --data X`, `loss T --data X`), not only the exit status. A piece whose own text
is edited is a new piece and may change split (about one edit in twenty moves its piece into validation):
the edits measured here move none."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from distillscale.errors import UserError
from tests.report.test_demo_teacher_split import TINY
from tests.report.test_own_teacher import markov_corpus

pytestmark = pytest.mark.slow

DOCUMENTS = 40     # the teacher's corpus, v1: about 70 KB
GRAM = 24          # tokens: about five words (shorter grams of this text recur by chance)
CLEAN = 0.01       # a route shares no training text with the validation split below this share


def _run(*args) -> None:
    from distillscale.cli import main

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in args])
    assert code == 0, err.getvalue()[-2000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """root/v1 (the corpus), root/v2 (v1 plus 20 new shards), root/current -> v1 (a symlink), and the
    teacher root/tt trained on `--data current`; the data cache under root."""
    root = tmp_path_factory.mktemp("shared-text")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        v1 = markov_corpus(root / "v1", documents=DOCUMENTS, words=300)
        markov_corpus(root / "v2", documents=DOCUMENTS + 20, words=300)   # the same first 40, then 20 more
        (root / "current").symlink_to(v1)
        _run("train", "--data", root / "current", "--out", root / "tt", *TINY)
    return root, v1, root / "tt"


def _grams(tokens) -> set[bytes]:
    tokens = np.asarray(tokens, np.int64)
    return {tokens[i:i + GRAM].tobytes() for i in range(len(tokens) - GRAM + 1)}


def _teacher_tokens(teacher: Path) -> np.ndarray:
    from distillscale.data.prepare import prepared_directory
    from distillscale.data.prepared import open_prepared
    from distillscale.training.run_dir import RunDirectory

    data, fingerprint = RunDirectory(teacher).recorded_data()
    return np.asarray(open_prepared(prepared_directory(data, fingerprint)).split("teacher"))


def overlap(teacher: Path, prepared) -> float:
    """The share of `prepared`'s validation GRAM-grams that are the teacher's training text (the one
    measure of a leak, every route's test reads it)."""
    val = _grams(prepared.split("val"))
    return len(val & _grams(_teacher_tokens(teacher))) / max(len(val), 1)


def distill_data(teacher: Path, data, **settings):
    """The student's prepared data as `distill --teacher TEACHER --data DATA` resolves it."""
    from distillscale.data import prepare_data
    from distillscale.training.config import DistillConfig
    from distillscale.training.teachers import find_teacher, resolve_student_data

    config = DistillConfig.model_validate({"teacher": teacher, "data": data, "out": teacher.parent / "s",
                                           "n_layers": 1, "tokens": 512, **settings})
    return prepare_data(resolve_student_data(config, find_teacher(teacher)).data_config(), False)


def loss_data(teacher: Path, data, max_bytes=None, val_fraction=None):
    """The text `loss TEACHER --data DATA` scores the teacher on."""
    from distillscale.evaluation.loss_data import scored_data
    from distillscale.evaluation.model_argument import scored_model

    return scored_data(scored_model(teacher, False, None), data, max_bytes, val_fraction, None, False)


def _copy(world, tmp_path, name="copy") -> Path:
    _, v1, _ = world
    copy = tmp_path / name
    shutil.copytree(v1, copy)
    return copy


# One line of new text, long enough to change the corpus's size by more than a piece of it.
NEW_LINE = " ".join(f"word{i}" for i in range(150)) + " .\n"


def _append_line(path: Path) -> None:
    with open(path, "a") as handle:
        handle.write(NEW_LINE)


def _edit_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = NEW_LINE
    path.write_text("".join(lines))


def _route(world, tmp_path, route: str) -> Path:
    """The reader's --data for `route`, made from the teacher's corpus v1."""
    root, v1, _ = world
    if route == "superset":
        return root / "v2"
    copy = _copy(world, tmp_path)
    files = sorted(copy.iterdir())
    if route == "file added":
        shutil.copy(root / "v2" / "doc0050.txt", copy / "doc9999.txt")
    elif route == "file removed":
        files[7].unlink()
    elif route == "line appended":
        _append_line(files[5])
    elif route == "line edited":
        _edit_line(files[5])
    elif route == "subset":
        for file in files[DOCUMENTS // 2:]:
            file.unlink()
    return copy


ROUTES = ["file added", "file removed", "line appended", "line edited", "superset", "subset"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_reader_sharing_text_with_the_teacher_keeps_its_training_text_out_of_validation(world, route, tmp_path,
                                                                                          monkeypatch):
    root, _, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    data = _route(world, tmp_path, route)
    for prepared in (distill_data(teacher, data), loss_data(teacher, data)):
        assert overlap(teacher, prepared) < CLEAN, route


def test_the_teachers_symlink_re_pointed_at_a_changed_copy(world, tmp_path, monkeypatch):
    root, v1, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    copy = _copy(world, tmp_path)
    _append_line(sorted(copy.iterdir())[5])
    shutil.copy(root / "v2" / "doc0051.txt", copy / "doc9998.txt")
    link = root / "current"
    link.unlink()
    link.symlink_to(copy)
    try:
        for prepared in (distill_data(teacher, link), loss_data(teacher, link)):
            assert overlap(teacher, prepared) < CLEAN
    finally:
        link.unlink()
        link.symlink_to(v1)


def test_a_line_edited_in_place_is_read_and_keeps_the_split(world, monkeypatch):
    """The teacher's own corpus, one line edited where it lies: read (not refused), and the validation
    split holds none of the teacher's training text."""
    root, v1, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    target = sorted(v1.iterdir())[9]
    kept = target.read_text()
    _edit_line(target)
    try:
        for prepared in (distill_data(teacher, root / "current"), loss_data(teacher, root / "current")):
            assert overlap(teacher, prepared) < CLEAN
    finally:
        target.write_text(kept)


def test_a_prepared_directory_of_a_superset(world, tmp_path, monkeypatch):
    root, _, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    _run("data", "prepare", "--data", root / "v2", "--tokenizer", teacher / "tokenizer.json",
         "--cache-dir", tmp_path / "prepared")
    prepared_dir = next(path for path in (tmp_path / "prepared").iterdir() if path.is_dir())
    for prepared in (distill_data(teacher, prepared_dir), loss_data(teacher, prepared_dir)):
        assert overlap(teacher, prepared) < CLEAN


def test_a_smaller_val_fraction_is_read_and_a_larger_one_refused(world, tmp_path, monkeypatch):
    """An identical copy with a smaller --val-fraction holds part of the teacher's validation text and
    none of its training text: read. A larger one would take training text: refused in one line."""
    root, _, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    copy = _copy(world, tmp_path)
    for prepared in (distill_data(teacher, copy, val_fraction=0.02), loss_data(teacher, copy, val_fraction=0.02)):
        assert overlap(teacher, prepared) < CLEAN
    with pytest.raises(UserError, match="--val-fraction 0.1 .*leave out --val-fraction"):
        distill_data(teacher, copy, val_fraction=0.1)
    with pytest.raises(UserError, match="--val-fraction 0.1 .*leave out --val-fraction"):
        loss_data(teacher, copy, val_fraction=0.1)


def test_a_reader_of_a_prefix_or_a_superset_with_max_bytes(world, monkeypatch):
    """--max-bytes cuts the read, not the pieces: a superset read up to any size keeps the split."""
    root, _, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    for max_bytes in (30_000, 90_000):
        for prepared in (distill_data(teacher, root / "v2", max_bytes=max_bytes),
                         loss_data(teacher, root / "v2", max_bytes=max_bytes)):
            assert overlap(teacher, prepared) < CLEAN


def _earlier_version(teacher: Path, where: Path) -> Path:
    """A copy of `teacher` as an earlier version recorded it (no record of its corpus's content or split),
    its corpus gone from where its config.json says."""
    import json

    old = where / "old-teacher"
    shutil.copytree(teacher, old)
    record = json.loads((old / "config.json").read_text())
    del record["plan"]["corpus"]
    record["config"]["data"] = str(where / "gone")
    (old / "config.json").write_text(json.dumps(record))
    return old


def test_a_teacher_of_an_earlier_version_reads_another_corpus_when_told_so(world, tmp_path, monkeypatch, cli):
    """Its split cannot be repeated, so any corpus might share its training text: refused in one line, and
    --other-corpus (distill, loss; demo and plan take it too) says the corpus is another one."""
    root, _, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    old = _earlier_version(teacher, tmp_path)
    other = markov_corpus(tmp_path / "other", documents=30, words=200)
    for command in (("distill", "--teacher", old, "--data", other, "--out", tmp_path / "s", "--n-layers", "1",
                     "--tokens", "512"), ("loss", old, "--data", other)):
        code, _, err = cli(*command)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "earlier version" in err and "--other-corpus" in err
    prepared = distill_data(old, other, other_corpus=True)
    assert prepared.manifest["config"]["path"] == str(other.resolve())
    code, out, err = cli("loss", old, "--data", other, "--other-corpus", "--json")
    assert code == 0, err
    code, _, err = cli("distill", "--teacher", old, "--other-corpus", "--out", tmp_path / "s2", "--n-layers", "1",
                       "--tokens", "512")
    assert code == 2 and "--other-corpus says that --data shares no text" in err and len(err.strip().splitlines()) == 1
    for command in ("distill", "loss", "demo", "plan", "teacher", "cache-logits", "prune"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and "--other-corpus" in out, command


def test_the_demos_sweep_on_a_superset_keeps_the_teachers_training_text_out_of_its_validation_split(world,
                                                                                                    monkeypatch):
    """`demo --data V2 --teacher T`: the laws' validation split, where the teacher is measured, holds none of
    the text the teacher trained on."""
    from distillscale.data import prepare_data
    from distillscale.report.demo import builtin_sweep
    from distillscale.training.config import TrainConfig

    root, _, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    spec = builtin_sweep(quick=True, data=root / "v2", teacher=teacher)
    settings = {key: value for key, value in spec.runs[0].settings.items() if key in TrainConfig.model_fields}
    prepared = prepare_data(TrainConfig.model_validate({**settings, "out": "."}).data_config(), False)
    assert overlap(teacher, prepared) < CLEAN


@pytest.mark.parametrize("made_as", ["distillscale.data/3", "distillscale.data/2", "distillscale.data/1"])
def test_a_teacher_of_an_earlier_data_format_is_refused_on_its_own_corpus_too(world, tmp_path, monkeypatch, made_as):
    import json

    root, v1, teacher = world
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
    old = tmp_path / "old"
    shutil.copytree(teacher, old)
    record = json.loads((old / "config.json").read_text())
    record["plan"]["corpus"]["format"] = made_as
    (old / "config.json").write_text(json.dumps(record))
    for read in (lambda: distill_data(old, v1), lambda: loss_data(old, root / "v2")):
        with pytest.raises(UserError, match=f"earlier version, which split its corpus otherwise \\({made_as}: .*"
                                            "train the (teacher|model) again"):
            read()
