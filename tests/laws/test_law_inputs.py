"""Results carry the law they were computed with (issue 32, item 3): a plan keeps its law object,
and what follows from it (the repetition check) never reloads a law by its name."""

import json

import numpy as np
import pytest

import distillscale as ds
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.lawset import LawSet, load_laws
from distillscale.planning.plan import repetition_check


def _runs(law: SupervisedLaw):
    N = np.repeat([2e7, 5e7, 1e8, 2e8, 4e8], 3)
    D = N * np.tile([10.0, 20.0, 40.0], 5)
    return N, D, np.asarray(law.predict(N, D), float)


def test_a_plan_of_an_unsaved_fit_checks_repetition_with_that_fit(tmp_path, monkeypatch):
    truth = SupervisedLaw(E=2.0, A=300.0, B=900.0, alpha=0.33, beta=0.3)
    fit = ds.fit_supervised(*_runs(truth), form="chinchilla", backtest=False, bootstrap=0)
    # a decoy law.json where the plan would have looked for it
    monkeypatch.chdir(tmp_path)
    load_laws("epoch2024").save(tmp_path / "law.json")
    plan = ds.plan(fit, compute=1e21)
    checks = repetition_check(plan, 1e9)
    (N, D), = plan.models().values()
    check, = checks.values()
    assert check.loss_fresh == pytest.approx(float(fit.law.predict(N, D)), rel=1e-12)
    assert check.loss_fresh != pytest.approx(float(load_laws("epoch2024").supervised.predict(N, D)), rel=1e-3)
    assert "--law law.json" in plan.as_cli_command()  # where to save it, to run it again


def test_a_law_set_named_like_a_preset_is_not_reloaded_as_the_preset(tmp_path):
    own = LawSet("busbridge2025", SupervisedLaw(E=2.5, A=100.0, B=200.0, alpha=0.3, beta=0.3))
    plan = ds.plan(own, compute=1e21)
    (N, D), = plan.models().values()
    check, = repetition_check(plan, 1e9).values()
    assert check.loss_fresh == pytest.approx(float(own.supervised.predict(N, D)), rel=1e-12)
    assert "--law busbridge2025" not in plan.as_cli_command()
    # saved and loaded, it is named by its file; the preset itself by its name
    own.save(tmp_path / "own.json")
    assert f"--law {tmp_path / 'own.json'}" in ds.plan(load_laws(tmp_path / "own.json"), compute=1e21).as_cli_command()
    assert "--law busbridge2025" in ds.plan(load_laws("busbridge2025"), compute=1e21,
                                             student_params=546e6).as_cli_command()
    assert json.loads(plan.to_json())["law"] == "busbridge2025"


def test_limits_follow_the_declared_quantity_not_a_word_in_its_name(tmp_path):
    """A teacher loss read from a candidates file whose path says "params" is still a loss: no
    parameter-count limits (issue 32, item 8: limits were chosen by a substring of the name)."""
    low_entropy = LawSet("low", SupervisedLaw(E=0.2, A=300.0, B=900.0, alpha=0.33, beta=0.3),
                         ds.load_laws("busbridge2025").distillation)
    folder = tmp_path / "teacher_params_study"
    folder.mkdir()
    (folder / "candidates.csv").write_text("name,teacher_loss\nsmall,0.6\nlarge,0.5\n")
    from distillscale.planning.plan import planner_for
    from distillscale.planning.teacher import read_candidates

    candidates = read_candidates(folder / "candidates.csv", planner_for(low_entropy))
    assert sorted(c.loss for c in candidates) == [0.5, 0.6]
    # and a count declared as tokens keeps its limits whatever it is called
    from distillscale.errors import UserError
    from distillscale.units import Quantity, check_quantity
    with pytest.raises(UserError, match="outside the range of tokens"):
        check_quantity(1e30, "corpus size", kind=Quantity.TOKENS)
    assert check_quantity(1e30, "bytes per token", kind=None) == 1e30


@pytest.mark.parametrize("kwargs, param", [
    (dict(on_policy=ds.OnPolicy(efficiency=1e300), teacher=ds.ExistingTeacher(params=7e9, tokens=1e12)),
     "on_policy.efficiency"),
    (dict(teacher=ds.ExistingTeacher(params=7e9, loss=1e300)), "teacher.loss"),
    (dict(teacher=ds.ExistingTeacher(params=7e9, loss=1e300), on_policy=ds.OnPolicy()), "teacher.loss"),
    (dict(aspect_ratio=float("inf")), "aspect_ratio"),
])
def test_numbers_are_bounded_where_they_are_used(kwargs, param):
    """G4: an efficiency of 1e300 made D_eff inf and a "0.0000 nats ahead" verdict; a teacher loss
    of 1e300 was printed as the student's loss."""
    from distillscale.errors import ParameterError
    with pytest.raises(ParameterError) as caught:
        ds.plan("busbridge2025", compute=1e21, student_params=546e6, **kwargs)
    assert param in caught.value.params


def test_cli_refuses_an_unbounded_efficiency_in_one_line(cli):
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--teacher-params", "7B", "--teacher-tokens", "1T", "--on-policy-efficiency", "1e300")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--on-policy-efficiency" in err


def test_repetition_reaches_the_mode_table_and_the_verdict():
    """G9: with --unique-tokens the mode comparison quoted a "fresh data" loss that was not its own
    table's, and the repetition penalty never reached the table or the verdict."""
    teacher = ds.ExistingTeacher(params=7e9, tokens=1e12)
    kwargs = dict(compute=1e21, student_params=546e6, teacher=teacher, on_policy=ds.OnPolicy())
    fresh = ds.plan("busbridge2025", **kwargs)
    # the teacher on a pool of its own 1T tokens (one epoch): only the students repeat the 5B
    limited = ds.plan("busbridge2025", unique_tokens=5e9, teacher_unique_tokens=1e12, **kwargs)
    assert set(limited.repetition) == {m.name for m in limited.modes} | {"teacher"}
    assert limited.repetition["teacher"].epochs == 1 and limited.teacher_loss == fresh.teacher_loss
    for name in {m.name for m in limited.modes}:
        assert limited.repetition[name].unique_tokens == 5e9
    for before, after in zip(fresh.modes, limited.modes):
        check = limited.repetition[after.name]
        assert after.repetition_penalty > 0 and check.penalty == pytest.approx(after.repetition_penalty, rel=1e-9)
        assert check.loss_fresh == pytest.approx(before.student_loss, rel=1e-12)   # the table's own loss
        assert after.student_loss == pytest.approx(check.loss_repeated, rel=1e-12)  # the penalty is in it
    assert limited.best is min(limited.modes, key=lambda m: m.student_loss)
    # the supervised student repeats its data most (47 epochs against 10): the verdict moves
    assert fresh.best.name == "supervised" and limited.best.name != "supervised"
    record = json.loads(limited.to_json())
    assert record["best"] == limited.best.name and record["repetition"]["supervised"]["penalty"] > 0.02
    assert "--unique-tokens 5e+09" in limited.as_cli_command()


def test_a_prediction_from_a_handful_of_unique_tokens_is_refused():
    """G9: `predict --unique-tokens 1` gave 77 nats/token (2e10 epochs): the law is evaluated at the
    repeated tokens' worth D', far outside its data. A pool that far below the law's runs is refused
    (`laws.extrapolation.pool_floor`); one it can price is predicted without a word of it."""
    from distillscale.errors import ParameterError
    from distillscale.laws.predict import predict_supervised as predict
    with pytest.raises(ParameterError, match="unique_tokens 1 is far below what law 'epoch2024' was measured on"):
        predict(load_laws("epoch2024"), 1e9, 2e10, unique_tokens=1)
    assert not any("D' after" in w for w in predict(load_laws("epoch2024"), 1e9, 2e10, unique_tokens=1e10).warnings)


def _grid_runs(sizes=(2e7, 5e7, 1e8, 2e8), ratios=(10.0, 20.0, 40.0)):
    N = np.repeat(np.asarray(sizes, float), len(ratios))
    return N, N * np.tile(ratios, len(sizes))


def test_constant_losses_do_not_give_a_zero_width_interval():
    """G5: constant losses backtested with 0.0% error gave "3.0000 (90% interval 3.0000-3.0000)":
    a backtest that measures no error at all is not certainty."""
    N, D = _grid_runs()
    fit = ds.fit_supervised(N, D, np.full(len(N), 3.0), form="chinchilla", bootstrap=0)
    assert not fit.extrapolation_error.measured
    prediction = fit.law.prediction(1e9, 2e10)
    assert prediction.high - prediction.low > 0.01 * prediction.value


@pytest.mark.slow
@pytest.mark.last_bits
def test_backtest_errors_of_exactly_zero_give_the_unmeasured_interval(monkeypatch):
    """Issue 57: on an AVX2-only CPU the constant runs' backtest scored exactly 0, where an
    AVX-512 CPU scores ~1e-16; inf x 0 then pooled no candidate's errors and the fit raised
    "need at least one array to concatenate". Both roundings must give the same fit."""
    from distillscale.laws.backtest import Backtest

    N, D = _grid_runs()
    loss = np.full(len(N), 3.0)
    score = Backtest.score
    monkeypatch.setattr(Backtest, "score", lambda self, *a, **k: None if score(self, *a, **k) is None else 0.0)
    exact = ds.fit_supervised(N, D, loss, form="auto", bootstrap=0)
    monkeypatch.setattr(Backtest, "score", lambda self, *a, **k: None if score(self, *a, **k) is None else 1e-17)
    rounded = ds.fit_supervised(N, D, loss, form="auto", bootstrap=0)
    assert not exact.extrapolation_error.measured and exact.extrapolation_error == rounded.extrapolation_error
    assert exact.chosen == rounded.chosen and exact.reason == rounded.reason


def test_total_parameters_with_a_form_given_are_refused_not_ignored():
    """Issue 57: with a form given, total parameters were ignored (the law fitted on non-embedding N)
    yet recorded as the fit's column."""
    from distillscale.errors import ParameterError

    N, D = _grid_runs()
    with pytest.raises(ParameterError, match="total_params is only used with form auto"):
        ds.fit_supervised(N, D, 2 + 400 / N ** 0.34 + 400 / D ** 0.28, total_params=1.2 * N, form="chinchilla")


def test_one_model_size_gives_an_interval_of_possible_losses():
    """G5: one model size gave an interval of -1.84 to 4.00 nats."""
    D = 1e8 * np.array([5.0, 10, 20, 40, 80, 160])
    N = np.full(len(D), 1e8)
    loss = 2 + 400 / N ** 0.34 + 400 / D ** 0.28
    fit = ds.fit_supervised(N, D, loss, form="chinchilla", bootstrap=0)
    prediction = fit.law.prediction(1e10, 2e11)
    assert 0 < prediction.low < prediction.value < prediction.high


def test_one_run_repeated_is_one_point_not_ten():
    """G5: one run repeated 10 times fitted as "10 runs"."""
    from distillscale.errors import UserError
    with pytest.raises(UserError, match="1 distinct"):
        ds.fit_supervised(np.full(10, 1e8), np.full(10, 2e9), np.full(10, 3.1), form="chinchilla", bootstrap=0,
                          backtest=False)


def test_fit_json_gives_no_interval_to_a_coefficient_not_identified(cli, tmp_path):
    """G5: a coefficient printed "not identified" still had intervals.A = [x, x] in --json."""
    N, D = _grid_runs()
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},3.0\n" for n, d in zip(N, D)))
    code, out, err = cli("fit", "supervised", str(path), "--form", "chinchilla", "--bootstrap", "200",
                         "--no-backtest", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["not_identified"]
    for name in record["not_identified"]:
        assert record["intervals"].get(name) is None


def test_python_api_refuses_bad_arguments_with_a_clear_error(tmp_path):
    """Python API: max_folds=-3 and fit.save(None) raised raw exceptions; law.predict(None | -1e9 |
    0, D) returned nan/inf silently; published.load(["x"]) a raw TypeError."""
    from distillscale.errors import ParameterError, UserError
    from distillscale.laws import published
    N, D = _grid_runs()
    loss = 2 + 400 / N ** 0.34 + 400 / D ** 0.28
    with pytest.raises(ParameterError, match="max_folds .*at least 1"):
        ds.fit_supervised(N, D, loss, form="chinchilla", bootstrap=0, max_folds=-3)
    fit = ds.fit_supervised(N, D, loss, form="chinchilla", bootstrap=0, backtest=False)
    for path in (None, 3):
        with pytest.raises(ParameterError, match="path must be a file name"):
            fit.save(path)
    law = load_laws("busbridge2025")
    for bad in (None, -1e9, 0, float("nan"), [1e9, -1.0]):
        with pytest.raises(ParameterError, match="^N must be"):
            law.supervised.predict(bad, 2e10)
    with pytest.raises(ParameterError, match="^L_T must be"):
        law.distillation.predict(1e9, 2e10, 0)
    with pytest.raises(UserError, match="unknown published set"):
        published.load(["x"])


def test_cli_reports_a_degenerate_fit_in_one_line(cli, tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "1e8,2e9,3.1\n" * 10)
    code, out, err = cli("fit", "supervised", str(path), "--form", "chinchilla", "--no-backtest")
    assert code == 2 and err.count("\n") == 1 and "1 distinct (N, D) point" in err


@pytest.mark.slow
def test_huber_delta_reaches_the_record_and_the_help_is_current(cli, tmp_path):
    """Messages: --huber-delta looked ignored (the record showed the median refit's 0.05) and its
    help gave stale defaults; --form auto's help said it picks the backtest winner."""
    N, D = _grid_runs()
    loss = 2 + 400 / N ** 0.34 + 400 / D ** 0.28
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{l:.6f}\n" for n, d, l in zip(N, D, loss)))
    code, out, err = cli("fit", "supervised", str(path), "--huber-delta", "0.02", "--bootstrap", "0",
                         "--no-backtest", "--json")
    assert code == 0, err
    assert json.loads(out)["huber_delta"] == 0.02
    code, out, _ = cli("fit", "supervised", "--help")
    text = " ".join(out.replace("│", " ").split())
    assert "median of the three forms" in text and "extrapolates best" not in text
    assert "1e-3 for chinchilla and tied" in text


@pytest.mark.slow
@pytest.mark.last_bits
def test_a_data_constrained_fit_does_not_name_its_form_both_chosen_and_not_chosen():
    rng = np.random.default_rng(0)
    N, D = _grid_runs()
    truth = SupervisedLaw(E=2.0, A=300.0, B=900.0, alpha=0.33, beta=0.3)
    U = np.where(np.arange(len(N)) % 3 == 2, D / 8, D)   # a third of the runs repeat 8 epochs
    from distillscale.laws.repetition import Repetition, predict_repeated
    loss = predict_repeated(truth, Repetition(5.0), N, D, U) * (1 + 1e-3 * rng.standard_normal(len(N)))
    fit = ds.fit_supervised(N, D, loss, unique_tokens=U, bootstrap=0)
    assert fit.chosen.endswith("data-constrained")
    form = fit.chosen.split(",")[0]
    assert "not chosen" not in fit.reason and f"the {form} form with repetition" in fit.reason


@pytest.mark.slow
def test_a_long_fit_reports_progress_on_stderr_not_in_its_json(cli, tmp_path, monkeypatch):
    """HANG: a default `fit supervised` on 10,000 rows printed nothing for 400 s. Progress goes to
    stderr when it is a terminal (in a pipe an error stays the only line)."""
    from distillscale import console as console_module
    monkeypatch.setattr(type(console_module.err_console), "is_terminal", property(lambda self: True))
    N, D = _grid_runs(sizes=(2e7, 5e7, 1e8, 2e8, 4e8))
    loss = 2 + 400 / N ** 0.34 + 400 / D ** 0.28
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{l:.6f}\n" for n, d, l in zip(N, D, loss)))
    code, out, err = cli("fit", "supervised", str(path), "--form", "chinchilla", "--bootstrap", "0", "--json")
    assert code == 0, err
    json.loads(out)  # stdout stays JSON
    assert "fit: backtesting chinchilla" in err and "fit: fitting chinchilla to 15 runs" in err
    steps = []
    ds.fit_supervised(N, D, loss, form="chinchilla", bootstrap=0, progress=steps.append)
    assert steps[0].startswith("backtesting") and steps[-1].startswith("fitting chinchilla")
    # the default fit's longest steps (the forms' bootstraps, the median's refits) report as they go
    steps = []
    ds.fit_supervised(N, D, loss, bootstrap=20, backtest=False, progress=steps.append)
    assert any(s.startswith("fitting the busbridge form (3 of 3) with 20 bootstrap") for s in steps)
    assert "bootstrap of the median: 20 of 20 resamples refitted" in steps
