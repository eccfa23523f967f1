"""`distillscale plan` in one screen: at 80 columns the README's plan and a teacher-inference plan with a
given teacher fit in 45 lines (the answer first, one table, the run sheet as one table, short notes);
every warning of a problem is still printed by default, in one line each; `--explain` prints the full
plan, with what the default leaves out."""

from __future__ import annotations

import pytest

README_PLAN = ("plan", "--law", "busbridge2025", "--student-params", "546M", "--compute", "1e21")
GIVEN_TEACHER = (*README_PLAN, "--scenario", "teacher-inference", "--teacher-params", "7.75B", "--teacher-tokens",
                 "155B")
# What only --explain prints: the FLOPs of each phase, the solver, the teacher's loss interval, peak
# rates and warmup, what the targets assume.
FULL_ONLY = ("FLOPs student", "solver", "peak lr", "warmup:", "targets:")


@pytest.fixture
def at_80(cli, monkeypatch):
    """at_80(*args) -> (stdout's lines, stderr) of `distillscale ARGS` in a terminal 80 columns wide."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "50")

    def run(*args: str) -> tuple[list[str], str]:
        code, out, err = cli(*args)
        assert code == 0, err
        return out.splitlines(), err

    return run


@pytest.mark.parametrize("args", [README_PLAN, GIVEN_TEACHER], ids=["readme", "given teacher"])
def test_the_plan_fits_one_screen_answer_first_and_explain_prints_the_rest(args, at_80):
    lines, _ = at_80(*args)
    text = " ".join(" ".join(lines).split())
    assert len(lines) <= 45, "\n".join(lines)
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert lines[0].startswith(("best-case: ", "teacher-inference: "))   # the answer first: each scenario's verdict and Δ
    assert "no teacher" in text and "Run sheet" in text and "--lr" in text
    assert text.count("Run sheet") == 1 and text.count("Losses are nats/token") == 1   # each once
    assert not any(words in text for words in FULL_ONLY), text
    full, _ = at_80(*args, "--explain")
    explained = " ".join(" ".join(full).split())
    assert len(full) > len(lines) and all(words in explained for words in FULL_ONLY)
    assert "--explain" in text and "--explain" not in explained.split("Losses are")[0][-200:]


def test_every_warning_is_printed_by_default_in_one_line_each(at_80):
    """Each class of warning the full plan prints, in the default's notes too, one line of the output
    each (wrapped at most once at 80 columns): runs outside the rate law's data, a run that cannot be
    trained, a best size on the search's edge, a fixed batch's loss, repeated data; the plan's own
    warnings (far beyond the law's data) on stderr."""
    lines, err = at_80("plan", "--law", "busbridge2025", "--compute", "1e23", "--student-params", "546M",
                       "--scenario", "teacher-pretraining", "--batch-tokens", "64M", "--unique-tokens", "100B")
    for start in ("*: 3 of the 3 runs lie", "batch: losses and verdicts include your --batch-tokens' cost",
                  "losses after repeating your unique tokens"):
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)   # once, on one line
    assert "Repetition (teacher-pretraining" not in " ".join(lines)   # each run's check: --explain
    assert "warning:" in err
    lines, _ = at_80("plan", "--law", "busbridge2025", "--compute", "1e21", "--scenario", "best-case")
    edge = [i for i, line in enumerate(lines) if line.startswith("+: ")]   # named, or the table's + marks
    assert edge and "edge" in lines[edge[0]] and "widen with" in " ".join(lines[edge[0]:edge[0] + 2])
    assert any(line.startswith("best-case") and "+ " in line for line in lines)   # the table marks the size
    lines, _ = at_80("plan", "--law", "busbridge2025", "--compute", "1e21", "--student-params", "546M",
                     "--scenario", "best-case", "--batch-tokens", "1T")   # more than a run trains on: no run to train
    assert any(line.startswith("!: ") and "--explain" in line for line in lines), lines


def test_a_best_size_plan_with_every_option_fits_40_lines_and_says_a_fixed_batch_once(at_80):
    """A best-size plan with --gpu, --unique-tokens and --batch-tokens, stdout and stderr together as an
    80-column terminal wraps them, fits 40 lines: GPU time taken alike by every scenario said once, the
    run sheet's names unbroken, a fixed batch's penalty and the verdict it changes in one note (not again
    as warnings); --json keeps each warning."""
    import json
    import math

    args = ("plan", "--law", "busbridge2025", "--compute", "1e21", "--gpu", "h100", "--unique-tokens", "5B",
            "--batch-tokens", "1M")
    lines, err = at_80(*args)
    shown = lines + err.splitlines()
    assert sum(max(1, math.ceil(len(line) / 80)) for line in shown) <= 40, "\n".join(shown)
    text = " ".join(" ".join(shown).split())
    assert "each scenario and no teacher" in text and "teacher-pretraining-inference student" in text
    assert text.count("--batch-tokens") == 1 and "the batch you fixed changes the verdict" not in err
    record = json.loads("\n".join(at_80(*args, "--json")[0]))
    assert any(w.startswith("losses and verdicts include each run's penalty") for w in record["warnings"])
    moved = [w for w in record["warnings"] if w.startswith("the batch you fixed changes the verdict")]
    # a verdict the batch changes is said in the one note (and each in --json), none where none changes
    assert ("it changes " in text) == bool(moved), (text, moved)
