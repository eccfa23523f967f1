"""`DataConfig.route_field` (`distill --teacher-route`, `data prepare --route-field`): every token of a
document keeps its row's field, in a file beside its split."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from distillscale.data import DataConfig, prepare_data
from distillscale.errors import UserError

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))


def rows(count: int = 60) -> list[dict]:
    made = []
    for i in range(count):
        rng = random.Random(i)
        words = WORDS if i % 2 == 0 else [word.upper() for word in WORDS]  # the route shows in any piece
        text = f"doc{i:03d} " + " ".join(rng.choice(words) for _ in range(rng.randint(20, 80)))
        made.append({"text": text, "source": "even" if i % 2 == 0 else "odd"})
    return made


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_every_token_holds_its_documents_route(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, rows())
    data = prepare_data(DataConfig(path=str(path), vocab_size=300, route_field="source"), progress=False)
    assert sorted(data.route_values) == ["even", "odd"]
    end_of_text = data.end_of_text_id
    for split in ("val", "teacher", "student"):
        tokens, routes = np.asarray(data.split(split)), np.asarray(data.routes(split))
        assert len(routes) == len(tokens)
        # runs of a document's pieces end at end-of-text: the route is constant within each, the document's
        ends = np.flatnonzero(tokens == end_of_text)
        start = 0
        for end in ends:
            document_routes = routes[start:end + 1]
            assert (document_routes == document_routes[0]).all()
            text = data.tokenizer.decode(tokens[start:end].tolist())
            odd = any(word.isupper() for word in text.split())
            assert data.route_values[document_routes[0]] == ("odd" if odd else "even")
            start = end + 1


def test_a_routed_preparation_is_another_one_and_the_same_tokens(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, rows())
    plain = prepare_data(DataConfig(path=str(path), vocab_size=300), progress=False)
    routed = prepare_data(DataConfig(path=str(path), vocab_size=300, route_field="source"), progress=False)
    assert plain.directory != routed.directory and plain.route_values is None
    for split in ("val", "teacher", "student"):
        assert np.array_equal(plain.split(split), routed.split(split))


def test_rows_without_the_field_have_no_route(tmp_path):
    path = tmp_path / "corpus.jsonl"
    records = rows()
    del records[3]["source"]
    write_jsonl(path, records)
    data = prepare_data(DataConfig(path=str(path), vocab_size=300, route_field="source"), progress=False)
    assert None in data.route_values


def test_parquet_routes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    records = rows()
    pq.write_table(pa.table({"text": [r["text"] for r in records], "source": [r["source"] for r in records]}),
                   tmp_path / "corpus.parquet")
    data = prepare_data(DataConfig(path=str(tmp_path / "corpus.parquet"), vocab_size=300, route_field="source"),
                        progress=False)
    assert sorted(data.route_values) == ["even", "odd"]
    with pytest.raises(UserError, match="has no column 'topic'"):
        prepare_data(DataConfig(path=str(tmp_path / "corpus.parquet"), vocab_size=300, route_field="topic"),
                     progress=False)


def test_a_corpus_of_plain_text_files_has_no_fields_to_route_by(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("some text " * 50)
    with pytest.raises(UserError, match="reads a field of jsonl or parquet rows"):
        prepare_data(DataConfig(path=str(tmp_path / "corpus"), vocab_size=300, route_field="source"), progress=False)
