"""bench/speed/loss_fusion.py: the supervised loss eager against compiled, side by side, the same loss."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


def test_the_benchmark_prints_both_times_their_ratio_and_equal_losses(capsys):
    spec = importlib.util.spec_from_file_location("loss_fusion_bench", REPO_ROOT / "bench" / "speed" / "loss_fusion.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--device", "cpu", "--tokens", "64", "--vocab", "48", "--d-model", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    eager = float(re.search(r"eager .* loss (\S+)", out).group(1))
    fused = float(re.search(r"compiled .* loss (\S+)", out).group(1))
    assert eager == pytest.approx(fused, rel=1e-5) and re.search(r"\d+\.\d\dx faster", out)
