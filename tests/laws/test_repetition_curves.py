"""R_D* of a group of runs (laws.repetition_curves) and the report's repeated-data step: a known
R_D* recovered from a synthetic distilled-style table (fresh ladder + runs on nested subsets), the
groups the report fits, and the figure and table that appear when runs repeat their data."""

from __future__ import annotations

import numpy as np
import pytest

from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.repetition import Repetition, effective_tokens, predict_repeated

# A law in the range of the micro repetition sweep's students (N 7K-55K, D 28K-890K, 3-6 nats/token).
LAW = SupervisedLaw(E=1.8, A=60.0, B=900.0, alpha=0.35, beta=0.42)
LADDERS = ((55_000, 890_000), (7_000, 450_000))   # (N, longest D) per size
EPOCHS = (2, 4, 8, 16)


def distilled_table(r_star: float, noise: float = 0.002, seed: int = 0) -> dict[str, np.ndarray]:
    """As the report builds a group from the students of one teacher: a fresh ladder D/16 .. D of
    each size on the subset of its longest run, and the longest budget on D/e unique tokens."""
    rows = []
    for N, D in LADDERS:
        rows += [(N, D / k, D) for k in (1, 2, 4, 8, 16)]
        rows += [(N, D, D / e) for e in EPOCHS]
    N, D, U = (np.array(column, dtype=float) for column in zip(*rows))
    rng = np.random.default_rng(seed)
    loss = LAW.predict(N, effective_tokens(D, U, r_star)) * (1 + noise * rng.standard_normal(len(N)))
    return {"params": N, "tokens": D, "unique_tokens": U, "loss": loss}


@pytest.mark.slow
def test_a_known_r_star_is_recovered_with_its_interval_and_backtest():
    from distillscale.laws.repetition_curves import fit_repetition_curve

    table = distilled_table(r_star=3.0)
    curve = fit_repetition_curve(table["params"], table["tokens"], table["unique_tokens"], table["loss"],
                                 name="distilled", form="chinchilla", bootstrap=100)
    assert curve.R_D_star == pytest.approx(3.0, rel=0.15)
    low, high = curve.interval
    assert low <= 3.0 <= high and high / low < 2
    assert [size.params for size in curve.sizes] == [7_000, 55_000]
    for size in curve.sizes:
        assert size.max_epochs == 16 and size.penalty_measured > 0.05
        assert size.penalty_fitted == pytest.approx(size.penalty_measured, abs=0.01)
        assert size.interval[0] <= size.R_D_star <= size.interval[1]
    # fitted on the runs of at most 4 epochs, it predicts the 8x and 16x ones; counting repeats as new does not
    assert sorted(run["epochs"] for run in curve.backtest) == [8, 8, 16, 16]
    assert curve.backtest_error() < 0.01 and curve.backtest_error(16) < 0.01
    assert curve.to_dict()["backtest"]["mean_abs_error_plain"] > 10 * curve.backtest_error()


@pytest.mark.slow
def test_seeds_of_one_run_are_fitted_together_and_scored_by_their_mean():
    """Runs repeated with seeds (same N, D, U): all enter the fit; each size's losses and each backtest
    cell are the seed mean, with the pooled seed spread measured."""
    from distillscale.laws.repetition_curves import fit_repetition_curve

    seeds = [distilled_table(r_star=3.0, noise=0.01, seed=seed) for seed in range(3)]
    table = {key: np.concatenate([t[key] for t in seeds]) for key in seeds[0]}
    curve = fit_repetition_curve(table["params"], table["tokens"], table["unique_tokens"], table["loss"],
                                 name="distilled", form="chinchilla", bootstrap=0)
    assert curve.n_runs == 54 and 0.004 < curve.seed_spread < 0.02
    assert sorted(run["epochs"] for run in curve.backtest) == [8, 8, 16, 16]
    for run in curve.backtest:
        measured = table["loss"][(table["params"] == run["params"]) & np.isclose(table["unique_tokens"], run["unique_tokens"])]
        assert run["seeds"] == 3 and run["loss"] == pytest.approx(measured.mean())
    small = curve.sizes[0]
    at_16 = (table["params"] == small.params) & np.isclose(table["unique_tokens"], small.tokens / 16)
    assert small.seeds == 3 and small.loss_max_epochs == pytest.approx(table["loss"][at_16].mean())
    assert curve.to_dict()["seed_spread"] == curve.seed_spread


def test_fit_repetition_curve_needs_repeated_runs_and_a_fresh_ladder():
    from distillscale.errors import ParameterError
    from distillscale.laws.repetition_curves import fit_repetition_curve

    table = distilled_table(r_star=3.0)
    fresh = table["tokens"] <= table["unique_tokens"]
    with pytest.raises(ParameterError, match="no distilled run repeats its data"):
        fit_repetition_curve(*(table[k][fresh] for k in ("params", "tokens", "unique_tokens", "loss")),
                             name="distilled")
    few = ~fresh | (np.cumsum(fresh) <= 2)
    with pytest.raises(ParameterError, match="2 fresh runs"):
        fit_repetition_curve(*(table[k][few] for k in ("params", "tokens", "unique_tokens", "loss")))
    with pytest.raises(ParameterError, match="form"):
        fit_repetition_curve(*(table[k] for k in ("params", "tokens", "unique_tokens", "loss")), form="busbridge")


def _records(table: dict[str, np.ndarray], kind: str, repeated: bool = True) -> list[dict]:
    records = []
    for i, (N, D, U, loss) in enumerate(zip(*(table[k] for k in ("params", "tokens", "unique_tokens", "loss")))):
        if not repeated and D > U:
            continue
        record = {"run_id": f"{kind[0]}{i}", "kind": kind, "status": "completed", "non_embedding_params": N,
                  "tokens": D, "val_loss": loss, "unique_tokens": U, "epochs": D / U}
        if kind == "student":
            record.update(teacher_id="t0", teacher_params=186_000.0, teacher_tokens=1.5e6, teacher_loss=3.0)
        records.append(record)
    return records


def _curve(name: str, r_star: float):
    """The RepetitionCurve a fit of `distilled_table(r_star)` would give, built from the true law."""
    from distillscale.laws.repetition_curves import RepetitionCurve, SizeRepetition

    law = SupervisedLaw(**{k: getattr(LAW, k) for k in ("E", "A", "B", "alpha", "beta")})
    law.repetition = Repetition(r_star)
    sizes = []
    for N, D in sorted(LADDERS):
        at = lambda e: float(predict_repeated(law, law.repetition, N, D, D / e))  # noqa: E731
        sizes.append(SizeRepetition(N, D, r_star, (r_star / 1.2, r_star * 1.2), at(1), 16.0, at(16),
                                    at(16) / at(1) - 1, at(16) / at(1) - 1))
    backtest = [{"params": N, "tokens": D, "unique_tokens": D / e, "epochs": float(e), "loss": 4.0,
                 "predicted": 4.04, "error": 0.01} for N, D in LADDERS for e in (8, 16)]
    return RepetitionCurve(name, "chinchilla", law, r_star, (r_star / 1.2, r_star * 1.2), 0.9, 18, sizes, 4.0,
                           r_star, backtest, backtest)


@pytest.mark.slow
def test_the_report_fits_each_group_that_repeats_and_draws_the_figure():
    """repetition_groups: the baselines and the students of each teacher, only where runs repeat;
    with curves, report.json holds them, report.html shows the Repeated data table and figure."""
    from distillscale.laws import ComputeSettings
    from distillscale.report.calibration import ReportCalibration, CalibrationSettings, _capacity_gap, repetition_groups
    from distillscale.report.page import render_page
    from distillscale.report.report import report_figures
    from distillscale.report.runs import split_runs

    supervised, distilled = distilled_table(r_star=2.0), distilled_table(r_star=6.0)
    runs = split_runs(_records(supervised, "baseline") + _records(distilled, "student"), "sweep")
    groups = repetition_groups(runs)
    assert list(groups) == ["supervised", "distilled"] and len(groups["distilled"]) == 18
    assert max(r["tokens"] / r["unique_tokens"] for r in groups["supervised"]) == pytest.approx(16)
    fresh = split_runs(_records(supervised, "baseline", repeated=False), "sweep")
    assert repetition_groups(fresh) == {}

    calibration = ReportCalibration(runs, CalibrationSettings(), ComputeSettings(), "test",
                              skipped={"supervised": "not fitted here", "distillation": "not fitted here"},
                              capacity_gap=_capacity_gap(runs), plan={"skipped": "no laws"},
                              repetition=[_curve("supervised", 2.0), _curve("distilled", 6.0)])
    figures = report_figures(calibration)
    assert "repetition" in figures and figures["repetition"][1].startswith(b"\x89PNG")
    report = calibration.to_dict()
    assert [curve["name"] for curve in report["repetition"]] == ["supervised", "distilled"]
    page = render_page(report, figures)
    assert 'id="repeated-data"' in page and 'id="repetition"' in page and 'id="repetition"><img' in page
    assert "on fixed subsets by design" in page and "use a larger corpus" not in page
    assert "6 [5, 7.2]" in page and "+1.00%" in page   # the distilled R_D* with its interval; a backtest error

    without = ReportCalibration(fresh, CalibrationSettings(), ComputeSettings(), "test", capacity_gap=_capacity_gap(fresh),
                          plan={"skipped": "no laws"})
    assert "repetition" not in report_figures(without)


def test_the_report_gives_the_distillation_law_the_distilled_students_r_star():
    """Issue 34: a distillation law carries its own repetition constant when a sweep measured one;
    the plan then uses it for distilled students (test_repetition_laws)."""
    import dataclasses
    from types import SimpleNamespace

    from distillscale.laws import ComputeSettings
    from distillscale.laws.lawset import load_laws
    from distillscale.report.calibration import ReportCalibration, CalibrationSettings, attach_distilled_repetition
    from distillscale.report.runs import split_runs

    runs = split_runs(_records(distilled_table(r_star=6.0), "student"), "sweep")
    law = dataclasses.replace(load_laws("busbridge2025").distillation)
    calibration = ReportCalibration(runs, CalibrationSettings(), ComputeSettings(), "test",
                              repetition=[_curve("supervised", 2.0), _curve("distilled", 6.0)])
    calibration.distillation = SimpleNamespace(law=law)
    attach_distilled_repetition(calibration)
    assert law.repetition.R_D_star == 6.0 and law.repetition.interval == pytest.approx((5.0, 7.2))
    assert "distilled" in law.repetition.source
    several = dataclasses.replace(load_laws("busbridge2025").distillation)
    calibration.distillation, calibration.repetition = SimpleNamespace(law=several), [_curve("distilled from t1", 6.0)]
    attach_distilled_repetition(calibration)
    assert several.repetition is None
