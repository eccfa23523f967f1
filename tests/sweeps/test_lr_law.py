"""[model] lr_law (issue 53 item 5): a ladder whose sizes each take their peak lr from a hyperparameter
law, read at the size's N and longest budget D and the ladder's batch, instead of one lr or the width
rule; the demo's --lr-law; refusals in one line."""

from __future__ import annotations

import json
import math

import pytest

from distillscale.laws.hyperparameters import HyperparameterLaw, PowerLaw, load_hyperparameter_law
from distillscale.laws.hyperparameters.rates import parse_lr_unit
from distillscale.report.demo import builtin_sweep
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from distillscale.sweeps.spec import load_sweep_spec

SPEC = """
name = "lawful"
[data]
vocab_size = 320
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
lr = 0.003
schedule = "wsd"
eval_tokens = "2k"
eval_every = 0
{model}
[teachers]
n_layers = [1, 2]
tokens_per_param = [2, 8]
[students]
n_layers = [1]
tokens_per_param = [4]
[distill]
teach_from = "longest"
{extra}
"""


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


def spec_file(tmp_path, model="", extra=""):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(model=model, extra=extra), encoding="utf-8")
    return path


def fixed_batch_law(batch_tokens=256.0) -> HyperparameterLaw:
    """lr* = 0.05 N^-0.25 D^0.1 in muP base units (the `--lr` of a sweep's runs), fitted (as if) at one
    batch of `batch_tokens`."""
    return HyperparameterLaw(name="toy", source="a test", lr_unit=parse_lr_unit("mup-base"), lr=PowerLaw(coefficient=0.05, exponents=(-0.25, 0.1),
                                                                      residual_sd=0.2),
                             fixed_batch_tokens=batch_tokens)


def test_each_size_takes_the_laws_rate_at_its_n_and_budgets_geometric_mean(tmp_path):
    law = fixed_batch_law()
    law.save(tmp_path / "hp.json")
    spec = load_sweep_spec(spec_file(tmp_path, model='lr_law = "hp.json"'))  # relative to the spec's directory
    assert spec.sections["model"]["lr_law"] == str((tmp_path / "hp.json").absolute())
    by_kind_depth: dict[tuple, set] = {}
    for run in spec.runs:
        by_kind_depth.setdefault((run.kind, run.n_layers), set()).add(run.settings["lr"])
    for (kind, depth), lrs in by_kind_depth.items():
        assert len(lrs) == 1, (kind, depth, lrs)  # a size's forks share its stable phase: one rate
        runs = [run for run in spec.runs if run.kind == kind and run.n_layers == depth]
        middle = math.exp(sum(math.log(run.tokens) for run in runs) / len(runs))  # WSD: one stable phase
        expected = law.recommend(runs[0].non_embedding_params, middle).lr
        assert lrs.pop() == pytest.approx(expected, rel=1e-3)
    # each student takes its baseline's rate; the teachers' rates differ by size
    students = [run for run in spec.runs if run.kind == "student"]
    baselines = {run.tokens: run.settings["lr"] for run in spec.runs if run.kind == "baseline"}
    assert all(run.settings["lr"] == baselines[run.tokens] for run in students)
    teacher_lr = {run.n_layers: run.settings["lr"] for run in spec.runs if run.kind == "teacher"}
    assert teacher_lr[1] != teacher_lr[2]
    # the ids change with the rate, and the spec written back reads to the same runs
    (tmp_path / "plain").mkdir()
    plain = load_sweep_spec(spec_file(tmp_path / "plain"))
    assert {run.run_id for run in plain.runs}.isdisjoint(run.run_id for run in spec.runs)
    written = tmp_path / "written.toml"
    written.write_text(spec.to_toml(), encoding="utf-8")
    assert [run.run_id for run in load_sweep_spec(written).runs] == [run.run_id for run in spec.runs]


def test_a_preset_reads_by_name_and_a_b_star_law_gives_the_rate_at_the_ladders_batch(tmp_path):
    spec = load_sweep_spec(spec_file(tmp_path, model='lr_law = "steplaw2025"'))
    assert spec.sections["model"]["lr_law"] == "steplaw2025"
    law = load_hyperparameter_law("steplaw2025")
    teachers = [run for run in spec.runs if run.kind == "teacher" and run.n_layers == 2]
    middle = math.exp(sum(math.log(run.tokens) for run in teachers) / len(teachers))
    peak = law.recommend(teachers[0].non_embedding_params, middle, batch_tokens=8 * 32).lr
    # Step Law's rate is the hidden matrices' peak: muP trains them at --lr x 256 / d_model (d_model 64 here)
    expected = peak * 64 / 256
    assert [run.settings["lr"] for run in teachers] == pytest.approx([expected] * len(teachers), rel=1e-3)


def test_under_cosine_each_run_takes_the_rate_at_its_own_budget(tmp_path):
    law = fixed_batch_law()
    law.save(tmp_path / "hp.json")
    path = spec_file(tmp_path, model='lr_law = "hp.json"')
    path.write_text(path.read_text().replace('schedule = "wsd"', 'schedule = "cosine"'), encoding="utf-8")
    teachers = [run for run in load_sweep_spec(path).runs if run.kind == "teacher"]
    assert len(teachers) == 4 and len({run.settings["lr"] for run in teachers}) == 4
    for run in teachers:
        assert run.settings["lr"] == pytest.approx(law.recommend(run.non_embedding_params, run.tokens).lr, rel=1e-3)


def test_without_lr_law_the_spec_and_ids_are_as_before(tmp_path):
    plain = load_sweep_spec(spec_file(tmp_path))
    assert "lr_law" not in plain.sections["model"] and {run.settings["lr"] for run in plain.runs} == {0.003}


@pytest.mark.parametrize("model, extra, message", [
    ('lr_law = "nope.json"', "", "unknown hyperparameter law"),
    ('lr_law = "steplaw2025"\nlr_width_exponent = -1.0\nlr_reference_width = 32', "",
     "[model] lr_law and lr_width_exponent both set each size's lr: give one"),
    ('lr_law = "steplaw2025"', "[tune]\nlr = [0.001, 0.01]\nladder = \"students\"",
     "[model] lr_law sets each size's lr and [tune] lr grids it: give one"),
    ('lr_law = ""', "", "invalid 'model.lr_law'"),
    ('lr_law = "deepseek2024"', "", "[teachers]: lr_law deepseek2024: law deepseek2024 has no measured batch "
                                   "exponent of the optimal rate"),
])
def test_bad_lr_laws_are_refused_in_one_line(cli, tmp_path, model, extra, message):
    code, out, err = cli("sweep", "plan", spec_file(tmp_path, model=model, extra=extra), "--gpus", "none")
    assert code == 2 and out == "", err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_law_fitted_at_one_batch_is_refused_at_another(cli, tmp_path):
    fixed_batch_law(batch_tokens=1024.0).save(tmp_path / "hp.json")
    code, out, err = cli("sweep", "plan", spec_file(tmp_path, model='lr_law = "hp.json"'), "--gpus", "none")
    assert code == 2 and out == ""
    assert ("[teachers]: lr_law" in err and "was fitted at a batch of 1,024 tokens and this ladder's is 256"
            in err and len(err.strip().splitlines()) == 1)


def test_the_demo_takes_a_law_in_place_of_its_one_rate(tmp_path):
    plain = builtin_sweep(quick=True)
    lawful = builtin_sweep(quick=True, lr_law="steplaw2025")
    assert lawful.name == plain.name + "-lr-law" and lawful.sections["model"]["lr_law"] == "steplaw2025"
    assert len(lawful.runs) == len(plain.runs)
    assert len({run.settings["lr"] for run in lawful.runs if run.kind == "teacher"}) > 1
    assert len(lawful.notes) == 1 and "far extrapolation" in lawful.notes[0]  # the demo prints it as a warning


def test_the_demo_refuses_a_missing_law_in_one_line(cli, tmp_path):
    code, out, err = cli("demo", "--quick", "--lr-law", tmp_path / "missing.json", "--out", tmp_path / "demo")
    assert code == 2 and "unknown hyperparameter law" in err and len(err.strip().splitlines()) == 1
    assert out == "" and not (tmp_path / "demo").exists()


def test_a_law_read_far_outside_its_data_says_so_before_the_sweep_runs(cli, tmp_path):
    """steplaw2025 (fitted on 60M-1.07B) read at 16K-65K parameters: `sweep plan` says how far, and the
    rates it gives; its JSON carries each run's rate. A law read inside its data says nothing."""
    path = spec_file(tmp_path, model='lr_law = "steplaw2025"')
    code, out, err = cli("sweep", "plan", path, "--gpus", "none", "--json")
    assert code == 0, err
    plan = json.loads(out)
    note = plan["assumptions"][0]
    assert note.startswith("lr_law steplaw2025 is read up to ") and "far extrapolation" in note
    spec = load_sweep_spec(path)
    assert spec.notes == (note,)
    assert {run["run_id"]: run["lr"] for run in plan["runs"]} == {run.run_id: run.settings["lr"] for run in spec.runs}
    factor = float(note.split("up to ")[1].split("x")[0].replace(",", ""))
    smallest = min(run.non_embedding_params for run in spec.runs)
    assert factor >= 6.0e7 / smallest  # N's factor at least (D's, below 2e9 tokens, may be larger)
    law = fixed_batch_law()
    law = law.model_copy(update={"data_range": {"params": (1e3, 1e6), "tokens": (1e4, 1e8)}})
    law.save(tmp_path / "hp.json")
    assert load_sweep_spec(spec_file(tmp_path, model='lr_law = "hp.json"')).notes == ()
    inside, far = law.recommend(1e4, 1e6), law.recommend(1e4, 1e10)
    assert inside.extrapolation == 1.0 and not any("extrapolation" in n for n in inside.notes)
    assert far.extrapolation == pytest.approx(100.0) and "D (10B tokens) is far above the largest (100M)" in far.notes[0]
    assert "100x beyond it: the rate (and batch) is an extrapolation" in far.notes[0]   # the loss laws' wording
