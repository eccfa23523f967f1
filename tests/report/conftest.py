"""Fixtures of the report tests: the whole-pipeline tests' own sweep design.

The tests of the main job end to end (`demo` with a teacher: the sweep trained, both laws fitted and
checked on held-out runs, the report, the teacher measured and planned for, the planned student
distilled) run `demo --quick` on a design of their own, PIPELINE_SPEC: the quick demo's shape (three
teacher depths over WSD-forked budgets, one student size at three budgets per teacher, its baselines)
on narrower models and fewer tokens, about half the quick demo's compute. The builtin designs
themselves are checked without training them (tests/report/test_demo.py)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from tests.conftest import TEST_DATA

PIPELINE_SPEC = TEST_DATA / "pipeline_sweep.toml"


@contextmanager
def pipeline_design():
    """While it lasts, `demo --quick` (the micro demo's quick design) runs PIPELINE_SPEC; every other
    builtin design is left as it is."""
    from distillscale.report import demo, design

    def spec(quick=False, scale="micro", repetition=False, capacity_gap=False):
        if quick and scale == "micro" and not repetition and not capacity_gap:
            return PIPELINE_SPEC
        return design.builtin_spec(quick, scale, repetition, capacity_gap)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "builtin_spec", spec)
        yield


@pytest.fixture
def pipeline_demo():
    """`demo --quick` runs the pipeline tests' design (PIPELINE_SPEC) in this test."""
    with pipeline_design():
        yield


def pipeline_runs() -> dict[str, int]:
    """The runs of the pipeline tests' design by kind ("teacher", "baseline", "student")."""
    from collections import Counter

    from distillscale.sweeps.spec import load_sweep_spec

    return dict(Counter(run.kind for run in load_sweep_spec(PIPELINE_SPEC).runs))
