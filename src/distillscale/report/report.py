"""The calibration report of a sweep: report.json (the numbers) and report.html (the same numbers
with figures), both written atomically.

    calibration, report = write_report("sweeps/micro", "sweeps/micro", CalibrationSettings())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillscale.io import atomic_write_json, atomic_write_text, has_signature, json_format_is
from distillscale.report import figures
from distillscale.report.calibration import ReportCalibration, CalibrationSettings, calibrate
from distillscale.report.downstream import plot_scores, scores_record, task_scores
from distillscale.report.page import figure_png, render_page
from distillscale.report.runs import load_runs

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
# How --overwrite recognises an earlier report's files (the output rule replaces nothing else).
REPORT_IS_OURS = {REPORT_JSON: json_format_is("distillscale.report/"), REPORT_HTML: has_signature}


def report_figures(calibration: ReportCalibration) -> dict[str, tuple[str, bytes]]:
    """id -> (caption, PNG) for every figure the calibration has data for."""
    runs = calibration.runs
    wanted = []
    if runs.supervised or runs.students:
        wanted.append(("learning-curves", "Learning curves: validation loss during training",
                       figures.plot_learning_curves))
    if calibration.supervised is not None:
        wanted.append(("supervised-fit", "Supervised runs and the fitted supervised law",
                       figures.plot_supervised_fit))
        wanted.append(("backtest", "Extrapolation backtest: relative error of laws fitted on smaller runs "
                                   "against the distance to the run they predict, the interval's "
                                   "extrapolation band, and the largest runs predicted by laws fitted "
                                   "without them (with their intervals)", figures.plot_backtest))
    if runs.students:
        wanted.append(("u-curves", "Student loss vs teacher loss per student, with the fitted law's "
                                   "U-curve", figures.plot_student_u_curves))
    if calibration.baselines:
        wanted.append(("distilled-vs-baseline", "Distilled students vs their supervised baselines",
                       figures.plot_distilled_vs_baseline))
    if calibration.capacity_gap_pruned is not None:
        wanted.append(("capacity-gap-pruned", "Capacity gap, MiniMA's way: student loss against teacher size per "
                                              "student size, students pruned from their teacher (solid) and from "
                                              "scratch (dashed), with each one's N_T* (vertical marks)",
                       figures.plot_capacity_gap_pruned))
    if calibration.repetition:
        wanted.append(("repetition", "Repeated data: loss against epochs over a fixed subset at one token "
                                     "budget per size, supervised and distilled, with each group's fitted "
                                     "data-constrained curve (R_D*) and the backtest's predictions of the runs "
                                     "beyond 4 epochs from those within", figures.plot_repetition))
    scores = task_scores(runs)
    if scores:
        wanted.append(("downstream", "Benchmark scores (each run's eval.json, lm-eval-harness) against validation "
                                     "loss, a panel per task and metric", lambda _: plot_scores(scores)))
    return {figure_id: (caption, figure_png(plot(calibration))) for figure_id, caption, plot in wanted}


def losses_record(units, plan: dict[str, Any]) -> dict[str, Any]:
    """What the report's losses are (`data.loss_identity`): nats/token of the sweep's tokenizer on its
    validation split, that split's bytes per token, and the target plan's student losses in bits per
    byte of it (None where the bytes are not known)."""
    plans = plan.get("plans") or {}
    return {"unit": units.unit, "described": units.describe(), "identity": units.to_json(),
            "bytes_per_token": units.bytes_per_token,
            "bits_per_byte": {name: units.bits_per_byte(p.get("student_loss")) for name, p in plans.items()}
            if units.bytes_per_token is not None else None}


def write_report(source: str | Path, out_dir: str | Path,
                 settings: CalibrationSettings = CalibrationSettings(),
                 progress=lambda message: None, teacher: str | Path | None = None,
                 trust_remote_code: bool = False, other_corpus: bool = False) -> tuple[ReportCalibration, dict[str, Any]]:
    """Calibrate on the runs of `source` and write report.json and report.html into `out_dir`; with
    `teacher` (a model directory), the teacher measured against the laws and planned for
    (`report.teacher`; `other_corpus`: the runs' corpus shares no text with a teacher run's)."""
    calibration = calibrate(load_runs(source), settings, progress)
    report = {**calibration.to_dict(), "losses": losses_record(calibration.laws.losses, calibration.plan)}
    scores = task_scores(calibration.runs)
    if scores:  # left out otherwise: reports of sweeps without [eval] are as before
        report["downstream"] = scores_record(scores)
    if teacher is not None:
        from distillscale.report.teacher import teacher_section

        report["teacher"] = teacher_section(calibration, teacher, out_dir, trust_remote_code, progress,
                                            law_file=Path(out_dir) / REPORT_JSON, other_corpus=other_corpus)
    progress("drawing the figures")
    page = render_page(report, report_figures(calibration))
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / REPORT_JSON, report)
    atomic_write_text(out_dir / REPORT_HTML, page)
    return calibration, report
