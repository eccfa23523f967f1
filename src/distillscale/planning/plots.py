"""Figures of the planner (matplotlib, Agg backend). Each function returns a Figure; `save_figure`
writes it as PNG or SVG, chosen by the file extension. matplotlib is imported only when called."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distillscale.errors import UserError
from distillscale.io import atomic_write, figure_metadata, has_signature
from distillscale.planning.plans import Plan, ScenarioPlans
from distillscale.planning.render import ROLE_WORDS
from distillscale.planning.run_sheet import run_sheet, uses_text
from distillscale.planning.results import StudentSweep
from distillscale.planning.solver import DistillationPlanner
from distillscale.planning.teacher import TeacherRanking
from distillscale.units import format_quantity

if TYPE_CHECKING:
    from distillscale.planning.family_plans import FamilyPlans

FIGURE_FORMATS = ("png", "svg")


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (the report draws with it too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def quantity_axis(axis) -> None:
    """A log axis of counts (tokens, parameters), once its data are drawn, labelled in the units users
    type (100K, 200K, 500K, 1M...): ticks at 1, 2 and 5 per decade over a decade or two, fewer over
    more, so a short span still has labels and none overlap (matplotlib's own minor labels,
    2x10^5 3x10^5 4x10^5..., run into each other)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    low, high = sorted(axis.get_view_interval())
    decades = np.log10(high / low) if low > 0 else 10.0
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0, 3.0) if decades <= 4 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: format_quantity(value)))


def check_figure_path(path: str | Path) -> str:
    """The format of a figure path, or a UserError before any work is done."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise UserError(f"cannot save a figure as {str(path)!r}: use a .png or .svg file name")
    return suffix


# `is_ours` of a figure: --overwrite replaces only a figure distillscale drew (`figure_metadata`).
is_figure_file = has_signature


def save_figure(figure, path: str | Path) -> None:
    """Write `figure` atomically as PNG or SVG (by extension) and release it."""
    fmt = check_figure_path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight",
                                                  metadata=figure_metadata(fmt)))
    pyplot().close(figure)


def plot_loss_vs_compute(plan: ScenarioPlans, budgets):
    """The printed plans' students against budget: each plan (its scenario, or the given teacher) at
    every budget with fresh data (`ScenarioPlans.student_at`), the same student trained alone, and
    the printed plans marked at their budget; budgets that cannot be planned are left out."""
    plt = pyplot()
    budgets = np.asarray(budgets, dtype=np.float64)
    figure, axes = plt.subplots(figsize=(7, 4.5))

    def losses(solve) -> list[float]:
        out = []
        for budget in budgets:
            try:
                out.append(solve(budget))
            except UserError:
                out.append(np.nan)
        return out

    first = plan.plans[0]
    student_flops = first.flops.student / (3.0 * first.student_tokens)
    axes.plot(budgets, losses(lambda c: plan.planner.supervised(first.student_params, c, student_flops).loss),
              color="black", lw=2, label="supervised (no teacher)")
    for printed in plan.plans:
        line, = axes.plot(budgets, losses(lambda c: plan.student_at(c, printed).student_loss),
                          label=_curve_label(plan, printed))
        axes.plot(plan.compute, (printed.fresh or printed).student_loss, "*", ms=12, color=line.get_color())
    axes.axvline(plan.compute, color="grey", ls=":", label="your budget")
    axes.set_xscale("log")
    axes.set_xlabel("compute C (FLOPs)")
    axes.set_ylabel("student loss (nats/token)")
    axes.set_title(f"{format_quantity(first.student_params)}-parameter student (law: {plan.planner.laws.name})")
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    return figure


def plot_data_limited(plan: ScenarioPlans, budgets=None):
    """A plan on a pool as printed (`planning.data_limited`): left, each option's loss against budget (1/10x
    to 10x; the chain and ensemble of the printed k), the printed plan's options marked at its budget with
    their 90% intervals; right, at the plan's budget, the chain by generation and the ensemble's student by k
    (1 to 8) with their intervals, every loss the data-limited law's (`laws.data_limited`)."""
    from distillscale.planning.data_limited import data_limited_plan, view

    printed = plan.data_limited
    budgets = np.geomspace(printed.compute / 10, printed.compute * 10, 9) if budgets is None else np.asarray(budgets)
    forward = plan.planner.flops   # the plan's own FLOP accounting
    k = printed.chain_k
    teacher = next((o for o in printed.options if o.kind == "teacher"), None)
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    curves: dict[str, list[float]] = {}
    for budget in budgets:
        try:
            other = data_limited_plan(plan.laws, forward, float(budget), printed.params, printed.unique_tokens,
                                      generations=k, teacher=None if teacher is None else teacher.teacher,
                                      teacher_params=printed.params if teacher is None else teacher_params(plan),
                                      constants=printed.constants)
        except UserError:
            for values in curves.values():
                values.append(np.nan)
            continue
        for option in other.options:
            curves.setdefault(option.label, []).append(option.final.value)
    for option in printed.options:
        if option.label not in curves:
            continue
        line, = left.plot(budgets, curves[option.label], label=option.label,
                          **({"color": "black", "lw": 2} if option.kind == "alone" else {}))
        final = option.final
        if final.loss.has_interval:
            left.errorbar([printed.compute], [final.value], yerr=[[final.value - float(final.loss.low)],
                                                                   [float(final.loss.high) - final.value]],
                          fmt="*", ms=12, color=line.get_color(), capsize=3)
    left.axvline(printed.compute, color="grey", ls=":", label="your budget")
    left.set_xscale("log")
    left.set_xlabel("compute C (FLOPs)")
    left.set_ylabel("loss (nats/token)")
    left.set_title(f"{format_quantity(printed.params)} student on {format_quantity(printed.unique_tokens)} unique "
                   f"tokens (equal compute)")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=7)
    shown = view(plan.laws, printed)   # the same series the planner page draws
    for name, states, x in (("chain, by generation", shown.chain, np.arange(len(shown.chain))),
                            ("ensemble's student, by k", [s for _, s in shown.ensemble_students],
                             np.array([k for k, _ in shown.ensemble_students]))):
        values = np.array([s.value for s in states])
        low = np.array([float(s.loss.low) if s.loss.has_interval else s.value for s in states])
        high = np.array([float(s.loss.high) if s.loss.has_interval else s.value for s in states])
        right.errorbar(x, values, yerr=[values - low, high - values], marker="o", capsize=3, label=name)
    chain = shown
    right.axhline(chain.chain[0].value, color="black", lw=1, ls="--", label="trained alone")
    right.set_xlabel("generation (chain) / members k (ensemble)")
    right.set_ylabel("loss (nats/token), 90% intervals")
    right.set_title(f"{format_quantity(chain.tokens)} tokens per run (the printed chain's)")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    figure.tight_layout()
    return figure


def teacher_params(plan: ScenarioPlans) -> float | None:
    """The given teacher's size in a plan (its model's, or the one given)."""
    if plan.teacher_model is not None:
        return plan.teacher_model.params
    return None if plan.settings.teacher is None else plan.settings.teacher.params


def _curve_label(plan: ScenarioPlans, printed) -> str:
    """A curve's name: the given teacher (its size and loss, or a mixture's), or the scenario."""
    if plan.teacher_model is None and plan.settings.teacher is None:
        return printed.scenario.name
    teacher = plan.settings.teacher
    if teacher is not None and teacher.mixture is not None:
        size = f"a mixture of {len(teacher.mixture)} teachers"
    elif printed.teacher_params is not None:
        size = f"the {format_quantity(printed.teacher_params)} teacher"
    else:
        size = "the given teacher"
    return f"distilled from {size} (L_T = {printed.teacher_loss:.4f})"


def plot_family(plan: FamilyPlans):
    """A family's students as printed: each student's loss on its share of the budget, distilled
    and trained alone on that share, with their intervals, against its size; the verdict of each."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    plans = plan.plans   # as printed: after repetition (a student re-reading the cache's first tokens)
    sizes = np.array([p.student_params for p in plans])
    for offset, label, colour, loss_of, interval_of in (
            (1.0, "distilled", "C0", lambda p: p.student_loss, lambda p: p.student_interval),
            (1.04, "trained alone on its share", "black", lambda p: p.supervised.loss,
             lambda p: p.supervised.interval)):
        values = np.array([loss_of(p) for p in plans])
        errors = np.array([[v - float(i.low), float(i.high) - v] if i is not None and i.has_interval else [0.0, 0.0]
                           for v, i in ((loss_of(p), interval_of(p)) for p in plans)]).T
        axes.errorbar(sizes * offset, values, yerr=errors, fmt="o", color=colour, capsize=3, label=label)
    for p in plans:
        axes.annotate(f"{p.budget / plan.compute:.0%} of C: {p.verdict}", (p.student_params, p.student_loss),
                      textcoords="offset points", xytext=(6, -12), fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("student non-embedding parameters N_S")
    axes.set_ylabel("student loss (nats/token)")
    axes.set_title(f"a family of {len(plans)} students, C = {plan.compute:.3g} FLOPs in all "
                   f"(law: {plan.planner.laws.name})")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    return figure


def plot_plan(plan: Plan):
    """The figure of `distillscale plan --plot`, of the plan printed: best loss against student size
    for a sweep; for a family, each student on its share; for a given student, loss against budget
    (1/100x to 100x) in its scenarios or from its given teacher; on a pool (`unique_tokens`, a plan of one
    student size), the data-limited comparison as printed (`plot_data_limited`). The sweep's and the
    family's curves are the law's with fresh data."""
    if getattr(plan, "data_limited", None) is not None:
        return with_recipes(plot_data_limited(plan), plan, [] if plan.downstream is None else plan.downstream.lines())
    if plan.kind == "sweep":
        figure = plot_student_size_sweep([sweep.fresh or sweep for sweep in plan.sweeps])
    elif plan.kind == "family":
        figure = plot_family(plan)
    else:
        figure = plot_loss_vs_compute(plan, np.geomspace(plan.compute / 100, plan.compute * 100, 17))
    return with_recipes(figure, plan, [] if plan.downstream is None else plan.downstream.lines())


def with_recipes(figure, plan, downstream: list[str] = ()):
    """`figure` with the plan's run sheet written under it (`planning.run_sheet`: each distinct run,
    how to run it), then `downstream`: the lines of each run's downstream error (`planning.downstream`)."""
    lines = []
    rows = run_sheet(plan) if plan.recipes else []
    if rows:
        first = rows[0].recipe
        lines = [f"run sheet ({first.follows}; batch in tokens, sequences of {first.n_ctx:,}):"]
    lines += [textwrap.fill(f"{ROLE_WORDS[row.role]} for {uses_text(row)}: N {format_quantity(r.params)}, "
                            f"D {format_quantity(r.tokens)}, peak lr {r.lr:.3g}, batch {format_quantity(r.batch_tokens)} "
                            f"({r.batch_sequences:,} seq.), {r.steps:,} steps, warmup {r.warmup_steps:,}"
                            + ("" if r.beta2 is None else f", beta2 {r.beta2:g}")
                            + f", {r.flags()}" + ("; no run to train: " + "; ".join(r.problems)
                                                              if r.problems else ""),
                            width=100, subsequent_indent="    ") for row in rows for r in (row.recipe,)]
    lines += [textwrap.fill(line, width=100, subsequent_indent="    ") for line in downstream]
    if not lines:
        return figure
    figure.text(0.01, -0.02, "\n".join(lines), fontsize=7, va="top", ha="left", family="monospace")
    return figure


def plot_student_size_sweep(sweeps: list[StudentSweep]):
    """Best student loss against student size at one budget, per scenario, vs supervised."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for sweep in sweeps:
        sizes = [p.student_params for p in sweep.plans]
        line, = axes.plot(sizes, [p.student_loss for p in sweep.plans], marker=".",
                          label=sweep.scenario.name)
        axes.plot(sweep.best.student_params, sweep.best.student_loss, "*", ms=12,
                  color=line.get_color())
    first = sweeps[0]
    axes.plot([p.student_params for p in first.plans], [p.supervised.loss for p in first.plans],
              color="black", lw=2, label="supervised")
    axes.set_xscale("log")
    axes.set_xlabel("student non-embedding parameters")
    axes.set_ylabel("student loss (nats/token)")
    axes.set_title(f"students at C = {first.budget:.3g} FLOPs (stars: best size)")
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    return figure


def plot_teacher_u_curve(ranking: TeacherRanking):
    """Student loss against teacher loss (the U-curve), the optimum, the capacity-gap point and
    the candidate teachers."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(ranking.curve_teacher_losses, ranking.curve_student_losses, color="C0",
              label="distilled student")
    axes.axhline(ranking.supervised_loss, color="black", ls="--", label="supervised student")
    axes.plot(ranking.optimal_teacher_loss, ranking.optimal_student_loss, "*", ms=14, color="C3",
              label=f"optimal teacher, L_T* = {ranking.optimal_teacher_loss:.3f}")
    axes.axvline(ranking.capacity_gap_teacher_loss, color="grey", ls=":",
                 label=f"L_T / L~_S = d1 = {ranking.d1:.3f}")
    axes.scatter([c.loss for c in ranking.candidates], ranking.student_losses, color="C1",
                 zorder=3, label="candidates")
    axes.set_xscale("log")
    axes.set_xlabel("teacher loss L_T (nats/token)")
    axes.set_ylabel("student loss L_S (nats/token)")
    axes.set_title(f"student {format_quantity(ranking.student_params)} parameters, "
                   f"{format_quantity(ranking.student_tokens)} tokens")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    return figure


# The colours of the distill map's verdicts (`plot_distill_map`), in legend order.
MAP_VERDICTS = {"distill": "#2166ac", "too close to call": "#d9d9d9", "cannot tell at this distance": "#f7f7f7",
                "pretrain": "#b2182b"}


def plot_distill_map(planner: DistillationPlanner, scenario: str, student_params, student_tokens,
                     verdicts: list[list[str | None]]):
    """Where distillation beats supervised training at equal compute (like Busbridge Fig. 6): each
    cell coloured by its verdict, read off its Delta's interval as every plan's (distil where the
    interval lies below 0, not where the point value does), over student size and tokens; a cell
    that cannot be planned is left blank."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names = list(MAP_VERDICTS)
    codes = np.array([[np.nan if v is None else float(names.index(v)) for v in row] for row in verdicts])
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.pcolormesh(student_params, student_tokens, codes.T, cmap=ListedColormap(list(MAP_VERDICTS.values())),
                    vmin=-0.5, vmax=len(names) - 0.5, shading="nearest")
    shown = {v for row in verdicts for v in row if v is not None}
    axes.legend(handles=[Patch(facecolor=colour, edgecolor="grey", label=name)
                         for name, colour in MAP_VERDICTS.items() if name in shown],
                title="verdict (Δ's interval)", fontsize="small", loc="lower right")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("student non-embedding parameters N_S")
    axes.set_ylabel("supervised tokens D (budget C = 3 F(N_S) D)")
    axes.set_title(f"distil or pretrain? scenario {scenario} (law: {planner.laws.name})")
    return figure
