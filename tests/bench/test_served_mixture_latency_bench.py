"""bench/speed/served_mixture_latency.py runs its whole code path (fake servers, both ways of asking them, the
check that their merged answers are identical) in a fraction of a second at a tiny size."""

from __future__ import annotations

import pytest

from tests.conftest import load_bench

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_benchmark_compares_both_ways_of_asking_the_servers(capsys):
    module = load_bench("speed/served_mixture_latency.py")
    assert module.main(["--servers", "2", "--latency", "0.01", "--rounds", "1", "--seq-len", "8"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == 1 and rows[0][0] == "2" and rows[0][-1].endswith("x")
