"""bench/laws/verdict_pairs.py and the calibration it ships: the package's difference_interval.json is the
fit of the shipped pairs (bench/data/verdict_pairs.json) by the command it records, and the bench's
scoring calls the verdicts' own function; nothing trains."""

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


def test_the_shipped_calibration_is_the_fit_of_the_shipped_pairs():
    module = bench()
    shipped = difference.shipped_calibration()
    records = json.loads(module.DATA.read_text())["pairs"]
    kinds = shipped.command.split("--kinds ")[1].split()[0].split(",")
    pairs = module.pairs_of(records, tuple(kinds))
    refit = difference.fit_calibration(pairs, shipped.level, separate=module.SEPARATE)
    assert refit.correlation == pytest.approx(shipped.correlation, abs=1e-9)
    assert refit.factor == pytest.approx(shipped.factor, rel=1e-9)
    assert (refit.distilled_scale, refit.alone_scale) == pytest.approx((shipped.distilled_scale, shipped.alone_scale))
    assert refit.pairs == shipped.pairs and set(refit.corpora) == set(shipped.corpora)


def test_the_bench_scores_through_the_verdicts_function(monkeypatch):
    """Every number the bench prints for a rule goes through `loss_difference`: break it, and the
    scores change."""
    module = bench()
    records = json.loads(module.DATA.read_text())["pairs"]
    pairs = module.pairs_of(records, ("trained", "held-out-teacher"))[:6]
    calibration = difference.shipped_calibration()
    honest = difference.score_pairs(pairs, calibration)
    monkeypatch.setattr(difference, "loss_difference",
                        lambda d, a, c=None: difference.LossDifference(0.0, -1e9, 1e9, 0.9, 1.0))
    broken = difference.score_pairs(pairs, calibration)
    assert broken.given == 0 and broken.covered == broken.pairs
    assert (honest.given, honest.mean_half_width) != (broken.given, broken.mean_half_width)
