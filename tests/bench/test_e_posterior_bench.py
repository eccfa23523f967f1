"""bench/laws/e_posterior.py: its step 2 rescores cached fits without refitting a node, so its "marginal"
variant must rebuild the law the library makes with E marginalized, "fitted" the default law (E
fitted), and a sharper likelihood moves the law toward the fitted one. The decision rule chooses
each unit's variant on the other units, scale-free. Bad --sets and --units exit 2 in one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from distillscale.laws.selection import fit_supervised
from tests.conftest import REPO_ROOT, load_bench
from tests.laws.test_marginal import synthetic_runs

BENCH = REPO_ROOT / "bench" / "laws" / "e_posterior.py"


def bench():
    return load_bench("laws/e_posterior.py")


@pytest.mark.slow  # marginal-E fits (about 20 s)
def test_the_marginal_and_fitted_variants_rebuild_the_librarys_laws_from_the_cache():
    module = bench()
    N, D, loss, _ = synthetic_runs([1e7, 2e7, 4e7, 8e7], noise=0.01)
    rows = np.ones(len(N), bool)
    # the bench rebuilds raw laws: the library's without the cross-ladder correction (issue 64)
    fit = fit_supervised(N, D, loss, bootstrap=0, backtest=False, marginal_e=True, bias_correction=False)
    entry = module.cache_entry(fit, rows, rows)
    far = (np.array([1e9, 4e9]), np.array([2e10, 8e10]))
    marginal = module.variant_law(entry, N, D, loss, module.VARIANTS["marginal"])
    np.testing.assert_allclose(marginal.predict(*far), fit.law.predict(*far), rtol=1e-6)
    fitted = module.variant_law(entry, N, D, loss, module.VARIANTS["fitted"])
    with_e = fit_supervised(N, D, loss, bootstrap=0, backtest=False, bias_correction=False).law  # E fitted
    np.testing.assert_allclose(fitted.predict(*far), with_e.predict(*far), rtol=1e-6)
    # four sizes leave E spread, so the marginal and fitted laws differ far out; tempering the
    # likelihood (x4) takes the marginal law part of the way to the fitted one
    gap = np.abs(marginal.predict(*far) - fitted.predict(*far))
    assert gap.min() > 1e-3
    tempered = module.variant_law(entry, N, D, loss, module.VARIANTS["temper4"])
    assert np.all(np.abs(tempered.predict(*far) - fitted.predict(*far)) < gap)


def _refused(monkeypatch, capsys, *args: str) -> str:
    """The bench's command line `args` run (in this process: its start-up alone is 5 s), refused with exit 2:
    what it said on stderr."""
    monkeypatch.setattr(sys, "argv", [str(BENCH), *args])
    with pytest.raises(SystemExit) as exit_:
        bench().main()
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_set_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    said = _refused(monkeypatch, capsys, "--cache", str(tmp_path / "c.json"), "--sets", "no_such_set")
    assert said.strip().count("\n") == 0 and "no_such_set" in said
    assert not (tmp_path / "c.json").exists()


@pytest.mark.slow  # marginal-E fits (about 20 s)
def test_looking_ahead_reweighs_only_when_an_earlier_cut_lies_far_enough_below():
    module = bench()
    N, D, loss, _ = synthetic_runs(1e7 * 2.0 ** np.arange(6), noise=0.005)
    rows, small = np.ones(len(N), bool), N <= 8e7
    full = module.cache_entry(fit_supervised(N, D, loss, bootstrap=0, backtest=False, marginal_e=True), rows, rows)
    early = module.cache_entry(fit_supervised(N[small], D[small], loss[small], bootstrap=0, backtest=False,
                                              marginal_e=True), small, ~small)
    member, marginal = full["members"][1], module.VARIANTS["marginal"]
    alone = module.member_law(member, N, D, loss, marginal)
    # no earlier cut at least 2x below the largest fitted size (3.2e8): the marginal posterior
    for name in ("ahead", "ahead+marginal", "ahead*marginal"):
        variant = module.VARIANTS[name]
        assert module.earlier_step([(2e8, full)], N, variant) is None
        np.testing.assert_allclose(module.member_law(member, N, D, loss, variant).weights, alone.weights, rtol=1e-12)
    # with one (8e7), each member's E posterior follows how its nodes predicted the runs beyond 1.6e8
    assert module.earlier_step([(4e7, early), (8e7, early), (2e8, full)], N, module.VARIANTS["ahead"])[0] == 8e7
    before = (8e7, early["members"][1])
    ahead = module.member_law(member, N, D, loss, module.VARIANTS["ahead"], before)
    mixed = module.member_law(member, N, D, loss, module.VARIANTS["ahead+marginal"], before)
    assert abs(ahead.mean_E - alone.mean_E) > 0.05
    np.testing.assert_allclose(mixed.weights, (ahead.weights + alone.weights) / 2, rtol=1e-9)
    far = (np.array([2e9, 8e9]), np.array([4e10, 1.6e11]))
    looked = module.variant_law(full, N, D, loss, module.VARIANTS["ahead"], [(8e7, early)]).predict(*far)
    assert not np.allclose(looked, module.variant_law(full, N, D, loss, marginal).predict(*far), rtol=1e-4)


def test_the_decision_rule_chooses_on_the_other_units_and_is_scale_free():
    module = bench()
    # "b" is better than "a" on three small-error sets by 10% each and worse on one large-error
    # corpus by 20%: a plain mean of scores would let the corpus decide ("a"); the log mean does not.
    scores = {"s1": {"a": 1.1, "b": 1.0}, "s2": {"a": 1.1, "b": 1.0}, "s3": {"a": 1.1, "b": 1.0},
              "corpus": {"a": 5.0, "b": 6.0}}
    picks = {unit: (chosen, score) for unit, chosen, score in module.all_evidence_loso(scores, ["a", "b"])}
    assert picks["corpus"] == ("b", 6.0)  # chosen on the three sets, scored on the corpus
    assert picks["s1"] == ("b", 1.0)  # two sets at -9.5% log outweigh the corpus at +18% log
    # a unit is never scored by itself: with two units each picks the other's winner
    two = {"x": {"a": 1.0, "b": 2.0}, "y": {"a": 2.0, "b": 1.0}}
    assert [(u, c) for u, c, _ in module.all_evidence_loso(two, ["a", "b"])] == [("x", "b"), ("y", "a")]


def test_bad_units_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "units.json"
    bad.write_text("[1, 2]")
    said = _refused(monkeypatch, capsys, "--cache", str(tmp_path / "c.json"), "--units", str(bad))
    assert said.strip().count("\n") == 0 and "--units" in said
    assert not (tmp_path / "c.json").exists()
