"""`distillscale demo --data-limited` end to end on its quick design (`--quick`: the demo's own design,
shrunk: tiny models, 2,048-token runs, a 1-epoch pool and a 4-epoch pool): every run of the plan trained or
distilled, each pool's weight-decay grid's best taken by every other run of the pool, the students reading
their teachers' pool, the table and JSON with the same numbers, the shipped law fitted on the runs by the
shipped fitter; a second call trains nothing; bad input refused in one line."""

from __future__ import annotations

import json

import pytest

from distillscale.sweeps import data_limited as design_module
from distillscale.sweeps.data_limited import QUICK_DESIGN as TINY
from distillscale.sweeps.data_limited import plan_runs
from tests.report.test_own_teacher import markov_corpus


def test_the_demo_design_is_the_one_documented():
    """20 runs trained: per pool a 3-value weight-decay grid (its best is the seed-0 run alone), seed 1
    alone, 3 generations, the depth-3 teacher and its student, the ensemble of 2 distilled into one;
    every generation from the previous, every run of a pool after its grid."""
    design = design_module.DEMO_DESIGN
    runs = {run.run_id: run for run in plan_runs(design)}
    assert len([r for r in runs.values() if r.command != "link"]) == 20 and design.epochs("16K") == 16
    assert [r.weight_decay for r in runs.values() if r.role == "grid" and r.pool == "16K"] == [1e-2, 3e-2, 1e-1]
    assert [r.weight_decay for r in runs.values() if r.role == "grid" and r.pool == "256K"] == [1e-4, 1e-3, 1e-2]
    assert runs["d2-u16K-alone-s0"].command == "link"
    assert runs["d2-u16K-gen1"].teachers == ("d2-u16K-alone-s0",)
    assert runs["d2-u16K-gen3"].teachers == ("d2-u16K-gen2",)
    assert runs["d2-u256K-ensemble2"].teachers == ("d2-u256K-alone-s0", "d2-u256K-alone-s1")
    assert runs["d2-u16K-larger"].depth == 3 and runs["d2-u16K-from-larger"].teachers == ("d2-u16K-larger",)
    assert all(set(r.needs) >= {f"d2-u{r.pool}-wd{wd:g}" for wd in design.grids[r.pool]}
               for r in runs.values() if r.role != "grid")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One tiny `demo --data-limited --data CORPUS --out DIR --json`, and a second call on it."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("data-limited")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTILLSCALE_CACHE", str(root / "cache"))
        corpus = markov_corpus(root / "corpus", documents=30, words=300)
        out = root / "sweep"
        args = ["demo", "--data-limited", "--quick", "--data", str(corpus), "--out", str(out), "--workers", "2"]
        first = _call(main, [*args, "--json"])
        mtimes = {path: path.stat().st_mtime_ns for path in out.glob("*/result.json")}
        second = _call(main, args)
        yield {"corpus": corpus, "out": out, "first": first, "second": second, "mtimes": mtimes, "root": root}


def _call(main, args):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_every_run_finishes_and_takes_its_pools_best_weight_decay(demo):
    code, out, err = demo["first"]
    assert code == 0, err
    result = json.loads(out)
    plan = plan_runs(TINY)
    assert set(result["statuses"]) == {run.run_id for run in plan}
    assert set(result["statuses"].values()) == {"completed"}
    for pool in result["pools"]:
        grid = pool["weight_decay"]
        best = min(grid["losses"], key=grid["losses"].get)
        assert float(best) == grid["best"] and grid["inside"] == (best == "0.01")
        alone = demo["out"] / f"d1-u{pool['pool']}-alone-s0"
        assert alone.is_symlink() and alone.resolve() == (demo["out"] / f"d1-u{pool['pool']}-wd{best}").resolve()
        assert pool["alone_seeds"][0] == grid["losses"][best]
    for run in plan:
        config = json.loads((demo["out"] / run.run_id / "config.json").read_text())["config"]
        assert config["unique_tokens"] == TINY.count(run.pool)
        assert config["split"] == "teacher"  # students read their teachers' pool
        if run.role != "grid":
            best = next(pool for pool in result["pools"] if pool["pool"] == run.pool)["weight_decay"]["best"]
            assert config["weight_decay"] == best


@pytest.mark.slow
def test_the_table_and_json_show_the_same_numbers_against_the_runs_alone(demo):
    result = json.loads(demo["first"][1])
    out = demo["out"]
    for pool in result["pools"]:
        cell = f"d1-u{pool['pool']}"
        seeds = [json.loads((out / f"{cell}-alone-s{s}" / "result.json").read_text())["val_loss"] for s in (0, 1)]
        assert pool["alone_mean"] == pytest.approx(sum(seeds) / 2)
        gen2 = json.loads((out / f"{cell}-gen2" / "result.json").read_text())
        row = pool["generations"][1]
        assert row["loss"] == gen2["val_loss"] and row["delta"] == pytest.approx(gen2["val_loss"] - pool["alone_mean"])
        assert gen2["teacher"]["path"].endswith(f"{cell}-gen1")
        ensemble = json.loads((out / f"{cell}-ensemble2" / "result.json").read_text())
        assert pool["ensemble"]["loss"] == ensemble["teacher"]["teacher_val_loss"]
    assert result["pools"][1]["epochs"] == 4
    law = result["law"]
    kappa = law["shares"]["kappa"]
    assert law["pairs"] == 2 and kappa["interval"] is None   # one repeated pool: nothing to resample
    assert any("no interval" in note for note in law["notes"])
    assert set(law["shares"]) == {"kappa", "lambda", "eta", "gamma", "theta"}
    code, table, _ = demo["second"]
    assert code == 0
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines if str(demo["root"]) not in line), table
    assert "nats/token" in table and f"kappa  {kappa['value']:.3f} " in table
    assert f"{result['pools'][1]['generations'][1]['loss']:.4f}" in table
    assert (out / "data_limited.md").read_text().count("\n") > 20
    assert json.loads((out / "data_limited.json").read_text())["law"]["shares"]["kappa"]["value"] == kappa["value"]


@pytest.mark.slow
def test_the_demo_fits_the_shipped_law_with_the_shipped_fitter(demo):
    """The same form and fitter as bench/laws/data_limited_fit.py: refitting the demo's runs through
    `laws.data_limited_fit.fit_law` gives its numbers, and its constants file is one `load_constants` reads."""
    from distillscale.laws.data_limited import load_constants
    from distillscale.laws.data_limited_fit import fit_law
    from distillscale.report.data_limited import measured_runs

    result = json.loads(demo["first"][1])
    refit = fit_law(measured_runs(demo["out"], str(demo["corpus"]), TINY), fallback=load_constants().shares)
    assert result["law"]["shares"]["lambda"]["value"] == pytest.approx(refit.value("lam"))
    assert result["law"]["shares"]["theta"]["value"] == pytest.approx(refit.value("theta"))
    mine = load_constants(demo["out"] / "data_limited_constants.json")
    assert mine.kappa.value == pytest.approx(refit.value("kappa")) and "demo --data-limited" in mine.source
    assert any("gamma" in note for note in result["law"]["notes"])   # one ensemble size: the shipped gamma kept


@pytest.mark.slow
def test_a_second_call_trains_nothing(demo):
    out = demo["out"]
    assert {path: path.stat().st_mtime_ns for path in out.glob("*/result.json")} == demo["mtimes"]
    assert len(demo["mtimes"]) == len(plan_runs(TINY))
    assert "completed (" not in demo["second"][2]  # no run reported as finishing now


@pytest.mark.parametrize("flag", [["--scale", "gpu"], ["--repetition"], ["--capacity-gap"]])
def test_the_other_demos_flags_are_refused_in_one_line(cli, tmp_path, flag):
    code, _, err = cli("demo", "--data-limited", *flag, "--out", tmp_path / "out")
    assert code == 2 and "--data-limited runs its own design: leave out " + flag[0] in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_corpus_too_small_for_the_pools_is_refused_saying_how_large_it_must_be(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    corpus = markov_corpus(tmp_path / "small", documents=4, words=50)
    code, _, err = cli("demo", "--data-limited", "--quick", "--data", corpus, "--out", tmp_path / "out")
    assert code == 2 and "fewer than the 2,048 unique tokens of the 1-epoch pool" in err
    assert "x as large (its teacher split must hold 2,048 tokens)" in err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_a_sweep_directory_of_another_corpus_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "data_limited_design.json").write_text(json.dumps({"data": "elsewhere", "design": {}}))
    corpus = markov_corpus(tmp_path / "corpus", documents=2, words=100)
    code, _, err = cli("demo", "--data-limited", "--quick", "--data", corpus, "--out", out)
    assert code == 2 and "holds a data-limited demo of another corpus or design" in err


def test_a_directory_it_did_not_make_is_refused(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = cli("demo", "--data-limited", "--out", out)
    assert code == 2 and "is not empty" in err and (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_failed_run_blocks_the_runs_that_need_it_and_the_demo_says_so(demo, tmp_path, monkeypatch):
    """The finished sweep copied, a generation removed and made to fail: the next generation is blocked,
    the table leaves both blank and names them, the exit status is 1; the other runs are reused."""
    import shutil

    from distillscale.cli import main

    out = tmp_path / "sweep"
    shutil.copytree(demo["out"], out, symlinks=True)
    for run_id in ("d1-u512-gen1", "d1-u512-gen2"):
        shutil.rmtree(out / run_id)
    real_args = design_module.run_args

    def failing(run, root, data, design):
        args = real_args(run, root, data, design)
        return (*args, "--no-such-flag") if run.run_id == "d1-u512-gen1" else args

    monkeypatch.setenv("DISTILLSCALE_CACHE", str(demo["root"] / "cache"))
    monkeypatch.setattr(design_module, "run_args", failing)
    code, table, err = _call(main, ["demo", "--data-limited", "--quick", "--data", str(demo["corpus"]),
                                    "--out", str(out)])
    assert code == 1 and "2 runs did not complete" in err
    assert "d1-u512-gen1 failed: see" in err and "d1-u512-gen2 blocked" in err
    assert "2 runs did not complete (their rows are blank): d1-u512-gen1, d1-u512-gen2" in table
    assert table.count("(did not complete)") == 2
    assert not (out / "d1-u512-gen2").exists() and (out / "d1-u512-gen1.log").read_text().strip()
