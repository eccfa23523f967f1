"""Students that started from somewhere (student_init: pruned, pretrained) in the report: kept out of
the distillation law's fit, shown beside from-scratch students, with the measured multiplier."""

import math

import pytest

from distillscale.report.calibration import started_students
from distillscale.report.commands import started_line
from distillscale.report.page import _started
from distillscale.report.runs import split_runs
from distillscale.sweeps.export import RECORD_COLUMNS


def _student(run_id, D, loss, start=None, teacher="t1", N=1e5):
    record = dict.fromkeys(RECORD_COLUMNS)
    record.update(run_id=run_id, kind="student", status="completed", non_embedding_params=N, tokens=D,
                  val_loss=loss, teacher_id=teacher, teacher_loss=3.9, on_policy_fraction=0.0, student_init=start)
    return record


RECORDS = [_student("s1", 1e5, 4.0), _student("s2", 1e6, 3.0), _student("s3", 1e6, 2.9, teacher="t2"),
           _student("p1", 1e5, 3.5, start="runs/pruned"), _student("p2", 1e5, 2.5, start="runs/pruned")]


def test_started_students_are_kept_out_of_the_fit_and_measured_against_scratch():
    runs = split_runs(RECORDS, "test")
    assert [r["run_id"] for r in runs.students] == ["s1", "s2", "s3"]
    assert [r["run_id"] for r in runs.started] == ["p1", "p2"]
    rows = {r["run_id"]: r for r in started_students(runs)["runs"]}
    # p1's 3.5 lies halfway between s1 (1e5 tokens, 4.0) and s2 (1e6, 3.0): 10^5.5 tokens, log-linear;
    # s3 has another teacher and is not compared
    assert rows["p1"]["token_multiplier"] == pytest.approx(math.sqrt(10))
    assert rows["p1"]["scratch_runs"] == ["s1", "s2"] and rows["p1"]["scratch_loss_same_tokens"] == 4.0
    # p2 beats every from-scratch student: only a lower bound, said in words
    assert rows["p2"]["token_multiplier"] is None and "more than 10x" in rows["p2"]["token_multiplier_note"]
    line = started_line(started_students(runs))
    assert "kept out of the distillation law's fit" in line and "p1 3.16x" in line
    page = _started(started_students(runs))
    assert "outside the law&#x27;s fit" in page or "outside the law's fit" in page
    assert "3.16x" in page and "runs/pruned" in page


def test_a_sweep_without_started_students_reports_none():
    runs = split_runs(RECORDS[:3], "test")
    assert runs.started == [] and started_students(runs) == {}
