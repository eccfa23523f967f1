"""Predictions outside what a law's runs describe say so where they are printed: a loss no better
than a uniform guess over the law's vocabulary (ln V), and a target trained on fewer tokens per
parameter than every run the law was fitted on (its D/N range), however near."""

import json
import math

import pytest

import distillscale as ds
from distillscale.errors import UserError
from distillscale.laws.extrapolation import data_range
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation, predict_supervised

UNIFORM = "no better than a uniform guess over the 32,168-token vocabulary"


@pytest.mark.parametrize("law", ["busbridge2025", "chinchilla2022", "epoch2024"])
def test_a_loss_above_a_uniform_guess_is_refused_where_predict_would_print_it(cli, law):
    """No printed loss exceeds a uniform guess over the law's vocabulary (ln V): the law is carried far
    outside its runs there, and the prediction is refused in one line (Python, text and --json alike)."""
    laws = load_laws(law)
    assert laws.uniform_loss == pytest.approx(math.log(32168))
    with pytest.raises(UserError, match=UNIFORM):
        predict_supervised(laws, 1e3, 2e4)
    near = predict_supervised(laws, 546e6, 10.92e9)
    assert near.prediction.value < laws.uniform_loss
    for extra in ((), ("--json",)):
        code, out, err = cli("predict", "supervised", "--law", law, "--params", "1K", "--tokens", "20K", *extra)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1 and UNIFORM in err, err
        assert f"{math.log(32168):.4f}" in err


def test_a_distilled_loss_above_a_uniform_guess_is_refused():
    with pytest.raises(UserError, match="the student's loss without a teacher would be .* " + UNIFORM):
        predict_distillation(load_laws("busbridge2025"), 1e3, 2e4, teacher_loss=2.5)


def test_plans_refuse_a_loss_above_a_uniform_guess():
    with pytest.raises(UserError, match=UNIFORM):
        ds.plan("epoch2024", compute=1e13, student_params=1e3)
    with pytest.raises(UserError, match="pretrain instead.*" + UNIFORM):
        ds.plan("busbridge2025", compute=1e13, student_params=1e3, scenario="best-case")


def test_fewer_tokens_per_parameter_than_every_run_is_said_however_near(cli):
    """busbridge2025's runs reach down to 1 token per parameter: 0.5 (2x below, inside the factor
    that size and tokens are allowed) is outside them, and predict and plan say it."""
    laws = load_laws("busbridge2025")
    low = data_range(laws).tokens_per_param[0]
    assert low == 1.0
    below, inside = predict_supervised(laws, 1e9, 5e8), predict_supervised(laws, 1e9, 2e9)
    said = [w for w in below.warnings if "tokens per parameter" in w]
    assert len(said) == 1 and "fewer than every run it was fitted on" in said[0] and "(0.5 tokens per parameter)" in said[0]
    assert not [w for w in inside.warnings if "tokens per parameter" in w]
    code, out, err = cli("predict", "supervised", "--params", "1B", "--tokens", "500M")
    assert code == 0 and "fewer than every run it was fitted on" in " ".join(err.split())
    plan = ds.plan("busbridge2025", compute=1e19, student_params=3e9, scenario="best-case")
    assert plan.headline.student_tokens / 3e9 < low
    assert any("student's tokens per parameter" in w and "fewer than every run" in w for w in plan.warnings)
    supervised = ds.plan("epoch2024", compute=3e18, student_params=16e9)
    assert supervised.supervised.tokens / 16e9 < data_range(supervised.laws).tokens_per_param[0]
    assert any("fewer than every run" in w for w in supervised.warnings)


def test_a_fitted_laws_own_range_of_tokens_per_parameter_is_the_one_said():
    """A fitted law's range is its runs' (its fit record's data range), not a preset's."""
    import dataclasses

    from distillscale.laws.record import DataRange

    laws = load_laws("epoch2024")
    fit = laws.supervised.fit.model_copy(update={"data_range": DataRange(params=(1e7, 1e9), tokens=(1e8, 1e11),
                                                                         tokens_per_param=(5.0, 100.0))})
    laws = dataclasses.replace(laws, supervised=dataclasses.replace(laws.supervised, fit=fit))
    said = [w for w in predict_supervised(laws, 1e8, 3e8).warnings if "tokens per parameter" in w]
    assert len(said) == 1 and "below the smallest (5)" in said[0] and "(3 tokens per parameter)" in said[0]
    assert not [w for w in predict_supervised(laws, 1e8, 6e8).warnings if "tokens per parameter" in w]
