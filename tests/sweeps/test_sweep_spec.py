"""Sweep specs: the three protocols resolve into the right runs with stable ids; bad specs give one clear line."""

from __future__ import annotations

import math
import textwrap

import pytest

from distillscale.errors import UserError
from distillscale.model import ModelConfig
from distillscale.sweeps.spec import load_sweep_spec, resolve_sweep_spec

MODEL = {"aspect_ratio": 32, "head_dim": 16, "batch_size": 8, "device": "cpu"}


def spec(**sections) -> dict:
    table = {"name": "micro", "data": {"vocab_size": 320, "max_bytes": "300k", "seq_len": 32},
             "model": dict(MODEL), "teachers": {"n_layers": [2, 3], "tokens_per_param": 20}}
    table.update(sections)
    return table


def params(n_layers: int) -> int:
    return ModelConfig(n_layers=n_layers, aspect_ratio=32, head_dim=16, vocab_size=320).non_embedding_params


def test_fixed_m_teachers_and_student_isoflop_profiles():
    sweep = resolve_sweep_spec(spec(students={"n_layers": [1, 2], "budgets": ["1e12", 3e12]}))
    kinds = [run.kind for run in sweep.runs]
    assert kinds == ["teacher"] * 2 + ["baseline"] * 4 + ["student"] * 8
    teachers = {run.run_id: run for run in sweep.runs if run.kind == "teacher"}
    for run in teachers.values():
        assert run.tokens == round(20 * params(run.n_layers)) and run.budget is None
        assert run.settings["split"] == "teacher" and run.command == "train"
    for run in sweep.runs[2:]:
        assert run.budget in (1e12, 3e12) and run.tokens_per_param is None
        assert run.tokens == round(run.budget / (6 * params(run.n_layers)))  # D = C / 6N
    students = [run for run in sweep.runs if run.kind == "student"]
    assert {run.teacher_id for run in students} == set(teachers)
    assert all(run.command == "distill" and run.depends_on == (run.teacher_id,) for run in students)
    # A student trains on the student half with its teacher's tokenizer: no split or vocabulary of its own.
    assert all("split" not in run.settings and "vocab_size" not in run.settings for run in students)
    assert all(run.settings["kd"] == "forward-kl" for run in students)
    assert len({run.run_id for run in sweep.runs}) == len(sweep.runs)


def test_isoflop_teachers_and_fixed_m_students():
    sweep = resolve_sweep_spec(spec(teachers={"n_layers": [2, 3], "budgets": [1e13]},
                                    students={"n_layers": [1], "tokens_per_param": [20, 80]},
                                    distill={"supervised_baselines": False, "top_k": 16}))
    assert [run.kind for run in sweep.runs] == ["teacher"] * 2 + ["student"] * 4
    assert sweep.runs[0].run_id.startswith("t-L2-C10T-")
    student = sweep.runs[-1]
    assert student.tokens == round(80 * params(1)) and student.settings["top_k"] == 16
    assert student.run_id.startswith("s-L1-M80-T3-")


def test_fixed_m_teachers_and_fixed_m_students_cross_every_pair():
    sweep = resolve_sweep_spec(spec(students={"n_layers": [1], "tokens_per_param": [20, 40, 80]}))
    students = [run for run in sweep.runs if run.kind == "student"]
    assert sorted((run.tokens_per_param, run.teacher_id) for run in students) == sorted(
        (m, teacher.run_id) for m in (20, 40, 80) for teacher in sweep.runs[:2])


def test_run_ids_are_stable_and_follow_what_the_run_computes():
    table = spec(students={"n_layers": [1], "tokens_per_param": 20})
    ids = [run.run_id for run in resolve_sweep_spec(table).runs]
    assert ids == [run.run_id for run in resolve_sweep_spec(spec(students={"n_layers": [1],
                                                                            "tokens_per_param": 20})).runs]
    bookkeeping = spec(students={"n_layers": [1], "tokens_per_param": 20})
    bookkeeping["model"]["log_every"] = 3
    assert [run.run_id for run in resolve_sweep_spec(bookkeeping).runs] == ids
    changed = spec(students={"n_layers": [1], "tokens_per_param": 20})
    changed["model"]["lr"] = 3e-3
    assert set(run.run_id for run in resolve_sweep_spec(changed).runs).isdisjoint(ids)
    # A new teacher recipe changes the students distilled from it, not the student baselines.
    teacher_only = spec(students={"n_layers": [1], "tokens_per_param": 20})
    teacher_only["teachers"]["tokens_per_param"] = 40
    new_ids = {run.kind: run.run_id for run in resolve_sweep_spec(teacher_only).runs}
    old_ids = {run.kind: run.run_id for run in resolve_sweep_spec(table).runs}
    assert new_ids["baseline"] == old_ids["baseline"] and new_ids["student"] != old_ids["student"]


def test_written_spec_reads_back_to_the_same_runs(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (tmp_path / "spec.toml").write_text(textwrap.dedent("""
        name = "micro"
        [data]
        path = "corpus"
        vocab_size = 320
        [model]
        aspect_ratio = 32
        head_dim = 16
        [teachers]
        n_layers = [1]
        tokens_per_param = 20
        [students]
        n_layers = [1]
        budgets = ["1e12"]
    """))
    sweep = load_sweep_spec(tmp_path / "spec.toml")
    assert sweep.runs[0].settings["data"] == str(corpus)  # relative to the spec file
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "spec.toml").write_text(sweep.to_toml())
    again = load_sweep_spec(tmp_path / "copy" / "spec.toml")
    assert [run.run_id for run in again.runs] == [run.run_id for run in sweep.runs]
    assert again.sections == sweep.sections


@pytest.mark.parametrize("change, message", [
    ({"teacher": {"n_layers": [1]}}, "unknown key 'teacher'"),
    ({"model": {**MODEL, "learning_rate": 0.01}}, "unknown key 'model.learning_rate'"),
    ({"distill": {"temprature": 2.0}}, "unknown key 'distill.temprature'"),
    ({"teachers": {"n_layers": [2, -1], "tokens_per_param": 20}}, "n_layers must be positive depths, got -1"),
    ({"teachers": {"n_layers": [2], "tokens_per_param": 0}}, "tokens_per_param must be a positive"),
    ({"teachers": {"n_layers": [2], "budgets": ["-1e15"]}}, "budget must be a positive finite number, got '-1e15'"),
    ({"teachers": {"n_layers": [], "tokens_per_param": 20}}, "n_layers is empty"),
    ({"teachers": {"n_layers": [2], "budgets": []}}, "budgets is empty"),
    ({"teachers": {"n_layers": [2, 2], "tokens_per_param": 20}}, "n_layers lists a value twice"),
    ({"teachers": {"n_layers": [2]}}, "give exactly one of tokens_per_param"),
    ({"teachers": {"n_layers": [2], "tokens_per_param": 20, "budgets": [1e15]}}, "give exactly one of"),
    ({"teachers": {"n_layers": [3], "budgets": [1e15]}, "students": {"n_layers": [1], "budgets": [1e14]}},
     "both IsoFLOP profiles"),
    ({"model": {**MODEL, "head_dim": 24}}, "teachers.n_layers = 2: invalid model config"),
    ({"model": {**MODEL, "lr": -1}}, "invalid 'model.lr': Input should be greater than 0 (got -1)"),
    ({"model": {**MODEL, "eval_tokens": 8}}, "--eval-tokens 8 is below one sequence"),
    ({"distill": {"kd": "kl"}}, "invalid 'distill.kd'"),
    ({"name": "my sweep/1"}, "invalid 'name': String should match pattern"),
])
def test_bad_specs_name_the_problem(change, message):
    with pytest.raises(UserError) as caught:
        resolve_sweep_spec(spec(**change), source="s.toml")
    assert str(caught.value).startswith("s.toml: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_sections_and_unreadable_files(tmp_path):
    table = spec()
    del table["teachers"]
    with pytest.raises(UserError, match="missing section \\[teachers\\]"):
        resolve_sweep_spec(table)
    with pytest.raises(UserError, match="not found"):
        load_sweep_spec(tmp_path / "absent.toml")
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(UserError, match="is not valid TOML"):
        load_sweep_spec(tmp_path / "broken.toml")


def test_sweep_run_refuses_a_bad_spec_before_writing_anything(cli, tmp_path):
    (tmp_path / "bad.toml").write_text('name = "x"\n[teachers]\nn_layers = [0]\ntokens_per_param = 20\n')
    code, out, err = cli("sweep", "run", tmp_path / "bad.toml", "--out", tmp_path / "sweep")
    assert code == 2
    assert err.strip() == f"distillscale: error: {tmp_path / 'bad.toml'}: invalid 'teachers': " \
                          "n_layers must be positive depths, got 0"
    assert not (tmp_path / "sweep").exists()


def test_wsd_turns_one_sizes_budgets_into_a_parent_and_its_forks():
    sweep = resolve_sweep_spec(spec(model={**MODEL, "schedule": "wsd"},
                                    teachers={"n_layers": [2], "tokens_per_param": [5, 20, 10]},
                                    students={"n_layers": [1], "tokens_per_param": [10, 40]}))
    teachers = [run for run in sweep.runs if run.kind == "teacher"]
    parent, *forks = teachers
    assert parent.tokens_per_param == 20 and parent.parent_id is None and parent.depends_on == ()
    assert parent.settings["fork_tokens"] == [round(10 * params(2)), round(5 * params(2))]
    assert [fork.tokens_per_param for fork in forks] == [10, 5]
    assert all(fork.parent_id == parent.run_id and fork.depends_on == (parent.run_id,) for fork in forks)
    assert all("fork_tokens" not in fork.settings for fork in forks)
    # One warmup for the whole family: 10% of the shortest run's steps (5 x params(2) tokens, 256 a step).
    warmup = math.ceil(0.1 * math.ceil(round(5 * params(2)) / 256))
    assert {run.settings["warmup_steps"] for run in teachers} == {warmup}
    student_parent, student_fork = [run for run in sweep.runs
                                    if run.kind == "student" and run.teacher_id == forks[0].run_id]
    assert student_parent.tokens_per_param == 40 and student_fork.parent_id == student_parent.run_id
    assert student_fork.depends_on == (student_parent.teacher_id, student_parent.run_id)
    baseline_parent, baseline_fork = [run for run in sweep.runs if run.kind == "baseline"]
    assert baseline_fork.parent_id == baseline_parent.run_id
    assert len({run.run_id for run in sweep.runs}) == len(sweep.runs) == 3 + 2 + 3 * 2
    runs = sweep.runs
    assert all(runs.index(next(r for r in runs if r.run_id == needed)) < runs.index(run)
               for run in runs for needed in run.depends_on)  # parents and teachers come first


def test_seeds_repeat_the_cheapest_sizes():
    sweep = resolve_sweep_spec(spec(teachers={"n_layers": [3, 2, 4], "tokens_per_param": 20, "seeds": 3,
                                              "seeded_sizes": 2}))
    seeds = {}
    for run in sweep.runs:
        seeds.setdefault(run.n_layers, []).append(run.settings["seed"])
    assert seeds == {2: [0, 1, 2], 3: [0, 1, 2], 4: [0]}
    assert len({run.run_id for run in sweep.runs}) == 7


def test_seeds_may_repeat_the_largest_sizes_instead():
    sweep = resolve_sweep_spec(spec(teachers={"n_layers": [3, 2, 4], "tokens_per_param": 20, "seeds": 2,
                                              "seeded": "largest"}))
    seeds = {}
    for run in sweep.runs:
        seeds.setdefault(run.n_layers, []).append(run.settings["seed"])
    assert seeds == {2: [0], 3: [0], 4: [0, 1]}
    assert sweep.sections["teachers"]["seeded"] == "largest"
    smallest = resolve_sweep_spec(spec(teachers={"n_layers": [3, 2, 4], "tokens_per_param": 20, "seeds": 2}))
    assert "seeded" not in smallest.sections["teachers"]  # earlier sweeps keep their spec.toml


def test_cosine_specs_keep_their_run_ids_and_spec_file():
    sweep = resolve_sweep_spec(spec())
    assert "schedule" not in sweep.sections["model"] and "seeds" not in sweep.sections["teachers"]
    assert all("schedule" not in run.settings for run in sweep.runs)


def test_students_may_learn_from_each_teacher_sizes_longest_run_only():
    sweep = resolve_sweep_spec(spec(model={**MODEL, "schedule": "wsd"},
                                    teachers={"n_layers": [1, 2], "tokens_per_param": [5, 20]},
                                    students={"n_layers": [1], "tokens_per_param": [10]},
                                    distill={"teach_from": "longest", "supervised_baselines": False}))
    longest = {run.run_id for run in sweep.runs if run.kind == "teacher" and run.tokens_per_param == 20}
    assert {run.teacher_id for run in sweep.runs if run.kind == "student"} == longest and len(longest) == 2
    assert "teach_from" not in resolve_sweep_spec(spec()).sections["distill"]


def test_a_token_window_drops_the_budgets_outside_it():
    sweep = resolve_sweep_spec(spec(teachers={"n_layers": [1, 3], "tokens_per_param": [1, 4, 16, 64],
                                              "min_tokens": "50K", "max_tokens": "2M"}))
    grid = {(run.n_layers, run.tokens_per_param) for run in sweep.runs}
    assert all(50_000 <= run.tokens <= 2_000_000 for run in sweep.runs)
    assert (1, 1) not in grid and (1, 64) in grid and (3, 1) in grid and (3, 64) not in grid
    with pytest.raises(UserError, match=r"n_layers = 1 \(16,\d+ parameters\) has no run between"):
        resolve_sweep_spec(spec(teachers={"n_layers": [1], "tokens_per_param": [1], "min_tokens": "1M"}))


def test_a_wsd_student_fork_with_an_on_policy_start_before_its_cooldown_is_refused_up_front():
    """It was refused only when each fork started, after its parent had trained."""
    students = {"n_layers": [1], "tokens_per_param": [10, 20]}
    model = {**MODEL, "schedule": "wsd"}
    with pytest.raises(UserError, match=r"on_policy_start = 0.25 with \[model\] schedule = \"wsd\".*set on_policy_start = 0, or at least 0.8"):
        resolve_sweep_spec(spec(model=model, students=students,
                                distill={"on_policy_fraction": 0.5, "on_policy_start": 0.25}))
    for start in (0.0, 0.85):  # from the first step, or in the cooldown only: forks equal runs from scratch
        sweep = resolve_sweep_spec(spec(model=model, students=students,
                                        distill={"on_policy_fraction": 0.5, "on_policy_start": start}))
        assert any(run.kind == "student" and run.parent_id for run in sweep.runs)
    resolve_sweep_spec(spec(students=students, distill={"on_policy_fraction": 0.5, "on_policy_start": 0.25}))


def test_on_policy_settings_reach_the_students_distill_config(tmp_path):
    """[distill] on-policy keys are the students' `distill --on-policy-*` settings: the config file the
    runner writes for a student carries them; supervised runs and off-policy sweeps (spec and ids) are as before."""
    from distillscale.settings import load_config, to_toml
    from distillscale.training.config import DistillConfig

    students = {"n_layers": [1], "tokens_per_param": 20}
    on = {"on_policy_fraction": 0.5, "on_policy_temperature": 0.7, "on_policy_start": 0.25,
          "on_policy_prompt_tokens": 8, "on_policy_continuation_tokens": 16}
    sweep = resolve_sweep_spec(spec(students=students, distill={"kd": "reverse-kl", **on}))
    runs = {run.kind: run for run in sweep.runs}
    # As the runner launches a student: its settings and links, resolved, written as `distill --config`.
    links = {"out": str(tmp_path / "student"), "teacher": str(tmp_path / "teacher")}
    path = tmp_path / "student.toml"
    path.write_text(to_toml(load_config(DistillConfig, None, runs["student"].settings | links)))
    config = load_config(DistillConfig, path, None)
    assert {key: getattr(config, key) for key in on} == on and config.kd == "reverse-kl"
    assert not any(key.startswith("on_policy") for key in runs["baseline"].settings)
    assert sweep.sections["distill"]["on_policy_fraction"] == 0.5

    off = resolve_sweep_spec(spec(students=students, distill={"kd": "reverse-kl"}))
    assert not any(key.startswith("on_policy") for key in off.sections["distill"])
    assert not any(key.startswith("on_policy") for run in off.runs for key in run.settings)
    on_ids = {run.kind: run.run_id for run in sweep.runs}
    off_ids = {run.kind: run.run_id for run in off.runs}
    assert on_ids["baseline"] == off_ids["baseline"] and on_ids["student"] != off_ids["student"]


@pytest.mark.parametrize("distill, message", [
    ({"on_policy_temperature": 0.5}, "--on-policy-temperature needs --on-policy-fraction > 0"),
    ({"on_policy_fraction": 0.5, "on_policy_prompt_tokens": 40}, "exceed the window"),
    ({"on_policy_fraction": 1.5}, "distill.on_policy_fraction"),
])
def test_bad_on_policy_settings_are_refused_with_one_line(distill, message):
    with pytest.raises(UserError, match=message):
        resolve_sweep_spec(spec(students={"n_layers": [1], "tokens_per_param": 20}, distill=distill))
