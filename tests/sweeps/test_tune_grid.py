"""A sweep spec's [tune] grid (issue 53 item 5): every teacher run once per (lr, batch_size) pair, WSD
forks kept within each pair, counted by `sweep plan`; bad grids refused in one line; the export's lr
and batch_tokens columns, the table `distillscale fit hyperparameters` fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillscale.sweeps.placement import VISIBLE_GPUS_ENV
from distillscale.sweeps.spec import load_sweep_spec

GRID = """
name = "grid"
[data]
vocab_size = 320
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
lr = 0.003
schedule = "{schedule}"
eval_tokens = "2k"
eval_every = 0
[teachers]
n_layers = [1, 2]
tokens_per_param = {budgets}
{extra}
"""
TUNE = "[tune]\nlr = [0.001, 0.003, 0.01]\nbatch_size = [4, 8]\n"


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    monkeypatch.setenv(VISIBLE_GPUS_ENV, "")


def grid_spec(tmp_path, schedule="cosine", budgets="[4]", extra=TUNE) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(GRID.format(schedule=schedule, budgets=budgets, extra=extra), encoding="utf-8")
    return path


def test_a_grid_spec_dry_run_counts_its_runs(cli, tmp_path):
    """2 sizes x 3 lr x 2 batch sizes = 12 runs, each with its own id, lr and batch; `sweep plan`
    counts and costs all 12 (a batch of 4 sequences takes twice the steps of 8 for the same tokens)."""
    path = grid_spec(tmp_path, budgets="[3]")  # 3 N: 49,536 tokens at 1 layer, half a step of 256 over
    spec = load_sweep_spec(path)
    assert len(spec.runs) == 12 and len({run.run_id for run in spec.runs}) == 12
    cells = {(run.n_layers, run.settings["lr"], run.settings["batch_size"]) for run in spec.runs}
    assert cells == {(n, lr, b) for n in (1, 2) for lr in (0.001, 0.003, 0.01) for b in (4, 8)}
    assert {run.run_id.split("-")[3] for run in spec.runs} == {"lr0.001", "lr0.003", "lr0.01"}
    # Every grid point of a cell trains the same D, in whole steps of each batch (128 and 256 tokens), so
    # that `fit hyperparameters` sees one cell per (N, D): M x N rounded up to a whole largest step.
    for n_layers in (1, 2):
        tokens = {run.tokens for run in spec.runs if run.n_layers == n_layers}
        params = spec.runs[0 if n_layers == 1 else -1].non_embedding_params
        assert len(tokens) == 1 and tokens.pop() == -(-3 * params // 256) * 256
    code, out, err = cli("sweep", "plan", path, "--gpus", "none", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["counts"] == {"train": 12, "distil": 0, "fork": 0}
    assert {run["tokens"] == run["steps"] * (128 if "-B4-" in run["run_id"] else 256) for run in plan["runs"]} == {True}
    assert plan["tune"] == {"lr": [0.001, 0.003, 0.01], "batch_size": [4, 8], "points": 6}
    assert plan["flops"] == pytest.approx(sum(run["flops"] for run in plan["runs"]))
    steps = {(run["run_id"].split("-")[1], run["run_id"].split("-")[4]): run["steps"] for run in plan["runs"]}
    assert steps["L1", "B4"] == 2 * steps["L1", "B8"]
    code, out, _ = cli("sweep", "plan", path, "--gpus", "none")
    text = " ".join(out.split())
    assert code == 0 and "12 runs (12 train, 0 distil, 0 fork)" in text
    assert (f"lr x batch grid [tune]: 3 lr x 2 batch sizes = 6 runs per (size, tokens) cell of [teachers]; "
            f"12 runs and {plan['flops']:.3g} FLOPs in all") in text
    # The grid is kept in the resolved spec (spec.toml), which reads back to the same runs.
    written = tmp_path / "written.toml"
    written.write_text(spec.to_toml(), encoding="utf-8")
    assert [run.run_id for run in load_sweep_spec(written).runs] == [run.run_id for run in spec.runs]


def test_under_wsd_each_grid_point_forks_its_own_longest_run(tmp_path):
    """With two budgets per size, each (size, lr, batch) is one parent and one fork of it: 12 + 12."""
    spec = load_sweep_spec(grid_spec(tmp_path, schedule="wsd", budgets="[2, 8]"))
    parents = [run for run in spec.runs if run.parent_id is None]
    forks = [run for run in spec.runs if run.parent_id is not None]
    assert len(parents) == len(forks) == 12
    by_id = {run.run_id: run for run in spec.runs}
    for fork in forks:
        parent = by_id[fork.parent_id]
        assert (parent.n_layers, parent.settings["lr"], parent.settings["batch_size"]) == \
               (fork.n_layers, fork.settings["lr"], fork.settings["batch_size"])
        assert parent.settings["fork_tokens"] == [fork.tokens] and fork.tokens < parent.tokens


def test_a_grid_of_one_key_keeps_the_models_other_value_and_no_grid_keeps_the_ids(tmp_path):
    spec = load_sweep_spec(grid_spec(tmp_path, extra="[tune]\nlr = [0.001, 0.003, 0.01]\n"))
    assert sorted((run.n_layers, run.settings["lr"]) for run in spec.runs) == \
           [(1, 0.001), (1, 0.003), (1, 0.01), (2, 0.001), (2, 0.003), (2, 0.01)]
    assert {run.settings["batch_size"] for run in spec.runs} == {8}
    single = load_sweep_spec(grid_spec(tmp_path, extra="[tune]\nlr = [0.001, 0.003, 0.01]\nbatch_size = 4\n"))
    assert {run.settings["batch_size"] for run in single.runs} == {4}  # one value: a list of one
    plain = load_sweep_spec(grid_spec(tmp_path, extra=""))
    assert "tune" not in plain.sections and all("-lr" not in run.run_id for run in plain.runs)
    at_batch = load_sweep_spec(grid_spec(tmp_path, extra="[tune]\nlr = [0.001, 0.003, 0.01]\nbatch_size = [8]\n"))
    # the grid point with the same settings as the spec without a grid (its D already whole steps): the same
    # hashes, the tag added (a grid of one point is refused: `fit hyperparameters` needs 3 rates per cell)
    assert [run.run_id[-8:] for run in at_batch.runs if run.settings["lr"] == 0.003] == \
           [run.run_id[-8:] for run in plain.runs]


def test_with_a_width_rule_the_grid_lists_the_rates_at_the_reference_width(tmp_path):
    extra = "[tune]\nlr = [0.001, 0.002, 0.01]\n"
    path = grid_spec(tmp_path, extra=extra)
    path.write_text(path.read_text().replace("lr = 0.003\n", "lr = 0.003\nlr_width_exponent = -1.0\n"
                                             "lr_reference_width = 32\n"), encoding="utf-8")
    spec = load_sweep_spec(path)  # widths 32 (1 layer) and 64 (2 layers): the rate halves
    assert sorted((run.n_layers, run.settings["lr"]) for run in spec.runs) == \
           [(1, 0.001), (1, 0.002), (1, 0.01), (2, 0.0005), (2, 0.001), (2, 0.005)]
    assert {run.run_id.split("-")[3] for run in spec.runs if run.n_layers == 2} == {"lr0.0005", "lr0.001", "lr0.005"}


@pytest.mark.parametrize("tune, message", [
    ("lr = []", "invalid 'tune': lr is empty: list at least one value, e.g. lr = [1e-3, 3e-3, 1e-2]"),
    ("batch_size = []", "invalid 'tune': batch_size is empty"),
    ("lr = [0.001, 0.0]", "invalid 'tune': lr values must be positive numbers, got 0"),
    ("lr = [-0.001]", "lr values must be positive numbers, got -0.001"),
    ("lr = [inf]", "lr values must be positive numbers, got inf"),
    ("batch_size = [8, 0]", "batch_size values must be positive numbers, got 0"),
    ("lr = [0.001, 0.001]", "lr lists a value twice: [0.001, 0.001]"),
    ("batch_size = [4, 8, 4]", "batch_size lists a value twice: [4, 8, 4]"),
    ("", "[tune] lists no values: give lr = [...]"),
    ("lrs = [0.001]", "unknown key 'tune.lrs'"),
    ("lr = [0.001]\n[students]\nn_layers = [1]\ntokens_per_param = 4",
     "[tune] grids the [teachers] ladder, and [students] would distil every student from every grid point: add "
     "ladder = \"students\""),
    ('lr = [0.001]\nladder = "students"', '[tune] ladder = "students" grids the students from scratch and their '
                                          'baselines: add a [students] section'),
    ('lr = [0.001]\nladder = "student"', "invalid 'tune.ladder'"),
    ('lr = [0.001]\nladder = "students"\n[students]\nn_layers = [1]\ntokens_per_param = 4\n'
     'student_init = ["scratch", "pruned"]', "run pruned students and [repetition] in a sweep of their own"),
])
def test_bad_grids_are_refused_in_one_line(cli, tmp_path, tune, message):
    path = grid_spec(tmp_path, extra="[tune]\n" + tune + "\n")
    code, out, err = cli("sweep", "plan", path, "--gpus", "none")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


TINY = """
name = "tiny-grid"
[data]
vocab_size = 320
max_bytes = "200k"
seq_len = 32
[model]
aspect_ratio = 32
head_dim = 16
batch_size = 8
eval_tokens = "2k"
eval_every = 0
device = "cpu"
[teachers]
n_layers = [1]
tokens_per_param = 0.5
[tune]
lr = [0.001, 0.003, 0.01]
batch_size = [4, 8]
"""


@pytest.mark.usefixtures("cache_dir")
def test_a_tuned_sweeps_export_carries_each_runs_lr_and_batch_tokens(cli, tmp_path):
    """A real grid of six 1-layer runs (32-64 steps each): the export's lr and batch_tokens are each
    run's own (result.json: its peak rate, its tokens per step), and `fit hyperparameters` fits the
    export as written (one cell: its rate within the grid at the batch of its best run, 0.003 at 128
    tokens by 0.14 nats or more on this corpus; 2 batch sizes cannot locate B*, and it says so)."""
    from distillscale.sweeps.export import RECORD_COLUMNS
    from distillscale.tables import read_table

    spec = tmp_path / "grid.toml"
    spec.write_text(TINY, encoding="utf-8")
    code, _, err = cli("sweep", "run", spec, "--out", tmp_path / "sweep", "--workers", "1")
    assert code == 0, err
    code, out, err = cli("sweep", "export", tmp_path / "sweep", "--format", "csv", "--out", tmp_path / "runs.csv")
    assert code == 0 and "wrote 6 runs" in out, err
    table = read_table(tmp_path / "runs.csv")
    assert table.columns == RECORD_COLUMNS and RECORD_COLUMNS[-4:] == ("lr", "batch_tokens", "lr_unit", "hidden_lr")
    assert set(table.values("lr_unit")) == {"mup-base:256"}   # the family's --lr: muP's base rate (issue 63)
    rows = table.numeric(["non_embedding_params", "tokens", "lr", "batch_tokens", "val_loss"])
    assert len(rows) == 6
    points = sorted(zip(rows.columns["lr"], rows.columns["batch_tokens"]))
    assert points == [(lr, b) for lr in (0.001, 0.003, 0.01) for b in (128, 256)]  # batch_size x seq_len 32
    assert all(loss > 0 for loss in rows.columns["val_loss"])
    code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--params-col", "non_embedding_params",
                         "--loss-col", "val_loss", "--drop-invalid", "--bootstrap", "0", "--no-backtest", "--json")
    assert code == 0, err  # the export as it is, with the flags the guide gives
    law = json.loads(out)["law"]
    fitted, = law["fit"]["cells"]
    assert fitted["runs"] == 3 and 0.001 < fitted["lr"] < 0.01 and fitted["located"]    # the runs at its batch
    assert law["fixed_batch_tokens"] == fitted["batch_tokens"] == 128 and not fitted["batch_located"]
    assert any("2 batch sizes cannot locate B*" in note for note in law["fit"]["notes"])
    # `report` on the grid fits its laws on the cell's best point only, and says so
    code, out, err = cli("report", tmp_path / "sweep", "--out", tmp_path / "report", "--bootstrap", "0")
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["runs"]["supervised"] == 1 and report["runs"]["off_optimum"] == 5
    assert "an lr x batch grid: the laws are fitted on each (size, tokens) cell's best grid point (5 runs" in \
        " ".join(out.split())


def test_an_export_goes_into_fit_hyperparameters(cli, tmp_path):
    """An export of a grid (synthetic here: a convex surface in (ln lr, ln B) around Step Law's optimum
    per cell, 2 sizes x 2 budgets x 5 lr x 3 batch sizes, and a diverged run without a loss) fits with
    the flags the export's docstring gives; the law recovers the surface's optimum."""
    import math

    from distillscale.sweeps.export import RECORD_COLUMNS, write_records

    def optimum(n, d):
        return 1.79 * n ** -0.713 * d ** 0.307, 0.58 * d ** 0.571

    records = []
    for n in (1e6, 4e6):
        for d in (2e8, 8e8):
            lr_star, batch_star = optimum(n, d)
            for i in range(-2, 3):
                for j in range(-1, 2):
                    lr, batch = lr_star * 2.0 ** i, round(batch_star * 2.0 ** j)
                    loss = 3.0 + 0.02 * math.log(lr / lr_star) ** 2 + 0.01 * math.log(batch / batch_star) ** 2
                    records.append(dict.fromkeys(RECORD_COLUMNS) | {
                        "run_id": f"t-{n:g}-{d:g}-{i}-{j}", "kind": "teacher", "status": "completed",
                        "non_embedding_params": n, "tokens": d, "lr": lr, "batch_tokens": batch, "val_loss": loss})
    records.append(records[0] | {"run_id": "t-diverged", "status": "diverged", "lr": 1.0, "val_loss": None})
    write_records(records, tmp_path / "runs.csv", "csv")
    code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--params-col", "non_embedding_params",
                         "--loss-col", "val_loss", "--drop-invalid", "--bootstrap", "0", "--no-backtest",
                         "--out", tmp_path / "law.json", "--json")
    assert code == 0, err
    assert json.loads(out)["n_dropped"] == 1
    _, out, _ = cli("predict", "hyperparameters", "--law", "steplaw2025", "--params", "2M", "--tokens", "400M", "--json")
    expected = json.loads(out)  # the surface's optimum: Step Law's, which generated it
    code, out, err = cli("predict", "hyperparameters", "--law", tmp_path / "law.json", "--params", "2M",
                         "--tokens", "400M", "--json")
    assert code == 0, err
    predicted = json.loads(out)
    assert predicted["lr"] == pytest.approx(expected["lr"], rel=0.05)
    assert predicted["batch_tokens"] == pytest.approx(expected["batch_tokens"], rel=0.05)


def test_a_students_grid_tunes_baselines_and_students_beside_them(cli, tmp_path):
    """ladder = "students": 2 teachers at [model]'s point; 1 student size x 2 budgets (WSD) x 3 lr x 2 batch:
    12 baselines and 12 students of each teacher, each student at its baseline's point and forking the
    student of its own point: whether distillation moves the optimum is measured on one grid."""
    extra = ('[students]\nn_layers = [1]\ntokens_per_param = [2, 8]\n[distill]\nteach_from = "longest"\n'
             '[tune]\nlr = [0.001, 0.003, 0.01]\nbatch_size = [4, 8]\nladder = "students"\n')
    path = grid_spec(tmp_path, schedule="wsd", budgets="[4]", extra=extra)
    spec = load_sweep_spec(path)
    kinds = {kind: [run for run in spec.runs if run.kind == kind] for kind in ("teacher", "baseline", "student")}
    assert [len(kinds[kind]) for kind in kinds] == [2, 12, 24]
    assert {(run.settings["lr"], run.settings["batch_size"]) for run in kinds["teacher"]} == {(0.003, 8)}
    points = {(lr, b) for lr in (0.001, 0.003, 0.01) for b in (4, 8)}
    for kind in ("baseline", "student"):
        assert sorted((run.settings["lr"], run.settings["batch_size"]) for run in kinds[kind]) == \
               sorted(list(points) * (2 if kind == "baseline" else 4))
    by_id = {run.run_id: run for run in spec.runs}
    for run in kinds["baseline"] + kinds["student"]:
        assert "-lr" in run.run_id
        if run.parent_id:
            parent = by_id[run.parent_id]
            assert (parent.settings["lr"], parent.settings["batch_size"], parent.teacher_id) == \
                   (run.settings["lr"], run.settings["batch_size"], run.teacher_id)
    assert len(by_id) == len(spec.runs)
    code, out, err = cli("sweep", "plan", path, "--gpus", "none")
    text = " ".join(out.split())
    assert code == 0, err
    assert "38 runs (8 train, 12 distil, 18 fork)" in text
    assert "6 runs per (size, tokens) cell of [students] (each baseline, and each student of each teacher)" in text
    assert json.loads(cli("sweep", "plan", path, "--gpus", "none", "--json")[1])["tune"] == \
           {"lr": [0.001, 0.003, 0.01], "batch_size": [4, 8], "ladder": "students", "points": 6}


def test_fit_hyperparameters_where_fits_a_students_grids_baselines_and_students_apart(cli, tmp_path):
    """A students' grid exports baselines and students together; --where fits each apart (synthetic
    surfaces: the students' optimal rate 2x the baselines'); a filter matching no run is refused."""
    import math

    from distillscale.sweeps.export import RECORD_COLUMNS, write_records

    records = []
    for kind, optimum in (("baseline", 0.004), ("student", 0.008)):
        for n in (1e5, 4e5):
            for i in range(-2, 3):
                lr = optimum * (n / 1e5) ** -0.5 * 2.0 ** i
                loss = 3.0 + 0.02 * math.log(lr / (optimum * (n / 1e5) ** -0.5)) ** 2
                records.append(dict.fromkeys(RECORD_COLUMNS) | {
                    "run_id": f"{kind}-{n:g}-{i}", "kind": kind, "status": "completed", "non_embedding_params": n,
                    "tokens": 20 * n, "lr": lr, "batch_tokens": 2048, "val_loss": loss})
    write_records(records, tmp_path / "runs.csv", "csv")
    rates = {}
    for kind in ("baseline", "student"):
        code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--params-col", "non_embedding_params",
                             "--loss-col", "val_loss", "--bootstrap", "0", "--no-backtest", "--where",
                             f"kind == '{kind}'", "--json")
        assert code == 0, err
        law = json.loads(out)["law"]
        assert [cell["runs"] for cell in law["fit"]["cells"]] == [5, 5] and kind in law["source"]
        rates[kind] = law["fit"]["cells"][0]["lr"]
    assert rates["baseline"] == pytest.approx(0.004, rel=0.05) and rates["student"] == pytest.approx(0.008, rel=0.05)
    code, out, err = cli("fit", "hyperparameters", tmp_path / "runs.csv", "--where", "kind == 'teacher'")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--where \"kind == 'teacher'\" matches none of the 20 runs" in err
