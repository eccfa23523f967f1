"""The sign of held-out errors (issue 34): a hold-out check reports how many runs the law
over-predicted, and warns when they all err the same way."""

import json

import numpy as np
import pytest

from distillscale.laws import load_laws
from distillscale.laws.calibrate import ONE_SIDED_MIN_RUNS, HeldOutRun, HoldoutCheck
from distillscale.report.commands import report_warnings


def check(errors) -> HoldoutCheck:
    runs = [HeldOutRun(row, 3.0, 3.0 * (1 + e), (2.9, 3.1), 2.0, None) for row, e in enumerate(errors)]
    return HoldoutCheck("N > 1e9", "chinchilla", np.arange(5), runs, 0.9)


def test_all_held_out_runs_over_predicted_is_called_a_bias():
    holdout = check([0.012, 0.016, 0.031, 0.033])  # our GPU ladder's held-out size: 4 of 4 over
    assert holdout.n_over_predicted == 4
    assert "over-predicted all 4 held-out runs" in holdout.bias and "+2.30%" in holdout.bias
    assert "too high (pessimistic)" in holdout.bias
    record = holdout.to_dict()
    assert record["n_over_predicted"] == 4 and record["bias"] == holdout.bias
    assert record["mean_relative_error"] == pytest.approx(0.023)


def test_under_predictions_read_as_optimistic_and_mixed_signs_are_no_bias():
    assert "under-predicted 9 of 10" in check([-0.01] * 9 + [0.002]).bias
    assert "too low (optimistic)" in check([-0.01] * 4).bias
    assert check([0.01, 0.02, -0.01, 0.03]).bias is None          # 3 of 4: a chance of 5 in 8
    assert check([0.01] * (ONE_SIDED_MIN_RUNS - 1)).bias is None  # too few runs to tell
    assert check([0.01] * 8 + [-0.01] * 2).bias is None           # 8 of 10


def test_a_report_warns_of_a_one_sided_extrapolation_check():
    bias = check([0.02] * 4).bias
    report = {"supervised": {}, "distillation": {}, "skipped": {}, "plan": {"skipped": "no target"},
              "extrapolation_check": {"supervised": {**check([0.02] * 4).to_dict()},
                                      "distillation": {"skipped": "one teacher"}}}
    assert report_warnings(report) == [f"supervised extrapolation check: {bias}"]


@pytest.mark.slow
def test_fit_where_reports_the_signs_and_warns_when_the_larger_runs_are_all_over_predicted(cli, tmp_path):
    # A ladder whose models from 1e9 parameters on reach 3% lower loss than the smaller ones' law says.
    truth = load_laws("epoch2024").supervised
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 60))
    D = N * np.exp(rng.uniform(np.log(2), np.log(500), 60))
    loss = truth.predict(N, D) * np.exp(rng.normal(0, 0.002, 60)) * np.where(N >= 1e9, 0.97, 1.0)
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "".join(f"{n},{d},{y}\n" for n, d, y in zip(N, D, loss)))
    args = ("fit", "supervised", path, "--form", "chinchilla", "--bootstrap", "0", "--no-backtest",
            "--fit-where", "params < 1e9")
    code, stdout, stderr = cli(*args)
    held_out = int(np.sum(N >= 1e9))
    assert code == 0 and f"{held_out} of {held_out} over-predicted" in stdout
    assert f"over-predicted all {held_out} held-out runs" in stderr
    code, stdout, _ = cli(*args, "--json")
    record = json.loads(stdout)
    assert record["holdout"]["n_over_predicted"] == held_out
    assert any("biased where it extrapolates" in w for w in record["warnings"])
