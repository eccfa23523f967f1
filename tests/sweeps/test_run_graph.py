"""`sweeps.run_graph`: runs that wait for other runs, on the local executor's worker processes."""

from __future__ import annotations

import pytest

from distillscale.sweeps.executors import Job
from distillscale.sweeps.run_graph import GraphRun, run_graph


@pytest.mark.slow
def test_runs_start_once_their_needs_completed_and_a_failure_blocks_what_needs_it(tmp_path):
    """A job that exits 0 and is then found completed completes; a run can complete in place (a line);
    a failed job, a start that raises, and a need no run of the graph names each block what waits on
    them; a run completed before is never started."""
    started, lines = [], []
    jobs = {"a": ("--version",), "c": ("train", "--no-such-flag")}

    def start(key: str) -> Job | str:
        started.append(key)
        if key == "b":
            return "linked"
        if key == "f":
            raise ValueError("no setting to take")
        return Job(jobs[key], tmp_path / f"{key}.log")

    graph = [GraphRun("a"), GraphRun("b", ("a",)), GraphRun("c", ("b",)), GraphRun("d", ("c",)),
             GraphRun("e", ("nowhere",)), GraphRun("f"), GraphRun("g", ("f",)), GraphRun("h")]
    status = run_graph(graph, lambda key: key == "h" or (key in started and key != "c"), start, 1, lines.append,
                       lambda key: ", fine")
    assert status == {"a": "completed", "b": "completed", "c": "failed", "d": "blocked", "e": "blocked",
                      "f": "failed", "g": "blocked", "h": "completed"}
    assert started == ["a", "b", "f", "c"]  # ready ones in the order given, one slot; h was done before
    assert "b: linked" in lines and any(line.startswith("a completed, fine (") for line in lines)
    assert any(line.startswith(f"c failed: see {tmp_path / 'c.log'}") for line in lines)
    assert "f failed: it could not start (ValueError: no setting to take)" in " ".join(lines)
    assert "e blocked: it needs nowhere, which never completed" in lines
    assert "d blocked: a run it needs did not complete" in lines
