"""The data-limited law's shipped constants (laws/data_limited.json) are the fit of the measured runs
(bench/data/data_limited_runs.json) by bench/laws/data_limited_fit.py: refitting the committed runs gives
the committed constants, so neither can change without the other."""

from __future__ import annotations

import json

import pytest

from distillscale.laws.data_limited import load_constants
from tests.conftest import REPO_ROOT, load_bench

RUNS = REPO_ROOT / "bench" / "data" / "data_limited_runs.json"


@pytest.fixture(scope="module")
def summary():
    fit = load_bench("laws/data_limited_fit.py")
    return fit.report(fit.load(RUNS))


def test_the_shipped_constants_are_the_fit_of_the_committed_runs(summary):
    shipped = load_constants()
    assert "measured at micro scale" in shipped.source
    assert shipped.kappa.value == pytest.approx(summary["kappa"], rel=1e-6)
    assert shipped.kappa.interval == pytest.approx(tuple(summary["kappa_interval"]), rel=1e-6)
    assert shipped.lam is None   # the student's own repetition: the distilled R_D*, as the fit priced it
    assert shipped.eta.value == pytest.approx(summary["eta"], rel=1e-6)
    assert shipped.eta.interval == pytest.approx(tuple(summary["eta_interval"]), rel=1e-6)


def test_the_runs_record_the_command_that_made_them_and_every_corpus_was_left_out_once(summary):
    data = json.loads(RUNS.read_text())
    assert data["command"].startswith("python bench/distillation/data_limited.py")
    corpora = {run["corpus"] for run in data["runs"]}
    assert len(corpora) >= 3
    left_out = {check["corpus"] for check in summary["left_out"]["first_generation"]}
    assert left_out == corpora
