"""bench/demo/tuned_calibration.py's GPU specs (bench/gpu/gpu_verify.sh's lrgrid and tuned stages) resolve with the
shipped GPU ladder, whatever per-size rate it ships (its lr_law would clash with the grid's [tune] lr),
and each arm takes its rates from its own rule; nothing trains."""

from __future__ import annotations

import shutil

import pytest

from distillscale.report import demo
from distillscale.sweeps.spec import load_sweep_spec
from tests.conftest import REPO_ROOT, load_bench

LAW = REPO_ROOT / "src" / "distillscale" / "laws" / "hyperparameters" / "gpu_ladder_h200.json"


class Stop(Exception):
    pass


def bench():
    return load_bench("demo/tuned_calibration.py")


def test_the_gpu_grid_and_both_arms_resolve_with_the_shipped_ladder(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_split_tokens", lambda spec: {"teachers": 90_000_000, "students": 90_000_000})
    module = bench()
    module.gpu_grid_spec(tmp_path / "grid_gpu.toml")
    grid = load_sweep_spec(tmp_path / "grid_gpu.toml")
    assert {run.settings["lr"] for run in grid.runs} == set(module.GPU_GRID_LRS)
    assert max(run.n_layers for run in grid.runs) == 6  # the ladder's held-out depth 7 left out

    shutil.copy(LAW, tmp_path / "law-gpu.json")
    arms = {}

    def record(spec, sweep, export, placement):
        arms[spec.stem] = load_sweep_spec(spec)
        if len(arms) == 2:
            raise Stop
        export.write_text("run_id\n")  # an export without runs
        return 0.0

    monkeypatch.setattr(module, "sweep_and_export", record)
    with pytest.raises(Stop):
        module.gpu_arms(tmp_path)
    rule = arms["teachers_width-rule"]
    rates = {run.n_layers: run.settings["lr"] for run in rule.runs}
    assert rates[4] == pytest.approx(0.003 * (256 / 128) ** -0.87, rel=1e-3)  # d_model 256
    assert [rates[n] for n in sorted(rates)] == sorted(rates.values(), reverse=True)
    law = arms["teachers_lr-law"]
    assert law.sections["model"]["lr_law"] == str((tmp_path / "law-gpu.json").absolute())
    assert 0.003 < min(run.settings["lr"] for run in law.runs) < max(run.settings["lr"] for run in law.runs) < 0.005


def test_the_six_size_gpu_ladder_is_the_shipped_design_with_a_size_at_each_end(tmp_path, monkeypatch):
    """bench/laws/gpu_ladder_sizes.py (issue 55): the shipped ladder's teachers with depths 2 and 8 added, the two
    largest sizes seeded twice, every rate from the ladder's own law, no budget beyond the corpus window;
    the 21 runs of the shipped teachers keep their ids (their losses repeat the H200 arm's)."""
    monkeypatch.setattr(demo, "_split_tokens", lambda spec: {"teachers": 90_000_000, "students": 90_000_000})
    module = load_bench("laws/gpu_ladder_sizes.py")
    module.spec(tmp_path / "sizes.toml")
    sizes = load_sweep_spec(tmp_path / "sizes.toml")
    depths = [run.n_layers for run in sizes.runs]
    assert sorted(set(depths)) == [2, 3, 4, 5, 6, 7, 8]
    assert depths.count(8) == 2 and depths.count(7) == 4 and depths.count(2) == 2  # depth 8 at M = 3 only, 2 seeds
    assert max(run.tokens for run in sizes.runs) <= 80_000_000
    assert sizes.sections["model"]["lr_law"] == "gpu-ladder-h200"
    rates = {run.n_layers: run.settings["lr"] for run in sizes.runs}
    assert rates[8] > rates[2]  # the law's N exponent is positive
    shipped = {run.run_id for run in sizes.runs if run.n_layers in (3, 4, 5, 6, 7)}
    csv = (REPO_ROOT / "docs" / "gpu_ladder_teachers_h200.csv").read_text()
    assert all(run_id in csv for run_id in shipped)
