"""Fitting from Python (a DataFrame's columns or arrays), the fit record that law.json keeps
(schema_version: old files load, newer or malformed ones are refused in one line), and the shared
calibrate() workflow behind `fit` and `report`."""

import json

import numpy as np
import pandas as pd
import pytest

import distillscale as ds
from distillscale.errors import ParameterError, UserError
from distillscale.laws.record import FIT_SCHEMA_VERSION

# One start per parameter keeps every fit below a second; variable projection ignores it.
SMALL_GRID = {"log_E": (0.5,), "log_A": (5.0,), "log_B": (5.0, 10.0), "alpha": (0.5,), "beta": (0.5,)}
DISTILLATION_GRID = {"log_A": (10.0, 20.0), "log_B": (10.0,), "alpha": (0.5,), "beta": (0.5,), "gamma": (0.5,),
                     "c0": (0.0, 1.0), "c1": (0.0,), "f1": (1.0,), "log_d1": (0.0,)}


def supervised_runs(seed: int = 0) -> pd.DataFrame:
    truth = ds.load_laws("epoch2024").supervised
    N, M = (x.ravel() for x in np.meshgrid(1e7 * 2.0 ** np.arange(6), [5, 20, 80], indexing="ij"))
    loss = truth.predict(N, M * N) * np.exp(0.003 * np.random.default_rng(seed).standard_normal(len(N)))
    return pd.DataFrame({"N": N, "D": M * N, "loss": loss, "name": [f"run{i}" for i in range(len(N))]})


@pytest.fixture(scope="module")
def fit():
    return ds.fit_supervised(supervised_runs(), params="N", tokens="D", loss="loss", form="chinchilla",
                             bootstrap=20)


@pytest.mark.slow
def test_a_dataframe_and_arrays_give_the_same_fit(fit):
    runs = supervised_runs()
    # With the form given, the point fit depends on neither the bootstrap nor the backtest: these skip both.
    by_position = ds.fit_supervised(runs["N"].to_numpy(), runs["D"].to_numpy(), runs["loss"].to_numpy(),
                                    form="chinchilla", bootstrap=0, backtest=False)
    by_keyword = ds.fit_supervised(params=list(runs["N"]), tokens=runs["D"].to_numpy(), loss=runs["loss"],
                                   form="chinchilla", bootstrap=0, backtest=False)
    as_dict = ds.fit_supervised({"params": runs["N"], "tokens": runs["D"], "loss": runs["loss"]},
                                form="chinchilla", bootstrap=0, backtest=False)   # the default column names
    for other in (by_position, by_keyword, as_dict):
        assert other.law.coefficients() == fit.law.coefficients()
        assert other.record.data_hash == fit.record.data_hash
    assert fit.law.coefficients()["E"] == pytest.approx(1.8172, rel=0.1)
    prediction = fit.predict(1e9, 2e10)  # beyond the runs: an interval with its extrapolation error
    assert prediction.low < prediction.value < prediction.high and prediction.dominant
    assert set(fit.intervals) == {"E", "A", "B", "alpha", "beta"} and fit.backtest.held_out


@pytest.mark.parametrize("kwargs, message", [
    ({"params": "size"}, "params='size' is not a column of the table; its columns: 'N', 'D', 'loss', 'name'"),
    ({"params": "name"}, "params must hold numbers"),
    ({"loss": np.ones(3)}, "loss has 3 runs, params has 18"),
    ({"form": "kaplan"}, "unknown form 'kaplan'"),
])
def test_bad_inputs_name_the_python_parameter(kwargs, message):
    arguments = {"params": "N", "tokens": "D", "loss": "loss", "bootstrap": 0, **kwargs}
    with pytest.raises(ParameterError) as error:
        ds.fit_supervised(supervised_runs(), **arguments)
    assert message in str(error.value)
    assert "--" + error.value.param.replace("_", "-") in error.value.for_cli()  # the CLI says the flag


def test_values_must_be_positive_and_columns_need_a_table():
    runs = supervised_runs()
    with pytest.raises(ParameterError, match=r"tokens must be finite and positive; runs 2 are not"):
        ds.fit_supervised(runs["N"], np.where(np.arange(len(runs)) == 2, -1.0, runs["D"]), runs["loss"])
    with pytest.raises(ParameterError, match="params='N' names a column, but no table was given"):
        ds.fit_supervised(params="N", tokens="D", loss="loss")


def test_save_load_round_trip_with_schema_version(fit, tmp_path):
    path = tmp_path / "law.json"
    fit.save(path)
    stored = json.loads(path.read_text())
    assert stored["supervised"]["fit"]["schema_version"] == FIT_SCHEMA_VERSION
    assert stored["supervised"]["fit"]["selection"]["chosen"] == "chinchilla"
    again = ds.load_laws(path)
    assert again.name == "law" and again.supervised.fit == fit.law.fit
    assert again.supervised.fit.extrapolation_error == fit.extrapolation_error
    before, after = fit.predict(1e9, 2e10), again.supervised.prediction(1e9, 2e10)
    assert (after.value, after.low, after.high) == (before.value, before.low, before.high)


def test_a_law_file_from_before_schema_version_still_loads(fit, tmp_path):
    # What `fit --out` wrote at first (commit 54dc1ab): no schema_version, constraints, data range,
    # solver, selection, backtest or extrapolation error.
    old = {key: value for key, value in fit.record.to_json().items()
           if key not in ("schema_version", "constraints", "data_range", "solver", "not_identified", "selection",
                          "backtest", "extrapolation_error")}
    old["source"] = {"file": "runs.csv", "params_col": "N", "loss_col": "loss", "tokens_col": "D"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "distillscale.laws/1", "name": "old", "source": "fitted to runs.csv",
                                "compute": {"n_ctx": 4096, "n_vocab": 32168, "aspect_ratio": 128.0},
                                "supervised": {"form": "chinchilla", "coefficients": fit.law.coefficients(),
                                               "fit": old},
                                "distillation": None}))
    law = ds.load_laws(path).supervised
    assert law.fit.schema_version == 1 and law.fit.extrapolation_error is None
    prediction = law.prediction(1e9, 2e10)   # the bootstrap's interval alone, as then
    assert prediction.low < prediction.value < prediction.high and prediction.extrapolation is None
    # A data range from before tokens_per_param gets the widest ratios its spans allow.
    data = json.loads(path.read_text())
    data["supervised"]["fit"]["data_range"] = {"params": [1e7, 1e9], "tokens": [1e8, 1e11]}
    path.write_text(json.dumps(data))
    assert ds.load_laws(path).supervised.fit.data_range.tokens_per_param == (0.1, 1e4)


@pytest.mark.parametrize("change, message", [
    ({"schema_version": FIT_SCHEMA_VERSION + 1},
     f"supervised.fit.schema_version = {FIT_SCHEMA_VERSION + 1}: the fit record is newer than this "
     "distillscale reads"),
    ({"schema_version": "2"}, "supervised.fit.schema_version = '2': the fit record's schema version must be"),
    ({"level": "high"}, "supervised.fit.level = 'high': must be a number"),
    ({"level": 5}, "supervised.fit.level = 5: Input should be less than 1"),
    ({"intervals": {"E": [1.0]}}, "supervised.fit.intervals.E.1 is missing"),
    ({"colour": "blue"}, "supervised.fit.colour is not a field of a law file"),
])
def test_newer_or_malformed_fit_records_are_refused_in_one_line(fit, tmp_path, cli, change, message):
    path = tmp_path / "law.json"
    fit.save(path)
    data = json.loads(path.read_text())
    data["supervised"]["fit"].update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=f"^law file {path}: supervised.fit") as error:
        ds.load_laws(path)
    assert message in str(error.value)
    code, _, err = cli("predict", "supervised", "--law", path, "--params", "1B", "--tokens", "20B")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_newer_law_file_format_is_refused(tmp_path):
    path = tmp_path / "law.json"
    ds.load_laws("epoch2024").save(path)
    path.write_text(path.read_text().replace("distillscale.laws/1", "distillscale.laws/2"))
    with pytest.raises(UserError, match="format 'distillscale.laws/2', which this distillscale does not read"):
        ds.load_laws(path)


@pytest.mark.slow
def test_fit_distillation_from_a_dataframe_and_save():
    laws = ds.load_laws("busbridge2025")
    rng = np.random.default_rng(1)
    N_S = np.exp(rng.uniform(np.log(1e8), np.log(1e10), 60))
    D_S = N_S * rng.choice([10, 40, 160], 60)
    N_T = np.exp(rng.uniform(np.log(1e8), np.log(3e10), 60))
    L_T = laws.supervised.predict(N_T, 20 * N_T)
    runs = pd.DataFrame({"n": N_S, "d": D_S, "teacher": L_T, "loss": laws.distillation.predict(N_S, D_S, L_T)})
    fit = ds.fit_distillation(runs, params="n", tokens="d", teacher_loss="teacher", student_law=laws.supervised,
                              form="free", backtest=False, bootstrap=0, grid=DISTILLATION_GRID)
    assert fit.record.diagnostics.max_relative_error < 0.01
    assert fit.predict(546e6, 10.92e9, 2.0036).value == pytest.approx(2.376, rel=0.01)
    assert fit.laws().supervised is laws.supervised and fit.laws().distillation is fit.law
    with pytest.raises(ParameterError, match="student_law must be a SupervisedLaw"):
        ds.fit_distillation(runs, params="n", tokens="d", teacher_loss="teacher", student_law=laws)


@pytest.mark.slow
def test_calibrate_fits_both_laws_and_checks_the_held_out_runs():
    truth = ds.load_laws("busbridge2025")
    supervised = supervised_runs()
    supervised["loss"] = truth.supervised.predict(supervised["N"], supervised["D"])
    students = [(n, m * n, L_T) for n in (1e8, 3e8, 1e9) for m in (20, 80) for L_T in (2.4, 2.2, 2.0, 1.9)]
    N_S, D_S, L_T = (np.array(c) for c in zip(*students))
    runs = pd.concat([supervised.assign(teacher_loss=np.nan),
                      pd.DataFrame({"N": N_S, "D": D_S, "teacher_loss": L_T,
                                    "loss": truth.distillation.predict(N_S, D_S, L_T)})], ignore_index=True)
    # Held out: the largest supervised size and the students of the strongest teacher.
    is_student = runs["teacher_loss"].notna().to_numpy()
    fit_rows = ~((runs["teacher_loss"] == 1.9) | (~is_student & (runs["N"] == supervised["N"].max()))).to_numpy()
    calibration = ds.calibrate(runs, params="N", tokens="D", loss="loss", holdout=fit_rows,
                               supervised_options={"bootstrap": 0, "form": "busbridge", "backtest": False},
                               distillation_options={"bootstrap": 0, "grid": DISTILLATION_GRID, "backtest": False})
    assert calibration.supervised.record.n_runs == (~is_student & fit_rows).sum() == 15
    assert calibration.distillation.record.n_runs == (is_student & fit_rows).sum() == 18
    for name, check in calibration.holdout.items():
        assert len(check.runs) == ((is_student == (name == "distillation")) & ~fit_rows).sum() > 0
        assert np.abs(check.errors).max() < 0.02, name
    laws = calibration.laws("both")
    assert laws.distillation.student_law is laws.supervised is calibration.supervised.law
    with pytest.raises(ParameterError, match="no supervised runs"):
        ds.calibrate(runs[runs["teacher_loss"].notna()], params="N", tokens="D", loss="loss")


def test_tokens_from_training_flops_in_python_and_the_cli_are_the_same_runs(cli, tmp_path):
    """One column mapping (`supervised_runs`): `flops=` gives D = C / 6N from Python, as --flops-col does."""
    N = 1e7 * 2.0 ** np.arange(6)
    D = 20 * N
    frame = pd.DataFrame({"N": np.repeat(N, 2), "C": np.repeat(6 * N * D, 2) * np.tile([1, 4], 6),
                          "loss": 2.0 + np.repeat(N, 2) ** -0.2})
    # One form (the default's three forms and refit would read the same columns, at 4x the CPU).
    fit = ds.fit_supervised(frame, params="N", flops="C", loss="loss", form="chinchilla", bootstrap=0,
                            backtest=False)
    assert fit.law.fit.data_range.tokens == pytest.approx((D[0], 4 * D[-1]))
    with pytest.raises(ds.UserError, match="give tokens or flops, not both"):
        ds.fit_supervised(frame, params="N", tokens="C", flops="C", loss="loss")
    frame.to_csv(tmp_path / "runs.csv", index=False)
    code, out, err = cli("fit", "supervised", tmp_path / "runs.csv", "--params-col", "N", "--flops-col", "C",
                         "--form", "chinchilla", "--bootstrap", "0", "--no-backtest", "--json")
    assert code == 0, err
    assert json.loads(out)["data_hash"] == fit.law.fit.data_hash  # the same N, D and loss, bit for bit


def test_a_law_with_an_exponent_on_the_fitters_bound_saves_and_loads(tmp_path):
    """The fitter's exponents live in [0, 4]: one that ends at 0 (a flat term, not identified) is a
    law the fitter can produce, so its file must load again."""
    law = ds.SupervisedLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.0)
    ds.LawSet("flat", supervised=law).save(tmp_path / "flat.json")
    assert ds.load_laws(tmp_path / "flat.json").supervised.beta == 0.0
    with pytest.raises(UserError, match="beta"):
        path = tmp_path / "negative.json"
        path.write_text((tmp_path / "flat.json").read_text().replace('"beta": 0.0', '"beta": -0.1'))
        ds.load_laws(path)
