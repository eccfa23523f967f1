"""A sweep continued across a data format change (issue 63): distillscale.data/2 re-splits every corpus,
and a sweep of format-1 runs continued under it kept its teachers and scored new runs on a split whose
validation text they trained on. `sweep run` now names the runs whose recorded data is not what their
settings prepare now and refuses to continue; `sweep export` (and so `report`) warns about a sweep that
was continued before. No training: the runs' config.json are written as those versions wrote them."""

from __future__ import annotations

import json
import shutil

import pytest

from distillscale.data import DataConfig
from distillscale.data.prepare import data_identity
from distillscale.sweeps.runner import SweepLayout
from tests.conftest import TEST_DATA
from tests.sweeps.test_status_scoring import _sweep

DATA = {"vocab_size": 320, "max_bytes": 50_000}  # the [data] of test_status_scoring's sweep

pytestmark = pytest.mark.usefixtures("cache_dir")


def _trained_on(run_dir, data_format: str | None):
    """config.json of a run of the sweep's teacher data, recorded under `data_format` (None: this one)."""
    identity = data_identity(DataConfig(**DATA))
    record = json.loads((TEST_DATA / "records" / "config-2026-11-23.json").read_text())
    record["config"] = dict(DATA)
    record["plan"]["data_fingerprint"] = identity.fingerprint if data_format is None else identity.earlier[data_format]
    (run_dir / "config.json").write_text(json.dumps(record))


def test_a_sweep_of_format_1_runs_is_not_continued(cli, tmp_path):
    root = tmp_path / "sweep"
    runs = _sweep(root, evaluation=False)
    layout = SweepLayout(root)
    _trained_on(layout.run_dir(runs["teacher"]), "distillscale.data/1")
    _trained_on(layout.run_dir(runs["baseline"]), None)
    spec = tmp_path / "spec.toml"
    shutil.copy(layout.spec_path, spec)
    before = sorted(path.name for path in layout.run_dir(runs["teacher"]).parent.iterdir())
    code, _, err = cli("sweep", "run", spec, "--out", root, "--workers", "1")
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"1 finished runs of the sweep in {root.resolve()} trained on other data than their settings prepare " \
           f"now (it was prepared as distillscale.data/1" in said
    assert f"): {runs['teacher']}; new runs would be scored on another split" in said and "--out NEW_DIR" in said
    assert sorted(path.name for path in layout.run_dir(runs["teacher"]).parent.iterdir()) == before  # nothing ran

    # a sweep continued across the change before it was refused: its export says which runs differ
    code, _, err = cli("sweep", "export", root)
    assert code == 0, err
    said = " ".join(err.split())
    assert f"1 of the 2 finished runs trained on other data than the rest" in said and runs["teacher"] in said
