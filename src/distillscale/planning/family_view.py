"""How a family of students reads (`plan --students`, `planning.family_plan`): its answer (which students
distil, sharing the teacher's cost), a row per student, what each verdict assumes and the plans that decided
it, the family's compute as answered, its logit cache, and the same family with the other targets."""

from __future__ import annotations

from rich import box

from distillscale.console import Table, styled
from distillscale.planning.cells import delta_cell, interval_cell
from distillscale.planning.family import TOP_K_FREE
from distillscale.planning.results import CANNOT_TELL, cannot_tell_reason
from distillscale.units import format_quantity

# A family's plan (`planning.plans.FamilyPlans`, read as render reads a plan: no import of it, no circle).
PlanView = object

# A family of at most this many students gets an answer line per student (a larger one, its table only).
FAMILY_ANSWER_LINES = 3



def _short(name: str) -> str:
    """A family's student by its size ("student 1B" -> "1B")."""
    return name.removeprefix("student ")


def _listed(names) -> str:
    return ", ".join(_short(name) for name in names) or "none"


def family_answer(plan: PlanView) -> str:
    """The family's answer in a line: which students distil, sharing the teacher's cost, and which train alone."""
    sharing, members = plan.sharing, [p.scenario.name for p in plan.plans]
    alone = [name for name in members if name not in sharing]
    how = f"{plan.targets} targets"
    if not sharing:
        return f"no student distils ({how}): each trains alone on its share"
    if not alone:
        return f"every student distils, sharing the teacher's cost ({how})"
    if len(alone) > FAMILY_ANSWER_LINES >= len(sharing):   # a large family's others: in its table
        return (f"{_listed(sharing)} {_verb(sharing, 'distils', 'distil')}, sharing the teacher ({how}); "
                f"{len(alone)} others train alone")
    return (f"{_listed(sharing)} {_verb(sharing, 'distils', 'distil')}, sharing the teacher's cost ({how}); "
            f"{_listed(alone)} {_verb(alone, 'trains', 'train')} alone")


def _verb(names, one: str, many: str) -> str:
    return one if len(names) == 1 else many


def family_assumes(plan: PlanView) -> str:
    """What each verdict assumes (the students sharing the teacher's cost) and the plans that decided it."""
    steps, everyone = [], len(plan.plans)
    for r in plan.rounds:
        if r.sharing:
            out = [name for name in r.sharing if r.verdicts.get(name) != "distill"]
            kept = [name for name in r.sharing if name not in out]
            said = ("all distil" if not out else "none distils" if len(out) == len(r.sharing) > 1 else
                    f"only {_listed(kept)} {_verb(kept, 'distils', 'distil')}" if len(out) > len(kept) > 0 else
                    f"{_listed(out)} {_verb(out, 'does', 'do')} not distil")
            who = f"all {everyone}" if len(r.sharing) == everyone > 2 else _listed(r.sharing)
            steps.append(f"{who} sharing: {said}")
    return (f"each verdict assumes those that distil ({_listed(plan.sharing)}) share the teacher, one that does not "
            f"as if it joined; rounds: " + "; ".join(steps))


def family_renderables(plan: PlanView) -> list:
    """A family of students (`planning.family`): a row per student (its share, tokens, loss, the student
    alone on its share, Delta and the verdict), what the verdicts assume, the family's compute by part as
    answered, its logit cache, and the same family with the other targets."""
    from distillscale.planning.family import format_bytes

    members, settings = plan.plans, plan.settings
    teacher = members[0]
    trained = " trained for the family" if settings.teacher_trained else ""
    count = f"{len(members)} student{'s' if len(members) != 1 else ''}"
    title = styled((f"{count} from one {format_quantity(teacher.teacher_params)} teacher{trained} "
                    f"(L_T = {teacher.teacher_loss:.4f}), C = {plan.compute:.3g} FLOPs, {plan.targets} targets, law "
                    f"{plan.law} (losses in nats/token)", "bold"))
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    differences = plan.differences()
    level = next((f"{p.student_interval.level:.0%}" for p in members if p.student_interval is not None), None)
    headers = ("student", "share", "D_S", "L_S", *((f"{level}",) if level else ()), "alone", "Δ",
               *((f"Δ {level}",) if level else ()), "verdict")
    for header in headers:
        table.add_column(header, justify="left" if header in ("student", "verdict") else "right")
    for p in members:
        d = differences[p.scenario.name]
        table.add_row(_short(p.scenario.name), f"{p.budget / plan.compute:.0%}",
                      format_quantity(p.student_tokens), f"{p.student_loss:.4f}",
                      *((interval_cell(p.student_interval),) if level else ()), f"{p.supervised.loss:.4f}",
                      f"{d.value:+.4f}", *((delta_cell(d),) if level else ()),
                      {"too close to call": "too close", CANNOT_TELL: "can't tell"}.get(d.verdict, d.verdict))
    totals = plan.totals()
    parts = (f"family compute as answered: students {totals['students']:.3g}, teacher forward "
             f"{totals['teacher_forward']:.3g}"
             + (f", teacher training {totals['teacher_training']:.3g}" if totals["teacher_training"] else "")
             + " FLOPs")
    # why a verdict cannot tell is never left out
    reasons = list(dict.fromkeys(cannot_tell_reason(d) for d in differences.values() if d.verdict == CANNOT_TELL))
    out = [title, table, *reasons, family_assumes(plan), parts]
    if plan.cache is not None:
        out.append(plan.cache.describe())
    other = plan.other
    if other is not None:
        forward = other.totals()["teacher_forward"]
        saved = forward - totals["teacher_forward"]
        same = other.sharing == plan.sharing and plan.sharing
        losses = ("" if len(other.plans) > FAMILY_ANSWER_LINES else   # a large family's: --json
                  ", losses " + ", ".join(f"{q.student_loss:.4f}" for q in other.plans))
        out.append(f"{other.targets} targets instead: {family_answer(other).split(' (')[0]}; teacher forward "
                   f"{forward:.3g} FLOPs{losses}"
                   + (f", cache {format_bytes(other.cache.bytes)}" if other.cache is not None else "")
                   + ("" if not same else ": the same teacher FLOPs" if abs(saved) <= 1e-9 * forward else
                      f": {plan.targets if saved > 0 else other.targets} is cheaper here by {abs(saved):.3g} "
                      "teacher FLOPs"))
    out.append("Δ = L_S - alone (trained alone on its share); one that distils pays its part of the teacher ("
               + ("a cache stretch split among its readers" if plan.targets == "cached"
                  else "its own forward passes")
               + (", an equal share of its training" if settings.teacher_trained else "") + ")"
               + (f"; {TOP_K_FREE}" if plan.targets == "cached" or (other is not None and other.targets == "cached")
                  else ""))
    return out
