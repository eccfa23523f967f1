"""Plans in GPU-hours (issue 65 item 4): the shipped throughput table loads and validates, a plan with
--gpu reports hours consistent with its FLOPs and the table, and unknown devices, bad options and bad
tables are refused in one line."""

from __future__ import annotations

import copy
import json
import math

import pytest

import distillscale as ds
from distillscale.errors import ParameterError, UserError
from distillscale.planning.gpu_hours import SHIPPED_TABLE, GpuSetting, RunFlops, ThroughputTable, estimate

LAW = "busbridge2025"


def test_the_shipped_table_loads_and_its_figures_are_the_engines_exact_counts():
    from distillscale.model import ModelConfig

    table = ThroughputTable.load()
    assert {"h100", "h200", "a100"} <= set(table.devices)
    measured = [device for device in table.devices.values() if device.figures]
    assert {device.id for device in measured} == {"h100", "h200"}
    for device in measured:
        for figure in device.figures:
            shape = figure.model
            config = ModelConfig(n_layers=shape.n_layers, aspect_ratio=shape.aspect_ratio, head_dim=shape.head_dim,
                                 vocab_size=shape.vocab_size, max_seq_len=shape.seq_len)
            assert figure.non_embedding_params == config.non_embedding_params
            assert figure.flops_per_token == 3 * config.forward_flops_per_token(shape.seq_len)
            assert figure.date >= "2026-11-01" and figure.source
            assert 0.05 < figure.flops_per_second / device.peak_flops < 0.7  # an MFU, not a unit slip
    # the H200 row at 85M (gpu_verify's family stage, 2026-11-28): 590,783 tokens/s, 50.0% of the 780 TFLOP/s matmul peak
    h200_85m = next(f for f in table.devices["h200"].figures if f.model.n_layers == 12)
    assert h200_85m.tokens_per_second == 590783
    assert h200_85m.flops_per_second / table.devices["h200"].measured_matmul_peak == pytest.approx(0.500, abs=1e-3)


def test_mfu_is_measured_interpolated_in_log_size_or_the_nearest_measured_size_and_says_which():
    table = ThroughputTable.load()
    h100 = table.devices["h100"]   # its family figures (vocabulary 8192), without the ladder's one at vocabulary 512
    points = sorted((f.non_embedding_params, f.flops_per_second / h100.peak_flops) for f in h100.figures
                    if f.model.vocab_size == 8192)
    (n1, m1), (n2, m2) = points[-2], points[-1]  # the two largest measured sizes
    at = table.mfu("h100", n1)
    assert at.how == "measured" and at.measured and at.value == pytest.approx(m1)
    middle = math.sqrt(n1 * n2)  # halfway in log N
    found = table.mfu("h100", middle)
    assert found.how == "interpolated" and found.value == pytest.approx((m1 + m2) / 2)
    assert not found.measured
    above = table.mfu("h100", 7e9)
    assert above.how == "beyond" and above.value == pytest.approx(m2) and "not measured at this size" in above.note
    below = table.mfu("h100", 1e5)
    assert below.how == "beyond" and below.value == pytest.approx(points[0][1])
    borrowed = table.mfu("a100", n2)   # at the H100's best MFU: compute-bound, the same MFU
    assert borrowed.borrowed and not borrowed.measured and borrowed.value == pytest.approx(m2)
    assert "not measured on the NVIDIA A100" in borrowed.note
    given = table.mfu("h200", middle, given=0.3)
    assert given.how == "given" and given.value == 0.3
    assert table.flops_per_second("a100", n2) == pytest.approx(m2 * table.devices["a100"].peak_flops)


@pytest.mark.parametrize("scenario", ["teacher-pretraining-inference", "best-case"])
def test_a_plan_with_a_gpu_reports_hours_consistent_with_its_flops_and_the_table(scenario):
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, scenario=scenario, gpu="h100", gpus=8,
                   price_per_gpu_hour=2.5)
    table, estimate_ = ThroughputTable.load(), plan.gpu_hours
    p = plan.plans[0]
    runs = {run.part: run for run in estimate_.runs}
    assert runs["student training"].flops == pytest.approx(p.flops.student)
    priced = [run for run in estimate_.runs if run.part != "pretrain instead"]
    assert sum(run.flops for run in priced) == pytest.approx(p.flops.total)  # the plan's own FLOPs, all of them
    assert runs["pretrain instead"].flops == pytest.approx(p.supervised.budget)
    for run in estimate_.runs:
        mfu = table.mfu("h100", run.params)
        assert run.mfu.value == pytest.approx(mfu.value)
        assert run.gpu_hours == pytest.approx(run.flops / (mfu.value * 989.4e12) / 3600)
        assert run.wall_hours == pytest.approx(run.gpu_hours / 8)
        assert run.cost == pytest.approx(run.gpu_hours * 2.5)
    hours, wall, cost = estimate_.totals()[scenario]
    assert hours == pytest.approx(sum(run.gpu_hours for run in priced))
    assert wall == pytest.approx(hours / 8) and cost == pytest.approx(hours * 2.5)
    if scenario == "best-case":  # the teacher is free: only the student is run
        assert [run.part for run in priced] == ["student training"]
    else:
        assert [run.part for run in priced] == ["teacher training", "teacher logits", "student training"]
    assert plan.to_dict()["gpu_hours"]["totals"][scenario]["gpu_hours"] == pytest.approx(hours)
    assert "--gpu h100 --gpus 8 --price-per-gpu-hour 2.5" in plan.as_cli_command()
    text = plan.as_text(width=140)
    assert "GPU time on 8 x NVIDIA H100 80GB" in text and "an estimate" in text


def test_without_a_gpu_a_plan_has_no_hours_and_the_mfu_option_replaces_the_table():
    assert ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case").gpu_hours is None
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case", gpu="h200", mfu=0.5)
    (student, _) = plan.gpu_hours.runs
    assert student.mfu.how == "given"
    assert student.gpu_hours == pytest.approx(plan.plans[0].flops.student / (0.5 * 989.4e12) / 3600)
    assert any("given with --mfu" in note for note in plan.gpu_hours.notes())


def test_a_sweep_and_a_mode_comparison_are_priced_per_run():
    sweep = ds.plan(LAW, compute=1e21, scenario="teacher-inference", gpu="h200")
    assert [run.part for run in sweep.gpu_hours.runs] == ["teacher logits", "student training", "pretrain instead"]
    modes = ds.plan(LAW, compute=1e21, student_params=546e6, teacher_params=7.75e9, teacher_loss=2.0,
                    logit_cache=True, gpu="h100")
    parts = {(run.group, run.part) for run in modes.gpu_hours.runs}
    assert ("supervised", "student training") in parts and any(part == "teacher logits" for _, part in parts)


def test_a_cli_plan_prints_the_table_and_its_json(cli):
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "teacher-inference",
                         "--gpu", "h200", "--gpus", "4", "--price-per-gpu-hour", "3")
    assert code == 0, err
    assert "GPU time on 4 x NVIDIA H200" in out and "GPU-hours" in out and "wall-clock" in out
    code, out, _ = cli("plan", "--compute", "1e21", "--student-params", "546M", "--scenario", "teacher-inference",
                       "--gpu", "h200", "--json")
    record = json.loads(out)["gpu_hours"]
    assert record["estimate"] is True and record["device"] == "h200" and record["gpus"] == 1
    assert {run["part"] for run in record["runs"]} == {"teacher logits", "student training", "pretrain instead"}


@pytest.mark.parametrize("flags, words", [
    (["--gpu", "tpu9"], "unknown GPU 'tpu9' for --gpu"),
    (["--gpu", "h100", "--mfu", "1.5"], "--mfu must be a fraction"),
    (["--gpu", "h100", "--price-per-gpu-hour", "-2"], "--price-per-gpu-hour must be a number, at least 0"),
    (["--gpus", "8"], "--gpus needs --gpu"),
    (["--mfu", "0.4"], "--mfu needs --gpu"),
    (["--gpu", "h100", "--throughput-table", "/nonexistent/table.json"], "does not exist"),
])
def test_bad_gpu_options_are_refused_in_one_line(cli, flags, words):
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", *flags)
    assert code == 2 and out == ""
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _shipped() -> dict:
    return json.loads(SHIPPED_TABLE.read_text())


def _broken(change) -> dict:
    data = copy.deepcopy(_shipped())
    change(data)
    return data


BAD_TABLES = {
    "format": (lambda d: d.update(format="other/1"), "format: must be 'distillscale.throughput/1'"),
    "missing field": (lambda d: d["devices"][0]["figures"][0].pop("tokens_per_second"),
                      "devices[0].figures[0].tokens_per_second: is missing"),
    "negative speed": (lambda d: d["devices"][1]["figures"][2].update(tokens_per_second=-1),
                       "devices[1].figures[2].tokens_per_second"),
    "bad date": (lambda d: d["devices"][0]["figures"][1].update(date="last week"), "must be a date as YYYY-MM-DD"),
    "above peak": (lambda d: d["devices"][0]["figures"][1].update(tokens_per_second=1e9), "above the device's peak"),
    "twice": (lambda d: d["devices"].append(d["devices"][0]), "device 'h100' is listed twice"),
    "borrows nothing": (lambda d: d["devices"][2].update(mfu_from="a100"), "takes its MFU from 'a100'"),
    "unknown field": (lambda d: d["devices"][0].update(colour="green"), "devices[0].colour: is not a field"),
}


@pytest.mark.parametrize("name", list(BAD_TABLES))
def test_bad_tables_are_refused_in_one_line(cli, tmp_path, name):
    change, words = BAD_TABLES[name]
    path = tmp_path / "table.json"
    path.write_text(json.dumps(_broken(change)))
    with pytest.raises(UserError, match="throughput table") as caught:
        ThroughputTable.load(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--gpu", "h100",
                         "--throughput-table", path)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_a_table_that_is_not_json_and_a_device_without_figures_or_mfu(cli, tmp_path):
    path = tmp_path / "table.json"
    path.write_text("{not json")
    code, _, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--gpu", "h100",
                       "--throughput-table", path)
    assert code == 2 and "is not readable JSON" in err
    own = {"format": "distillscale.throughput/1",
           "devices": [{"id": "mygpu", "name": "My GPU", "peak_flops": 500e12, "peak_source": "vendor"}]}
    path.write_text(json.dumps(own))
    with pytest.raises(ParameterError, match="no measured throughput on the My GPU"):
        estimate([RunFlops("run", "student", 1e8, 1e20)], GpuSetting("mygpu", table=str(path)))
    (run,) = estimate([RunFlops("run", "student", 1e8, 1e20)], GpuSetting("mygpu", mfu=0.4, table=str(path))).runs
    assert run.gpu_hours == pytest.approx(1e20 / (0.4 * 500e12) / 3600)


def test_the_planner_page_prices_a_plan_on_a_gpu():
    from distillscale.serve.api import Planner, PlanQuery

    planner = Planner()
    assert {gpu["id"] for gpu in planner.laws_info()["gpus"]} >= {"h100", "h200", "a100"}
    query = PlanQuery(law=LAW, compute="1e21", student="546M", scenario="teacher-inference", gpu="h100", gpus="8",
                      price_per_gpu_hour="2")
    response = planner.update(query)
    gpu = response["summary"]["gpu_hours"]
    assert gpu["gpus"] == 8 and gpu["wall_hours"] == pytest.approx(gpu["gpu_hours"] / 8)
    assert gpu["cost"] == pytest.approx(2 * gpu["gpu_hours"])
    assert "--gpu h100 --gpus 8" in response["cli"] and "GPU time on 8 x" in response["text"]
    bad = planner.update(PlanQuery(**{**vars(query), "gpu": "tpu9"}))
    assert not bad["ok"] and "unknown GPU 'tpu9'" in bad["errors"]["gpu"]
    bad = planner.update(PlanQuery(**{**vars(query), "gpus": "many"}))
    assert not bad["ok"] and "gpus" in bad["errors"]
