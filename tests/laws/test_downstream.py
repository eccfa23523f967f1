"""The loss-to-error law of Gadre et al. (2024), Err(L) = epsilon - k exp(-gamma L) (issue 56):
`ds.fit_downstream`, `distillscale fit downstream` and `predict downstream`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import distillscale as ds

EPSILON, K, GAMMA = 0.75, 12.0, 1.3
LOSSES = np.linspace(2.2, 4.0, 12)


def errors(losses, noise=0.0, seed=0):
    return EPSILON - K * np.exp(-GAMMA * losses) + np.random.default_rng(seed).normal(0, noise, len(losses))


def test_the_fit_recovers_known_coefficients_and_backtests_the_lowest_losses():
    law = ds.fit_downstream(LOSSES, errors(LOSSES), bootstrap=20)
    assert (law.epsilon, law.k, law.gamma) == pytest.approx((EPSILON, K, GAMMA), rel=1e-6)
    # a quarter of the runs, those of lowest loss, are predicted by a fit to the others
    assert law.backtest.losses == pytest.approx(LOSSES[:3])
    assert law.backtest.mean_abs_error < 1e-6
    assert float(law.error(2.0)) == pytest.approx(EPSILON - K * np.exp(-GAMMA * 2.0), rel=1e-6)


def test_noisy_errors_give_intervals_that_hold_the_truth():
    losses = np.linspace(2.2, 4.0, 24)  # noise seed 3: the truth lies 30-60% of the way into each interval
    law = ds.fit_downstream(losses, errors(losses, noise=0.005, seed=3), bootstrap=100, level=0.9)
    intervals = law.coefficient_intervals()
    for name, truth in (("epsilon", EPSILON), ("k", K), ("gamma", GAMMA)):
        low, high = intervals[name]
        assert low <= truth <= high, (name, low, high)
    low, high = law.interval(3.0)
    assert low < float(law.error(3.0)) < high


def test_the_law_file_round_trips_and_predict_reads_it(tmp_path, cli):
    runs = tmp_path / "runs.csv"
    runs.write_text("loss,acc\n" + "".join(f"{loss},{1 - err}\n" for loss, err in zip(LOSSES, errors(LOSSES))))
    code, out, err = cli("fit", "downstream", runs, "--accuracy-col", "acc", "--task-set", "tiny",
                         "--bootstrap", "20", "--out", tmp_path / "law.json", "--json")
    assert code == 0, err
    assert json.loads(out)["gamma"] == pytest.approx(GAMMA, rel=1e-6)
    law = ds.load_downstream_law(tmp_path / "law.json")
    assert law.task_set == "tiny" and len(law.draws) == 20

    code, out, err = cli("predict", "downstream", "--law", tmp_path / "law.json", "--loss", "3", "--json")
    assert code == 0, err
    prediction = json.loads(out)
    assert prediction["error"] == pytest.approx(EPSILON - K * np.exp(-GAMMA * 3.0), rel=1e-6)
    assert prediction["extrapolated"] is False
    code, _, err = cli("predict", "downstream", "--law", tmp_path / "law.json", "--loss", "1.5")
    assert code == 0 and "outside the losses the law was fitted to" in err
    # the law file is never written over without --overwrite, and a foreign file never
    code, _, err = cli("fit", "downstream", runs, "--accuracy-col", "acc", "--out", runs, "--overwrite")
    assert code == 2 and runs.read_text().startswith("loss,acc")


@pytest.mark.parametrize("losses, message", [
    (LOSSES[:3], "too few runs: 3 distinct values of column 'loss', the loss-to-error law needs at least 4"),
    (np.array([2.5, 2.5, 3.0, 3.0, 3.5, 3.5]), "too few runs: 3 distinct values"),
])
def test_too_few_runs_are_refused_in_one_line(tmp_path, cli, losses, message):
    runs = tmp_path / "runs.csv"
    runs.write_text("loss,error\n" + "".join(f"{loss},{err}\n" for loss, err in zip(losses, errors(losses))))
    code, _, err = cli("fit", "downstream", runs)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    code, _, err = cli("fit", "downstream", runs, "--holdout", "9")
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_bad_inputs_are_refused_in_one_line(tmp_path, cli):
    runs = tmp_path / "runs.csv"
    runs.write_text("loss,error\n" + "".join(f"{loss},{err}\n" for loss, err in zip(LOSSES, errors(LOSSES))))
    code, _, err = cli("fit", "downstream", runs, "--holdout", "10")
    assert code == 2 and "--holdout 10 of 12 runs leaves fewer than 4" in err
    code, _, err = cli("fit", "downstream", runs, "--error-col", "error", "--accuracy-col", "error")
    assert code == 2 and "either --error-col or --accuracy-col" in err
    code, _, err = cli("predict", "downstream", "--law", runs, "--loss", "3")
    assert code == 2 and "is not a downstream law file" in err
    with pytest.raises(ds.UserError, match="losses must be positive"):
        ds.fit_downstream([-1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5])
