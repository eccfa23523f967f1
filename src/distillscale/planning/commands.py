"""`distillscale plan`, `teacher`, `capacity-gap` and `distill-map`: the planner on the command line.
Each command parses its flags, makes one call to the planner (`planning.plan`, `planning.teacher`)
and prints the answer (`planning.render`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from distillscale.cli_options import command
from distillscale.console import Table, console, print_json, styled, warn
from distillscale.errors import ParameterError, UserError
from distillscale.io import check_output_file
from distillscale.laws.lawset import LAW_HELP, load_laws
from distillscale.planning.flops import SCENARIOS, get_scenario
from distillscale.planning.options import FLOPS_HELP, ON_POLICY_FLAGS, PlanSettings
from distillscale.units import Quantity, format_quantity, parse_quantity

def _check_figure(path: Path | None, overwrite: bool, law: str, flag: str | None = "--plot") -> None:
    """A figure file to write: a .png or .svg that is not an input, and a figure of ours to replace."""
    from distillscale.planning import plots

    if path is not None:
        plots.check_figure_path(path)
        check_output_file(path, overwrite=overwrite, is_ours=plots.is_figure_file, inputs=[law], flag=flag,
                          what="figure distillscale drew")


@command(PlanSettings)
def plan_command(settings: PlanSettings) -> None:
    """Compute-optimal distillation for a budget: teacher, tokens, loss, and distil or pretrain?

    Without --student-params, finds the best student size per scenario, searched inside the
    law's data (sizes and tokens per parameter) unless --min-params and the like widen it.
    With --on-policy (or the options after it: --on-policy-fraction, --logit-cache, --teacher-remote ...), compares
    supervised, off-policy and on-policy distillation of the given student from the given teacher."""
    from distillscale.planning import plots
    from distillscale.planning.plan import plan_from_settings

    _check_figure(settings.plot, settings.overwrite, settings.law)
    try:
        result = plan_from_settings(settings)
    except ParameterError as exc:  # the on-policy settings' flags are named apart from their fields
        raise UserError(exc.for_cli(ON_POLICY_FLAGS)) from None
    _print_plan(result, settings)
    if settings.plot is not None and result.kind != "supervised":
        plots.save_figure(plots.plot_plan(result), settings.plot)


def _print_plan(result, settings: PlanSettings) -> None:
    from distillscale.planning.render import plan_renderables

    checks = result.repetition
    for message in result.warnings:
        warn(message)
    for name, check in checks.items():
        if check.epochs > 1 and not check.within:
            warn(f"{name}: the plan repeats its {format_quantity(settings.unique_tokens)} unique tokens "
                 f"{check.epochs:.3g} times, {check.penalty:.2%} loss above fresh data; it needs "
                 f"{format_quantity(check.unique_tokens_needed)} unique tokens to stay within {settings.max_penalty:.1%}")
    if settings.as_json:
        print_json(result.to_dict())
        return
    for item in plan_renderables(result):
        console.print(item)
    for name, check in checks.items():
        console.print(f"Repetition ({name}): " + "; ".join(check.describe(format_quantity)))
    if checks and result.kind != "supervised":
        console.print("(for distilled students this assumes repeated tokens decay as in supervised "
                      "training: the law does not know how distillation tolerates repetition)")


def distill_map_command(
    out: Path = typer.Option(..., "--out", help="figure file (.png or .svg)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the figure file if distillscale drew it"),
    scenario: str = typer.Option("teacher-inference", "--scenario", help=", ".join(SCENARIOS)),
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    resolution: int = typer.Option(16, "--resolution", min=2, max=64,
                                   help="grid points per axis (each is one plan)"),
    flops_method: str = typer.Option("corrected", "--flops", help=FLOPS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the grid as JSON"),
) -> None:
    """Map where distillation beats supervised training at equal compute (Busbridge Fig. 6)."""
    from distillscale.planning import plots
    from distillscale.planning.plan import planner_for

    laws = load_laws(law)
    name = get_scenario(scenario).name
    plots.check_figure_path(out)
    check_output_file(out, overwrite=overwrite, is_ours=plots.is_figure_file, inputs=[law],
                      what="figure distillscale drew")
    planner = planner_for(laws, flops_method)
    student_params = np.geomspace(1e8, 1e11, resolution)
    tokens = np.geomspace(1e9, 1e14, resolution)
    advantage = planner.advantage_map(name, student_params, tokens)
    plots.save_figure(plots.plot_distill_map(planner, name, student_params, tokens, advantage), out)
    wins = np.nan_to_num(advantage, nan=-1.0) > 0
    if as_json:
        print_json({"law": laws.name, "scenario": name, "student_params": student_params,
                    "supervised_tokens": tokens,
                    "loss_difference": np.where(np.isnan(advantage), None, advantage).tolist(),
                    "figure": str(out)})
        return
    console.print(f"distillation wins in {int(wins.sum())} of {advantage.size} cells "
                  f"(scenario {name}, law {laws.name}); map written to {out}")


def teacher_command(
    student_params: str = typer.Option(..., "--student-params",
                                       help="student non-embedding parameters, e.g. 546M"),
    student_tokens: str = typer.Option(..., "--student-tokens", help="distillation tokens, e.g. 11B"),
    candidates: Path | None = typer.Option(
        None, "--candidates", help="CSV/JSONL of teachers: teacher_loss, or teacher_params and "
                                   "teacher_tokens; optional name (default: a ladder of sizes)"),
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    plot: Path | None = typer.Option(None, "--plot", help="write the U-curve (.png or .svg)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the figure file if distillscale drew it"),
) -> None:
    """Rank teachers for a student: predicted student loss each, the optimal teacher loss L_T*,
    and where the capacity gap begins (L_T / Ltilde_S = d1)."""
    from distillscale.planning import plots
    from distillscale.planning.plan import rank_teachers_for
    from distillscale.planning.render import teacher_renderables

    if plot is not None:
        plots.check_figure_path(plot)
        check_output_file(plot, overwrite=overwrite, is_ours=plots.is_figure_file, inputs=[law], flag="--plot",
                          what="figure distillscale drew")
    ranking = rank_teachers_for(law,
                                student_params=parse_quantity(student_params, "--student-params", kind=Quantity.PARAMS),
                                student_tokens=parse_quantity(student_tokens, "--student-tokens", kind=Quantity.TOKENS),
                                candidates=candidates)
    for message in ranking.warnings:
        warn(message)
    if plot is not None:
        plots.save_figure(plots.plot_teacher_u_curve(ranking), plot)
    if as_json:
        print_json({"law": ranking.law, **ranking.to_dict()})
        return
    for item in teacher_renderables(ranking.law, ranking):
        console.print(item)


def capacity_gap_command(
    runs: Path | None = typer.Option(
        None, "--runs", help="CSV/JSONL of distillation runs with student_params, teacher_params "
                             "and student_loss"),
    students: str = typer.Option("143M,546M,1.82B,7.75B", "--students",
                                 help="student sizes for the law's relation (comma-separated)"),
    tokens_per_param: float = typer.Option(20.0, "--tokens-per-param", min=1e-3,
                                           help="student tokens per parameter for the law's relation"),
    confidence: float = typer.Option(0.9, "--confidence", min=0.5, max=0.999,
                                     help="coverage of the interval on k"),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help="skip rows with bad values"),
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The linear law of capacity gap N_T* = k N_S: fitted to runs, and as the distillation law
    predicts it for compute-optimal teachers."""
    from distillscale.planning.plan import planner_for
    from distillscale.planning.teacher import LinearCapacityGap
    from distillscale.tables import read_table

    laws = load_laws(law)
    sizes = [parse_quantity(text.strip(), "--students", kind=Quantity.PARAMS) for text in students.split(",")]
    fits = {}
    if runs is not None:
        columns = ["student_params", "teacher_params", "student_loss"]
        table = read_table(runs).numeric(columns, drop_invalid=drop_invalid)
        fits["runs"] = LinearCapacityGap(confidence).fit(*(table[c] for c in columns))
        sizes = fits["runs"].student_params_.tolist()
    if laws.distillation is not None:
        planner = planner_for(laws)
        try:
            fits["law"] = LinearCapacityGap.from_law(planner, sizes, tokens_per_param, confidence)
        except ParameterError as exc:
            raise UserError(exc.for_cli({"student_params": "--students"})) from None
    elif runs is None:
        laws.require_distillation()
    if as_json:
        print_json({"law": laws.name, **{name: fit.to_dict() for name, fit in fits.items()}})
        return
    sources = {"runs": f"best observed teachers in {runs}",
               "law": f"law {laws.name}, compute-optimal teachers, students at "
                      f"{tokens_per_param:g} tokens/parameter"}
    for name, fit in fits.items():
        table = Table(title=f"Capacity gap from {sources[name]}")
        table.add_column("student N_S", justify="right")
        table.add_column("best teacher N_T*", justify="right")
        table.add_column("N_T* / N_S", justify="right")
        for student, teacher in zip(fit.student_params_, fit.teacher_params_):
            table.add_row(format_quantity(student), format_quantity(teacher), f"{teacher / student:.2f}")
        console.print(table)
        interval = (f"{confidence:.0%} interval not identified: every size gives the same ratio"
                    if fit.ratio_interval_ is None else
                    f"{confidence:.0%} interval {fit.ratio_interval_[0]:.3g} to {fit.ratio_interval_[1]:.3g}")
        slope = ("" if fit.exponent_ is None else
                 f"; free log-log slope {fit.exponent_:.2f} " + (
                     "(its error not identified: the sizes lie on a line)" if fit.exponent_stderr_ is None
                     else f"+/- {fit.exponent_stderr_:.2g} (1 is linear)"))
        console.print(styled("N_T* = k N_S with k = ", (f"{fit.ratio_:.3g}", "bold"), f" ({interval}){slope}"))
