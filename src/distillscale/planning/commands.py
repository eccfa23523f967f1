"""`distillscale plan`, `teacher`, `capacity-gap` and `distill-map`: the planner on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.table import Table

from distillscale.console import console, print_json, warn
from distillscale.errors import UserError
from distillscale.io import check_output_file
from distillscale.laws.commands import LAW_HELP
from distillscale.laws.lawset import LawSet, load_laws
from distillscale.planning.extrapolation import data_range, extrapolation_warnings
from distillscale.planning.flops import SCENARIOS, ForwardFlops, get_scenario
from distillscale.units import format_quantity, parse_quantity

if TYPE_CHECKING:  # the solver imports scipy: loaded inside the commands, keeping --help fast
    from distillscale.planning.solver import (
        DistillationPlan,
        DistillationPlanner,
        StudentSweep,
        SupervisedPlan,
    )

SCENARIO_HELP = f"{', '.join(SCENARIOS)}, or all"
FLOPS_HELP = "forward FLOPs per token: corrected (Busbridge App. H) or simple (2N)"


def _flops(laws: LawSet, method: str, n_ctx: int | None, vocab_size: int | None,
           aspect_ratio: float | None) -> ForwardFlops:
    settings = laws.compute
    return ForwardFlops(method, n_ctx or settings.n_ctx, vocab_size or settings.n_vocab,
                        aspect_ratio or settings.aspect_ratio)


def _planner(laws: LawSet, method: str, n_ctx: int | None, vocab_size: int | None,
             aspect_ratio: float | None) -> DistillationPlanner:
    from distillscale.planning.solver import DistillationPlanner

    return DistillationPlanner(laws, _flops(laws, method, n_ctx, vocab_size, aspect_ratio))


def _plan_supervised(laws: LawSet, budget: float, flops: ForwardFlops, student_params: str | None,
                     min_params: str | None, max_params: str | None, as_json: bool) -> None:
    """A law without a distillation law plans the supervised question: the compute-optimal model
    for the budget (or the given size's loss on the whole budget), with its interval."""
    from distillscale.planning.solver import SupervisedPlanner

    planner = SupervisedPlanner(laws.require_supervised(), flops)
    if student_params:
        plan = planner.supervised(parse_quantity(student_params, "--student-params"), budget)
    else:
        size_range = (parse_quantity(min_params, "--min-params") if min_params else planner.bounds[0],
                      parse_quantity(max_params, "--max-params") if max_params else planner.bounds[1])
        plan = planner.supervised_optimal(budget, size_range)
    _warn_extrapolation(laws, {"the model": plan.student_params}, {"the model": plan.tokens})
    note = (f"law {laws.name!r} has no distillation law, so this is the supervised plan; distillation "
            "planning needs one: fit it with `distillscale fit distillation` or use --law busbridge2025")
    if as_json:
        print_json({"law": laws.name, "budget": budget, "supervised": plan.to_dict(), "note": note})
        return
    what = "Training" if student_params else "Compute-optimal training"
    table = Table(title=f"{what} without a teacher, C = {budget:.3g} FLOPs (law: {laws.name})",
                  show_header=False)
    table.add_row("params N", format_quantity(plan.student_params))
    table.add_row("tokens D", format_quantity(plan.tokens))
    table.add_row("tokens per parameter", f"{plan.tokens / plan.student_params:.3g}")
    interval = plan.interval
    table.add_row("loss", f"[bold]{plan.loss:.4f}[/bold] nats/token"
                  + (interval.describe() if interval is not None else ""))
    console.print(table)
    console.print(note)


# What sets each limit of a sweep's student sizes, and the option that moves it.
SIZE_LIMITS = {
    "min_params": ("smallest size searched", "--min-params"),
    "max_params": ("largest size searched", "--max-params"),
    "min_tokens_per_param": ("fewest tokens per parameter", "--min-tokens-per-param"),
    "max_tokens_per_param": ("most tokens per parameter", "--max-tokens-per-param"),
    "token_bounds": ("the planner's token bounds", None),
}


def _warn_extrapolation(laws: LawSet, params: dict, tokens: dict) -> None:
    for message in extrapolation_warnings(laws, params, tokens):
        warn(message)


def _warn_plan_extrapolation(laws: LawSet, plans: list[DistillationPlan], sweep: bool) -> None:
    """Warn once per quantity of the plans far outside the data: each student against the
    distillation law's runs, each teacher against the supervised law's."""
    messages = []
    for plan in plans:
        name = plan.scenario.name
        student = f"the best {name} student" if sweep else "the student"
        messages += extrapolation_warnings(
            laws, {student: plan.student_params}, {f"the {name} student's tokens": plan.student_tokens},
            {f"the {name} student's tokens per parameter": plan.student_tokens / plan.student_params},
            students=True)
        messages += extrapolation_warnings(laws, {f"the {name} teacher": plan.teacher_params},
                                           {f"the {name} teacher's tokens": plan.teacher_tokens})
    for message in dict.fromkeys(messages):
        warn(message)


def _at_cap(value: float | None, bound: float) -> str:
    if value is None:
        return "-"
    return f"{format_quantity(value)}" + (" (cap)" if value >= bound * (1 - 1e-6) else "")


def _interval_cell(prediction) -> str:
    if prediction is None or not prediction.has_interval:
        return "-"
    return f"{prediction.low:.3f}–{prediction.high:.3f}"


def _plans_table(plans: list[DistillationPlan], title: str, bound: float,
                 best_supervised: SupervisedPlan | None = None,
                 edges: dict[str, list[str]] | None = None,
                 verdicts: dict[str, str] | None = None) -> Table:
    """One column per scenario. With `best_supervised`, `edges` and `verdicts` (a sweep over student
    sizes) the plans are the best students, compared with the best model trained without a teacher,
    and a best student on a limit of the search is marked."""
    caption = "losses in nats/token" + ("; *: on the edge of the search (see below)"
                                        if edges and any(edges.values()) else "")
    table = Table(title=title, caption=caption)
    table.add_column("")
    for plan in plans:  # break long scenario names at hyphens so four columns fit 80 characters
        name = plan.scenario.name
        table.add_column(name if len(name) <= 10 else name.replace("-", "-\n"), justify="right")

    def row(label: str, cell) -> None:
        table.add_row(label, *[cell(p) for p in plans])

    def supervised_loss(plan: DistillationPlan) -> float:
        return (best_supervised or plan.supervised).loss

    if edges is not None:
        row("student params N_S", lambda p: format_quantity(p.student_params)
            + ("*" if edges[p.scenario.name] else ""))
    row("student tokens D_S", lambda p: format_quantity(p.student_tokens))
    row("teacher params N_T", lambda p: _at_cap(p.teacher_params, bound))
    row("teacher tokens D_T", lambda p: _at_cap(p.teacher_tokens, bound))
    row("teacher loss L_T", lambda p: f"{p.teacher_loss:.4f}")
    row("student loss L_S", lambda p: f"[bold]{p.student_loss:.4f}[/bold]")
    with_intervals = [p for p in plans if p.student_interval is not None]
    if with_intervals:
        level = with_intervals[0].student_interval.level
        row(f"L_S {level:.0%}", lambda p: _interval_cell(p.student_interval))
    row("best supervised loss" if best_supervised else "supervised loss",
        lambda p: f"{supervised_loss(p):.4f}")
    if with_intervals:
        row(f"supervised {level:.0%}",
            lambda p: _interval_cell((best_supervised or p.supervised).interval))
    row("verdict", lambda p: verdicts[p.scenario.name] if verdicts else p.verdict)
    row("supervised - L_S", lambda p: f"{supervised_loss(p) - p.student_loss:+.4f}")
    row("FLOPs student", lambda p: f"{p.flops.student:.3g}")
    row("FLOPs teacher logits", lambda p: f"{p.flops.teacher_inference:.3g}")
    row("FLOPs teacher train", lambda p: f"{p.flops.teacher_pretraining:.3g}")
    row("solver converged", lambda p: "yes" if p.convergence.success else "no: grid optimum")
    return table


def plan_command(
    compute: str = typer.Option(..., "--compute", help="FLOP budget, e.g. 1e21"),
    student_params: str | None = typer.Option(
        None, "--student-params", help="student non-embedding parameters, e.g. 546M; "
                                       "omit to find the best student size"),
    student_model: Path | None = typer.Option(
        None, "--student-model", help="a model directory (model_config.json): exact N_S and "
                                      "forward FLOPs from its distillscale config"),
    scenario: str | None = typer.Option(None, "--scenario", help=f"{SCENARIO_HELP} (default)"),
    teacher_params: str | None = typer.Option(
        None, "--teacher-params", help="an existing teacher's non-embedding parameters"),
    teacher_tokens: str | None = typer.Option(
        None, "--teacher-tokens", help="the existing teacher's pre-training tokens"),
    teacher_loss: float | None = typer.Option(
        None, "--teacher-loss", help="the existing teacher's loss (nats/token), with --teacher-params"),
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    flops_method: str = typer.Option("corrected", "--flops", help=FLOPS_HELP),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=1, help="context length (default: the law's)"),
    vocab_size: int | None = typer.Option(None, "--vocab-size", min=1,
                                          help="vocabulary size (default: the law's)"),
    aspect_ratio: float | None = typer.Option(None, "--aspect-ratio", min=1.0,
                                              help="d_model / n_layers (default: the law's)"),
    min_params: str | None = typer.Option(
        None, "--min-params", help="without --student-params: the smallest student to try "
                                   "(default: the smallest model in the law's data)"),
    max_params: str | None = typer.Option(
        None, "--max-params", help="without --student-params: the largest student to try "
                                   "(default: the largest model in the law's data)"),
    min_tokens_per_param: float | None = typer.Option(
        None, "--min-tokens-per-param", help="without --student-params: the fewest student tokens "
                                             "per parameter (default: the law's data; 1 for "
                                             "busbridge2025)"),
    max_tokens_per_param: float | None = typer.Option(
        None, "--max-tokens-per-param", help="without --student-params: the most student tokens "
                                             "per parameter (default: the law's data; 5000 for "
                                             "busbridge2025)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    plot: Path | None = typer.Option(None, "--plot", help="write a figure (.png or .svg)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the figure file if it exists"),
) -> None:
    """Compute-optimal distillation for a budget: teacher, tokens, loss, and distil or pretrain?

    Without --student-params, finds the best student size per scenario, searched inside the
    law's data (sizes and tokens per parameter) unless --min-params and the like widen it."""
    from distillscale.planning import plots

    laws = load_laws(law)
    budget = parse_quantity(compute, "--compute")
    names = list(SCENARIOS) if scenario in (None, "all") else [get_scenario(scenario).name]
    if plot is not None:
        plots.check_figure_path(plot)
        check_output_file(plot, overwrite=overwrite, inputs=[law], flag="--plot")
    if laws.distillation is None:
        _plan_supervised(laws, budget, _flops(laws, flops_method, n_ctx, vocab_size, aspect_ratio),
                         student_params, min_params, max_params, as_json)
        return
    planner = _planner(laws, flops_method, n_ctx, vocab_size, aspect_ratio)

    N_S, F_S = _student(student_params, student_model)
    existing_teacher = teacher_params or teacher_tokens or teacher_loss is not None
    if existing_teacher and N_S is None:
        raise UserError("planning with an existing teacher needs --student-params")

    search = {"--min-params": min_params, "--max-params": max_params,
              "--min-tokens-per-param": min_tokens_per_param,
              "--max-tokens-per-param": max_tokens_per_param}
    if N_S is None:
        size_range, tokens_per_param = _student_search(laws, planner, **{
            name[2:].replace("-", "_"): value for name, value in search.items()})
        sweeps = [planner.sweep(budget, name, size_range, tokens_per_param) for name in names]
        _warn_plan_extrapolation(laws, [s.best for s in sweeps], sweep=True)
        if as_json:
            print_json({"law": laws.name, "budget": budget,
                        "sweeps": {s.scenario.name: s.to_dict() for s in sweeps}})
        else:
            _print_sweeps(laws, budget, planner, sweeps)
        if plot is not None:
            plots.save_figure(plots.plot_student_size_sweep(sweeps), plot)
        return
    given = [name for name, value in search.items() if value is not None]
    if given:
        raise UserError(f"the student-size search options ({', '.join(given)}) do not combine "
                        "with --student-params/--student-model: drop one or the other")

    if existing_teacher:
        if scenario not in (None, "all", "teacher-inference"):
            raise UserError("an existing teacher is planned under teacher-inference cost: "
                            "drop --scenario or use --scenario teacher-inference")
        if not teacher_params:
            raise UserError("give the existing teacher's size with --teacher-params "
                            "(its inference cost depends on it)")
        N_T = parse_quantity(teacher_params, "--teacher-params")
        D_T = parse_quantity(teacher_tokens, "--teacher-tokens") if teacher_tokens else None
        if (D_T is None) == (teacher_loss is None):
            raise UserError("give exactly one of --teacher-tokens or --teacher-loss "
                            "with --teacher-params")
        L_T = (laws.check_teacher_loss(parse_quantity(teacher_loss, "--teacher-loss"))
               if teacher_loss is not None else None)
        plans = [planner.plan_with_teacher(N_S, budget, N_T, D_T, L_T, F_S)]
    else:
        plans = [planner.plan(N_S, budget, name, F_S) for name in names]
    _warn_plan_extrapolation(laws, plans, sweep=False)

    if as_json:
        records = {p.scenario.name: {"law": laws.name, **p.to_dict()} for p in plans}
        print_json(records[plans[0].scenario.name] if len(plans) == 1
                   else {"law": laws.name, "budget": budget, "student_params": N_S,
                         "plans": records})
    else:
        teacher = " with the given teacher" if existing_teacher else ""
        console.print(_plans_table(plans, f"Distilling a {format_quantity(N_S)}-parameter student"
                                          f"{teacher} with C = {budget:.3g} FLOPs "
                                          f"(law: {laws.name})", planner.bounds[1]))
        if any(p.teacher_family is not None for p in plans):
            console.print("best-case: any teacher with L(N_T, D_T) = L_T* does; the table shows "
                          "the one cheapest to pre-train.")
        _print_interval_note(plans)
    if plot is not None:
        budgets = np.geomspace(budget / 100, budget * 100, 17)
        plots.save_figure(plots.plot_loss_vs_compute(planner, N_S, budgets, budget, F_S), plot)


def _print_interval_note(plans: list[DistillationPlan]) -> None:
    """What the intervals are made of, and what "too close to call" means."""
    with_intervals = [p for p in plans if p.student_interval is not None]
    if not with_intervals:
        return
    dominant = {p.student_interval.dominant for p in with_intervals}
    console.print(f"intervals: the fitted laws' bootstrap and backtest extrapolation error at the "
                  f"plan's distance from the runs; mostly {' and '.join(sorted(dominant))}")
    if any(p.verdict == "too close to call" for p in with_intervals):
        console.print("too close to call: the loss difference is inside the intervals, so the laws "
                      "cannot say whether distillation or pre-training wins here")


def _student_search(laws: LawSet, planner: DistillationPlanner, min_params: str | None,
                    max_params: str | None, min_tokens_per_param: float | None,
                    max_tokens_per_param: float | None
                    ) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """(size range, tokens-per-parameter range) of the student-size sweep: the law's student data
    range, with the options given replacing its ends."""
    known = data_range(laws, students=True)
    if known is None:
        warn(f"law {laws.name!r} records no data range: searching students of any size in the "
             "planner's bounds (set --min-params, --max-params and --min-tokens-per-param)")
    sizes = list(known.params if known else planner.bounds)
    ratios = list(known.tokens_per_param) if known else [None, None]
    for index, (option, text) in enumerate((("--min-params", min_params),
                                            ("--max-params", max_params))):
        if text is not None:
            sizes[index] = parse_quantity(text, option)
    for index, (option, value) in enumerate((("--min-tokens-per-param", min_tokens_per_param),
                                             ("--max-tokens-per-param", max_tokens_per_param))):
        if value is not None:
            if not value > 0:
                raise UserError(f"{option} must be positive, got {value:g}")
            ratios[index] = value
    if sizes[0] >= sizes[1]:
        raise UserError(f"the smallest student ({format_quantity(sizes[0])}) must be below the "
                        f"largest ({format_quantity(sizes[1])}): fix --min-params/--max-params")
    if ratios == [None, None]:
        return tuple(sizes), None
    ratios = [0.0 if ratios[0] is None else ratios[0], np.inf if ratios[1] is None else ratios[1]]
    if ratios[0] >= ratios[1]:
        raise UserError(f"the fewest tokens per parameter ({ratios[0]:g}) must be below the most "
                        f"({ratios[1]:g}): fix --min-tokens-per-param/--max-tokens-per-param")
    return tuple(sizes), tuple(ratios)


def _print_sweeps(laws: LawSet, budget: float, planner: DistillationPlanner,
                  sweeps: list[StudentSweep]) -> None:
    """The best students' table, the best supervised model, and where the search stopped them."""
    best_supervised, region = sweeps[0].supervised_best, sweeps[0].region
    edges = {s.scenario.name: s.edges for s in sweeps}
    console.print(_plans_table([s.best for s in sweeps],
                               f"Best student size for C = {budget:.3g} FLOPs (law: {laws.name})",
                               planner.bounds[1], best_supervised, edges,
                               {s.scenario.name: s.verdict for s in sweeps}))
    _print_interval_note([s.best for s in sweeps])
    console.print(f"best supervised model: {format_quantity(best_supervised.student_params)} "
                  f"parameters on {format_quantity(best_supervised.tokens)} tokens"
                  + (f", on the edge of the search{_edge_note(sweeps[0].supervised_edges)}"
                     if sweeps[0].supervised_edges else ""))
    ratios = region.tokens_per_param
    console.print(f"student sizes searched: {format_quantity(region.smallest)} to "
                  f"{format_quantity(region.largest)} (limits: {SIZE_LIMITS[region.smallest_limit][0]}, "
                  f"{SIZE_LIMITS[region.largest_limit][0]})"
                  + (f", at {ratios[0]:g} to {ratios[1]:g} tokens per parameter" if ratios else ""))
    by_edges: dict[tuple[str, ...], list[str]] = {}
    for sweep in sweeps:
        if sweep.edges:
            by_edges.setdefault(tuple(sweep.edges), []).append(sweep.scenario.name)
    for edges, names in by_edges.items():
        console.print(f"* {', '.join(names)}: the best student sits on the edge of the search, not "
                      f"at an interior optimum{_edge_note(list(edges))}; the law favours going "
                      "further, outside its data")


def _edge_note(edges: list[str]) -> str:
    """' (limit: ...; widen with --option)' for the search limits a best model sits on."""
    if not edges:
        return ""
    options = [SIZE_LIMITS[edge][1] for edge in edges if SIZE_LIMITS[edge][1]]
    widen = f"; widen with {' or '.join(options)}" if options else ""
    return f" (limit: {', '.join(SIZE_LIMITS[edge][0] for edge in edges)}{widen})"


def _student(student_params: str | None,
             student_model: Path | None) -> tuple[float | None, float | None]:
    """(N_S, exact F(N_S) or None) from --student-params or a model directory."""
    if student_model is None:
        return (parse_quantity(student_params, "--student-params") if student_params else None), None
    if student_params:
        raise UserError("give --student-params or --student-model, not both")
    from distillscale.model.checkpoint import load_config

    config = load_config(student_model)
    return float(config.non_embedding_params), float(config.forward_flops_per_token())


def distill_map_command(
    out: Path = typer.Option(..., "--out", help="figure file (.png or .svg)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the figure file if it exists"),
    scenario: str = typer.Option("teacher-inference", "--scenario", help=", ".join(SCENARIOS)),
    law: str = typer.Option("busbridge2025", "--law", help=LAW_HELP),
    resolution: int = typer.Option(16, "--resolution", min=2, max=64,
                                   help="grid points per axis (each is one plan)"),
    flops_method: str = typer.Option("corrected", "--flops", help=FLOPS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the grid as JSON"),
) -> None:
    """Map where distillation beats supervised training at equal compute (Busbridge Fig. 6)."""
    from distillscale.planning import plots

    laws = load_laws(law)
    name = get_scenario(scenario).name
    plots.check_figure_path(out)
    check_output_file(out, overwrite=overwrite, inputs=[law])
    planner = _planner(laws, flops_method, None, None, None)
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
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the figure file if it exists"),
) -> None:
    """Rank teachers for a student: predicted student loss each, the optimal teacher loss L_T*,
    and where the capacity gap begins (L_T / Ltilde_S = d1)."""
    from distillscale.planning import plots
    from distillscale.planning.teacher import rank_teachers, read_candidates, teacher_ladder

    laws = load_laws(law)
    N_S = parse_quantity(student_params, "--student-params")
    D_S = parse_quantity(student_tokens, "--student-tokens")
    if plot is not None:
        plots.check_figure_path(plot)
        check_output_file(plot, overwrite=overwrite, inputs=[law], flag="--plot")
    planner = _planner(laws, "corrected", None, None, None)
    teachers = (read_candidates(candidates, planner) if candidates is not None
                else teacher_ladder(planner, N_S))
    ranking = rank_teachers(planner, N_S, D_S, teachers)
    _warn_extrapolation(laws, {"the student": N_S, **{
        f"teacher {c.name!r}": c.params for c in teachers}}, {"the student's tokens": D_S})
    if plot is not None:
        plots.save_figure(plots.plot_teacher_u_curve(planner, ranking), plot)
    if as_json:
        print_json({"law": laws.name, **ranking.to_dict()})
        return
    table = Table(title=f"Teachers for a {format_quantity(N_S)}-parameter student on "
                        f"{format_quantity(D_S)} tokens (law: {laws.name})",
                  caption="losses in nats/token; * marks the best candidate")
    intervals = ranking.intervals
    headers = ("teacher", "N_T", "D_T", "L_T", "L_T / Ltilde_S", "student L_S")
    for header in headers + ((f"{intervals.level:.0%} ±",) if intervals is not None else ()):
        table.add_column(header, justify="left" if header == "teacher" else "right")
    for index, (c, loss, ratio) in enumerate(zip(ranking.candidates, ranking.student_losses,
                                                 ranking.gap_ratios)):
        mark = "*" if index == ranking.best else ""
        interval = ((f"{(intervals.high[index] - intervals.low[index]) / 2:.3f}",)
                    if intervals is not None else ())
        table.add_row(f"{mark}{c.name}", format_quantity(c.params) if c.params else "-",
                      format_quantity(c.tokens) if c.tokens else "-", f"{c.loss:.4f}",
                      f"{ratio:.3f}", f"[bold]{loss:.4f}[/bold]" if mark else f"{loss:.4f}", *interval)
    console.print(table)
    if intervals is not None:
        console.print(f"intervals: bootstrap and backtest extrapolation error; mostly {intervals.dominant}")
    console.print(f"supervised student (no teacher): {ranking.supervised_loss:.4f} nats/token\n"
                  f"optimal teacher loss L_T* = {ranking.optimal_teacher_loss:.4f} -> student "
                  f"{ranking.optimal_student_loss:.4f} nats/token\n"
                  f"capacity gap: the law switches at L_T = d1 x Ltilde_S = "
                  f"{ranking.capacity_gap_teacher_loss:.4f} (d1 = {ranking.d1:.3f}); weaker "
                  "teachers give L_S ~ L_T, and teachers stronger than L_T* make the student worse")


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
    from distillscale.planning.teacher import LinearCapacityGap
    from distillscale.tables import read_table

    laws = load_laws(law)
    sizes = [parse_quantity(text.strip(), "--students") for text in students.split(",")]
    fits = {}
    if runs is not None:
        columns = ["student_params", "teacher_params", "student_loss"]
        table = read_table(runs).numeric(columns, drop_invalid=drop_invalid)
        fits["runs"] = LinearCapacityGap(confidence).fit(*(table[c] for c in columns))
        sizes = fits["runs"].student_params_.tolist()
    if laws.distillation is not None:
        planner = _planner(laws, "corrected", None, None, None)
        fits["law"] = LinearCapacityGap.from_law(planner, sizes, tokens_per_param, confidence)
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
        low, high = fit.ratio_interval_
        slope = ("" if fit.exponent_ is None else
                 f"; free log-log slope {fit.exponent_:.2f} +/- {fit.exponent_stderr_:.2f} "
                 "(1 is linear)")
        console.print(f"N_T* = k N_S with k = [bold]{fit.ratio_:.3g}[/bold] "
                      f"({confidence:.0%} interval {low:.3g} to {high:.3g}){slope}")
