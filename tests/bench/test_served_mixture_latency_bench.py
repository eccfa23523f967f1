"""bench/speed/served_mixture_latency.py runs its whole code path (fake servers, both ways of asking them, the
check that their merged answers are identical) in a fraction of a second at a tiny size."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_benchmark_compares_both_ways_of_asking_the_servers(capsys):
    spec = importlib.util.spec_from_file_location("served_mixture_latency_bench",
                                                  REPO_ROOT / "bench" / "speed" / "served_mixture_latency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--servers", "2", "--latency", "0.01", "--rounds", "1", "--seq-len", "8"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == 1 and rows[0][0] == "2" and rows[0][-1].endswith("x")
