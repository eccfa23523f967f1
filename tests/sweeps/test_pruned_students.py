"""Sweeps with students pruned from their teachers (MiniMA's capacity-gap experiment): a spec's
[students] student_init = ["scratch", "pruned"] makes a `prune` run per student size and teacher and a
student starting from it; the runner, the dry run and the export know them."""

from __future__ import annotations

import json

import pytest

from distillscale.errors import UserError
from distillscale.model import ModelConfig
from distillscale.report.demo import builtin_spec, builtin_sweep
from distillscale.sweeps.dry_run import dry_run
from distillscale.sweeps.export import export_records
from distillscale.sweeps.spec import load_sweep_spec, resolve_sweep_spec
from distillscale.sweeps.store import RunStore

MODEL = {"aspect_ratio": 16, "head_dim": 16, "batch_size": 8, "device": "cpu"}


def spec(students=None, **sections) -> dict:
    table = {"name": "gap", "data": {"vocab_size": 320, "max_bytes": "300k", "seq_len": 32},
             "model": dict(MODEL), "teachers": {"n_layers": [3, 2, 1], "tokens_per_param": 4},
             "students": {"n_layers": [2, 1], "tokens_per_param": 8, "student_init": ["scratch", "pruned"],
                          **(students or {})},
             "distill": {"supervised_baselines": False}}
    table.update(sections)
    return table


def test_pruned_students_are_cut_from_every_teacher_at_least_their_size():
    sweep = resolve_sweep_spec(spec())
    runs = {run.run_id: run for run in sweep.runs}
    teachers = {run.run_id: run for run in sweep.runs if run.kind == "teacher"}
    prunes = [run for run in sweep.runs if run.kind == "pruned"]
    # depth 2 from teachers 3 and 2, depth 1 from all three
    assert sorted((p.n_layers, teachers[p.teacher_id].n_layers) for p in prunes) == [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3)]
    for prune in prunes:
        shape = ModelConfig(n_layers=prune.n_layers, vocab_size=320, aspect_ratio=16, head_dim=16)
        assert prune.command == "prune" and prune.depends_on == (prune.teacher_id,)
        assert {key: prune.settings[key] for key in ("n_layers", "d_model", "n_heads", "d_ff")} == {
            "n_layers": shape.n_layers, "d_model": shape.d_model, "n_heads": shape.n_heads, "d_ff": shape.d_ff}
        assert prune.settings["split"] == "student" and prune.settings["importance"] == "gradient"
        assert prune.non_embedding_params == shape.non_embedding_params
    students = [run for run in sweep.runs if run.kind == "student"]
    pruned = [run for run in students if run.init_id]
    scratch = [run for run in students if not run.init_id]
    assert len(scratch) == 6 and len(pruned) == 5  # scratch students learn from every teacher, smaller ones too
    for student in pruned:
        start = runs[student.init_id]
        assert start.kind == "pruned" and start.teacher_id == student.teacher_id  # distilled from its own teacher
        assert start.n_layers == student.n_layers and "-P-" in student.run_id
        assert student.depends_on == (student.teacher_id, student.init_id)
        assert list(runs).index(start.run_id) < list(runs).index(student.run_id)  # dependency order
        twin, = [s for s in scratch if s.teacher_id == student.teacher_id and s.n_layers == student.n_layers]
        assert twin.settings == student.settings and twin.run_id != student.run_id  # the start is in the id
        assert student.to_config()["init_id"] == start.run_id
    assert len(set(runs)) == len(sweep.runs)


def test_scratch_only_specs_keep_their_spec_and_run_ids():
    with_default = resolve_sweep_spec(spec({"student_init": "scratch"}))
    without = spec()
    del without["students"]["student_init"]
    plain = resolve_sweep_spec(without)
    assert [run.run_id for run in plain.runs] == [run.run_id for run in with_default.runs]
    assert "student_init" not in plain.sections["students"] and "prune" not in plain.sections
    assert all(run.kind != "pruned" and run.init_id is None for run in plain.runs)


def test_pruned_only_and_the_written_spec_reads_back(tmp_path):
    sweep = resolve_sweep_spec(spec({"student_init": ["pruned"]}, prune={"calibration_tokens": "2K",
                                                                        "depth_by": "last"}))
    assert all(run.init_id for run in sweep.runs if run.kind == "student")
    assert {run.settings["calibration_tokens"] for run in sweep.runs if run.kind == "pruned"} == {2000}
    path = tmp_path / "spec.toml"
    path.write_text(sweep.to_toml())
    assert [run.run_id for run in load_sweep_spec(path).runs] == [run.run_id for run in sweep.runs]


@pytest.mark.parametrize("change, message", [
    ({"prune": {"importance": "gradient"}, "students": {"n_layers": [1], "tokens_per_param": 8}},
     "[prune] sets how pruned students are cut"),
    ({"students": {"n_layers": [4], "tokens_per_param": 8, "student_init": "pruned"}},
     "n_layers = 4 is larger than every teaching run"),
    ({"students": {"n_layers": [1], "tokens_per_param": [4, 8], "student_init": "pruned"},
      "model": {**MODEL, "schedule": "wsd"}}, "one budget per size"),
    ({"students": {"n_layers": [1], "tokens_per_param": 8, "student_init": ["grown"]}}, "student_init"),
    ({"students": {"n_layers": [1], "tokens_per_param": 8, "student_init": []}}, "student_init is empty"),
    ({"prune": {"importance": "magic"}}, "prune.importance"),
    ({"repetition": {"epochs": [1, 2]}}, "[repetition] and pruned students"),
])
def test_bad_pruned_student_specs_are_one_line(change, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        resolve_sweep_spec(spec(**change) if "students" not in change else {**spec(), **change})
    assert "\n" not in str(error.value)


def test_the_dry_run_counts_the_prunes_and_the_pruned_students():
    sweep = resolve_sweep_spec(spec())
    plan = dry_run(sweep, gpus=0, workers=2)
    assert plan.counts() == {"train": 3, "distil": 11, "fork": 0, "prune": 5}
    by_id = {run.run_id: run for run in plan.runs}
    for run in sweep.runs:
        estimate = by_id[run.run_id]
        if run.kind == "pruned":  # a forward and an activation-only backward (gradient importance) per token
            teacher = next(r for r in sweep.runs if r.run_id == run.teacher_id)
            shape = ModelConfig(n_layers=teacher.n_layers, vocab_size=320, aspect_ratio=16, head_dim=16, max_seq_len=32)
            assert estimate.flops == 2 * shape.forward_flops_per_token(32) * 16384 and estimate.steps == 0
        elif run.init_id:  # the pruned student costs what its from-scratch twin does
            twin = next(r for r in sweep.runs if r.kind == "student" and not r.init_id and r.teacher_id == run.teacher_id
                        and r.n_layers == run.n_layers)
            assert estimate.flops == by_id[twin.run_id].flops
        assert estimate.start_seconds >= max((by_id[d].end_seconds for d in run.depends_on), default=0)


def test_the_builtin_capacity_gap_sweep():
    """demo --capacity-gap: 6 teacher sizes, 2 student sizes pruned from every teacher at least their
    size and from scratch from every teacher; the micro sweep's vocabulary."""
    sweep = builtin_sweep(capacity_gap=True)
    assert sweep.name == "capacity-gap" and sweep.sections["data"]["vocab_size"] == 512
    teachers = [run for run in sweep.runs if run.kind == "teacher"]
    students = [run for run in sweep.runs if run.kind == "student"]
    assert len({run.n_layers for run in teachers}) == 6
    sizes = {run.n_layers for run in students}
    assert len(sizes) == 2
    for size in sizes:
        pruned = [run for run in students if run.n_layers == size and run.init_id]
        scratch = [run for run in students if run.n_layers == size and not run.init_id]
        assert len(scratch) == 6 and len(pruned) == sum(t.n_layers >= size for t in teachers) >= 4
    with pytest.raises(UserError, match="--capacity-gap runs its own micro sweep"):
        builtin_sweep(quick=True, capacity_gap=True)
    assert load_sweep_spec(builtin_spec(capacity_gap=True)).name == "capacity-gap"


TINY = """
name = "tiny-pruned"
[data]
vocab_size = 320
max_bytes = "200k"
seq_len = 32
[model]
aspect_ratio = 16
head_dim = 16
batch_size = 8
eval_tokens = "2k"
eval_every = 0
save_every = 1000
device = "cpu"
[teachers]
n_layers = [2]
tokens_per_param = [0.5]
[students]
n_layers = [1]
tokens_per_param = [2]
student_init = ["pruned"]
[prune]
calibration_tokens = "1K"
[distill]
kd_weight = 0.5
supervised_baselines = false
"""


@pytest.mark.usefixtures("cache_dir")
def test_a_sweep_prunes_then_distils_from_the_pruned_model(tmp_path, cli):
    path = tmp_path / "spec.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert cli("sweep", "run", path, "--out", out, "--workers", "1")[0] == 0
    with RunStore(out) as store:
        records = {record.id: record for record in store.records()}
    assert {record.status for record in records.values()} == {"completed"}
    prune, = [r for r in records.values() if r.kind == "pruned"]
    student, = [r for r in records.values() if r.kind == "student"]
    prune_dir = out / "runs" / prune.id
    assert (prune_dir / "prune.json").is_file() and prune.result["pruned_shape"]["n_layers"] == 1
    config = json.loads((out / "runs" / student.id / "config.json").read_text())
    assert config["config"]["student_init"] == str(prune_dir.absolute())  # started from the sweep's pruned model
    assert student.result["non_embedding_params"] == prune.result["pruned_shape"]["non_embedding_params"]
    rows = export_records(out)
    assert [row["kind"] for row in rows] == ["teacher", "student"]  # a pruned model is not a training run
    assert rows[1]["student_init"] == str(prune_dir.absolute())
    code, status, _ = cli("sweep", "status", out, "--json")
    flops = sum(record.result["flops"] for record in records.values())
    assert prune.result["flops"] > 0 and json.loads(status)["compute"]["flops_spent"] == pytest.approx(flops)
    planned = {run.run_id: run for run in dry_run(load_sweep_spec(path), gpus=0, workers=1).runs}
    assert planned[prune.id].flops == prune.result["flops"]  # the dry run counts what prune.json does
    for record in records.values():  # and each run's result.json FLOPs, its evaluations apart
        assert planned[record.id].run_flops == pytest.approx(record.result["flops"], rel=1e-9), record.kind
        assert record.kind == "pruned" or planned[record.id].evaluation_flops > 0
    # running again adopts every finished run, the prune included
    before = (prune_dir / "prune.json").stat().st_mtime_ns
    code, out_text, _ = cli("sweep", "run", path, "--out", out, "--workers", "1")
    assert code == 0 and (prune_dir / "prune.json").stat().st_mtime_ns == before
