"""A law that failed its own held-out check (one-sided errors, or far fewer held-out runs inside its
intervals than their level) says so on the line of every verdict it gives, in the demo's plan and in
its plan for your teacher, not only in a warning above them."""

from __future__ import annotations

import numpy as np

from distillscale.laws.calibrate import HeldOutRun, HoldoutCheck
from distillscale.report.held_out import failed_checks, verdict_clause

# A supervised law's held-out runs as a demo saw them: predicted 6.47% too high on average, 2 of 6
# inside their 90% intervals.
ERRORS = (0.05, 0.06, 0.07, 0.065, 0.07, 0.0732)


def check(errors, covered) -> HoldoutCheck:
    """Held-out runs of loss 3.0 predicted `errors` too high, those `covered` inside their intervals."""
    runs = [HeldOutRun(row, 3.0, 3.0 * (1 + e), (2.9, 3.5) if inside else (3.05, 3.5), 1.0, None)
            for row, (e, inside) in enumerate(zip(errors, covered))]
    return HoldoutCheck("N > 1e6", "chinchilla", np.arange(20), runs, 0.9)


def test_a_biased_law_with_few_runs_inside_its_intervals_failed_its_check():
    failed = check(ERRORS, [True, True, False, False, False, False]).failed
    assert failed == ("held-out runs predicted 6.47% too high on average (6 of 6 over-predicted), "
                      "2 of 6 inside their 90% intervals")
    assert check(ERRORS, [True] * 6).failed == "held-out runs predicted 6.47% too high on average (6 of 6 over-predicted)"
    mixed = (0.03, -0.02, 0.01, -0.01, 0.02, -0.03)
    assert check(mixed, [True] * 6).failed is None
    assert check(mixed, [True] * 4 + [False] * 2).failed is None          # 4 of 6 at 90%: 1 in 9, not far below
    assert check(mixed, [True] * 3 + [False] * 3).failed == "3 of 6 inside their 90% intervals"  # 1 in 63
    assert check(ERRORS, [True, True] + [False] * 4).to_dict()["failed"].startswith("held-out runs predicted 6.47%")


def test_the_verdict_lines_say_which_law_failed_its_check(capsys):
    from distillscale.report.commands import _print_plan
    from distillscale.report.teacher import teacher_lines

    record = check(ERRORS, [True, True, False, False, False, False]).to_dict()
    failed = failed_checks({"supervised": record, "distillation": {"skipped": "one teacher"}})
    assert failed == {"supervised": record["failed"]}
    clause = verdict_clause(failed)
    assert clause == f"; the supervised law failed its held-out check ({record['failed']})"
    assert verdict_clause({}) == ""
    plan = {"plans": {"pretrain": {"verdict": "pretrain", "student_loss": 3.1, "student_loss_interval": {},
                                   "supervised_loss": 3.0, "supervised_loss_interval": {}}},
            "failed": {}, "target_params": 1e6, "target_compute": 1e15, "target": {}, "failed_checks": failed}
    _print_plan(plan)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain"))
    assert line.endswith("nats/token" + clause)
    section = {"path": "teacher", "loss": {"nats_per_token": 3.2, "standard_error": 0.01, "bits_per_byte": None},
               "plan": {}, "verdict": "pretrain", "student_params": 1e5, "student_tokens": 1e6, "student_loss": 3.1,
               "student_interval": None, "supervised_loss": 3.0, "distill_command": "distillscale distill --config x",
               "plan_command": "distillscale plan", "failed_checks": failed}
    verdict = next(line for line in teacher_lines(section) if line.lstrip().startswith("pretrain"))
    # under a pretrain verdict the next step is training alone, the distillation config only for a trial
    assert (f"3.0000 without a teacher{clause}; train the student alone instead: the laws put it below the distilled "
            "one; to distil anyway: distillscale distill --config x") in verdict
    distil = next(line for line in teacher_lines({**section, "verdict": "distill"}) if "distill (" in line
                  or line.lstrip().startswith("distill"))
    assert "; distil it: distillscale distill --config x" in distil
    passed = teacher_lines({**section, "failed_checks": {}})
    assert not any("failed its held-out check" in line for line in passed)


def test_the_report_page_says_under_its_verdicts_which_law_failed_its_check():
    from distillscale.report.page import _answer

    record = check(ERRORS, [True, True, False, False, False, False]).to_dict()
    failed = failed_checks({"supervised": record})
    plan = {"plans": {"best-case": {"verdict": "pretrain", "student_loss": 3.1, "student_loss_interval": {},
                                    "supervised_loss": 3.0, "supervised_loss_interval": {}}},
            "failed": {}, "target_params": 1e6, "target_compute": 1e15, "target": {}, "failed_checks": failed}
    page = _answer({"plan": plan, "extrapolation_check": {}})
    assert "Every verdict above: the supervised law failed its held-out check (held-out runs predicted 6.47% too high" in page
    assert "failed its held-out check" not in _answer({"plan": {**plan, "failed_checks": {}}, "extrapolation_check": {}})
