"""bench/speed/loss_fusion.py: the supervised loss eager against compiled, side by side, the same loss."""

from __future__ import annotations

import re

import pytest

from tests.conftest import load_bench

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.mark.slow  # torch.compile of the loss
def test_the_benchmark_prints_both_times_their_ratio_and_equal_losses(capsys):
    module = load_bench("speed/loss_fusion.py")
    assert module.main(["--device", "cpu", "--tokens", "64", "--vocab", "48", "--d-model", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    eager = float(re.search(r"eager .* loss (\S+)", out).group(1))
    fused = float(re.search(r"compiled .* loss (\S+)", out).group(1))
    assert eager == pytest.approx(fused, rel=1e-5) and re.search(r"\d+\.\d\dx faster", out)
