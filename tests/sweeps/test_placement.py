"""Device placement of a local sweep: which GPU each worker slot gets (a pure function), the flags'
errors, and a sweep on a stubbed GPU list whose runs each see the CUDA_VISIBLE_DEVICES they were given."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from distillscale.errors import ParameterError, UserError
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV, cuda_visible_devices, place_runs, visible_gpus
from distillscale.sweeps.store import RunStore

pytestmark = pytest.mark.usefixtures("cache_dir")


def test_one_run_per_visible_gpu_by_default():
    placement = place_runs(["0", "1", "2", "3"])
    assert placement.slots == ("0", "1", "2", "3")
    assert placement.env(2) == {"CUDA_VISIBLE_DEVICES": "2", "DISTILLSCALE_DEVICE": "cuda"}


def test_runs_per_gpu_share_each_gpu():
    placement = place_runs(["0", "1"], runs_per_gpu=3)
    assert Counter(placement.slots) == {"0": 3, "1": 3}
    assert placement.workers == 6


def test_an_explicit_list_picks_those_gpus_in_its_order():
    placement = place_runs(["0", "1", "2", "3"], gpus="3,1")
    assert placement.slots == ("3", "1") and placement.gpus == ("3", "1")


def test_none_runs_on_the_cpu_with_the_cpu_workers():
    placement = place_runs(["0", "1"], gpus="none", cpu_workers=5)
    assert placement.slots == (None,) * 5
    assert placement.env(0) == {"CUDA_VISIBLE_DEVICES": "", "DISTILLSCALE_DEVICE": "cpu"}
    assert place_runs([], workers=3).slots == (None, None, None)  # no GPU visible


def test_a_cpu_slot_keeps_device_auto_off_the_gpus_of_a_gpu_machine(monkeypatch):
    """`sweep run --gpus none` on a GPU machine: the run's `--device auto` used to pick cuda:0 (bf16 on)
    while the store said "cpu". CUDA is made to look usable; the suite's DISTILLSCALE_DEVICE=cpu is
    removed, so only what the slot sets keeps the run on the CPU."""
    import torch

    from distillscale.training.distributed import resolve_device

    monkeypatch.delenv("DISTILLSCALE_DEVICE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"  # what a run outside any slot picks here
    for name, value in place_runs(["0", "1"], gpus="none").env(0).items():
        monkeypatch.setenv(name, value)
    assert resolve_device("auto") == torch.device("cpu")


def test_more_workers_than_gpus_share_them_round_robin():
    assert place_runs(["0", "1"], workers=5).slots == ("0", "1", "0", "1", "0")
    assert place_runs(["0", "1"], workers=1).slots == ("0",)
    assert place_runs(["0", "1"], runs_per_gpu=2, workers=3).slots == ("0", "1", "0")


@pytest.mark.parametrize("kwargs, param, message", [
    ({"gpus": "0,7"}, "gpus", "GPU 7 is not visible to this process (visible: 0,1)"),
    ({"gpus": "0,0"}, "gpus", "lists GPU 0 twice"),
    ({"gpus": ","}, "gpus", "names no GPU"),
    ({"runs_per_gpu": 0}, "runs_per_gpu", "must be at least 1"),
    ({"runs_per_gpu": 2, "workers": 5}, "workers", "5 exceeds 2 GPUs x runs_per_gpu 2"),
    ({"gpus": "none", "runs_per_gpu": 2}, "runs_per_gpu", "needs GPUs, but none were chosen"),
])
def test_bad_choices_name_the_parameter(kwargs, param, message):
    with pytest.raises(ParameterError, match=re.escape(message)) as caught:
        place_runs(["0", "1"], **kwargs)
    assert caught.value.param == param


def fake_cuda(monkeypatch, count: int) -> None:
    """CUDA as if `count` GPUs were usable here (0: no usable CUDA), for tests on any machine."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)


def test_visible_gpus_follow_the_stub_then_cuda_visible_devices(monkeypatch):
    fake_cuda(monkeypatch, 1)
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "0, 1,2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert visible_gpus() == ["0", "1", "2"]
    monkeypatch.delenv(VISIBLE_GPUS_ENV)
    assert visible_gpus() == ["5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_visible_gpus_are_those_cuda_counts(monkeypatch):
    """CUDA_VISIBLE_DEVICES names GPUs; CUDA says which of them exist. Set, with no usable CUDA, it
    names none (a check that read only the variable said "on GPU 0" and every run went to the CPU)."""
    monkeypatch.delenv(VISIBLE_GPUS_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    fake_cuda(monkeypatch, 0)
    assert visible_gpus() == []
    fake_cuda(monkeypatch, 2)  # "3,5,7" on a machine where CUDA finds only two of them
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    assert visible_gpus() == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]


@pytest.mark.parametrize("value, gpus", [
    ("-1", []),                      # the usual way to hide every GPU
    ("0,-1,1", ["0"]),               # an invalid entry ends the list
    ("0,x,1", ["0"]),
    ("0,,1", ["0"]),
    ("0,0", []),                     # a repeated GPU: CUDA shows none
    ("1,0,1", []),
    (" 1, 2", ["1", "2"]),
    ("1gpu,2", ["1", "2"]),          # strtoul: the number at the start
    ("", []),
    ("GPU-aa,GPU-bb", ["GPU-aa", "GPU-bb"]),
    ("GPU-aa,3,GPU-bb", ["GPU-aa"]),
    ("GPU-aa,GPU-aa", []),
])
def test_cuda_visible_devices_is_read_by_cudas_rule(monkeypatch, value, gpus):
    import torch

    assert cuda_visible_devices(value) == gpus
    monkeypatch.setenv(VISIBLE_GPUS_ENV, value)
    assert visible_gpus() == gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)  # PyTorch's own reading, where it has one
    parse = getattr(torch.cuda, "_parse_visible_devices", None)
    if parse is not None and not torch.version.hip:
        assert [str(gpu) for gpu in parse()] == gpus


def test_a_run_given_a_gpu_it_cannot_use_stops_in_one_line(monkeypatch):
    from distillscale.training.distributed import resolve_device

    fake_cuda(monkeypatch, 0)
    monkeypatch.setenv("DISTILLSCALE_DEVICE", "cuda")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(UserError, match=r"this run was given GPU 0 \(CUDA_VISIBLE_DEVICES\) with "
                                        r"DISTILLSCALE_DEVICE=cuda, but CUDA cannot use it") as caught:
        resolve_device("auto")
    assert "\n" not in str(caught.value)


def test_demo_scale_gpu_is_refused_when_cuda_visible_devices_names_a_gpu_cuda_cannot_use(cli, tmp_path,
                                                                                          monkeypatch):
    from distillscale.report import demo
    from distillscale.sweeps import runner

    def never(*args, **kwargs):
        raise AssertionError("the GPU demo started without a usable GPU")

    monkeypatch.setattr(runner, "run_sweep", never)
    monkeypatch.setattr(demo, "_split_tokens", lambda spec: {"teachers": 30_000_000, "students": 25_000_000})
    monkeypatch.delenv(VISIBLE_GPUS_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    fake_cuda(monkeypatch, 0)
    code, _, err = cli("demo", "--scale", "gpu", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no GPU is visible here" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--gpus", "0,9"], "--gpus: GPU 9 is not visible to this process (visible: 0,1)"),
    (["--gpus", "zero"], "--gpus: GPU zero is not visible"),
    (["--gpus", "0", "--runs-per-gpu", "1", "--workers", "2"], "--workers 2 exceeds 1 GPU x --runs-per-gpu 1"),
    (["--executor", "slurm", "--gpus", "0"], "--gpus places runs of the local executor"),
    (["--gpus", "none", "--runs-per-gpu", "2"], "--runs-per-gpu needs GPUs, but none were chosen"),
])
def test_bad_gpu_flags_are_one_line(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "0,1")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(m="[1]"))
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path / "out", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


# One layer of width 32 (16,512 non-embedding parameters); M = 0.25 is 16 steps of 256 tokens.
SPEC = """
name = "placed"
[data]
vocab_size = 320
max_bytes = "200k"
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
eval_tokens = "1k"
eval_every = 0
save_every = 1000
device = "cpu"
[teachers]
n_layers = [1]
tokens_per_param = {m}
"""


@pytest.mark.slow
def test_a_sweep_on_two_stubbed_gpus_launches_each_run_on_its_gpu(cli, tmp_path, monkeypatch):
    """8 runs, --gpus 0,1 of a stubbed list of four: each run's process saw the CUDA_VISIBLE_DEVICES
    the placement gave it (result.json records it), the store and `sweep status` agree, and both GPUs ran."""
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "0,1,2,3")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(m="[0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12]"))
    out = tmp_path / "out"
    code, stdout, _ = cli("sweep", "run", spec, "--out", out, "--gpus", "0,1", "--json")
    assert code == 0 and json.loads(stdout)["completed"] == 8
    with RunStore(out) as store:
        assigned = store.devices()
    seen = {path.parent.name: json.loads(path.read_text())["cuda_visible_devices"]
            for path in (out / "runs").glob("*/result.json")}
    assert len(seen) == 8 and seen == assigned
    assert set(seen.values()) == {"0", "1"}
    code, stdout, _ = cli("sweep", "status", out, "--json")
    assert {run["run_id"]: run["device"] for run in json.loads(stdout)["runs"]} == {
        run_id: f"GPU {gpu}" for run_id, gpu in assigned.items()}


@pytest.mark.parametrize("settings, args, message", [
    ("bf16 = true\ncompile = true\n", [], "the spec asks for bf16 = true and compile = true, settings made for "
                                          "GPUs, and no GPU is visible here"),
    ("bf16 = true\n", [], "or pass --gpus none to run it on the CPU anyway"),
    ('device = "cuda"\n', ["--gpus", "none"], "1 of the spec's 1 runs ask for device = cuda, and none were chosen"),
])
def test_a_spec_asking_for_gpus_is_refused_up_front_without_one(cli, tmp_path, monkeypatch, settings, args,
                                                                 message):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(m="[1]").replace('device = "cpu"\n', settings))
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path / "out", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_gpus_none_lets_bf16_run_on_the_cpu_on_purpose():
    from distillscale.sweeps.placement import Placement
    from distillscale.sweeps.runner import check_gpu_settings, tomllib
    from distillscale.sweeps.spec import resolve_sweep_spec

    table = tomllib.loads(SPEC.format(m="[1]").replace('device = "cpu"\n', "bf16 = true\n"))
    spec = resolve_sweep_spec(table, source="spec.toml")
    cpu = Placement(slots=(None,), gpus=())
    check_gpu_settings(spec, cpu, gpus="none")
    with pytest.raises(ParameterError, match="bf16 = true"):
        check_gpu_settings(spec, cpu)
    check_gpu_settings(spec, Placement(slots=("0",), gpus=("0",)))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine where CUDA is not usable")
def test_a_sweep_run_placed_on_a_gpu_cuda_cannot_use_fails_instead_of_training_on_the_cpu(cli, tmp_path,
                                                                                       monkeypatch):
    """The runner believes GPU 0 exists (stubbed); the run, in its own process, finds no usable CUDA:
    it stops with one line (it used to train on the CPU without a word)."""
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "0")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(m="[0.05]").replace('device = "cpu"', 'device = "auto"'))
    out = tmp_path / "out"
    code, stdout, _ = cli("sweep", "run", spec, "--out", out, "--json")
    assert code == 1 and json.loads(stdout)["failed"] == 1
    assert not list((out / "runs").glob("*/result.json"))
    (log,) = (out / "logs").glob("*.log")
    assert "this run was given GPU 0 (CUDA_VISIBLE_DEVICES) with DISTILLSCALE_DEVICE=cuda, but CUDA cannot use it" \
        in log.read_text()
