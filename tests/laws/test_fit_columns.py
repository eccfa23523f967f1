"""What a fit reads from a table of runs (issue 63): one column given two roles is named as the problem,
by the column reading every `fit` command shares (`RunTable.numeric`); `fit downstream` takes an
accuracy of exactly 0 as the score it is, and refuses runs whose accuracy rises with the loss (the
columns swapped) instead of fitting them a constant."""

from __future__ import annotations

import json

import numpy as np
import pytest

import distillscale as ds
from distillscale.errors import UserError
from distillscale.tables import read_table

EPSILON, K, GAMMA = 1.0, 12.0, 1.3
LOSSES = np.linspace(2.2, 4.0, 12)


def _downstream_table(path, accuracies):
    path.write_text("loss,acc\n" + "".join(f"{loss},{acc}\n" for loss, acc in zip(LOSSES, accuracies)))
    return path


def _refused(cli, *args) -> str:
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return " ".join(err.split())


def test_an_accuracy_of_exactly_zero_is_a_score(cli, tmp_path):
    accuracy = 1 - (EPSILON - K * np.exp(-GAMMA * LOSSES))
    accuracy[-1] = 0.0  # the weakest run answered nothing right: error 1, inside the law's range
    runs = _downstream_table(tmp_path / "runs.csv", accuracy)
    code, out, err = cli("fit", "downstream", runs, "--accuracy-col", "acc", "--bootstrap", "0", "--json")
    assert code == 0, err
    law = json.loads(out)
    assert law["n_runs"] == 12 and law["k"] > 0
    assert 0.9 < law["epsilon"] < 1.2  # the error of a model that learned nothing: about all wrong


def test_accuracy_rising_with_loss_is_refused_as_swapped_columns(cli, tmp_path):
    error = EPSILON - K * np.exp(-GAMMA * LOSSES)
    runs = _downstream_table(tmp_path / "runs.csv", error)  # the error column given as the accuracy
    said = _refused(cli, "fit", "downstream", runs, "--accuracy-col", "acc", "--bootstrap", "0")
    assert "accuracy rises with loss" in said and "are the columns swapped?" in said
    assert "1 - column 'acc'" in said and "column 'loss'" in said
    with pytest.raises(UserError, match="accuracy rises with loss: errors fall as losses grow"):
        ds.fit_downstream(LOSSES, 1 - error, bootstrap=0)
    # runs whose error does not move are fitted a constant, as before: nothing to swap there
    flat = ds.fit_downstream(LOSSES, np.full(len(LOSSES), 0.75), bootstrap=0)
    assert flat.k == 0 and flat.epsilon == pytest.approx(0.75)


def test_one_column_in_two_roles_is_named_by_every_fit(cli, tmp_path):
    runs = _downstream_table(tmp_path / "runs.csv", 1 - (EPSILON - K * np.exp(-GAMMA * LOSSES)))
    said = _refused(cli, "fit", "downstream", runs, "--loss-col", "acc", "--accuracy-col", "acc")
    assert "column 'acc'" in said and "two roles (--loss-col and --accuracy-col)" in said

    table = tmp_path / "supervised.csv"
    n = np.geomspace(1e6, 1e8, 8)
    table.write_text("params,tokens,loss\n" + "".join(f"{p},{20 * p},{2 + 50 / p ** 0.3}\n" for p in n))
    said = _refused(cli, "fit", "supervised", table, "--params-col", "tokens", "--tokens-col", "tokens")
    assert "column 'tokens'" in said and "two roles (--params-col and --tokens-col)" in said
    said = _refused(cli, "fit", "supervised", table, "--params-col", "params", "--loss-col", "params")
    assert "two roles (--params-col and --loss-col)" in said

    students = tmp_path / "students.csv"
    students.write_text("student_params,student_tokens,teacher_loss,loss\n"
                        + "".join(f"{p},{20 * p},2.5,{2.6 + 50 / p ** 0.3}\n" for p in n))
    said = _refused(cli, "fit", "distillation", students, "--supervised-law", "busbridge2025",
                    "--teacher-loss-col", "loss")
    assert "column 'loss'" in said and "two roles (--loss-col and --teacher-loss-col)" in said
    grid = tmp_path / "grid.csv"
    grid.write_text("params,tokens,lr,batch_tokens,loss\n" + "".join(f"1e6,2e7,{lr},8192,{3 + lr}\n"
                                                                    for lr in (1e-3, 3e-3, 1e-2)))
    said = _refused(cli, "fit", "hyperparameters", grid, "--lr-col", "loss")
    assert "column 'loss'" in said and "two roles (--lr-col and --loss-col)" in said
    # the shared reader names it for any caller, with the options where it is told them
    with pytest.raises(UserError, match="column 'loss' of .* is given for two roles"):
        read_table(table).numeric(["loss", "params", "loss"])
