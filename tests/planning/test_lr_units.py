"""One unit for a hyperparameter law's learning rate (issue 63, the blocker): the law record says what
its `lr` is (the hidden matrices' peak, or muP's base `--lr` at a base width), and one function
(`laws.hyperparameters.rates.train_lr`) turns it into the `--lr` of a given model. Every path a law
comes by (a preset of either unit, a fit, a file) and every consumer (`plan`'s recipes, a sweep's
`lr_law`, `demo --lr-law`, `train`'s warning, the planner page) must train the model's hidden
matrices at the same rate: the law's, converted once."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import distillscale as ds
from distillscale.errors import UserError
from distillscale.laws.hyperparameters import HyperparameterLaw, PowerLaw, fit_hyperparameters, load_hyperparameter_law
from distillscale.laws.hyperparameters.rates import PEAK, LrUnit, parse_lr_unit, train_lr
from distillscale.model.config import ModelConfig
from distillscale.planning.recipes import hyperparameter_warning, run_recipe
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from distillscale.sweeps.spec import load_sweep_spec

# The model every consumer trains: the family at 2 layers x 64 (muP multiplier 256 / 64 = 4)
N_LAYERS, ASPECT_RATIO, HEAD_DIM, SEQ_LEN, BATCH_SIZE = 2, 32, 16, 32, 8
BATCH_TOKENS = BATCH_SIZE * SEQ_LEN
MODEL = ModelConfig(n_layers=N_LAYERS, aspect_ratio=ASPECT_RATIO, head_dim=HEAD_DIM, vocab_size=320,
                    max_seq_len=SEQ_LEN)
N = MODEL.non_embedding_params
D = 4 * N


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


def _grid(unit_text: str) -> dict:
    """An lr grid at one batch (the ladder's) around lr* = 0.01 N^-0.1 (in whatever unit the column
    says), three sizes around this test's model, as `sweep export` writes it (an lr_unit column)."""
    rows = {"params": [], "tokens": [], "lr": [], "batch_tokens": [], "loss": [], "lr_unit": []}
    for params in (N / 2, N, 2 * N):
        best = 0.01 * params ** -0.1
        for step in (-2, -1, 0, 1, 2):
            lr = best * 2.0 ** step
            rows["params"].append(params), rows["tokens"].append(4 * params), rows["lr"].append(lr)
            rows["batch_tokens"].append(BATCH_TOKENS), rows["lr_unit"].append(unit_text)
            rows["loss"].append(3.0 + 0.02 * math.log(lr / best) ** 2)
    return rows


def _laws(tmp_path) -> dict[str, tuple[HyperparameterLaw, str]]:
    """name -> (the law, how a sweep spec names it): two presets (peak and muP-base units), a fit of
    a muP sweep's export, and a file in peak units."""
    fitted = fit_hyperparameters(_grid("mup-base:256"), bootstrap=0, backtest=False, name="fitted").law
    fitted.save(tmp_path / "fitted.json")
    peak_file = HyperparameterLaw(name="peak-file", source="a test", lr_unit=PEAK,
                                  lr=PowerLaw(coefficient=0.01, exponents=(-0.1, 0.0), residual_sd=0.1),
                                  fixed_batch_tokens=float(BATCH_TOKENS),
                                  data_range={"params": (N / 2, 2 * N), "tokens": (2 * N, 8 * N)})
    peak_file.save(tmp_path / "peak.json")
    return {"steplaw2025": (load_hyperparameter_law("steplaw2025"), "steplaw2025"),
            "gpu-ladder-h200": (load_hyperparameter_law("gpu-ladder-h200"), "gpu-ladder-h200"),
            "fitted": (load_hyperparameter_law(str(tmp_path / "fitted.json")), str(tmp_path / "fitted.json")),
            "peak-file": (load_hyperparameter_law(str(tmp_path / "peak.json")), str(tmp_path / "peak.json"))}


def _law_batch(law: HyperparameterLaw) -> int:
    """The ladder's batch a law can be read at: its own where it was fitted at one."""
    return int(law.fixed_batch_tokens) if law.fixed_batch_tokens is not None else BATCH_TOKENS


def _hidden(law: HyperparameterLaw, params: float, tokens: float, batch: float, d_model: float) -> float:
    """What the law says the hidden matrices of a `d_model`-wide model train at: its rate at the
    batch (where it has a B*), in its own unit, converted to the hidden matrices' peak."""
    rec = law.recommend(params, tokens, batch_tokens=batch if law.batch is not None else None)
    return law.lr_unit.hidden_lr(rec.lr, d_model)


def test_each_law_declares_its_unit():
    assert load_hyperparameter_law("steplaw2025").lr_unit == PEAK       # Step Law: the standard parametrisation
    assert load_hyperparameter_law("deepseek2024").lr_unit == PEAK
    assert load_hyperparameter_law("gpu-ladder-h200").lr_unit == LrUnit(kind="mup-base", base_width=256)
    assert parse_lr_unit("mup-base:128") == LrUnit(kind="mup-base", base_width=128)
    with pytest.raises(UserError, match="lr unit 'base' is not one distillscale knows"):
        parse_lr_unit("base")


def test_a_law_file_that_does_not_say_its_unit_is_refused_in_one_line(cli, tmp_path):
    data = load_hyperparameter_law("steplaw2025").model_dump(mode="json")
    del data["lr_unit"]
    (tmp_path / "old.json").write_text(json.dumps({**data, "schema_version": 1}))
    code, out, err = cli("predict", "hyperparameters", "--law", tmp_path / "old.json", "--params", "1B", "--tokens", "20B")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "does not say what its lr is" in err and '"lr_unit": {"kind": "mup-base", "base_width": 256}' in err


def test_the_lr_plan_advises_trains_the_hidden_matrices_at_the_laws_rate(tmp_path):
    """plan --student-model: the recipe's peak rate is the law's converted to the hidden matrices',
    and its --lr, given to the model, trains them there (the optimizer's matrix group)."""
    from distillscale.model.transformer import Transformer

    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "model_config.json").write_text(json.dumps(MODEL.model_dump()))
    for name, (law, _) in _laws(tmp_path).items():
        plan = ds.plan("busbridge2025", compute=1e15, student_model=str(tmp_path / "student"), scenario="best-case",
                       hyperparameter_law=law, batch_tokens=_law_batch(law), n_ctx=SEQ_LEN)
        r = plan.recipes["best-case"]
        assert r.batch_tokens == _law_batch(law) and r.d_model == 64
        assert r.lr == pytest.approx(_hidden(law, r.params, r.tokens, r.batch_tokens, 64), rel=1e-9), name
        groups = Transformer(MODEL).param_groups(r.train_lr, 0.0)
        matrices = next(group for group in groups if group["name"] == "matrices")
        assert matrices["lr"] == pytest.approx(r.lr, rel=1e-12), name
        # the 4x of the issue: a muP-base law's --lr is its own rate at any width; a peak law's is rate x d/256
        own = law.recommend(r.params, r.tokens, batch_tokens=r.batch_tokens if law.batch is not None else None).lr
        assert r.train_lr == pytest.approx(own if law.lr_unit.kind == "mup-base" else own * 64 / 256, rel=1e-9)


def test_a_sweeps_lr_law_run_trains_at_the_rate_plan_advises(tmp_path):
    """[model] lr_law (cosine: each run at its own budget): each run's --lr is the one `plan`'s recipe
    gives for that model, N, D and batch; so its hidden matrices train at the law's rate."""
    for name, (law, spec_name) in _laws(tmp_path).items():
        batch = _law_batch(law)
        spec = tmp_path / f"{name}.toml"
        spec.write_text(f"""
name = "units"
[data]
vocab_size = 320
seq_len = {SEQ_LEN}
[model]
aspect_ratio = {ASPECT_RATIO}
head_dim = {HEAD_DIM}
batch_size = {batch // SEQ_LEN}
schedule = "cosine"
lr_law = "{spec_name}"
eval_every = 0
[teachers]
n_layers = [{N_LAYERS}]
tokens_per_param = [2, 8]
""", encoding="utf-8")
        runs = [run for run in load_sweep_spec(spec).runs if run.kind == "teacher"]
        assert len(runs) == 2
        for run in runs:
            assert run.non_embedding_params == N
            recipe = run_recipe(law, "run", N, run.tokens, SEQ_LEN, ASPECT_RATIO, batch_tokens=batch, model=MODEL)
            assert run.settings["lr"] == pytest.approx(recipe.train_lr, rel=1e-3), name
            hidden = run.settings["lr"] * MODEL.mup_multiplier
            assert hidden == pytest.approx(_hidden(law, N, run.tokens, batch, 64), rel=1e-3), name


def test_the_demo_with_a_law_trains_each_size_at_the_rate_plan_advises(tmp_path):
    """`demo --lr-law` (the micro sweep, WSD: each size at its budgets' geometric mean) gives each
    teacher the --lr plan's recipe gives its model."""
    from distillscale.report.demo import builtin_sweep

    laws = _laws(tmp_path)
    for name in ("steplaw2025", "fitted"):
        law, spec_name = laws[name]
        if name == "fitted":  # a fixed-batch law is read at the demo's own batch: refit at it
            sweep = builtin_sweep(quick=True)
            batch = sweep.runs[0].settings["batch_size"] * sweep.sections["data"]["seq_len"]
            grid = _grid("mup-base:256")
            grid["batch_tokens"] = [batch] * len(grid["lr"])
            fit_hyperparameters(grid, bootstrap=0, backtest=False, name="fitted").law.save(tmp_path / "demo.json")
            law, spec_name = load_hyperparameter_law(str(tmp_path / "demo.json")), str(tmp_path / "demo.json")
        sweep = builtin_sweep(quick=True, lr_law=spec_name)
        seq_len = sweep.sections["data"]["seq_len"]
        for depth in {run.n_layers for run in sweep.runs if run.kind == "teacher"}:
            runs = [run for run in sweep.runs if run.kind == "teacher" and run.n_layers == depth]
            settings = runs[0].settings
            model = ModelConfig(n_layers=depth, aspect_ratio=settings["aspect_ratio"], head_dim=settings["head_dim"],
                                vocab_size=512, max_seq_len=seq_len)
            middle = math.exp(np.mean([math.log(run.tokens) for run in runs]))
            recipe = run_recipe(law, "run", runs[0].non_embedding_params, middle, seq_len, settings["aspect_ratio"],
                                batch_tokens=settings["batch_size"] * seq_len, model=model)
            lrs = {run.settings["lr"] for run in runs}
            assert len(lrs) == 1 and lrs.pop() == pytest.approx(recipe.train_lr, rel=1e-3), (name, depth)


def test_trains_warning_compares_the_hidden_matrices_rate_in_the_laws_unit(tmp_path):
    """`train`'s warning: the --lr plan advises is quiet; the same number read in the other unit
    (4x off at d_model 64) is named, for a law of either unit."""
    laws = _laws(tmp_path)
    for name in ("fitted", "peak-file"):
        law = laws[name][0]
        recipe = run_recipe(law, "run", N, D, SEQ_LEN, ASPECT_RATIO, batch_tokens=BATCH_TOKENS, model=MODEL)
        assert hyperparameter_warning(N, D, recipe.train_lr, BATCH_TOKENS, MODEL.mup_multiplier, law,
                                      d_model=64) is None, name
        own = law.recommend(N, D).lr   # the law's number given straight as --lr: right only for a muP-base law
        warned = hyperparameter_warning(N, D, own, BATCH_TOKENS, MODEL.mup_multiplier, law, d_model=64)
        assert (warned is None) == (law.lr_unit.kind == "mup-base"), name
        if warned is not None:
            assert f"--lr {recipe.train_lr:.3g})" in warned


@pytest.mark.slow
def test_train_records_its_lr_and_the_hidden_matrices_rate(cli, tmp_path, cache_dir, one_thread):
    code, out, err = cli("train", "--out", tmp_path / "run", "--tokens", "2k", "--n-layers", "2", "--aspect-ratio",
                         "32", "--head-dim", "16", "--vocab-size", "320", "--max-bytes", "300k", "--seq-len", "32",
                         "--batch-size", "8", "--eval-tokens", "2k", "--eval-every", "0", "--device", "cpu",
                         "--lr", "0.004")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["lr"] == 0.004 and result["hidden_lr"] == pytest.approx(0.004 * 256 / 64)
    assert result["lr_unit"] == "mup-base:256"


def test_the_planner_page_takes_a_fitted_law_and_advises_the_rate_plan_does(tmp_path):
    from distillscale.serve.api import Planner, PlanQuery

    laws = _laws(tmp_path)
    path = laws["fitted"][1]
    planner = Planner(hyperparameter_laws=[path])
    assert planner.laws_info()["hyperparameter_laws"]["default"] == path
    assert path in planner.laws_info()["hyperparameter_laws"]["presets"]
    query = PlanQuery(law="busbridge2025", compute="1e21", student="546M", scenario="best-case",
                      hyperparameter_law=path, batch_tokens="1M")
    page = planner.update(query)
    assert page["ok"], page
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case",
                   hyperparameter_law=path, batch_tokens=1e6)
    page_recipe, recipe = page["plan"]["recipes"]["best-case"], plan.recipes["best-case"]
    assert page_recipe["train_lr"] == pytest.approx(recipe.train_lr, rel=1e-12)
    assert recipe.lr == pytest.approx(_hidden(laws["fitted"][0], recipe.params, recipe.tokens,
                                              recipe.batch_tokens, recipe.d_model), rel=1e-9)
    unknown = planner.update(PlanQuery(law="busbridge2025", compute="1e21", hyperparameter_law="other.json"))
    assert not unknown["ok"] and "is not one the page offers" in json.dumps(unknown)


def test_a_fit_reads_the_unit_from_the_table_or_is_told_it(cli, tmp_path):
    grid = _grid("mup-base:256")
    assert fit_hyperparameters(grid, bootstrap=0, backtest=False).law.lr_unit.kind == "mup-base"
    plain = {key: value for key, value in grid.items() if key != "lr_unit"}
    assert fit_hyperparameters(plain, bootstrap=0, backtest=False).law.lr_unit == PEAK
    assert fit_hyperparameters(plain, bootstrap=0, backtest=False, lr_unit="mup-base:128").law.lr_unit.base_width == 128
    with pytest.raises(UserError, match="is not the table's lr_unit column"):
        fit_hyperparameters(grid, bootstrap=0, backtest=False, lr_unit="peak")
    mixed = {**grid, "lr_unit": ["peak"] + grid["lr_unit"][1:]}
    with pytest.raises(UserError, match="the lr_unit column mixes units"):
        fit_hyperparameters(mixed, bootstrap=0, backtest=False)
    # the CLI: an export's column is read; a plain CSV says what it assumed
    import csv

    with open(tmp_path / "grid.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(grid))
        writer.writerows(zip(*grid.values()))
    code, out, err = cli("fit", "hyperparameters", tmp_path / "grid.csv", "--bootstrap", "0", "--no-backtest",
                         "--out", tmp_path / "hp.json")
    assert code == 0, err
    assert "lr unit: muP base --lr at base width 256" in " ".join(out.split())
    assert json.loads((tmp_path / "hp.json").read_text())["lr_unit"] == {"kind": "mup-base", "base_width": 256}
