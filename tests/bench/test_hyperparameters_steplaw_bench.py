"""bench/laws/hyperparameters_steplaw.py: the law it scores never saw the held-back 1.07B cells (fitted,
chosen and backtested on the 15 cells below 1B), and it scores both held-back cells for the fitted
law and the presets."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import load_bench


@pytest.mark.slow  # the whole fit, its leave-one-cell-out selection included
def test_the_held_back_cells_are_scored_and_never_fitted(monkeypatch, capsys):
    module = load_bench("laws/hyperparameters_steplaw.py")
    monkeypatch.setattr(sys, "argv", ["hyperparameters_steplaw.py", "--json", "--bootstrap", "0"])
    assert module.main() == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["cells"]) == 15 and max(c["params"] for c in result["cells"]) < 1e9
    assert all(s["params"] < 1e9 for s in result["backtest"])
    for name in ("fitted", "steplaw2025", "deepseek2024"):
        held = result["held_back"][name]
        assert [(s["params"], s["tokens"]) for s in held] == [(1073741824.0, 2e10), (1073741824.0, 5.69e10)]
        assert all(0 <= s["penalty"] < 0.01 for s in held)
