"""Every plan the docs show in one screen (45 rows of an 80-column terminal, stdout and stderr together,
the answer first), one list of warnings that the text and `--json` both read, and `teacher` saying
what `plan` says for the same numbers."""

from __future__ import annotations

import json
import math

import pytest

import distillscale.console as console_module
from distillscale.model.config import ModelConfig

README_PLAN = ("plan", "--law", "busbridge2025", "--student-params", "546M", "--compute", "1e21")
GIVEN = ("--teacher-params", "7.75B", "--teacher-tokens", "155B")
CONFIGURATIONS = {
    "readme": README_PLAN,
    "unique tokens": (*README_PLAN, "--unique-tokens", "1B"),
    "gpu": (*README_PLAN, "--gpu", "h100", "--price-per-gpu-hour", "2"),
    "on-policy": (*README_PLAN, "--on-policy", *GIVEN),
    "batch": (*README_PLAN, "--batch-tokens", "4M"),
    "far from the data": ("plan", "--law", "busbridge2025", "--student-params", "10M", "--compute", "1e17"),
    "pruned start": ("plan", "--law", "busbridge2025", "--student-params", "546M", "--compute", "1e20",
                     "--student-init", "pruned", "--teacher-params", "7.75B", "--teacher-tokens", "2T"),
    "teacher mixture": ("plan", "--law", "busbridge2025", "--student-params", "546M", "--compute", "1e20",
                        "--teacher-mixture", "7.75B,1.82B", "--teacher-loss", "1.95"),
    "unique tokens and gpu": (*README_PLAN, "--unique-tokens", "1B", "--gpu", "h100"),
    "unique tokens and batch": (*README_PLAN, "--unique-tokens", "1B", "--batch-tokens", "4M"),
}


def screen_rows(text: str, width: int = 80) -> int:
    """The rows `text` takes in a terminal `width` columns wide (a longer line wraps)."""
    return sum(max(1, math.ceil(len(line.rstrip()) / width)) for line in text.splitlines())


@pytest.fixture
def at_80(cli, monkeypatch):
    """at_80(*args) -> (stdout, stderr) of `distillscale ARGS` on consoles 80 columns wide."""
    for console in (console_module.console, console_module.err_console):
        monkeypatch.setattr(console, "_width", 80)

    def run(*args: str) -> tuple[str, str]:
        code, out, err = cli(*args)
        assert code == 0, err
        return out, err

    return run


def small_student(tmp_path) -> str:
    """A 2-layer student far below the law's smallest model, as a run directory saves it."""
    config = ModelConfig(vocab_size=32000, d_model=128, n_layers=2, n_heads=4, max_seq_len=256)
    (tmp_path / "model_config.json").write_text(json.dumps(config.model_dump()))
    return str(tmp_path)


@pytest.mark.parametrize("name", [*CONFIGURATIONS, "student model"])
def test_every_plan_fits_one_screen_answer_first(at_80, tmp_path, name):
    args = CONFIGURATIONS.get(name) or ("plan", "--law", "busbridge2025", "--student-model", small_student(tmp_path),
                                        "--compute", "1e21")
    out, err = at_80(*args)
    assert screen_rows(out) + screen_rows(err) <= 45, out + err
    first = out.splitlines()[0]
    assert first.startswith(("best-case: ", "teacher-inference: ", "too close to call", "distill", "pretrain",
                             "supervised", "answer on the ", "answer with no teacher")), first
    assert first.startswith("answer ") == ("--unique-tokens" in args)   # a pool's plan: its one answer first
    text = " ".join((out + err).split())
    paragraphs = [line.strip() for line in (out + err).splitlines()
                  if len(line.strip()) > 60 and set(line.strip()) != {"─"}]   # two tables' rules may be alike
    assert len(paragraphs) == len(set(paragraphs)), "a paragraph printed twice"
    assert text.count("warning:") == len(set(line for line in err.splitlines() if line.startswith("warning:")))


def test_warnings_of_one_class_are_one_line_and_explain_lists_each(at_80):
    out, err = at_80(*CONFIGURATIONS["unique tokens"])
    [repeated] = [line for line in err.splitlines() if "unique tokens" in line]
    assert repeated.startswith("warning: 10 of the plan's runs repeat its 1B unique tokens") and "--explain" in repeated
    assert "Repetition (" not in out   # each run's check: --explain
    out, err = at_80(*CONFIGURATIONS["unique tokens"], "--explain")
    assert sum(line.startswith("warning: ") and "the plan repeats its 1B unique tokens" in line
               for line in err.splitlines()) == 10
    # the model trained without a teacher is one run for every scenario: its check said once
    assert " ".join(out.split()).count("(+13.01%; R_D* = 15.4") == 1
    out, err = at_80(*CONFIGURATIONS["far from the data"])
    [far] = [line for line in err.splitlines() if line.startswith("warning:")]
    assert far.startswith("warning: 6 of the plan's sizes and tokens lie below busbridge2025's data, up to 31x")


PYTHON = {"unique tokens": dict(student_params=546e6, compute=1e21, unique_tokens=1e9),
          "far from the data": dict(student_params=10e6, compute=1e17),
          "batch": dict(student_params=546e6, compute=1e21, batch_tokens=4e6)}


@pytest.mark.parametrize("name", list(PYTHON))
def test_the_text_and_json_say_the_same_warnings_from_one_list(at_80, name):
    """Each warning of the plan's list (`Plan.warnings`) is `--json`'s `warnings`, each once, and in the
    text: in full with --explain, by default in full or in its class's one line (`warning_lines`)."""
    import distillscale as ds
    from distillscale.planning.warnings import warning_lines

    result = ds.plan("busbridge2025", **PYTHON[name])
    out, _ = at_80(*CONFIGURATIONS[name], "--json")
    listed = json.loads(out)["warnings"]
    assert listed and listed == [str(w) for w in result.warnings] and len(listed) == len(set(listed))
    explained, brief = (" ".join("".join(at_80(*CONFIGURATIONS[name], *more)).split()) for more in (("--explain",), ()))
    for message in listed:
        assert " ".join(message.split()) in explained, message
    from distillscale.planning.brief import said_in_brief

    said = said_in_brief(result)   # what the one-screen view says in its own note (a fixed batch's)
    lines = warning_lines([w for w in result.warnings if w not in said])
    assert len(lines) <= len(listed)
    for line in lines:
        assert " ".join(line.split()) in brief, line
    if said:
        assert "batch: losses and verdicts include your --batch-tokens' cost" in brief


def test_repetition_warnings_are_in_the_json(at_80):
    out, err = at_80(*CONFIGURATIONS["unique tokens"], "--json")
    warnings = json.loads(out)["warnings"]
    assert sum("the plan repeats its 1B unique tokens" in w for w in warnings) == 10


def _candidates(tmp_path, text: str, name: str = "teachers.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _classes(warnings: list[str]) -> set:
    """What each warning says outside the data, whatever it names: (law, side, what, how far)."""
    return {(w.law, w.side, w.noun, round(w.ratio, 6)) for w in warnings if hasattr(w, "ratio")}


def test_teacher_and_plan_warn_of_the_same_numbers(tmp_path):
    """A teacher far past the law's data for a small student, ranked at a budget by `teacher` and planned
    by `plan` with the same teacher: the same quantities outside the data, as far."""
    import distillscale as ds
    from distillscale.planning.teacher_plan import rank_teachers_for

    table = _candidates(tmp_path, "name,teacher_params,teacher_tokens\nbig,700B,1T\n")
    ranking = rank_teachers_for("busbridge2025", student_params=10e6, compute=1e19, candidates=[table])
    planned = ds.plan("busbridge2025", student_params=10e6, compute=1e19,
                      teacher=ds.ExistingTeacher(700e9, tokens=1e12))
    assert _classes(ranking.warnings) and _classes(ranking.warnings) == _classes(planned.warnings)
    assert ranking.student_tokens == pytest.approx(planned.plans[0].student_tokens, rel=1e-9)


def test_teacher_says_train_alone_when_the_student_alone_beats_every_candidate(at_80, tmp_path):
    table = _candidates(tmp_path, "name,teacher_loss,teacher_params\nweak,6.41,1B\nweaker,7.0,1B\n")
    out, _ = at_80("teacher", "--student-params", "546M", "--student-tokens", "10.92B", "--candidates", table)
    first = " ".join(out.split("against training alone")[0].split())
    assert first.startswith("train alone: the student alone reaches 2.5149 nats/token, better than the best "
                            "candidate, weak (student 6.4100)"), first
    # the headline is the best candidate's verdict against training alone, read off Delta's interval
    assert "against training alone: pretrain, Δ +3.8951" in " ".join(out.split())
    assert "best teacher" not in out
    out, _ = at_80("teacher", "--student-params", "546M", "--student-tokens", "10.92B", "--candidates", table,
                   "--json")
    assert json.loads(out)["alone_is_best"] is True
    out, _ = at_80("teacher", "--student-params", "546M", "--student-tokens", "10.92B")
    assert out.startswith("best teacher: ")


def test_teacher_flags_a_smaller_teacher_and_merges_duplicates(at_80, tmp_path):
    table = _candidates(tmp_path, "name,teacher_params,teacher_tokens\nsmall,100M,2B\nbig,7B,140B\nbig,7B,140B\n")
    out, err = at_80("teacher", "--student-params", "546M", "--student-tokens", "10.92B", "--candidates", table,
                     "--json")
    ranking = json.loads(out)
    assert [c["name"] for c in ranking["candidates"]] == ["small", "big"]
    assert "'big' given more than once with the same numbers: ranked once" in ranking["warnings"]
    assert ("teacher 'small' (100M parameters) is smaller than its 546M-parameter student" in ranking["warnings"])
    assert all(w in err for w in ranking["warnings"])


def test_teacher_checks_a_tables_losses_as_plan_checks_teacher_loss(cli, tmp_path):
    table = _candidates(tmp_path, "name,teacher_loss\nbad,100\n")
    code, _, err = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B", "--candidates", table)
    planned = cli("plan", "--law", "busbridge2025", "--student-params", "546M", "--compute", "1e21",
                  "--teacher-params", "7B", "--teacher-loss", "100")
    assert code == 2 and planned[0] == 2 and len(err.strip().splitlines()) == 1
    assert "100 is not below 10.38 nats/token, a uniform guess" in err and "not below 10.38" in planned[2]


@pytest.mark.parametrize("text", ['{\n  "teacher_loss": 2.0\n}\n', '[{"teacher_loss": 2.0}]\n'])
def test_a_json_document_is_not_a_candidate_table_said_in_one_line(cli, tmp_path, text):
    path = _candidates(tmp_path, text, "teachers.json")
    code, out, err = cli("teacher", "--student-params", "546M", "--student-tokens", "10.92B", "--candidates", path)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert f"{path} is a JSON document, not a table of candidate teachers" in err and "JSONL" in err
