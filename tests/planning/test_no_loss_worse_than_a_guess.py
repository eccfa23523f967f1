"""No loss worse than a guess: a pool of unique tokens far below what the law was measured on is refused
in one line naming its flag and the bound (`laws.extrapolation.pool_floor`: for busbridge2025 7.53M
tokens, a pool worth at most 1 + R_D* = 38 times itself as fresh data, more than 10x below the 2.86B
tokens of its smallest runs), and no surface prints a loss not below a uniform guess over the law's
vocabulary (ln 32,168 = 10.38 nats/token): `plan` (text, --json, a family, a chain), `predict`, `teacher`,
their Python functions and the planner page go through the same two checks."""

from __future__ import annotations

import json
import math

import pytest

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.laws.extrapolation import pool_floor
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation, predict_supervised
from distillscale.planning.teacher_plan import rank_teachers_for

pytestmark = pytest.mark.fast

UNIFORM = math.log(32168)
FLOOR = "give at least 7.53M unique tokens"


def test_the_floor_is_the_laws_smallest_runs_over_what_a_pool_is_worth_repeated():
    laws = load_laws("busbridge2025")
    assert pool_floor(laws) == pytest.approx(2.86e9 / 10 / 38)   # R_D* 37: a distilled student's decay


@pytest.mark.parametrize("args,flag", [
    (("plan", "--student-params", "125M", "--compute", "1e18", "--unique-tokens", "1", "--generations", "2"),
     "--unique-tokens 1 "),
    (("plan", "--student-params", "125M", "--compute", "1e18", "--unique-tokens", "1000"), "--unique-tokens 1,000 "),
    (("plan", "--student-params", "125M", "--compute", "1e18", "--unique-tokens", "50K"), "--unique-tokens 50,000 "),
    (("plan", "--student-params", "125M", "--compute", "1e18", "--unique-tokens", "50K", "--json"),
     "--unique-tokens 50,000 "),
    (("plan", "--student-params", "125M", "--compute", "1e20", "--teacher-params", "1B", "--teacher-tokens", "20B",
      "--unique-tokens", "1B", "--teacher-unique-tokens", "1K"), "--teacher-unique-tokens 1,000 "),
    (("plan", "--students", "100M,300M", "--teacher-params", "1B", "--teacher-tokens", "20B", "--compute", "1e20",
      "--unique-tokens", "100"), "--unique-tokens 100 "),
    (("predict", "supervised", "--params", "125M", "--tokens", "2.5B", "--unique-tokens", "1"), "--unique-tokens 1 "),
    (("predict", "distillation", "--student-params", "125M", "--student-tokens", "2.5B", "--teacher-params", "1B",
      "--teacher-tokens", "20B", "--teacher-unique-tokens", "1K"), "--teacher-unique-tokens 1,000 "),
    (("teacher", "--student-params", "546M", "--student-tokens", "10.92B", "--teacher-unique-tokens", "1K"),
     "--teacher-unique-tokens 1,000 "),
])
def test_a_pool_far_below_the_laws_runs_is_refused_naming_its_flag_and_the_bound(cli, args, flag):
    code, out, err = cli(*args)
    assert code == 2 and not out and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert flag + "is far below what law 'busbridge2025' was measured on" in err and FLOOR in err


def test_the_python_functions_refuse_it_naming_the_parameter():
    for call in (lambda: ds.plan("busbridge2025", compute=1e18, student_params=125e6, unique_tokens=1),
                 lambda: predict_supervised(load_laws("busbridge2025"), 125e6, 2.5e9, 1),
                 lambda: predict_distillation(load_laws("busbridge2025"), 125e6, 2.5e9, teacher_params=1e9,
                                              teacher_tokens=20e9, teacher_unique_tokens=1e3),
                 lambda: rank_teachers_for("busbridge2025", student_params=546e6, student_tokens=10.92e9,
                                           teacher_unique_tokens=1e3)):
        with pytest.raises(ParameterError, match="unique_tokens .* is far below what law 'busbridge2025'"):
            call()


def _losses(record, key="") -> list[float]:
    """Every number under a key that names a loss, anywhere in a JSON record."""
    if isinstance(record, dict):
        return [x for k, v in record.items() for x in _losses(v, k)]
    if isinstance(record, list):
        return [x for v in record for x in _losses(v, key)]
    return [record] if isinstance(record, (int, float)) and "loss" in key and "penalty" not in key else []


def test_at_the_floor_every_printed_loss_is_below_a_guess(cli):
    """A pool just above the floor is planned, and no loss it prints (text or --json, the data-limited
    options too) reaches a uniform guess."""
    args = ("plan", "--student-params", "125M", "--compute", "1e18", "--unique-tokens", "7.6M", "--generations", "2")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    losses = _losses(json.loads(out))
    assert len(losses) > 10 and max(losses) < UNIFORM
    code, out, err = cli(*args)
    assert code == 0 and all(float(x) < UNIFORM for x in __import__("re").findall(r"\b\d+\.\d{4}\b", out))


@pytest.mark.parametrize("args,what", [
    (("plan", "--student-params", "10", "--compute", "1e15"), "model's loss would be"),
    (("plan", "--students", "10,100M", "--teacher-params", "8B", "--teacher-tokens", "2T", "--compute", "3e20"),
     "the student 10 model's loss would be"),
    (("predict", "supervised", "--params", "1K", "--tokens", "20K"), "the predicted loss would be"),
    (("teacher", "--student-params", "1K", "--student-tokens", "10K"), "the student's loss trained alone would be"),
])
def test_a_loss_no_better_than_a_uniform_guess_is_never_printed(cli, args, what):
    code, out, err = cli(*args)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert what in err and "no better than a uniform guess over the 32,168-token vocabulary" in err


def test_the_planner_page_says_it_beside_its_controls():
    from distillscale.serve.api import Planner, PlanQuery

    response = Planner().update(PlanQuery(law="busbridge2025", compute="1e15", student="10"))
    assert not response["ok"] and "no better than a uniform guess" in response["errors"]["plan"]
