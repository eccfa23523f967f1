"""bench/laws/verdict_pairs.py and the calibration it ships: the package's difference_interval.json is the
fit of the shipped pairs (bench/data/verdict_pairs.json) by the command it records; no pair's prediction
comes from a law fitted on its own run; and the bench's scoring calls the verdicts' own function;
nothing trains."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from distillscale.laws import difference
from tests.conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench" / "laws" / "verdict_pairs.py"


def bench():
    spec = importlib.util.spec_from_file_location("verdict_pairs_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def stored():
    return json.loads(bench().DATA.read_text())


def test_the_shipped_calibration_is_the_fit_of_the_shipped_pairs():
    module, data = bench(), stored()
    shipped = difference.shipped_calibration()
    kinds = tuple(shipped.command.split("--kinds ")[1].split()[0].split(","))
    scale = module.interval_scale_without(data["interval_scores"], None)
    refit = module.fit_rule(module.pairs_of(data["pairs"], kinds, scale))
    assert refit.correlation == pytest.approx(shipped.correlation, abs=1e-9)
    assert refit.factor == pytest.approx(shipped.factor, rel=1e-9)
    for side in ("distilled", "alone"):
        mine, theirs = getattr(refit, side), getattr(shipped, side)
        assert mine.pairs == theirs.pairs and mine.reach == pytest.approx(theirs.reach)
        assert [s is None for s in mine.scales] == [s is None for s in theirs.scales]
        assert [s for s in mine.scales if s is not None] == pytest.approx([s for s in theirs.scales if s is not None])
    assert refit.pairs == shipped.pairs and set(refit.corpora) == set(shipped.corpora)
    assert refit.sample_size == pytest.approx(shipped.sample_size, rel=1e-9)


def test_no_pairs_prediction_comes_from_a_law_that_saw_its_run():
    """Each record names the runs behind each prediction's law and the run it predicts: never one of
    them. A trained pair's student is larger than every run its supervised law saw (it extrapolates,
    as a plan does)."""
    pairs = stored()["pairs"]
    assert len(pairs) >= 100 and len({p["corpus"] for p in pairs}) >= 8
    assert sum(p["kind"] == "trained" for p in pairs) >= 60
    for p in pairs:
        assert p["alone_run"] not in p["alone_law_runs"], p
        assert p["distilled_run"] not in p["distilled_law_runs"], p
        assert p["alone_law_runs"] and p["distilled_law_runs"]
    for p in (p for p in pairs if p["kind"] == "trained"):
        assert p["alone"]["distance"] >= 1.0 and p["distilled"]["distance"] > 1.0


def test_the_bench_scores_through_the_verdicts_function(monkeypatch):
    """Every number the bench prints for a rule goes through `compare`: break it, and the scores change."""
    module, data = bench(), stored()
    pairs = module.pairs_of(data["pairs"], ("trained", "held-out-teacher"))[:6]
    calibration = difference.shipped_calibration()
    honest = difference.score_pairs(pairs, calibration)
    monkeypatch.setattr(difference, "compare",
                        lambda d, a, c=None: difference.LossDifference(0.0, -1e9, 1e9, 0.9, 1.0))
    broken = difference.score_pairs(pairs, calibration)
    assert broken.given == 0 and broken.covered == broken.pairs
    assert (honest.given, honest.mean_half_width) != (broken.given, broken.mean_half_width)


def test_each_corpus_is_scored_with_everything_of_its_own_left_out(monkeypatch):
    """Left out a corpus at a time: the rule and the distillation interval's calibration it scales the
    corpus's distilled predictions by are both fitted without that corpus."""
    module, data = bench(), stored()
    seen = []
    real = module.interval_scale_without

    def spy(scores, corpus):
        scale = real(scores, corpus)
        seen.append((corpus, scale.corpora))
        return scale

    monkeypatch.setattr(module, "interval_scale_without", spy)
    fitted = []
    scored = module.left_out(data["pairs"], data["interval_scores"], ("trained", "held-out-teacher"),
                             rule=lambda train: fitted.append({p.corpus for p in train}) or module.fit_rule(train))
    corpora = sorted({p["corpus"] for p in data["pairs"]})
    assert [corpus for corpus, _ in seen] == corpora and all(corpus not in kept for corpus, kept in seen)
    assert all(corpus not in train for corpus, train in zip(corpora, fitted))
    assert len(scored) == len(data["pairs"])
