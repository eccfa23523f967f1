"""Repeated data in the laws (`laws.repetition`, Muennighoff et al. 2023): the published law, the
R_D* fit, and --unique-tokens in predict, plan and fit."""

import json

import numpy as np

import pytest

from distillscale.laws.data_limited import load_constants

from distillscale.errors import UserError
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.lawset import load_laws
from distillscale.laws.repetition import (MUENNIGHOFF2023, PUBLISHED, Repetition, assess, effective_tokens,
                                          fit_repetition, repetition_penalty, unique_tokens_needed)
from distillscale.report.runs import unique_tokens


def muennighoff_law() -> SupervisedLaw:
    c = MUENNIGHOFF2023
    return SupervisedLaw(c["E"], c["A"], c["B"], c["alpha"], c["beta"])


def test_the_published_data_constrained_law_reproduces_its_spot_values():
    # Muennighoff et al. 2023 (their README): R_D* = 15.4, R_N* = 5.3, and the two models of their
    # Figure 1 (right) at 25B unique tokens.
    assert PUBLISHED.R_D_star == pytest.approx(15.4, abs=0.05) and PUBLISHED.R_N_star == pytest.approx(5.3, abs=0.05)
    law = muennighoff_law()
    assert law.predict_repeated(6.34e9, 242e9, 25e9, PUBLISHED) == pytest.approx(2.2256440889984477, rel=1e-9)
    assert law.predict_repeated(8.67e9, 178e9, 25e9, PUBLISHED) == pytest.approx(2.2269634075087867, rel=1e-9)


def test_effective_tokens_decay_from_fresh_to_a_ceiling():
    assert effective_tokens(5e9, 1e10, 15.4) == pytest.approx(5e9)       # no repetition
    assert effective_tokens(2e9, 1e9, 15.4) == pytest.approx(1e9 + 15.4e9 * -np.expm1(-1 / 15.4))
    assert effective_tokens(1e15, 1e9, 15.4) == pytest.approx(16.4e9)    # never more than (1 + R_D*) U
    # Four epochs are worth almost four fresh ones (Muennighoff et al.: repeating up to ~4 is nearly free).
    assert 3.6e9 < effective_tokens(4e9, 1e9, 15.4) < 4e9


def test_unique_tokens_needed_meets_the_penalty_and_assess_reports_epochs():
    law = muennighoff_law()
    needed = unique_tokens_needed(law, PUBLISHED, 1e9, 100e9, 0.01)
    assert repetition_penalty(law, PUBLISHED, 1e9, 100e9, needed) == pytest.approx(0.01, rel=1e-3)
    assert repetition_penalty(law, PUBLISHED, 1e9, 100e9, needed * 0.9) > 0.01
    check = assess(law, 1e9, 100e9, 5e9, 0.01)
    assert check.epochs == pytest.approx(20) and check.penalty > 0.01 and not check.within
    assert check.unique_tokens_needed == pytest.approx(needed) and check.repetition is PUBLISHED


def synthetic_repeated_runs(r_star=15.4, noise=0.002, seed=0):
    """Runs of four sizes, D/N 5..160, from the published law with R_D* = r_star on a 2B-token corpus."""
    law, rng = muennighoff_law(), np.random.default_rng(seed)
    N = np.repeat([1e7, 3e7, 1e8, 3e8], 6)
    D = N * np.tile([5.0, 10, 20, 40, 80, 160], 4)
    U = np.minimum(D, 2e9)
    loss = law.predict_repeated(N, D, U, Repetition(r_star)) * np.exp(rng.normal(0, noise, len(N)))
    return law, N, D, U, loss


def test_fit_repetition_recovers_r_d_star_with_the_law_held():
    law, N, D, U, loss = synthetic_repeated_runs(r_star=5.0)
    fitted = fit_repetition(law, N, D, U, loss, bootstrap=100)
    assert fitted.R_D_star == pytest.approx(5.0, rel=0.1)
    assert fitted.interval[0] <= 5.0 <= fitted.interval[1]
    with pytest.raises(Exception, match="no run repeats its data"):
        fit_repetition(law, N, D, D, loss)


@pytest.mark.last_bits
@pytest.mark.slow
def test_fit_with_unique_tokens_col_keeps_the_data_constrained_form_and_predict_uses_it(cli, tmp_path):
    _, N, D, U, loss = synthetic_repeated_runs()
    runs = tmp_path / "runs.csv"
    runs.write_text("params,tokens,unique,loss\n" + "".join(f"{n},{d},{u},{v}\n" for n, d, u, v in zip(N, D, U, loss)))
    code, out, err = cli("fit", "supervised", runs, "--unique-tokens-col", "unique", "--form", "chinchilla",
                         "--bootstrap", "0", "--out", tmp_path / "law.json", "--json")
    assert code == 0, err
    record = json.loads(out)["repetition"]
    assert record["record"]["chosen"] == "data-constrained" and record["record"]["repeated_runs"] == 10
    backtest = record["record"]["backtest"]
    assert backtest["mean_abs_error_data_constrained"] < backtest["mean_abs_error_plain"]
    assert record["R_D_star"] == pytest.approx(15.4, rel=0.2)
    low, high = record["R_D_star_interval"]
    assert low < record["R_D_star"] < high
    # law.json keeps R_D*: predict --unique-tokens uses it, not the published one.
    law = load_laws(str(tmp_path / "law.json")).supervised
    assert law.repetition.R_D_star == record["R_D_star"]
    code, out, err = cli("predict", "supervised", "--law", tmp_path / "law.json", "--params", "100M",
                         "--tokens", "8B", "--unique-tokens", "2B", "--json")
    assert code == 0 and "no repetition constants" not in err
    prediction = json.loads(out)
    assert prediction["repetition"]["repetition"]["R_D_star"] == record["R_D_star"]
    assert prediction["loss"] == pytest.approx(law.predict_repeated(1e8, 8e9, 2e9))


def test_predict_supervised_with_unique_tokens(cli):
    code, out, err = cli("predict", "supervised", "--params", "546M", "--tokens", "22B", "--unique-tokens", "2B",
                         "--json")
    assert code == 0, err
    record = json.loads(out)
    rep = record["repetition"]
    assert rep["epochs"] == pytest.approx(11) and rep["penalty"] > 0.01
    assert record["loss"] == pytest.approx(rep["loss_repeated"]) and rep["loss_repeated"] > rep["loss_fresh"]
    assert rep["unique_tokens_needed"] > 2e9 and rep["repetition"]["R_D_star"] == pytest.approx(15.39, abs=0.01)
    assert "no repetition constants of its own" in err and "unique tokens keep it within 1.0%" in err
    code, out, _ = cli("predict", "supervised", "--params", "546M", "--tokens", "22B", "--unique-tokens", "30B")
    assert code == 0 and "0.733 epochs" in " ".join(out.split()) and "+0.00%" in out
    code, _, err = cli("predict", "supervised", "--params", "546M", "--tokens", "22B", "--unique-tokens", "2B",
                       "--max-penalty", "5")
    assert code == 2 and "--max-penalty must be a fraction between 0 and 1" in err


def test_plan_with_unique_tokens_reports_epochs_and_the_unique_data_needed(cli):
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "best-case",
                         "--unique-tokens", "5B", "--json")
    assert code == 0, err
    check = json.loads(out)["repetition"]["best-case"]
    D_S = json.loads(out)["student_tokens"]
    assert check["epochs"] == pytest.approx(D_S / 5e9) and check["penalty"] > 0.01
    assert check["unique_tokens_needed"] > 5e9
    assert "best-case: the plan repeats its 5B unique tokens" in err and "unique tokens to stay within 1.0%" in err
    code, out, _ = cli("plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "best-case",
                       "--unique-tokens", "5B", "--explain")   # each run's check: --explain
    assert code == 0 and "Repetition (best-case)" in out


def test_report_reads_unique_tokens_or_epochs_of_the_runs():
    records = [{"tokens": 4e9, "unique_tokens": 1e9}, {"tokens": 2e9, "epochs": 4.0}, {"tokens": 3e9}]
    np.testing.assert_allclose(unique_tokens(records), [1e9, 0.5e9, 3e9])
    assert unique_tokens([{"tokens": 2e9, "unique_tokens": 2e9}, {"tokens": 1e9}]) is None


def test_a_law_with_repetition_constants_saves_and_loads(tmp_path):
    """law.json's `repetition` (R_D* with its interval) passes the law-file schema and comes back."""
    law = muennighoff_law()
    law.repetition = Repetition(15.4, 5.3, interval=(13.0, 18.7), source="fitted")
    from distillscale.laws.lawset import LawSet

    LawSet("repeated", supervised=law).save(tmp_path / "law.json")
    again = load_laws(tmp_path / "law.json").supervised.repetition
    assert (again.R_D_star, again.R_N_star, again.interval) == (15.4, 5.3, (13.0, 18.7))
    broken = (tmp_path / "law.json").read_text().replace('"R_D_star": 15.4', '"R_D_star": -1')
    (tmp_path / "bad.json").write_text(broken)
    with pytest.raises(UserError, match="repetition.R_D_star"):
        load_laws(tmp_path / "bad.json")


def test_max_penalty_without_unique_tokens_is_refused(cli):
    """G8: --max-penalty only bounds a repetition penalty; without --unique-tokens it was ignored."""
    code, _, err = cli("predict", "supervised", "--params", "546M", "--tokens", "22B", "--max-penalty", "0.05")
    assert code == 2 and "--max-penalty needs --unique-tokens" in err and len(err.strip().splitlines()) == 1, err


def test_a_plans_verdict_weighs_the_repetition_of_the_student_and_of_the_model_pretrained_instead():
    """The verdict compared fresh-data losses; the model pretrained instead reads the whole budget
    in tokens (several times the student's), so a corpus limit penalises it more. Here the teacher
    exists (teacher-inference): it does not repeat the corpus."""
    import distillscale as ds

    options = dict(compute=4e21, student_params=546e6, scenario="teacher-inference")
    fresh, limited = ds.plan("busbridge2025", **options), ds.plan("busbridge2025", **options, unique_tokens=2e9)
    p = limited.plans[0]
    checks = limited.repetition
    assert "teacher-inference teacher" not in checks   # a teacher the planner picks exists: not trained on the corpus
    assert checks["teacher-inference (pretrain instead)"].epochs == pytest.approx(p.supervised.tokens / 2e9)
    assert checks["teacher-inference (pretrain instead)"].penalty > checks["teacher-inference"].penalty > 0
    # the plan's own losses are after repetition (issue 57: the student's too); `fresh`: with fresh data
    assert p.fresh.student_loss == fresh.plans[0].student_loss
    student = p.fresh.student_loss * (1 + checks["teacher-inference"].penalty)
    supervised = p.fresh.supervised.loss * (1 + checks["teacher-inference (pretrain instead)"].penalty)
    assert (p.student_loss, p.supervised.loss) == (student, supervised)
    # with fresh data pretraining is ahead by less than the preset's intervals; the corpus limit
    # penalises the model pretrained instead more than the student: Delta moves below 0; its interval and
    # verdict are the data-limited law's (the student's own share lambda is unmeasured at 546M: every
    # admissible share is in the interval, so a Delta across 0 cannot tell at this distance)
    from distillscale.laws.data_limited import DataLimitedLaw, difference
    from distillscale.laws.extrapolation import CANNOT_TELL

    assert fresh.verdict == p.fresh.verdict == "too close to call"
    assert fresh.plans[0].supervised.loss < fresh.plans[0].student_loss
    assert p.distilled_minus_alone < 0 < fresh.plans[0].distilled_minus_alone
    law = DataLimitedLaw(limited.laws)
    expected = difference(law.student(546e6, p.student_tokens, 2e9, law.measured_teacher(p.teacher_loss)),
                          law.alone(546e6, p.supervised.tokens, 2e9))
    assert limited.verdict == p.verdict == expected.verdict == CANNOT_TELL
    assert (p.difference.low, p.difference.high) == pytest.approx((expected.low, expected.high), rel=1e-9)
    record = limited.to_dict()
    assert record["verdict"] == CANNOT_TELL and record["verdict_fresh_data"] == "too close to call"


def test_a_teacher_the_scenario_trains_repeats_the_corpus_too():
    """Issue 63 item 6: a teacher's pre-training got no repetition check. With 2B unique tokens the
    teacher-pretraining teacher reads its 35B tokens 17.5 times: its loss rises 8.7%, the student's
    with it through the data-limited law (kappa of the teacher's penalty), and the verdict is read off
    the losses after repetition."""
    import distillscale as ds

    limited = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining",
                      unique_tokens=2e9)
    p, checks = limited.plans[0], limited.repetition
    teacher = checks["teacher-pretraining teacher"]
    assert teacher.epochs == pytest.approx(p.teacher_tokens / 2e9) and teacher.penalty > 0.05
    assert p.teacher_loss == pytest.approx(p.fresh.teacher_loss * (1 + teacher.penalty))
    # the data-limited law (`laws.data_limited`): the student inherits kappa of its teacher's penalty
    kappa = load_constants().kappa.value
    student = checks["teacher-pretraining"]  # the student's whole penalty: its own, then what it inherits
    own = (1 + student.penalty) / (1 + student.through_teacher) - 1
    inherited = kappa * (p.teacher_loss - p.fresh.teacher_loss)
    assert p.student_loss == pytest.approx(p.fresh.student_loss * (1 + own) + inherited, rel=1e-12)
    assert student.teacher is teacher and student.through_teacher > 0
    assert p.student_loss == pytest.approx(p.fresh.student_loss * (1 + student.penalty))
    assert p.supervised.loss == pytest.approx(p.fresh.supervised.loss
                                              * (1 + checks["teacher-pretraining (pretrain instead)"].penalty))
    assert limited.verdict == p.difference.verdict and p.pool_difference is not None   # the data-limited law's


def runs_up_to(max_epochs, r_star=15.4, noise=0.005, seed=0):
    """Four sizes at 10 and 40 tokens per parameter, each budget also drawn from fewer unique
    tokens (epochs 1 .. max_epochs), the published law with R_D* = r_star, with `noise`."""
    law, rng = muennighoff_law(), np.random.default_rng(seed)
    epochs = np.array([1.0, 1.25, 1.5, 2.0, 4.0, 8.0, 16.0, 32.0])
    epochs = epochs[epochs <= max_epochs]
    N = np.repeat([1e7, 3e7, 1e8, 3e8], 2 * len(epochs))
    D = N * np.tile(np.repeat([10.0, 40.0], len(epochs)), 4)
    U = D / np.tile(epochs, 8)
    loss = law.predict_repeated(N, D, U, Repetition(r_star)) * np.exp(rng.normal(0, noise, len(N)))
    return N, D, U, loss


# One start near the published law: the fits below take a fraction of a second each.
ONE_START = {"log_E": (0.5,), "log_A": (6.0,), "log_B": (7.0,), "alpha": (0.35,), "beta": (0.35,)}


def coarse_fitter(**options):
    from distillscale.laws.fitting import SupervisedLawFitter

    return SupervisedLawFitter("chinchilla", **{"bootstrap": 0, "grid": ONE_START, **options})


@pytest.mark.slow
def test_runs_of_at_most_two_epochs_keep_r_star_near_the_prior_with_a_wide_interval():
    """Issue 34: a fit on runs of <= 4 epochs said R_D* = 4.1 [3.3, 4.7] where the runs' authors fit
    15.4: runs of few epochs cannot pin R_D*, and the interval must say so."""
    from distillscale.laws.repetition import R_D_STAR_PRIOR
    from distillscale.laws.repetition_fit import posterior_repetition

    N, D, U, loss = runs_up_to(2.0, r_star=4.0)
    few = posterior_repetition(coarse_fitter, N, D, U, loss)
    prior_low, prior_high = R_D_STAR_PRIOR.interval(0.9)
    low, high = few.interval
    assert not few.identified and "mostly the prior" in few.source
    assert np.log(high / low) > 0.5 * np.log(prior_high / prior_low)   # at least half the prior's width
    assert low < 4.0 < high and high / low > 5
    # The same truth with runs to 32 epochs: the runs pin it, and the interval narrows around it.
    N, D, U, loss = runs_up_to(32.0, r_star=4.0)
    many = posterior_repetition(coarse_fitter, N, D, U, loss)
    assert many.identified and many.interval[0] < 4.0 < many.interval[1]
    assert np.log(many.interval[1] / many.interval[0]) < np.log(high / low) / 2


@pytest.mark.slow
@pytest.mark.last_bits
def test_the_data_constrained_fit_is_offered_only_when_it_backtests_no_worse_than_ignoring_repetition():
    from distillscale.laws.repetition_fit import repetition_backtest_cut
    from distillscale.laws.selection import fit_with_repetition

    options = {"form": "chinchilla", "bootstrap": 0, "backtest": False, "grid": ONE_START}
    # Repeats that cost nothing (fresh-data losses, U small): the prior's penalty would hurt, so the
    # plain law is kept and the record says why. (Kept when it helps: the --fit-where test below.)
    N, D, U, loss = runs_up_to(16.0, r_star=4.0)
    fresh = muennighoff_law().predict(N, D) * np.exp(np.random.default_rng(1).normal(0, 0.005, len(N)))
    fit = fit_with_repetition({"params": N, "tokens": D, "loss": fresh, "unique_tokens": U}, **options)
    assert fit.repetition_record["chosen"].startswith("plain (the data-constrained")
    assert "repeats counted as new" in fit.law.repetition.source   # law.json says so: no published fallback
    assert fit.law.predict_repeated(1e8, 8e9, 1e9) == pytest.approx(fit.law.predict(1e8, 8e9))
    # Runs of <= 2 epochs only: the gate's backtest fits up to the middle of their epochs; with one
    # level of repetition nothing can be predicted from fewer epochs, and there is no gate.
    assert repetition_backtest_cut([1, 1.25, 1.5, 2, 2]) == 1.5
    assert repetition_backtest_cut([1, 2, 4, 8]) == 4.0 and repetition_backtest_cut([1, 3, 3]) is None


def test_a_distilled_students_own_repetition_is_one_pricing_the_data_limited_laws(tmp_path):
    """A distilled student on a pool pays lambda of what its size pays trained alone there (the supervised
    law's R_D*), the pricing the data-limited law's constants were fitted with (one pricing for the fit and
    every plan); a distilled R_D* a sweep stored in law.json is kept with the law and no longer prices it.
    The model pretrained instead keeps the supervised law's penalty."""
    import dataclasses

    import distillscale as ds
    from distillscale.laws.data_limited import DataLimitedLaw

    laws = load_laws("busbridge2025")
    own = Repetition(50.0, None, (30.0, 90.0), "fitted to the distilled runs")
    laws = dataclasses.replace(laws, distillation=dataclasses.replace(laws.distillation, repetition=own))
    laws.save(tmp_path / "law.json")
    again = load_laws(str(tmp_path / "law.json"))
    assert again.distillation.repetition == own
    for law in ("busbridge2025", again):
        plan = ds.plan(law, compute=1e21, student_params=546e6, scenario="teacher-pretraining", unique_tokens=2e9)
        student = plan.repetition["teacher-pretraining"]
        alone = plan.repetition["teacher-pretraining (pretrain instead)"]
        assert student.repetition == PUBLISHED and alone.repetition == PUBLISHED
        data_limited = DataLimitedLaw(plan.laws)
        assert student.own_share == data_limited.constants.lam.value
        own_part = data_limited.own_penalty(student.params, student.tokens, 2e9)
        inherited = student.through_teacher * (student.loss_fresh + own_part)
        assert student.loss_repeated == pytest.approx(student.loss_fresh + own_part + inherited, rel=1e-9)


@pytest.mark.slow
@pytest.mark.last_bits
def test_the_fit_where_report_scores_held_out_runs_with_their_unique_tokens():
    """Issue 34: `fit --fit-where` (calibrate's holdout) predicted held-out runs from N and D alone,
    as if they did not repeat data, even for a law with repetition constants."""
    from distillscale.laws.calibrate import calibrate

    N, D, U, loss = runs_up_to(16.0, r_star=4.0)
    fit_rows = D / U <= 4.0
    result = calibrate(params=N, tokens=D, loss=loss, unique_tokens=U, holdout=fit_rows,
                       supervised_options={"form": "chinchilla", "bootstrap": 0, "backtest": False,
                                           "grid": ONE_START})
    law, check = result.supervised.law, result.holdout["supervised"]
    record = result.supervised.repetition_record   # kept by its gate: fitted <= 2 epochs, scored on 4
    assert law.repetition is not None and record["chosen"] == "data-constrained"
    assert record["backtest"]["fitted_up_to_epochs"] == 2.0
    assert record["backtest"]["mean_abs_error_data_constrained"] <= record["backtest"]["mean_abs_error_plain"]
    held = np.array([run.row for run in check.runs])
    assert set(held) == set(np.flatnonzero(~fit_rows))
    predicted = np.array([run.predicted for run in check.runs])
    np.testing.assert_allclose(predicted, law.predict_repeated(N[held], D[held], U[held]), rtol=1e-9)
    as_fresh = law.predict(N[held], D[held]) / loss[held] - 1
    assert np.mean(np.abs(check.errors)) < np.mean(np.abs(as_fresh))


def test_a_prediction_far_beyond_the_epochs_its_repetition_was_fitted_on_says_so():
    """More than FAR_EPOCHS_FACTOR x the fitted runs' most epochs: the number stays, a warning says it
    extrapolates repetition far; within it, or with no record of the fitted epochs, no such warning."""
    from distillscale.laws.lawset import LawSet
    from distillscale.laws.predict import predict_supervised

    law = muennighoff_law()
    law.repetition = Repetition(10.0, None, (5.0, 36.0), "fitted", {"max_epochs": 4.0})
    laws = LawSet("fitted", supervised=law)
    far = predict_supervised(laws, 1e9, 40e9, 1e9)       # 40 epochs, fitted on <= 4
    near = predict_supervised(laws, 1e9, 12e9, 1e9)      # 12 epochs
    assert any("more than 4x the most epochs" in w and "(4)" in w for w in far.warnings)
    assert not any("most epochs" in w for w in near.warnings)
    law.repetition = Repetition(10.0, None, (5.0, 36.0), "fitted")
    unrecorded = predict_supervised(LawSet("fitted", supervised=law), 1e9, 40e9, 1e9)
    assert not any("most epochs" in w for w in unrecorded.warnings)
    assert unrecorded.prediction.value == pytest.approx(far.prediction.value)


@pytest.mark.slow
@pytest.mark.last_bits
def test_the_data_constrained_refit_keeps_the_users_choices():
    """Issue 57 B1: when the data-constrained law won, its refit dropped the user's fixed E (1.7 came
    back 1.753, the saved law saying E was free), the data filter and the N column, and copied the
    extrapolation error of the law it replaced. The refit is the chosen candidate's own."""
    import distillscale as ds
    from distillscale.laws.repetition import predict_repeated

    N = np.repeat([2e7, 5e7, 1e8, 2e8, 5e8], 4)
    D = N * np.tile([5.0, 10.0, 20.0, 40.0], 5)
    U = np.where(np.arange(len(N)) % 4 == 3, D / 8, D)   # a quarter of the runs repeat 8 epochs
    truth = SupervisedLaw(E=2.0, A=300.0, B=900.0, alpha=0.33, beta=0.3)
    loss = predict_repeated(truth, Repetition(5.0), N, D, U) * (1 + 1e-3 * np.random.default_rng(0).standard_normal(len(N)))
    fit = ds.fit_supervised(N, D, loss, unique_tokens=U, irreducible_loss=1.7, min_tokens_per_param=8,
                            form="chinchilla", bootstrap=0, grid=ONE_START, polish=False)
    assert fit.chosen == "chinchilla, data-constrained" and fit.law.repetition.R_D_star > 1
    assert fit.law.E == 1.7 and fit.law.fit.constraints["E"] == 1.7 and "E" not in fit.law.fit.parameters
    kept = D / N >= 8
    assert fit.law.fit.n_runs == kept.sum() and list(fit.rows) == list(kept)
    # its extrapolation error: the chinchilla (E = 1.7, D/N >= 8) candidate's backtest, over its own runs
    error = fit.law.fit.extrapolation_error
    assert error == fit.extrapolation_error and error.measured
    assert error.n_points == len(fit.backtest.held_out) and fit.law.fit.backtest == fit.backtest.to_dict()
    assert (error.fitted_min, error.fitted_max) == (N[kept].min(), N[kept].max())


def test_a_model_that_repeats_nothing_pays_no_repetition_penalty_under_r_n_star():
    """Issue 57 M1: with R_N* set (the published constants) a model larger than compute-optimal for
    its data was charged +5.5% at U = D, its penalty measured against the plain law rather than the
    same law at U = D, and `unique_tokens_needed` offered D as the fix. Repetition costs nothing
    until the data repeats."""
    from distillscale.laws.repetition import repetition_penalty, unique_tokens_needed

    law, N, D = muennighoff_law(), 1e10, 2e10     # 2 tokens per parameter: far above compute-optimal
    assert PUBLISHED.R_N_star is not None
    for U in (D, 2 * D, 1e3 * D):
        assert repetition_penalty(law, PUBLISHED, N, D, U) == 0.0
        check = assess(law, N, D, U, repetition=PUBLISHED)
        assert check.penalty == 0.0 and check.loss_repeated == check.loss_fresh == law.predict(N, D) and check.within
    # repeating does cost, and the unique data that keeps it within 1% is less than D and does keep it there
    assert repetition_penalty(law, PUBLISHED, N, D, D / 8) > 0.01
    needed = unique_tokens_needed(law, PUBLISHED, N, D, 0.01)
    assert needed < D and repetition_penalty(law, PUBLISHED, N, D, needed) == pytest.approx(0.01, rel=1e-3)
    assert repetition_penalty(law, PUBLISHED, [N, N], [D, D], [D, D / 8]).tolist()[0] == 0.0


@pytest.mark.slow
def test_an_interaction_form_with_unique_tokens_refits_repetition_as_chinchilla_with_its_options(cli, tmp_path):
    """Issue 63: `fit supervised --form interaction|farseer --unique-tokens-col U` was a traceback
    ("unknown interaction form 'chinchilla'"): the repetition refit cloned the interaction fitter as
    chinchilla. A form of another family now gets its own fitter with the same options."""
    from distillscale.laws.fitting import SupervisedLawFitter
    from distillscale.laws.interaction import InteractionLawFitter

    for name in ("interaction", "farseer"):
        twin = InteractionLawFitter(name, irreducible_loss=1.7, bootstrap=0).clone(form="chinchilla")
        assert type(twin) is SupervisedLawFitter and twin.irreducible_loss == 1.7 and twin.form_name == "chinchilla"
    form = "farseer"   # the CLI end to end once (both forms take the same path)
    _, N, D, U, loss = synthetic_repeated_runs()
    runs = tmp_path / "runs.csv"
    runs.write_text("params,tokens,unique,loss\n" + "".join(f"{n},{d},{u},{v}\n" for n, d, u, v in zip(N, D, U, loss)))
    code, out, err = cli("fit", "supervised", runs, "--unique-tokens-col", "unique", "--form", form,
                         "--bootstrap", "0", "--json")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["repetition"]["record"]["repeated_runs"] == 10
