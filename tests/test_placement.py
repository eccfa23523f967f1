"""Device placement of a local sweep: which GPU each worker slot gets (a pure function), the flags'
errors, and a sweep on a stubbed GPU list whose runs each see the CUDA_VISIBLE_DEVICES they were given."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from distillscale.errors import ParameterError
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV, place_runs, visible_gpus
from distillscale.sweeps.store import RunStore

pytestmark = pytest.mark.usefixtures("cache_dir")


def test_one_run_per_visible_gpu_by_default():
    placement = place_runs(["0", "1", "2", "3"])
    assert placement.slots == ("0", "1", "2", "3")
    assert placement.env(2) == {"CUDA_VISIBLE_DEVICES": "2"}


def test_runs_per_gpu_share_each_gpu():
    placement = place_runs(["0", "1"], runs_per_gpu=3)
    assert Counter(placement.slots) == {"0": 3, "1": 3}
    assert placement.workers == 6


def test_an_explicit_list_picks_those_gpus_in_its_order():
    placement = place_runs(["0", "1", "2", "3"], gpus="3,1")
    assert placement.slots == ("3", "1") and placement.gpus == ("3", "1")


def test_none_runs_on_the_cpu_with_the_cpu_workers():
    placement = place_runs(["0", "1"], gpus="none", cpu_workers=5)
    assert placement.slots == (None,) * 5 and placement.env(0) == {}
    assert place_runs([], workers=3).slots == (None, None, None)  # no GPU visible


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


def test_visible_gpus_follow_the_stub_then_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "0, 1,2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert visible_gpus() == ["0", "1", "2"]
    monkeypatch.delenv(VISIBLE_GPUS_ENV)
    assert visible_gpus() == ["5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


@pytest.mark.parametrize("args, message", [
    (["--gpus", "0,9"], "--gpus: GPU 9 is not visible to this process (visible: 0,1)"),
    (["--gpus", "zero"], "--gpus: GPU zero is not visible"),
    (["--gpus", "0", "--runs-per-gpu", "1", "--workers", "2"], "--workers 2 exceeds 1 GPU x --runs-per-gpu 1"),
    (["--executor", "slurm", "--gpus", "0"], "--gpus places runs of the local executor"),
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
