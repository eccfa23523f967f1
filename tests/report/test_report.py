"""`distillscale report`: fits, extrapolation check, capacity gap, plan, report.json and a
self-contained report.html, on synthetic sweeps drawn from the busbridge2025 laws plus noise."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from distillscale.laws import load_laws
from distillscale.report.runs import load_runs
from distillscale.sweeps.export import RECORD_COLUMNS, write_records

LAWS = load_laws("busbridge2025")
# Sizes spread 4x apart: a ladder wide enough to pin the laws down (on one 8x wide, the supervised
# fits' flat valleys took the report 1.7x as long to settle: 130 s against 78 s, one after the other).
TEACHERS = (1e7, 4e7, 1.6e8, 6.4e8)
STUDENTS = (2.5e6, 1e7, 4e7)
STUDENT_M = (20, 80)
NOISE = 0.003  # relative noise on every loss


def _record(run_id, kind, N, D, loss, run_dir, **teacher):
    record = dict.fromkeys(RECORD_COLUMNS)
    record.update(run_id=run_id, kind=kind, status="completed", n_layers=1, non_embedding_params=N,
                  tokens=D, tokens_per_param=D / N, flops=6 * N * D, val_loss=loss, run_dir=str(run_dir),
                  wall_seconds=1.0, **teacher)
    return record


def _write_run_dir(run_dir: Path, N: float, D: float, final_loss: float) -> None:
    """metrics.jsonl with a learning curve ending at `final_loss`, and the config.json of `train`."""
    run_dir.mkdir(parents=True)
    steps = np.linspace(0.1, 1.0, 6)
    lines = [json.dumps({"step": int(i + 1), "tokens": float(f * D), "loss": final_loss + 1 / f - 1,
                         "val_loss": final_loss + 1 / f - 1}) for i, f in enumerate(steps)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "config.json").write_text(json.dumps({
        "config": {"seq_len": 128, "aspect_ratio": 32},
        "plan": {"model": {"vocab_size": 2048, "aspect_ratio": 32}}}))


ON_POLICY_GAIN = 0.97  # on-policy students' loss: this times the off-policy law's


def make_sweep(root: Path, *, students: tuple = STUDENTS, teachers: tuple = TEACHERS, seed: int = 0,
               on_policy_fraction: float | None = None) -> Path:
    """A sweep as `sweep export` writes it (records.jsonl) with run directories beside it; with
    `on_policy_fraction`, the smallest student at M = 20 also distilled on-policy from every teacher,
    ON_POLICY_GAIN x the law's loss (which an off-policy fit would not follow)."""
    rng = np.random.default_rng(seed)
    noisy = lambda loss: float(loss * (1 + NOISE * rng.standard_normal()))  # noqa: E731
    records = []

    def add(run_id, kind, N, D, loss, **teacher):
        run_dir = root / "runs" / run_id
        _write_run_dir(run_dir, N, D, loss)
        records.append(_record(run_id, kind, N, D, loss, run_dir, **teacher))

    for i, N in enumerate(teachers):
        add(f"t{i}", "teacher", N, 20 * N, noisy(LAWS.supervised.predict(N, 20 * N)))
    teacher_records = list(records)
    for j, N in enumerate(students):
        for M in STUDENT_M:
            add(f"b{j}-{M}", "baseline", N, M * N, noisy(LAWS.supervised.predict(N, M * N)))
            for t in teacher_records:
                L_T = t["val_loss"]
                teacher = dict(teacher_id=t["run_id"], teacher_params=t["non_embedding_params"],
                               teacher_tokens=t["tokens"], teacher_loss=L_T)
                add(f"s{j}-{M}-{t['run_id']}", "student", N, M * N,
                    noisy(LAWS.distillation.predict(N, M * N, L_T)), on_policy_fraction=0.0, **teacher)
                if on_policy_fraction is not None and j == 0 and M == 20:
                    add(f"p{j}-{M}-{t['run_id']}", "student", N, M * N,
                        ON_POLICY_GAIN * LAWS.distillation.predict(N, M * N, L_T),
                        on_policy_fraction=on_policy_fraction, **teacher)
    path = root / "records.jsonl"
    write_records(records, path, "jsonl")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report of the full synthetic sweep, shared by the tests that read it."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("sweep")
    records = make_sweep(root, on_policy_fraction=0.5)  # on-policy students, outside the distillation fit
    out = root / "report"
    assert main(["report", str(records), "--out", str(out), "--bootstrap", "20", "--max-iter", "200",
                 "--target-params", "10B", "--target-compute", "1e21"]) == 0
    return out, json.loads((out / "report.json").read_text()), (out / "report.html").read_text()


@pytest.mark.slow
def test_report_fits_recover_the_generating_laws(report):
    _, data, _ = report
    supervised = data["supervised"]
    assert supervised["record"]["n_runs"] == len(TEACHERS) + len(STUDENTS) * len(STUDENT_M)
    assert supervised["record"]["diagnostics"]["max_relative_error"] < 0.02
    # The report chooses the form by backtest; what the form holds fixed has no interval.
    assert [c["name"] for c in supervised["candidates"]] == ["tied", "chinchilla", "busbridge",
                                                              "median of tied, chinchilla, busbridge"]
    assert all(c["score"] is not None for c in supervised["candidates"])
    fixed = {"gamma"} if supervised["form"] in ("tied", "chinchilla") else set()  # the median: a busbridge law
    assert supervised["coefficients"]["gamma"] == 1.0 or not fixed
    assert set(supervised["intervals"]) == set(supervised["coefficients"]) - fixed
    assert all(low <= high for low, high in supervised["intervals"].values())
    assert supervised["record"]["extrapolation_error"]["q"] > 0
    distillation = data["distillation"]
    assert distillation["record"]["n_runs"] == len(TEACHERS) * len(STUDENTS) * len(STUDENT_M)
    assert distillation["record"]["diagnostics"]["max_relative_error"] < 0.02
    assert [c["name"] for c in distillation["candidates"]] == ["tied", "free"]
    fixed = {"alpha", "beta"} if distillation["form"] == "tied" else set()
    assert set(distillation["intervals"]) == set(distillation["coefficients"]) - fixed
    assert data["skipped"] == {}
    assert data["compute_settings"]["n_ctx"] == 128 and data["compute_settings"]["n_vocab"] == 2048


@pytest.mark.slow
def test_report_extrapolation_check_holds_out_the_largest_size(report):
    _, data, _ = report
    supervised = data["extrapolation_check"]["supervised"]
    assert supervised["held_out_params"] == max(TEACHERS)
    assert supervised["n_held_out"] == 1
    # The data follow the law up to NOISE: the refit predicts the held-out run within a few percent.
    assert supervised["max_abs_relative_error"] < 0.05
    distillation = data["extrapolation_check"]["distillation"]
    assert distillation["held_out_by"] == "teacher_params"
    assert distillation["held_out_params"] == max(TEACHERS)
    assert distillation["n_held_out"] == len(STUDENTS) * len(STUDENT_M)
    assert distillation["max_abs_relative_error"] < 0.05
    # Every held-out run records its prediction, its interval and whether that covered it.
    for check in (supervised, distillation):
        for run in check["runs"]:
            low, high = run["interval"]
            assert low < run["predicted"] < high
            assert run["covered"] == (low <= run["observed"] <= high)
        assert check["coverage"] == pytest.approx(np.mean([r["covered"] for r in check["runs"]]))


@pytest.mark.slow
def test_report_of_a_users_sweep_carries_no_correction_by_default(report):
    """The cross-ladder correction is opt-in (issue 72: left out a family of ladders at a time, it
    lowered no family's error): a user's own sweep gets the raw law, says nothing of a correction,
    and its held-out check's raw errors are its errors. (A sweep of the builtin design carries the
    design's term and shows both: tests/report/test_design_family.py.)"""
    out, data, page = report
    assert data["bias_correction"] is None and "bias_correction" not in data["laws"]["supervised"]["fit"]
    check = data["extrapolation_check"]["supervised"]
    assert check["bias_corrected"] is False
    assert all(run["raw_predicted"] == run["predicted"] for run in check["runs"])
    assert "bias-corrected" not in page


@pytest.mark.slow
def test_report_capacity_gap_baselines_and_plan(report):
    _, data, _ = report
    best = data["capacity_gap"]["best_teachers"]
    assert len(best) == len(STUDENTS) * len(STUDENT_M)
    assert all(b["teachers_tried"] == len(TEACHERS) for b in best)
    assert set(data["capacity_gap"]["linear_law_by_tokens_per_param"]) == {"20", "80"}
    pairs = data["distilled_vs_baseline"]
    assert len(pairs) == len(TEACHERS) * len(STUDENTS) * len(STUDENT_M)
    assert all(p["distilled_minus_baseline"] == pytest.approx(p["distilled_loss"] - p["baseline_loss"]) for p in pairs)
    plan = data["plan"]
    assert plan["target_params"] == 1e10 and plan["target_compute"] == 1e21
    assert plan["extrapolation"]["params_ratio"] == pytest.approx(1e10 / max(TEACHERS))
    assert plan["extrapolation"]["warnings"]  # 15.6x beyond the largest run: far enough to warn
    assert set(plan["plans"]) | set(plan["failed"]) == {"best-case", "teacher-inference", "teacher-pretraining",
                                                         "teacher-pretraining-inference"}
    assert plan["plans"], "at least one scenario is planned"
    # The laws in report.json are loadable by every other command.
    assert data["laws"]["format"] == "distillscale.laws/1"


@pytest.mark.slow
def test_report_html_is_self_contained_with_figures_and_tables(report):
    _, data, page = report
    for figure_id in ("learning-curves", "supervised-fit", "backtest", "u-curves", "distilled-vs-baseline"):
        assert re.search(rf'<figure id="{figure_id}"><img alt="[^"]+" src="data:image/png;base64,', page)
    assert 'id="coefficients-supervised"' in page and 'id="coefficients-distillation"' in page
    assert 'id="candidates-supervised"' in page and 'id="candidates-distillation"' in page
    assert f"{data['supervised']['coefficients']['alpha']:.4g}" in page
    assert 'id="plan"' in page and "Extrapolation:" in page
    assert not re.search(r'(src|href)="(?!data:|#)', page), "no external assets (links within the page only)"


@pytest.mark.slow
def test_report_saves_laws_usable_by_predict(report, cli, tmp_path):
    _, data, _ = report
    path = tmp_path / "laws.json"
    path.write_text(json.dumps(data["laws"]))
    code, out, err = cli("predict", "distillation", "--law", str(path), "--student-params", "5M",
                         "--student-tokens", "100M", "--teacher-loss", "3.0", "--json")
    assert code == 0, err
    assert json.loads(out)["student_loss"] > 3.0


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """One `report RECORDS --bootstrap 0` of a sweep of one teacher (too few for the distillation law)
    and two student sizes, without on-policy students, shared by the tests that read it: the records
    file (report.json and report.html beside it), the exit status and what it printed on stderr."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("small-sweep")
    records = make_sweep(root, students=(2.5e6, 5e6), teachers=(1e7,))  # 1 teacher: no distillation fit
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["report", str(records), "--bootstrap", "0"])
    return records, code, err.getvalue()


def test_report_with_too_few_runs_skips_fits_and_still_writes(small_report):
    records, code, err = small_report
    assert code == 0, err
    data = json.loads((records.parent / "report.json").read_text())
    assert data["supervised"] is not None
    assert data["distillation"] is None
    assert "at least 2 different teachers" in data["skipped"]["distillation"]
    assert data["plan"] == {"skipped": "planning needs both fitted laws"}
    assert "skipped" in data["extrapolation_check"]["supervised"]
    page = (records.parent / "report.html").read_text()
    assert "distillation fit skipped: the distillation law needs students of at least 2 different teachers" in page
    assert "distillation law not fitted" in err


def test_report_without_enough_supervised_runs(tmp_path, cli):
    records = make_sweep(tmp_path, students=(), teachers=(1e7, 2e7, 4e7, 8e7, 1.6e8))  # all at 20 tokens/param
    code, _, err = cli("report", records, "--bootstrap", "0")
    assert code == 0, err
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["supervised"] is None and data["distillation"] is None
    assert "2 tokens-per-parameter ratios" in data["skipped"]["supervised"]
    assert (tmp_path / "report.html").exists()


@pytest.mark.parametrize("args, message", [
    (["--form", "kaplan"], "unknown --form 'kaplan'"),
    (["--grid", "huge"], "unknown --grid 'huge'"),
    (["--bootstrap", "-1"], "--bootstrap must be 0"),
    (["--max-iter", "0"], "--max-iter must be at least 1"),
    (["--level", "1.5"], "--level must be between 0 and 1"),
    (["--target-params", "lots"], "malformed --target-params 'lots'"),
])
def test_report_bad_options(tmp_path, cli, args, message):
    records = make_sweep(tmp_path, students=(5e6,), teachers=(1e7,))
    code, _, err = cli("report", records, *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("form", ["interaction", "farseer"])
def test_report_takes_the_interaction_forms_its_help_lists(form):
    """`report --form interaction|farseer` (FORM_HELP lists them, `fit supervised --form` takes them):
    they were refused as an unknown --form."""
    from distillscale.report.calibration import CalibrationSettings

    assert CalibrationSettings(form=form).form == form


@pytest.mark.slow
def test_report_fits_a_farseer_law(tmp_path, cli):
    records = make_sweep(tmp_path, students=(2.5e6, 5e6, 1e7, 2e7), teachers=(4e7,))  # 5 sizes, 1 teacher
    code, _, err = cli("report", records, "--bootstrap", "0", "--form", "farseer")
    assert code == 0, err
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["supervised"]["form"] == "farseer"
    assert data["extrapolation_check"]["supervised"]["form"] == "farseer"


def test_report_bad_sources(tmp_path, cli):
    code, _, err = cli("report", tmp_path / "missing")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("report", tmp_path)
    assert code == 2 and "not a sweep directory (no runs.sqlite)" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"run_id": "a", "kind": "teacher", "status": "completed",
                               "non_embedding_params": "big", "tokens": 1, "val_loss": 2}) + "\n")
    code, _, err = cli("report", bad)
    assert code == 2 and "column 'non_embedding_params' holds 'big'" in err
    missing = tmp_path / "missing_column.jsonl"
    missing.write_text(json.dumps({"run_id": "a", "kind": "teacher"}) + "\n")
    code, _, err = cli("report", missing)
    assert code == 2 and "missing column 'status'" in err


def test_failed_and_diverged_runs_are_counted_not_fitted(tmp_path):
    path = make_sweep(tmp_path)
    lines = path.read_text().splitlines()
    broken = [json.loads(line) for line in lines[:2]]
    broken[0].update(status="diverged", val_loss=None)
    broken[1].update(status="failed", val_loss=None)
    path.write_text("\n".join([json.dumps(r) for r in broken] + lines[2:]) + "\n")
    runs = load_runs(path)
    assert runs.skipped == {"diverged": 1, "failed": 1}
    assert len(runs.supervised) == len(TEACHERS) - 2 + len(STUDENTS) * len(STUDENT_M)


@pytest.mark.slow
def test_on_policy_students_are_kept_out_of_the_fit_and_shown_beside_it(report):
    """On-policy students (fraction > 0) are not in the distillation law's fit (the n_runs of the fit
    test counts the off-policy ones only); the report lists them with the off-policy law's prediction,
    its interval and the difference, saying the law is applied to them outside its fit."""
    from distillscale.report.commands import on_policy_line

    _, data, page = report
    on_policy = data["on_policy"]
    assert data["runs"]["on_policy_students"] == len(TEACHERS) == len(on_policy["runs"])
    assert data["runs"]["students"] == len(TEACHERS) * len(STUDENTS) * len(STUDENT_M)
    assert data["distillation"]["record"]["n_runs"] == data["runs"]["students"]
    assert not any(r["run_id"].startswith("p") for r in data["distilled_vs_baseline"])
    for run in on_policy["runs"]:
        assert run["run_id"].startswith("p0-20-") and run["on_policy_fraction"] == 0.5
        assert run["difference"] == pytest.approx(run["measured_loss"] - run["off_policy_prediction"])
        # The synthetic on-policy runs are 3% below the generating law, which the fit recovers (< 2%).
        assert run["difference"] < 0 and run["low"] < run["off_policy_prediction"] < run["high"]
    assert "fitted on off-policy students only" in on_policy["note"] and "outside its fit" in on_policy["note"]
    assert 'id="on-policy-students"' in page and "fitted on off-policy students only" in page
    assert page.count("<tr>", page.index('id="on-policy-students"')) >= len(TEACHERS) + 1
    line = on_policy_line(on_policy)
    assert line.startswith(f"{len(TEACHERS)} on-policy students kept out of the distillation law's fit")
    assert "outside its fit" in line and "nats/token" in line


def test_a_sweep_without_on_policy_runs_reports_as_before(small_report):
    records, code, err = small_report
    assert code == 0, err
    data = json.loads((records.parent / "report.json").read_text())
    assert "on_policy" not in data and "on_policy_students" not in data["runs"]
    assert "on-policy" not in (records.parent / "report.html").read_text()


def test_exports_written_before_the_on_policy_column_still_load(tmp_path):
    """An export without on_policy_fraction (an earlier version's header) is still recognised as an
    export (for --overwrite) and read: its students are off-policy."""
    from distillscale.sweeps.export import is_export

    earlier = RECORD_COLUMNS[:RECORD_COLUMNS.index("on_policy_fraction")]  # the header before on_policy_fraction
    path = make_sweep(tmp_path, students=(2.5e6,), teachers=(1e7, 2e7), on_policy_fraction=0.5)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    runs = load_runs(path)
    assert len(runs.on_policy) == 2 and len(runs.students) == 4
    assert all(r["on_policy_fraction"] == 0.5 for r in runs.on_policy)
    for fmt in ("csv", "jsonl"):
        old = tmp_path / f"old.{fmt}"
        old_records = [{key: value for key, value in r.items() if key in earlier} for r in records
                       if not r["run_id"].startswith("p")]
        if fmt == "csv":
            header = ",".join(earlier)
            old.write_text(header + "\n" + "".join(
                ",".join("" if r[key] is None else str(r[key]) for key in earlier) + "\n"
                for r in old_records))
        else:
            old.write_text("".join(json.dumps(r) + "\n" for r in old_records))
        assert is_export(old), fmt
        runs = load_runs(old)
        assert len(runs.students) == 4 and runs.on_policy == [] and len(runs.supervised) == 4
    (tmp_path / "other.csv").write_text("run_id,kind,loss\n")
    assert not is_export(tmp_path / "other.csv")


def _browser() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


@pytest.mark.slow
@pytest.mark.skipif(_browser() is None, reason="no Chromium installed")
def test_report_html_renders_in_headless_chromium(report, tmp_path):
    out, _, _ = report
    screenshot = tmp_path / "page.png"
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}",
                    "--window-size=1200,2400", (out / "report.html").resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.shape[0] >= 2000
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.005, "hardly any dark pixels: text and figures did not render"


def test_the_report_warns_of_supervised_runs_too_short_for_the_laws(small_report, tmp_path, cli):
    """Runs of fewer than SHORT_RUN_STEPS optimizer steps (tokens / batch tokens) are counted in report.json's
    runs.short and warned of, on stderr and the page; runs without a recorded batch are not guessed at."""
    from distillscale.report.runs import SHORT_RUN_STEPS

    shared, code, err = small_report
    assert code == 0, err
    assert "short" not in json.loads((shared.parent / "report.json").read_text())["runs"]  # no batch recorded
    assert "optimizer steps" not in err

    # the same sweep's records, with a batch recorded, reported again over a copy of that report
    records = tmp_path / shared.name
    for name in (shared.name, "report.json", "report.html"):
        shutil.copy(shared.parent / name, tmp_path / name)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    for row in rows:  # the teacher's 2e8 tokens: 400 steps of 500K; the baselines' 5e7-4e8: 500-4,000 steps of 100K
        row["batch_tokens"] = 500_000 if row["kind"] == "teacher" else 100_000
    write_records(rows, records, "jsonl")
    code, _, err = cli("report", records, "--bootstrap", "0", "--overwrite")
    assert code == 0, err
    short = json.loads((tmp_path / "report.json").read_text())["runs"]["short"]
    steps = sorted(row["tokens"] / row["batch_tokens"] for row in rows if row["kind"] != "student")
    assert short == {"count": sum(s < SHORT_RUN_STEPS for s in steps), "of": len(steps),
                     "fewest_steps": round(steps[0]), "threshold": SHORT_RUN_STEPS}
    assert short["count"] == 1 and short["fewest_steps"] == 400  # 500 steps is not short
    message = f"{short['count']} of {short['of']} supervised runs took fewer than {SHORT_RUN_STEPS} optimizer steps"
    assert message in " ".join(err.split())
    assert message in (tmp_path / "report.html").read_text()


def test_the_answer_comes_first_on_the_page_and_in_the_summary(report, capsys):
    """report.html opens with the verdict at the target (each scenario's losses) and how far each law
    held on runs left out of its fit, before the coefficients; the printed summary opens with the verdicts."""
    from distillscale.report.commands import print_summary

    _, data, page = report
    answer = page[page.index('<div class="answer"'):page.index("</div>", page.index('<div class="answer"'))]
    assert page.index('<div class="answer"') < page.index("<h2>Fitted coefficients</h2>")
    for scenario, planned in data["plan"]["plans"].items():
        assert scenario in answer and planned["verdict"] in answer and f"{planned['student_loss']:.4f}" in answer
    check = data["extrapolation_check"]["supervised"]
    assert f"within {check['mean_abs_relative_error']:.2%} on average" in answer
    print_summary(data)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.split(" (")[0] in {p["verdict"] for p in data["plan"]["plans"].values()}, first
