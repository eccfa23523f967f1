"""Predictions outside what a law's runs describe say so where they are printed: a loss no better
than a uniform guess over the law's vocabulary (ln V), and a target trained on fewer tokens per
parameter than every run the law was fitted on (its D/N range), however near."""

import json
import math

import pytest

import distillscale as ds
from distillscale.laws.extrapolation import data_range
from distillscale.laws.lawset import load_laws
from distillscale.laws.predict import predict_distillation, predict_supervised

UNIFORM = "a prediction no better than a uniform guess"


@pytest.mark.parametrize("law", ["busbridge2025", "chinchilla2022", "epoch2024"])
def test_a_loss_above_a_uniform_guess_is_said_where_predict_prints_it(cli, law):
    laws = load_laws(law)
    far, near = predict_supervised(laws, 1e3, 2e4), predict_supervised(laws, 546e6, 10.92e9)
    assert far.prediction.value > math.log(laws.compute.n_vocab) == pytest.approx(math.log(32168))
    said = [w for w in far.warnings if UNIFORM in w]
    assert len(said) == 1 and f"({far.prediction.value:.4f} nats/token)" in said[0]
    assert f"{math.log(32168):.4f} nats/token" in said[0]
    assert not [w for w in near.warnings if UNIFORM in w]
    code, out, err = cli("predict", "supervised", "--law", law, "--params", "1K", "--tokens", "20K", "--json")
    assert code == 0, err
    assert any(UNIFORM in w for w in json.loads(out)["warnings"])
    code, out, err = cli("predict", "supervised", "--law", law, "--params", "1K", "--tokens", "20K")
    assert code == 0 and UNIFORM in " ".join(err.split())


def test_a_distilled_loss_above_a_uniform_guess_is_said():
    result = predict_distillation(load_laws("busbridge2025"), 1e3, 2e4, teacher_loss=2.5)
    assert result.supervised_loss > math.log(32168)
    assert any(UNIFORM in w and "without a teacher" in w for w in result.warnings)


def test_plans_say_a_loss_above_a_uniform_guess():
    supervised = ds.plan("epoch2024", compute=1e13, student_params=1e3)
    assert supervised.supervised.loss > math.log(32168) and any(UNIFORM in w for w in supervised.warnings)
    distilled = ds.plan("busbridge2025", compute=1e13, student_params=1e3, scenario="best-case")
    assert any(UNIFORM in w and "without a teacher" in w for w in distilled.warnings)


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
