"""Teacher choice and the capacity gap.

A stronger teacher is not always a better one: the distillation law is U-shaped in the teacher's
loss (Busbridge et al. 2025, Fig. 3), and Zhang et al. observe that the best teacher size grows
linearly with the student size (the law of capacity gap). This module ranks candidate teachers for
a student, and fits N_T* = k N_S either to runs or to the law's compute-optimal teachers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from distillscale.errors import ParameterError, UserError
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

    @classmethod
    def from_size(cls, name: str, params: float, tokens: float,
                  planner: DistillationPlanner) -> "TeacherCandidate":
        """A teacher of `params` parameters trained on `tokens` tokens, its loss from the law."""
        return cls(name, float(planner.supervised_law.predict(params, tokens)), params, tokens)


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

    @property
    def best(self) -> int:
        return int(np.argmin(self.student_losses))

    @property
    def gap_ratios(self) -> np.ndarray:
        """L_T / Ltilde_S for each candidate."""
        return np.array([c.loss for c in self.candidates]) / self.supervised_loss

    def to_dict(self) -> dict:
        return {
            "student_params": self.student_params, "student_tokens": self.student_tokens,
            "supervised_loss": self.supervised_loss,
            "optimal_teacher_loss": self.optimal_teacher_loss,
            "optimal_student_loss": self.optimal_student_loss,
            "capacity_gap_teacher_loss": self.capacity_gap_teacher_loss, "d1": self.d1,
            "best": self.candidates[self.best].name,
            "candidates": [{"name": c.name, "teacher_params": c.params, "teacher_tokens": c.tokens,
                            "teacher_loss": c.loss, "student_loss": float(loss),
                            "gap_ratio": float(ratio),
                            **({"interval": [float(self.intervals.low[i]), float(self.intervals.high[i])],
                                "level": self.intervals.level} if self.intervals is not None else {})}
                           for i, (c, loss, ratio) in enumerate(zip(self.candidates, self.student_losses,
                                                                    self.gap_ratios))],
            "warnings": list(self.warnings),
        }


# What each column of a candidates file counts (its limits); a loss counts none of them.
COLUMN_KINDS = {"teacher_loss": None, "teacher_params": Quantity.PARAMS, "teacher_tokens": Quantity.TOKENS}


def read_candidates(path, planner: DistillationPlanner) -> list[TeacherCandidate]:
    """Candidate teachers from a CSV/JSONL file: each row has `teacher_loss`, or `teacher_params`
    with `teacher_tokens` (the loss is then predicted); `name` is optional."""
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
            candidates.append(TeacherCandidate(name, loss, params, tokens))
        elif params is not None and tokens is not None:
            candidates.append(TeacherCandidate.from_size(name, params, tokens, planner))
        else:
            raise UserError(f"line {line} of {path} has no teacher_loss and not both "
                            "teacher_params and teacher_tokens: fill one in")
    return candidates


def teacher_ladder(planner: DistillationPlanner, student_params: float,
                   multiples: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128),
                   tokens_per_param: float = 20.0) -> list[TeacherCandidate]:
    """Teachers 1x..128x the student's size, each trained on `tokens_per_param` tokens per
    parameter (Busbridge's fixed-M teachers, Chinchilla's 20 by default)."""
    return [TeacherCandidate.from_size(f"{m:g}x student", m * student_params,
                                       tokens_per_param * m * student_params, planner)
            for m in multiples]


def rank_teachers(planner: DistillationPlanner, student_params: float, student_tokens: float,
                  candidates: list[TeacherCandidate]) -> TeacherRanking:
    """Predict the distilled student's loss for every candidate and locate the optimal teacher."""
    if not candidates:
        raise UserError("no candidate teachers: give at least one row with a loss, "
                        "or with params and tokens")
    law = planner.distillation
    prediction = law.prediction(student_params, student_tokens, np.array([c.loss for c in candidates]))
    losses = np.asarray(prediction.value, dtype=np.float64)
    optimal_loss, _ = planner.optimal_teacher_loss(student_params, student_tokens)
    supervised = float(planner.supervised_law.predict(student_params, student_tokens))
    curve = teacher_loss_range(planner)
    return TeacherRanking(
        student_params, student_tokens, supervised, list(candidates), losses.reshape(-1),
        optimal_loss, float(law.predict(student_params, student_tokens, optimal_loss)),
        law.d1 * supervised, law.d1, prediction if prediction.has_interval else None,
        curve_teacher_losses=curve,
        curve_student_losses=np.asarray(law.predict(student_params, student_tokens, curve), dtype=np.float64))


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
