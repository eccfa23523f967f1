"""What the planner returns: plans, their losses' intervals, verdicts and the convergence of the
search, each a record that says what it is in `to_dict` (the JSON of `distillscale plan`). The
planners that produce them are in `solver.py`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillscale.laws.difference import AS_SHOWN, INDEPENDENT, LossDifference, compare, decide
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.repetition import RepetitionAssessment
from distillscale.laws.student_init import StartMultiplier
from distillscale.laws.uncertainty import Prediction
from distillscale.planning.flops import FlopBreakdown, Scenario
from distillscale.units import format_quantity


# A sweep's best student within this relative distance (in size or D/N) of a limit sits on it:
# the refinement's bounded search stops about 1e-3 (in log size) short of an end.
EDGE_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Convergence:
    """How a solution was found, in the spirit of scipy.optimize.OptimizeResult."""

    success: bool
    message: str
    grid_points: int = 0          # objective evaluations on the dense grids
    local_evaluations: int = 0    # evaluations spent by the local refinement
    grid_loss: float = float("nan")  # best loss on the grid, before refinement

    def to_dict(self) -> dict:
        return {"success": self.success, "message": self.message, "grid_points": self.grid_points,
                "local_evaluations": self.local_evaluations, "grid_loss": self.grid_loss}


def interval_or_none(prediction: Prediction) -> Prediction | None:
    return prediction if prediction.has_interval else None


def _interval_record(prediction: Prediction | None) -> dict:
    """JSON keys of a loss's interval; none when the law has no interval."""
    if prediction is None or not prediction.has_interval:
        return {}
    return {"interval": [float(prediction.low), float(prediction.high)], "level": prediction.level,
            "interval_dominated_by": prediction.dominant,
            "extrapolation_half_width": prediction.extrapolation, "distance_beyond_runs": prediction.distance,
            "beyond_backtest": prediction.beyond_backtest, "calibrated": prediction.calibrated,
            "interval_source": prediction.interval_source, "outside": prediction.outside,
            "interval_scale": _plain(prediction.pairs_scale)}


def _plain(value) -> float | list | None:
    return None if value is None else float(value) if np.ndim(value) == 0 else np.asarray(value, float).tolist()


def verdict_difference(student_loss: float, student_interval: Prediction | None, supervised_loss: float,
                       supervised_interval: Prediction | None, outside_fit: bool = False) -> LossDifference:
    """Delta = the distilled loss - the loss trained alone, with the interval of the difference
    (`laws.difference.compare`, the one rule of every verdict: each law's interval rescaled at its
    distance, the two errors' correlation and the factor measured on trained pairs); without
    intervals, Delta alone. `outside_fit` (a student whose start or teachers the law does not model:
    pruned, a teacher mixture): its interval is a range the law's own does not measure, so the two
    are combined as shown (`INDEPENDENT`), a loss without an interval counting as its point."""
    if not outside_fit:
        return decide(student_loss, student_interval, supervised_loss, supervised_interval)
    if not any(i is not None and i.has_interval for i in (student_interval, supervised_interval)):
        return decide(student_loss, None, supervised_loss, None, INDEPENDENT)
    return compare(as_prediction(student_loss, student_interval), as_prediction(supervised_loss, supervised_interval),
                   INDEPENDENT)


def as_prediction(loss: float, interval: Prediction | None) -> Prediction:
    """A loss's interval, or the loss as a point (no width) when it has none."""
    if interval is not None and interval.has_interval:
        return interval
    return Prediction(loss, loss, loss, None, None, None, None, outside=getattr(interval, "outside", None))


def cannot_tell_reason(difference: LossDifference) -> str:
    """Why a verdict is CANNOT_TELL, in one line: where a loss's interval means nothing, or Delta's
    interval reaching 0 farther beyond the runs than any pair that checked the verdicts."""
    from distillscale.laws.data_limited import BEYOND_REASON, BEYOND_RULE

    if difference.outside is not None:
        return f"{CANNOT_TELL}: {difference.outside}, where a loss's interval means nothing"
    if difference.rule == BEYOND_RULE:
        return f"{CANNOT_TELL}: {BEYOND_REASON}"
    if difference.rule not in ("distilled vs alone", AS_SHOWN):
        return (f"{CANNOT_TELL}: Δ's interval ({difference.rule}: the two intervals as shown) reaches across 0 "
                "farther beyond the runs than the backtest reached")
    return (f"{CANNOT_TELL}: Δ's interval reaches across 0 farther beyond the runs than any pair the verdicts were "
            "checked on reached")


def what_would_tell(params: float, tokens: float) -> str:
    """What CANNOT_TELL asks for: runs nearer the plan's scale."""
    return (f"runs nearer this scale would tell (models up to {format_quantity(params)} parameters on "
            f"{format_quantity(tokens)} tokens, the plan's own, or a sweep whose backtest reaches that far)")


@dataclass(frozen=True)
class SupervisedPlan:
    """The baseline: the whole budget trains the student directly, D = C / (3 F(N_S))."""

    student_params: float
    tokens: float
    loss: float
    budget: float
    interval: Prediction | None = field(default=None, repr=False)
    # With a limited corpus: the same plan with fresh data (`loss` and `interval` then carry the
    # penalty of repeating it, `planning.repetition`); None when every token is new.
    fresh: "SupervisedPlan | None" = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"student_params": self.student_params, "tokens": self.tokens, "loss": self.loss,
                "budget": self.budget, **_interval_record(self.interval),
                **({} if self.fresh is None else {"loss_fresh_data": self.fresh.loss})}


@dataclass(frozen=True)
class TeacherFamily:
    """The teachers (N_T, D_T) inside the bounds whose supervised loss is `teacher_loss`.

    `params` and `tokens` trace the curve; the compute-optimal member is the one that is cheapest
    to pre-train (least 3 F(N_T) D_T).
    """

    teacher_loss: float
    params: np.ndarray
    tokens: np.ndarray
    compute_optimal_params: float
    compute_optimal_tokens: float

    def to_dict(self) -> dict:
        return {"teacher_loss": self.teacher_loss,
                "compute_optimal": {"params": self.compute_optimal_params,
                                    "tokens": self.compute_optimal_tokens},
                "params": self.params.tolist(), "tokens": self.tokens.tolist()}


ONE_TEACHER_NOTE = ("the distillation law was fitted for one teacher (each student of its runs distilled "
                    "from a single teacher)")


@dataclass(frozen=True)
class TeacherMixture:
    """A plan's mixture of teachers (`distill --teacher A --teacher B`): every teacher's size and
    forward FLOPs per student token (each runs on every token, so the teacher's logits cost their
    sum), and the mixture's measured cross-entropy applied as L_T: outside the law's fit."""

    teacher_params: tuple[float, ...]
    flops_per_token: tuple[float, ...]

    def to_dict(self, student_tokens: float) -> dict:
        return {"teachers": [{"teacher_params": params, "flops_per_token": flops,
                              "teacher_inference_flops": flops * student_tokens}
                             for params, flops in zip(self.teacher_params, self.flops_per_token)],
                "note": f"{ONE_TEACHER_NOTE}: applied to the mixture with its measured cross-entropy as L_T, "
                        f"outside the law's fit", "outside_fit": True}


@dataclass(frozen=True)
class DistillationPlan:
    """A solved allocation of one budget to a student, its teacher and the distillation tokens."""

    scenario: Scenario
    budget: float
    student_params: float
    student_tokens: float
    teacher_params: float | None   # None when an existing teacher was given by its loss only
    teacher_tokens: float | None
    teacher_loss: float
    student_loss: float
    flops: FlopBreakdown
    supervised: SupervisedPlan
    convergence: Convergence
    teacher_family: TeacherFamily | None = field(default=None, repr=False)
    student_interval: Prediction | None = field(default=None, repr=False)
    start: StartMultiplier | None = None  # a pruned start: D_eff = start.value x D_S, outside the law's fit
    mixture: TeacherMixture | None = None  # several teachers, L_T their mixture's measured loss: outside the fit
    # With a limited corpus: the same plan with fresh data; the student's and the baseline's losses,
    # intervals and the verdict above then carry the penalties of repeating it (`planning.repetition`).
    fresh: "DistillationPlan | None" = field(default=None, repr=False, compare=False)
    # A teacher the scenario pre-trains: its loss's interval under the supervised law at (N_T, D_T),
    # carried into `student_interval` (`solver.DistillationPlanner.with_interval`); None otherwise.
    teacher_interval: Prediction | None = field(default=None, repr=False)
    # On a pool: Delta against the same student trained alone on it, by the data-limited law
    # (`planning.repetition.repeated_distillation`); what `difference` gives then.
    pool_difference: LossDifference | None = field(default=None, repr=False, compare=False)

    @property
    def distilled_minus_alone(self) -> float:
        """Delta: the distilled minus the supervised loss (nats/token), negative when distillation wins."""
        return self.student_loss - self.supervised.loss

    @property
    def outside_fit(self) -> bool:
        """A start or teachers the distillation law does not model (pruned, a teacher mixture)."""
        return self.start is not None or self.mixture is not None

    @property
    def difference(self) -> LossDifference:
        """`distilled_minus_alone` with its interval: what the verdict reads (on a pool, the data-limited
        law's, `pool_difference`)."""
        if self.pool_difference is not None:
            return self.pool_difference
        return verdict_difference(self.student_loss, self.student_interval, self.supervised.loss,
                                  self.supervised.interval, self.outside_fit)

    @property
    def verdict(self) -> str:
        """distill, pretrain, too close to call or cannot tell: `difference`'s verdict."""
        return self.difference.verdict

    @property
    def verdict_uncertainty(self) -> float | None:
        return self.difference.uncertainty

    def to_dict(self) -> dict:
        record = {
            "scenario": self.scenario.name,
            "budget": self.budget,
            "student_params": self.student_params,
            "student_loss": self.student_loss,
            "student_tokens": self.student_tokens,
            "teacher_params": self.teacher_params,
            "teacher_tokens": self.teacher_tokens,
            "teacher_loss": self.teacher_loss,
            "supervised_loss": self.supervised.loss,
            "supervised_tokens": self.supervised.tokens,
            "verdict": self.verdict,
            **self.difference.to_dict(),
            "student_loss_interval": _interval_record(self.student_interval),
            "teacher_loss_interval": _interval_record(self.teacher_interval),
            "supervised_loss_interval": _interval_record(self.supervised.interval),
            "flops": self.flops.to_dict(),
            "convergence": self.convergence.to_dict(),
        }
        if self.teacher_family is not None:
            record["teacher_family"] = self.teacher_family.to_dict()
        if self.start is not None:
            record["student_init"] = {**self.start.to_dict(),
                                      "effective_student_tokens": self.start.value * self.student_tokens}
        if self.mixture is not None:
            record["teacher_mixture"] = self.mixture.to_dict(self.student_tokens)
        if self.fresh is not None:
            record.update(_fresh_record(self.fresh.verdict, self.verdict), student_loss_fresh_data=self.fresh.student_loss,
                          supervised_loss_fresh_data=self.fresh.supervised.loss)
        return record


def _fresh_record(fresh: str, verdict: str) -> dict:
    """The fresh-data verdict beside a verdict after repetition, when the two differ."""
    return {} if fresh == verdict else {"verdict_fresh_data": fresh}


@dataclass(frozen=True)
class StudentRegion:
    """The student sizes a sweep searches at one budget, and the limit that sets each end.

    A limit is one of min_params, max_params (the size range asked for), min_tokens_per_param,
    max_tokens_per_param (D/N with the whole budget on the student) or token_bounds (the
    planner's bounds on D). `tokens_per_param` also bounds each plan's D_S / N_S from below.
    """

    smallest: float
    largest: float
    smallest_limit: str
    largest_limit: str
    tokens_per_param: tuple[float, float] | None

    def edges(self, params: float, tokens: float) -> list[str]:
        """The limits a student of `params` trained on `tokens` sits on (empty: inside)."""
        def near(value: float, limit: float) -> bool:  # an open end (0 or inf) is no edge
            return 0 < limit < np.inf and abs(np.log(value / limit)) < EDGE_TOLERANCE

        edges = [limit for size, limit in ((self.smallest, self.smallest_limit),
                                           (self.largest, self.largest_limit)) if near(params, size)]
        if self.tokens_per_param is not None:
            for bound, limit in zip(self.tokens_per_param,
                                    ("min_tokens_per_param", "max_tokens_per_param")):
                if near(tokens / params, bound) and limit not in edges:
                    edges.append(limit)
        return edges

    def to_dict(self) -> dict:
        return {"params": [self.smallest, self.largest],
                "limits": [self.smallest_limit, self.largest_limit],
                "tokens_per_param": None if self.tokens_per_param is None
                else list(self.tokens_per_param)}


@dataclass(frozen=True)
class StudentSweep:
    """Plans for a range of student sizes at one budget, and the best of them."""

    scenario: Scenario
    budget: float
    plans: list[DistillationPlan]
    best: DistillationPlan
    supervised_best: SupervisedPlan  # the compute-optimal model trained without a teacher
    region: StudentRegion
    # With a limited corpus: the sweep with fresh data (`best` and `supervised_best` then carry the
    # penalties of repeating it; `plans` are listed with fresh data).
    fresh: "StudentSweep | None" = field(default=None, repr=False, compare=False)

    @property
    def difference(self) -> LossDifference:
        """The best student's distilled loss - the best student trained alone, with its interval."""
        return verdict_difference(self.best.student_loss, self.best.student_interval, self.supervised_best.loss,
                                  self.supervised_best.interval, self.best.outside_fit)

    @property
    def verdict(self) -> str:
        return self.difference.verdict

    @property
    def edges(self) -> list[str]:
        """The search limits the best student sits on: the law would go further, outside them."""
        return self.region.edges(self.best.student_params, self.best.student_tokens)

    @property
    def supervised_edges(self) -> list[str]:
        return self.region.edges(self.supervised_best.student_params, self.supervised_best.tokens)

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.name, "budget": self.budget,
                "best": self.best.to_dict(), "supervised_best": self.supervised_best.to_dict(),
                "verdict": self.verdict,
                **({} if self.fresh is None else _fresh_record(self.fresh.verdict, self.verdict)),
                **self.difference.to_dict(),
                "searched": self.region.to_dict(),
                "best_on_edge": bool(self.edges), "edges": self.edges,
                "supervised_best_on_edge": bool(self.supervised_edges),
                "supervised_edges": self.supervised_edges,
                "students": [{"student_params": p.student_params, "student_loss": p.student_loss,
                              "supervised_loss": p.supervised.loss} for p in self.plans]}


@dataclass(frozen=True)
class ModePlan:
    """One way to spend the budget on a given student and teacher: supervised training, off-policy
    distillation (corpus tokens), or on-policy distillation with a share `fraction` (GKD's lambda)
    of the student's training tokens sampled by the student itself (`planning.modes`).

    student_tokens : D_S, the tokens the student trains on (for on-policy, the sampled
        continuations count, not their prompts).
    effective_tokens : what the distillation law is evaluated at: D_S (1 - lambda + lambda k), an
        on-policy token counted as k = `efficiency` off-policy tokens (an assumption: the law's fit
        is for off-policy runs).
    interval : the loss's interval as shown: for on-policy, the law's widened by the literature's
        typical extrapolation error (the law is applied outside its fit), never zero-width.
    law_interval : the law's own interval (None when the law has none): what the verdict compares,
        conditional on the efficiency assumed; `break_even_efficiency` says how much that matters.
    break_even_efficiency : on-policy only: the k at which it ties `break_even_against` (the best
        of supervised and off-policy); inf when no k reaches it.
    limited_by : "budget", or "teacher_compute" when a remote teacher's own budget runs out first.
    repetition_penalty : with a limited corpus (unique tokens given), the relative loss increase of
        repeating the corpus tokens this mode reads (`corpus_tokens`), under the supervised law's
        decay (`laws.repetition`); already in `student_loss` and its intervals (0: fresh data).
    repetition : that check itself (`planning.repetition.assess_model`), which the plan shows.
    """

    mode: str                       # supervised, off-policy or on-policy
    fraction: float                 # lambda: the share of D_S the student sampled (0 unless on-policy)
    student_tokens: float
    effective_tokens: float
    student_loss: float
    flops: FlopBreakdown
    interval: Prediction | None = field(default=None, repr=False)
    law_interval: Prediction | None = field(default=None, repr=False)
    efficiency: float = 1.0
    break_even_efficiency: float | None = None
    break_even_against: str | None = None
    limited_by: str = "budget"
    repetition_penalty: float = 0.0
    corpus_tokens: float | None = None   # the corpus tokens the mode reads (None: not counted)
    repetition: RepetitionAssessment | None = field(default=None, repr=False, compare=False)
    # On a pool: Delta against training alone by the data-limited law (off-policy), and whether the mode's
    # student lies outside where its constants were measured (a Delta across 0 then cannot tell)
    pool_difference: LossDifference | None = field(default=None, repr=False, compare=False)
    beyond_measured: bool = False

    MODES = ("supervised", "off-policy", "on-policy")

    @property
    def fresh_data_loss(self) -> float:
        """The student's loss had every corpus token been new (`student_loss` without the penalty)."""
        return self.student_loss / (1.0 + self.repetition_penalty)

    @property
    def name(self) -> str:
        return f"on-policy λ={self.fraction:g}" if self.mode == "on-policy" else self.mode

    @property
    def generated_tokens(self) -> float:
        """The tokens the student sampled itself."""
        return self.fraction * self.student_tokens

    @property
    def outside_fit(self) -> bool:
        """The law is applied beyond the kind of runs it was fitted on (on-policy)."""
        return self.mode == "on-policy"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "name": self.name, "on_policy_fraction": self.fraction,
                "student_tokens": self.student_tokens, "generated_tokens": self.generated_tokens,
                "effective_tokens": self.effective_tokens, "on_policy_efficiency": self.efficiency,
                "student_loss": self.student_loss, "student_loss_interval": _interval_record(self.interval),
                "outside_law_fit": self.outside_fit,
                # null when not on-policy, or when no efficiency reaches the alternative
                "break_even_efficiency": (self.break_even_efficiency if self.break_even_efficiency is not None
                                          and np.isfinite(self.break_even_efficiency) else None),
                "break_even_against": self.break_even_against, "limited_by": self.limited_by,
                "corpus_tokens": self.corpus_tokens, "repetition_penalty": self.repetition_penalty,
                "fresh_data_loss": self.fresh_data_loss, "flops": self.flops.to_dict()}
