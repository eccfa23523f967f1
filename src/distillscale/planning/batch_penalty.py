"""A plan at a batch the user fixed (`plan --batch-tokens`, the planner page's batch): each run's
loss penalty against its B* (the hyperparameter law's ridge, `HyperparameterLaw.at_batch`,
as each run's recipe carries it) is in the losses, intervals, verdicts and downstream errors the
plan shows, as a limited corpus's repetition penalty is (`planning.repetition`); the plan at each
run's own B* is kept beside it (`Plan.at_optimal_batch`).

The rules, stated once here:
- a model trained without a teacher: its loss (and interval) times 1 + its penalty;
- a teacher the scenario pre-trains: its loss times 1 + its penalty, and the student's loss moves
  with it as the distillation law says (`with_teacher_loss`);
- a distilled student: its loss times 1 + its own penalty. The penalty is measured on supervised
  runs (an lr x batch grid); for distillation it is an assumption, and the plan says so;
- a run whose law gives no penalty (no loss surface: `deepseek2024`, a law fitted at one batch)
  is left as planned, and its recipe's notes say why.
The allocation is the one solved at each run's optimum; the penalties re-score it, they do not
re-solve it (a plan at a large batch may be better served by another allocation: say so).
"""

from __future__ import annotations

from dataclasses import replace

from distillscale.laws.lawset import LawSet
from distillscale.planning.results import DistillationPlan, StudentSweep, SupervisedPlan

PENALTY_NOTE = ("losses and verdicts include each run's penalty at your --batch-tokens (a student's from the "
                "supervised law's ridge; tokens as solved at B*)")
# The warning when the batch fixed changes a verdict: VERDICT_MOVED + " (scenario: ... at each run's B*, ... at your batch)".
VERDICT_MOVED = "the batch you fixed changes the verdict"


def factors(recipes: dict) -> dict[str, float]:
    """1 + each run's loss penalty at the user's batch (`RunRecipe.adaptation`), by run name; runs
    whose law gives no penalty are left out (their losses stay as planned)."""
    return {name: 1.0 + recipe.adaptation.loss_penalty for name, recipe in recipes.items()
            if recipe.adaptation is not None and recipe.adaptation.loss_penalty is not None}


def with_teacher_loss(plan: DistillationPlan, laws: LawSet, factor: float,
                      loss: float | None = None) -> DistillationPlan:
    """The plan with its teacher's loss times `factor` (a penalty of the teacher's own training; `loss`:
    that loss itself, as computed where the factor came from) and the student's loss and interval
    moved by the distillation law's ratio at the new teacher loss."""
    if factor == 1.0 or laws.distillation is None:
        return plan
    teacher = plan.teacher_loss * factor if loss is None else loss
    ratio = float(laws.distillation.predict(plan.student_params, plan.student_tokens, teacher)
                  / laws.distillation.predict(plan.student_params, plan.student_tokens, plan.teacher_loss))
    return replace(plan, teacher_loss=teacher, teacher_interval=_scaled(plan.teacher_interval, factor),
                   student_loss=plan.student_loss * ratio, student_interval=_scaled(plan.student_interval, ratio))


def penalized_supervised(plan: SupervisedPlan, factor: float) -> SupervisedPlan:
    return plan if factor == 1.0 else replace(plan, loss=plan.loss * factor, interval=_scaled(plan.interval, factor))


def penalized_distillation(plan: DistillationPlan, laws: LawSet, student: float, baseline: float,
                           teacher: float) -> DistillationPlan:
    """A scenario's plan under its runs' penalty factors: the teacher's first (it moves the
    student's loss), then the student's own, and its baseline's."""
    before = plan.distilled_minus_alone
    plan = with_teacher_loss(plan, laws, teacher)
    plan = replace(plan, student_loss=plan.student_loss * student,
                   student_interval=_scaled(plan.student_interval, student),
                   supervised=penalized_supervised(plan.supervised, baseline))
    if plan.pool_difference is not None:   # the data-limited law's Delta, moved with the losses
        shift = plan.distilled_minus_alone - before
        d = plan.pool_difference
        plan = replace(plan, pool_difference=replace(d, value=d.value + shift, alone=plan.supervised.loss,
                                                     **({} if not d.has_interval else
                                                        {"low": d.low + shift, "high": d.high + shift})))
    return plan


def penalized_sweep(sweep: StudentSweep, laws: LawSet, student: float, baseline: float, teacher: float,
                    best_baseline: float) -> StudentSweep:
    """A sweep's best student (and its same-size baseline) and best model trained alone under
    their factors; the searched sizes are listed as solved."""
    return replace(sweep, best=penalized_distillation(sweep.best, laws, student, best_baseline, teacher),
                   supervised_best=penalized_supervised(sweep.supervised_best, baseline))


def _scaled(interval, factor: float):
    return None if interval is None else interval.scaled(factor)
