"""Every plan says how to run it (issue 53): each run it prints carries its peak learning rate,
batch (tokens and sequences), steps and warmup from a hyperparameter law, in the JSON and the text;
a batch the user fixes above B* gets Hoffer's regime adaptation; a bad law is one line."""

import json
import math

import pytest

import distillscale as ds
from distillscale.errors import ParameterError
from distillscale.laws.hyperparameters import HyperparameterLaw, PowerLaw
from distillscale.laws.hyperparameters.rates import PEAK
from distillscale.model.config import ModelConfig
from distillscale.rules import WARMUP_CAP, WARMUP_FRACTION

ASPECT_RATIO, N_CTX = 128.0, 4096  # busbridge2025's own setting, the plan's accounting by default


def _steplaw(params: float, tokens: float) -> tuple[float, float]:
    """Step Law's published optimum: lr* = 1.79 N^-0.713 D^0.307, B* = 0.58 D^0.571 tokens."""
    return 1.79 * params ** -0.713 * tokens ** 0.307, 0.58 * tokens ** 0.571


def _steplaw_run(params: float, tokens: float, n_ctx: int = N_CTX) -> float:
    """Step Law's rate at the batch a run takes: B* as whole sequences (its fitted batch exponent, 0.40)."""
    lr, batch = _steplaw(params, tokens)
    return lr * (max(1, round(batch / n_ctx)) * n_ctx / batch) ** 0.40


def test_each_run_of_a_plan_carries_its_lr_batch_steps_and_warmup_in_the_json(cli):
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--scenario", "teacher-pretraining", "--json")
    assert code == 0, err
    plan, recipes = json.loads(out), json.loads(out)["recipes"]
    # the student, the teacher the scenario pre-trains, and the model pretrained instead
    assert list(recipes) == ["teacher-pretraining", "teacher-pretraining teacher",
                             "teacher-pretraining (pretrain instead)"]
    runs = {"teacher-pretraining": (plan["student_params"], plan["student_tokens"]),
            "teacher-pretraining teacher": (plan["teacher_params"], plan["teacher_tokens"]),
            "teacher-pretraining (pretrain instead)": (plan["student_params"], plan["supervised_tokens"])}
    for name, (params, tokens) in runs.items():
        r = recipes[name]
        lr, batch = _steplaw(params, tokens)
        assert r["hyperparameter_law"] == "steplaw2025" and (r["params"], r["tokens"]) == (params, tokens)
        # the run takes B* as whole sequences, and its rate is the law's at that batch (exponent 0.40)
        assert r["n_ctx"] == N_CTX and r["batch_sequences"] == round(batch / N_CTX)
        assert r["batch_tokens"] == r["batch_sequences"] * N_CTX and r["optimal_batch_tokens"] == pytest.approx(batch)
        assert r["lr"] == pytest.approx(lr * (r["batch_tokens"] / batch) ** 0.40, rel=1e-9)
        assert r["lr_interval"][0] < r["lr"] < r["lr_interval"][1] and r["level"] == 0.9
        assert r["steps"] == math.ceil(tokens / (r["batch_sequences"] * N_CTX))
        assert r["warmup_steps"] == min(2000, math.ceil(0.1 * r["steps"]))
        # steplaw2025's rate is the hidden matrices' peak; muP trains them at --lr x 256 / d_model,
        # so --lr = lr x d_model / 256
        d_model = (params * ASPECT_RATIO / 12) ** (1 / 3)
        assert r["law_lr_unit"] == "peak" and r["d_model"] == pytest.approx(d_model)
        assert r["train_lr"] == pytest.approx(r["lr"] * d_model / 256)
        assert r["batch_adaptation"] is None


@pytest.mark.parametrize("options, names", [
    (dict(scenario="best-case"), ["best-case", "best-case (pretrain instead)"]),  # a sweep over sizes
    (dict(student_params=546e6, teacher=ds.ExistingTeacher(params=7.75e9, tokens=155e9), on_policy=ds.OnPolicy()),
     ["supervised", "off-policy", "on-policy λ=0.25", "on-policy λ=0.5", "on-policy λ=1"]),
])
def test_every_kind_of_plan_has_a_recipe_for_each_run(options, names):
    plan = ds.plan("busbridge2025", compute=1e21, **options)
    assert list(plan.recipes) == names == list(plan.to_dict()["recipes"])
    for name, (params, tokens) in plan.runs().items():
        assert plan.recipes[name].lr == pytest.approx(_steplaw_run(params, tokens), rel=1e-9)
    supervised = ds.plan_supervised("epoch2024", compute=1e21)
    assert list(supervised.recipes) == ["supervised"] and supervised.to_dict()["recipes"]["supervised"]["lr"] > 0


def test_the_text_shows_each_run_with_units(cli):
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--scenario", "teacher-pretraining", "--explain")
    assert code == 0, err
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining")
    r = plan.recipes["teacher-pretraining teacher"]
    text = plan.as_text(width=100)
    assert "Run sheet (hyperparameter law steplaw2025; *: N or D outside its data)" in text
    teacher = next(line for line in text.splitlines() if line.startswith("   teacher*"))
    assert teacher.split() == ["teacher*", "2.22B", "35.1B", f"{r.lr:.3g}", "610K", f"{r.steps:,}", "2,000",
                               f"{r.train_lr:.4g}"]
    assert f"{r.lr_interval[0]:.2g}–{r.lr_interval[1]:.2g}" in text and f"{r.batch_sequences:,} seq" in text
    assert "warmup: 10% of the steps, at most 2,000" in " ".join(out.split())
    # the student, its teacher, the model pretrained instead: three runs
    assert sum(line.startswith(("   student", "   teacher", "   no teacher")) for line in text.splitlines()) == 3


def test_runs_that_are_one_model_on_the_same_tokens_run_the_same_way():
    # best-case spends the whole budget on the student: the same model and tokens as the model
    # pretrained instead, so the same recipe; still two runs (one distilled, one without a teacher)
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case")
    assert plan.recipes["best-case"].to_dict() == {**plan.recipes["best-case (pretrain instead)"].to_dict(),
                                                   "name": "best-case"}
    lines = [line.split()[0] for line in plan.as_text(width=100).splitlines()
             if line.startswith(("   student", "   no teacher"))]
    assert lines == ["student*", "no"]


def test_a_batch_fixed_above_the_optimum_gets_the_adapted_lr_its_penalty_and_the_tokens_that_recover_it(cli):
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--scenario", "best-case", "--batch-tokens", "8M", "--json")
    assert code == 0, err
    r = json.loads(out)["recipes"]["best-case"]
    lr, optimum = _steplaw(546e6, r["tokens"])
    batch = round(8e6 / N_CTX) * N_CTX   # the run's batch: whole sequences
    ratio = batch / optimum
    assert ratio > 4 and r["batch_tokens"] == batch and r["optimal_batch_tokens"] == pytest.approx(optimum)
    assert r["batch_sequences"] == round(8e6 / N_CTX) and r["batch_interval"] is None
    # steplaw2025's fitted batch exponent (0.40, not Hoffer's fixed 0.5) and ridge curvature (0.005)
    adapted = r["batch_adaptation"]
    assert r["lr"] == adapted["lr"] == pytest.approx(lr * ratio ** 0.40)
    assert adapted["lr_batch_exponent"] == 0.40
    assert adapted["loss_penalty"] == pytest.approx(0.005 * math.log(ratio) ** 2)
    factor = (1 + adapted["loss_penalty"]) ** (1 / 0.038)
    assert adapted["extra_tokens_factor"] == pytest.approx(factor)
    assert adapted["extra_tokens"] == pytest.approx(r["tokens"] * (factor - 1))
    code, text, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                          "--scenario", "best-case", "--batch-tokens", "8M", "--explain")
    text = " ".join(text.split())
    assert (f"the student for best-case: at your batch of 8M tokens ({ratio:.3g}x B* = 1.81M), "
            f"peak lr {adapted['lr']:.3g} = lr* x (B / B*)^0.4" in text)
    assert "the model trained without a teacher for best-case: at your batch of 8M tokens" in text
    assert f"loss +{adapted['loss_penalty']:.2%} at the same tokens, recovered by {factor:.3g}x the tokens" in text


def test_a_law_without_a_batch_exponent_says_so_in_one_line_instead_of_failing(cli):
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--scenario", "best-case", "--batch-tokens", "8M", "--hyperparameter-law", "deepseek2024")
    assert code == 0, err
    said = " ".join(out.split()).split("law deepseek2024 has no measured batch exponent")[1:]
    assert len(said) == 1 and "the lr shown is the law's for its own batch, 1.98M tokens, not for yours (8M)" in said[0]
    recipe = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case", batch_tokens=8e6,
                     hyperparameter_law="deepseek2024").recipes["best-case"]
    assert recipe.adaptation is None and recipe.batch_sequences == round(8e6 / N_CTX)
    assert recipe.batch_tokens == recipe.batch_sequences * N_CTX


def test_a_fitted_law_of_one_batch_recommends_that_batch(tmp_path):
    path = HyperparameterLaw(name="mine", source="test", lr_unit=PEAK, lr=PowerLaw(coefficient=1.0, exponents=(-0.5, 0.1)),
                             fixed_batch_tokens=524288).save(tmp_path / "hp.json")
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case",
                   hyperparameter_law=str(path))
    r = plan.recipes["best-case"]
    assert r.law == "mine" and r.batch_tokens == 524288 and r.batch_sequences == 128 and r.optimal_batch_tokens is None
    assert r.lr == pytest.approx(546e6 ** -0.5 * r.tokens ** 0.1)
    assert "the batch the law's runs used" in plan.as_text()
    fixed = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case",
                    hyperparameter_law=str(path), batch_tokens=4e6)
    assert "your batch: this law's runs did not vary the batch" in fixed.recipes["best-case"].notes[0]


@pytest.mark.parametrize("law, says", [
    ("nope", "--hyperparameter-law: unknown hyperparameter law 'nope': give a preset (steplaw2025, deepseek2024, gpu-ladder-h200)"),
    ("{tmp}/bad.json", "is not JSON"),
])
def test_a_bad_hyperparameter_law_is_one_line_and_exit_2(cli, tmp_path, law, says):
    (tmp_path / "bad.json").write_text("{oops")
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21",
                         "--hyperparameter-law", law.format(tmp=tmp_path))
    assert code == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--batch-tokens", "-4M")
    assert code == 2 and "--batch-tokens" in err and len(err.strip().splitlines()) == 1


def test_a_student_model_is_run_at_its_own_width_and_context(tmp_path):
    for name, mup in (("mup", True), ("plain", False)):
        config = ModelConfig(vocab_size=32000, d_model=1024, n_layers=16, n_heads=16, max_seq_len=2048, mup=mup)
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_config.json").write_text(json.dumps(config.model_dump()))
        plan = ds.plan("busbridge2025", compute=1e21, student_model=str(tmp_path / name), scenario="best-case")
        r = plan.recipes["best-case"]
        assert r.n_ctx == 2048 and r.d_model == 1024 and r.params == config.non_embedding_params
        assert r.train_lr == (pytest.approx(r.lr * 1024 / 256) if mup else r.lr)
        assert r.mup_base_width == (256 if mup else None)


def test_the_warmup_rule_is_the_engines_default():
    """One warmup rule (issue 66): a run given only the recipe's lr and batch warms up as planned."""
    from distillscale.rules import warmup_steps
    from distillscale.training.config import TrainConfig

    config = TrainConfig(out=".", n_layers=1, tokens=1e6)
    for steps in (1, 7, 1999, 20_000, 10 ** 6):
        assert config.resolved_warmup_steps(steps) == warmup_steps(steps) == min(WARMUP_CAP, math.ceil(WARMUP_FRACTION * steps))


def test_the_figure_is_never_written_over_the_hyperparameter_law(cli, tmp_path):
    law = tmp_path / "hp.png"  # a law file named like a figure
    HyperparameterLaw(name="mine", source="test", lr_unit=PEAK, lr=PowerLaw(coefficient=1.0, exponents=(-0.5, 0.1)),
                      fixed_batch_tokens=524288).save(law)
    before = law.read_bytes()
    code, out, err = cli("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                         "--hyperparameter-law", law, "--plot", law, "--overwrite")
    assert code == 2 and "--plot" in err and "is also an input" in err and law.read_bytes() == before


def test_a_hyperparameter_law_object_plans_as_its_saved_file(tmp_path):
    law = HyperparameterLaw(name="mine", source="test", lr_unit=PEAK, lr=PowerLaw(coefficient=1.0, exponents=(-0.5, 0.1)),
                            batch=PowerLaw(coefficient=0.5, exponents=(0.0, 0.6)), lr_batch_exponent=0.3)
    options = dict(compute=1e21, student_params=546e6, scenario="best-case", batch_tokens=8e6)
    given = ds.plan("busbridge2025", hyperparameter_law=law, **options)
    saved = ds.plan("busbridge2025", hyperparameter_law=str(law.save(tmp_path / "hp.json")), **options)
    assert given.recipes == saved.recipes and given.recipes["best-case"].law == "mine"
    assert "--hyperparameter-law hp.json" in given.as_cli_command()
    with pytest.raises(ParameterError, match="hyperparameter_law must be a preset name, a law file or a "
                                                "HyperparameterLaw"):
        ds.plan("busbridge2025", hyperparameter_law=3, **options)


def test_the_figure_says_how_to_run_each_run():
    pytest.importorskip("matplotlib")
    from distillscale.planning import plots

    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining")
    figure = plots.plot_plan(plan)
    written = "\n".join(text.get_text() for text in figure.texts)
    teacher = plan.recipes["teacher-pretraining teacher"]
    assert "run sheet (hyperparameter law steplaw2025" in written
    assert (f"the teacher for teacher-pretraining: N 2.22B, D 35.1B, peak lr {teacher.lr:.3g}, batch 610K "
            f"({teacher.batch_sequences:,} seq.)" in written)
    plots.pyplot().close(figure)


def test_plan_supervised_says_how_to_run_its_model_under_the_law_and_batch_given():
    plan = ds.plan_supervised("epoch2024", compute=1e21, params=1e9, hyperparameter_law="steplaw2025",
                              batch_tokens=8e6)
    r = plan.recipes["supervised"]
    assert (r.params, r.tokens) == (1e9, plan.supervised.tokens) and r.batch_tokens == round(8e6 / N_CTX) * N_CTX
    assert r.adaptation is not None and r.lr == pytest.approx(_steplaw(1e9, r.tokens)[0]
                                                             * (r.batch_tokens / _steplaw(1e9, r.tokens)[1]) ** 0.40)


def test_a_started_student_is_told_the_laws_rates_are_for_training_from_scratch():
    plan = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="teacher-pretraining",
                   student_init="pruned")
    said = "the student starts pruned (--student-init): the law's rates are for training from scratch"
    assert [name for name, r in plan.recipes.items() if any(said in note for note in r.notes)] == ["teacher-pretraining"]
    assert said in plan.as_text()


def test_a_student_models_context_is_its_own_runs_not_the_teachers(tmp_path):
    """Issue 63 item 9: the student's 2,048-token context was applied to the teacher's recipe too."""
    config = ModelConfig(vocab_size=32000, d_model=1024, n_layers=16, n_heads=16, max_seq_len=2048)
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "model_config.json").write_text(json.dumps(config.model_dump()))
    plan = ds.plan("busbridge2025", compute=1e21, student_model=str(tmp_path / "student"),
                   scenario="teacher-pretraining")
    assert plan.recipes["teacher-pretraining"].n_ctx == 2048
    assert plan.recipes["teacher-pretraining (pretrain instead)"].n_ctx == 2048
    assert plan.recipes["teacher-pretraining teacher"].n_ctx == N_CTX   # the family's, at the plan's context


def test_a_batch_below_one_sequence_is_run_and_priced_as_one_sequence():
    """Issue 63 item 5: --batch-tokens 1K at a 4,096-token context adapted the rate to 1K tokens, a
    batch the run cannot take (it runs one sequence a step)."""
    r = ds.plan("busbridge2025", compute=1e21, student_params=546e6, scenario="best-case",
                batch_tokens=1000).recipes["best-case"]
    assert r.batch_sequences == 1 and r.batch_tokens == N_CTX
    lr, optimum = _steplaw(546e6, r.tokens)
    assert r.lr == pytest.approx(lr * (N_CTX / optimum) ** 0.40) and r.adaptation.batch_tokens == N_CTX
    assert any("less than one sequence of 4,096: the run takes one sequence a step" in note for note in r.notes)
