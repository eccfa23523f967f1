"""The report's capacity-gap section of a sweep with students pruned from their teachers (MiniMA's
experiment), from a tiny fake export: each start's optimal teacher per student size, k with its
interval, 2.5 set against it; report.json's record, the page section, the terminal line, the figure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.laws import ComputeSettings
from distillscale.report.calibration import (ReportCalibration, CalibrationSettings, PrunedCapacityGap,
                                             pruned_capacity_gap)
from distillscale.report.commands import print_summary
from distillscale.report.figures import plot_capacity_gap_pruned
from distillscale.report.page import _capacity_gap_pruned
from distillscale.report.runs import load_runs
from distillscale.sweeps.export import RECORD_COLUMNS, format_records

TEACHERS = [1e4, 2e4, 4e4, 8e4, 16e4, 32e4]
K = {"pruned": 2.5, "scratch": 8.0}


def write_export(tmp_path):
    """Students of 3 sizes from 6 teachers: losses quadratic in log N_T, lowest at N_T = 2.5 N_S for
    students pruned from their teacher (a start with prune.json, only from teachers at least their
    size) and at 8 N_S from scratch."""
    records = []
    for init, k in K.items():
        for size in (1e4, 2e4, 4e4):
            for teacher in TEACHERS:
                if init == "pruned" and teacher < size:
                    continue
                start = None
                if init == "pruned":
                    start = tmp_path / f"p-{size:g}-{teacher:g}"
                    start.mkdir()
                    (start / "prune.json").write_text("{}")
                record = dict.fromkeys(RECORD_COLUMNS)
                record.update(run_id=f"s-{init}-{size:g}-{teacher:g}", kind="student", status="completed",
                              non_embedding_params=size, tokens=6 * size, teacher_id=f"t-{teacher:g}",
                              teacher_params=teacher, teacher_loss=3.5, on_policy_fraction=0.0,
                              val_loss=4.0 + 0.03 * np.log(teacher / (k * size)) ** 2, student_init=start)
                records.append(record)
    path = tmp_path / "runs.csv"
    path.write_text(format_records(records, "csv"))
    return path


def test_each_start_gets_its_optimal_teachers_and_k_with_an_interval(tmp_path):
    runs = load_runs(write_export(tmp_path))
    assert len(runs.students) == 18 and len(runs.started) == 15
    gap = pruned_capacity_gap(runs, level=0.9, bootstrap=100)
    assert isinstance(gap, PrunedCapacityGap)
    groups = {group.init: group for group in gap.groups}
    assert set(groups) == {"scratch", "pruned"} and groups["pruned"].tokens_per_param == 6
    for init, k in K.items():
        law = groups[init].law
        assert law.ratio == pytest.approx(k, rel=1e-6)
        assert law.interval[0] < k < law.interval[1] and law.interval[1] / law.interval[0] > 1.2
        assert [o.student_params for o in law.optima] == [1e4, 2e4, 4e4]
    # 2.5 inside the pruned students' interval, outside the from-scratch ones'
    assert gap.verdicts[0].startswith("scratch students") and "2.5 is outside" in gap.verdicts[0]
    assert gap.verdicts[1].startswith("pruned students") and "2.5 is inside" in gap.verdicts[1]
    record = json.loads(json.dumps(gap.to_dict()))  # report.json's capacity_gap_pruned: valid JSON
    assert record["minima_ratio"] == 2.5 and len(record["points"]) == 33
    assert record["groups"][1]["law"]["optima"][0]["ratio"] == pytest.approx(2.5)


def test_the_section_reaches_report_json_the_page_the_terminal_and_the_figure(tmp_path, capsys):
    runs = load_runs(write_export(tmp_path))
    calibration = ReportCalibration(runs, CalibrationSettings(bootstrap=0), ComputeSettings(), "test",
                              capacity_gap_pruned=pruned_capacity_gap(runs, bootstrap=0))
    report = calibration.to_dict()
    assert report["capacity_gap_pruned"]["groups"][0]["law"]["bootstrap_resamples"] == 0
    law = calibration.capacity_gap_pruned.groups[1].law
    assert law.resolution_floor and law.interval[0] < 2.5 < law.interval[1]  # no resamples: the grid's resolution
    page = _capacity_gap_pruned(report["capacity_gap_pruned"])
    assert "MiniMA" in page and "pruned students at 6 tokens/parameter: k = 2.5" in page
    assert page.count("<tr>") == 1 + 6  # the header, 3 sizes x 2 starts
    figure = plot_capacity_gap_pruned(calibration)
    assert len(figure.axes[0].get_lines()) >= 6 + 6  # a curve and an N_T* mark per size and start
    report.update(supervised=None, distillation=None, plan={"skipped": "test"})
    print_summary(report)
    assert "capacity gap (MiniMA's way), pruned students" in capsys.readouterr().out


def test_one_student_size_reports_its_optimum_without_a_law(tmp_path):
    runs = load_runs(write_export(tmp_path))
    runs.started[:] = [r for r in runs.started if r["non_embedding_params"] == 1e4]
    gap = pruned_capacity_gap(runs, bootstrap=20)
    pruned, = [group for group in gap.groups if group.init == "pruned"]
    assert pruned.law is None and "two or more" in pruned.skipped
    optimum, = pruned.optima
    assert optimum.teacher_params == pytest.approx(2.5e4) and optimum.interval[0] < 2.5e4 < optimum.interval[1]
    assert len(gap.verdicts) == 1  # the scratch students' law only


def test_the_best_teacher_section_renders_a_law_without_an_interval(tmp_path):
    """Every student size's best teacher at the same multiple leaves the linear law's ratios without
    scatter, so `LinearCapacityGap` gives no interval (None): the page says so instead of failing."""
    from distillscale.report.calibration import _capacity_gap
    from distillscale.report.page import _capacity_gap as capacity_gap_section
    from distillscale.report.runs import split_runs

    records = []
    for size in (1e4, 2e4):
        for multiple, loss in ((1, 4.2), (2, 4.0), (4, 4.1)):
            record = dict.fromkeys(RECORD_COLUMNS)
            record.update(run_id=f"s-{size:g}-{multiple}", kind="student", status="completed", non_embedding_params=size,
                          tokens=6 * size, val_loss=loss, teacher_id=f"t-{size * multiple:g}",
                          teacher_params=size * multiple, teacher_loss=3.5, on_policy_fraction=0.0)
            records.append(record)
    gap = _capacity_gap(split_runs(records, "test"))
    law = gap["linear_law_by_tokens_per_param"]["6"]
    assert law["ratio"] == pytest.approx(2.0) and law["ratio_interval"] is None
    assert "k = 2 (no interval" in capacity_gap_section(gap)
