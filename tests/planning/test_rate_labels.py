"""One label, one number: "peak lr" is the rate the hidden matrices train at and "--lr" what `train`
takes, wherever a plan prints a rate (its sheet, its batch note, JSON), for a law in muP base units as
for one in peak units; and a recommendation that is no run to train (a batch of more tokens than the
run, a rate above 1) is flagged as such wherever it is printed (the sheet, the page, a sweep's lr_law).
`predict hyperparameters` holds the same: tests/laws/test_predict_rates.py."""

from __future__ import annotations

import re

import pytest

import distillscale as ds
from distillscale.laws.hyperparameters import load_hyperparameter_law
from distillscale.laws.hyperparameters.rates import parse_lr_unit
from distillscale.planning.run_sheet import run_sheet
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV

LAW = "busbridge2025"


def _law_file(tmp_path, unit: str = "mup-base", scale: float = 1.0, name: str = "mup") -> str:
    """steplaw2025 (a B* law with a batch exponent) re-declared in `unit`, its rate x `scale`."""
    law = load_hyperparameter_law("steplaw2025")
    law = law.model_copy(update={"name": name, "lr_unit": parse_lr_unit(unit),
                                 "lr": law.lr.model_copy(update={"coefficient": law.lr.coefficient * scale})})
    return str(law.save(tmp_path / f"{name}.json"))


def _printed(text: str, label: str) -> list[float]:
    """Every number printed right after `label` in `text`."""
    return [float(value) for value in re.findall(re.escape(label) + r" ([0-9.]+(?:e[-+]?[0-9]+)?)", " ".join(text.split()))]


@pytest.mark.parametrize("unit", ["mup-base", "peak"])
def test_peak_lr_is_the_hidden_matrices_rate_wherever_a_plan_prints_it(tmp_path, unit):
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, hyperparameter_law=_law_file(tmp_path, unit),
                   batch_tokens=8e6)
    rows = run_sheet(plan)
    hidden = {f"{row.recipe.lr:.3g}" for row in rows}
    train = {f"{row.recipe.train_lr:.4g}" for row in rows}
    text = plan.as_text(width=200)
    printed = _printed(text, "peak lr")
    assert printed and {f"{value:.3g}" for value in printed} <= hidden   # the batch note's rate is the sheet's
    assert {f"{value:.4g}" for value in _printed(text, "--lr")} <= train
    for recipe in plan.to_dict()["recipes"].values():
        assert recipe["batch_adaptation"]["lr"] == pytest.approx(recipe["lr"])   # one "lr" in one record
        if unit == "mup-base":
            assert recipe["lr"] != pytest.approx(recipe["train_lr"])


# -- recommendations that are no run to train ----------------------------------------------------------

def test_a_batch_larger_than_the_runs_tokens_is_no_recipe():
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case", batch_tokens=1e12)
    for recipe in plan.recipes.values():
        assert recipe.batch_tokens > recipe.tokens and recipe.steps == 1
        assert any("more than the" in problem and "tokens it trains on" in problem for problem in recipe.problems)
    assert all(record["problems"] for record in plan.to_dict()["recipes"].values())
    text = plan.as_text(width=200)
    assert "student*!" in text and "!: the student for best-case is no run to train" in text
    from distillscale.serve.api import Planner, PlanQuery

    page = Planner().update(PlanQuery(law=LAW, compute="1e21", student="546M", scenario="best-case", batch_tokens="1T"))
    assert all(row["problems"] for row in page["plan"]["run_sheet"]) and "is no run to train" in page["text"]
    fine = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case")
    assert not any(recipe.problems for recipe in fine.recipes.values()) and "!:" not in fine.as_text(width=200)


def test_any_recommended_rate_above_one_is_flagged(tmp_path):
    law = _law_file(tmp_path, "peak", scale=2000.0, name="hot")
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case", hyperparameter_law=law)
    for recipe in plan.recipes.values():
        assert recipe.lr > 1 and any("above 1, where training diverges" in p for p in recipe.problems)


def test_a_sweeps_lr_law_above_one_is_flagged(cli, tmp_path, monkeypatch):
    from tests.sweeps.test_lr_law import fixed_batch_law, spec_file

    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")
    law = fixed_batch_law()   # fitted (as if) at the spec's batch
    hot = law.model_copy(update={"name": "hot", "lr": law.lr.model_copy(update={"coefficient": 500.0})})
    hot.save(tmp_path / "hot.json")
    path = spec_file(tmp_path, model='lr_law = "hot.json"').read_text().replace("lr = 0.003\n", "")
    (tmp_path / "spec.toml").write_text(path)
    code, out, err = cli("sweep", "plan", tmp_path / "spec.toml", "--gpus", "none")
    assert code == 0, err
    assert "a --lr above 1" in " ".join(out.split()) and "where training diverges" in " ".join(out.split())
