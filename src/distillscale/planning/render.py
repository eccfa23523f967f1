"""How a plan reads: the tables and notes of `distillscale plan` and `distillscale teacher`, as rich
renderables for the terminal and as plain text (`Plan.as_text`, the planner page's copyable plan)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from rich import box

from distillscale.console import PlainConsole, Table, styled

from distillscale.planning.cells import delta_cell, interval_cell
from distillscale.planning.family_view import FAMILY_ANSWER_LINES, family_answer, family_renderables
from distillscale.planning.modes import LITERATURE_CLAIM
from distillscale.planning.recipes import MUP_BASE_WIDTH
from distillscale.laws.data_limited import BEYOND_RULE
from distillscale.planning.results import CANNOT_TELL, ONE_TEACHER_NOTE, cannot_tell_reason, what_would_tell
from distillscale.planning.warnings import FREE_TEACHER, teacher_is_trained
from distillscale.units import format_quantity

# Annotations only: the teacher ranking imports SciPy, which `import distillscale.planning.plan` leaves
# for the first plan.
if TYPE_CHECKING:
    from distillscale.laws.difference import LossDifference
    from distillscale.planning.results import DistillationPlan, StudentSweep, SupervisedPlan
    from distillscale.planning.teacher import TeacherRanking

# What sets each limit of a sweep's student sizes, and the option that moves it.
SIZE_LIMITS = {
    "min_params": ("smallest size searched", "--min-params"),
    "max_params": ("largest size searched", "--max-params"),
    "min_tokens_per_param": ("fewest tokens per parameter", "--min-tokens-per-param"),
    "max_tokens_per_param": ("most tokens per parameter", "--max-tokens-per-param"),
    "token_bounds": ("the planner's token bounds", None),
}


# What teacher targets the distillation law's predictions assume (docs/top_k_teachers.md).
TARGETS_NOTE = ("targets: the prediction assumes the teacher's full distribution (a live teacher, or a sampled "
                "logit cache, unbiased); top-k targets (--top-k, a top-k cache, a served teacher) lose more the "
                "less mass the top k hold: measured at micro scale with the default --kd-weight 0.5, within 2.4% at "
                "top-5 to top-64 (docs/top_k_teachers.md)")


class PlanView(Protocol):
    """What this module reads of a plan: a `planning.plans.Plan`, whose kinds add their own fields
    (`plans`, `sweeps`, `supervised`, the mode comparison's `modes`...). A protocol, not an import of
    Plan: Plan renders itself through this module, and no import circle is allowed, not even one
    for annotations only (`lint-imports`)."""

    kind: str
    law: str
    settings: Any  # its PlanSettings
    warnings: list[str]
    planner: Any  # its solver (SupervisedPlanner or DistillationPlanner)
    recipes: dict  # name -> RunRecipe (`planning.recipes`)
    downstream: Any  # a PlanDownstream (`planning.downstream`) or None

    @property
    def compute(self) -> float: ...

    @property
    def note(self) -> str | None: ...

    @property
    def law_form(self) -> str | None: ...

    def verdicts(self) -> dict[str, str]: ...

    def differences(self) -> dict: ...


def plan_renderables(plan: PlanView) -> list:
    """The tables and notes that show a plan, in print order: a header (the supervised law's form),
    the plan, its run sheet (how to run each run), and with a loss-to-error law each model's
    downstream error, with --gpu its GPU time."""
    downstream = [] if plan.downstream is None else plan.downstream.lines()
    form = [] if plan.law_form is None else [f"supervised law form: {plan.law_form}; N and D are planned under it"]
    gpu_hours = [] if getattr(plan, "gpu_hours", None) is None else plan.gpu_hours.renderables()  # plan --gpu
    shown = answer_lines(plan) + _plan_renderables(plan)  # the answer first, then its table, then how
    table = next((i + 1 for i, item in enumerate(shown) if isinstance(item, Table)), 0)
    return shown[:table] + form + shown[table:] + recipe_renderables(plan) + downstream + gpu_hours


def answer_lines(plan: PlanView) -> list:
    """The plan's answer in a line per verdict, before its tables: which scenarios distil and which
    pretrain, with the losses that decide it (a sweep's best student size too)."""
    if plan.kind in ("modes", "supervised"):
        return []  # the supervised table is the answer; the mode comparison's verdict line leads its own
    sweep = plan.kind == "sweep"
    plans = [s.best for s in plan.sweeps] if sweep else plan.plans
    verdicts, differences = plan.verdicts(), plan.differences()
    out = []
    data_limited = getattr(plan, "data_limited", None)
    if data_limited is not None:   # the plan's one answer on a pool; the scenarios' lines answer with their teachers
        from distillscale.planning.data_limited import answer_line

        out.append(styled(("answer ", "bold"), answer_line(data_limited)))
    if plan.kind == "family":   # its answer, and a line per student where few (the table has each)
        out.append(styled(("family: ", "bold"), family_answer(plan)))
        plans = plans if len(plans) <= FAMILY_ANSWER_LINES else []
    for p in plans:
        baseline = next(s.supervised_best for s in plan.sweeps if s.scenario.name == p.scenario.name) \
            if sweep else p.supervised
        student = f" ({format_quantity(p.student_params)} student)" if sweep else ""
        alone = f" ({format_quantity(baseline.student_params)})" if sweep else ""
        out.append(styled(f"{p.scenario.name}: ", (verdicts[p.scenario.name], "bold"),
                          f", Δ {differences[p.scenario.name].describe()} (distilled {p.student_loss:.4f}"
                          f"{student}, alone {baseline.loss:.4f}{alone})"))
    return out


def recipe_renderables(plan: PlanView) -> list:
    """How to run each run of a plan: its run sheet (`planning.run_sheet`, a row per distinct run),
    what the numbers mean and, at a batch the user fixed, each run's rate, penalty and recovering tokens there."""
    from distillscale.laws.hyperparameters.law import FAR_FACTOR   # SciPy: loaded with the first plan's law
    from distillscale.planning.run_sheet import run_sheet, run_sheet_table, uses_text

    if not plan.recipes:
        return []
    rows = run_sheet(plan)
    first = rows[0].recipe
    out = [run_sheet_table(rows)]
    if first.sweep is not None:   # the sweep's recipe: its rate and batch rule, no law's interval or B*
        return out + [f"{first.sweep}; warmup: {first.warmup_rule}; `train`/`distill {first.flags()}` with the "
                      "batch (sequences) and D of each row run it as the sweep ran its own"] \
            + _problems(rows) + _recipe_notes(plan)
    batch = ("the batch the law's runs used (it has no B*)" if first.optimal_batch_tokens is None else
             "the batch you fixed" if first.batch_interval is None else "the law's optimal batch B*")
    out.append(f"batch: {batch}, in tokens per optimizer step, run as whole sequences of {first.n_ctx:,} tokens; "
               f"steps = D / batch; warmup: {first.warmup_rule}; peak rates are the hidden matrices' "
               f"(law {first.law}'s rate is {_unit_words(first.law_lr_unit)}); --lr: the rate to give `train`/`distill "
               f"--lr` for it (muP trains the hidden matrices at --lr x {first.mup_base_width or MUP_BASE_WIDTH} / "
               "d_model, d_model the run's width)"
               + ("" if first.beta2 is None else f"; beta2: the law's, {first.beta2:g} (`train`/`distill --adam-beta2`)"))
    for row in rows:
        a = row.recipe.adaptation
        if a is None:
            continue
        line = (f"{ROLE_WORDS[row.role]} for {uses_text(row)}: at your batch of {format_quantity(a.batch_tokens)} "
                f"tokens ({a.batch_tokens / a.optimal_batch_tokens:.3g}x B* = {format_quantity(a.optimal_batch_tokens)}), "
                f"peak lr {row.recipe.lr:.3g} = lr* x (B / B*)^{a.lr_batch_exponent:g} (the law's exponent, not a fixed "
                "square root)")
        if a.loss_penalty is not None:
            line += f"; loss +{a.loss_penalty:.2%} at the same tokens"
        if a.extra_tokens_factor is not None:
            line += (f", recovered by {a.extra_tokens_factor:.3g}x the tokens "
                     f"(+{format_quantity(a.extra_tokens)})")
        out.append(line)
    out += _problems(rows)
    far = [row.recipe for row in rows if row.recipe.extrapolation > FAR_FACTOR]
    if far:   # one line for the sheet, not one per run and quantity
        out.append(f"*: {len(far)} of the {len(rows)} runs lie more than {FAR_FACTOR:g}x outside the N, D (or C) "
                   f"law {first.law}'s rates were fitted on, up to {max(r.extrapolation for r in far):,.0f}x: their "
                   f"rates and batches are extrapolations of its power laws (`distillscale predict hyperparameters "
                   f"--law {first.law}` says how far each is)")
    return out + _recipe_notes(plan)


def _problems(rows) -> list[str]:
    """A line per run the sheet marks "!": why it is no run to train."""
    from distillscale.planning.run_sheet import uses_text

    return [f"!: {ROLE_WORDS[row.role]} for {uses_text(row)} is no run to train: {'; '.join(row.recipe.problems)}"
            for row in rows if row.recipe.problems]


def _recipe_notes(plan: PlanView) -> list[str]:
    """Each recipe's notes, each said once."""
    return list(dict.fromkeys(note for recipe in plan.recipes.values() for note in recipe.notes))


# A run sheet row's role in a sentence.
ROLE_WORDS = {"student": "the student", "teacher": "the teacher", "alone": "the model trained without a teacher"}


def _unit_words(text: str) -> str:
    """A law's rate unit (`rates.LrUnit.text`) in words."""
    from distillscale.laws.hyperparameters.rates import parse_lr_unit

    return parse_lr_unit(text).describe()


def _plan_renderables(plan: PlanView) -> list:
    if plan.kind == "supervised":
        return _supervised(plan)
    if plan.kind == "sweep":
        return _sweeps(plan)
    if plan.kind == "modes":
        return modes_renderables(plan)
    if plan.kind == "family":
        return family_renderables(plan)
    teacher = " with the given teacher" if plan.settings.teacher is not None else ""
    out = [_plans_table(plan.plans, f"Distilling a {format_quantity(plan.plans[0].student_params)}-"
                                    f"parameter student{teacher} with C = {plan.compute:.3g} FLOPs "
                                    f"(law: {plan.law})", plan.planner.bounds[1], differences=plan.differences())]
    if any(p.teacher_family is not None for p in plan.plans):
        out.append("best-case: any teacher with L(N_T, D_T) = L_T* does; the table shows the one "
                   "cheapest to pre-train.")
    out.append(TARGETS_NOTE)
    return out + _interval_notes(plan.plans, plan.differences())


def plan_text(plan: PlanView, width: int = 100) -> str:
    """The plan as plain text: its warnings, then what `distillscale plan` prints."""
    buffer = io.StringIO()
    console = PlainConsole(file=buffer, width=width, color_system=None, highlight=False)
    for message in plan.warnings:
        console.print(f"warning: {message}", soft_wrap=True)
    for item in plan_renderables(plan):
        console.print(item, soft_wrap=isinstance(item, str))  # a note is one line, for copying
    return buffer.getvalue()


def teacher_renderables(law: str, ranking: TeacherRanking) -> list:
    """The best candidate first (its student loss against training alone), then the ranking table
    of candidate teachers, the optimum and the capacity gap."""
    best = ranking.candidates[ranking.best]
    differences = ranking.differences()
    against = differences[ranking.best]
    whole = " on the whole budget" if ranking.compute else ""
    if against.verdict == "pretrain":   # the best candidate's student is worse than training alone
        answer = styled(("train alone: ", "bold"), f"the student alone reaches {ranking.supervised_loss:.4f} nats/token"
                        f"{whole}, better than the best candidate, {best.name} (student "
                        f"{ranking.student_losses[ranking.best]:.4f})")
    else:
        answer = styled(("best teacher: " if against.verdict == "distill" else "best candidate: ", "bold"),
                        f"{best.name}" + (f" ({format_quantity(best.params)} parameters)" if best.params else "")
                        + f", L_T = {best.loss:.4f} -> student {ranking.student_losses[ranking.best]:.4f} nats/token"
                        + (f" on {format_quantity(ranking.student_tokens)} tokens" if ranking.compute else "")
                        + f"; without a teacher {ranking.supervised_loss:.4f}{whole}")
    close, unknown = ranking.too_close, ranking.cannot_tell
    if close:
        answer.append(f"; too close to call with it: {', '.join(ranking.candidates[i].name for i in close)}")
    if unknown:
        answer.append(f"; {CANNOT_TELL} against it: {', '.join(ranking.candidates[i].name for i in unknown)}")
    alone_line = styled("against training alone: ", (against.verdict, "bold"), f", Δ {against.describe()}"
                        + (" on the whole budget" if ranking.compute else " on the same tokens"))
    budget = ranking.compute is not None
    on = (f"at C = {ranking.compute:.3g} FLOPs, each teacher's logits paid" if budget
          else f"on {format_quantity(ranking.student_tokens)} tokens")
    table = Table(title=f"Teachers for a {format_quantity(ranking.student_params)}-parameter student {on} (law: {law})",
                  caption="losses in nats/token; * marks the best candidate"
                          + ("; ≈ those too close to call with it (inside the intervals)" if close else "")
                          + ("; ? those that cannot be told from it at this distance (far outside the law's "
                             "data, or beyond the backtest's reach)" if unknown else "")
                          + (f"; past: stronger than L_T*{' at its own D_S' if ranking.compute is not None else ''}, "
                             "past the capacity gap" if ranking.past_gap else ""),
                  box=box.SIMPLE_HEAD, padding=(0, 0))
    intervals, past = ranking.intervals, set(ranking.past_gap)
    shown = any(d.has_interval for d in differences)
    headers = ("teacher", "N_T", "D_T", "L_T", *(("D_S",) if budget else ()), "L_T / Ltilde_S", "student L_S",
               "Δ alone")
    for header in headers + ((f"Δ {differences[0].level:.0%}",) if shown else ()):
        table.add_column(header, justify="left" if header == "teacher" else "right")
    for index, (c, loss, ratio) in enumerate(zip(ranking.candidates, ranking.student_losses,
                                                 ranking.gap_ratios)):
        mark = "*" if index == ranking.best else "≈" if index in close else "?" if index in unknown else ""
        delta = differences[index]
        interval = (delta_cell(delta),) if shown else ()
        tokens = (format_quantity(ranking.tokens_each[index]),) if budget else ()
        table.add_row(f"{mark}{c.name}", format_quantity(c.params) if c.params else "-",
                      format_quantity(c.tokens) if c.tokens else "-", f"{c.loss:.4f}", *tokens,
                      f"{ratio:.3f}" + (" past" if index in past else ""),
                      styled((f"{loss:.4f}", "bold")) if mark == "*" else f"{loss:.4f}",
                      f"{differences[index].value:+.4f}", *interval)
    out = [answer, alone_line, table]
    if intervals is not None:
        out.append(f"intervals: the law's own (a fit's bootstrap and backtest, a preset's stated error; `predict` says "
                   f"which); mostly {intervals.dominant}")
    at_best = f" (at the best candidate's {format_quantity(ranking.student_tokens)} student tokens)" if budget else ""
    out.append(f"supervised student (no teacher): {ranking.supervised_loss:.4f} nats/token"
               + (" on the whole budget" if budget else "") + "\n"
               f"optimal teacher loss L_T* = {ranking.optimal_teacher_loss:.4f}{at_best} -> student "
               f"{ranking.optimal_student_loss:.4f} nats/token\n"
               f"capacity gap: the law switches at L_T = d1 x Ltilde_S = "
               f"{ranking.capacity_gap_teacher_loss:.4f} (d1 = {ranking.d1:.3f}); weaker "
               "teachers give L_S ~ L_T, and teachers stronger than L_T* make the student worse")
    return out


def mode_verdict_lines(plan: PlanView) -> list[str]:
    """The mode comparison's answer, "distil at all?": the verdict on Delta = the deciding way of
    distilling - training alone (its interval, as `--json` carries it; which way decides, when it is
    not the predicted-best), then the two best ways of distilling against each other."""
    distilled, difference, verdict = plan.deciding_mode, plan.difference, plan.verdict
    delta = f"Δ = {distilled.name} - supervised {difference.describe()}"
    best = plan.best_distilled
    if distilled is not best:   # "distil at all?" answered by another way than the predicted-best
        delta += (f" (decides, 1 of {len(plan.distilled_modes)} ways compared; the predicted-best {best.name}: "
                  f"{plan.against_alone(best).verdict})")
    if verdict == "distill":
        first = f"distill, {distilled.name}: {delta}"
    elif verdict == "pretrain":
        first = f"pretrain (supervised): {delta}"
    elif verdict == CANNOT_TELL and difference.outside is not None:
        first = f"{CANNOT_TELL}: {delta}; {difference.outside}"
    elif verdict == CANNOT_TELL and difference.rule == BEYOND_RULE:   # data-limited constants, far from measured
        first = f"{CANNOT_TELL}: {delta} reaches 0; the data-limited law's constants were measured far from here"
    elif verdict == CANNOT_TELL:
        first = (f"{CANNOT_TELL}: {delta} reaches 0 beyond the calibration's reach; "
                 + what_would_tell(plan.student_params, max(m.effective_tokens for m in plan.modes)))
    else:
        first = f"too close to call: {delta} reaches 0"
    between = plan.mode_difference
    if between is None:
        return [first]
    one, two = plan.distilled_modes[:2]
    second = (f"{one.name} against {two.name}: {between.describe()}, "
              + (f"{one.name} ahead" if between.separated else f"{between.verdict} between them"))
    return [first, second]


# -- internals ------------------------------------------------------------------------------------

def _supervised(plan: PlanView) -> list:
    result = plan.supervised
    given = plan.settings.student_params is not None or plan.settings.student_model is not None
    what = "Training" if given else "Compute-optimal training"
    table = Table(title=f"{what} without a teacher, C = {plan.compute:.3g} FLOPs (law: {plan.law})",
                  show_header=False)
    table.add_row("params N", format_quantity(result.student_params))
    table.add_row("tokens D", format_quantity(result.tokens))
    table.add_row("tokens per parameter", f"{result.tokens / result.student_params:.3g}")
    interval = result.interval
    table.add_row("loss", styled((f"{result.loss:.4f}", "bold"),
                                 " nats/token" + (interval.describe() if interval is not None else "")
                                 + (" after repeating the unique tokens" if result.fresh is not None else "")))
    return [table, plan.note]


def at_cap(value: float | None, bound: float, trained: bool = True) -> str:
    """A teacher's size or tokens; at the planner's cap, "(cap)", or for a teacher the scenario does
    not train FREE_TEACHER (its tokens cost nothing here: not a number to act on)."""
    if value is None:
        return "-"
    if value >= bound * (1 - 1e-6):
        return FREE_TEACHER if not trained else f"{format_quantity(value)} (cap)"
    return format_quantity(value)


def _plans_table(plans: list[DistillationPlan], title: str, bound: float,
                 best_supervised: SupervisedPlan | None = None,
                 edges: dict[str, list[str]] | None = None,
                 differences: dict[str, LossDifference] | None = None) -> Table:
    """One column per scenario, each with its verdict and Delta (`differences`, by scenario). With
    `best_supervised` and `edges` (a sweep over student sizes) the plans are the best students,
    compared with the best model trained without a teacher, and a best student on a limit of the
    search is marked."""
    differences = differences or {p.scenario.name: p.difference for p in plans}
    caption = "losses in nats/token" + ("; *: on the edge of the search (see below)"
                                        if edges and any(edges.values()) else "")
    if any(p.fresh is not None for p in plans):
        caption += "; after repeating the unique tokens (with fresh data: Repetition, below)"
    table = Table(title=title, caption=caption)
    table.add_column("")
    for p in plans:  # break long scenario names at hyphens so four columns fit 80 characters
        name = p.scenario.name
        table.add_column(name if len(name) <= 10 else name.replace("-", "-\n"), justify="right")

    def row(label: str, cell) -> None:
        table.add_row(label, *[cell(p) for p in plans])

    def supervised_loss(p: DistillationPlan) -> float:
        return (best_supervised or p.supervised).loss

    if edges is not None:
        row("student params N_S", lambda p: format_quantity(p.student_params)
            + ("*" if edges[p.scenario.name] else ""))
    row("student tokens D_S", lambda p: format_quantity(p.student_tokens))
    if any(p.start is not None for p in plans):
        row("law's D_eff = m D_S", lambda p: format_quantity(p.start.value * p.student_tokens) if p.start else "")
    row("teacher params N_T", lambda p: "+".join(map(format_quantity, p.mixture.teacher_params))
        if p.mixture is not None else at_cap(p.teacher_params, bound))
    row("teacher tokens D_T", lambda p: at_cap(p.teacher_tokens, bound, trained=teacher_is_trained(p)))
    row("teacher loss L_T", lambda p: f"{p.teacher_loss:.4f}")
    with_intervals = [p for p in plans if p.student_interval is not None]
    if with_intervals:
        level = with_intervals[0].student_interval.level
        level = "range" if level is None else f"{level:.0%}"  # a start's multiplier range, the law without intervals
    teachers = [p.teacher_interval for p in plans if p.teacher_interval is not None]
    if teachers:  # a teacher the scenario trains: its loss is a prediction too
        row(f"L_T {teachers[0].level:.0%}", lambda p: interval_cell(p.teacher_interval))
    row("student loss L_S", lambda p: styled((f"{p.student_loss:.4f}", "bold")))
    if with_intervals:
        row(f"L_S {level}", lambda p: interval_cell(p.student_interval))
    row("best supervised loss" if best_supervised else "supervised loss",
        lambda p: f"{supervised_loss(p):.4f}")
    if with_intervals:
        row(f"supervised {level}",
            lambda p: interval_cell((best_supervised or p.supervised).interval))
    row("verdict", lambda p: differences[p.scenario.name].verdict)
    row("Δ = L_S - alone", lambda p: f"{differences[p.scenario.name].value:+.4f}")
    if any(d.has_interval for d in differences.values()):
        row(f"Δ {next(d.level for d in differences.values() if d.has_interval):.0%}",
            lambda p: delta_cell(differences[p.scenario.name]))
    row("FLOPs student", lambda p: f"{p.flops.student:.3g}")
    row("FLOPs teacher logits", lambda p: f"{p.flops.teacher_inference:.3g}")
    row("FLOPs teacher train", lambda p: f"{p.flops.teacher_pretraining:.3g}")
    row("solver converged", lambda p: "yes" if p.convergence.success else "no: grid optimum")
    return table


def _interval_notes(plans: list[DistillationPlan], differences: dict[str, LossDifference]) -> list[str]:
    """What the intervals are made of, and what "too close to call" and "cannot tell" (among the
    verdicts read off `differences`) mean."""
    verdicts = {name: d.verdict for name, d in differences.items()}
    out = _start_notes(plans) + _mixture_notes(plans)
    with_intervals = [p for p in plans if p.student_interval is not None]
    if not with_intervals:
        return out
    dominant = {p.student_interval.dominant for p in with_intervals} - {None}
    if dominant:
        out.append(f"intervals: the laws' own (a fit's bootstrap and backtest, a preset's stated error; `predict` "
                   f"says which) at the plan's distance from the runs{_pairs_scale_note(with_intervals)}; mostly "
                   f"{' and '.join(sorted(dominant))}")
    from distillscale.laws.difference import AS_SHOWN, shipped_calibration

    if any(d.has_interval and d.rule == "distilled vs alone" for d in differences.values()):
        out.append(shipped_calibration().describe())
    if any(d.has_interval and d.rule == AS_SHOWN for d in differences.values()):
        out.append("Δ's interval: the two losses' intervals as shown, combined independently (no trained pair "
                   "measured how a preset's stated errors move together)")
    if any(verdicts[p.scenario.name] == "too close to call" for p in with_intervals):
        out.append("too close to call: the interval of Δ = distilled - alone reaches across 0, so the laws cannot "
                   "say whether distillation or pre-training wins here")
    far = [p for p in with_intervals if verdicts[p.scenario.name] == CANNOT_TELL]
    for reason in dict.fromkeys(cannot_tell_reason(differences[p.scenario.name]) for p in far):
        out.append(reason)
    if far:
        p = max(far, key=lambda p: p.supervised.tokens)
        out.append(what_would_tell(p.student_params, max(p.supervised.tokens, p.student_tokens)))
    return out


def _pairs_scale_note(plans: list[DistillationPlan]) -> str:
    """What the shown intervals were widened by (a fitted law's, by its width against its errors on
    trained pairs at its distance: `laws.difference.used_interval`), when any was."""
    scales = {float(np.max(i.pairs_scale)) for p in plans for i in (p.student_interval, p.supervised.interval)
              if i is not None and i.pairs_scale is not None}
    if not any(scale != 1.0 for scale in scales):
        return ""
    return (f", a fitted law's times its width against its errors on trained pairs there "
            f"(x{', x'.join(f'{scale:.2f}' for scale in sorted(scales))}): the intervals Δ is built from")


def _mixture_notes(plans: list[DistillationPlan]) -> list[str]:
    """A mixture of teachers: every teacher's inference FLOPs, and the law applied outside its fit."""
    mixed = [p for p in plans if p.mixture is not None]
    if not mixed:
        return []
    p = mixed[0]
    each = ", ".join(f"{format_quantity(params)} teacher {flops * p.student_tokens:.3g}"
                     for params, flops in zip(p.mixture.teacher_params, p.mixture.flops_per_token))
    return [f"teacher mixture: OUTSIDE THE LAW'S FIT. {ONE_TEACHER_NOTE}; applied here with the mixture's "
            f"measured cross-entropy as L_T ({p.teacher_loss:.4f})",
            f"teacher logits, every teacher on every student token (D_S = {format_quantity(p.student_tokens)}): "
            f"{each} FLOPs"]


def _start_notes(plans: list[DistillationPlan]) -> list[str]:
    """What a pruned start does to the plan: outside the law's fit, its multiplier and range, and
    what is not counted."""
    started = [p for p in plans if p.start is not None]
    if not started:
        return []
    start = started[0].start
    out = [f"student init {start.start}: OUTSIDE THE LAW'S FIT. Busbridge et al.'s students start from "
           f"scratch; this one's D_S tokens count as {start.value:g} x D_S in the law (D_eff), {start.note} "
           f"({start.source}); the student loss's range spans the multiplier's {start.interval[0]:g}x to "
           f"{start.interval[1]:g}x (and the law's interval at those ends, where it has one)",
           "not counted in the FLOPs: the pruning pass (a teacher forward and backward over the calibration "
           "tokens, `distillscale prune`: 16K by default, small beside any distillation budget), nor the "
           "teacher's training when the scenario does not pay for it"]
    return out


def _sweeps(plan: PlanView) -> list:
    """The best students' table, the best supervised model, and where the search stopped them."""
    sweeps: list[StudentSweep] = plan.sweeps
    best_supervised, region = sweeps[0].supervised_best, sweeps[0].region
    edges = {s.scenario.name: s.edges for s in sweeps}
    out = [_plans_table([s.best for s in sweeps],
                        f"Best student size for C = {plan.compute:.3g} FLOPs (law: {plan.law})",
                        plan.planner.bounds[1], best_supervised, edges,
                        plan.differences())]
    out += _interval_notes([s.best for s in sweeps], plan.differences())
    out.append(f"best supervised model: {format_quantity(best_supervised.student_params)} "
               f"parameters on {format_quantity(best_supervised.tokens)} tokens"
               + (f", on the edge of the search{edge_note(sweeps[0].supervised_edges)}"
                  if sweeps[0].supervised_edges else ""))
    ratios = region.tokens_per_param
    out.append(f"student sizes searched: {format_quantity(region.smallest)} to "
               f"{format_quantity(region.largest)} (limits: {SIZE_LIMITS[region.smallest_limit][0]}, "
               f"{SIZE_LIMITS[region.largest_limit][0]})"
               + (f", at {ratios[0]:g} to {ratios[1]:g} tokens per parameter" if ratios else ""))
    by_edges: dict[tuple[str, ...], list[str]] = {}
    for sweep in sweeps:
        if sweep.edges:
            by_edges.setdefault(tuple(sweep.edges), []).append(sweep.scenario.name)
    for sweep_edges, names in by_edges.items():
        out.append(f"* {', '.join(names)}: the best student sits on the edge of the search, not at an "
                   f"interior optimum{edge_note(list(sweep_edges))}; the law favours going further, "
                   "outside its data")
    return out


def edge_note(edges: list[str]) -> str:
    """' (limit: ...; widen with --option)' for the search limits a best model sits on."""
    if not edges:
        return ""
    options = [SIZE_LIMITS[edge][1] for edge in edges if SIZE_LIMITS[edge][1]]
    widen = f"; widen with {' or '.join(options)}" if options else ""
    return f" (limit: {', '.join(SIZE_LIMITS[edge][0] for edge in edges)}{widen})"


def modes_renderables(plan: PlanView, brief: bool = False) -> list:
    """The mode comparison: a row per mode with its tokens, loss and break-even efficiency, the
    FLOPs of each phase, the verdict and the assumption behind the on-policy rows (`brief`: without the
    FLOPs of each phase and how on-policy samples, the one-screen view's)."""
    modes, arguments, on_policy = plan.modes, plan.settings, plan.on_policy
    teacher = (f"{format_quantity(plan.teacher_params)} teacher (L_T = {plan.teacher_loss:.4f}"
               + (", remote" if arguments.teacher_remote else "") + ")")
    best = plan.best
    with_intervals = [m for m in modes if m.interval is not None]
    effective = on_policy.efficiency != 1
    repeated = arguments.unique_tokens is not None
    table = Table(title=f"Supervised, off-policy or on-policy? A {format_quantity(plan.student_params)}-"
                        f"parameter student, a {teacher}, C = {plan.compute:.3g} FLOPs (law: {plan.law})",
                  caption="D_S: tokens the student trains on"
                          + (f"; D_eff = D_S (1 - λ + λ k), k = {on_policy.efficiency:g}: the law's tokens"
                             if effective else "")
                          + "; L_S in nats/token; *: outside the law's fit (see below); k*: break-even "
                            "efficiency"
                          + (f"; repeats: the loss penalty of repeating {format_quantity(arguments.unique_tokens)} "
                             "unique corpus tokens, in L_S" if repeated else ""))
    columns = ["mode", "D_S"] + (["D_eff"] if effective else []) + (["repeats"] if repeated else []) + ["L_S"]
    if with_intervals:
        columns.append(f"L_S {with_intervals[0].interval.level:.0%}")
    columns += ["vs best", "k*"]
    for name in columns:
        table.add_column(name, justify="left" if name == "mode" else "right", no_wrap=True)
    for m in modes:
        star = "*" if m.outside_fit else ""
        cells = [m.name, format_quantity(m.student_tokens)]
        if effective:
            cells.append(format_quantity(m.effective_tokens))
        if repeated:
            cells.append(f"{m.repetition_penalty:+.2%}")
        loss = f"{m.student_loss:.4f}{star}"
        cells.append(styled((loss, "bold")) if m is best else loss)
        if with_intervals:
            cells.append(interval_cell(m.interval))
        k = m.break_even_efficiency
        cells += [f"{m.student_loss - best.student_loss:+.4f}",
                  "-" if k is None else "never" if k == float("inf") else f"{k:.3g}"]
        table.add_row(*cells)

    limited = any(m.limited_by != "budget" for m in modes)
    phases = Table(title="FLOPs per phase", caption="on-policy generation uses a KV cache"
                   + ("; (cache): logits read from the cache" if arguments.logit_cache else "")
                   + ("; †: the teacher's own budget ran out first" if limited else ""))
    phases.add_column("", no_wrap=True)
    for m in modes:
        phases.add_column(m.name.replace(" ", "\n"), justify="right", no_wrap=True)

    def phase(label: str, cell) -> None:
        phases.add_row(label, *[cell(m) for m in modes])

    cached = arguments.logit_cache
    phase("train student", lambda m: f"{m.flops.student:.3g}")
    phase("generation", lambda m: f"{m.flops.student_generation:.3g}")
    phase("teacher logits", lambda m: f"{m.flops.teacher_inference:.3g}"
          + (" (cache)" if cached and m.mode != "supervised" and m.fraction < 1 else ""))
    phase("teacher scores", lambda m: f"{m.flops.teacher_scoring:.3g}")
    phase("on your budget", lambda m: f"{m.flops.total:.3g}" + ("†" if m.limited_by == "teacher_compute" else ""))
    if arguments.teacher_remote:
        phase("remote teacher", lambda m: f"{m.flops.off_budget:.3g}")

    out = [table] if brief else [table, phases]
    out[:0] = mode_verdict_lines(plan)
    k_star = plan.break_even_efficiency
    against = {m.break_even_against for m in modes if m.mode == "on-policy"}
    assumed = on_policy.efficiency
    on_policy_modes = [m for m in modes if m.mode == "on-policy"]
    distinct = len({round(m.break_even_efficiency, 9) for m in on_policy_modes}) > 1
    cheapest = (f"{min(on_policy_modes, key=lambda m: m.break_even_efficiency).name}, " if distinct else "")
    pays = ("pays at the assumed" if assumed > k_star else "does not pay at the assumed")
    out.append(("on-policy never catches up: no efficiency reaches " + ", ".join(sorted(against))) if k_star
               == float("inf") else
               f"on-policy pays only if one on-policy token is worth at least k* = {k_star:.3g} off-policy "
               f"tokens ({cheapest}against {', '.join(sorted(against))}); it {pays} k = {assumed:g}. Post-training "
               f"reports {LITERATURE_CLAIM} less compute on-policy (GKD, Agarwal et al. 2024); none is "
               "measured for pretraining-style distillation")
    out.append(f"* the law's fit is for off-policy runs: on-policy tokens count as k = {assumed:g} "
               "off-policy tokens each (--on-policy-efficiency), and their intervals add the literature's "
               "typical extrapolation error (4% typical, 8.2% at 90%)")
    out.append("" if brief else f"on-policy: each {on_policy.prompt_tokens}-token corpus prompt gets a "
               f"{on_policy.continuation_tokens}-token continuation sampled with a KV cache; the student "
               "trains on the continuation and the teacher scores prompt and continuation"
               + ("; the off-policy share reads the logit cache" if arguments.logit_cache else ""))
    if arguments.teacher_remote:
        out.append("the teacher runs on its own GPUs: its FLOPs are not on your budget"
                   + (f", but bounded by its own {arguments.teacher_compute:.3g} FLOPs"
                      if arguments.teacher_compute is not None else ""))
    return out
