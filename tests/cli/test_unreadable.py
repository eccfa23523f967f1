"""A file or directory this user may not read or write is ordinary trouble: one line saying which and what
to do, exit 2, never a traceback, in every command that reads a model, a tokenizer, a corpus or writes a
run. Run as an ordinary user: as root, the commands run without the capabilities that let root read
anything (`setpriv --bounding-set=-dac_override,-dac_read_search`), so mode bits hold for it too. The
commands of one state of the files run one after the other in one such process (`_refused_each`): each
its own `main(...)`, its own exit status and stderr, one interpreter and torch import for them all."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
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
    """A corpus and a run trained on it (in this process: the files the refusals read, made as root)."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("unreadable")
    corpus = markov_corpus(root / "corpus", documents=30, words=200)
    env = {**os.environ, "DISTILLSCALE_CACHE": str(root / "cache")}
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        assert main(["train", "--data", str(corpus), "--out", str(root / "run"), *TINY]) == 0, err.getvalue()
    return root, corpus, root / "run", env


# Run as an ordinary user, this runs each command line of argv[1] (JSON) in turn, `main(...)` as the
# console script calls it, and prints each one's exit status and stderr (JSON).
_EACH = """
import io, json, sys
from contextlib import redirect_stderr, redirect_stdout
from distillscale.cli import main
said = []
for args in json.loads(sys.argv[1]):
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        said.append((main(args), err.getvalue()))
print(json.dumps(said))
"""


def _run_each(commands, env: dict, cwd: Path) -> list[tuple[int, str]]:
    """(exit status, stderr) of each command (a sequence of arguments), run in turn as an ordinary user."""
    lines = json.dumps([list(map(str, command)) for command in commands])
    result = subprocess.run([*_as_user(), sys.executable, "-c", _EACH, lines], env=env, capture_output=True, text=True,
                            cwd=cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return [tuple(each) for each in json.loads(result.stdout.strip().splitlines()[-1])]


def _one_line(code: int, stderr: str) -> str:
    """The one line a refusal says (exit 2, no traceback): that line."""
    assert code == 2 and "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distillscale: error: "), stderr
    return lines[0]


def _refused_each(world, *commands, cwd: Path | None = None) -> list[str]:
    """The one line each command (a sequence of arguments) is refused with, all run in one process."""
    root, _, _, env = world
    return [_one_line(*each) for each in _run_each(commands, env, cwd or root)]


def _refused(world, *args: str, cwd: Path | None = None) -> str:
    return _refused_each(world, args, cwd=cwd)[0]


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
        said = _refused_each(world, ("loss", run, "--data", copy),
                             ("train", "--data", copy, "--out", tmp_path / "t", *TINY))
        assert all(str(copy) in line for line in said), said
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


def _refused_here(tmp_path, *commands) -> list[str]:
    """Each command (a sequence of arguments) run in turn as an ordinary user from `tmp_path`, with a data
    cache there, refused in one line: those lines."""
    env = {**os.environ, "DISTILLSCALE_CACHE": str(tmp_path / "cache")}
    return [_one_line(*each) for each in _run_each(commands, env, tmp_path)]


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
        [said] = _refused_here(tmp_path, (*plan, model))
        assert f"permission denied on {model / 'config.json'}" in said and "holds neither" not in said
    finally:
        (model / "config.json").chmod(0o644)
    refusals = ((model, (*plan, model)), (corpus, ("data", "prepare", "--data", corpus)),
                (corpus, ("train", "--data", corpus, "--out", tmp_path / "run", *TINY)))
    model.chmod(0)
    corpus.chmod(0)
    try:
        lines = _refused_here(tmp_path, *(args for _, args in refusals))
    finally:
        model.chmod(0o755)
        corpus.chmod(0o755)
    for (directory, _), said in zip(refusals, lines, strict=True):
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
