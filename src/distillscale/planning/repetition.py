"""A plan with a limited corpus (`unique_tokens`): each planned model's epochs and loss penalty of
repeating the corpus, computed once per model here and read wherever the plan shows a loss.

Every penalty is the data-limited law's (`laws.data_limited`), the one implementation: a model trained
without a teacher pays its size's penalty P(N, D, U) under the supervised law's R_D* (its own, else
Muennighoff et al.'s); a distilled student pays lam P of its own (one pricing, the fit's and the law's)
plus kappa of the penalty of a teacher trained for the plan on a pool (`with_teacher_check`); a student's
interval, and its Delta against the model trained alone, are the law's (`pool_state`, `pool_difference`).
A penalty is kept relative to the plan's own loss with fresh data (so that a plan's own corrections stay
in it): its loss with repetition is the fresh one plus the law's penalty, and so are its interval, the
verdict and what the plan prints (`Plan.repetition` keeps each model's check).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from distillscale.laws.data_limited import DataLimitedLaw, ModelState, difference
from distillscale.laws.lawset import LawSet
from distillscale.laws.repetition import (PUBLISHED, Repetition, RepetitionAssessment, assess, fewest_unique,
                                          repetition_penalty)
from distillscale.planning.batch_penalty import with_teacher_loss
from distillscale.planning.results import DistillationPlan, StudentSweep, SupervisedPlan

# The names of a plan's runs beside a scenario's student (`Plan.runs()`): the model trained without a
# teacher instead, the teacher the scenario pre-trains, and a sweep's best student's same-size baseline
# (its loss difference's other side, not a run the plan asks for).
PRETRAIN_INSTEAD = "{} (pretrain instead)"
TEACHER_RUN = "{} teacher"
BASELINE_RUN = "{} (baseline at the student's size)"


class RepeatedData(str):
    """A run that repeats the corpus past the penalty allowed (`RepetitionAssessment.within`): the
    warning itself (a str, as a plan's warnings hold it), with the run's check; `summary` says several
    in one line."""

    group = "repeated data"

    def __new__(cls, name: str = "", check: RepetitionAssessment | None = None) -> "RepeatedData":
        from distillscale.units import format_quantity

        if check is None:  # unpickled: the message is restored by str, the check by its state
            return super().__new__(cls, name)
        self = super().__new__(cls, f"{name}: the plan repeats its {format_quantity(check.unique_tokens)} unique "
                               f"tokens {check.epochs:.3g} times, {check.penalty:.2%} loss above fresh data; it needs "
                               f"{format_quantity(check.unique_tokens_needed)} unique tokens to stay within "
                               f"{check.max_penalty:.1%}")
        self.check = check
        return self

    @staticmethod
    def summary(members: list["RepeatedData"], more: str = "--explain lists each") -> str:
        from distillscale.units import format_quantity

        checks = [m.check for m in members]
        worst = max(checks, key=lambda c: c.penalty)
        return (f"{len(members)} of the plan's runs repeat its {format_quantity(worst.unique_tokens)} unique tokens "
                f"past {worst.max_penalty:.1%} loss: up to {max(c.epochs for c in checks):.3g} times, "
                f"+{worst.penalty:.2%}; {format_quantity(max(c.unique_tokens_needed for c in checks))} unique tokens "
                f"keep each within {worst.max_penalty:.1%}; the losses shown are after repeating ({more})")


def model_repetition(laws: LawSet, distilled: bool = False) -> Repetition:
    """The decay of repeated tokens a model's penalty is read under: the supervised law's R_D* (its own,
    else Muennighoff et al.'s), for a model trained alone and, through lam, a distilled student."""
    return laws.require_supervised().repetition or PUBLISHED


def _law(laws: LawSet) -> DataLimitedLaw | None:
    return DataLimitedLaw(laws) if laws.distillation is not None else None


def model_penalty(laws: LawSet, unique_tokens: float | None, distilled: bool):
    """(N, D) -> the relative loss penalty of repeating `unique_tokens` to D tokens (never below 0),
    for a distilled student (lam of its size's, `laws.data_limited`) or a model trained alone: what the
    searches that choose a size under it minimise (`DistillationPlanner.sweep`: loss x (1 + penalty));
    None without a corpus limit."""
    if unique_tokens is None:
        return None
    law, repetition = laws.require_supervised(), model_repetition(laws)
    share = float(_law(laws).constants.lam.value) if distilled and laws.distillation is not None else 1.0
    return lambda N, D: share * max(0.0, float(repetition_penalty(law, repetition, N, D, unique_tokens)))


def assess_model(laws: LawSet, N: float, D: float, U: float, max_penalty: float, *, distilled: bool,
                 loss_fresh: float) -> RepetitionAssessment:
    """What repeating U unique tokens to D costs a model of N parameters whose loss with fresh data
    is `loss_fresh` (the plan's own): its epochs, penalty (never below 0), repeated loss and the
    unique tokens that keep the penalty within `max_penalty`. A distilled student (whose teacher read
    fresh data, or a pool nobody knows) pays lam of its size's penalty (`DataLimitedLaw.own_penalty`)."""
    law = _law(laws) if distilled else None
    if law is not None:
        return law.own_check(N, D, U, max_penalty, loss_fresh)
    check = assess(laws.require_supervised(), N, D, U, max_penalty, repetition=model_repetition(laws))
    penalty = max(0.0, check.penalty)
    return replace(check, penalty=penalty, loss_fresh=loss_fresh, loss_repeated=loss_fresh * (1.0 + penalty))


def teacher_check(laws: LawSet, N: float, D: float, U: float, max_penalty: float) -> RepetitionAssessment:
    """A teacher trained for the plan (a scenario pre-trains it, or it is given by its size and tokens)
    on a pool of U unique tokens: its check as a model trained alone, its repeated loss the one
    `predict supervised --unique-tokens` gives for its run (`laws.repetition.pooled_loss`)."""
    from distillscale.laws.repetition import pooled_loss

    law = laws.require_supervised()
    check = assess_model(laws, N, D, U, max_penalty, distilled=False, loss_fresh=float(law.predict(N, D)))
    loss = pooled_loss(law, N, D, U, check.repetition)
    return replace(check, loss_repeated=loss, penalty=loss / check.loss_fresh - 1.0)


def with_teacher_check(laws: LawSet, plan: DistillationPlan, student: RepetitionAssessment,
                       teacher: RepetitionAssessment, shared: bool = True) -> RepetitionAssessment:
    """The check of a distilled student (`student`, of `plan` with fresh data) whose teacher is trained
    for the plan on a pool (`teacher`, its check), under the data-limited law (`laws.data_limited`): the
    student's loss with fresh data (the plan's, its teacher's loss fresh) plus lam of its size's penalty
    plus kappa of the teacher's penalty L_T - F_T. `through_teacher` is that inherited part relative to
    the student's loss under its own penalty. Its penalty, repeated loss and the unique tokens that keep
    it within `max_penalty` are the student's whole, the ones the plan's table, verdict and warnings
    show; `shared`: the teacher reads the student's pool (the unique tokens needed are then both's), else
    its own (held)."""
    law = DataLimitedLaw(laws)
    fresh = plan.student_loss
    own = law.own_penalty(student.params, student.tokens, student.unique_tokens)
    inherited = law.inherited_penalty(max(0.0, teacher.loss_repeated - teacher.loss_fresh))

    def whole(U) -> float:
        pool = U if shared else teacher.unique_tokens
        return (law.inherited_penalty(law.alone_penalty(teacher.params, teacher.tokens, pool))
                + law.own_penalty(student.params, student.tokens, U)) / fresh

    needed = fewest_unique(whole, max(student.tokens, teacher.tokens) if shared else student.tokens,
                           student.max_penalty)
    return replace(student, penalty=(own + inherited) / fresh, loss_repeated=fresh + own + inherited,
                   unique_tokens_needed=needed, teacher=teacher, through_teacher=inherited / (fresh + own))


def with_pool_penalty(check: RepetitionAssessment, penalty: float, inherited: float = 0.0) -> RepetitionAssessment:
    """`check` (a distilled student's, `assess_model`) with the data-limited law's whole penalty (nats/token:
    lam of its size's and `inherited`, kappa of its teacher's) on its loss with fresh data."""
    fresh = check.loss_fresh
    return replace(check, penalty=penalty / fresh, loss_repeated=fresh + penalty,
                   through_teacher=inherited / (fresh + penalty - inherited))


def pool_state(laws: LawSet, plan: DistillationPlan, student: RepetitionAssessment) -> ModelState:
    """The data-limited law's state of a plan's distilled student on its pool: of the teacher the plan
    trains on a pool (`student.teacher`), else of the plan's teacher as its loss is (its pool unknown:
    fresh)."""
    law = DataLimitedLaw(laws)
    teacher = student.teacher
    if teacher is not None:
        state = law.alone(teacher.params, teacher.tokens, teacher.unique_tokens)
    else:
        state = law.measured_teacher(plan.teacher_loss)
    return law.student(student.params, student.tokens, student.unique_tokens, state)


def pool_difference(laws: LawSet, plan: DistillationPlan, student: RepetitionAssessment,
                    alone: RepetitionAssessment) -> tuple[ModelState, ModelState, object]:
    """The student's state, the same student's trained alone on its pool (`alone`), and their Delta by the
    data-limited law (`laws.data_limited.difference`, the verdict rule)."""
    law = DataLimitedLaw(laws)
    state = pool_state(laws, plan, student)
    alone_state = law.alone(alone.params, alone.tokens, alone.unique_tokens)
    return state, alone_state, difference(state, alone_state)


def is_distilled(name: str) -> bool:
    """Whether a plan's run (by name) is a distilled student (not "supervised", not pretrained instead,
    not a teacher the scenario pre-trains)."""
    return name != "supervised" and not name.endswith((PRETRAIN_INSTEAD.format(""), TEACHER_RUN.format("")))


def repeated_supervised(plan: SupervisedPlan, check: RepetitionAssessment, laws: LawSet | None = None) -> SupervisedPlan:
    """A model trained without a teacher, its loss and interval under `check`'s penalty; with `laws` (a
    distillation law's), its interval the data-limited law's (`DataLimitedLaw.alone`: R_D*'s interval in it)."""
    factor = 1.0 + check.penalty
    interval = _scaled(plan.interval, factor)
    if laws is not None and laws.distillation is not None and interval is not None and interval.has_interval:
        state = DataLimitedLaw(laws).alone(check.params, check.tokens, check.unique_tokens)
        interval = _onto(state.loss, plan.loss * factor)
    return replace(plan, loss=plan.loss * factor, interval=interval, fresh=plan)


def repeated_distillation(plan: DistillationPlan, student: RepetitionAssessment,
                          supervised: RepetitionAssessment, laws: LawSet | None = None) -> DistillationPlan:
    """A distilled student and its same-size baseline, each under its own check: its loss, interval,
    Delta and verdict are the data-limited law's (`pool_difference`: one student, one loss, one interval,
    whatever the surface). Where the student's check carries a teacher the scenario pre-trains on a pool
    (`with_teacher_check`), the teacher's loss carries its penalty."""
    fresh = plan
    if student.teacher is not None and laws is not None:
        plan = with_teacher_loss(plan, laws, 1.0 + student.teacher.penalty, student.teacher.loss_repeated)
    factor = 1.0 + student.penalty
    value = student.loss_repeated if student.loss_fresh == fresh.student_loss else fresh.student_loss * factor
    baseline = repeated_supervised(plan.supervised, supervised, laws)
    interval, delta = _scaled(fresh.student_interval, factor), None
    if laws is not None and laws.distillation is not None and not plan.outside_fit:
        state, alone, law_delta = pool_difference(laws, fresh, student, supervised)
        if fresh.student_interval is not None and fresh.student_interval.has_interval:
            interval = _onto(state.loss, value)
        delta = _shifted_difference(law_delta, value - baseline.loss)
    return replace(plan, student_loss=value, student_interval=interval, supervised=baseline, fresh=fresh,
                   pool_difference=delta)


def _onto(prediction, value: float):
    """`prediction` (a law's loss with its interval) moved onto `value` (the plan's own loss)."""
    shift = value - float(prediction.value)
    if not prediction.has_interval:
        return replace(prediction, value=value)
    return replace(prediction, value=value, low=float(prediction.low) + shift, high=float(prediction.high) + shift)


def _shifted_difference(delta, value: float):
    """A Delta moved onto `value` (the plan's own), its interval with it."""
    shift = value - delta.value
    if not delta.has_interval:
        return replace(delta, value=value)
    return replace(delta, value=value, low=delta.low + shift, high=delta.high + shift)


def repeated_sweep(sweep: StudentSweep, laws: LawSet, student: RepetitionAssessment,
                   supervised: RepetitionAssessment) -> StudentSweep:
    """A sweep's best student and best model trained alone under their checks (the best student's
    same-size baseline under its own); the searched sizes are listed with fresh data."""
    best = sweep.best
    baseline = assess_model(laws, best.student_params, best.supervised.tokens, student.unique_tokens,
                            student.max_penalty, distilled=False, loss_fresh=best.supervised.loss)
    return replace(sweep, best=repeated_distillation(best, student, baseline, laws),
                   supervised_best=repeated_supervised(sweep.supervised_best, supervised, laws), fresh=sweep)


def _scaled(interval, factor: float):
    return None if interval is None else interval.scaled(factor)


def repetition_check(result, unique_tokens: float, max_penalty: float = 0.01,
                     teacher_unique_tokens: float | None = None, teachers: bool = True
                     ) -> dict[str, RepetitionAssessment]:
    """With only `unique_tokens` of data: for each run a plan trains (`Plan.runs()`, by name: each
    scenario's student, "<scenario> (pretrain instead)" for the model without a teacher, "<scenario>
    teacher" for a teacher the scenario pre-trains, "supervised" for a supervised plan) its epochs, the
    loss penalty of repeating the data, and the unique data that keeps the penalty within
    `max_penalty` (`assess_model`), from the plan's own losses with fresh data (`Plan.model_losses()`;
    a teacher's, the supervised law's at its size and tokens). A teacher trained for the plan (one a
    scenario pre-trains, or one given by its size and tokens: "<scenario> teacher" too, not a run of
    the plan) reads `teacher_unique_tokens` (default: the plan's settings', else the student's pool),
    and its student carries its penalty (`with_teacher_check`); a measured teacher keeps its loss.
    `teachers=False`: only the students are limited to `unique_tokens` (a family's capped logit cache,
    which its students re-read), the teachers read fresh data."""
    from distillscale.errors import ParameterError

    if getattr(result, "laws", None) is None:
        raise ParameterError("result", "{} must be a plan made by `plan` or `plan_supervised` (it carries "
                             "its law)")
    if teacher_unique_tokens is None:
        teacher_unique_tokens = getattr(result.settings, "teacher_unique_tokens", None)
    teacher_pool = unique_tokens if teacher_unique_tokens is None else teacher_unique_tokens
    losses = result.model_losses()
    law = result.laws.require_supervised()
    checks = {name: teacher_check(result.laws, N, D, teacher_pool, max_penalty) if name.endswith(TEACHER_RUN.format(""))
              else assess_model(result.laws, N, D, unique_tokens, max_penalty,
                                loss_fresh=losses[name] if name in losses else float(law.predict(N, D)),
                                distilled=is_distilled(name))
              for name, (N, D) in result.runs().items() if teachers or not name.endswith(TEACHER_RUN.format(""))}
    if not teachers:
        return checks
    given = result.settings.teacher   # an existing teacher given by its size and tokens, trained on a pool too
    given = given is not None and given.tokens is not None and given.loss is None and given.mixture is None
    for name, plan in result.scenario_plans().items():
        teacher = TEACHER_RUN.format(name)
        if teacher not in checks and given and plan.teacher_params and plan.teacher_tokens:
            checks[teacher] = teacher_check(result.laws, plan.teacher_params, plan.teacher_tokens, teacher_pool,
                                            max_penalty)
        if teacher in checks:  # a student whose teacher repeats a pool too
            checks[name] = with_teacher_check(result.laws, plan, checks[name], checks[teacher],
                                              shared=teacher_unique_tokens is None)
    return checks


def teacher_pool(settings) -> float | None:
    """The unique tokens a teacher trained for the plan reads: --teacher-unique-tokens, else the
    student's pool (None: fresh data)."""
    own = getattr(settings, "teacher_unique_tokens", None)
    return settings.unique_tokens if own is None else own


def given_teacher_loss(laws: LawSet, teacher, settings) -> float:
    """An existing teacher's loss: measured (`teacher.loss`), kept as given; else the supervised law's at
    its size and tokens, on its pool (`teacher_pool`) when the plan has one (`laws.repetition.pooled_loss`,
    what `predict supervised --unique-tokens` gives for its run)."""
    if teacher.loss is not None:
        return teacher.loss
    law, pool = laws.require_supervised(), teacher_pool(settings)
    if pool is None:
        return float(law.predict(teacher.params, teacher.tokens))
    return teacher_check(laws, teacher.params, teacher.tokens, pool, settings.max_penalty).loss_repeated


def given_teacher_state(laws: LawSet, teacher, settings) -> ModelState | None:
    """An existing teacher as the data-limited law's state on a plan with a pool (None on fresh data, without a
    distillation law, or for a mixture): measured (its pool unknown: fresh), or trained on its pool
    (`teacher_pool`)."""
    if settings.unique_tokens is None or laws.distillation is None or teacher.mixture is not None:
        return None
    law = DataLimitedLaw(laws)
    if teacher.loss is not None:
        return law.measured_teacher(teacher.loss)
    return law.alone(teacher.params, teacher.tokens, teacher_pool(settings))


def with_repetition(result):
    """A plan (`planning.plans.Plan`) under its `unique_tokens`: each model's check computed once
    (the mode comparison's in `compare_modes`), its losses, intervals and verdicts under it, and a
    warning where the repeated tokens' worth as fresh data (D') is far outside the law's data."""
    from distillscale.laws.extrapolation import extrapolation_warnings

    if not result.repeats_data:   # a limited corpus, or a family's capped cache its students re-read
        return result
    checks = result.repetition_checks()
    teacher = result.settings.teacher
    if result.kind == "modes" and teacher is not None and teacher.loss is None:   # its loss is on its pool already
        checks = {**checks, "teacher": teacher_check(result.laws, teacher.params, teacher.tokens,
                                                     teacher_pool(result.settings), result.settings.max_penalty)}
    warnings = [message for name, check in checks.items() for message in extrapolation_warnings(
        result.laws, {}, {f"the {name} model's tokens as fresh data (D' after repetition)": check.effective_tokens})]
    warnings += [RepeatedData(name, check) for name, check in checks.items() if check.epochs > 1 and not check.within]
    return replace(result._repeated(checks), repetition=checks, warnings=list(dict.fromkeys(result.warnings + warnings)))


@dataclass(frozen=True)
class DataPool:
    """Which pool of unique tokens one model of a plan reads and how many times: a run's (or a teacher
    trained for the plan) from its repetition check; a measured teacher's loss is kept as measured
    (`measured`: no pool, no epochs). `role`: student (distilled), alone (trained without a teacher)
    or teacher."""

    model: str
    role: str
    unique_tokens: float | None
    tokens: float | None
    epochs: float | None
    measured: bool = False

    def to_dict(self) -> dict:
        return {"model": self.model, "role": self.role, "unique_tokens": self.unique_tokens, "tokens": self.tokens,
                "epochs": self.epochs, "measured": self.measured}


MEASURED_TEACHER = "teacher"


def role(name: str) -> str:
    """A plan's model (by name) as a role: teacher, alone (no teacher) or student (distilled)."""
    if name == MEASURED_TEACHER or name.endswith(TEACHER_RUN.format("")):
        return "teacher"
    return "student" if is_distilled(name) else "alone"


def data_pools(result) -> list[DataPool]:
    """Each model of a plan with a pool (`unique_tokens`): the pool it reads and its epochs, in the
    plan's order; a measured teacher (--teacher-loss, --teacher-model, a mixture) last, as measured.
    Empty on fresh data."""
    if result.settings.unique_tokens is None:
        return []
    pools = [DataPool(name, role(name), check.unique_tokens, check.tokens, check.epochs)
             for name, check in result.repetition.items()]
    settings = result.settings
    if settings.teacher_model is not None or (settings.teacher is not None and settings.teacher.loss is not None):
        pools.append(DataPool(MEASURED_TEACHER, "teacher", None, None, None, measured=True))
    return pools


def pools_line(result, full: bool = False) -> str | None:
    """The plan's pools in one line: each pool's unique tokens, and how many times each role (`full`:
    each model) reads it; None on fresh data."""
    from distillscale.units import format_quantity

    pools = data_pools(result)
    if not pools:
        return None
    groups: dict[float, dict[str, list[float]]] = {}
    for pool in (p for p in pools if not p.measured):
        groups.setdefault(pool.unique_tokens, {}).setdefault(pool.model if full else pool.role, []).append(pool.epochs)
    parts = []
    for unique, readers in groups.items():
        if full:
            said = ", ".join(f"{name} {e[0]:.3g}x" for name, e in readers.items())
            parts.append(f"{format_quantity(unique)} unique tokens read by {said}")
        else:   # one terminal line: the epochs each role reads them (a range where several models do)
            said = ", ".join(f"{name} {min(e):.3g}" + (f"-{max(e):.3g}" if max(e) > min(e) else "")
                             for name, e in readers.items())
            parts.append(f"{format_quantity(unique)} unique tokens; epochs: {said}")
    if any(pool.measured for pool in pools):
        parts.append("the teacher's loss as measured (its own data)")
    return "Data: " + "; ".join(parts)
