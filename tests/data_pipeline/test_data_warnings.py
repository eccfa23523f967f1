"""A prepared corpus's warnings are said by every use of it (issue 63): a split one document dominates,
or a tokenizer smaller than asked, was said only by the call that tokenised the corpus; a second
`data prepare` or `train` on the cached splits was silent."""

from __future__ import annotations

import json
import random

from distillscale.data import DataConfig, prepare_data

TRAIN = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "512", "--seq-len", "16",
         "--batch-size", "4", "--eval-tokens", "256", "--eval-every", "0", "--device", "cpu")


def _corpus(path):
    """Thirty short documents and one long one, most of every split's text."""
    rng = random.Random(0)
    long = " ".join(f"{rng.choice(['alpha', 'beta', 'gamma', 'delta'])}{rng.randint(0, 99)}" for _ in range(4000))
    rows = [{"text": f"note {i}: a short document about item {i}."} for i in range(30)] + [{"text": long}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _warnings(err: str) -> list[str]:
    text = " ".join(err.split())
    return [part.split(":", 1)[0] for part in text.split("warning: ")[1:]]


def test_the_warnings_are_said_again_when_the_cached_corpus_is_used(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = _corpus(tmp_path / "corpus.jsonl")
    settings = ("--data", corpus, "--vocab-size", "10000")
    code, _, first = cli("data", "prepare", *settings)
    assert code == 0, first
    said = " ".join(first.split())
    assert "the corpus supports only" in said and "one document is" in said and "of the" in said
    code, out, again = cli("data", "prepare", *settings)
    assert code == 0 and "reused" in out, again
    assert _warnings(again) == _warnings(first) and len(_warnings(first)) == 2
    # a run on the cached splits says them too
    code, _, err = cli("train", *settings, "--out", tmp_path / "run", *TRAIN)
    assert code == 0, err
    assert "one document is" in " ".join(err.split()) and "the corpus supports only" in " ".join(err.split())
    # and the library says which they are, from the prepared corpus's manifest
    data = prepare_data(DataConfig(path=str(corpus), vocab_size=10000), progress=False)
    assert data.reused and len(data.warnings) == 2 and data.warnings[1].startswith("one document is")


def test_a_subdirectory_that_cannot_be_read_is_named_not_left_out_silently(tmp_path):
    """Run as an ordinary user (mode bits hold; as root, without the capabilities that read anything)."""
    import os
    import subprocess
    import sys

    from tests.cli.test_unreadable import _as_user

    corpus = tmp_path / "corpus"
    for name in ("a", "b", "c", "locked/d"):
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(" ".join(f"word{i} of document {name}" for i in range(300)) + "\n")
    (corpus / "locked").chmod(0)
    try:
        result = subprocess.run([*_as_user(), sys.executable, "-m", "distillscale.cli", "data", "prepare", "--data",
                                 str(corpus), "--vocab-size", "300"], capture_output=True, text=True,
                                env={**os.environ, "DISTILLSCALE_CACHE": str(tmp_path / "cache")})
    finally:
        (corpus / "locked").chmod(0o755)
    said = " ".join(result.stderr.split())
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"warning: the corpus {corpus} leaves out what cannot be read: {corpus / 'locked'}" in said
    assert said.count(str(corpus / "locked")) == 1   # once, however often the command walks the corpus
