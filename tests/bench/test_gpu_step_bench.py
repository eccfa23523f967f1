"""bench/gpu/gpu_step.py: without a GPU it says so and exits 0; `--device cpu --tiny` runs its whole code
path (the family's step, the HF Llama loop, live-teacher, cache-fed and FSDP steps) on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import load_bench

pytestmark = pytest.mark.usefixtures("one_thread")


def bench():
    return load_bench("gpu/gpu_step.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_the_benchmark_says_so_and_exits_0(capsys):
    assert bench().main([]) == 0
    assert "no CUDA GPU here" in capsys.readouterr().out


@pytest.mark.slow
def test_the_benchmark_runs_its_code_path_on_the_cpu(capsys):
    pytest.importorskip("transformers")
    assert bench().main(["--device", "cpu", "--tiny", "--sizes", "tiny-1", "--steps", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("tiny-1"))
    assert len(row.split()) == 12  # size, params, batch (3), three speeds (ours, HF labels=, HF fp32), two ratios, two MFUs
    for arm in ("supervised", "live teacher", "logit cache", "parallel fsdp"):
        assert f"{arm}" in out and "tokens/s" in out
    assert "targets: cache-fed" in out


@pytest.mark.slow
def test_the_benchmark_profiles_where_each_step_spends_its_time(capsys):
    """`--profile N`: N more steps of each figure under torch.profiler, ms per step and the operations
    taking the most time, the timed figure unchanged in form."""
    pytest.importorskip("transformers")
    args = ["--device", "cpu", "--tiny", "--sizes", "tiny-1", "--steps", "1", "--warmup", "1", "--profile", "2",
            "--no-students"]
    assert bench().main(args) == 0
    out = capsys.readouterr().out
    for label in ("tiny-1 distillscale", "tiny-1 HF labels=", "tiny-1 HF float32 CE"):
        assert f"profile of {label}: " in out
    assert "aten::mm" in out and "/step" in out
    assert len(next(line for line in out.splitlines() if line.strip().startswith("tiny-1 ")).split()) == 12


@pytest.mark.slow
def test_the_benchmark_writes_a_throughput_table_that_plans_read(capsys, tmp_path, cli):
    """`--table FILE` (issue 65): the family's figures as a throughput table; `plan --gpu ID
    --throughput-table FILE` prices a plan at them; a second device joins the table; a file that is not
    a table is refused before anything runs."""
    pytest.importorskip("transformers")
    from distillscale.planning.gpu_hours import ThroughputTable

    table = tmp_path / "mine.json"
    args = ["--device", "cpu", "--tiny", "--sizes", "tiny-1", "--steps", "1", "--warmup", "1", "--no-students"]
    assert bench().main([*args, "--table", str(table), "--table-device", "box"]) == 0
    (figure,) = ThroughputTable.load(table).devices["box"].figures
    assert figure.model.n_layers == 1 and figure.tokens_per_second > 0 and figure.torch == torch.__version__
    capsys.readouterr()
    code, out, err = cli("plan", "--compute", "1e15", "--student-params", "10M", "--scenario", "best-case",
                         "--gpu", "box", "--throughput-table", table, "--json")
    assert code == 0, err
    (student, _) = json.loads(out)["gpu_hours"]["runs"]
    # beyond its one measured size: planned at that size's achieved FLOP/s
    assert student["mfu_source"] == "beyond"
    assert student["gpu_hours"] * 3600 == pytest.approx(student["flops"] / figure.flops_per_second)
    assert bench().main([*args, "--table", str(table), "--table-device", "box2"]) == 0
    assert set(ThroughputTable.load(table).devices) == {"box", "box2"}
    other = tmp_path / "other.json"
    other.write_text('{"runs": []}')
    assert bench().main([*args, "--table", str(other)]) == 2
    assert f"throughput table {other}" in capsys.readouterr().err
    assert other.read_text() == '{"runs": []}'


@pytest.mark.slow
def test_the_students_arms_can_be_chosen(capsys):
    """`--arms`: section 2 runs supervised (the ratios' base) and the arms named, its targets those of the
    arms run; an unknown arm is refused."""
    args = ["--device", "cpu", "--tiny", "--no-family", "--arms", "fsdp", "--steps", "1", "--warmup", "1"]
    assert bench().main(args) == 0
    out = capsys.readouterr().out
    assert "supervised " in out and "parallel fsdp" in out
    assert "live teacher" not in out and "logit cache" not in out
    assert "targets: FSDP >= 0.9x default" in out and "cache-fed" not in out
    with pytest.raises(SystemExit) as refused:
        bench().main(["--device", "cpu", "--tiny", "--arms", "live,teachers"])
    assert refused.value.code == 2
