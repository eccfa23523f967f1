"""The Python API: `import distillscale as ds`, fit with a backtest, predict with an interval."""

import subprocess
import sys

import numpy as np
import pytest


def test_import_is_light_and_names_load_on_first_use():
    code = ("import sys, distillscale as ds; assert 'torch' not in sys.modules; "
            "laws = ds.load_laws('busbridge2025'); assert 'torch' not in sys.modules; "
            "print(round(laws.supervised.predict(546e6, 20 * 546e6), 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2.515"


def test_the_planner_loads_scipy_on_the_first_plan_only():
    """`import distillscale.planning.plan` (the planner page and `plan --help` import it) leaves the
    solver's SciPy for the first plan."""
    code = ("import sys, distillscale.planning.plan as p; assert 'scipy' not in sys.modules, 'scipy imported'; "
            "p.plan('busbridge2025', compute=1e21, student_params=546e6); assert 'scipy.optimize' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_export_changes_no_class_and_constructors_are_checked_in_any_import_order():
    """Issue 36, item 4: `ds.LawSet` is the class itself, unchanged by the access; its public
    constructors are checked however it was imported (they were rewritten on the first `ds.X`)."""
    code = ("import distillscale.laws.lawset as m\nfrom distillscale.errors import ParameterError\n"
            "before = dict(vars(m.LawSet))\n"
            "try:\n    m.LawSet.from_dict(5)\nexcept ParameterError as exc:\n    print(exc)\n"
            "import distillscale as ds\nassert ds.LawSet is m.LawSet and dict(vars(m.LawSet)) == before")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "data must be a dict, got 5 (int)", out.stderr


def test_every_public_constructor_of_an_export_is_checked():
    import importlib

    import distillscale
    from distillscale import data, model, regime
    from distillscale.training import logit_cache

    unchecked = []
    for package in (distillscale, model, data, regime, logit_cache):
        for name in dir(package):
            found = getattr(package, name)
            for key, value in (vars(found).items() if isinstance(found, type) else ()):
                if isinstance(value, classmethod) and not key.startswith("_") \
                        and not hasattr(value.__func__, "__wrapped_unchecked__"):
                    unchecked.append(f"{package.__name__}.{name}.{key}")
    assert not unchecked, f"declare these @classmethod over @checked (distillscale.checks): {unchecked}"
    assert importlib.import_module("distillscale.sweeps.runner").Sweep.open.__wrapped_unchecked__


@pytest.mark.slow
def test_fit_predict_and_save_from_python(tmp_path):
    import distillscale as ds

    truth = ds.load_laws("epoch2024").supervised
    N, M = (x.ravel() for x in np.meshgrid(1e7 * 2.0 ** np.arange(6), [5, 20, 80], indexing="ij"))
    loss = truth.predict(N, M * N) * np.exp(0.003 * np.random.default_rng(0).standard_normal(len(N)))
    fit = ds.fit_supervised(N, M * N, loss, bootstrap=50)
    assert fit.chosen == "median of tied, chinchilla, busbridge" and len(fit.candidates) == 4
    prediction = fit.law.prediction(1e9, 2e10)
    assert prediction.low < prediction.value < prediction.high and prediction.dominant
    path = tmp_path / "law.json"
    ds.LawSet("mine", supervised=fit.law).save(path)
    again = ds.load_laws(path).supervised.prediction(1e9, 2e10)
    assert (again.low, again.high) == (prediction.low, prediction.high)


def test_predict_from_python_names_the_python_parameters():
    import distillscale as ds
    from distillscale.laws.predict import predict_distillation, predict_supervised

    laws = ds.load_laws("busbridge2025")
    far = predict_supervised(laws, params=1e13, tokens=1e12)
    assert far.prediction.value == pytest.approx(laws.supervised.predict(1e13, 1e12))
    assert any("far above the largest" in message for message in far.warnings)
    student = predict_distillation(laws, 546e6, 10.92e9, teacher_loss=2.0036)
    assert student.prediction.value == pytest.approx(2.376, rel=0.01) and student.helps
    assert student.to_dict()["capacity_gap_ratio"] == pytest.approx(2.0036 / student.supervised_loss)
    by_size = predict_distillation(laws, 546e6, 10.92e9, teacher_params=7.75e9, teacher_tokens=155e9)
    assert by_size.teacher_loss == pytest.approx(laws.supervised.predict(7.75e9, 155e9))
    with pytest.raises(ds.UserError, match="^teacher_loss 0.5 is not above the irreducible loss"):
        predict_distillation(laws, 546e6, 10.92e9, teacher_loss=0.5)
    with pytest.raises(ds.UserError, match="^give either teacher_loss or teacher_params with teacher_tokens"):
        predict_distillation(laws, 546e6, 10.92e9, teacher_loss=2.0, teacher_params=1e9)
    with pytest.raises(ds.UserError, match="^tokens must be a positive finite number"):
        predict_supervised(laws, 1e9, -1.0)
