"""GPU-hours hold one rule everywhere they are priced: the engine's FLOPs whatever count the plan
searched with, a run sheet whose GPU-h is the GPU table's run, an MFU read from one model shape's
figures (figures at one size averaged and said), a borrowed MFU that keeps an overhead-bound size's
speed, a run never spread over more GPUs than it has sequences a step; and the GPU options are
checked once for `plan`, `sweep plan` and the planner page."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.planning.gpu_hours import SHIPPED_TABLE, ThroughputTable, engine_forward, format_gpu_hours
from distillscale.planning.run_sheet import run_sheet
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from tests.sweeps.test_dry_run import small_spec

LAW = "busbridge2025"
PEAK = 989.4e12


def _mfu_hours(run, peak=PEAK) -> float:
    return run.flops / (run.mfu.value * peak) / 3600


# -- the engine's FLOPs, whatever the plan counts ----------------------------------------------------

@pytest.mark.parametrize("options", [
    dict(student_params=546e6, scenario="teacher-pretraining-inference"),
    dict(student_params=546e6, teacher_params=2e9, teacher_tokens=40e9),
    dict(scenario="teacher-inference"),                               # the student-size search
    dict(student_params=546e6, teacher_mixture=(2e9, 1e9), teacher_loss=2.2),
])
def test_a_simple_flop_count_plans_at_2n_and_prices_hours_at_the_engines_count(options):
    plan = ds.plan(LAW, compute=1e21, flops="simple", gpu="h100", **options)
    engine = engine_forward(plan.planner.flops)
    assert engine.method == "corrected" and plan.planner.flops.method == "simple"
    p, planned = plan.headline, plan.runs()   # run name -> (N, D)
    for run in plan.gpu_hours.runs:
        params, tokens = planned[run.run]
        passes = 1 if run.part.startswith("teacher logits") else 3   # a forward, or a training step's three
        assert run.flops == pytest.approx(passes * float(engine(run.params)) * tokens, rel=1e-9), run.part
        assert run.gpu_hours == pytest.approx(_mfu_hours(run))
    student = next(run for run in plan.gpu_hours.runs if run.part == "student training")
    if student.params == 546e6:   # at 546M the engine spends ~1.3x the 2N count: the hours are not 23% low
        assert student.flops / (6 * student.params * p.student_tokens) > 1.2
    assert any("engine's count" in note and "--flops simple" in note for note in plan.gpu_hours.notes())


def test_hours_are_the_same_rule_under_either_count_for_the_same_runs():
    """The same N and D priced under either count give the same GPU-hours: a mode comparison (whose
    on-policy parts are at the sampled sequence's context) and a supervised-only plan."""
    common = dict(student_params=546e6, teacher_params=2e9, teacher_loss=2.2, on_policy_fraction=(0.5,), gpu="h100")
    simple = ds.plan(LAW, compute=1e21, flops="simple", **common)
    corrected = ds.plan(LAW, compute=1e21, **common)
    for a_mode, b_mode in zip(simple.modes, corrected.modes):
        a = {r.part: r.flops / a_mode.student_tokens for r in simple.gpu_hours.runs if r.group == a_mode.name}
        b = {r.part: r.flops / b_mode.student_tokens for r in corrected.gpu_hours.runs if r.group == b_mode.name}
        assert a == pytest.approx(b, rel=1e-9)   # the engine's FLOPs per student token, whatever the plan counted
    supervised = ds.plan("chinchilla2022", compute=1e21, student_params=546e6, flops="simple", gpu="h100")
    (model,) = supervised.gpu_hours.runs
    engine = engine_forward(supervised.planner.flops)
    assert model.flops == pytest.approx(3 * float(engine(546e6)) * supervised.supervised.tokens)


def test_a_student_models_exact_count_is_kept_under_a_simple_plan(tmp_path):
    from distillscale.model import ModelConfig

    config = ModelConfig(n_layers=12, aspect_ratio=64, head_dim=64, vocab_size=8192, max_seq_len=1024)
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "model_config.json").write_text(json.dumps(config.model_dump()))
    plan = ds.plan(LAW, compute=1e20, student_model=str(tmp_path / "student"), scenario="teacher-inference",
                   flops="simple", gpu="h100")
    p = plan.headline
    runs = {run.part: run for run in plan.gpu_hours.runs}
    exact = config.forward_flops_per_token(min(plan.planner.flops.n_ctx, 1024))
    assert runs["student training"].flops == pytest.approx(3 * exact * p.student_tokens)
    teacher = float(engine_forward(plan.planner.flops)(p.teacher_params))
    assert runs["teacher logits"].flops == pytest.approx(teacher * p.student_tokens)


# -- the run sheet's GPU-h is the GPU table's run ------------------------------------------------------

@pytest.mark.parametrize("options", [
    dict(student_params=546e6),
    dict(student_params=546e6, teacher_params=2e9, teacher_tokens=40e9, teacher_remote=True),
    dict(student_params=546e6, teacher_params=2e9, teacher_tokens=40e9, on_policy_fraction=(0.5,)),
    dict(student_params=546e6, teacher_mixture=(2e9, 1e9), teacher_loss=2.2),
])
def test_the_run_sheets_gpu_hours_are_the_gpu_tables_runs(options):
    plan = ds.plan(LAW, compute=1e21, gpu="h100", gpus=4, **options)
    estimate, rows = plan.gpu_hours, run_sheet(plan)
    per_run = estimate.per_run()
    for row in rows:
        for name in row.uses:
            parts = [run for run in estimate.runs if run.run == name]
            assert row.gpu_hours == pytest.approx(sum(run.gpu_hours for run in parts)) == per_run[name][0]
            # the student's run is its training and the teacher logits on its own GPUs, never a server's
            assert all(not run.part.endswith("server's GPUs)") for run in parts)
    text = plan.as_text(width=200)
    gpu_table = text[text.index("GPU time on"):]
    lines = [line for line in gpu_table.splitlines() if "student run" in line]
    for row in rows:
        if len([r for r in estimate.runs if r.run == row.uses[0]]) > 1:   # a student and its teacher's logits
            assert any(f" {format_gpu_hours(row.gpu_hours)} " in line for line in lines)
    record = plan.to_dict()["gpu_hours"]
    assert {name: value["gpu_hours"] for name, value in record["per_run"].items()} == pytest.approx(
        {name: hours for name, (hours, _, _) in per_run.items()})


def test_a_remote_teachers_logits_are_not_on_the_students_run():
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, teacher_params=2e9, teacher_tokens=40e9,
                   teacher_remote=True, gpu="h100")
    for row in run_sheet(plan):
        own = [run for run in plan.gpu_hours.runs if run.group == row.uses[0] and run.part == "student training"]
        assert row.gpu_hours == pytest.approx(own[0].gpu_hours)


# -- one model shape's figures, several figures at one size said --------------------------------------

def _table(tmp_path, figures: list[dict], extra_devices: tuple = ()) -> str:
    data = json.loads(SHIPPED_TABLE.read_text())
    template = data["devices"][0]["figures"][1]
    device = {"id": "mygpu", "name": "My GPU", "peak_flops": PEAK, "peak_source": "vendor",
              "figures": [{**copy.deepcopy(template), **figure} for figure in figures]}
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": data["format"], "devices": [device, *extra_devices]}))
    return str(path)


def _figure(params: float, mfu: float, vocab: int = 8192, seq_len: int = 1024) -> dict:
    flops_per_token = 1e9
    model = {"n_layers": 4, "aspect_ratio": 64, "head_dim": 64, "vocab_size": vocab, "seq_len": seq_len,
             "batch_sequences": 16}
    return {"non_embedding_params": params, "flops_per_token": flops_per_token,
            "tokens_per_second": mfu * PEAK / flops_per_token, "model": model}


def test_interpolation_never_mixes_two_model_shapes(tmp_path):
    table = ThroughputTable.load(_table(tmp_path, [_figure(1e6, 0.10), _figure(1e8, 0.40), _figure(1e7, 0.05, 512, 512)]))
    found = table.mfu("mygpu", 1e7 / 2, shape=(8192, 1024))   # between 1M and 100M of its own shape
    assert found.how == "interpolated" and found.shape == (8192, 1024)
    weight = math.log(5e6 / 1e6) / math.log(1e8 / 1e6)
    assert found.value == pytest.approx(0.10 + weight * 0.30)
    other = table.mfu("mygpu", 1e7, shape=(512, 512))         # its own shape's figure
    assert other.how == "measured" and other.value == pytest.approx(0.05)
    # the shipped H100: the plan's runs read the family's figures (vocabulary 8192), never the ladder's
    h100 = ThroughputTable.load()
    for params in (4e6, 5e6, 6e6):
        estimate = h100.mfu("h100", params, shape=(32168, 4096))
        assert estimate.shape == (8192, 1024) and estimate.how == "beyond"
    plan = ds.plan(LAW, compute=1e19, student_params=5e6, scenario="best-case", gpu="h100")
    assert all(run.mfu.shape == (8192, 1024) for run in plan.gpu_hours.runs)
    assert any("vocabulary 8,192" in note for note in plan.gpu_hours.notes())


@pytest.mark.parametrize("second", [85e6, 85.4e6])   # the same size, or within 1% of it
def test_two_figures_at_one_size_are_averaged_and_said(tmp_path, second):
    table = ThroughputTable.load(_table(tmp_path, [_figure(10e6, 0.2), _figure(85e6, 0.30), _figure(second, 0.36),
                                                   _figure(200e6, 0.4)]))
    at = table.mfu("mygpu", 85.2e6)
    assert at.how == "measured" and at.value == pytest.approx(0.33)
    assert at.averaged and "30.0%" in at.averaged[0] and "36.0%" in at.averaged[0]
    between = table.mfu("mygpu", 50e6)
    assert between.how == "interpolated" and between.averaged
    plan = ds.plan(LAW, compute=1e20, student_params=85.2e6, scenario="best-case", gpu="mygpu",
                   throughput_table=_table(tmp_path, [_figure(10e6, 0.2), _figure(85e6, 0.30), _figure(second, 0.36),
                                                      _figure(200e6, 0.4)]))
    assert any("averaged" in note and "36.0%" in note for note in plan.gpu_hours.notes())


# -- a borrowed MFU at an overhead-bound size ------------------------------------------------------------

@pytest.mark.parametrize("gpu, source", [("a100", "h100"), ("l40s", "h100"), ("b200", "h200")])
def test_a_borrowed_mfu_keeps_an_overhead_bound_sizes_speed(gpu, source):
    table = ThroughputTable.load()
    peak, source_peak = table.devices[gpu].peak_flops, table.devices[source].peak_flops
    best = max(f.flops_per_second / source_peak for f in table.devices[source].figures)
    for params in (6.35e6, 10.6e6, 85e6, 202e6, 680e6, 5e9):
        measured = table.mfu(source, params)
        borrowed = table.mfu(gpu, params)
        assert borrowed.borrowed and borrowed.source_value == pytest.approx(measured.value)
        # time per token: the source's overhead (its time beyond compute at its best MFU), kept; compute scaled
        source_time = 1 / (measured.value * source_peak)
        expected = (source_time - 1 / (best * source_peak)) + 1 / (best * peak)
        assert 1 / (borrowed.value * peak) == pytest.approx(expected)
        same_mfu, same_speed = measured.value * peak, measured.value * source_peak   # FLOP/s either way
        low, high = sorted((same_mfu, same_speed))
        assert low * (1 - 1e-9) <= borrowed.value * peak <= high * (1 + 1e-9)
        if measured.value < 0.5 * best:   # overhead-bound: not the source's MFU
            assert abs(borrowed.value - measured.value) > 0.2 * measured.value


# -- a run on more GPUs than its sequences a step ----------------------------------------------------

def test_a_run_is_never_spread_over_more_gpus_than_its_sequences_a_step():
    plan = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case", gpu="h100", gpus=64,
                   hyperparameter_law="gpu-ladder-h200")
    for row in run_sheet(plan):
        sequences = row.recipe.batch_sequences
        assert sequences < 64
        for run in (run for run in plan.gpu_hours.runs if run.run in row.uses):
            assert run.gpus == sequences and run.wall_hours == pytest.approx(run.gpu_hours / sequences)
    assert any("at most 8 of the 64 GPUs" in note for note in plan.gpu_hours.notes())
    uneven = ds.plan(LAW, compute=1e21, student_params=546e6, scenario="best-case", gpu="h100", gpus=8)
    assert any("do not split evenly over 8 GPUs" in note for note in uneven.gpu_hours.notes())


# -- the GPU options: one check for plan, sweep plan and the page --------------------------------------

BAD_VALUES = [("gpus", "0"), ("gpus", "-2"), ("gpus", "1.5"), ("gpus", "many"), ("price_per_gpu_hour", "-1"),
              ("price_per_gpu_hour", "nan"), ("price_per_gpu_hour", "inf"), ("price_per_gpu_hour", "cheap")]


@pytest.mark.parametrize("name, value", BAD_VALUES)
def test_a_bad_gpu_option_reads_the_same_from_plan_the_page_and_python(cli, name, value):
    from distillscale.serve.api import PlanQuery

    flag = "--" + name.replace("_", "-")
    code, out, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--gpu", "h100", flag, value)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "Input should" not in err and "valid" not in err
    control = {"gpus": "gpus", "price_per_gpu_hour": "price_per_gpu_hour"}[name]
    page = _planner().update(PlanQuery(law=LAW, compute="1e21", student="546M", gpu="h100", **{control: value}))
    message = next(iter(page["errors"].values()))
    assert not page["ok"] and "Input should" not in message and "valid" not in message
    with pytest.raises(ParameterError) as caught:
        ds.plan(LAW, compute=1e21, student_params=546e6, gpu="h100", **{name: value})
    # one message: the flag's, the control's and the parameter's differ only in how they name it
    assert err.split(" must ")[1].strip() == message.split(" must ")[1] == str(caught.value).split(" must ")[1]


_PLANNER = []


def _planner():
    from distillscale.serve.api import Planner

    if not _PLANNER:
        _PLANNER.append(Planner())
    return _PLANNER[0]


def test_the_page_refuses_a_price_or_gpus_without_a_gpu_as_plan_does(cli):
    from distillscale.serve.api import PlanQuery

    page = _planner().update(PlanQuery(law=LAW, compute="1e21", student="546M", gpu="none", price_per_gpu_hour="3"))
    assert not page["ok"] and "needs the GPU" in page["errors"]["price"]
    code, _, err = cli("plan", "--compute", "1e21", "--student-params", "546M", "--price-per-gpu-hour", "3")
    assert code == 2 and "--price-per-gpu-hour needs --gpu" in err


@pytest.fixture
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


@pytest.mark.parametrize("flags, words", [
    (["--gpus", "none", "--price-per-gpu-hour", "3"], "--price-per-gpu-hour applies to GPUs"),
    (["--gpus", "none", "--mfu", "0.3"], "--mfu applies to GPUs"),
    (["--gpus", "none", "--gpu", "a100"], "--gpu applies to GPUs"),
    (["--gpus", "none", "--throughput-table", "TABLE"], "--throughput-table applies to GPUs"),
    (["--gpus", "1", "--mfu", "0.3", "--flops-per-second", "1e14"], "--mfu sets how fast"),
    (["--gpus", "1", "--gpu", "h200", "--flops-per-second", "1e14"], "--gpu sets how fast"),
    (["--gpus", "1", "--throughput-table", "TABLE", "--flops-per-second", "1e14"], "--throughput-table sets how fast"),
    (["--gpus", "1", "--mfu", "1.5"], "--mfu must be a fraction"),
    (["--gpus", "1", "--price-per-gpu-hour", "-1"], "--price-per-gpu-hour must be a number, at least 0"),
])
def test_sweep_plan_refuses_gpu_options_that_cannot_apply(cli, tmp_path, no_gpu_here, flags, words):
    table = _table(tmp_path, [_figure(1e6, 0.1), _figure(1e8, 0.4)])
    flags = [table if flag == "TABLE" else flag for flag in flags]
    code, out, err = cli("sweep", "plan", small_spec(tmp_path), *flags)
    assert code == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1, err


def test_sweep_plan_on_a_table_without_the_default_gpu(cli, tmp_path, no_gpu_here):
    spec = small_spec(tmp_path)
    one = _table(tmp_path, [_figure(1e4, 0.1), _figure(1e8, 0.4)])
    code, out, err = cli("sweep", "plan", spec, "--gpus", "1", "--throughput-table", one, "--json")
    assert code == 0, err
    assert json.loads(out)["gpu_hours"]["device_name"] == "My GPU"   # a table of one device: that one
    other = {"id": "othergpu", "name": "Other GPU", "peak_flops": PEAK, "peak_source": "vendor", "mfu_from": "mygpu"}
    two = _table(tmp_path, [_figure(1e4, 0.1), _figure(1e8, 0.4)], extra_devices=(other,))
    code, out, err = cli("sweep", "plan", spec, "--gpus", "1", "--throughput-table", two)
    assert code == 2 and "for --gpu" not in err and "give --gpu" in err and "mygpu, othergpu" in err


@pytest.mark.slow
def test_the_dry_run_reads_no_throughput_table_at_import():
    code = ("import distillscale.planning.gpu_hours as t\n"
            "def refuse(*a, **k): raise SystemExit('the table was read')\n"
            "t.ThroughputTable.load = classmethod(refuse)\n"
            "import distillscale.sweeps.dry_run\n"
            "import distillscale.sweeps.commands\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_cpu_sweep_plan_reads_no_table(tmp_path, no_gpu_here, monkeypatch):
    from distillscale.planning import gpu_hours
    from distillscale.sweeps.dry_run import dry_run
    from distillscale.sweeps.spec import load_sweep_spec

    spec = load_sweep_spec(small_spec(tmp_path))
    monkeypatch.setattr(gpu_hours.ThroughputTable, "load", classmethod(lambda *a, **k: pytest.fail("read")))
    assert dry_run(spec, gpus=0).gpu_time() is None
