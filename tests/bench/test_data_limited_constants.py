"""The data-limited law's shipped constants (laws/data_limited.json) are the fit of the measured runs
(bench/data/data_limited_runs.json) by bench/laws/data_limited_fit.py: refitting the committed runs gives
the committed constants, so neither can change without the other; the fit reads any runs file of the
schema (new measurements are one rerun), and its left-out checks and rejected forms are in its record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws.data_limited import load_constants
from tests.conftest import REPO_ROOT, load_bench

RUNS = REPO_ROOT / "bench" / "data" / "data_limited_runs.json"
NAMES = ("kappa", "lam", "eta", "gamma", "theta")


@pytest.fixture(scope="module")
def bench():
    return load_bench("laws/data_limited_fit.py")


@pytest.fixture(scope="module")
def record(bench):
    return bench.report(RUNS)


def test_the_shipped_constants_are_the_fit_of_the_committed_runs(record):
    shipped = load_constants()
    assert "measured at micro scale" in shipped.source and "data_limited_runs.json" in shipped.source
    for name in NAMES:
        fitted = record["constants"][name]
        assert getattr(shipped, name).value == pytest.approx(fitted["value"], rel=1e-6, abs=1e-9), name
        low, high = getattr(shipped, name).interval
        assert (low, high) == pytest.approx((min(fitted["interval"][0], fitted["value"]),
                                             max(fitted["interval"][1], fitted["value"])), rel=1e-6, abs=1e-9), name
    assert np.allclose(shipped.draws, record["_law"].draws[:, :5], atol=1e-6)
    assert shipped.residuals.to_dict() == record["residuals"]
    assert shipped.measured.to_dict() == record["measured"]


def test_every_run_kind_is_fitted_on_and_every_corpus_left_out_once(record):
    data = json.loads(RUNS.read_text())
    assert data["command"].startswith("python bench/distillation/data_limited.py")
    fitted = record["fitted_on"]
    larger = sum(run["role"] == "student-of-larger" and run["pool"] != "256K" for run in data["runs"])
    assert fitted["students_of_larger"] == larger == 8   # the larger teachers' students count
    assert fitted["chains"] == 8 and fitted["ensembles"] >= 12 and fitted["students_of_ensembles"] >= 12
    corpora = {run["corpus"] for run in data["runs"]}
    assert {check["corpus"] for check in record["left_out"]["checks"]} == corpora
    summary = record["left_out"]["summary"]
    for key in ("first_generation", "last_generation", "larger_teacher_student", "ensemble_of_2",
                "student_of_ensemble_of_2"):
        assert summary["coverage"][key]["of"] > 0
    assert set(summary["later_generations"]) >= {"law", "as_generation_1", "as_alone"}


def test_the_rejected_forms_are_scored_on_the_same_left_out_runs(record):
    rejected = record["rejected"]
    assert rejected["chain_later_generations"]["previous_kappa_recursion"]["mean"] > \
        rejected["chain_later_generations"]["chosen"]["mean"]
    assert rejected["ensembles"]["previous_eta_1_minus_1_over_k"]["mean"] > rejected["ensembles"]["chosen"]["mean"]
    low, high = rejected["first_generation_only"]["kappa_within_5_percent_of_best"]
    assert high - low > 0.5   # first generations alone cannot tell kappa from lam


def test_the_fit_reads_any_runs_file_of_the_schema(bench, tmp_path):
    data = json.loads(RUNS.read_text())
    kept = [run for run in data["runs"] if run["corpus"] != "stdlib"]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({**data, "runs": kept}))
    record = bench.report(path, draws=20)
    assert {check["corpus"] for check in record["left_out"]["checks"]} == {run["corpus"] for run in kept}
    assert record["n_runs"] == len(kept)
