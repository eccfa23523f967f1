"""The GPU ladder: `demo --scale gpu` refused in one line without a GPU, its spec (package data and
examples/gpu_ladder.toml) valid and the same design (v2: the held-out size at 3-4 tokens per
parameter with 2 seeds), learning rates set per width by the rule, and a token window that the corpus
holds without repetition."""

from __future__ import annotations


import pytest

from distillscale.laws.hyperparameters import HYPERPARAMETER_PRESETS
from distillscale.report import demo
from distillscale.report.demo import builtin_spec, builtin_sweep
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from distillscale.sweeps.spec import load_sweep_spec

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gpu_ladder.toml"


def test_scale_gpu_is_refused_in_one_line_without_a_gpu(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")
    code, _, err = cli("demo", "--scale", "gpu", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no GPU is visible here" in err and "leave out --scale for the micro demo" in err
    assert not (tmp_path / "out").exists()
    code, _, err = cli("demo", "--scale", "tpu", "--out", tmp_path / "out")
    assert code == 2 and "unknown --scale 'tpu'" in err


def test_the_example_spec_is_the_demo_design():
    example, packaged = load_sweep_spec(EXAMPLE), load_sweep_spec(builtin_spec(scale="gpu"))
    assert [run.run_id for run in example.runs] == [run.run_id for run in packaged.runs]
    teachers = [run for run in example.runs if run.kind == "teacher"]
    params = sorted({run.non_embedding_params for run in teachers})
    assert params[0] < 5e6 and params[-1] > 15e6                        # 1M to tens of M
    assert len({run.tokens_per_param for run in teachers}) >= 6          # budgets spread over M
    assert any(run.parent_id for run in teachers)                        # WSD forks
    students = [run for run in example.runs if run.kind == "student"]
    assert len({run.teacher_id for run in students}) == len(params)      # each teacher size teaches
    assert any(run.kind == "baseline" for run in example.runs)
    strongest = max(teachers, key=lambda run: run.non_embedding_params)
    assert len([run for run in students if run.teacher_id != strongest.run_id]) > 9  # held-out check


def test_design_v2_holds_out_a_size_trained_at_3_to_4_tokens_per_parameter_with_two_seeds():
    spec = load_sweep_spec(EXAMPLE)
    teachers = [run for run in spec.runs if run.kind == "teacher"]
    top = max(run.non_embedding_params for run in teachers)
    held_out = [run for run in teachers if run.non_embedding_params == top]
    assert sorted(run.tokens_per_param for run in held_out) == [3, 3, 4, 4]   # never 1-2 (issue 33)
    assert sorted({run.settings["seed"] for run in held_out}) == [0, 1]      # 2 seeds, 2 parents
    assert sum(run.parent_id is None for run in held_out) == 2
    # its budgets fit the ~90M tokens of a training half of builtin:python-env; the next depth's don't
    assert max(run.tokens for run in held_out) <= 80e6 < 4 * 25.7e6
    for size in {run.n_layers for run in teachers} - {held_out[0].n_layers}:  # low M at every fitted size
        assert min(run.tokens_per_param for run in teachers if run.n_layers == size) <= 4
    students = {run.teacher_id for run in spec.runs if run.kind == "student"}
    sizes = {run.n_layers for run in spec.runs if run.run_id in students}
    assert sizes == {run.n_layers for run in teachers}                         # from every teacher size


def test_learning_rates_come_from_the_ladders_own_law():
    """Each size's rate is the gpu-ladder-h200 law's (fitted on the ladder's own lr grid), one per size
    under WSD, read inside twice the N and D it was fitted on (no extrapolation note)."""
    spec = load_sweep_spec(EXAMPLE)
    law = HYPERPARAMETER_PRESETS["gpu-ladder-h200"]
    assert spec.sections["model"]["lr_law"] == "gpu-ladder-h200" and not spec.notes
    for run in spec.runs:
        rec = law.recommend(run.non_embedding_params, run.tokens)
        assert rec.lr_interval[0] < run.settings["lr"] < rec.lr_interval[1]
        assert rec.extrapolation <= 2
    teachers = [run for run in spec.runs if run.kind == "teacher"]
    for size in {run.n_layers for run in teachers}:
        assert len({run.settings["lr"] for run in teachers if run.n_layers == size}) == 1
    rates = {run.n_layers: run.settings["lr"] for run in teachers}
    assert 0.003 < min(rates.values()) < max(rates.values()) < 0.005   # muP: near-flat in width (docs/gpu_ladder.md)


def test_the_demo_caps_the_token_window_at_the_corpus_and_scales_it_with_the_gpus(monkeypatch):
    monkeypatch.setattr(demo, "_split_tokens", lambda spec: {"teachers": 30_000_000, "students": 25_000_000})
    one = builtin_sweep(scale="gpu", gpus=1)
    assert max(run.tokens for run in one.runs if run.kind == "teacher") <= 30_000_000
    # depth 6 (10.6M parameters) needs 42.5M tokens at its second budget, M = 4: the top is depth 5
    assert max(run.n_layers for run in one.runs if run.kind == "teacher") == 5
    assert {run.tokens_per_param for run in one.runs if run.n_layers == 5 and run.kind == "teacher"} >= {3, 4}
    assert max(run.tokens for run in one.runs if run.kind != "teacher") <= 25_000_000
    monkeypatch.setattr(demo, "_split_tokens", lambda spec: {"teachers": 10**12, "students": 10**12})
    single, double = builtin_sweep(scale="gpu", gpus=1), builtin_sweep(scale="gpu", gpus=2)
    assert single.sections["teachers"]["max_tokens"] == 80e6
    assert double.sections["teachers"]["max_tokens"] == 160e6
    assert max(run.tokens for run in double.runs) > max(run.tokens for run in single.runs)
