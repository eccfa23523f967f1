"""A file or directory this user may not read or write is ordinary trouble: one line saying which and what
to do, exit 2, never a traceback, in every command that reads a model, a tokenizer, a corpus or writes a
run. Run as an ordinary user: as root, the commands run without the capabilities that let root read
anything (`setpriv --bounding-set=-dac_override,-dac_read_search`), so mode bits hold for it too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.test_demo_teacher_split import TINY
from tests.report.test_own_teacher import markov_corpus

pytestmark = pytest.mark.slow


def _as_user() -> list[str]:
    """The command prefix that runs a process as an ordinary user would (mode bits hold)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to hold")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("unreadable")
    corpus = markov_corpus(root / "corpus", documents=30, words=200)
    env = {**os.environ, "DISTILLSCALE_CACHE": str(root / "cache")}
    subprocess.run([sys.executable, "-m", "distillscale.cli", "train", "--data", str(corpus), "--out",
                    str(root / "run"), *TINY], check=True, env=env, capture_output=True)
    return root, corpus, root / "run", env


def _refused(world, *args: str, cwd: Path | None = None) -> str:
    root, _, _, env = world
    result = subprocess.run([*_as_user(), sys.executable, "-m", "distillscale.cli", *map(str, args)], env=env,
                            capture_output=True, text=True, cwd=cwd or root)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distillscale: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("target", ["model.safetensors", "tokenizer.json", "config.json"])
def test_a_runs_unreadable_file(world, target):
    _, _, run, _ = world
    path = run / target
    path.chmod(0)
    try:
        said = _refused(world, "loss", run)
        assert str(path) in said and ("permission denied" in said or "cannot be read" in said)
    finally:
        path.chmod(0o644)


def test_an_unreadable_corpus_file_and_directory(world, tmp_path):
    _, corpus, run, _ = world
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    one = sorted(copy.iterdir())[3]
    one.chmod(0)
    try:
        said = _refused(world, "loss", run, "--data", copy)
        assert str(one) in said
    finally:
        one.chmod(0o644)
    copy.chmod(0)
    try:
        assert str(copy) in _refused(world, "loss", run, "--data", copy)
        assert str(copy) in _refused(world, "train", "--data", copy, "--out", tmp_path / "t", *TINY)
    finally:
        copy.chmod(0o755)


def test_an_output_inside_an_unreadable_directory(world, tmp_path):
    _, corpus, _, _ = world
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        said = _refused(world, "train", "--data", corpus, "--out", locked / "x", *TINY)
        assert "locked" in said
    finally:
        locked.chmod(0o755)


def _refused_here(tmp_path, *args: str) -> str:
    """`distillscale ARGS` as an ordinary user, refused in one line: that line."""
    env = {**os.environ, "DISTILLSCALE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([*_as_user(), sys.executable, "-m", "distillscale.cli", *map(str, args)], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distillscale: error: "), result.stderr
    return lines[0]


def test_an_unreadable_file_or_directory_is_named_as_what_it_is(tmp_path):
    """A model whose config.json may not be read is named with the permission problem (not "holds
    neither ..."), a directory that may not be opened is named itself (not a file inside it, such as a
    model_config.json or a dataset_dict.json that does not exist)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some text\n")
    plan = ("plan", "--student-params", "546M", "--compute", "1e21", "--teacher-model")
    (model / "config.json").chmod(0)
    try:
        said = _refused_here(tmp_path, *plan, model)
        assert f"permission denied on {model / 'config.json'}" in said and "holds neither" not in said
    finally:
        (model / "config.json").chmod(0o644)
    for directory, args in ((model, (*plan, model)), (corpus, ("data", "prepare", "--data", corpus)),
                            (corpus, ("train", "--data", corpus, "--out", tmp_path / "run", *TINY))):
        directory.chmod(0)
        try:
            said = _refused_here(tmp_path, *args)
        finally:
            directory.chmod(0o755)
        assert f"permission denied on the directory {directory}: this user may not open it" in said, said
        assert "model_config.json" not in said and "dataset_dict.json" not in said


STUDENT = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "512", "--seq-len", "16",
           "--batch-size", "4", "--eval-tokens", "256", "--eval-every", "0", "--device", "cpu")


def test_a_teachers_unreadable_weights_are_said_unreadable_not_damaged(world, tmp_path):
    """safetensors calls a file it may not open missing (FileNotFoundError): the teacher was said to be
    "damaged ... save the model again", which would have a user overwrite a good model."""
    _, corpus, run, _ = world
    weights = run / "model.safetensors"
    weights.chmod(0)
    try:
        root, _, _, env = world
        result = subprocess.run([*_as_user(), sys.executable, "-m", "distillscale.cli", "distill", "--teacher", str(run),
                                 "--data", str(corpus), "--out", str(tmp_path / "d"), *STUDENT], env=env,
                                capture_output=True, text=True, cwd=root)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        said = result.stderr.strip().splitlines()[-1]   # (after the corpus's preparation)
        assert said.startswith("distillscale: error: "), result.stderr
        assert str(weights) in said and "permission denied" in said and f"chmod a+r {weights}" in said, said
        assert "damaged" not in said and "save the model again" not in said, said
    finally:
        weights.chmod(0o644)
