"""A law's correction beyond its runs (`laws.crossladder`: 1 inside them, a factor growing beyond, so a
corner at the largest fitted size) never places an optimum: the planner searches the raw law
(`planning.solver`'s search_law) and states the corrected losses at that optimum, with how much the
correction moved each (`planning.correction`); the correction's line is printed, and its JSON filled,
only where it moved a number, naming only the distances it uses."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import distillscale as ds
from distillscale.laws import LawSet, SupervisedLaw, load_laws
from distillscale.laws.crossladder import BiasCorrection, BiasModel, FitSummary
from distillscale.laws.record import FitRecord

LAW = SupervisedLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
CENTRES = {"ratio": 3.0, "sizes": 1.5, "alpha": 0.3, "beta": 0.35}


def corrected(law: SupervisedLaw, coefficient: float, params_max: float) -> SupervisedLaw:
    """`law` carrying a correction of `coefficient` per e-fold of N beyond `params_max` (dN only)."""
    model = BiasModel(features=("dN",), coefficients=(coefficient,), centres=CENTRES, penalty=0.0, slope_sd=0.0)
    summary = FitSummary(params_max=params_max, params_min=params_max / 16, tokens_max=params_max * 20, sizes=5,
                         runs=20, log_ratio_median=3.0, alpha=0.34, beta=0.36)
    return replace(law, fit=FitRecord(bias_correction=BiasCorrection(model=model, summary=summary)))


COMPUTE = 1e21


def raw_optimum() -> float:
    return ds.plan_supervised(LAW, compute=COMPUTE).supervised.student_params


@pytest.mark.parametrize("coefficient", [0.05, -0.05])
def test_the_compute_optimal_size_is_the_raw_laws_never_the_corner(coefficient):
    """A correction that raises the loss beyond the runs put N* on the largest fitted size (its corner);
    one that lowers it pulled N* out past the raw optimum. Both now plan the raw law's N*, and say
    how much the correction moved the loss there."""
    N_raw = raw_optimum()
    law = corrected(LAW, coefficient, params_max=N_raw / 1.5)       # the raw optimum 1.5x beyond the runs
    plan = ds.plan_supervised(law, compute=COMPUTE)
    N = plan.supervised.student_params
    assert N == pytest.approx(N_raw, rel=1e-9)
    assert abs(np.log(N / (N_raw / 1.5))) > 0.3                       # not on the corner
    raw_loss, loss = plan.correction.losses["supervised"]
    assert raw_loss == pytest.approx(float(LAW.predict(N, plan.supervised.tokens)), rel=1e-12)
    assert loss == pytest.approx(raw_loss * np.exp(coefficient * np.log(1.5)), rel=1e-9)
    assert plan.correction.shift("supervised") == pytest.approx(np.exp(coefficient * np.log(1.5)) - 1, rel=1e-9)
    record = plan.to_dict()["bias_correction"]
    assert record["losses"]["supervised"]["shift"] == pytest.approx(plan.correction.shift("supervised"))
    assert "raw law's" in record["optimum"]


def test_a_teacher_is_never_placed_on_the_corner():
    """The teacher-pretraining scenario's teacher (N_T, D_T) is the raw law's optimum, its loss the
    corrected law's there."""
    laws = load_laws("busbridge2025")
    raw_plan = ds.plan(laws, compute=1e21, student_params=546e6, scenario="teacher-pretraining")
    N_T = raw_plan.plans[0].teacher_params
    student = corrected(laws.supervised, 0.05, params_max=N_T / 1.5)
    law = LawSet("corrected", student, replace(laws.distillation, student_law=student), laws.compute)
    plan = ds.plan(law, compute=1e21, student_params=546e6, scenario="teacher-pretraining").plans[0]
    assert plan.teacher_params == pytest.approx(N_T, rel=1e-9)
    assert plan.teacher_tokens == pytest.approx(raw_plan.plans[0].teacher_tokens, rel=1e-9)
    assert plan.teacher_loss == pytest.approx(float(student.predict(plan.teacher_params, plan.teacher_tokens)))
    assert plan.teacher_loss > raw_plan.plans[0].teacher_loss


def test_the_line_and_the_json_only_where_the_correction_moved_a_number(cli, tmp_path):
    N_raw = raw_optimum()
    inside, beyond = tmp_path / "inside.json", tmp_path / "beyond.json"
    LawSet("inside", corrected(LAW, 0.05, params_max=N_raw * 4)).save(inside)
    LawSet("beyond", corrected(LAW, 0.05, params_max=N_raw / 1.5)).save(beyond)
    code, out, err = cli("plan", "--law", str(inside), "--compute", str(COMPUTE))
    assert code == 0, err
    assert "bias" not in out                                           # nothing moved: no line
    code, out, _ = cli("plan", "--law", str(inside), "--compute", str(COMPUTE), "--json")
    assert json.loads(out)["bias_correction"] is None
    code, out, _ = cli("plan", "--law", str(beyond), "--compute", str(COMPUTE))
    lines = [line for line in out.splitlines() if "bias-corrected" in line]
    assert len(lines) == 1 and "+2.05%" in lines[0] and "tokens" not in lines[0].split(";")[0]
    code, out, _ = cli("plan", "--law", str(beyond), "--compute", str(COMPUTE), "--json")
    shift = json.loads(out)["bias_correction"]["losses"]["supervised"]["shift"]
    assert shift == pytest.approx(np.exp(0.05 * np.log(1.5)) - 1, rel=1e-9)
