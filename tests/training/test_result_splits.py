"""result.json carries what each split of the data is made of (data.splits' composition, as manifest.json
records it): documents, units placed, tokens, the largest unit's and document's shares; an earlier
version's record (pieces) reads as those units."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distillscale.data.splits import SPLITS, SplitComposition
from distillscale.training.run_dir import RunDirectory

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

RUN = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "1k", "--vocab-size", "320",
       "--max-bytes", "50k", "--seq-len", "32", "--batch-size", "4", "--eval-tokens", "1k", "--eval-every", "0",
       "--device", "cpu")


def test_result_json_records_each_splits_composition(cli, tmp_path):
    code, out, err = cli("train", "--out", tmp_path / "run", *RUN, "--json")
    assert code == 0, err
    [manifest] = Path(os.environ["DISTILLSCALE_CACHE"]).rglob("manifest.json")
    recorded = json.loads(manifest.read_text())["splits"]
    splits = json.loads(out)["splits"]
    assert set(splits) == set(SPLITS)
    for name in SPLITS:
        assert splits[name] == {field: recorded[name][field] for field in SplitComposition.__dataclass_fields__}
        assert splits[name]["documents"] > 0 and 0 < splits[name]["largest_unit_share"] <= 1
    # read back as the typed record
    assert RunDirectory(tmp_path / "run").read_result().splits["val"] == SplitComposition(**splits["val"])
    # an earlier version's result.json, whose splits placed pieces, reads as those units
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    for split in result["splits"].values():
        split["pieces"], split["largest_piece_share"] = split.pop("units"), split.pop("largest_unit_share")
    (tmp_path / "run" / "result.json").write_text(json.dumps(result))
    assert RunDirectory(tmp_path / "run").read_result().splits["val"] == SplitComposition(**splits["val"])
