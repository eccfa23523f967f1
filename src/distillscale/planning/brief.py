"""A plan in one screen: what `distillscale plan` prints by default. The verdict first, one table
(a row per scenario and one for the model trained without a teacher), the run sheet as one table,
what --downstream-law adds, --gpu's answer in one paragraph, and one-line notes, the most important
first, each printed once: every warning of a problem (a class of them in one line:
`warnings.warning_lines`), then at most MAX_NOTES in all. Everything else (the FLOPs of each phase,
the teacher's loss interval, peak rates and their intervals, warmup, batch sequences, each run's GPU
time and repetition, what the targets and intervals assume) is `plan --explain`
(`render.plan_renderables`) and `plan --json`. The mode comparison: its verdict, its table of modes,
what on-policy must be worth and the run sheet.

A pruned start or a mixture of teachers says in one line each that the law is applied outside its fit;
a plan without a teacher is shown in full."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box

from distillscale.console import Table, styled
from distillscale.planning.family_view import FAMILY_ANSWER_LINES, family_renderables
from distillscale.planning.render import (SIZE_LIMITS, PlanView, answer_lines, at_cap, edge_note, interval_cell,
                                         modes_renderables)
from distillscale.planning.repetition import RepeatedData
from distillscale.planning.results import CANNOT_TELL, cannot_tell_reason
from distillscale.planning.run_sheet import ROLES, run_sheet, uses_text
from distillscale.planning.warnings import FREE_TEACHER, teacher_is_trained, warning_lines
from distillscale.units import format_quantity

if TYPE_CHECKING:
    from distillscale.planning.results import DistillationPlan

MAX_NOTES = 4
# A verdict in the table's narrow column; the notes say what the short ones mean.
SHORT_VERDICTS = {"too close to call": "too close", CANNOT_TELL: "can't tell"}
EXPLAIN = "--explain: the FLOPs of each phase, peak rates, warmup, what intervals assume"
# The run sheet's widest scenario name unbroken (its rows fit 80 columns with it; the plan's table, wider,
# breaks names at 20).
SHEET_LABEL = len("teacher-pretraining-inference")


def can_brief(plan: PlanView) -> bool:
    """Whether the one-screen view shows the plan whole (else it is printed in full)."""
    if plan.kind == "modes":
        return True
    return plan.kind in ("plans", "sweep", "family")


def brief_renderables(plan: PlanView) -> list:
    """The answer lines, the plan's table, its run sheet and its notes (`can_brief` plans)."""
    if plan.kind == "modes":
        return _modes(plan)
    if plan.kind == "family":
        return _family(plan)
    sweep = plan.kind == "sweep"
    plans = [s.best for s in plan.sweeps] if sweep else plan.plans
    supervised = plan.sweeps[0].supervised_best if sweep else plans[0].supervised
    verdicts = plan.verdicts()
    out = answer_lines(plan) + _table(plan, plans, supervised, verdicts, sweep)
    rows = run_sheet(plan) if plan.recipes else []
    if rows:
        out += _sheet(rows)
    # what the user asked for with --downstream-law and --gpu, as the full plan shows it
    downstream = [] if plan.downstream is None else plan.downstream.lines()
    gpu_hours = [] if getattr(plan, "gpu_hours", None) is None else [_gpu_line(plan.gpu_hours)]
    return out + downstream + gpu_hours + _notes(plan, plans, verdicts, rows)


def _family(plan: PlanView) -> list:
    """A family's answer, its table and notes (why a verdict cannot tell among them), the run sheet of its
    answer (each student's distilled run or, one that does not distil, its run alone) and its GPU time."""
    rows = [row for row in (run_sheet(plan) if plan.recipes else []) if set(row.uses) & _answered(plan)]
    notes = warning_lines([note for row in rows for note in row.recipe.notes]) + _far_rates(rows)
    if "too close to call" in plan.verdicts().values():
        notes.append("too close: Δ's interval reaches across 0")
    gpu_hours = [] if plan.gpu_hours is None else [_family_gpu_line(plan)]
    return (answer_lines(plan) + family_renderables(plan) + (_sheet(rows) if rows else [])
            + gpu_hours + notes + [EXPLAIN])


def _answered(plan: PlanView) -> set[str]:
    """The runs of a family's answer (`Plan.runs()` names): a distilling student's own (and its teacher's,
    trained for the family), a student's run alone where it does not distil."""
    from distillscale.planning.repetition import PRETRAIN_INSTEAD, TEACHER_RUN

    return {run for p in plan.plans for run in (
        (p.scenario.name, TEACHER_RUN.format(p.scenario.name)) if p.scenario.name in plan.sharing
        else (PRETRAIN_INSTEAD.format(p.scenario.name),))}


def _family_gpu_line(plan: PlanView) -> str:
    """--gpu's answer for a family: each student's GPU time as answered (one that distils: its runs, its
    share of the teacher's logits included; one that does not: its run alone), and the family's in all."""
    from distillscale.planning.gpu_hours import format_gpu_hours, format_hours

    estimate, spent = plan.gpu_hours, plan.answered_gpu_hours()
    parts = [f"{name.removeprefix('student ')}{'' if name in plan.sharing else ' alone'} {format_gpu_hours(hours)}"
             for name, (hours, _, _) in spent.items()] if len(spent) <= FAMILY_ANSWER_LINES else []
    costs = [cost for _, _, cost in spent.values()]
    price = ("" if None in costs else
             f", cost {sum(costs):,.0f} at {estimate.price_per_gpu_hour:g} per GPU-hour")
    return (f"GPU-hours on {estimate.gpus} x {estimate.device_name} as answered (an estimate from measured throughput; "
            f"each run: --explain): {''.join(part + '; ' for part in parts)}the family {format_gpu_hours(sum(h for h, _, _ in spent.values()))}"
            f"{price}, its longest run {format_hours(max(wall for _, wall, _ in spent.values()))}")


def _modes(plan: PlanView) -> list:
    """The mode comparison's verdict, its table of modes, what on-policy must be worth, the run sheet and
    the pointer to --explain (the FLOPs of each phase, how on-policy samples)."""
    rows = run_sheet(plan) if plan.recipes else []
    out = [item for item in modes_renderables(plan, brief=True) if not isinstance(item, str) or item]
    notes = ["!: a run cannot be trained as planned (--explain says why)"] * any(r.recipe.problems for r in rows)
    notes += warning_lines([note for row in rows for note in row.recipe.notes]) + _far_rates(rows)
    return out + (_sheet(rows) if rows else []) + notes + [
        "--explain: the FLOPs of each phase, how on-policy samples, peak rates, warmup"]


def _table(plan: PlanView, plans: list[DistillationPlan], supervised, verdicts: dict[str, str], sweep: bool) -> list:
    """Its title (a line of its own: wrapped at the terminal, not at the table's width) and a row per
    scenario, then the model trained without a teacher."""
    teacher = " with the given teacher" if plan.settings.teacher is not None else ""
    what = (f"Best student size, C = {plan.compute:.3g} FLOPs" if sweep else
            f"{format_quantity(plans[0].student_params)} student{teacher}, C = {plan.compute:.3g} FLOPs")
    level = next((f"{p.student_interval.level:.0%}" for p in plans if p.student_interval is not None), None)
    title = styled((f"{what}, law {plan.law} (losses in nats/token)", "bold"))
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    # a sweep's verdicts are its answer lines' only: its N_S column takes their place
    headers = ("scenario", *(("N_S",) if sweep else ()), "D_S", "N_T", "D_T", "L_T", "L_S",
               *((f"{level} interval",) if level else ()), *(() if sweep else ("verdict",)))
    for header in headers:
        table.add_column(header, justify="left" if header in ("scenario", "verdict") else "right")
    bound = plan.planner.bounds[1]
    edges = {s.scenario.name: s.edges for s in plan.sweeps} if sweep else {}
    for p in plans:
        teacher_tokens = at_cap(p.teacher_tokens, bound, trained=teacher_is_trained(p))
        edge = "+" if sweep and edges.get(p.scenario.name) else ""
        table.add_row(_label(p.scenario.name), *((format_quantity(p.student_params) + edge,) if sweep else ()),
                      format_quantity(p.student_tokens),
                      "+".join(map(format_quantity, p.mixture.teacher_params)) if p.mixture is not None
                      else at_cap(p.teacher_params, bound),
                      "free" if teacher_tokens == FREE_TEACHER else teacher_tokens,
                      f"{p.teacher_loss:.4f}", styled((f"{p.student_loss:.4f}", "bold")),
                      *((interval_cell(p.student_interval),) if level else ()),
                      *(() if sweep else (SHORT_VERDICTS.get(verdicts[p.scenario.name], verdicts[p.scenario.name]),)))
    table.add_row("no teacher", *((format_quantity(supervised.student_params),) if sweep else ()),
                  format_quantity(supervised.tokens), "-", "-", "-", f"{supervised.loss:.4f}",
                  *((interval_cell(supervised.interval),) if level else ()), *(() if sweep else ("",)))
    return [title, table]


def _sheet(rows) -> list:
    """The run sheet's title and one table: a row per distinct run, what `train`/`distill` take."""
    flags = "--lr" if rows[0].recipe.schedule is None else f"--lr, --schedule {rows[0].recipe.schedule}"
    title = styled((f"Run sheet, {rows[0].recipe.follows} ({flags}: what train/distill take)", "bold"))
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    for header in ("for", "run", "N", "D", "batch", "steps", "--lr"):
        table.add_column(header, justify="left" if header in ("for", "run") else "right")
    groups = len({name for row in rows for name in uses_text(row).split(", ")})
    last = None
    for row in rows:
        uses, r = uses_text(row, groups), row.recipe
        table.add_row("" if uses == last else _label(uses, SHEET_LABEL), f"{ROLES[row.role]}{'*' if r.beyond_data else ''}"
                      f"{'!' if r.problems else ''}", format_quantity(r.params), format_quantity(r.tokens),
                      format_quantity(r.batch_tokens), f"{r.steps:,}", f"{r.train_lr:.4g}")
        last = uses
    return [title, table]


def _gpu_line(estimate) -> str:
    """--gpu's answer in one paragraph: each scenario's GPU-hours, wall-clock time and cost (its runs
    together), and the model trained without a teacher's; each run, its MFU and the notes: --explain."""
    from distillscale.planning.gpu_hours import ALTERNATIVE, format_gpu_hours, format_hours

    def said(hours: float, wall: float, cost: float | None) -> str:
        return f"{format_gpu_hours(hours)}, {format_hours(wall)}" + ("" if cost is None else f", {cost:,.0f}")

    price = "" if estimate.price_per_gpu_hour is None else f" at {estimate.price_per_gpu_hour:g} per GPU-hour"
    times = {group: said(*total) for group, total in estimate.totals().items()}
    alone = next((run for run in estimate.runs if run.part == ALTERNATIVE), None)
    if alone is not None:
        times["no teacher"] = said(alone.gpu_hours, alone.wall_hours, alone.cost)
    groups: dict[str, list[str]] = {}   # groups that take the same time, said once
    for group, time in times.items():
        groups.setdefault(time, []).append(group)
    every = "each scenario and no teacher" if alone is not None else "each scenario"
    parts = [f"{every if len(names) == len(times) > 2 else ', '.join(names)} {time}" for time, names in groups.items()]
    cost = "" if estimate.price_per_gpu_hour is None else ", cost"
    return (f"GPU time on {estimate.gpus} x {estimate.device_name}{price} (GPU-hours, wall-clock{cost}; "
            f"estimated; each run: --explain): {'; '.join(parts)}")


def _far_rates(rows) -> list[str]:
    """The run sheet's '*': how many of its runs lie far outside the hyperparameter law's data (or nothing)."""
    from distillscale.laws.hyperparameters.law import FAR_FACTOR   # SciPy: loaded with the first plan's law

    far = [row.recipe for row in rows if row.recipe.extrapolation > FAR_FACTOR]
    return [f"*: {len(far)} of the {len(rows)} runs {'lies' if len(far) == 1 else 'lie'} over {FAR_FACTOR:g}x "
            f"outside {rows[0].recipe.law}'s data: extrapolated rates"] if far else []


def _notes(plan: PlanView, plans: list[DistillationPlan], verdicts: dict[str, str], rows) -> list[str]:
    """One line each, the most important first: every warning of a problem (never left out: a run that
    cannot be trained, a recipe the law cannot give, a run outside the rate law's data, a best size on
    the search's edge, a fixed batch's loss), then how to read the verdicts and the table, as many as
    fit MAX_NOTES; the pointer to --explain last."""
    warnings = _outside_fit(plans)
    broken = [row for row in rows if row.recipe.problems]
    if broken:
        warnings.append(f"!: {len(broken)} of the {len(rows)} runs cannot be trained as planned (--explain says why)")
    warnings += warning_lines([note for row in rows for note in row.recipe.notes])
    warnings += _far_rates(rows)
    edged = [s for s in plan.sweeps if s.edges] if plan.kind == "sweep" else []
    if edged:
        limits = list(dict.fromkeys(edge for s in edged for edge in s.edges))
        warnings.append(_edge_line(', '.join(s.scenario.name for s in edged), limits))
    repeated = sum(isinstance(w, RepeatedData) for w in plan.warnings)
    if any(p.fresh is not None for p in plans) and repeated < 2:   # else the warnings' one line says it
        warnings.append("losses after repeating your unique tokens, a distilled student's as a supervised "
                        "model's decay (each run's, with fresh data: --explain)")
    warnings += _batch_note(plan, rows)
    info = []
    shown = set(verdicts.values())
    # why a verdict cannot tell is never left out
    warnings += list(dict.fromkeys(cannot_tell_reason(d) for d in plan.differences().values() if d.verdict == CANNOT_TELL))
    if "too close to call" in shown:
        dominant = sorted({p.student_interval.dominant for p in plans if p.student_interval is not None} - {None})
        mostly = f" (mostly {' and '.join(dominant)})" if dominant else ""
        info.append(f"too close: Δ's interval reaches across 0{mostly}")
    if any(p.teacher_family is not None for p in plans):
        info.append("best-case: any teacher of loss L_T* does; shown: the cheapest to pre-train")
    return warnings + info[:max(0, MAX_NOTES - 1 - len(warnings))] + [EXPLAIN]


def _edge_line(names: str, limits: list[str]) -> str:
    """The best sizes on the search's edge, named, in one line where it fits 80 columns; else the table's
    + marks name them and the line says what widens the search."""
    line = f"+: {names}: the best student sits on the edge of the search{edge_note(limits)}"
    if len(line) <= 80:
        return line
    options = [SIZE_LIMITS[edge][1] for edge in limits if SIZE_LIMITS[edge][1]]
    return ("+: sizes marked + sit on the search's edge"
            + (f"; widen with {' or '.join(options)}" if options else edge_note(limits)))


def _batch_note(plan: PlanView, rows) -> list[str]:
    """A fixed batch in one line: its loss penalty (in every loss and verdict shown) and the verdicts
    it changes (the plan's warnings say both, left out of the one-screen view: `said_in_brief`)."""
    penalties = [row.recipe.adaptation.loss_penalty for row in rows
                 if row.recipe.adaptation is not None and row.recipe.adaptation.loss_penalty is not None]
    if not penalties:
        return []
    line = f"batch: losses and verdicts include your --batch-tokens' cost, up to +{max(penalties):.2%}"
    before = getattr(plan, "at_optimal_batch", None)
    if before is not None:
        was, now = before.verdicts(), plan.verdicts()
        moved = [f"{name}'s ({was[name]} at B*)" for name, verdict in now.items() if was.get(name) != verdict]
        line += f"; it changes {', '.join(moved)}" if moved else ""
    return [line]


def said_in_brief(plan: PlanView) -> set[str]:
    """The plan's warnings the one-screen view says itself (a fixed batch's: `_batch_note`), not printed
    again under it; `--explain` and `--json` print each."""
    from distillscale.planning.batch_penalty import PENALTY_NOTE, VERDICT_MOVED

    if plan.kind not in ("plans", "sweep") or getattr(plan, "at_optimal_batch", None) is None:
        return set()
    return {w for w in plan.warnings if w == PENALTY_NOTE or w.startswith(VERDICT_MOVED + " (")}


def _outside_fit(plans: list[DistillationPlan]) -> list[str]:
    """Where the law is applied outside its fit, one line each: a started student (pruned), a mixture of
    teachers; each in full with --explain."""
    out = []
    start = next((p.start for p in plans if p.start is not None), None)
    if start is not None:
        out.append(f"student init {start.start}: OUTSIDE THE LAW'S FIT: its D_S counts as {start.value:g}x D_S in the "
                   f"law (D_eff; {start.interval[0]:g}x-{start.interval[1]:g}x, measured at micro scale), its loss's "
                   "range spans that, and Δ's interval combines it with the alone loss as shown (--explain)")
    mixed = next((p for p in plans if p.mixture is not None), None)
    if mixed is not None:
        out.append(f"teacher mixture: OUTSIDE THE LAW'S FIT (one teacher per student in its runs): L_T is the "
                   f"mixture's measured loss ({mixed.teacher_loss:.4f}); every teacher's forward is paid (--explain)")
    return out


def _label(name: str, width: int = 20) -> str:
    """A scenario's name (or names) in a narrow column: broken after a hyphen where longer than `width`."""
    if len(name) <= width or "-" not in name[:width]:
        return name
    cut = name[:width].rindex("-") + 1
    return name[:cut] + "\n  " + name[cut:]
