"""The interaction forms (issue 55): a data exponent beta + beta1 ln(N/N0) that depends on model size, and
Farseer's surface to first order in ln N."""

import json

import numpy as np
import pytest

from distillscale.errors import ParameterError
from distillscale.laws import load_laws
from distillscale.laws.interaction import InteractionLawFitter
from distillscale.laws.interaction_law import FarseerLaw, InteractionLaw
from distillscale.laws.selection import fit_supervised

TRUTH = InteractionLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, beta1=0.03, N0=1e8)


def runs(truth, sizes, noise, seed=0):
    rng = np.random.default_rng(seed)
    N = np.repeat(sizes, 5)
    D = N * np.tile([5.0, 10.0, 20.0, 40.0, 80.0], len(sizes))
    return N, D, truth.predict(N, D) * np.exp(rng.normal(0, noise, len(N)))


@pytest.mark.last_bits
def test_recovers_its_own_parameters_from_synthetic_runs():
    N, D, loss = runs(TRUTH, np.geomspace(2e7, 6e8, 6), noise=0.0005)
    law = InteractionLawFitter(bootstrap=40).fit(N, D, loss).law_
    assert "beta1" not in law.fit.not_identified and law.fit.form == "interaction"
    assert law.beta1 == pytest.approx(0.03, abs=0.002)
    low, high = law.fit.intervals["beta1"]
    assert low <= law.beta1 <= high and low > 0
    # The data exponent at each size, whatever origin the fit chose for N.
    for n in (2e7, 6e8):
        assert law.data_exponent(n) == pytest.approx(TRUTH.data_exponent(n), abs=0.01)
    # 4x beyond the largest size, at 20 and 80 tokens per parameter.
    n = np.array([2.4e9, 2.4e9])
    assert law.predict(n, n * [20, 80]) == pytest.approx(TRUTH.predict(n, n * [20, 80]), rel=0.003)


@pytest.mark.slow
def test_too_few_sizes_or_no_interaction_keep_the_plain_law():
    # Three sizes: beta1 is not identified and the law is the chinchilla fit (beta1 = 0).
    N, D, loss = runs(TRUTH, np.geomspace(2e7, 8e7, 3), noise=0.002)
    law = InteractionLawFitter(bootstrap=0).fit(N, D, loss).law_
    assert law.beta1 == 0.0 and "3 model sizes" in law.fit.not_identified["beta1"]
    assert law.fit.constraints["beta1"] == 0.0
    # Six sizes, no interaction in the runs: the fit with beta1 = 0 is as good within the noise.
    plain = InteractionLaw(**{**TRUTH.coefficients(), "beta1": 0.0})
    N, D, loss = runs(plain, np.geomspace(2e7, 6e8, 6), noise=0.003, seed=1)
    law = InteractionLawFitter(bootstrap=40).fit(N, D, loss).law_
    assert law.beta1 == 0.0 and "beta1" in law.fit.not_identified


@pytest.mark.slow
@pytest.mark.last_bits
def test_fit_supervised_form_interaction_backtests_saves_and_loads(tmp_path):
    N, D, loss = runs(TRUTH, np.geomspace(2e7, 6e8, 6), noise=0.001)
    fit = fit_supervised(N, D, loss, form="interaction", bootstrap=0)
    assert fit.chosen.startswith("interaction") and fit.backtest is not None
    assert fit.law.beta1 == pytest.approx(0.03, abs=0.004)
    path = tmp_path / "law.json"
    fit.save(path)
    loaded = load_laws(str(path)).supervised
    assert isinstance(loaded, InteractionLaw) and loaded.beta1 == fit.law.beta1 and loaded.N0 == fit.law.N0
    assert loaded.predict(3e9, 6e10) == fit.law.predict(3e9, 6e10)
    with pytest.raises(ParameterError, match="interaction"):
        fit_supervised(N, D, loss, form="interactions")


def test_cli_fit_accepts_form_interaction(cli, tmp_path):
    N, D, loss = runs(TRUTH, np.geomspace(2e7, 6e8, 6), noise=0.001)
    path = tmp_path / "runs.csv"
    path.write_text("params,tokens,loss\n" + "".join(f"{n},{d},{l}\n" for n, d, l in zip(N, D, loss)))
    out = tmp_path / "law.json"
    code, stdout, _ = cli("fit", "supervised", path, "--form", "interaction", "--no-backtest", "--bootstrap", "0",
                          "--out", out, "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["coefficients"]["beta1"] == pytest.approx(0.03, abs=0.004)
    code, stdout, _ = cli("predict", "supervised", "--law", out, "--params", "2.4B", "--tokens", "48B", "--json")
    assert code == 0 and json.loads(stdout)["loss"] == pytest.approx(TRUTH.predict(2.4e9, 4.8e10), rel=0.005)


def test_planner_optimum_under_an_interaction_law_matches_brute_force():
    from distillscale.planning.flops import ForwardFlops
    from distillscale.planning.solver import SupervisedPlanner

    flops = ForwardFlops(method="simple")
    ratios = {}
    for beta1 in (0.005, 0.0, -0.005):
        law = InteractionLaw(**{**TRUTH.coefficients(), "beta1": beta1})
        for budget in (1e18, 1e22):
            plan = SupervisedPlanner(law, flops).supervised_optimal(budget, size_range=(1e6, 1e12))
            sizes = np.geomspace(1e6, 1e12, 200_001)
            tokens = budget / (3 * flops(sizes))
            sizes, tokens = sizes[tokens >= 1e6], tokens[tokens >= 1e6]
            best = sizes[np.argmin(law.predict(sizes, tokens))]
            assert plan.student_params == pytest.approx(best, rel=2e-4)
            ratios[beta1, budget] = plan.tokens / plan.student_params
    # In this form a data exponent that grows with N (beta1 > 0) also lowers the data term of a
    # larger model at every D > 1: the optimum's D/N falls with budget; with beta1 < 0 it rises.
    assert ratios[0.005, 1e22] < ratios[0.0, 1e22] < ratios[-0.005, 1e22]
    assert ratios[0.005, 1e22] < ratios[0.005, 1e18] and ratios[-0.005, 1e22] > ratios[-0.005, 1e18]


def test_the_planner_inverts_an_interaction_law_with_its_own_data_exponent():
    """The tokens a model needs to reach a loss (what the distillation planner asks of a teacher)
    come from the law's own inversion: an N-dependent data exponent is not the plain law's beta."""
    from distillscale.laws.interaction_law import InteractionLaw
    from distillscale.planning.solver import tokens_reaching_loss

    law = InteractionLaw(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36, beta1=0.02, N0=1e8)
    N = np.array([3e7, 1e8, 3e9])
    tokens = tokens_reaching_loss(law, N, 3.2)
    np.testing.assert_allclose(law.predict(N, tokens), 3.2, rtol=1e-10)
    plain = tokens_reaching_loss(law.with_coefficients({"beta1": 0.0}), N, 3.2)
    assert abs(tokens[2] / plain[2] - 1) > 0.1  # 3B is 30x from N0: its exponent is not beta
    assert np.isnan(tokens_reaching_loss(law, N, 1.7)).all()  # below E: no D reaches it


# Farseer's surface (Li et al. 2025) to first order in ln N: the data term's coefficient and exponent
# both depend on model size, B (N/N0)^kappa / D^(beta (N/N0)^nu).
FARSEER_TRUTH = FarseerLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, kappa=0.15, nu=0.04, N0=1e8)


@pytest.mark.last_bits
def test_farseer_recovers_its_own_parameters_from_synthetic_runs():
    N, D, loss = runs(FARSEER_TRUTH, np.geomspace(2e7, 6e8, 6), noise=0.0005)
    law = InteractionLawFitter("farseer", bootstrap=40).fit(N, D, loss).law_
    assert isinstance(law, FarseerLaw) and law.fit.form == "farseer"
    assert not {"kappa", "nu"} & set(law.fit.not_identified)
    for name in ("kappa", "nu", "alpha", "beta"):
        low, high = law.fit.intervals[name]
        assert low > 0 and low <= getattr(law, name) <= high
    assert law.kappa == pytest.approx(0.15, abs=0.02) and law.nu == pytest.approx(0.04, abs=0.005)
    for n in (2e7, 6e8):
        assert law.data_exponent(n) == pytest.approx(FARSEER_TRUTH.data_exponent(n), abs=0.005)
        assert law.data_coefficient(n) == pytest.approx(FARSEER_TRUTH.data_coefficient(n), rel=0.05)
    n = np.array([2.4e9, 2.4e9])
    assert law.predict(n, n * [20, 80]) == pytest.approx(FARSEER_TRUTH.predict(n, n * [20, 80]), rel=0.002)
    # The law inverted with its own size-dependent coefficient and exponent (what the planner asks of it).
    tokens = law.tokens_reaching(n, 2.3)
    np.testing.assert_allclose(law.predict(n, tokens), 2.3, rtol=1e-10)


@pytest.mark.slow
def test_farseer_with_too_few_sizes_or_no_interaction_keeps_the_plain_law():
    N, D, loss = runs(FARSEER_TRUTH, np.geomspace(2e7, 8e7, 3), noise=0.002)
    law = InteractionLawFitter("farseer", bootstrap=0).fit(N, D, loss).law_
    assert isinstance(law, FarseerLaw) and law.kappa == 0.0 and law.nu == 0.0
    assert "3 model sizes" in law.fit.not_identified["kappa"] and "kappa = nu = 0" in law.fit.not_identified["nu"]
    assert law.fit.constraints["kappa"] == law.fit.constraints["nu"] == 0.0
    plain = FarseerLaw(**{**FARSEER_TRUTH.coefficients(), "kappa": 0.0, "nu": 0.0})
    N, D, loss = runs(plain, np.geomspace(2e7, 6e8, 6), noise=0.003, seed=1)
    law = InteractionLawFitter("farseer", bootstrap=40).fit(N, D, loss).law_
    assert law.kappa == law.nu == 0.0 and {"kappa", "nu"} <= set(law.fit.not_identified)


@pytest.mark.slow
@pytest.mark.last_bits
def test_fit_supervised_form_farseer_backtests_saves_and_loads(cli, tmp_path):
    N, D, loss = runs(FARSEER_TRUTH, np.geomspace(2e7, 6e8, 6), noise=0.001)
    fit = fit_supervised(N, D, loss, form="farseer", bootstrap=0)
    assert fit.chosen.startswith("farseer") and fit.backtest is not None
    assert fit.law.nu == pytest.approx(0.04, abs=0.008)
    path = tmp_path / "law.json"
    fit.save(path)
    loaded = load_laws(str(path)).supervised
    assert isinstance(loaded, FarseerLaw) and (loaded.kappa, loaded.nu, loaded.N0) == (fit.law.kappa, fit.law.nu,
                                                                                       fit.law.N0)
    assert loaded.predict(3e9, 6e10) == fit.law.predict(3e9, 6e10)
    code, stdout, _ = cli("predict", "supervised", "--law", path, "--params", "2.4B", "--tokens", "48B", "--json")
    assert code == 0 and json.loads(stdout)["loss"] == pytest.approx(FARSEER_TRUTH.predict(2.4e9, 4.8e10), rel=0.005)
    # A farseer law file missing nu is refused in one line.
    data = json.loads(path.read_text())
    del data["supervised"]["coefficients"]["nu"]
    path.write_text(json.dumps(data))
    code, _, stderr = cli("predict", "supervised", "--law", path, "--params", "2.4B", "--tokens", "48B")
    assert code == 2 and "kappa, nu and N0" in stderr and "Traceback" not in stderr


def test_the_size_compute_optimal_for_a_number_of_tokens_follows_the_interaction_form():
    """What a limited corpus's R_N* counts parameters against (Muennighoff et al.: the size that is
    compute-optimal for the unique tokens): the law's own optimum, not the plain law's closed form."""
    from distillscale.laws.forms import SupervisedLaw
    from distillscale.laws.repetition import PUBLISHED, effective_tokens

    laws = (InteractionLaw(**{**TRUTH.coefficients(), "beta1": -0.006}),
            FarseerLaw(**{**FARSEER_TRUTH.coefficients(), "kappa": 0.05, "nu": 0.01}))
    D = np.array([1e10, 1e12])
    for law in laws:
        optimal = law.compute_optimal_params(D)
        for n, d in zip(optimal, D):  # trained on d tokens, n is the best size for its budget C = 6 n d
            sizes = np.geomspace(n / 30, n * 30, 20_001)
            assert sizes[np.argmin(law.predict(sizes, 6 * n * d / (6 * sizes)))] == pytest.approx(n, rel=5e-4)
        closed_form = SupervisedLaw(**{k: law.coefficients()[k] for k in SupervisedLaw.COEFFICIENTS})
        assert np.all(np.abs(np.log(closed_form.compute_optimal_params(D) / optimal)) > 0.1)
        # A model 10x that size on those tokens repeated 4 times: its excess parameters decay from that size.
        n, u, r_n = 10 * optimal[0], D[0], PUBLISHED.R_N_star
        tokens = effective_tokens(4 * u, u, PUBLISHED.R_D_star)

        def decayed(size):
            return size + size * r_n * -np.expm1(-(n / size - 1) / r_n)

        repeated = law.predict_repeated(n, 4 * u, u, PUBLISHED)
        assert repeated == pytest.approx(law.predict(decayed(optimal[0]), tokens), rel=1e-9)
        assert abs(repeated / law.predict(decayed(closed_form.compute_optimal_params(u)), tokens) - 1) > 1e-3
    # With no interaction it is the closed form.
    plain = InteractionLaw(**{**TRUTH.coefficients(), "beta1": 0.0})
    closed_form = SupervisedLaw(**{k: plain.coefficients()[k] for k in SupervisedLaw.COEFFICIENTS})
    np.testing.assert_allclose(plain.compute_optimal_params(D), closed_form.compute_optimal_params(D), rtol=1e-9)
