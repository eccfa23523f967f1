"""A law fitted on a sweep carries the sweep's recipe (its rate, batch rule, warmup and schedule) in
its file, and a plan under it runs its models the same way: the run sheet's --lr, --schedule and batch
are the sweep's, not a hyperparameter law's extrapolated ~1000x below its data; `train` takes the flags
the sheet prints. A law file without a recipe plans as before (the hyperparameter law's)."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

import distillscale as ds
from distillscale.cli import main
from distillscale.laws import load_laws
from distillscale.planning.run_sheet import run_sheet
from distillscale.planning.sweep_recipes import sweep_run_recipe
from distillscale.sweeps.recipe import sweep_recipe
from distillscale.sweeps.spec import load_sweep_spec
from distillscale.sweeps.spec_sections import StudentLadder

TEST_DATA = Path(__file__).resolve().parents[1] / "data"


def _micro_sweep(root: Path) -> Path:
    """A sweep directory holding the micro demo's resolved spec.toml, as `sweep run` writes it."""
    spec = load_sweep_spec(Path(str(resources.files("distillscale.report") / "micro_sweep.toml")))
    root.mkdir()
    (root / "spec.toml").write_text(spec.to_toml())
    return root


def test_the_recipe_is_read_from_the_sweeps_spec(tmp_path):
    recipe = sweep_recipe(_micro_sweep(tmp_path / "sweep"))
    assert (recipe.lr, recipe.schedule, recipe.batch_size, recipe.seq_len) == (0.003, "wsd", 16, 128)
    assert recipe.students.min_steps == recipe.teachers.min_steps == 500
    assert recipe.students.min_tokens == 256_000
    # the ladder sizes its batches by the very same rule
    spec = load_sweep_spec(Path(str(resources.files("distillscale.report") / "micro_sweep.toml")))
    ladder = StudentLadder.model_validate(spec.sections["students"])
    for tokens in (100e3, 256e3, 600e3, 1.06e6, 5e6):
        assert recipe.batch_sequences(tokens, 128, "student") == ladder.batch_for(tokens, 16, 128)
    # each size's batch in the sweep's own runs: the rule at its shortest run
    students = [run for run in spec.runs if run.kind == "student"]
    for run in students:
        shortest = min(other.tokens for other in students if other.n_layers == run.n_layers)
        assert run.settings["batch_size"] == recipe.batch_sequences(shortest, 128, "student")
    # no spec (an exported records file), or a rate that varies by size: no one recipe to carry
    assert sweep_recipe(tmp_path / "records.jsonl") is None
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "spec.toml").write_text((tmp_path / "sweep" / "spec.toml").read_text() + "\n[tune]\nlr = [0.001, 0.003]\n")
    assert sweep_recipe(tuned) is None


def test_a_micro_run_takes_the_sweeps_rate_batch_and_schedule(tmp_path):
    """At a micro sweep's scale the hyperparameter law gives 9-17 sequences and --lr 0.004-0.009; the
    sweep's rule: 8 sequences of 128 (at least 500 steps) at its --lr 0.003 under WSD."""
    recipe = sweep_recipe(_micro_sweep(tmp_path / "sweep"))
    run = sweep_run_recipe(recipe, "best-case", 55e3, 1.0e6, 128, 24)
    assert (run.train_lr, run.schedule, run.batch_sequences, run.steps) == (0.003, "wsd", 8, 977)
    assert run.flags() == "--lr 0.003 --schedule wsd" and run.follows == "the sweep's recipe"
    assert run.warmup_steps == 98 and run.lr == pytest.approx(0.003 * 256 / run.d_model)
    cooled = sweep_run_recipe(recipe.model_copy(update={"cooldown_fraction": 0.3}), "best-case", 55e3, 1e6, 128, 24)
    assert cooled.flags() == "--lr 0.003 --schedule wsd --cooldown-fraction 0.3"
    short = sweep_run_recipe(recipe, "best-case", 55e3, 40e3, 128, 24)   # 313 steps even at one sequence
    assert short.batch_sequences == 1 and any("fewer than the 500" in note for note in short.notes)


def test_a_law_file_carries_the_recipe_and_the_plan_follows_it(tmp_path, cli, monkeypatch):
    recipe = sweep_recipe(_micro_sweep(tmp_path / "sweep"))
    law = tmp_path / "law.json"
    replace(load_laws("busbridge2025"), recipe=recipe).save(law)
    assert load_laws(law).recipe == recipe
    args = ("plan", "--law", str(law), "--compute", "1e21", "--student-params", "546M")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    rows = json.loads(out)["run_sheet"]
    assert rows and all(row["train_lr"] == 0.003 and row["schedule"] == "wsd" for row in rows)
    assert all(row["follows"] == "the sweep's recipe" and row["flags"] == "--lr 0.003 --schedule wsd" for row in rows)
    assert all(row["batch_sequences"] == recipe.batch_sequences(row["tokens"], row["n_ctx"], row["role"])
               for row in rows)
    code, text, err = cli(*args)
    assert code == 0 and "Run sheet, the sweep's recipe (--lr, --schedule wsd: what train/distill take)\n" in text
    code, text, err = cli(*args, "--explain")
    assert code == 0 and "Run sheet (the sweep's recipe" in text and "--lr 0.003 --schedule wsd" in text
    # what the sheet prints, `train` takes: its flags and a row's batch and tokens parse into the run's config
    seen = []
    monkeypatch.setattr("distillscale.training.recipe.train", lambda config: seen.append(config) or 1 / 0)
    row = rows[0]
    with pytest.raises(ZeroDivisionError):
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--n-layers", "2",
              *row["flags"].split(), "--batch-size", str(row["batch_sequences"]), "--seq-len", str(row["n_ctx"]),
              "--tokens", str(int(row["tokens"]))])
    config = seen[0]
    assert (config.lr, config.schedule, config.batch_size, config.steps_for(config.tokens)) == (
        0.003, "wsd", row["batch_sequences"], row["steps"])
    # another hyperparameter law, asked for by name, is followed instead
    code, out, err = cli(*args, "--hyperparameter-law", "deepseek2024", "--json")
    assert code == 0 and json.loads(out)["run_sheet"][0]["follows"] == "hyperparameter law deepseek2024"


def test_a_law_file_without_a_recipe_plans_as_before(cli):
    old = TEST_DATA / "records" / "law-fitted-2026-11-23.json"
    assert load_laws(old).recipe is None and "recipe" not in json.loads(old.read_text())
    same = ds.plan(str(old), compute=1e21, student_params=546e6)
    assert all(row.recipe.follows == "hyperparameter law steplaw2025" and row.recipe.schedule is None
               for row in run_sheet(same))
    code, text, err = cli("plan", "--law", str(old), "--compute", "1e21", "--student-params", "546M", "--explain")
    assert code == 0 and "Run sheet (hyperparameter law steplaw2025; *: N or D outside its data" in text


def test_a_bad_recipe_in_a_law_file_is_one_line(tmp_path, cli):
    law = tmp_path / "law.json"
    data = load_laws("busbridge2025").to_dict() | {"recipe": {"source": "s", "lr": -1, "batch_size": 4, "seq_len": 8}}
    law.write_text(json.dumps(data))
    code, out, err = cli("plan", "--law", str(law), "--compute", "1e21", "--student-params", "546M")
    assert code == 2 and "recipe.lr = -1" in err and "Traceback" not in err
