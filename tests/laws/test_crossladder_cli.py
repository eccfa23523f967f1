"""The bias correction everywhere a fitted law is used (issue 64): opt-in since issue 72 (left out a
family of ladders at a time, it lowered no family's error), `fit supervised --bias-correction` fits
a corrected law and says so in one line, its hold-out check shows raw and corrected errors with
signs, `predict` and `plan` apply a law file's correction and say so, `--no-bias-correction` gives
the raw law; `distillscale ladder` designs a ladder whose spec `sweep plan` takes, and refuses
bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws import SupervisedLaw
from distillscale.laws.crossladder import shipped_model

TRUTH = SupervisedLaw(E=1.7, A=300.0, B=900.0, alpha=0.32, beta=0.3)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    """Runs of 5 sizes (1M-16M) at 4 tokens-per-parameter ratios, 0.3% noise."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    lines = ["params,tokens,loss"]
    for n in (1e6, 2e6, 4e6, 8e6, 16e6):
        for ratio in (5, 10, 20, 40):
            loss = TRUTH.predict(n, n * ratio) * (1 + rng.normal(0, 0.003))
            lines.append(f"{n:.0f},{n * ratio:.0f},{loss:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def law_file(runs_csv, tmp_path_factory):
    from distillscale.cli import main

    path = tmp_path_factory.mktemp("law") / "law.json"
    assert main(["fit", "supervised", str(runs_csv), "--bootstrap", "0", "--no-backtest", "--bias-correction",
                 "--out", str(path)]) == 0
    return path


@pytest.mark.slow
def test_fit_says_its_law_is_corrected_and_compares_raw_on_its_hold_out(cli, runs_csv):
    code, out, err = cli("fit", "supervised", runs_csv, "--bootstrap", "0", "--fit-where", "N < 1.2e7",
                         "--bias-correction", "--no-backtest")
    assert code == 0, err
    assert sum("bias-corrected: predictions beyond the fitted runs" in line for line in out.splitlines()) == 1
    assert "--no-bias-correction" in out
    held = next(line for line in out.splitlines() if line.startswith("hold-out, bias-corrected"))
    assert "raw law" in held and "over-predicted" in held and "signed" in held
    code, out, _ = cli("fit", "supervised", runs_csv, "--bootstrap", "0", "--fit-where", "N < 1.2e7", "--json",
                       "--bias-correction", "--no-backtest")
    record = json.loads(out)
    assert record["bias_correction"].startswith("bias-corrected")
    holdout = record["holdout"]
    assert holdout["bias_corrected"] is True
    assert {"mean_abs_relative_error", "mean_relative_error", "n_over_predicted"} <= set(holdout["raw"])
    run = holdout["runs"][0]
    assert run["raw_relative_error"] == pytest.approx(run["raw_predicted"] / run["observed"] - 1)
    assert run["raw_predicted"] != run["predicted"]   # the held-out size lies beyond the fitted ones


@pytest.mark.slow
def test_fit_without_the_correction_by_default(cli, runs_csv):
    code, out, _ = cli("fit", "supervised", runs_csv, "--bootstrap", "0", "--no-backtest", "--json")
    assert code == 0
    assert json.loads(out)["bias_correction"] is None
    code, out, _ = cli("fit", "supervised", runs_csv, "--bootstrap", "0", "--no-backtest")
    assert "bias-corrected" not in out


@pytest.mark.slow
def test_predict_applies_the_law_files_correction_beyond_its_runs_only(cli, law_file):
    record = json.loads(law_file.read_text())["supervised"]["fit"]["bias_correction"]
    assert record["model"]["ladders"] == list(shipped_model().ladders)

    def loss(*extra, params="64M", tokens="1.28B"):
        code, out, err = cli("predict", "supervised", "--law", law_file, "--params", params, "--tokens", tokens,
                             "--json", *extra)
        assert code == 0, err
        return json.loads(out)

    corrected, raw = loss(), loss("--no-bias-correction")
    assert corrected["bias_correction"].startswith("bias-corrected") and raw["bias_correction"] is None
    from distillscale.laws.crossladder import BiasCorrection

    factor = BiasCorrection.model_validate(record).factor(64e6, 1.28e9)
    assert factor != 1.0
    assert corrected["loss"] == pytest.approx(raw["loss"] * factor, rel=1e-9)
    inside, inside_raw = loss(params="8M", tokens="160M"), loss("--no-bias-correction", params="8M", tokens="160M")
    assert inside["loss"] == inside_raw["loss"]
    code, out, _ = cli("predict", "supervised", "--law", law_file, "--params", "64M", "--tokens", "1.28B")
    assert sum("bias-corrected" in line for line in out.splitlines()) == 1


def test_plan_says_so_and_compares(cli, law_file):
    code, out, err = cli("plan", "--law", law_file, "--compute", "1e17", "--json")
    assert code == 0, err
    corrected = json.loads(out)
    shift = corrected["bias_correction"]     # the plan's model lies beyond the runs: its loss moved
    assert shift["note"].startswith("bias-corrected") and shift["losses"]["supervised"]["shift"] != 0
    code, out, _ = cli("plan", "--law", law_file, "--compute", "1e17", "--json", "--no-bias-correction")
    raw = json.loads(out)
    assert raw["bias_correction"] is None
    # the same optimum (searched on the raw law), the loss moved by the correction's factor
    assert raw["supervised"]["student_params"] == corrected["supervised"]["student_params"]
    assert raw["supervised"]["loss"] == pytest.approx(shift["losses"]["supervised"]["raw"], rel=1e-12)
    code, out, _ = cli("plan", "--law", law_file, "--compute", "1e17")
    assert sum("bias-corrected" in line for line in out.splitlines()) == 1


def test_ladder_writes_a_spec_that_sweep_plan_takes(cli, tmp_path):
    spec = tmp_path / "ladder.toml"
    code, out, err = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19",
                         "--out", spec)
    assert code == 0, err
    assert "chosen:" in out and "expected error" in out and "FLOPs" in out
    code, out, err = cli("sweep", "plan", spec, "--json")
    assert code == 0, err
    planned = json.loads(out)
    import tomllib

    design = tomllib.loads(spec.read_text())["teachers"]
    depths = {run["n_layers"] for run in planned["runs"]}
    assert depths == set(design["n_layers"]) and len(depths) >= 4
    # the spec's runs cost what the designer priced: sweep plan's own count (tests/sweeps/test_ladder_design.py)
    code, out, _ = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19", "--json")
    chosen = json.loads(out)["chosen"]
    assert chosen["flops"] <= 1e19
    assert planned["flops"] == pytest.approx(chosen["flops"], rel=1e-12)
    # a second write needs --overwrite, and replaces only a spec `ladder` wrote
    code, _, err = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19", "--out", spec)
    assert code == 2 and "--overwrite" in err
    other = tmp_path / "mine.toml"
    other.write_text("name = 'mine'\n")
    code, _, err = cli("ladder", "--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19", "--out",
                       other, "--overwrite")
    assert code == 2 and "not a ladder spec" in err and other.read_text() == "name = 'mine'\n"


@pytest.mark.parametrize("args, fragment", [
    (["--target-params", "1B", "--target-tokens", "20B", "--budget", "1e12"], "--budget"),
    (["--target-params", "0", "--target-tokens", "20B", "--budget", "1e19"], "--target-params"),
    (["--target-params", "100K", "--target-tokens", "2M", "--budget", "1e19"], "--target-params"),
    (["--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19", "--base", "/nonexistent.toml"],
     "--base"),
    (["--target-params", "1B", "--target-tokens", "20B", "--budget", "1e19", "--seed-noise", "2"], "--seed-noise"),
])
def test_ladder_bad_input_is_one_line_exit_2(cli, args, fragment):
    code, out, err = cli("ladder", *args)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ladder_from_python_is_records():
    from distillscale.planning.ladder import LadderDesign, design_ladder

    plan = design_ladder(1e9, 2e10, 1e19)
    assert isinstance(plan.chosen, LadderDesign) and plan.chosen.flops <= 1e19
    assert all(d.flops <= 1e19 for d in plan.designs)
    # a larger budget buys a design expected to err less, its largest size nearer the target
    bigger = design_ladder(1e9, 2e10, 1e20).chosen
    assert bigger.expected_error < plan.chosen.expected_error and bigger.distance < plan.chosen.distance
    frontier = plan.frontier()
    assert [d.flops for d in frontier] == sorted(d.flops for d in frontier)
    assert all(a.expected_error > b.expected_error for a, b in zip(frontier, frontier[1:]))
