"""`distillscale ladder`: the spec it writes is the sweep it designed. Run through `sweep plan`, the
spec builds the sizes the design names (the base's model family, or the sweep's default written
into the spec), spends exactly the FLOPs `ladder` said (the engine's count over whole steps, forks
only when the base forks), keeps the base's token window, never repeats a counted corpus and says
so; seeds pay only for noise they remove; the top of a ladder follows the budget however large the
target; a malformed base is one line and exit 2, its relative paths are the base file's."""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pytest

from distillscale.planning import ladder as designer
from distillscale.planning.ladder import MAX_TOP, TIE, design_ladder
from distillscale.sweeps.ladder import design_for_base
from distillscale.sweeps.placement import VISIBLE_GPUS_ENV

# A base over the python-env corpus, its runs capped far above what it holds (so that no test
# prepares that corpus to count it: a test of the count gives --unique-tokens or a corpus of its own).
BASE = """
name = "mine"
[data]
path = "builtin:python-env"
vocab_size = 512
seq_len = 512
[model]
{family}
batch_size = 64
lr = 0.003
schedule = "{schedule}"
{teachers}"""
CAP = '[teachers]\nn_layers = [1]\ntokens_per_param = [20]\nmax_tokens = "1T"\n'


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


def write_base(tmp_path, family: str = "", schedule: str = "wsd", teachers: str = CAP):
    path = tmp_path / "base.toml"
    path.write_text(BASE.format(family=family, schedule=schedule, teachers=teachers), encoding="utf-8")
    return path


def design_and_plan(cli, tmp_path, *args):
    """`ladder ARGS --json --out SPEC`, then `sweep plan SPEC --json`: (ladder's JSON, the plan's, the spec)."""
    spec = tmp_path / "ladder.toml"
    spec.unlink(missing_ok=True)
    code, out, err = cli("ladder", *args, "--json", "--out", spec)
    assert code == 0, err
    ladder = json.loads(out)
    code, out, err = cli("sweep", "plan", spec, "--json")
    assert code == 0, err
    return ladder, json.loads(out), tomllib.loads(spec.read_text(encoding="utf-8"))


def sizes_of(plan) -> set[tuple[int, int]]:
    return {(run["n_layers"], run["non_embedding_params"]) for run in plan["runs"]}


@pytest.mark.parametrize("family, aspect, head_dim", [
    ("", 128, 128),                       # neither: the sweep's defaults, written into the spec
    ("aspect_ratio = 96", 96, 128),       # only some depths have widths the heads divide
    ("head_dim = 32", 128, 32),
    ("aspect_ratio = 64\nhead_dim = 64", 64, 64),
])
def test_the_spec_builds_the_family_the_ladder_designed(cli, tmp_path, family, aspect, head_dim):
    base = write_base(tmp_path, family)
    ladder, plan, spec = design_and_plan(cli, tmp_path, "--target-params", "1B", "--target-tokens", "20B",
                                         "--budget", "1e20", "--base", base)
    designed = {(run["depth"], run["params"]) for run in ladder["runs"]}
    assert sizes_of(plan) == designed
    assert (spec["model"]["aspect_ratio"], spec["model"]["head_dim"]) == (aspect, head_dim)
    assert max(run["non_embedding_params"] for run in plan["runs"]) <= 1e9 * MAX_TOP
    assert plan["flops"] == pytest.approx(ladder["chosen"]["flops"], rel=1e-12) and plan["flops"] <= 1e20
    assert f"aspect ratio {aspect}, head_dim {head_dim}" in ladder["family"]


@pytest.mark.parametrize("schedule", ["wsd", "cosine"])
@pytest.mark.parametrize("target, tokens, budget", [("20M", "400M", "1e17"), ("1B", "20B", "1e20"),
                                                    ("300M", "3B", "3e18")])
def test_sweep_plan_spends_what_the_ladder_said(cli, tmp_path, schedule, target, tokens, budget):
    """The same count, run by run: whole steps of the engine's FLOPs (attention and head included,
    25-30% above 6ND at small depths), a fork at its cooldown only under WSD."""
    base = write_base(tmp_path, "aspect_ratio = 64\nhead_dim = 64", schedule)
    ladder, plan, _ = design_and_plan(cli, tmp_path, "--target-params", target, "--target-tokens", tokens,
                                      "--budget", budget, "--base", base)
    assert plan["flops"] == pytest.approx(ladder["chosen"]["flops"], rel=1e-12)
    assert plan["flops"] <= float(budget)
    assert sorted(run["flops"] for run in plan["runs"]) == pytest.approx(sorted(run["flops"] for run in ladder["runs"]),
                                                                         rel=1e-12)
    forks = sum(run["kind"] == "fork" for run in plan["runs"])
    assert forks == sum(run["fork"] for run in ladder["runs"])
    assert (forks > 0) == (schedule == "wsd")
    six_nd = sum(6 * run["non_embedding_params"] * run["tokens"] * (run["own_steps"] / run["steps"])
                 for run in plan["runs"])
    assert plan["flops"] > six_nd   # what the designer once counted


def test_the_default_base_keeps_its_token_cap_and_says_the_data(cli, tmp_path):
    """The GPU ladder's base caps runs at 80M tokens (its corpus without repeats): the design stays
    inside, the spec keeps the cap, and the output says the cap, not the budget, stops the ladder."""
    ladder, plan, spec = design_and_plan(cli, tmp_path, "--target-params", "1B", "--target-tokens", "20B",
                                         "--budget", "1e20")
    assert all(4e6 <= run["tokens"] <= 80e6 for run in plan["runs"])
    assert spec["teachers"]["max_tokens"] == 80e6 and spec["teachers"]["min_tokens"] == 4e6
    assert plan["flops"] == pytest.approx(ladder["chosen"]["flops"], rel=1e-12)
    notes = " ".join(ladder["notes"])
    assert "max_tokens" in notes and "window, not the budget" in notes and "not counted" in notes


def test_a_counted_corpus_is_never_repeated_and_its_epochs_are_said(cli, tmp_path):
    base = write_base(tmp_path, "aspect_ratio = 64\nhead_dim = 64", teachers="")   # no cap: the count is the cap
    ladder, plan, spec = design_and_plan(cli, tmp_path, "--target-params", "1B", "--target-tokens", "20B",
                                         "--budget", "1e20", "--base", base, "--unique-tokens", "500M")
    trained = [run["steps"] * 64 * 512 for run in plan["runs"]]
    assert max(trained) <= 500e6 and spec["teachers"]["max_tokens"] <= 500e6
    assert all(run["epochs"] <= 1 for run in ladder["runs"])
    notes = " ".join(ladder["notes"])
    assert "no run repeats its data" in notes and "40 epochs of that split" in notes   # the target's 20B
    code, out, _ = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e20", "--base",
                       base, "--unique-tokens", "500M")
    assert code == 0 and "epochs of the training split" in out


@pytest.mark.usefixtures("cache_dir")
def test_a_base_without_a_cap_is_counted_and_its_relative_paths_are_the_base_files(cli, tmp_path, monkeypatch):
    """A base whose corpus is a relative path, read from another directory: the spec names the base's
    corpus (absolute), the corpus is prepared and counted, and no run repeats it."""
    project = tmp_path / "project"
    (project / "corpus").mkdir(parents=True)
    words = ["alpha", "beta", "gamma", "delta", "model", "token", "layer", "scale", "law", "data", "train"]
    rng = random.Random(0)
    for i in range(20):
        lines = (" ".join(rng.choice(words) for _ in range(12)) for _ in range(1500))
        (project / "corpus" / f"doc{i}.txt").write_text("\n".join(lines), encoding="utf-8")
    (project / "base.toml").write_text('name = "mine"\n[data]\npath = "corpus"\nvocab_size = 320\nseq_len = 32\n'
                                       '[model]\naspect_ratio = 8\nhead_dim = 8\nbatch_size = 2\nschedule = "wsd"\n'
                                       'eval_tokens = "2k"\neval_every = 0\ndevice = "cpu"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ladder, plan, spec = design_and_plan(cli, elsewhere, "--target-params", "200K", "--target-tokens", "2M",
                                         "--budget", "1e13", "--base", "../project/base.toml")
    assert (elsewhere / ".." / "project" / "corpus").resolve() == (project / "corpus").resolve()
    assert spec["data"]["path"].startswith("/") and spec["data"]["path"].endswith("corpus")
    assert sorted(p.name for p in Path(spec["data"]["path"]).iterdir())[0] == "doc0.txt"
    unique = ladder["unique_tokens"]
    assert 100_000 < unique < 400_000 and all(run["tokens"] <= unique for run in ladder["runs"])
    assert max(run["steps"] for run in plan["runs"]) * 2 * 32 <= unique
    assert min(run["steps"] for run in plan["runs"]) >= designer.MIN_STEPS
    assert any("epochs of that split" in note for note in ladder["notes"])   # the target's 2M repeat it


@pytest.mark.parametrize("tokens", ["1", "1K", "100K"])
def test_a_target_whose_runs_cannot_train_is_one_line(cli, tokens):
    code, out, err = cli("ladder", "--target-params", "1B", "--target-tokens", tokens, "--budget", "1e20")
    assert code == 2 and "--target-tokens" in err and len(err.strip().splitlines()) == 1


def test_every_designed_run_trains_enough_steps_and_a_far_ratio_is_flagged():
    plan = design_ladder(1e9, 1e8, 1e20)    # 0.1 tokens per parameter: outside what the pack measured
    assert all(run.steps >= designer.MIN_STEPS for design in plan.designs[:50] for run in plan.runs(design))
    assert not plan.measured and any("not a measured one" in note for note in plan.notes())
    assert design_ladder(1e9, 2e10, 1e20).measured


def test_seeds_pay_only_for_noise_and_never_remove_the_curve():
    quiet = design_ladder(1e9, 2e10, 1e20)
    assert {d.seeds for d in quiet.designs} == {1}         # no noise: never a second seed
    errors = []
    for noise in (0.0, 0.003, 0.01, 0.05):
        plan = design_ladder(1e9, 2e10, 1e20, seed_noise=noise)
        for d in plan.designs:
            assert d.expected_error >= plan.curve.typical(d.distance, d.span) * (1 - 1e-12)
            assert d.band >= plan.curve.band(d.distance, d.span) * (1 - 1e-12)
        errors.append(plan.chosen.expected_error)
        assert plan.chosen.distance <= 2 * quiet.chosen.distance
    assert errors == sorted(errors) and errors[-1] > errors[0] > 0
    # a second seed of the largest size shrinks only the noise term
    plan = design_ladder(1e9, 2e10, 1e20, seed_noise=0.01)
    one = {(d.depths, d.tokens_per_param): d for d in plan.designs if d.seeds == 1}
    for d in (d for d in plan.designs if d.seeds > 1 and (d.depths, d.tokens_per_param) in one):
        single = one[d.depths, d.tokens_per_param]
        assert d.noise_error < single.noise_error and d.curve_error == single.curve_error


def test_a_ladder_reaches_as_far_as_the_budget_allows():
    """No cap on its top: a 1T target at 1e26 FLOPs gets a top within 4x of it, a 70B target's top
    is deeper than 56 layers, and a larger budget never buys a top further away."""
    trillion = design_ladder(1e12, 2e13, 1e26).chosen
    assert trillion.sizes[-1] > 8.7e9 and trillion.distance <= 4
    seventy = design_ladder(7e10, 1.4e12, 1e24).chosen
    assert max(seventy.depths) > 56 and seventy.distance <= 4
    distances = [design_ladder(1e12, 2e13, budget).chosen.distance for budget in (1e20, 1e22, 1e24, 1e26)]
    assert distances == sorted(distances, reverse=True)


def test_within_a_tie_the_most_points_win_and_seeds_are_not_points():
    plan = design_ladder(1e9, 2e10, 1e20, seed_noise=1e-6)
    best = min(d.expected_error for d in plan.designs)
    tied = [d for d in plan.designs if d.expected_error <= best * (1 + TIE)]
    assert plan.chosen.points == max(d.points for d in tied)
    assert plan.chosen.flops == min(d.flops for d in tied if d.points == plan.chosen.points)
    assert plan.chosen.seeds == 1


def test_the_python_default_family_prices_as_the_default_base():
    from distillscale.sweeps.ladder import base_family, read_base

    spec = base_family(read_base(), 5e8, count_corpus=False)
    default = designer.engine_family(5e8)
    assert spec.sizes == default.sizes and spec.forks and default.forks
    assert default.description.startswith(f"aspect ratio {designer.GPU_LADDER['aspect_ratio']}")
    for depth in list(spec.sizes)[::3]:
        for tokens in (4_000_000, 33_333_333, 80_000_000):
            assert spec.price(depth, tokens) == default.price(depth, tokens)


@pytest.mark.parametrize("model, fragment", [
    ('aspect_ratio = "wide"', "model.aspect_ratio"),
    ("aspect_ratio = [64, 128]", "model.aspect_ratio"),
    ("aspect_ratio = 0", "model.aspect_ratio"),
    ("head_dim = 0", "model.head_dim"),
    ("head_dim = [64]", "model.head_dim"),
    ("head_dim = 3", "head_dim"),
    ("aspect_ratio = 64.5", "model.aspect_ratio"),
    ('lr_law = "no-such-law.json"', "no-such-law.json"),
])
def test_a_malformed_base_is_one_line_and_exit_2(cli, tmp_path, model, fragment):
    base = tmp_path / "base.toml"
    base.write_text(f'name = "x"\n[data]\npath = "builtin:python-env"\n[model]\n{model}\n[teachers]\n'
                    'n_layers = [1]\ntokens_per_param = [1]\nmax_tokens = "80M"\n', encoding="utf-8")
    code, out, err = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e20",
                         "--base", base)
    assert code == 2 and "--base" in err and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("text", ['name = "x"\nmodel = "big"\n[data]\n', 'name = "x"\n[data]\n[model]\n[teachers]\n'
                                  'max_tokens = "lots"\n', "[data\n", 'name = "x"\n[data]\nvocab_size = "big"\n[model]\n'])
def test_a_base_that_is_no_spec_is_one_line(cli, tmp_path, text):
    base = tmp_path / "base.toml"
    base.write_text(text, encoding="utf-8")
    code, out, err = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e20",
                         "--base", base)
    assert code == 2 and "--base" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("call, name", [
    (lambda: design_ladder(1e9, 2e10, 1e20, family="x"), "family"),
    (lambda: design_ladder(float("nan"), 2e10, 1e20), "target_params"),
    (lambda: design_ladder(1e9, 2e10, 1e20, seed_noise=float("nan")), "seed_noise"),
    (lambda: designer.engine_family(float("inf")), "max_params"),
    (lambda: design_for_base("x", 2e10, 1e20), "target_params"),
    (lambda: design_for_base(1e9, 2e10, 1e20, unique_tokens=-3), "unique_tokens"),
])
def test_a_bad_python_argument_is_one_parameter_error(call, name):
    from distillscale.errors import ParameterError

    with pytest.raises(ParameterError) as caught:
        call()
    assert caught.value.param == name and len(str(caught.value).splitlines()) == 1


def test_a_relative_lr_law_is_the_base_files(cli, tmp_path, monkeypatch):
    """[model] lr_law = "hp.json" names the file beside the base: the spec names it absolutely, and
    `sweep plan` run from another directory reads it."""
    from distillscale.laws.hyperparameters import HyperparameterLaw, PowerLaw
    from distillscale.laws.hyperparameters.rates import parse_lr_unit

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    HyperparameterLaw(name="toy", source="a test", lr_unit=parse_lr_unit("mup-base"),
                      lr=PowerLaw(coefficient=0.05, exponents=(-0.25, 0.1), residual_sd=0.2),
                      fixed_batch_tokens=64 * 512.0).save(project / "hp.json")
    write_base(project, 'aspect_ratio = 64\nhead_dim = 64\nlr_law = "hp.json"')
    monkeypatch.chdir(elsewhere)
    ladder, plan, spec = design_and_plan(cli, elsewhere, "--target-params", "1B", "--target-tokens", "20B",
                                         "--budget", "1e19", "--base", "../project/base.toml")
    assert Path(spec["model"]["lr_law"]).resolve() == (project / "hp.json").resolve()
    assert plan["flops"] == pytest.approx(ladder["chosen"]["flops"], rel=1e-12)
    assert all(run["lr"] is not None for run in plan["runs"])


@pytest.mark.parametrize("teachers, args", [
    ('[teachers]\nn_layers = [1]\ntokens_per_param = [1]\nmax_tokens = "1M"\n', []),   # under 100 steps a run
    ("", ["--unique-tokens", "1M"]),                                                    # a corpus smaller still
])
def test_an_empty_token_window_is_one_line_naming_the_base(cli, tmp_path, teachers, args):
    base = write_base(tmp_path, "aspect_ratio = 64\nhead_dim = 64", teachers=teachers)
    code, out, err = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e20",
                         "--base", base, *args)
    assert code == 2 and "--base" in err and "no run fits the token window" in err
    assert len(err.strip().splitlines()) == 1
