"""`sweep export`'s score columns (issue 56): each run's eval.json metrics as eval:<task>:<metric>
columns after the record's own, empty (CSV) or null (JSONL) for a run without them; such an export is
still recognised as one (`--overwrite` replaces it), and the report reads the scores back from it."""

import csv
import io
import json

from distillscale.report.downstream import task_scores
from distillscale.report.runs import load_runs
from distillscale.sweeps.export import RECORD_COLUMNS, format_records, is_export, write_records


def _records():
    base = {column: None for column in RECORD_COLUMNS}
    return [{**base, "run_id": "t-a", "kind": "teacher", "status": "completed", "non_embedding_params": 1e4,
             "tokens": 1e4, "val_loss": 5.1, "eval:tiny:acc": 0.25, "eval:tiny:acc_norm": 0.5},
            {**base, "run_id": "t-b", "kind": "teacher", "status": "completed", "non_embedding_params": 1e4,
             "tokens": 2e4, "val_loss": 4.9},
            {**base, "run_id": "t-c", "kind": "teacher", "status": "completed", "non_embedding_params": 2e4,
             "tokens": 2e4, "val_loss": 4.7, "eval:tiny:acc": 0.375, "eval:tiny:acc_norm": 0.625}]


def test_scores_are_columns_after_the_records_own(tmp_path):
    text = format_records(_records(), "csv")
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert tuple(header) == RECORD_COLUMNS + ("eval:tiny:acc", "eval:tiny:acc_norm")
    assert [row[-2:] for row in rows] == [["0.25", "0.5"], ["", ""], ["0.375", "0.625"]]
    lines = [json.loads(line) for line in format_records(_records(), "jsonl").splitlines()]
    assert [line["eval:tiny:acc"] for line in lines] == [0.25, None, 0.375]
    for fmt in ("csv", "jsonl"):
        path = tmp_path / f"runs.{fmt}"
        write_records(_records(), path, fmt)
        assert is_export(path)
        # the report reads them back (a CSV cell is text, an empty one no score), lowest loss first
        [acc, norm] = task_scores(load_runs(path))
        assert (acc.task, acc.metric, norm.metric) == ("tiny", "acc", "acc_norm")
        assert [(r.run_id, r.val_loss, r.value) for r in acc.runs] == [("t-c", 4.7, 0.375), ("t-a", 5.1, 0.25)]
    other = tmp_path / "other.csv"
    other.write_text(",".join(RECORD_COLUMNS) + ",notes\n")  # a column that is no score: not an export
    assert not is_export(other)
