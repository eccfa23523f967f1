"""`distillscale report` (calibrate the laws on a sweep) and `distillscale demo` (the main job: a
built-in micro sweep, then its report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import console, err_console, print_json, styled, warn
from distillscale.io import check_output_dir, check_output_file
from distillscale.laws.lawset import FORM_HELP, NO_BIAS_CORRECTION_HELP
from distillscale.report.held_out import verdict_clause
from distillscale.settings import quantity
from distillscale.units import Quantity, format_interval, format_quantity


def _progress(message: str, command: str = "report") -> None:
    err_console.print(styled((f"{command}:", "dim"), " ", message), highlight=False)


class ReportSettings(CommandSettings):
    """`distillscale report`."""

    command_path: ClassVar[str] = "report"

    source: Path = argument(help="sweep directory (the --out of `sweep run`), or a .csv/.jsonl file written by "
                                 "`sweep export`")
    out: Path | None = option(None, help="directory for report.html and report.json (default: the sweep "
                                         "directory, or the file's directory)")
    target_params: Annotated[float | None, quantity("--target-params", kind=Quantity.PARAMS)] = option(
        None, help="student size to plan for, e.g. 1B (default: with no --target-compute either, the largest "
                   "distilled student size, within what the fit supports; else 10x the largest run)")
    target_compute: Annotated[float | None, quantity("--target-compute", kind=Quantity.FLOPS)] = option(
        None, help="FLOP budget of the plan, e.g. 1e21 (default: the target trained on the most tokens the "
                   "fitted runs cover for it; with --target-params, on 20 tokens/parameter)")
    form: str = option("auto", help="supervised law: " + FORM_HELP)
    distillation_form: str = option("auto", help="distillation law: auto (the better of the two in the "
                                                 "backtest), free (9 coefficients) or tied (alpha', beta' = "
                                                 "the supervised law's)")
    grid: str = option("coarse", help="start grids of the fits: coarse (hundreds of starts, seconds) or full "
                                      "(the papers' grids, slow)")
    max_iter: int = option(300, help="L-BFGS iterations per start of each fit")
    bootstrap: int = option(100, help="bootstrap resamples for the intervals, 0 = none")
    level: float = option(0.9, help="coverage of the intervals")
    seed: int = option(0, help="seed of the bootstrap")
    no_bias_correction: bool = option(False, help=NO_BIAS_CORRECTION_HELP)
    overwrite: bool = option(False, help="replace report.html and report.json written by an earlier report")
    as_json: bool = option(False, flag="--json", help="print report.json instead of a summary")


@command(ReportSettings)
def report_command(s: ReportSettings) -> None:
    """Fit the supervised and distillation laws to a sweep's runs (with bootstrap intervals), check
    how they extrapolate to the largest runs, find the best teachers, plan at a target scale, and
    write report.html (self-contained) and report.json."""
    from distillscale.report.calibration import CalibrationSettings
    from distillscale.report.report import REPORT_HTML, REPORT_IS_OURS, REPORT_JSON, write_report
    from distillscale.sweeps.store import is_sweep_dir

    settings = CalibrationSettings(**s.model_dump(exclude={"source", "out", "overwrite", "as_json"}))
    out_dir = s.out if s.out is not None else (s.source if s.source.is_dir() else s.source.parent)
    if s.out is not None:  # a directory of the user's, or a run's, never gets a report written into it
        check_output_dir(s.out, is_ours=lambda path: is_sweep_dir(path) or REPORT_IS_OURS[REPORT_JSON](path / REPORT_JSON),
                         flag="--out", what="sweep directory or earlier report's directory")
    for name in (REPORT_JSON, REPORT_HTML):
        check_output_file(out_dir / name, overwrite=s.overwrite, is_ours=REPORT_IS_OURS[name], inputs=[s.source],
                          flag="report file", what="report distillscale wrote", make_parents=s.out is not None)
    _, report = write_report(s.source, out_dir, settings, progress=_progress)
    if s.as_json:
        print_json({**report, "warnings": report_warnings(report)})
        return
    print_summary(report)
    console.print(styled("report: ", (str(out_dir / REPORT_HTML), "bold")), highlight=False, soft_wrap=True)


def print_summary(report: dict) -> None:
    """The answer first (the plan at the target: each scenario's losses and verdict), then how far
    to trust it (each law on runs held out of its fit), then the fitted coefficients and the rest."""
    if report["runs"].get("off_optimum"):
        console.print(f"an lr x batch grid: the laws are fitted on each (size, tokens) cell's best grid point "
                      f"({report['runs']['off_optimum']} runs at other rates or batches left out)", highlight=False)
    _print_plan(report["plan"])
    _print_checks(report)
    _print_fits(report)
    if report.get("on_policy"):
        console.print(on_policy_line(report["on_policy"]), highlight=False)
    if report.get("started"):
        console.print(started_line(report["started"]), highlight=False)
    for verdict in (report.get("capacity_gap_pruned") or {}).get("verdicts", []):
        console.print(f"capacity gap (MiniMA's way), {verdict}", highlight=False)
    for curve in report.get("repetition") or []:
        console.print(repetition_line(curve), highlight=False)
    for message in report_warnings(report):
        warn(message)


def _print_plan(plan: dict) -> None:
    """Each scenario's student loss against training without a teacher, and its verdict."""
    from distillscale.planning.results import CANNOT_TELL, what_would_tell

    if "skipped" in plan:
        console.print(f"plan skipped: {plan['skipped']}", highlight=False)
        return
    from distillscale.laws.difference import LossDifference

    caveat = verdict_clause(plan.get("failed_checks", {}))
    for scenario, p in plan["plans"].items():
        console.print(styled((p["verdict"], "bold"), f" ({scenario}): Δ {LossDifference.from_dict(p).describe()}; "
                             f"student loss {p['student_loss']:.4f}{_interval(p['student_loss_interval'])} vs "
                             f"supervised {p['supervised_loss']:.4f}{_interval(p['supervised_loss_interval'])} "
                             f"nats/token{caveat}"), highlight=False, soft_wrap=True)
    for name, reason in plan["failed"].items():
        console.print(f"plan for {name} failed: {reason}", highlight=False)
    target = plan.get("target", {})
    console.print(f"  planned for {format_quantity(plan['target_params'])} parameters at {plan['target_compute']:.3g} "
                  "FLOPs" + (f": {target['chosen_by']} ({target['backtest_reach']:.3g}x the largest fitted size), "
                             f"on {format_quantity(target['target_tokens'])} tokens" if "backtest_reach" in target
                             else ""), highlight=False)
    if any(p["verdict"] == CANNOT_TELL for p in plan["plans"].values()):
        console.print(f"{CANNOT_TELL}: " + what_would_tell(plan["target_params"], max(
            max(p["supervised_tokens"], p["student_tokens"]) for p in plan["plans"].values())), highlight=False)


def _print_checks(report: dict) -> None:
    """Each law refitted without its largest model and scored on the runs it left out."""
    for name, check in report["extrapolation_check"].items():
        if "skipped" in check:
            console.print(f"{name} extrapolation check skipped: {check['skipped']}", highlight=False)
            continue
        what = "teachers" if check["held_out_by"] == "teacher_params" else "models"
        coverage = (f"; {check['coverage']:.0%} inside their {check['level']:.0%} intervals"
                    if check["coverage"] is not None else "")
        console.print(f"{name} extrapolation: fitted on {what} up to {format_quantity(check['fitted_up_to_params'])} "
                      f"parameters, predicts the runs of the {format_quantity(check['held_out_params'])} ones with "
                      f"mean |relative error| {check['mean_abs_relative_error']:.2%} "
                      f"(max {check['max_abs_relative_error']:.2%}){_signs(check)}{coverage}", highlight=False)
        if check.get("in_sample"):  # a design's family term learned on this very check
            console.print(f"  {check['in_sample']}", highlight=False, soft_wrap=True)
        if check.get("bias_corrected"):
            raw = check["raw"]
            console.print(f"  raw law (no bias correction): mean |relative error| {raw['mean_abs_relative_error']:.2%}, "
                          f"signed {raw['mean_relative_error']:+.2%}, {raw['n_over_predicted']} of "
                          f"{check['n_held_out']} over-predicted; corrected: signed "
                          f"{check['mean_relative_error']:+.2%}", highlight=False, soft_wrap=True)
    if report.get("bias_correction"):
        console.print(report["bias_correction"], highlight=False, soft_wrap=True)


def _print_fits(report: dict) -> None:
    """Each law's form, coefficients with intervals, and its candidates' backtest errors."""
    for name in ("supervised", "distillation"):
        fit = report[name]
        if fit is None:
            continue
        cells = []
        for coefficient, value in fit["coefficients"].items():
            interval = fit["intervals"].get(coefficient)
            shown = (" [not identified]" if coefficient in fit["not_identified"] else
                     " [{}, {}]".format(*format_interval(*interval)) if interval else "")
            cells.append(f"{coefficient} = {value:.4g}{shown}")
        level = f" ({fit['level']:.0%} intervals)" if fit["level"] else ""
        console.print(f"{name} law, form {fit['form']}{level}: " + ", ".join(cells), highlight=False)
        console.print("  backtest errors: " + "; ".join(
            f"{c['name']} {c['score']:.2%}" if c["score"] is not None else f"{c['name']} -"
            for c in fit["candidates"]) + f" -> {fit['form']}: {fit['reason']}", highlight=False)


def _signs(check: dict) -> str:
    """', k of n over-predicted' for an extrapolation check (a report.json from before they were
    recorded: nothing)."""
    if check.get("n_over_predicted") is None:
        return ""
    return f", {check['n_over_predicted']} of {check['n_held_out']} over-predicted"


def _interval(record: dict) -> str:
    """' [low–high]' of a plan's loss interval record (empty without one)."""
    return " [{:.4f}–{:.4f}]".format(*record["interval"]) if record.get("interval") else ""


def on_policy_line(on_policy: dict) -> str:
    """The on-policy students against the off-policy law, which was not fitted on them."""
    runs = on_policy["runs"]
    differences = [r["difference"] for r in runs if r["difference"] is not None]
    compared = (f": measured - off-policy law's prediction {min(differences):+.4f} to {max(differences):+.4f} "
                "nats/token" if differences else f" ({on_policy['skipped']})")
    return (f"{len(runs)} on-policy students kept out of the distillation law's fit (fitted on off-policy "
            f"runs; applied to them outside its fit){compared}")


def started_line(started: dict) -> str:
    """The students with a start, kept out of the law's fit, and their measured multipliers."""
    runs = started["runs"]
    measured = [f"{r['run_id']} {r['token_multiplier']:.3g}x" for r in runs if r["token_multiplier"] is not None]
    return (f"{len(runs)} students with a start (pruned or pretrained) kept out of the distillation law's fit; "
            "tokens a from-scratch student needs to match them: " + (", ".join(measured) if measured else
                                                                     "not measured (no from-scratch students bracket them)"))


def repetition_line(curve: dict) -> str:
    """One line per repetition group: R_D* with its interval, the 16x-style penalty per size and the
    backtest error beyond the fitted epochs."""
    from distillscale.laws.repetition import describe_r_star

    shown = describe_r_star(curve["R_D_star"], curve["R_D_star_interval"])
    sizes = "; ".join(f"{format_quantity(s['params'])}: loss {s['loss_max_epochs']:.4f} nats/token at "
                      f"{s['max_epochs']:.3g} epochs" + (f" ({s['penalty_measured']:+.1%} vs 1 epoch)"
                                                          if s["penalty_measured"] is not None else "")
                      for s in curve["sizes"])
    backtest = curve["backtest"]
    error = (f"; fitted on <= {backtest['fitted_up_to_epochs']:g} epochs, predicts the runs beyond with mean "
             f"|error| {backtest['mean_abs_error']:.2%} (max {backtest['max_abs_error']:.2%})"
             if backtest["mean_abs_error"] is not None else "")
    spread = curve.get("seed_spread")
    seeds = f"; seed-to-seed spread of one run's loss {spread:.2%} (seed means shown)" if spread is not None else ""
    return f"repeated data, {curve['name']}: R_D* = {shown}; {sizes}{error}{seeds}"


def report_warnings(report: dict) -> list[str]:
    """What the report warns about (on stderr, and in --json): laws not fitted, the plan's extrapolation."""
    messages = [f"{name} law not fitted: {report['skipped'].get(name, 'no runs')}"
                for name in ("supervised", "distillation") if report[name] is None]
    messages += [f"R_D* not fitted to the {step.removeprefix('repetition (').rstrip(')')} runs: {reason}"
                 for step, reason in report["skipped"].items() if step.startswith("repetition (")]
    messages += [f"{name} extrapolation check: {check['bias']}"
                 for name, check in report["extrapolation_check"].items() if check.get("bias")]
    if short := report.get("runs", {}).get("short"):
        from distillscale.report.runs import short_runs_message

        messages.append(short_runs_message(short))
    plan = report["plan"]
    if "skipped" not in plan:
        extrapolation = plan["extrapolation"]
        if extrapolation["params_ratio"] > 1:
            messages.append(f"the plan extrapolates {extrapolation['params_ratio']:.3g}x beyond the largest fitted "
                            f"model ({format_quantity(extrapolation['largest_fitted_params'])} parameters)")
        messages += extrapolation["warnings"]
    return messages


def _teacher_lines(report: dict) -> list[str]:
    """`demo --teacher`: the teacher's measured loss against the laws, and the plan for it."""
    from distillscale.report.teacher import teacher_lines

    return teacher_lines(report["teacher"]) if report.get("teacher") else []


class DemoSettings(CommandSettings):
    """`distillscale demo`."""

    command_path: ClassVar[str] = "demo"

    out: Path | None = option(None, help="sweep directory (default: sweeps/micro, sweeps/micro-quick with "
                                         "--quick, sweeps/micro-<name> with --data)")
    data: Path | None = option(None, help="your corpus: text/.jsonl/.parquet files, a glob or a datasets "
                                          "directory (default: Python's standard library)")
    quick: bool = option(False, help="a smaller, shorter sweep (about 2 minutes on 2 cores)")
    scale: str = option("micro", help="micro (minutes on a CPU) or gpu (the GPU ladder: 1M-17M-parameter "
                                      "models, about 20 minutes on one H100, on every visible GPU)")
    repetition: bool = option(False, help="the repetition sweep instead: supervised and distilled students on "
                                          "1-16 epochs of fixed subsets, R_D* fitted for each (about 15 "
                                          "minutes on 2 cores)")
    capacity_gap: bool = option(False, help="the capacity-gap sweep instead (MiniMA's experiment): 6 teacher "
                                            "sizes; students of 2 sizes pruned from each teacher at least their "
                                            "size, and from scratch, distilled from it; the report fits N_T* = k "
                                            "N_S for each start (10-15 minutes on 2 cores by the dry run's estimate)")
    lr_law: str | None = option(None, help="each model size's peak lr from a hyperparameter law (a preset, e.g. "
                                           "steplaw2025, or a file `fit hyperparameters --out` wrote), read at "
                                           "its N and its budgets, instead of the sweep's one lr (micro) or its "
                                           "own law, gpu-ladder-h200 (gpu); the sweep directory gets the suffix "
                                           "-lr-law")
    teacher: Path | None = option(None, help="your teacher (a run, or a Hugging Face causal-LM directory with its "
                                             "tokenizer): the sweep calibrates the laws on --data in its tokenizer, "
                                             "then measures the teacher's loss and plans a student distilled from it")
    trust_remote_code: bool = option(False, help="with --teacher: run its own code (its config's auto_map), only "
                                                 "code you trust")
    other_corpus: bool = option(False, help="with a --teacher run: --data shares no text with the corpus it trained "
                                            "on; split it on its own, without the run's split settings or the check "
                                            "that keeps its training text out of the laws' validation split")
    data_limited: bool = option(False, help="distillation when data is the limit, on --data: one small model trained "
                                            "alone on a fixed pool of unique tokens read for 16 epochs (and on a "
                                            "1-epoch pool), against self-distillation chains, a larger teacher's "
                                            "student and an ensemble's student, after a weight-decay grid per pool; "
                                            "the shipped data-limited law fitted on the runs by its own fitter (20 "
                                            "runs, about 5 minutes on 2 idle cores; with --quick, tiny models in "
                                            "seconds: every part runs, the numbers mean nothing)")
    workers: int | None = option(None, min=1, help="runs at once (default: the number of cores)")
    no_bias_correction: bool = option(False, help=NO_BIAS_CORRECTION_HELP)
    as_json: bool = option(False, flag="--json", help="print report.json instead of a summary")


@command(DemoSettings)
def demo_command(s: DemoSettings) -> int:
    """The main job: the built-in micro sweep on Python's standard library sources (or --data), the laws fitted
    to it, report.html (--data-limited: its own runs and table). Running it again reuses the finished runs."""
    import time

    from distillscale.report.demo import run_demo
    from distillscale.report.report import REPORT_HTML

    if s.data_limited:
        return _data_limited_demo(s)
    start = time.perf_counter()
    sweep_dir, report, counts = run_demo(s.out, s.quick, s.workers, progress=lambda m: _progress(m, "demo"),
                                         data=s.data, scale=s.scale, repetition=s.repetition, capacity_gap=s.capacity_gap,
                                         lr_law=s.lr_law, bias_correction=not s.no_bias_correction, teacher=s.teacher,
                                         trust_remote_code=s.trust_remote_code, other_corpus=s.other_corpus)
    if s.as_json:
        print_json({**report, "warnings": report_warnings(report)})
    else:
        print_summary(report)
        for line in _teacher_lines(report):
            console.print(line, highlight=False, soft_wrap=True)
        console.print(styled("report: ", (str(sweep_dir / REPORT_HTML), "bold"),
                             f" (demo took {time.perf_counter() - start:.0f} s)"), highlight=False, soft_wrap=True)
    return _unfinished(counts, sweep_dir)


# what `demo --data-limited` leaves out: its own design (flag: the value that means "not given")
NOT_WITH_DATA_LIMITED = {"--scale": ("scale", "micro"),
                         "--repetition": ("repetition", False), "--capacity-gap": ("capacity_gap", False),
                         "--lr-law": ("lr_law", None), "--teacher": ("teacher", None),
                         "--trust-remote-code": ("trust_remote_code", False), "--other-corpus": ("other_corpus", False),
                         "--no-bias-correction": ("no_bias_correction", False)}


def _data_limited_demo(s: DemoSettings) -> int:
    """`demo --data-limited`: its runs, then its table (or its JSON); 1 when some runs did not complete."""
    from distillscale.errors import UserError
    from distillscale.report.data_limited import run_data_limited
    from distillscale.report.data_limited_table import table_lines

    given = [flag for flag, (name, unset) in NOT_WITH_DATA_LIMITED.items() if getattr(s, name) != unset]
    if given:
        raise UserError(f"--data-limited runs its own design: leave out {', '.join(given)}")
    result = run_data_limited(s.data, s.out, s.workers, progress=lambda m: _progress(m, "demo"), quick=s.quick)
    if s.as_json:
        print_json(result.to_json())
    else:
        for line in table_lines(result):
            console.print(line, highlight=False, soft_wrap=True)
        console.print(f"report: {result.sweep_dir / 'data_limited.md'} (demo took {result.wall_seconds:.0f} s)",
                      highlight=False, soft_wrap=True)
    unfinished = [run_id for run_id, status in result.statuses.items() if status != "completed"]
    if unfinished:
        warn(f"{len(unfinished)} runs did not complete: see their logs in {result.sweep_dir}; run the demo again "
             "to retry them")
    return 1 if unfinished else 0


def _unfinished(counts: dict, sweep_dir: Path) -> int:
    """The demo's exit status: 1, with a warning naming them, when some runs did not complete."""
    unfinished = counts["failed"] + counts["diverged"] + counts["blocked"]
    if unfinished:
        warn(f"{unfinished} runs did not complete, so the report leaves them out: see `distillscale sweep "
             f"status {sweep_dir}`; run the demo again to retry them")
        return 1
    return 0
