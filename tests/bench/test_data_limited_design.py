"""The data-limited measurement's design (bench/distillation/data_limited.py), without training: its cells
and sizes, the needs graph, each ensemble's student reading its members, how a cell's tuning picks the
next setting from the runs before it, and `collect`/`summary` on a fake store filled in two steps."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import REPO_ROOT, load_bench

OLD_RUNS = REPO_ROOT / "bench" / "data" / "data_limited_runs.json"


@pytest.fixture(scope="module")
def bench():
    return load_bench("distillation/data_limited.py")


@pytest.fixture(scope="module")
def runs(bench):
    return {run.run_id: run for run in bench.plan_runs(bench.REGIME)}


def test_the_cells_are_large_against_their_pools_at_two_sizes(bench, runs):
    design = bench.REGIME
    cells = {run.cell for run in runs.values()}
    assert cells == {f"d{d}-u{p}" for d in (2, 3) for p in ("4K", "16K", "256K")}
    per_token = {cell: design.params(int(cell[1])) / design.unique_tokens(cell.split("-u")[1]) for cell in cells}
    assert per_token["d3-u4K"] > 27 and per_token["d2-u4K"] > 10 and per_token["d3-u16K"] > 10
    assert design.epochs("4K") > 60 and design.epochs("16K") == 16 and design.epochs("256K") == 1
    for run in runs.values():  # a larger teacher is 2-4x its student
        if run.role == "larger":
            assert 2 <= design.params(run.depth) / design.params(run.cell_depth) <= 4


def test_every_cell_has_three_seeds_alone_chains_of_six_and_ensembles_of_2_4_8_on_repeated_pools(runs):
    for cell in {run.cell for run in runs.values()}:
        mine = [run for run in runs.values() if run.cell == cell]
        assert len([run for run in mine if run.role == "alone"]) >= 3
        chains = [run for run in mine if run.role == "chain"]
        assert chains and all(run.teachers == (f"{cell}-alone-s{run.chain}",) for run in chains)
        if not cell.endswith("256K"):
            assert len(chains) == 2 and all(run.generations >= 6 for run in chains)
            assert sorted(run.members for run in mine if run.role == "ensemble") == [2, 4, 8]
        assert len([run for run in mine if run.role == "student-of-larger"]) == 1


def test_the_needs_graph_is_acyclic_and_every_run_waits_for_its_cells_tuning(bench, runs):
    for run in runs.values():
        assert set(run.needs) <= set(runs), run.run_id
        if run.role not in ("grid", "larger"):
            tuning = bench.tuning_ids(bench.REGIME.pool_plan(run.pool), run.cell_depth)
            assert set(tuning) <= set(run.needs), run.run_id
        assert set(run.teachers) <= set(run.needs)
    order, seen = [], set()

    def visit(run_id, path=()):
        assert run_id not in path, f"cycle through {run_id}"
        if run_id not in seen:
            for need in runs[run_id].needs:
                visit(need, path + (run_id,))
            seen.add(run_id)
            order.append(run_id)

    for run_id in runs:
        visit(run_id)
    assert len(order) == len(runs)


def test_every_ensemble_student_reads_its_members_and_waits_for_them(runs):
    for run in (run for run in runs.values() if run.role == "ensemble"):
        members = tuple(f"{run.cell}-alone-s{seed}" for seed in range(1, run.members + 1))
        assert run.teachers == members and set(members) <= set(run.needs)
        assert all(runs[m].role == "alone" and runs[m].cell == run.cell for m in members)


def test_a_larger_teacher_is_the_next_sizes_run_alone_or_the_best_of_its_own_grid(runs):
    assert runs["d2-u4K-larger"].candidates == ("d3-u4K-alone-s1",)
    assert runs["d3-u4K-larger"].candidates == ("d3-u4K-larger-x0.5", "d3-u4K-larger-x1", "d3-u4K-larger-x2")
    assert {runs[c].depth for c in runs["d3-u4K-larger"].candidates} == {4}
    assert runs["d3-u4K-from-larger"].teachers == ("d3-u4K-larger",)


def fake_run(root, run_id, weight_decay, dropout=0.0, loss=4.0, teacher=None, unique=3968):
    path = root / run_id
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": {"weight_decay": weight_decay, "dropout": dropout}}))
    result = {"status": "completed" if loss is not None else "diverged", "val_loss": loss, "tokens": 256000,
              "unique_tokens": unique, "epochs": 256000 / unique, "non_embedding_params": 55632,
              "train_seconds": 10.0, "wall_seconds": 12.0, "teacher": teacher}
    (path / "result.json").write_text(json.dumps(result))


def test_the_tuning_extends_past_the_end_where_the_best_lies_refines_it_then_tries_dropout(bench, runs, tmp_path):
    design = bench.REGIME
    for wd, loss in ((0.05, 5.2), (0.1, 4.8), (0.2, 4.6), (0.4, 4.5)):
        fake_run(tmp_path, f"d2-u4K-wd{wd:g}", wd, loss=loss)
    assert bench.resolve(runs["d2-u4K-wd-ext"], tmp_path, design) == (0.8, 0.0)
    fake_run(tmp_path, "d2-u4K-wd-ext", 0.8, loss=None)  # diverged: never the best
    assert bench.resolve(runs["d2-u4K-wd-lo"], tmp_path, design) == pytest.approx((0.4 / math.sqrt(2), 0.0))
    assert bench.resolve(runs["d2-u4K-wd-hi"], tmp_path, design) == pytest.approx((0.4 * math.sqrt(2), 0.0))
    fake_run(tmp_path, "d2-u4K-wd-lo", 0.4 / math.sqrt(2), loss=4.4)
    fake_run(tmp_path, "d2-u4K-wd-hi", 0.4 * math.sqrt(2), loss=4.7)
    assert bench.resolve(runs["d2-u4K-do0.1"], tmp_path, design) == pytest.approx((0.4 / math.sqrt(2), 0.1))
    fake_run(tmp_path, "d2-u4K-do0.1", 0.4 / math.sqrt(2), 0.1, loss=4.3)
    fake_run(tmp_path, "d2-u4K-do0.2", 0.4 / math.sqrt(2), 0.2, loss=4.35)
    assert bench.resolve(runs["d2-u4K-alone-s3"], tmp_path, design) == pytest.approx((0.4 / math.sqrt(2), 0.1))
    assert bench.resolve(runs["d2-u4K-chain1"], tmp_path, design) == pytest.approx((0.4 / math.sqrt(2), 0.1))


def test_no_extension_when_the_best_lies_inside_the_ladder_and_one_below_when_at_the_low_end(bench, runs, tmp_path):
    for wd, loss in ((0.05, 5.2), (0.1, 4.1), (0.2, 4.6), (0.4, 4.9)):
        fake_run(tmp_path / "inside", f"d2-u4K-wd{wd:g}", wd, loss=loss)
        fake_run(tmp_path / "low", f"d2-u4K-wd{wd:g}", wd, loss=10 - loss)
    assert bench.resolve(runs["d2-u4K-wd-ext"], tmp_path / "inside", bench.REGIME) is None
    assert bench.resolve(runs["d2-u4K-wd-ext"], tmp_path / "low", bench.REGIME) == (0.025, 0.0)


def fill_cell(bench, root, seeds, generations):
    """The d2-u4K cell of a fake corpus: tuning, `seeds` alone, `generations` of chain 1, the ensemble of 2."""
    for wd, loss in ((0.05, 5.2), (0.1, 4.6), (0.2, 4.8), (0.4, 4.9)):
        if not (root / f"d2-u4K-wd{wd:g}").exists():
            fake_run(root, f"d2-u4K-wd{wd:g}", wd, loss=loss)
    (root / "d2-u4K-wd-ext.skipped").write_text("inside\n")
    for run_id, wd, dropout, loss in (("wd-lo", 0.0707, 0, 4.7), ("wd-hi", 0.1414, 0, 4.65),
                                      ("do0.1", 0.1, 0.1, 4.5), ("do0.2", 0.1, 0.2, 4.55)):
        if not (root / f"d2-u4K-{run_id}").exists():
            fake_run(root, f"d2-u4K-{run_id}", wd, dropout, loss=loss)
    for seed in seeds:
        if not (root / f"d2-u4K-alone-s{seed}").exists():
            fake_run(root, f"d2-u4K-alone-s{seed}", 0.1, 0.1, loss=4.5 + 0.01 * (seed - 2))
    for g in generations:
        if not (root / f"d2-u4K-chain1/generation-{g}").exists():
            fake_run(root, f"d2-u4K-chain1/generation-{g}", 0.1, 0.1, loss=4.4 - 0.01 * g,
                     teacher={"teacher_val_loss": 4.49, "non_embedding_params": 55632})


def test_collect_reads_what_has_finished_and_reads_more_when_run_again(bench, tmp_path, capsys):
    store, out = tmp_path / "store", tmp_path / "data" / "runs.json"
    root = store / "doc-en"
    root.mkdir(parents=True)
    (store / bench.DESIGN_FILE).write_text(json.dumps({"design": "regime"}))
    fill_cell(bench, root, seeds=(1, 2, 3), generations=(1,))
    first = bench.collect(store, out, ["collect", "--store", str(store)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(first))
    cell = first["cells"]["doc-en/d2-u4K"]
    assert cell["alone"]["n"] == 3 and cell["alone"]["sd"] == pytest.approx(0.01)
    assert cell["best_weight_decay"] == 0.1 and cell["best_dropout"] == 0.1 and cell["extension"] == "not needed"
    assert cell["weight_decay_at_grid_end"] is None and cell["params_per_unique_token"] == pytest.approx(55632 / 3968)
    chain = [r for r in first["runs"] if r["role"] == "chain"]
    assert [(r["run_id"], r["generation"], r["teachers"]) for r in chain] == [
        ("d2-u4K-chain1/generation-1", 1, ["d2-u4K-alone-s1"])]
    old_keys = set(json.loads(OLD_RUNS.read_text())["runs"][0])
    assert all(old_keys <= set(r) for r in first["runs"])  # the committed runs' schema, and more
    assert {"dropout", "epochs", "cell", "chain", "params_per_unique_token", "command"} <= set(first["runs"][0])

    fill_cell(bench, root, seeds=range(1, 9), generations=range(1, 4))
    fake_run(root, "d2-u4K-ensemble2", 0.1, 0.1, loss=4.45,
             teacher={"teacher_val_loss": 4.40, "teachers": [{"teacher_val_loss": 4.49}, {"teacher_val_loss": 4.50}]})
    second = bench.collect(store, out, ["collect", "--store", str(store)])
    assert second["cells"]["doc-en/d2-u4K"]["alone"]["n"] == 8
    assert [r["generation"] for r in second["runs"] if r["role"] == "chain"] == [1, 2, 3]
    ensemble = next(r for r in second["runs"] if r["role"] == "ensemble")
    assert (ensemble["teacher_val_loss"], ensemble["member_val_losses"], ensemble["members"]) == (4.40, [4.49, 4.50], 2)

    lines = bench.summary(second)
    text = "\n".join(lines)
    sd = second["cells"]["doc-en/d2-u4K"]["alone"]["sd"]
    mean = second["cells"]["doc-en/d2-u4K"]["alone"]["mean"]
    assert f"alone {mean:.4f} +- {sd:.4f} nats/token (8 seeds)" in text
    assert f"g1 {100 * (4.39 - mean) / mean:+.2f}% ({(4.39 - mean) / sd:+.1f} sd*)" in text
    assert "ensemble of 2: " in text and "its student" in text
    assert lines[-2:] == ["cells whose gains exceed 2 seed sds: 1 of 1",
                          "  doc-en/d2-u4K: c1g1, c1g2, c1g3, ens2, ens2-student"]


def test_a_store_of_another_design_is_refused(bench, tmp_path):
    bench.store_design(tmp_path, "smoke")
    with pytest.raises(SystemExit, match="holds the smoke design's runs"):
        bench.store_design(tmp_path, "regime")
