"""Teacher choice and the capacity gap.

A stronger teacher is not always a better one: the distillation law is U-shaped in the teacher's
loss (Busbridge et al. 2025, Fig. 3), and Zhang et al. observe that the best teacher size grows
linearly with the student size (the law of capacity gap). This module ranks candidate teachers for
a student, and fits N_T* = k N_S either to runs or to the law's compute-optimal teachers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

from distillscale.checks import checked
from distillscale.errors import ParameterError, UserError
from distillscale.laws.difference import SAME_LAW, TOO_CLOSE, LossDifference, compare, decide, used_interval
from distillscale.laws.extrapolation import CANNOT_TELL
from distillscale.laws.repetition import pooled_loss
from distillscale.laws.uncertainty import Prediction
from distillscale.planning.solver import DistillationPlanner
from distillscale.units import Quantity, parse_quantity


@dataclass(frozen=True)
class TeacherCandidate:
    """A teacher given by its loss, or by its size and pre-training tokens (loss then predicted)."""

    name: str
    loss: float
    params: float | None = None
    tokens: float | None = None
    flops_per_token: float | None = None   # its forward FLOPs per token: what its logits cost in a budget
    unique_tokens: float | None = None     # the pool its tokens were drawn from (its loss then after repeating)

    @property
    def epochs(self) -> float | None:
        """How many times it read its pool (None: fresh data, or a measured loss)."""
        return None if self.unique_tokens is None or self.tokens is None else self.tokens / self.unique_tokens

    @classmethod
    @checked
    def from_size(cls, name: str, params: float, tokens: float, planner: DistillationPlanner,
                  unique_tokens: float | None = None) -> "TeacherCandidate":
        """A teacher of `params` parameters trained on `tokens` tokens, its loss from the law; with
        `unique_tokens`, drawn from that pool: the loss `predict supervised --unique-tokens` gives."""
        law = planner.supervised_law
        loss = float(law.predict(params, tokens)) if unique_tokens is None else pooled_loss(law, params, tokens,
                                                                                            unique_tokens)
        return cls(name, loss, params, tokens, float(planner.flops(params)), unique_tokens)


@dataclass(frozen=True)
class TeacherRanking:
    """Predicted student loss for each candidate teacher, against the law's optimal teacher."""

    student_params: float
    student_tokens: float
    supervised_loss: float          # Ltilde_S: the student trained on the same tokens alone
    candidates: list[TeacherCandidate]
    student_losses: np.ndarray      # L_S for each candidate, nats/token
    optimal_teacher_loss: float     # L_T*, the bottom of the U-curve
    optimal_student_loss: float
    capacity_gap_teacher_loss: float  # the L_T where L_T / Ltilde_S = d1
    d1: float
    intervals: Prediction | None = None  # of each candidate's L_S, when the law has intervals
    # The U-curve: L_S over every teacher loss the planner's bounds reach, for plotting.
    curve_teacher_losses: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    curve_student_losses: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    law: str = ""                         # the law's name
    warnings: list[str] = field(default_factory=list)  # quantities far outside the law's data
    # At a compute budget (`rank_teachers(..., compute=C)`): the budget, the student tokens each
    # candidate affords once its logits are paid, and the student's loss alone on those tokens
    # (Ltilde_S each); `student_tokens`, the optimum and the curve are then the best candidate's.
    compute: float | None = None
    tokens_each: np.ndarray | None = field(default=None, repr=False)
    alone_each: np.ndarray | None = field(default=None, repr=False)
    # The student trained alone (on the same tokens, or the whole budget) with its interval: each
    # candidate's `differences` are against it.
    supervised_interval: Prediction | None = field(default=None, repr=False)
    # At a budget: L_T* at each candidate's own student tokens (what "past the capacity gap" compares
    # each with; `optimal_teacher_loss` is the best candidate's).
    optimal_each: np.ndarray | None = field(default=None, repr=False)
    # Why each candidate's student loss has an interval that means nothing there (None: it means
    # something; `laws.extrapolation.meaningless`): its verdicts then cannot tell.
    outside_each: tuple[str | None, ...] = ()
    # With a pool (a teacher's, the student's, or both): the data-limited law's state of each candidate's
    # student and of the student trained alone (`laws.data_limited`): its losses, intervals and Deltas.
    pool_states: tuple = field(default=(), repr=False)
    pool_alone: object = field(default=None, repr=False)
    student_unique_tokens: float | None = None

    @property
    def best(self) -> int:
        return int(np.argmin(self.student_losses))

    def against_best(self) -> list[LossDifference | None]:
        """Each candidate's student loss minus the best's, two predictions of one law
        (`laws.difference.SAME_LAW`: their intervals combined as shown), read by the rule of every
        verdict (`compare`); None for the best itself, and for all without intervals."""
        if self.intervals is None:
            return [None] * len(self.candidates)
        best = self.best
        if self.pool_states:   # two students of one law on a pool: the data-limited law's Delta, as two of one law
            from distillscale.laws.data_limited import difference

            return [None if i == best else difference(self.pool_states[i], self.pool_states[best], SAME_LAW)
                    for i in range(len(self.candidates))]
        return [None if i == best else compare(self._one(i), self._one(best), SAME_LAW)
                for i in range(len(self.candidates))]

    def _unranked(self, verdict: str) -> list[int]:
        """The candidates whose difference with the best reads `verdict` (too close to call, or cannot
        tell), their own verdict against training alone the best's: not ranked below it."""
        against, best = self.differences(), self.best
        return [i for i, d in enumerate(self.against_best())
                if d is not None and d.verdict == verdict and against[i].verdict == against[best].verdict]

    @property
    def too_close(self) -> list[int]:
        """The candidates too close to call against the best: the interval of their difference with
        the best (`against_best`) reaches 0 where it means something. Empty without intervals."""
        return self._unranked(TOO_CLOSE)

    @property
    def cannot_tell(self) -> list[int]:
        """The candidates that cannot be told from the best at this distance: their difference with the
        best reaches 0 beyond the backtest's reach, or a loss lies where its interval means nothing
        (far outside the law's data), whatever the intervals. Empty without intervals."""
        return self._unranked(CANNOT_TELL)

    def _one(self, i: int) -> Prediction | None:
        """Candidate i's student loss with its interval (None without intervals)."""
        if self.intervals is None:
            return None
        low, high = np.atleast_1d(self.intervals.low), np.atleast_1d(self.intervals.high)
        distance = None if self.intervals.distance is None else float(np.atleast_1d(self.intervals.distance)[
            min(i, np.size(self.intervals.distance) - 1)])
        return replace(self.intervals, value=float(self.student_losses[i]), low=float(low[i]), high=float(high[i]),
                       noise=None, extrapolation=None, distance=distance,
                       pairs_scale=_element(self.intervals.pairs_scale, i),
                       outside=self.outside_each[i] if i < len(self.outside_each) else None)

    def differences(self) -> list[LossDifference]:
        """Each candidate's Delta = its distilled student's loss - the student trained alone, with the
        interval the planner's verdicts read (`laws.difference`; on a pool, `laws.data_limited.difference`)."""
        if self.pool_states:
            from distillscale.laws.data_limited import difference

            return [difference(state, self.pool_alone) for state in self.pool_states]
        return [decide(float(loss), self._one(i), self.supervised_loss, self.supervised_interval)
                for i, loss in enumerate(self.student_losses)]

    @property
    def verdict(self) -> str:
        """The best candidate's verdict against training alone: distill (its Delta's interval below 0),
        pretrain (above: training alone is best), too close to call, or cannot tell."""
        return self.differences()[self.best].verdict

    @property
    def alone_is_best(self) -> bool:
        """Whether training alone beats every candidate: each one's verdict against alone is pretrain."""
        return all(difference.verdict == "pretrain" for difference in self.differences())

    @property
    def gap_ratios(self) -> np.ndarray:
        """L_T / Ltilde_S for each candidate (Ltilde_S on its own tokens at a budget)."""
        alone = self.supervised_loss if self.alone_each is None else self.alone_each
        return np.array([c.loss for c in self.candidates]) / alone

    @property
    def past_gap(self) -> list[int]:
        """The candidates stronger than the optimal teacher L_T* at their own student tokens (at a
        budget, each candidate's: `optimal_each`): past the capacity gap, where a stronger teacher
        makes the student worse."""
        optimal = (np.full(len(self.candidates), self.optimal_teacher_loss) if self.optimal_each is None
                   else self.optimal_each)
        return [i for i, c in enumerate(self.candidates) if c.loss < optimal[i]]

    def to_dict(self) -> dict:
        close, past, differences = self.too_close, self.past_gap, self.differences()   # each computed once
        unknown = self.cannot_tell
        return {
            "student_params": self.student_params, "student_tokens": self.student_tokens,
            "supervised_loss": self.supervised_loss,
            "supervised_loss_interval": (None if self.supervised_interval is None or not self.supervised_interval.has_interval
                                         else [float(self.supervised_interval.low), float(self.supervised_interval.high)]),
            "optimal_teacher_loss": self.optimal_teacher_loss,
            "optimal_student_loss": self.optimal_student_loss,
            "capacity_gap_teacher_loss": self.capacity_gap_teacher_loss, "d1": self.d1,
            "best": self.candidates[self.best].name, "compute": self.compute,
            "student_unique_tokens": self.student_unique_tokens,
            "verdict": differences[self.best].verdict,
            "alone_is_best": all(difference.verdict == "pretrain" for difference in differences),
            "too_close_to_call": [self.candidates[i].name for i in close],
            "cannot_tell_from_best": [self.candidates[i].name for i in unknown],
            "candidates": [{"name": c.name, "teacher_params": c.params, "teacher_tokens": c.tokens,
                            "teacher_loss": c.loss, "student_loss": float(loss),
                            "gap_ratio": float(ratio), "too_close_to_best": i in close,
                            "cannot_tell_from_best": i in unknown,
                            "past_capacity_gap": i in past,
                            "verdict_against_alone": differences[i].verdict, **differences[i].to_dict(),
                            **({} if self.optimal_each is None else
                               {"optimal_teacher_loss_at_its_tokens": float(self.optimal_each[i])}),
                            "teacher_flops_per_token": c.flops_per_token,
                            **({} if c.unique_tokens is None else
                               {"teacher_unique_tokens": c.unique_tokens, "teacher_epochs": c.epochs}),
                            "student_tokens": float(self.student_tokens if self.tokens_each is None
                                                    else self.tokens_each[i]),
                            **({"interval": [float(self.intervals.low[i]), float(self.intervals.high[i])],
                                "level": self.intervals.level} if self.intervals is not None else {})}
                           for i, (c, loss, ratio) in enumerate(zip(self.candidates, self.student_losses,
                                                                    self.gap_ratios))],
            "warnings": list(self.warnings),
        }


# What each column of a candidates file counts (its limits); a loss counts none of them.
COLUMN_KINDS = {"teacher_loss": None, "teacher_params": Quantity.PARAMS, "teacher_tokens": Quantity.TOKENS}


def read_candidates(path, planner: DistillationPlanner, unique_tokens: float | None = None) -> list[TeacherCandidate]:
    """Candidate teachers from a CSV/JSONL file: each row has `teacher_loss`, or `teacher_params`
    with `teacher_tokens` (the loss is then predicted, on the pool `unique_tokens` when given); `name`
    is optional."""
    from distillscale.tables import read_table

    table = read_table(path)
    if "teacher_loss" not in table.columns and not {"teacher_params", "teacher_tokens"} <= set(
            table.columns):
        raise UserError(f"{path} needs a teacher_loss column, or teacher_params and teacher_tokens "
                        f"columns; columns found: {', '.join(table.columns)}")
    candidates = []
    for row, line in zip(table.rows, table.lines):
        def cell(column: str) -> float | None:
            value = row.get(column)
            if value is None or value == "":
                return None
            return parse_quantity(value, f"{column} at line {line} of {path}", kind=COLUMN_KINDS[column])

        name = str(row.get("name") or f"line {line}")
        loss, params, tokens = cell("teacher_loss"), cell("teacher_params"), cell("teacher_tokens")
        if loss is not None:
            candidates.append(TeacherCandidate(name, loss, params, tokens,
                                               None if params is None else float(planner.flops(params))))
        elif params is not None and tokens is not None:
            candidates.append(TeacherCandidate.from_size(name, params, tokens, planner, unique_tokens))
        else:
            raise UserError(f"line {line} of {path} has no teacher_loss and not both "
                            "teacher_params and teacher_tokens: fill one in")
    return candidates


def teacher_ladder(planner: DistillationPlanner, student_params: float,
                   multiples: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128),
                   tokens_per_param: float = 20.0, unique_tokens: float | None = None) -> list[TeacherCandidate]:
    """Teachers 1x..128x the student's size, each trained on `tokens_per_param` tokens per
    parameter (Busbridge's fixed-M teachers, Chinchilla's 20 by default), drawn from a pool of
    `unique_tokens` when given."""
    return [TeacherCandidate.from_size(f"{m:g}x N_S", m * student_params,
                                       tokens_per_param * m * student_params, planner, unique_tokens)
            for m in multiples]


def rank_teachers(planner: DistillationPlanner, student_params: float, student_tokens: float | None,
                  candidates: list[TeacherCandidate], compute: float | None = None,
                  student_unique_tokens: float | None = None) -> TeacherRanking:
    """Predict the distilled student's loss for every candidate and locate the optimal teacher: at
    `student_tokens` for every candidate, or at a `compute` budget that pays each teacher's logits at
    its own FLOPs per token, D_S = C / (3 F(N_S) + F_T) (a larger teacher buys fewer student tokens),
    against the student trained alone on the whole budget. With a pool (a candidate trained on one, or
    the student's own `student_unique_tokens`), each student is the data-limited law's (`pool_ranking`)."""
    if not candidates:
        raise UserError("no candidate teachers: give at least one row with a loss, "
                        "or with params and tokens")
    law = planner.distillation
    teacher_losses = np.array([c.loss for c in candidates])
    tokens_each = alone_each = None
    if compute is not None:
        unpriced = [c.name for c in candidates if c.flops_per_token is None]
        if unpriced:
            raise UserError(f"at a compute budget each teacher's logits are paid at its FLOPs per token: give "
                            f"teacher_params for {', '.join(unpriced)} (or rank at --student-tokens)")
        student_flops = float(planner.flops(student_params))
        tokens_each = compute / (3 * student_flops + np.array([c.flops_per_token for c in candidates]))
        alone_each = np.asarray(planner.supervised_law.predict(student_params, tokens_each), dtype=np.float64)
        prediction = law.prediction(student_params, tokens_each, teacher_losses)
    else:
        prediction = law.prediction(student_params, student_tokens, teacher_losses)
    prediction = used_interval(prediction, "distilled")   # each loss shown as its verdict's Δ uses it
    losses = np.asarray(prediction.value, dtype=np.float64).reshape(-1)
    alone_tokens = student_tokens          # the student without a teacher: on the same tokens, or the whole budget
    if tokens_each is not None:
        student_tokens, alone_tokens = float(tokens_each[int(np.argmin(losses))]), compute / (3 * student_flops)
    optimal_loss, _ = planner.optimal_teacher_loss(student_params, student_tokens)
    alone = used_interval(planner.marked(planner.supervised_law.prediction(student_params, alone_tokens),
                                         student_params, alone_tokens), "alone")
    supervised = float(alone.value)
    each = np.broadcast_to(np.asarray(student_tokens if tokens_each is None else tokens_each, float), losses.shape)
    outside = tuple(planner.marked(Prediction(float(loss), None, None, None, None, None, None), student_params,
                                   float(tokens), students=True).outside for loss, tokens in zip(losses, each))
    optimal_each = None if tokens_each is None else np.array(   # each candidate's own L_T*
        [planner.optimal_teacher_loss(student_params, float(tokens))[0] for tokens in tokens_each])
    ltilde = float(planner.supervised_law.predict(student_params, student_tokens))   # Ltilde_S at the student's tokens
    curve = teacher_loss_range(planner)
    pooled = student_unique_tokens is not None or any(c.unique_tokens is not None for c in candidates)
    pool = {}
    if pooled and planner.laws.distillation is not None:   # every loss the data-limited law's
        states, alone_state = pool_ranking(planner, student_params, each, alone_tokens, candidates,
                                           student_unique_tokens)
        losses = np.array([s.value for s in states])
        prediction = replace(prediction, value=losses, low=np.array([float(s.loss.low) for s in states]),
                             high=np.array([float(s.loss.high) for s in states])) if prediction.has_interval else \
            replace(prediction, value=losses)
        alone, supervised = alone_state.loss, alone_state.value
        if tokens_each is not None:
            student_tokens = float(tokens_each[int(np.argmin(losses))])
            alone_each = np.array([supervised] * len(candidates))
        pool = {"pool_states": tuple(states), "pool_alone": alone_state, "student_unique_tokens": student_unique_tokens}
    return TeacherRanking(
        student_params, student_tokens, supervised, list(candidates), losses,
        optimal_loss, float(law.predict(student_params, student_tokens, optimal_loss)),
        law.d1 * ltilde, law.d1, prediction if prediction.has_interval else None,
        curve_teacher_losses=curve,
        curve_student_losses=np.asarray(law.predict(student_params, student_tokens, curve), dtype=np.float64),
        compute=compute, tokens_each=tokens_each, alone_each=alone_each, optimal_each=optimal_each,
        supervised_interval=alone if alone.has_interval else None, outside_each=outside, **pool)


def pool_ranking(planner: DistillationPlanner, student_params: float, tokens: np.ndarray, alone_tokens: float,
                 candidates: list[TeacherCandidate], student_unique_tokens: float | None):
    """Each candidate's student and the student trained alone as the data-limited law's states
    (`laws.data_limited`): a candidate trained on a pool (its size, tokens and pool) is a model trained
    alone there; one given by its loss is measured, its pool unknown (fresh); the student reads
    `student_unique_tokens` (None: fresh data) for `tokens` (each candidate's)."""
    from distillscale.laws.data_limited import DataLimitedLaw

    law = DataLimitedLaw(planner.laws)
    states = []
    for c, D in zip(candidates, np.broadcast_to(tokens, (len(candidates),))):
        if c.unique_tokens is not None and c.params is not None and c.tokens is not None:
            teacher = law.alone(c.params, c.tokens, c.unique_tokens)
        else:
            teacher = law.measured_teacher(c.loss)
        states.append(law.student(student_params, float(D), student_unique_tokens, teacher))
    return states, law.alone(student_params, alone_tokens, student_unique_tokens)


def teacher_loss_range(planner: DistillationPlanner, points: int = 600) -> np.ndarray:
    """Teacher losses from the strongest to the weakest teacher inside the planner's bounds,
    log-spaced in L_T - E, where the capacity-gap switch is spread out."""
    law = planner.supervised_law
    low, high = planner.bounds
    return law.E + np.geomspace(law.predict(high, high) - law.E, law.predict(low, low) - law.E, points)


class LinearCapacityGap:
    """The law of capacity gap, N_T* = k N_S, fitted by least squares in log space.

    With the slope fixed at one, log k is the mean of log(N_T* / N_S); its interval is a Student-t
    interval on that mean. `exponent_` is the free log-log slope (with its standard error), a check
    on the linearity the law assumes.

    Attributes after `fit`: student_params_, teacher_params_ (the best teacher per student size),
    ratio_ (k), ratio_interval_ (None where the ratios do not scatter: not identified), exponent_,
    exponent_stderr_ (None where not identified), confidence.
    """

    def __init__(self, confidence: float = 0.9) -> None:
        self.confidence = confidence

    def fit(self, student_params, teacher_params, student_loss) -> "LinearCapacityGap":
        """Runs as three aligned arrays; for each student size the teacher with the lowest student
        loss is the best observed teacher."""
        student_params = np.asarray(student_params, dtype=np.float64)
        teacher_params = np.asarray(teacher_params, dtype=np.float64)
        student_loss = np.asarray(student_loss, dtype=np.float64)
        sizes = np.unique(student_params)
        best = np.array([teacher_params[student_params == size][
            np.argmin(student_loss[student_params == size])] for size in sizes])
        return self._fit_best_teachers(sizes, best)

    @classmethod
    def from_law(cls, planner: DistillationPlanner, student_params,
                 tokens_per_param: float = 20.0, confidence: float = 0.9) -> "LinearCapacityGap":
        """The relation the distillation law predicts: for each student (trained on
        `tokens_per_param` tokens per parameter) the optimal teacher loss L_T*, reached at least
        pre-training cost by the compute-optimal teacher of size N_T*."""
        student_params = np.asarray(student_params, dtype=np.float64).reshape(-1)
        if len(np.unique(student_params)) < len(student_params):
            raise ParameterError("student_params", "{} lists a size more than once ({sizes}): give distinct "
                                 "student sizes", sizes=", ".join(f"{size:.3g}" for size in student_params))
        teachers = []
        for size in student_params:
            teacher_loss, _ = planner.optimal_teacher_loss(size, tokens_per_param * size)
            teachers.append(planner.teacher_family(teacher_loss).compute_optimal_params)
        return cls(confidence)._fit_best_teachers(student_params, np.array(teachers))

    def predict(self, student_params) -> np.ndarray | float:
        """The optimal teacher size for each student size."""
        out = self.ratio_ * np.asarray(student_params, dtype=np.float64)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return {"ratio": self.ratio_,
                "ratio_interval": None if self.ratio_interval_ is None else list(self.ratio_interval_),
                "confidence": self.confidence, "exponent": self.exponent_,
                "exponent_stderr": self.exponent_stderr_,
                "best_teachers": [{"student_params": s, "teacher_params": t} for s, t in
                                  zip(self.student_params_.tolist(), self.teacher_params_.tolist())]}

    def _fit_best_teachers(self, student_params: np.ndarray,
                           teacher_params: np.ndarray) -> "LinearCapacityGap":
        if len(np.unique(student_params)) < 2:
            raise UserError("the capacity-gap fit needs runs for at least two student sizes")
        log_ratio = np.log(teacher_params / student_params)
        n = len(log_ratio)
        self.student_params_, self.teacher_params_ = student_params, teacher_params
        self.ratio_ = float(np.exp(log_ratio.mean()))
        # The interval's width comes from the scatter of the ratios about their mean: when every
        # size gives the same ratio (two runs at a grid's same multiple, say), the data say nothing
        # about that scatter and there is no interval (None: "not identified"), not a zero-width one.
        stderr = np.std(log_ratio, ddof=1) / np.sqrt(n)
        self.ratio_interval_ = None
        if stderr > 1e-9 * max(1.0, abs(log_ratio.mean())):
            half_width = stats.t.ppf(0.5 + self.confidence / 2, df=n - 1) * stderr
            self.ratio_interval_ = (float(np.exp(log_ratio.mean() - half_width)),
                                    float(np.exp(log_ratio.mean() + half_width)))
        self.exponent_ = self.exponent_stderr_ = None  # a free slope needs three sizes
        if n >= 3:
            slope = stats.linregress(np.log(student_params), np.log(teacher_params))
            self.exponent_ = float(slope.slope)
            # Three sizes on an exact line leave no residual: the slope's error is not identified.
            self.exponent_stderr_ = float(slope.stderr) if slope.stderr > 1e-9 else None
        return self


# MiniMA's law of capacity gap (Zhang et al. 2023): the optimal teacher is about 2.5x the student.
MINIMA_RATIO = 2.5


@dataclass(frozen=True)
class OptimalTeacher:
    """One student size's optimal teacher size N_T*, from the student losses its teachers gave.

    method: "parabola" (the vertex of the parabola in log N_T through the best teacher and its two
    neighbours; it lies between them) or "edge" (the best teacher is the smallest or the largest
    tried: the optimum is at or beyond it, and N_T* is that teacher, a bound)."""

    student_params: float
    teacher_params: float                 # N_T*
    interval: tuple[float, float]          # of N_T*, at the law's level (bootstrap, never zero-width)
    method: str
    best_observed_params: float            # the teacher of the lowest mean student loss
    best_observed_loss: float
    teachers: int                          # distinct teacher sizes tried
    runs: int

    def to_dict(self) -> dict:
        return {"student_params": self.student_params, "teacher_params": self.teacher_params,
                "ratio": self.teacher_params / self.student_params, "interval": list(self.interval),
                "method": self.method, "best_observed_params": self.best_observed_params,
                "best_observed_loss": self.best_observed_loss, "teachers": self.teachers, "runs": self.runs}


@dataclass(frozen=True)
class CapacityGapLaw:
    """N_T* = k N_S over student sizes (slope one in log space: log k is the mean of log(N_T* / N_S)),
    with a bootstrap interval for k (`fit_capacity_gap`)."""

    ratio: float                           # k
    interval: tuple[float, float]
    level: float
    bootstrap: int
    optima: tuple[OptimalTeacher, ...]     # one per student size, smallest first
    resolution_floor: bool                 # the interval was widened to the teacher grid's resolution

    @property
    def bounded(self) -> bool:
        """Some size's optimum is at the edge of its teachers: k is then partly a bound."""
        return any(optimum.method == "edge" for optimum in self.optima)

    def contains(self, ratio: float) -> bool:
        return self.interval[0] <= ratio <= self.interval[1]

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "interval": list(self.interval), "level": self.level,
                "bootstrap_resamples": self.bootstrap, "resolution_floor": self.resolution_floor,
                "bounded": self.bounded, "optima": [optimum.to_dict() for optimum in self.optima]}


def optimal_teacher_size(teacher_params, student_loss) -> tuple[float, str]:
    """N_T* and the method (see `OptimalTeacher`) from the mean student loss of each distinct teacher
    size: the vertex of the parabola in log N_T through the best one and its neighbours, or the best
    one itself at the edge of the sizes."""
    sizes = np.asarray(teacher_params, dtype=np.float64)
    order = np.argsort(sizes)
    sizes, y = sizes[order], np.asarray(student_loss, dtype=np.float64)[order]
    x = np.log(sizes)
    best = int(np.argmin(y))
    if best == 0 or best == len(x) - 1:
        return float(sizes[best]), "edge"
    (x0, x1, x2), (y0, y1, y2) = x[best - 1:best + 2], y[best - 1:best + 2]
    # the parabola's vertex through three points; with y1 lowest it is convex and lies in [x0, x2]
    # (a flat triple, y0 = y1 = y2, has none: the middle point then)
    denominator = (x0 - x1) * (y1 - y2) - (x1 - x2) * (y0 - y1)
    numerator = (x0 ** 2 - x1 ** 2) * (y1 - y2) - (x1 ** 2 - x2 ** 2) * (y0 - y1)
    vertex = x1 if abs(denominator) < 1e-300 else 0.5 * numerator / denominator
    return float(np.exp(np.clip(vertex, x0, x2))), "parabola"


def optimal_teachers(student_params, teacher_params, student_loss, *, level: float = 0.9,
                     bootstrap: int = 1000, seed: int = 0) -> tuple[OptimalTeacher, ...]:
    """Each student size's optimal teacher size with its interval (see `fit_capacity_gap`), smallest
    student first."""
    return _Optima.fit(student_params, teacher_params, student_loss, level, bootstrap, seed).optima


def fit_capacity_gap(student_params, teacher_params, student_loss, *, level: float = 0.9,
                     bootstrap: int = 1000, seed: int = 0) -> CapacityGapLaw:
    """The law of capacity gap as MiniMA measured it: for each student size, the optimal teacher size
    N_T* (`optimal_teacher_size` over the mean student loss per teacher size: several runs of one
    pair, e.g. seeds, are averaged), then N_T* = k N_S.

    The interval: `bootstrap` resamples, each drawing, per student size, its teacher sizes with
    replacement (the optimum moves when the best teacher or a neighbour is left out: the grid's
    uncertainty) and each teacher's runs with replacement (the seeds' noise, where there are
    several), and recomputing every N_T* and k; the `level` percentile interval of k (0 resamples:
    the floor alone). It is never zero-width: noise-free losses on a parabola give every resample
    the same vertex, so each size's N_T* interval is at least +- half the log-spacing of the teachers
    around its optimum (the grid's resolution), and k's at least +- the mean of those
    (`resolution_floor` says when the floor applied)."""
    optima = _Optima.fit(student_params, teacher_params, student_loss, level, bootstrap, seed)
    if len(optima.sizes) < 2:
        raise UserError("the capacity-gap law needs students of at least two sizes")
    log_k = float(np.mean(np.log(optima.values / optima.sizes)))
    floor = float(np.mean(optima.floors))
    low = high = log_k
    if bootstrap:
        low, high = np.quantile(np.log(optima.draws / optima.sizes).mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    widened = bool(low > log_k - floor or high < log_k + floor)
    low, high = min(low, log_k - floor), max(high, log_k + floor)
    return CapacityGapLaw(float(np.exp(log_k)), (float(np.exp(low)), float(np.exp(high))), level, bootstrap,
                          optima.optima, widened)


@dataclass(frozen=True)
class _Optima:
    """The per-size optima of `fit_capacity_gap` and their bootstrap draws."""

    sizes: np.ndarray          # student sizes, ascending
    values: np.ndarray         # N_T* per size
    draws: np.ndarray          # bootstrap x sizes: N_T* of each resample
    floors: np.ndarray         # per size: half the log-spacing of the grid around N_T*
    optima: tuple[OptimalTeacher, ...]

    @classmethod
    def fit(cls, student_params, teacher_params, student_loss, level: float, bootstrap: int, seed: int) -> "_Optima":
        student_params = np.asarray(student_params, dtype=np.float64)
        teacher_params = np.asarray(teacher_params, dtype=np.float64)
        student_loss = np.asarray(student_loss, dtype=np.float64)
        if not len(student_loss) or not len(student_params) == len(teacher_params) == len(student_loss):
            raise ParameterError("student_loss", "{} needs one loss per run, aligned with student_params and "
                                 "teacher_params")
        if not np.all(np.isfinite(student_loss)) or np.any(student_params <= 0) or np.any(teacher_params <= 0):
            raise ParameterError("student_loss", "{} must be finite, and the sizes positive")
        if not 0 < level < 1:
            raise ParameterError("level", "{} must lie between 0 and 1, got {value}", value=level)
        if bootstrap < 0:
            raise ParameterError("bootstrap", "{} must be 0 or more resamples, got {value}", value=bootstrap)
        sizes = np.unique(student_params)
        groups = []  # per size: the distinct teacher sizes (ascending) and the losses of each one's runs
        for size in sizes:
            mine = student_params == size
            teachers = np.unique(teacher_params[mine])
            groups.append((teachers, [student_loss[mine & (teacher_params == t)] for t in teachers]))

        def optimum(teachers, losses) -> tuple[float, str]:
            return optimal_teacher_size(teachers, [np.mean(runs) for runs in losses])

        point = [optimum(*group) for group in groups]
        rng = np.random.default_rng(seed)
        draws = np.empty((bootstrap, len(sizes)))
        for b in range(bootstrap):
            for s, (teachers, losses) in enumerate(groups):
                picked = np.unique(rng.integers(0, len(teachers), size=len(teachers)))
                draws[b, s] = optimum(teachers[picked], [rng.choice(losses[i], size=len(losses[i]))
                                                         for i in picked])[0]
        floors = np.array([_grid_half_step(teachers, value) for (teachers, _), (value, _) in zip(groups, point)])
        optima = []
        for s, ((teachers, losses), (value, method)) in enumerate(zip(groups, point)):
            centre = np.log(value)
            low = high = centre
            if bootstrap:
                low, high = np.quantile(np.log(draws[:, s]), [(1 - level) / 2, (1 + level) / 2])
            low, high = min(low, centre - floors[s]), max(high, centre + floors[s])
            means = [float(np.mean(runs)) for runs in losses]
            best = int(np.argmin(means))
            optima.append(OptimalTeacher(float(sizes[s]), value, (float(np.exp(low)), float(np.exp(high))), method,
                                         float(teachers[best]), means[best], len(teachers),
                                         int(sum(len(runs) for runs in losses))))
        return cls(sizes, np.array([value for value, _ in point]), draws, floors, tuple(optima))


def _grid_half_step(teachers: np.ndarray, value: float) -> float:
    """Half the log-spacing of the teacher sizes beside the one nearest `value` (the mean of its gaps
    to its neighbours): how finely the grid places an optimum."""
    x = np.log(np.sort(teachers))
    if len(x) < 2:
        return float(np.log(2.0)) / 2  # one teacher size: no grid to speak of; a factor of 2 either way
    nearest = int(np.argmin(np.abs(x - np.log(value))))
    gaps = [x[j + 1] - x[j] for j in (nearest - 1, nearest) if 0 <= j < len(x) - 1]
    return float(np.mean(gaps)) / 2


def _element(values, i: int) -> float | None:
    """Element i of a per-candidate array (a scalar holds for all; None stays None)."""
    if values is None:
        return None
    flat = np.atleast_1d(np.asarray(values, float))
    return float(flat[min(i, flat.size - 1)])
