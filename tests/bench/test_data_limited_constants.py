"""The data-limited law's shipped constants (laws/data_limited.json) are the fit of the measured runs their
source names (bench/data/data_limited_regime.json, or the earlier bench/data/data_limited_runs.json) by
bench/laws/data_limited_fit.py: refitting the committed runs gives the committed constants, so neither can
change without the other; the fit reads any runs file of either schema (new measurements are one rerun),
and its left-out checks (by corpus and by size), rejected forms and figure come from one command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws.data_limited import load_constants
from distillscale.laws.data_limited_runs import FRESH_EPOCHS, load_runs
from tests.conftest import REPO_ROOT, load_bench
from tests.laws.test_data_limited_runs import regime_records

NAMES = ("kappa", "lam", "eta", "gamma", "theta")


@pytest.fixture(scope="module")
def bench():
    return load_bench("laws/data_limited_fit.py")


@pytest.fixture(scope="module")
def runs_path(bench):
    """The runs file the shipped constants were fitted on, as their source names it."""
    path = bench.runs_file(load_constants().source)
    assert path.is_relative_to(REPO_ROOT / "bench" / "data") and path.is_file()
    return path


@pytest.fixture(scope="module")
def record(bench, runs_path):
    return bench.report(runs_path)


@pytest.mark.slow
def test_the_shipped_constants_are_the_fit_of_the_committed_runs(record):
    shipped = load_constants()
    assert "measured at micro scale" in shipped.source
    for name in NAMES:
        fitted = record["constants"][name]
        assert getattr(shipped, name).value == pytest.approx(fitted["value"], rel=1e-6, abs=1e-9), name
        low, high = getattr(shipped, name).interval
        assert (low, high) == pytest.approx((min(fitted["interval"][0], fitted["value"]),
                                             max(fitted["interval"][1], fitted["value"])), rel=1e-6, abs=1e-9), name
    assert np.allclose(shipped.draws, record["_law"].draws[:, :5], atol=1e-6)
    assert shipped.residuals.to_dict() == record["residuals"]
    assert shipped.measured.to_dict() == record["measured"]


@pytest.mark.slow
def test_every_run_kind_is_fitted_on_and_every_corpus_left_out_once(record, runs_path):
    data = json.loads(runs_path.read_text())
    assert data["command"].startswith("python bench/distillation/data_limited.py")
    runs = load_runs(runs_path)
    repeated = [r for r in runs if r.epochs > FRESH_EPOCHS]
    fitted = record["fitted_on"]
    # every chain of every repeated cell (a cell's chains apart), every larger teacher's student
    assert fitted["chains"] == len({(r.corpus, r.size, r.pool, r.chain) for r in repeated if r.role == "chain"})
    assert fitted["generations"] == sum(r.role == "chain" for r in repeated)
    assert fitted["students_of_larger"] == sum(r.role == "student-of-larger" for r in repeated)
    assert fitted["ensembles"] == sum(r.role == "ensemble" for r in runs) >= 12
    corpora = {run.corpus for run in runs}
    assert {check["corpus"] for check in record["left_out"]["checks"]} == corpora
    summary = record["left_out"]["summary"]
    ks = {r.members for r in runs if r.role == "ensemble"}
    for key in ("first_generation", "last_generation", "larger_teacher_student",
                *(f"ensemble_of_{k}" for k in ks), *(f"student_of_ensemble_of_{k}" for k in ks)):
        assert summary["coverage"][key]["of"] > 0, key
    assert set(summary["later_generations"]) >= {"law", "as_generation_1", "as_alone"}
    sizes = {r.size for r in runs if r.role == "alone"}
    assert (record["by_size"] is None) == (len(sizes) < 2)
    measured = record["measured"]
    assert measured["members"] == [min(ks), max(ks)]
    assert measured["epochs"][1] == pytest.approx(max(r.epochs for r in runs if r.role == "alone"))


@pytest.mark.slow
def test_the_rejected_forms_are_scored_on_the_same_left_out_runs(record):
    rejected = record["rejected"]
    assert rejected["chain_later_generations"]["previous_kappa_recursion"]["mean"] > \
        rejected["chain_later_generations"]["chosen"]["mean"]
    assert rejected["ensembles"]["previous_eta_1_minus_1_over_k"]["mean"] > rejected["ensembles"]["chosen"]["mean"]
    low, high = rejected["first_generation_only"]["kappa_within_5_percent_of_best"]
    assert high - low > 0.5   # first generations alone cannot tell kappa from lam


@pytest.mark.slow
def test_one_command_fits_checks_by_corpus_and_size_and_draws_regime_runs(bench, tmp_path):
    """The regime's schema (two sizes, two chains a cell, ensembles of 2, 4 and 8): the fit, both left-out
    checks and the figure from one record; the constants written name the runs file they were fitted on."""
    path = tmp_path / "regime.json"
    path.write_text(json.dumps({"command": "python bench/distillation/data_limited.py run", "runs": regime_records()}))
    record = bench.report(path, draws=20)
    assert record["fitted_on"]["chains"] == 32 and record["fitted_on"]["students_of_larger"] == 16
    assert set(record["by_size"]["folds"]) == {"d2", "d3"}
    assert record["by_size"]["folds"]["d3"]["distance"]["params"] == pytest.approx(187272 / 55632)
    assert record["left_out"]["summary"]["coverage"]["student_of_ensemble_of_8"]["of"] == 16
    assert record["constants"]["kappa"]["value"] == pytest.approx(0.35, abs=2e-3)
    figure = tmp_path / "figure.png"
    load_bench("laws/data_limited_figure.py").draw(record, figure)
    assert figure.stat().st_size > 10_000
    written = tmp_path / "constants.json"
    bench.write_constants(record, written)
    assert bench.runs_file(json.loads(written.read_text())["source"]) == path


def test_the_fit_reads_any_runs_file_of_the_schema(bench, runs_path, tmp_path):
    data = json.loads(runs_path.read_text())
    kept = [run for run in data["runs"] if run["corpus"] != "stdlib"]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({**data, "runs": kept}))
    record = bench.report(path, draws=20)
    assert {check["corpus"] for check in record["left_out"]["checks"]} == {run["corpus"] for run in kept}
    assert record["n_runs"] == len([run for run in kept if run.get("val_loss") is not None])
