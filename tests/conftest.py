"""Fixtures and paths shared by the test folders: run the CLI in-process, and find the repository,
the test data (tests/data/) and the reference data beside the checkout.

The tests mirror the package: a test file goes in the folder of the part of `src/distillscale/` it
mainly tests (the module whose behaviour it pins down, not every module it imports):
    laws/ planning/ model/ training/ regime/ sweeps/ report/ serve/   the subpackage of the same name
    data_pipeline/    distillscale.data (`tests/data/` holds test data files, not tests)
    cli/              behaviour every command shares: usage errors, the output rule, fuzzing, user input
    bench/            the scripts under bench/
    tests/ (root)     top-level modules (tables.py, units.py, the API in __init__/lazy.py) and the
                      repository itself (README, docs, packaging extras)
A command's own tests go with the subpackage that holds the command (`fit` -> laws/, `plan` ->
planning/, `demo` and `report` -> report/). Every folder has an __init__.py, so two folders may hold
files of the same name. A fixture used by one folder only lives in that folder's conftest.py; this
file keeps those used by several. Paths go through REPO_ROOT and TEST_DATA below (no parent
arithmetic in test files)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from distillscale.cli import main

# The kernel cache a user set before the tests started, read before any import can set it: importing
# transformers' Llama calls torch's inductor `cache_dir()`, which writes its default into the
# environment (/tmp/torchinductor_$USER), so that a later look would take it for the user's choice.
USER_INDUCTOR_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
SHARED = Path(os.environ.get("DISTILLSCALE_SHARED", REPO_ROOT.parent / "shared"))


def load_bench(relative_path: str) -> ModuleType:
    """The script bench/`relative_path` (e.g. "laws/e_posterior.py"; bench/ is scripts, not a package)
    loaded afresh as a module named `<stem>_bench`, registered in sys.modules (a script's dataclasses
    look their module up there)."""
    path = REPO_ROOT / "bench" / relative_path
    spec = importlib.util.spec_from_file_location(f"{path.stem}_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# A failing property test (hypothesis) reports the example it found as found, not shrunk: shrinking a
# command line through the whole CLI takes minutes per test, so a file of failing fuzz tests would hold
# the suite for hours. DISTILLSCALE_SHRINK=1 shrinks (to debug one test). Loaded before any test module
# builds its settings, which inherit it.
try:
    from hypothesis import Phase, settings as _hypothesis_settings
except ImportError:  # the dev extra not installed: the property tests skip
    pass
else:
    _hypothesis_settings.register_profile("suite", phases=(Phase.explicit, Phase.reuse, Phase.generate))
    if not os.environ.get("DISTILLSCALE_SHRINK"):
        _hypothesis_settings.load_profile("suite")


def pytest_addoption(parser):
    """--pipeline-design: the design the whole-pipeline tests run as `demo --quick` (tests/report/conftest.py):
    their own small one, or (`make test-slow`) the builtin quick design itself."""
    parser.addoption("--pipeline-design", choices=("tests", "quick"), default="tests",
                     help="the sweep design the whole-pipeline tests run as `demo --quick`: tests (their own, "
                          "tests/data/pipeline_sweep.toml) or quick (the builtin quick design, as `make test-slow`)")


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs `-n 2`), each worker trains on one thread, and so do the
    processes its tests start: two workers of two threads each would oversubscribe two cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# The heaviest test files, heaviest first (each file's time in a run of the whole suite on 2 cores,
# 2026-11-29; the two whole-pipeline files as they ran after moving to their own design). `make test`
# hands whole files to its two workers in collection order (`--dist loadfile --no-loadscope-reorder`), so
# these run first and the many short files fill in behind them: longest-processing-time-first
# scheduling. Left to xdist's default order (files with the most tests first), a 3-5 minute file could
# start last on one worker while the other had nothing left to do.
HEAVIEST_FIRST = (
    "tests/report/test_report.py", "tests/sweeps/test_runner.py", "tests/training/test_fsdp.py",
    "tests/sweeps/test_sweep_eval.py", "tests/report/test_demo_teacher_split.py", "tests/laws/test_marginal.py",
    "tests/report/test_own_teacher.py", "tests/cli/test_unreadable.py", "tests/laws/test_backtest.py",
    "tests/planning/test_teacher_model_plan.py", "tests/laws/test_fit.py", "tests/training/test_hf_student.py",
    "tests/planning/test_family_cache.py", "tests/bench/test_e_posterior_bench.py",
    "tests/bench/test_hyperparameters_steplaw_bench.py", "tests/evaluation/test_eval_command.py",
    "tests/laws/test_hyperparameter_grids.py", "tests/cli/test_user_input.py", "tests/laws/test_repetition_laws.py",
    "tests/report/test_design_family.py", "tests/cli/test_tables_80.py", "tests/laws/test_pack_interval.py",
    "tests/laws/test_repetition_curves.py", "tests/planning/test_family_plan.py", "tests/training/test_seams_matrix.py",
    "tests/sweeps/test_worker.py", "tests/laws/test_interaction.py", "tests/laws/test_law_inputs.py",
    "tests/laws/test_ensemble.py", "tests/test_readme.py", "tests/test_api.py", "tests/laws/test_cli_fit.py",
    "tests/laws/test_crossladder_cli.py", "tests/training/test_ddp.py",
)

# The inner loop (`make test-fast`, marker `fast`): every test of these that is not marked slow (a
# test that takes more than a few seconds is).
FAST = ("tests/laws/", "tests/planning/", "tests/cli/", "tests/test_units.py")


def pytest_collection_modifyitems(config, items):
    """Order the collection heaviest file first (see HEAVIEST_FIRST; the rest keep their order) and
    mark the inner loop's tests `fast` (FAST)."""
    rank = {name: index for index, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    for item in items:
        if item.nodeid.startswith(FAST) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True, scope="session")
def own_compile_cache(tmp_path_factory):
    """torch.compile's kernels in a cache of this session's own (the processes the tests start
    inherit it): the user's /tmp/torchinductor_$USER may hold kernels built under another
    ATEN_CPU_CAPABILITY (.ci/run's emulation, a CPU before), and reading one of them aborted a
    rank with "double free or corruption" (test_fsdp's compile test, 2026-11-25), and two workers
    compiling into it at once gave a compiled loss garbage indices (2026-11-26, under the emulation).
    Only a cache the user set before the session is kept (`USER_INDUCTOR_CACHE`)."""
    if USER_INDUCTOR_CACHE:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
        yield


@pytest.fixture(autouse=True, scope="session")
def cpu_by_default():
    """`--device auto` means the CPU in tests (and in the processes they start), also on a GPU
    machine: the tests compare CPU-exact numbers. Tests of CUDA paths ask for cuda explicitly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTILLSCALE_DEVICE", "cpu")
        yield


@pytest.fixture
def cli(capsys):
    """cli(*args) -> (exit_code, stdout, stderr), running `distillscale ARGS` in this process."""

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when the reference data is not beside this checkout."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("reference data ../shared/data is absent")
    return data


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A data cache (DISTILLSCALE_CACHE) shared by one module's tests; subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv("DISTILLSCALE_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and CPU results repeat exactly with the same kernels."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def offline_datasets(tmp_path_factory):
    """Nothing is downloaded (lm-eval's tasks): Hugging Face datasets and hub offline, a datasets cache of
    the module's own; a task's data is a local JSONL read through datasets' json builder. Worker
    processes a sweep starts inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        yield


def point_laws(name: str = "busbridge2025"):
    """A preset with its values alone and no interval (its laws' fit records dropped; its published
    data range still known by name): for tests of what the planner does with point values, e.g. a
    verdict from the losses' order, or a range made of one part alone."""
    from dataclasses import replace

    from distillscale.laws import load_laws

    laws = load_laws(name)
    supervised = replace(laws.supervised, fit=None)
    distillation = None if laws.distillation is None else replace(laws.distillation, fit=None, student_law=supervised)
    return replace(laws, supervised=supervised, distillation=distillation)


@pytest.fixture
def family_term(monkeypatch, tmp_path):
    """A builtin design's family term installed as if it shipped (none ships: the micro demo's runs are
    long enough for its raw law): "micro-demo", the micro demo's spec, a dN term of -0.06 learned after
    the shipped pack model on six corpora. Returns the term."""
    import json

    import numpy as np

    from distillscale.laws import crossladder
    from distillscale.laws.crossladder import FamilyTerm, shipped_model
    from distillscale.report import design

    model = shipped_model().model_copy(update={
        "features": ("dN",), "coefficients": (-0.06,), "spread_on": "dN", "slope_sd": 0.02,
        "ladders": ("c-include", "doc-en", "man-en", "perl-code", "pkgdoc-en", "stdlib"),
        "date": "2026-11-26", "command": "python bench/demo/demo_family.py score --write"})
    term = FamilyTerm(name="micro-demo", design="builtin micro demo design", model=model,
                      reach=float(np.log(443424 / 187272)), after=tuple(shipped_model().coefficients))
    path = tmp_path / "family_terms.json"
    path.write_text(json.dumps({"micro-demo": term.model_dump(mode="json")}))
    monkeypatch.setattr(crossladder, "FAMILY_FILE", path)
    monkeypatch.setattr(design, "FAMILY_DESIGNS", {"micro-demo": design.SPECS[False]})
    return term
