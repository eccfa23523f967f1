"""`sweep plan` on a GPU of the throughput table (issue 65): each run's device seconds are its FLOPs at
the device's measured MFU for its size, the sweep's GPU-hours and cost follow from them and its wall
time, and a model shape compiles cold once, then warm."""

from __future__ import annotations

import json

import pytest

from distillscale.planning.gpu_hours import ThroughputTable
from distillscale.sweeps.dry_run import COMPILE_SECONDS, WARM_COMPILE_SECONDS, Throughput, dry_run
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from distillscale.sweeps.spec import load_sweep_spec
from tests.sweeps.test_dry_run import small_spec


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


@pytest.mark.parametrize("gpu", ["h100", "h200", "a100"])
def test_each_run_is_priced_at_the_measured_mfu_of_its_size(cli, tmp_path, gpu):
    path = small_spec(tmp_path, extra="bf16 = true\ncompile = true")
    code, out, err = cli("sweep", "plan", path, "--gpus", "2", "--gpu", gpu, "--price-per-gpu-hour", "4", "--json")
    assert code == 0, err
    plan, table = json.loads(out), ThroughputTable.load()
    for run in plan["runs"]:
        rate = table.flops_per_second(gpu, run["non_embedding_params"], shape=(320, 32))  # the spec's vocabulary, context
        assert run["device_seconds"] == pytest.approx((run["flops"] + run["evaluation_flops"]) / rate)
    hours = plan["gpu_hours"]
    assert hours["gpu"] == gpu and hours["gpus"] == 2
    assert hours["busy_hours"] == pytest.approx(plan["device_seconds"] / 3600)
    assert hours["reserved_hours"] == pytest.approx(plan["wall_seconds"] * 2 / 3600)
    assert hours["cost"] == pytest.approx(4 * hours["reserved_hours"])
    assert hours["reserved_hours"] >= hours["busy_hours"]
    code, out, _ = cli("sweep", "plan", path, "--gpus", "2", "--gpu", gpu, "--price-per-gpu-hour", "4")
    text = " ".join(out.split())
    assert "GPU-hours on 2 x NVIDIA" in text and "busy" in text and "reserved" in text and "per GPU-hour" in text


def test_an_mfu_replaces_the_table_and_the_cpu_has_no_gpu_hours(cli, tmp_path):
    path = small_spec(tmp_path)
    plan = json.loads(cli("sweep", "plan", path, "--gpus", "1", "--gpu", "h200", "--mfu", "0.25", "--json")[1])
    for run in plan["runs"]:
        assert run["device_seconds"] == pytest.approx((run["flops"] + run["evaluation_flops"]) / (0.25 * 989.4e12))
    assert "MFU 25.0% (--mfu, not measured)" in " ".join(plan["assumptions"])
    assert json.loads(cli("sweep", "plan", path, "--gpus", "none", "--json")[1])["gpu_hours"] is None


def test_a_shape_compiles_cold_once_and_warm_after(tmp_path):
    spec = load_sweep_spec(small_spec(tmp_path, extra="bf16 = true\ncompile = true"))
    plan = dry_run(spec, gpus=1, runs_per_gpu=1, throughput=Throughput(startup_seconds=0))
    seen, startups = set(), []
    for run in sorted(plan.runs, key=lambda run: run.start_seconds):
        shape = (run.n_layers, run.non_embedding_params)
        startups.append((shape in seen, run.startup_seconds))
        seen.add(shape)
    assert {seconds for warm, seconds in startups if not warm} == {COMPILE_SECONDS}
    assert {seconds for warm, seconds in startups if warm} == {WARM_COMPILE_SECONDS}
    assert sum(warm for warm, _ in startups) >= 5  # the forks and a size's later runs
