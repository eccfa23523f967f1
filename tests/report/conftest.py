"""Fixtures of the report tests: the whole-pipeline tests' own sweep design.

The tests of the main job end to end (`demo` with a teacher: the sweep trained, both laws fitted and
checked on held-out runs, the report, the teacher measured and planned for, the planned student
distilled) run `demo --quick` on a design of their own, PIPELINE_SPEC: the quick demo's shape (three
teacher depths over WSD-forked budgets, one student size at three budgets per teacher, its baselines)
on narrower models and fewer tokens. `make test-slow` runs the same tests on the builtin quick design
itself (`--pipeline-design quick`); the builtin designs' shapes are checked without training them
(tests/report/test_demo.py)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA

PIPELINE_SPEC = TEST_DATA / "pipeline_sweep.toml"


@pytest.fixture(scope="session")
def pipeline_spec(pytestconfig) -> Path:
    """The spec the whole-pipeline tests run as `demo --quick`: PIPELINE_SPEC, or with
    `--pipeline-design quick` the builtin quick design."""
    from distillscale.report.design import builtin_spec

    return builtin_spec(quick=True) if pytestconfig.getoption("pipeline_design") == "quick" else PIPELINE_SPEC


@contextmanager
def pipeline_design(spec: Path):
    """While it lasts, `demo --quick` runs `spec` (the `pipeline_spec` fixture's) in place of the quick
    design; every other builtin design is left as it is."""
    from distillscale.report import demo, design

    def builtin_spec(quick=False, scale="micro", repetition=False, capacity_gap=False):
        if quick and scale == "micro" and not repetition and not capacity_gap:
            return spec
        return design.builtin_spec(quick, scale, repetition, capacity_gap)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "builtin_spec", builtin_spec)
        yield


@pytest.fixture
def pipeline_demo(pipeline_spec):
    """`demo --quick` runs the pipeline tests' design (`pipeline_spec`) in this test."""
    with pipeline_design(pipeline_spec):
        yield


def pipeline_runs(spec: Path) -> tuple[str, dict[str, int]]:
    """The name of the sweep `spec` describes and its runs by kind ("teacher", "baseline", "student")."""
    from collections import Counter

    from distillscale.sweeps.spec import load_sweep_spec

    import tomllib

    name = tomllib.loads(spec.read_text(encoding="utf-8"))["name"]   # the sweep's own name (its runs': another)
    return name, dict(Counter(run.kind for run in load_sweep_spec(spec).runs))
