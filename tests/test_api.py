"""The Python API: `import distillscale as ds`, fit with a backtest, predict with an interval."""

import subprocess
import sys

import numpy as np


def test_import_is_light_and_names_load_on_first_use():
    code = ("import sys, distillscale as ds; assert 'torch' not in sys.modules; "
            "laws = ds.load_laws('busbridge2025'); assert 'torch' not in sys.modules; "
            "print(round(laws.supervised.predict(546e6, 20 * 546e6), 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2.515"


def test_fit_predict_and_save_from_python(tmp_path):
    import distillscale as ds

    truth = ds.load_laws("epoch2024").supervised
    N, M = (x.ravel() for x in np.meshgrid(1e7 * 2.0 ** np.arange(6), [5, 20, 80], indexing="ij"))
    loss = truth.predict(N, M * N) * np.exp(0.003 * np.random.default_rng(0).standard_normal(len(N)))
    fit = ds.fit_supervised(N, M * N, loss, bootstrap=50)
    assert fit.chosen in ("tied", "chinchilla", "busbridge") and len(fit.candidates) == 3
    prediction = fit.law.prediction(1e9, 2e10)
    assert prediction.low < prediction.value < prediction.high and prediction.dominant
    path = tmp_path / "law.json"
    ds.LawSet("mine", supervised=fit.law).save(path)
    again = ds.load_laws(path).supervised.prediction(1e9, 2e10)
    assert (again.low, again.high) == (prediction.low, prediction.high)
