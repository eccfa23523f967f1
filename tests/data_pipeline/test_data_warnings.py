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
