"""Compute-optimal distillation: for a student size and a FLOP budget, which teacher, how many
distillation tokens, what loss, and is it better than training the student directly?

The problem (Busbridge et al. 2025, Sec. 5): minimise L_S(N_S, D_S, L(N_T, D_T)) over
(D_S, N_T, D_T), every variable in [1e6, 1e17], subject to

    3 F(N_S) D_S + F(N_T) (delta_lgt D_S + delta_pre 3 D_T) = C.

Rather than a constrained 3-D search, each scenario is reduced to what actually matters:

- best-case: the budget fixes D_S = C / (3 F(N_S)) and the teacher enters only through L_T, so a
  1-D search over L_T gives L_T*; every (N_T, D_T) with L(N_T, D_T) = L_T* reaches it.
- scenarios that pay for the teacher: for a teacher (N_T, D_T) the budget left over fixes
  D_S = (C - delta_pre 3 F(N_T) D_T) / (3 F(N_S) + delta_lgt F(N_T)), so the search is 2-D over the
  teacher. A dense log-spaced grid locates the global basin, a finer grid around its best point
  sharpens it, and SLSQP (the paper's optimiser) polishes it with D_S's bounds as constraints.

Every plan spends the budget exactly, since D_S is computed from it. A plan's losses carry the
laws' intervals (bootstrap and backtest extrapolation error, `laws.uncertainty`) when the laws were
fitted with them, and a verdict whose margin lies inside them is "too close to call".

A law that carries a correction beyond its runs (`laws.crossladder`: 0 inside them, growing beyond,
so piecewise in N) is searched without it: every optimum (a size, a teacher, a teacher loss) is the
law's own form's, never the correction's corner, and the plan's losses at it are the corrected
law's (`search_law`; `planning.plans.CorrectionShift` says by how much they moved).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from scipy.optimize import brentq, minimize, minimize_scalar

from distillscale.errors import ParameterError, UserError
from distillscale.laws import LawSet, SupervisedLaw
from distillscale.laws.difference import used_interval
from distillscale.laws.student_init import StartMultiplier
from distillscale.laws.uncertainty import Prediction, lower_end
from distillscale.planning.flops import SCENARIOS, FlopBreakdown, ForwardFlops, Scenario, distillation_flops
from distillscale.planning.results import (
    Convergence,
    DistillationPlan,
    StudentRegion,
    StudentSweep,
    SupervisedPlan,
    TeacherFamily,
    TeacherMixture,
    interval_or_none,
)
from distillscale.units import format_quantity

# A model's relative loss penalty of repeating a limited corpus, as a function of its (N, D)
# (`planning.repetition.model_penalty`): what a search minimises is loss x (1 + penalty).
Penalty = Callable[[float, float], float]

# The paper's box for every variable: parameters and tokens in [1e6, 1e17].
DEFAULT_BOUNDS = (1e6, 1e17)

def tokens_reaching_loss(law: SupervisedLaw, params: np.ndarray, loss: float) -> np.ndarray:
    """D with L(N, D) = loss for each N (the law's own inversion, so a form whose data exponent
    depends on N, `laws.interaction_law`, is inverted with it); NaN where unreachable."""
    return law.tokens_reaching(params, loss)


class SupervisedPlanner:
    """Compute-optimal training without a teacher, under a supervised law: the baseline of every
    distillation plan, and what a supervised-only law can plan on its own.

    Parameters
    ----------
    law : the supervised law.
    flops : forward FLOPs per token F(N).
    bounds : (low, high) for every parameter and token count.
    """

    def __init__(self, law: SupervisedLaw, flops: ForwardFlops,
                 bounds: tuple[float, float] = DEFAULT_BOUNDS) -> None:
        self.supervised_law = law
        # What every search minimises: the law without its correction beyond the runs (a piecewise
        # factor whose corner an optimiser would find); the plans' losses are `supervised_law`'s.
        self.search_law = law.without_bias_correction()
        self.flops = flops
        self.bounds = bounds

    def supervised(self, student_params: float, budget: float,
                   student_flops_per_token: float | None = None) -> SupervisedPlan:
        """All compute on training the student directly: D = C / (3 F(N_S))."""
        F_S = self._student_flops(student_params, student_flops_per_token)
        tokens = budget / (3.0 * F_S)
        low, high = self.bounds
        if tokens < low:
            raise ParameterError("compute",
                f"budget {budget:.3g} FLOPs is too small: training a {format_quantity(student_params)}"
                f"-parameter student on the minimum of {format_quantity(low)} tokens needs "
                f"{3.0 * F_S * low:.3g} FLOPs; raise {{}} or choose a smaller student")
        if tokens > high:
            raise ParameterError("compute",
                f"budget {budget:.3g} FLOPs would train a {format_quantity(student_params)}-parameter "
                f"student on {tokens:.3g} tokens, beyond the planner's {high:.0e}-token bound; "
                "choose a larger student or lower {}")
        # the interval shown is the one a verdict's Δ is built from (`laws.difference.used_interval`)
        interval = self.marked(interval_or_none(self.supervised_law.prediction(student_params, tokens)),
                               student_params, tokens)
        return SupervisedPlan(student_params, tokens, float(self.supervised_law.predict(student_params, tokens)),
                              budget, used_interval(interval, "alone"))

    def marked(self, prediction: Prediction | None, params: float, tokens: float,
               students: bool = False) -> Prediction | None:
        """`prediction` marked where its interval means nothing (`laws.extrapolation.marked`): a
        planner that knows its law set's data and vocabulary marks it; this one, a law alone, cannot."""
        return prediction

    def supervised_optimal(self, budget: float, size_range: tuple[float, float] | None = None,
                           tokens_per_param: tuple[float, float] | None = None,
                           penalty: Penalty | None = None) -> SupervisedPlan:
        """The model size that minimises L(N, C / (3 F(N))) for this budget, searched in
        `student_region(budget, size_range, tokens_per_param)`; with `penalty` (a limited corpus),
        L (1 + penalty(N, D)): a repeated corpus favours more parameters on fewer tokens."""
        region = self.student_region(budget, size_range, tokens_per_param)
        sizes = np.geomspace(region.smallest, region.largest, 48)
        tokens = budget / (3.0 * self.flops(sizes))
        losses = self.search_law.predict(sizes, tokens)
        if penalty is not None:
            losses = losses * np.array([1.0 + penalty(float(n), float(d)) for n, d in zip(sizes, tokens)])
        best = int(np.argmin(losses))
        bracket = np.log(sizes[max(best - 1, 0)]), np.log(sizes[min(best + 1, len(sizes) - 1)])

        def loss(log_n: float) -> float:
            n = float(np.exp(log_n))
            d = budget / (3.0 * float(self.flops(n)))
            return float(self.search_law.predict(n, d)) * (1.0 if penalty is None else 1.0 + penalty(n, d))

        found = minimize_scalar(loss, bounds=bracket, method="bounded", options={"xatol": 1e-6})
        return self.supervised(float(np.exp(found.x)), budget)

    def student_region(self, budget: float, size_range: tuple[float, float] | None = None,
                       tokens_per_param: tuple[float, float] | None = None) -> StudentRegion:
        """The student sizes in `size_range` (default: the bounds) whose training on the whole
        budget, D = C / (3 F(N)), lies inside the token bounds and `tokens_per_param` (D/N)."""
        low, high = self.bounds
        smallest, largest = size_range or self.bounds
        fewest, most = tokens_per_param or (0.0, np.inf)

        def tokens(n):
            return budget / (3.0 * self.flops(n))

        # D and D/N both fall as N grows, so every limit on them is a limit on N.
        lower = [(max(smallest, low), "min_params"),
                 (self._size_where(tokens, high), "token_bounds"),
                 (self._size_where(lambda n: tokens(n) / n, most), "max_tokens_per_param")]
        upper = [(min(largest, high), "max_params"),
                 (self._size_where(tokens, low), "token_bounds"),
                 (self._size_where(lambda n: tokens(n) / n, fewest), "min_tokens_per_param")]
        (start, start_limit), (stop, stop_limit) = (max(lower, key=lambda limit: limit[0]),
                                                  min(upper, key=lambda limit: limit[0]))
        if start > stop:
            ratios = (f" at {format_quantity(fewest)} to {format_quantity(most)} tokens per "
                      "parameter" if tokens_per_param else "")
            raise ParameterError("compute", f"budget {budget:.3g} FLOPs cannot train any model of "
                                 f"{format_quantity(smallest)} to {format_quantity(largest)} parameters "
                                 f"on {low:.0e} to {high:.0e} tokens{ratios}: change {{}}")
        return StudentRegion(start, stop, start_limit, stop_limit, tokens_per_param)

    def _student_flops(self, student_params: float, override: float | None) -> float:
        return float(self.flops(student_params)) if override is None else float(override)

    @staticmethod
    def _size_where(falling, value: float) -> float:
        """The N with falling(N) = value for a positive function falling in N: 0 when it is
        below the value at every size, inf when above."""
        if value <= 0:
            return np.inf
        if not np.isfinite(value):
            return 0.0
        log_low, log_high = np.log(1.0), np.log(1e30)
        if falling(np.exp(log_high)) >= value:
            return np.inf
        if falling(np.exp(log_low)) <= value:
            return 0.0
        return float(np.exp(brentq(lambda t: np.log(falling(np.exp(t)) / value), log_low, log_high,
                                   xtol=1e-12)))



class DistillationPlanner(SupervisedPlanner):
    """Compute-optimal planning under a law set's supervised and distillation laws.

    Parameters
    ----------
    laws : the LawSet; it needs a distillation law (its student law is the supervised law used for
        teachers and for the baseline).
    flops : forward FLOPs per token F(N); by default the corrected form for the law's own setting.
    bounds : (low, high) for every parameter and token count.
    grid_size : points per axis of the coarse grid of the teacher search.
    start : a student that starts from somewhere (`laws.student_init.StartMultiplier`, e.g. pruned
        from the teacher): the law sees its D_S tokens as start.value x D_S (D_eff); None: from scratch.
    """

    def __init__(self, laws: LawSet, flops: ForwardFlops | None = None,
                 bounds: tuple[float, float] = DEFAULT_BOUNDS, grid_size: int = 64,
                 start: StartMultiplier | None = None) -> None:
        self.laws = laws
        self.distillation = laws.require_distillation()
        self.start = start
        self.token_multiplier = 1.0 if start is None else start.value
        super().__init__(self.distillation.student_law,
                         flops if flops is not None else ForwardFlops.from_settings(laws.compute), bounds)
        # The distillation law over the search law's Ltilde_S: what the searches minimise.
        self.search_distillation = replace(self.distillation, student_law=self.search_law)
        self.grid_size = grid_size

    def marked(self, prediction: Prediction | None, params: float, tokens: float,
               students: bool = False) -> Prediction | None:
        from distillscale.laws.extrapolation import marked

        return marked(prediction, self.laws, params, tokens, students=students)

    # -- distillation -----------------------------------------------------------------------

    def distilled_loss(self, student_params, student_tokens, teacher_loss, multiplier: float | None = None,
                       search: bool = False):
        """The distillation law's student loss at D_eff = multiplier x D_S (default: the start's);
        `search`: under the search law's Ltilde_S (what a search minimises)."""
        multiplier = self.token_multiplier if multiplier is None else multiplier
        law = self.search_distillation if search else self.distillation
        return law.predict(student_params, multiplier * np.asarray(student_tokens, float), teacher_loss)

    def search_loss(self, plan: DistillationPlan) -> float:
        """The student loss a search ranks `plan` by: under the search law (no correction beyond the
        runs), its teacher's loss too where the plan chose the teacher by (N_T, D_T)."""
        teacher_loss = plan.teacher_loss
        if plan.scenario.teacher_inference or plan.scenario.teacher_pretraining:
            teacher_loss = float(self.search_law.predict(plan.teacher_params, plan.teacher_tokens))
        return float(self.distilled_loss(plan.student_params, plan.student_tokens, teacher_loss, search=True))

    def with_interval(self, plan: DistillationPlan) -> DistillationPlan:
        """The plan with the interval of its student loss (bootstrap and extrapolation error); for a
        student with a start, spanning the start multiplier's interval (`start_interval`). A teacher
        the scenario pre-trains is itself a prediction: its loss's interval (the supervised law's at
        N_T, D_T) is kept and carried into the student's (`teacher_spread`)."""
        prediction = self.distillation.prediction(plan.student_params, self.token_multiplier * plan.student_tokens,
                                                  plan.teacher_loss)
        teacher = None
        if plan.scenario.teacher_pretraining and plan.teacher_params and plan.teacher_tokens:
            teacher = interval_or_none(self.supervised_law.prediction(plan.teacher_params, plan.teacher_tokens))
        if self.start is None:
            student = interval_or_none(prediction)
        else:
            student = self.start_interval(plan, prediction)
        student = self.teacher_spread(plan, self.marked(student, plan.student_params,
                                                        self.token_multiplier * plan.student_tokens, students=True),
                                      teacher)
        if self.start is None:   # the interval shown is the one a verdict's Δ is built from (`used_interval`)
            student = used_interval(student, "distilled")
        return replace(plan, student_interval=student, teacher_interval=teacher,
                       start=self.start if self.start is not None else plan.start)

    def teacher_spread(self, plan: DistillationPlan, student: Prediction | None,
                       teacher: Prediction | None) -> Prediction | None:
        """The student's interval widened by its teacher's: the distillation law's student loss at
        the ends of the teacher loss's interval, each side's distance from the student's loss added
        in quadrature to the student's own half-width on that side."""
        if student is None or teacher is None or not teacher.has_interval:
            return student
        ends = [float(self.distilled_loss(plan.student_params, plan.student_tokens, loss))
                for loss in (float(teacher.low), float(teacher.high))]
        value = plan.student_loss
        below, above = max(0.0, value - min(ends)), max(0.0, max(ends) - value)
        return replace(student, low=float(lower_end(value, float(np.hypot(value - float(student.low), below)))),
                       high=value + float(np.hypot(float(student.high) - value, above)))

    def start_interval(self, plan: DistillationPlan, prediction: Prediction) -> Prediction:
        """The student loss from the high end of the multiplier's interval (most effective tokens:
        lowest loss) to its low end, each end widened by the law's own interval there when it has one."""
        ends = [self.distillation.prediction(plan.student_params, m * plan.student_tokens, plan.teacher_loss)
                for m in self.start.interval]
        high = float(ends[0].high) if ends[0].has_interval else float(ends[0].value)
        low = float(ends[1].low) if ends[1].has_interval else float(ends[1].value)
        return replace(prediction, value=plan.student_loss, low=min(low, plan.student_loss),
                       high=max(high, plan.student_loss))

    def plan(self, student_params: float, budget: float, scenario: Scenario | str,
             student_flops_per_token: float | None = None,
             min_student_tokens: float | None = None, interval: bool = True) -> DistillationPlan:
        """The compute-optimal (D_S, N_T, D_T) for one student size, budget and scenario.

        min_student_tokens : the fewest distillation tokens D_S the plan may give the student
            (default: the lower bound); a sweep passes its tokens-per-parameter floor.
        interval : give the student loss its interval (a sweep does it for its best plan only).
        """
        plan = self._plan(student_params, budget, scenario, student_flops_per_token, min_student_tokens)
        return self.with_interval(plan) if interval else replace(plan, start=self.start)

    def _plan(self, student_params: float, budget: float, scenario: Scenario | str,
              student_flops_per_token: float | None, min_student_tokens: float | None) -> DistillationPlan:
        scenario = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
        baseline = self.supervised(student_params, budget, student_flops_per_token)
        F_S = self._student_flops(student_params, student_flops_per_token)
        fewest_tokens = max(self.bounds[0], min_student_tokens or 0.0)
        if not (scenario.teacher_inference or scenario.teacher_pretraining):
            if baseline.tokens < fewest_tokens * (1 - 1e-9):
                raise ParameterError("compute",
                    f"budget {budget:.3g} FLOPs trains a {format_quantity(student_params)}-parameter "
                    f"student on {format_quantity(baseline.tokens)} tokens, fewer than the "
                    f"{format_quantity(fewest_tokens)} asked for: raise {{}} or choose a "
                    "smaller student")
            return self._plan_best_case(student_params, budget, scenario, F_S, baseline)
        return self._plan_paid_teacher(student_params, budget, scenario, F_S, baseline,
                                       fewest_tokens)

    def plan_with_teacher(self, student_params: float, budget: float, teacher_params: float,
                          teacher_tokens: float | None = None, teacher_loss: float | None = None,
                          student_flops_per_token: float | None = None,
                          mixture: tuple[float, ...] | None = None,
                          teacher_flops_per_token: float | None = None) -> DistillationPlan:
        """An existing teacher (its size and either its tokens or its loss); its logits are paid.

        The student loss falls monotonically with D_S for a fixed teacher, so the optimum spends
        the whole budget: D_S = C / (3 F(N_S) + F(N_T)).

        `mixture`: the sizes of several teachers whose mixture is the target (`teacher_params` then
        None): every teacher runs on every student token, F(N_T) is the sum of theirs, and
        `teacher_loss` is the mixture's measured cross-entropy, applied as L_T outside the law's fit
        (it was fitted for one teacher). `teacher_flops_per_token`: the teacher model's own F(N_T)
        (`plan --teacher-model`: counted from its config), instead of the accounting's F(N_T).
        """
        if (teacher_tokens is None) == (teacher_loss is None):
            raise UserError("give the existing teacher's tokens or its loss (exactly one)")
        if teacher_loss is None:
            teacher_loss = float(self.supervised_law.predict(teacher_params, teacher_tokens))
        scenario = SCENARIOS["teacher-inference"]
        baseline = self.supervised(student_params, budget, student_flops_per_token)
        F_S = self._student_flops(student_params, student_flops_per_token)
        teachers = None if mixture is None else TeacherMixture(
            tuple(float(p) for p in mixture), tuple(float(self.flops(p)) for p in mixture))
        F_T = float(self.flops(teacher_params)) if teachers is None else sum(teachers.flops_per_token)
        F_T = F_T if teacher_flops_per_token is None else float(teacher_flops_per_token)  # a model's own count
        student_tokens = budget / (3.0 * F_S + F_T)
        if student_tokens < self.bounds[0]:
            size = (f"{format_quantity(teacher_params)}-parameter teacher's" if teachers is None
                    else f"{len(mixture)} teachers'")
            raise ParameterError(
                "compute", f"budget {budget:.3g} FLOPs is too small: with the "
                f"{size} logits, the student gets "
                f"{student_tokens:.3g} tokens, below the minimum of {format_quantity(self.bounds[0])}")
        loss = float(self.distilled_loss(student_params, student_tokens, teacher_loss))
        return self.with_interval(DistillationPlan(
            scenario, budget, student_params, student_tokens, teacher_params, teacher_tokens,
            teacher_loss, loss, distillation_flops(scenario, F_S, student_tokens, F_T), baseline,
            Convergence(True, "closed form: the student loss falls with D_S, so D_S takes the "
                              "whole budget"), mixture=teachers))

    def plan_member(self, name: str, student_params: float, budget: float, teacher_params: float,
                    teacher_tokens: float | None, teacher_loss: float, teacher_forward_per_token: float,
                    teacher_training: float = 0.0, student_flops_per_token: float | None = None,
                    teacher_trained: bool = False) -> DistillationPlan:
        """One student of a family (`planning.family`): its budget spends 3 F(N_S) per token on itself,
        `teacher_forward_per_token` on its share of the teacher's forward passes, and `teacher_training`
        once on its share of the teacher's training, D_S = (C - training) / (3 F(N_S) + f); against the
        same student trained alone on its whole budget. The plan's scenario is named `name`."""
        scenario = Scenario(name, True, teacher_trained, "a student of a family sharing one teacher")
        baseline = self.supervised(student_params, budget, student_flops_per_token)
        F_S = self._student_flops(student_params, student_flops_per_token)
        student_tokens = (budget - teacher_training) / (3.0 * F_S + teacher_forward_per_token)
        if teacher_training >= budget:
            raise ParameterError("compute", f"the {format_quantity(student_params)}-parameter student's share of the "
                                 f"teacher's training ({teacher_training:.3g} FLOPs, --teacher-trained) is more than "
                                 f"its budget ({budget:.3g} FLOPs): raise {{}} or its share, or leave out "
                                 "--teacher-trained")
        if student_tokens < self.bounds[0]:
            raise ParameterError("compute", f"budget {budget:.3g} FLOPs is too small for the "
                                 f"{format_quantity(student_params)}-parameter student of the family: with its share "
                                 f"of the teacher's costs it gets {student_tokens:.3g} tokens, below the minimum of "
                                 f"{format_quantity(self.bounds[0])}; raise {{}} or its share")
        loss = float(self.distilled_loss(student_params, student_tokens, teacher_loss))
        flops = FlopBreakdown(student=3.0 * F_S * student_tokens,
                              teacher_inference=teacher_forward_per_token * student_tokens,
                              teacher_pretraining=teacher_training)
        return self.with_interval(DistillationPlan(
            scenario, budget, student_params, student_tokens, teacher_params, teacher_tokens, teacher_loss, loss,
            flops, baseline, Convergence(True, "closed form: the student loss falls with D_S, so D_S takes the "
                                               "whole budget left after its share of the teacher")))

    def optimal_teacher_loss(self, student_params: float,
                             student_tokens: float) -> tuple[float, Convergence]:
        """L_T* = argmin over reachable teacher losses of L_S(N_S, D_S, L_T) (the U-curve minimum),
        under the search law."""
        law = self.search_law
        low, high = self.bounds
        strongest, weakest = law.predict(high, high), law.predict(low, low)
        # The capacity-gap switch is sharp, so search log(L_T - E), where it is spread out.
        grid = np.linspace(np.log(strongest - law.E), np.log(weakest - law.E), 2048)
        losses = self.distilled_loss(student_params, student_tokens, law.E + np.exp(grid), search=True)
        best = int(np.argmin(losses))
        bracket = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]

        def student_loss(t: float) -> float:
            return float(self.distilled_loss(student_params, student_tokens, law.E + np.exp(t), search=True))

        found = minimize_scalar(student_loss, bounds=bracket, method="bounded",
                                options={"xatol": 1e-9})
        t = found.x if found.fun <= losses[best] else grid[best]
        return float(law.E + np.exp(t)), Convergence(
            bool(found.success), f"bounded Brent in log(L_T - E): {found.message}",
            grid_points=len(grid), local_evaluations=int(found.nfev), grid_loss=float(losses[best]))

    def teacher_family(self, teacher_loss: float, points: int = 64) -> TeacherFamily:
        """All teachers inside the bounds that reach `teacher_loss` under the search law, and the
        cheapest of them."""
        low, high = self.bounds
        params = np.geomspace(low, high, 4096)
        tokens = tokens_reaching_loss(self.search_law, params, teacher_loss)
        # A tolerance keeps the single corner teacher when L_T* is the strongest loss in bounds.
        inside = np.isfinite(tokens) & (tokens >= low * (1 - 1e-6)) & (tokens <= high * (1 + 1e-6))
        tokens = np.clip(tokens, low, high)
        if not inside.any():
            raise UserError(f"no teacher inside the bounds reaches loss {teacher_loss:.4f} nats/token")
        params, tokens = params[inside], tokens[inside]
        pretraining = self.flops(params) * tokens
        best = int(np.argmin(pretraining))
        bracket = np.log(params[max(best - 1, 0)]), np.log(params[min(best + 1, len(params) - 1)])

        def cost(log_n: float) -> float:
            n = np.exp(log_n)
            return float(self.flops(n) * tokens_reaching_loss(self.search_law, n, teacher_loss))

        found = minimize_scalar(cost, bounds=bracket, method="bounded", options={"xatol": 1e-9})
        optimal_params = float(np.exp(found.x))
        optimal_tokens = float(tokens_reaching_loss(self.search_law, optimal_params, teacher_loss))
        if not np.isfinite(optimal_tokens):
            optimal_params, optimal_tokens = float(params[best]), float(tokens[best])
        keep = np.unique(np.linspace(0, len(params) - 1, points).round().astype(int))
        return TeacherFamily(teacher_loss, params[keep], tokens[keep], optimal_params, optimal_tokens)

    def sweep(self, budget: float, scenario: Scenario | str,
              size_range: tuple[float, float] | None = None,
              tokens_per_param: tuple[float, float] | None = None, count: int = 13,
              penalties: tuple[Penalty, Penalty] | None = None) -> StudentSweep:
        """Plans for `count` log-spaced student sizes of `student_region(budget, size_range,
        tokens_per_param)`, each student given at least the fewest tokens per parameter; the best
        of them refined by a bounded 1-D search over size. `StudentSweep.edges` says when the best
        sits on a limit of the region. With `penalties` (a limited corpus: the distilled student's
        and the model trained alone's), the best are those of least loss x (1 + penalty); the plans
        keep their losses with fresh data."""
        scenario = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
        region = self.student_region(budget, size_range, tokens_per_param)
        fewest = tokens_per_param[0] if tokens_per_param else 0.0

        def plan_at(size: float) -> DistillationPlan:
            return self.plan(size, budget, scenario, min_student_tokens=fewest * size, interval=False)

        plans = []
        for size in np.geomspace(region.smallest, region.largest, count):
            try:
                plans.append(plan_at(float(size)))
            except UserError:
                continue  # the teacher's cost leaves this student too few tokens
        if not plans:
            raise ParameterError("compute", f"no student size can be planned with {budget:.3g} FLOPs in "
                                 f"scenario {scenario.name}; raise {{}}")
        student_penalty, supervised_penalty = penalties or (None, None)

        def loss(plan: DistillationPlan) -> float:
            if student_penalty is None:
                return self.search_loss(plan)
            return self.search_loss(plan) * (1.0 + student_penalty(plan.student_params, plan.student_tokens))

        best = self.with_interval(self._refine_student_size(plan_at, plans, min(plans, key=loss), loss))
        return StudentSweep(scenario, budget, plans, best,
                            self.supervised_optimal(budget, size_range, tokens_per_param, supervised_penalty), region)

    def advantage_map(self, scenario: Scenario | str, student_params,
                      supervised_tokens) -> np.ndarray:
        """Supervised minus distilled loss at equal compute, for each student size (rows) and
        token count (columns): cell (i, j) has the budget that trains student i on
        supervised_tokens[j] tokens without a teacher. Positive: distil; NaN: cannot be planned."""
        return self.verdict_map(scenario, student_params, supervised_tokens)[0]

    def verdict_map(self, scenario: Scenario | str, student_params,
                    supervised_tokens) -> tuple[np.ndarray, list[list[str | None]]]:
        """`advantage_map` and each cell's verdict, read off its Delta's interval as every plan's (None:
        the cell cannot be planned)."""
        advantage = np.full((len(student_params), len(supervised_tokens)), np.nan)
        verdicts: list[list[str | None]] = [[None] * len(supervised_tokens) for _ in student_params]
        for i, size in enumerate(student_params):
            flops_per_token = float(self.flops(size))
            for j, tokens in enumerate(supervised_tokens):
                try:
                    plan = self.plan(float(size), 3.0 * flops_per_token * tokens, scenario)
                except UserError:
                    continue
                advantage[i, j] = -plan.distilled_minus_alone   # supervised - distilled
                verdicts[i][j] = plan.verdict
        return advantage, verdicts

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _refine_student_size(plan_at, plans: list[DistillationPlan], best: DistillationPlan,
                             loss_of: Callable[[DistillationPlan], float]) -> DistillationPlan:
        index = plans.index(best)
        neighbours = plans[max(index - 1, 0)], plans[min(index + 1, len(plans) - 1)]
        bracket = tuple(np.log(p.student_params) for p in neighbours)
        if bracket[0] == bracket[1]:
            return best

        def loss(log_n: float) -> float:
            try:
                return loss_of(plan_at(float(np.exp(log_n))))
            except UserError:
                return np.inf

        found = minimize_scalar(loss, bounds=bracket, method="bounded", options={"xatol": 1e-3})
        refined = plan_at(float(np.exp(found.x)))
        return refined if loss_of(refined) < loss_of(best) else best

    def _plan_best_case(self, N_S: float, budget: float, scenario: Scenario, F_S: float,
                        baseline: SupervisedPlan) -> DistillationPlan:
        D_S = baseline.tokens  # the teacher is free, so every FLOP trains the student
        teacher_loss, convergence = self.optimal_teacher_loss(N_S, D_S)
        family = self.teacher_family(teacher_loss)
        return DistillationPlan(
            scenario, budget, N_S, D_S, family.compute_optimal_params, family.compute_optimal_tokens,
            teacher_loss, float(self.distilled_loss(N_S, D_S, teacher_loss)),
            distillation_flops(scenario, F_S, D_S), baseline, convergence, family)

    def _plan_paid_teacher(self, N_S: float, budget: float, scenario: Scenario, F_S: float,
                           baseline: SupervisedPlan, fewest_tokens: float) -> DistillationPlan:
        """`fewest_tokens` bounds D_S from below; the bounds also bound it from above and box
        the teacher."""
        low, high = self.bounds
        inference = 1.0 if scenario.teacher_inference else 0.0
        pretraining = 3.0 if scenario.teacher_pretraining else 0.0

        def student_tokens(log_nt, log_dt):
            F_T = self.flops(np.exp(log_nt))
            return (budget - pretraining * F_T * np.exp(log_dt)) / (3.0 * F_S + inference * F_T)

        def student_loss(log_nt, log_dt):
            D_S = student_tokens(log_nt, log_dt)
            feasible = (D_S >= fewest_tokens) & (D_S <= high)
            L_T = self.search_law.predict(np.exp(log_nt), np.exp(log_dt))
            L_S = self.distilled_loss(N_S, np.where(feasible, D_S, fewest_tokens), L_T, search=True)
            return np.where(feasible, L_S, np.inf)

        # Coarse grid over the whole box, then a finer one around its best cell.
        axis = np.linspace(np.log(low), np.log(high), self.grid_size)
        x0, grid_loss, coarse = self._grid_minimum(student_loss, axis, axis)
        if not np.isfinite(grid_loss):
            raise ParameterError(
                "compute", f"budget {budget:.3g} FLOPs is too small for scenario {scenario.name}: even the "
                f"smallest teacher leaves the student fewer than {format_quantity(fewest_tokens)} tokens")
        step = axis[1] - axis[0]
        fine_axes = [np.linspace(max(v - 2 * step, axis[0]), min(v + 2 * step, axis[-1]), 33)
                     for v in x0]
        x0, grid_loss, fine = self._grid_minimum(student_loss, *fine_axes)

        # Polish with SLSQP; D_S's bounds become constraints on the teacher, scaled by the budget.
        def objective(x):
            # SLSQP may probe outside the feasible set; a finite value worse than the grid's keeps
            # its line search working (the constraints bring it back).
            loss = float(student_loss(*x))
            return loss if np.isfinite(loss) else grid_loss + 1.0

        def tokens_within_bounds(x):
            D_S = student_tokens(*x)
            return np.array([D_S / fewest_tokens - 1.0, 1.0 - D_S / high])

        result = minimize(objective, x0, method="SLSQP",
                          bounds=[(axis[0], axis[-1])] * 2,
                          constraints=[{"type": "ineq", "fun": tokens_within_bounds}],
                          options={"ftol": 1e-12, "maxiter": 200})
        converged = bool(result.success and np.all(tokens_within_bounds(result.x) >= -1e-9))
        polished = converged and result.fun <= grid_loss
        x = np.clip(result.x, axis[0], axis[-1]) if polished else x0
        message = (f"SLSQP from the grid optimum: {result.message}" if polished else
                   f"kept the grid optimum; SLSQP did not improve it ({result.message})")

        N_T, D_T = float(np.exp(x[0])), float(np.exp(x[1]))
        D_S = float(np.clip(student_tokens(*x), fewest_tokens, high))
        L_T = float(self.supervised_law.predict(N_T, D_T))
        return DistillationPlan(
            scenario, budget, N_S, D_S, N_T, D_T, L_T,
            float(self.distilled_loss(N_S, D_S, L_T)),
            distillation_flops(scenario, F_S, D_S, float(self.flops(N_T)), D_T), baseline,
            Convergence(converged, message,
                        grid_points=coarse + fine, local_evaluations=int(result.nfev),
                        grid_loss=float(grid_loss)))

    @staticmethod
    def _grid_minimum(loss, axis_a: np.ndarray, axis_b: np.ndarray):
        """(argmin point, min loss, points evaluated) of a vectorised loss on a 2-D grid."""
        a, b = np.meshgrid(axis_a, axis_b, indexing="ij")
        values = loss(a, b)
        index = np.unravel_index(int(np.argmin(values)), values.shape)
        return np.array([a[index], b[index]]), float(values[index]), values.size
