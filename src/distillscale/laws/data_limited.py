"""Distillation where unique data is the limit: a pool of U unique tokens read for many epochs.

Each model has a state (L, F): L its loss (nats/token) on its pool, F the loss it would reach with
fresh data at the same size and tokens (F = L on fresh data); L - F is its repetition penalty. The form
(`laws.data_limited_form`, the same arithmetic the fit uses):

- trained alone on (N, D, U): L = the pooled supervised loss (`laws.repetition.pooled_loss`), F = the
  supervised law at (N, D); its penalty P(N, D, U) = L - F;
- a student (N_S, D_S, U_S) of a teacher (L_T, F_T):

      F_S = G(N_S, D_S; F_T),   L_S = F_S + kappa (L_T - F_T) + lam P(N_S, D_S, U_S)

  G the distillation law: the student's loss as if its teacher had seen fresh data, plus the share kappa
  of its teacher's penalty it inherits, plus the share lam of what its own size pays trained alone on the
  pool (one pricing of its own repetition, in the fit and here). On fresh data both penalties are 0 and
  this is the distillation law itself, number for number, interval and all;
- a measured teacher (its loss L_T known) whose pool is given: F_T = L_T - P(N_T, D_T, U_T); its pool
  unknown: F_T = L_T (fresh);
- a chain (self-distillation): generation 0 trained alone, generation g the student of g - 1, same N, D
  and U: the penalty goes P, kappa P + lam P, ... to lam P / (1 - kappa), so the gains fall by kappa a
  generation and the chain settles (`Chain.stops_paying`);
- an ensemble of k models trained alone (seeds, logits mixed): L_k = L_1 (1 - s_k), F_k = F_1 (1 - s_k),
  s_k = eta (1 - k^-gamma): a power of k towards a limit; a student of it is the student of one member
  less theta of the ensemble's gain (L_1 - L_k): it keeps the share theta of that gain, 0 to 1.

The constants (`DataLimitedConstants`, data_limited.json, `bench/laws/data_limited_fit.py`) come with the
bootstrap's joint draws, the fit's residuals and where they were measured. Every loss carries one interval
(`ModelState.loss`), three errors combined: its law's own (the supervised or distillation law's, as its
verdicts use it, R_D*'s interval included), the constants' spread (the loss at every draw) and the fit's
residual. Beyond where the constants were measured (size, epochs, parameters per unique token, ensemble
size: `ModelState.distance`) no measured rule widens them: the constants' part spans every admissible
value (`DataLimitedConstants.admissible`) and a Delta straddling 0 there reads "cannot tell at this
distance" (`difference`, through `laws.difference.decide`, the one verdict rule).

    law = DataLimitedLaw(laws)                      # constants from data_limited.json
    chain = law.chain(N, D, U, generations=4)       # chain.generations[g].loss, chain.stops_paying
    student = law.student(N, D, U, law.ensemble(N, D, U, members=4))
    answer = law.at_fixed_tokens(N, D, U, generations=6, members=8)   # each option against alone
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from distillscale.errors import ParameterError, UserError
from distillscale.laws.data_limited_fit import DataLimitedFit, MeasuredRange, Residuals
from distillscale.laws.data_limited_form import (BOUNDS, SHARE_NAMES, Z90, Shares, loss_interval, quadrature, reach,
                                                 spread)
from distillscale.laws.difference import SAME_LAW, LossDifference, decide, used_interval
from distillscale.laws.extrapolation import marked
from distillscale.laws.lawset import LawSet
from distillscale.laws.repetition import pooled_loss, pooled_prediction
from distillscale.laws.uncertainty import Prediction

CONSTANTS_FILE = Path(__file__).with_name("data_limited.json")
FORMAT = 2
FORM = ("student: L_S = G(F_T) + kappa (L_T - F_T) + lam P_S; ensemble of k: L_k = L_1 (1 - eta (1 - k^-gamma)); "
        "student of an ensemble: the student of one member less theta (L_1 - L_k)")
SHARE_LABELS = {"kappa": "kappa", "lam": "lambda", "eta": "eta", "gamma": "gamma", "theta": "theta"}
# A Delta whose losses lie outside where the constants were measured: its rule, and why it cannot tell.
BEYOND_RULE = "data-limited constants over every admissible value"
BEYOND_REASON = "Δ's interval spans every admissible data-limited constant (measured at micro scale) and reaches across 0"


@dataclass(frozen=True)
class Constant:
    """One constant of the law with its interval (at the record's level)."""

    value: float
    interval: tuple[float, float]

    def __post_init__(self) -> None:
        low, high = self.interval
        if not (low <= self.value <= high):
            raise ParameterError("constant", f"{{}} must lie inside its interval: got {self.value} [{low}, {high}]")

    def to_dict(self) -> dict:
        return {"value": self.value, "interval": list(self.interval)}

    @classmethod
    def from_dict(cls, data: dict) -> "Constant":
        low, high = data["interval"]
        return cls(float(data["value"]), (float(low), float(high)))


@dataclass(frozen=True)
class DataLimitedConstants:
    """The law's constants: each share's value and interval, the bootstrap's joint draws (rows kappa, lam,
    eta, gamma, theta), the fit's residuals, where they were measured, and where they come from."""

    kappa: Constant
    lam: Constant
    eta: Constant
    gamma: Constant
    theta: Constant
    draws: np.ndarray
    residuals: Residuals
    measured: MeasuredRange
    level: float = 0.9
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in SHARE_NAMES:
            low, high = BOUNDS[name]
            c = getattr(self, name)
            if not (low - 1e-12 <= c.interval[0] and c.interval[1] <= high + 1e-12):
                raise ParameterError("constant", f"{{}} {SHARE_LABELS[name]} must lie in [{low}, {high}]: got "
                                                 f"{c.value} [{c.interval[0]}, {c.interval[1]}]")
        draws = np.asarray(self.draws, float)
        if draws.ndim != 2 or draws.shape[1] != len(SHARE_NAMES) or len(draws) == 0:
            raise ParameterError("draws", "{} must be rows of (kappa, lam, eta, gamma, theta)")
        object.__setattr__(self, "draws", draws)

    @property
    def shares(self) -> Shares:
        return Shares(*(getattr(self, name).value for name in SHARE_NAMES))

    @property
    def draw_shares(self) -> Shares:
        return Shares.from_rows(self.draws)

    @property
    def admissible(self) -> Shares:
        """Every admissible corner of the constants, where no run measured them: a student pays between
        none and all of the larger of its teacher's penalty and its own size's ((kappa, lam) at (0, 0),
        (1, 0), (0, 1)); an ensemble removes from none to its measured share's upper end of a member's
        loss (eta), gamma at its bounds' ends; its student keeps none to all of its gain (theta)."""
        rows = [(k, l, e, g, t) for k, l in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))
                for e in (0.0, self.eta.interval[1]) for g in BOUNDS["gamma"] for t in (0.0, 1.0)]
        return Shares.from_rows(np.array(rows))

    @classmethod
    def given(cls, kappa: float, lam: float, eta: float = 0.0, gamma: float = 1.0, theta: float = 0.0, *,
              intervals: dict[str, tuple[float, float]] | None = None, residuals: Residuals | None = None,
              measured: MeasuredRange | None = None, source: str = "given") -> "DataLimitedConstants":
        """Constants given by hand (a test, a what-if): each value, its interval (default: the value
        itself), the draws the corners of the intervals; no residual and measured everywhere unless given."""
        values = {"kappa": kappa, "lam": lam, "eta": eta, "gamma": gamma, "theta": theta}
        intervals = {name: tuple((intervals or {}).get(name, (v, v))) for name, v in values.items()}
        corners = np.array(np.meshgrid(*(intervals[name] for name in SHARE_NAMES), indexing="ij")).reshape(
            len(SHARE_NAMES), -1).T
        return cls(**{name: Constant(float(values[name]), intervals[name]) for name in SHARE_NAMES}, draws=corners,
                   residuals=residuals or Residuals((), 0.0, 0.0, 0.0), measured=measured or MeasuredRange.everywhere(),
                   source=source)

    @classmethod
    def from_fit(cls, fit: DataLimitedFit, source: str) -> "DataLimitedConstants":
        """The constants of a fit (`laws.data_limited_fit.fit_law`)."""
        shares = {name: Constant(fit.value(name), _around(fit.value(name), fit.interval(name))) for name in SHARE_NAMES}
        return cls(**shares, draws=fit.draws[:, :len(SHARE_NAMES)], residuals=fit.residuals, measured=fit.measured,
                   level=fit.level, source=source, notes=fit.notes)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "form": FORM,
                "shares": {SHARE_LABELS[name]: getattr(self, name).to_dict() for name in SHARE_NAMES},
                "level": self.level, "source": self.source, "notes": list(self.notes),
                "residuals": self.residuals.to_dict(), "measured": self.measured.to_dict(),
                "draws": [[round(float(x), 6) for x in row] for row in self.draws]}

    @classmethod
    def from_dict(cls, data: dict, where: str = "the data-limited constants") -> "DataLimitedConstants":
        """Constants `to_dict` wrote; an earlier file (kappa and eta alone, no format) is refused saying
        how to make one of this form."""
        if data.get("format") != FORMAT:
            raise UserError(f"{where} are of an earlier form (format {data.get('format', 1)}: kappa and eta "
                            f"alone); this distillscale reads format {FORMAT} ({FORM}): refit them with "
                            f"`python bench/laws/data_limited_fit.py --write` or `distillscale demo --data-limited`")
        try:
            shares = {name: Constant.from_dict(data["shares"][SHARE_LABELS[name]]) for name in SHARE_NAMES}
            return cls(**shares, draws=np.array(data["draws"], float), residuals=Residuals.from_dict(data["residuals"]),
                       measured=MeasuredRange.from_dict(data["measured"]), level=float(data.get("level", 0.9)),
                       source=str(data.get("source", "")), notes=tuple(data.get("notes", ())))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UserError(f"{where} are malformed ({exc!r}): write them with `python bench/laws/data_limited_fit.py "
                            f"--write`") from None

    def describe(self) -> str:
        def one(name: str) -> str:
            c = getattr(self, name)
            return f"{SHARE_LABELS[name]} {c.value:.3g} [{c.interval[0]:.3g}, {c.interval[1]:.3g}]"
        return ", ".join(one(name) for name in SHARE_NAMES) + f" ({self.level:.0%}; {self.source or 'given'})"


def _around(value: float, interval: tuple[float, float]) -> tuple[float, float]:
    """A bootstrap interval that holds its point fit (a skewed bootstrap can leave it just outside)."""
    return min(interval[0], value), max(interval[1], value)


def load_constants(path: Path = CONSTANTS_FILE) -> DataLimitedConstants:
    """The constants shipped with distillscale (data_limited.json), or those of another such file."""
    path = Path(path)
    if path == CONSTANTS_FILE:
        return _shipped()
    return DataLimitedConstants.from_dict(json.loads(path.read_text(encoding="utf-8")), where=f"{path}")


@lru_cache(maxsize=1)
def _shipped() -> DataLimitedConstants:
    return DataLimitedConstants.from_dict(json.loads(CONSTANTS_FILE.read_text(encoding="utf-8")),
                                          where=f"{CONSTANTS_FILE}")


@dataclass(frozen=True)
class ModelState:
    """One model of a data-limited plan: its loss on its pool (`loss`, with its one interval) and the
    loss it would reach with fresh data (`fresh`), nats/token. What the interval is made of: `own` (the
    value with its law's own interval), `at_draws` and `at_corners` (the loss at each bootstrap draw of
    the constants, and at each admissible corner), `residual` (the fit's residual, a standard deviation in
    nats/token, against the same size trained alone); `distance`: how far outside the measured range it
    lies, by quantity (empty inside). `unique_tokens` None: fresh data, or a measured teacher whose pool is
    unknown. `generation`: its place in a chain (0 trained alone; None: not a chain's)."""

    role: str                       # alone, student, teacher (measured), ensemble
    params: float | None
    tokens: float | None
    unique_tokens: float | None
    loss: Prediction
    fresh: Prediction
    own: Prediction
    at_draws: np.ndarray
    at_corners: np.ndarray
    residual: float = 0.0
    distance: dict = field(default_factory=dict)
    members: int = 1                # an ensemble's (and its student's)
    generation: int | None = None
    member: "ModelState | None" = None   # an ensemble's one member

    @property
    def value(self) -> float:
        return float(self.loss.value)

    @property
    def penalty(self) -> float:
        """L - F: what repeating its pool costs it (nats/token), its teacher's inherited share included."""
        return float(self.loss.value) - float(self.fresh.value)

    @property
    def epochs(self) -> float | None:
        if self.unique_tokens is None or self.tokens is None:
            return None
        return self.tokens / self.unique_tokens

    @property
    def beyond(self) -> bool:
        """Whether it lies outside the measured range where the constants move it."""
        return bool(self.distance)

    def to_dict(self) -> dict:
        def interval(p: Prediction) -> list[float] | None:
            return [float(p.low), float(p.high)] if p.has_interval else None

        return {"role": self.role, "params": self.params, "tokens": self.tokens, "unique_tokens": self.unique_tokens,
                "epochs": self.epochs, "loss": self.value, "loss_interval": interval(self.loss),
                "loss_fresh": float(self.fresh.value), "loss_fresh_interval": interval(self.fresh),
                "penalty": self.penalty, "members": self.members, "generation": self.generation,
                "residual_sd": self.residual, "beyond_measured": self.distance or None}


@dataclass(frozen=True)
class Chain:
    """Self-distillation for K generations: `generations[0]` trained alone, each next the student of
    the one before; `gains[g - 1]` is Delta = L_g - L_{g-1} with its interval (negative: generation g
    gains), by the verdict rule (`difference`)."""

    generations: list[ModelState]
    gains: list[LossDifference]

    @property
    def stops_paying(self) -> int | None:
        """The first generation whose gain over the one before is not a verdict of gain ("distill": its
        interval below 0); None when every generation up to K still gains beyond its interval."""
        return next((g for g, d in enumerate(self.gains, 1) if d.verdict != "distill"), None)

    @property
    def stops_gaining(self) -> int | None:
        """The first generation no lower than the one before (its gain >= 0); None within K."""
        return next((g for g, d in enumerate(self.gains, 1) if d.value >= 0), None)

    def to_dict(self) -> dict:
        return {"generations": [s.to_dict() for s in self.generations],
                "gains": [d.to_dict() for d in self.gains], "stops_paying": self.stops_paying,
                "stops_gaining": self.stops_gaining}


class DataLimitedLaw:
    """The law of distillation on a pool of unique tokens (see the module), under `laws` (a law set
    with a distillation law) and `constants` (default: the shipped ones, data_limited.json). Every state
    it makes passes through `finish`, the one place a check on what it returns goes."""

    def __init__(self, laws: LawSet, constants: DataLimitedConstants | None = None):
        self.laws = laws
        self.distillation = laws.require_distillation()
        self.supervised = self.distillation.student_law
        self.constants = constants if constants is not None else load_constants()
        self._draws = self.constants.draw_shares
        self._corners = self.constants.admissible

    # --- the pieces -----------------------------------------------------------------------------

    def alone_penalty(self, N: float, D: float, U: float | None) -> float:
        """P(N, D, U): what N parameters trained alone on D tokens from U unique ones pay for repeating
        them (nats/token), under the supervised law's R_D* (0 on fresh data)."""
        if U is None:
            return 0.0
        return max(0.0, pooled_loss(self.supervised, N, D, U) - float(self.supervised.predict(N, D)))

    def own_penalty(self, N: float, D: float, U: float | None) -> float:
        """lam P(N, D, U): what a distilled student pays for repeating its own pool (nats/token), beside
        what it inherits from its teacher; the one pricing of it, the fit's and every plan's."""
        return float(self.constants.lam.value) * self.alone_penalty(N, D, U)

    def own_check(self, N: float, D: float, U: float, max_penalty: float, loss_fresh: float):
        """A distilled student's repetition check (`laws.repetition.RepetitionAssessment`) whose teacher read
        fresh data or a pool nobody knows: its epochs, its penalty lam P(N, D, U) on `loss_fresh` (its loss with
        fresh data), and the fewest unique tokens that keep it within `max_penalty`."""
        from distillscale.laws.repetition import PUBLISHED, assess, fewest_unique

        repetition = self.supervised.repetition or PUBLISHED
        check = assess(self.supervised, N, D, U, max_penalty, repetition=repetition)
        own = self.own_penalty(N, D, U)
        needed = fewest_unique(lambda u: self.own_penalty(N, D, u) / loss_fresh, D, max_penalty)
        return replace(check, penalty=own / loss_fresh, loss_fresh=loss_fresh, loss_repeated=loss_fresh + own,
                       unique_tokens_needed=needed, own_share=float(self.constants.lam.value))

    def inherited_penalty(self, teacher_penalty: float) -> float:
        """kappa (L_T - F_T): what a student inherits of its teacher's repetition penalty (nats/token)."""
        return float(self.constants.kappa.value) * teacher_penalty

    def distance(self, N: float | None, D: float | None, U: float | None, members: int | None = None) -> dict:
        """How far outside the constants' measured range a model of N parameters on D tokens from U unique
        ones (an ensemble of `members`) lies, by quantity; empty inside (or on fresh data)."""
        epochs = None if U is None or D is None else max(1.0, D / U)
        per_unique = None if U is None or N is None else N / U
        return self.constants.measured.distance(N, epochs, per_unique, members)

    def finish(self, state: ModelState) -> ModelState:
        """Every state the law returns, once: its interval from its three parts (see the module), by
        `laws.data_limited_form.loss_interval` (what the fit's checks score)."""
        value, own = state.value, state.own
        corners = state.at_corners if state.beyond else None
        parts = loss_interval(value, state.at_draws, state.residual, self.constants.level, at_corners=corners)
        if parts == (value, value) or not own.has_interval:
            return replace(state, loss=own)
        low, high = loss_interval(value, state.at_draws, state.residual, self.constants.level,
                                  own=(float(own.low), float(own.high)), at_corners=corners)
        return replace(state, loss=replace(own, low=low, high=high))

    # --- the states -----------------------------------------------------------------------------

    def alone(self, N: float, D: float, U: float | None) -> ModelState:
        """A model trained without a teacher on D tokens from U unique ones (None: fresh data)."""
        fresh = used_interval(marked(self.supervised.prediction(N, D), self.laws, N, D), "alone")
        loss = fresh if U is None else pooled_prediction(self.supervised, fresh, N, D, U)
        return self.finish(ModelState("alone", N, D, U, loss, fresh, loss, *self._flat(loss.value), generation=0))

    def measured_teacher(self, loss: float, N: float | None = None, D: float | None = None,
                         U: float | None = None) -> ModelState:
        """A teacher whose loss is measured: with its size, tokens and pool, F_T = L_T minus the
        supervised law's repetition penalty at (N, D, U); without its pool, F_T = L_T (fresh)."""
        point = Prediction(float(loss), None, None, None, None, None, None)
        if U is None:
            return self.finish(ModelState("teacher", N, D, None, point, point, point, *self._flat(loss)))
        if N is None or D is None:
            raise ParameterError(("unique_tokens", "params"), "a measured teacher's pool ({}) needs its size ({}) and "
                                                              "tokens: the penalty is read at them")
        fresh = replace(point, value=float(loss) - self.alone_penalty(N, D, U))
        return self.finish(ModelState("teacher", N, D, U, point, fresh, point, *self._flat(loss)))

    def student(self, N: float, D: float, U: float | None, teacher: ModelState) -> ModelState:
        """A student of N parameters distilled on D tokens from U unique ones (None: fresh data) from
        `teacher`: L_S = G(F_T) + kappa (L_T - F_T) + lam P(N, D, U), F_S = G(F_T); of an ensemble, the
        student of one member less theta of the ensemble's gain (`ensemble_student`)."""
        if teacher.role == "ensemble" and teacher.member is not None:
            return self._ensemble_student(N, D, U, teacher)
        F_T = float(teacher.fresh.value)
        fresh = used_interval(marked(self.distillation.prediction(N, D, F_T), self.laws, N, D, students=True),
                              "distilled")
        size_penalty = self.alone_penalty(N, D, U)
        p_T_draws, p_T_corners = teacher.at_draws - F_T, teacher.at_corners - F_T
        shares = self.constants.shares
        penalty = float(shares.student_penalty(teacher.penalty, size_penalty))
        if penalty == 0.0 and size_penalty == 0.0 and teacher.penalty == 0.0:   # fresh data: the distillation law
            return self.finish(ModelState("student", N, D, U, fresh, fresh, fresh, *self._flat(fresh.value),
                                          generation=_next_generation(teacher, N, D, U)))
        own = _moved(fresh, penalty)
        if U is not None and own.has_interval:   # lam of the own penalty's spread under R_D*'s interval
            own = self._own_penalty_interval(own, N, D, U, float(shares.lam))
        value = float(own.value)
        base = float(fresh.value)
        at_draws = base + self._draws.student_penalty(p_T_draws, size_penalty)
        at_corners = base + self._corners.student_penalty(p_T_corners, size_penalty)
        generation = _next_generation(teacher, N, D, U)
        scale = size_penalty if size_penalty > 0 else teacher.penalty
        r = self.constants.residuals
        residual = (r.at_generation(generation) if generation is not None else r.student) * scale
        distance = self.distance(N, D, U) | self._teacher_distance(teacher)
        state = ModelState("student", N, D, U, replace(own, value=value), fresh, replace(own, value=value),
                           at_draws, at_corners, residual, distance, generation=generation)
        return self.finish(state)

    def ensemble(self, N: float, D: float, U: float | None, members: int) -> ModelState:
        """`members` models of N parameters trained alone on D tokens from U unique ones (different
        seeds), their logits mixed: L_k = L_1 (1 - s_k), F_k = F_1 (1 - s_k), s_k = eta (1 - k^-gamma)."""
        if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
            raise ParameterError("members", "{} must be a whole number of at least 1")
        one = self.alone(N, D, U)
        if members == 1:
            return self.finish(replace(one, role="ensemble", member=one, generation=None))
        factor = 1.0 - float(self.constants.shares.ensemble_share(members))
        own = replace(one.own.scaled(factor), value=one.value * factor)
        fresh = one.fresh.scaled(factor)
        at_draws = one.value * (1.0 - self._draws.ensemble_share(members))
        at_corners = one.value * (1.0 - self._corners.ensemble_share(members))
        residual = self.constants.residuals.ensemble * one.value
        state = ModelState("ensemble", N, D, U, own, fresh, own, at_draws, at_corners, residual,
                           self.distance(N, D, U, members), members, member=one)
        return self.finish(state)

    def ensemble_student(self, N: float, D: float, U: float | None, members: int) -> ModelState:
        """The student of an ensemble of `members` of its own size, on the same pool."""
        return self.student(N, D, U, self.ensemble(N, D, U, members))

    def chain(self, N: float, D: float, U: float | None, generations: int) -> Chain:
        """Generation 0 trained alone, then `generations` students, each of the one before."""
        if isinstance(generations, bool) or not isinstance(generations, (int, np.integer)) or generations < 1:
            raise ParameterError("generations", "{} must be a whole number of at least 1")
        states = [self.alone(N, D, U)]
        for _ in range(generations):
            states.append(self.student(N, D, U, states[-1]))
        return Chain(states, [difference(after, before) for before, after in zip(states, states[1:])])

    def at_fixed_tokens(self, N: float, D: float, U: float, generations: int | None = None,
                        members: int | None = None, forward=None) -> "FixedTokens":
        """Models of N parameters each trained on D tokens from U unique ones (the epochs fixed, compute to
        spare): a chain of `generations` and ensembles of up to `members` (2, 4, 8, ... and `members`), each
        model's loss and Delta against the one trained alone, with their intervals, where another
        generation (another member) stops paying by the verdict rule, and what each costs in FLOPs
        (`forward(N)`: forward FLOPs per token; default 2N: 3 forward passes' worth per token trained, one
        per token a teacher reads)."""
        if generations is None and members is None:
            raise ParameterError(("generations", "members"), "give {} or {}: a chain's length or an ensemble's size")
        forward = forward or (lambda n: 2.0 * n)
        F = float(forward(N))
        alone = self.alone(N, D, U)
        chain = None if generations is None else self.chain(N, D, U, generations)
        ensembles = []
        if members is not None:
            if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 2:
                raise ParameterError("members", "{} must be a whole number of at least 2 (an ensemble)")
            sizes = sorted({m for m in (2 ** j for j in range(1, 31)) if m < members} | {int(members)})
            for m in sizes:
                ensemble = self.ensemble(N, D, U, m)
                ensembles.append(EnsembleAnswer(m, ensemble, self.student(N, D, U, ensemble),
                                                (m + 1) * 3 * F * D + m * F * D))
        return FixedTokens(N, D, U, F, alone, chain, ensembles)

    # --- helpers ----------------------------------------------------------------------------------

    def _flat(self, value) -> tuple[np.ndarray, np.ndarray]:
        """A loss that does not move with the constants, at every draw and corner."""
        return (np.full(len(self.constants.draws), float(value)), np.full(len(self._corners.kappa), float(value)))

    def _teacher_distance(self, teacher: ModelState) -> dict:
        """A teacher outside the measured range puts its student there too (its inherited share is the
        constants' at its distance)."""
        return dict(teacher.distance) if teacher.penalty > 0 else {}

    def _own_penalty_interval(self, own: Prediction, N: float, D: float, U: float, lam: float) -> Prediction:
        """`own` widened by lam times the alone penalty's spread under R_D*'s interval (the supervised
        law's own; what the alone loss's interval carries)."""
        from distillscale.laws.repetition import PUBLISHED, Repetition, repetition_ratio

        repetition = self.supervised.repetition or PUBLISHED
        if not repetition.interval:
            return own
        fresh = float(self.supervised.predict(N, D))
        ends = [fresh * (float(repetition_ratio(self.supervised, Repetition(r, repetition.R_N_star), N, D, U)) - 1.0)
                for r in repetition.interval]
        P = self.alone_penalty(N, D, U)
        below, above = lam * max(0.0, P - min(ends)), lam * max(0.0, max(ends) - P)
        return replace(own, low=float(own.low) - below, high=float(own.high) + above)

    def _ensemble_student(self, N: float, D: float, U: float | None, ensemble: ModelState) -> ModelState:
        """The student of one member less theta of the ensemble's gain over that member."""
        one = self.student(N, D, U, ensemble.member)
        gain, theta = ensemble.member.value - ensemble.value, float(self.constants.shares.theta)
        member = ensemble.member
        value = one.value - theta * gain
        own = _moved(one.own, -theta * gain)
        fresh_gain = float(member.fresh.value) - float(ensemble.fresh.value)
        fresh = _moved(one.fresh, -theta * fresh_gain)
        at_draws = one.at_draws - self._draws.ensemble_student_gain(member.at_draws - ensemble.at_draws)
        at_corners = one.at_corners - self._corners.ensemble_student_gain(member.at_corners - ensemble.at_corners)
        residual = float(quadrature(one.residual, theta * ensemble.residual,
                                    self.constants.residuals.ensemble_student * member.value))
        state = ModelState("student", N, D, U, replace(own, value=value), fresh, replace(own, value=value), at_draws,
                           at_corners, residual, one.distance | ensemble.distance, ensemble.members)
        return self.finish(state)


@dataclass(frozen=True)
class EnsembleAnswer:
    """An ensemble of `members` trained alone, its student, and what both cost in FLOPs (the members'
    trainings, the student's, and its reading every member's logits)."""

    members: int
    ensemble: ModelState
    student: ModelState
    flops: float


@dataclass(frozen=True)
class FixedTokens:
    """The data-limited answers at fixed tokens per model (`DataLimitedLaw.at_fixed_tokens`): the model
    trained alone, the chain (None: not asked), the ensembles by size; `forward` the forward FLOPs per token
    of one model."""

    params: float
    tokens: float
    unique_tokens: float
    forward: float
    alone: ModelState
    chain: Chain | None
    ensembles: list[EnsembleAnswer]

    @property
    def epochs(self) -> float:
        return self.tokens / self.unique_tokens

    def against_alone(self, state: ModelState) -> LossDifference:
        return difference(state, self.alone)

    def chain_flops(self, generation: int) -> float:
        """FLOPs of generation 0 to `generation`: g + 1 trainings, g teachers' forward passes, D tokens each."""
        return (generation + 1) * 3 * self.forward * self.tokens + generation * self.forward * self.tokens

    @property
    def ensemble_stops_paying(self) -> int | None:
        """The first ensemble size whose student's gain over the next smaller one's is not a verdict of gain
        (the verdict rule); None when each still gains."""
        students = [e.student for e in self.ensembles]
        for before, after, answer in zip(students, students[1:], self.ensembles[1:]):
            if difference(after, before, SAME_LAW).verdict != "distill":
                return answer.members
        return None

    @property
    def beyond(self) -> dict:
        out = dict(self.alone.distance)
        for state in ([] if self.chain is None else self.chain.generations) + [e.student for e in self.ensembles]:
            out |= state.distance
        return out

    def to_dict(self) -> dict:
        def with_delta(state: ModelState) -> dict:
            return {**state.to_dict(), **self.against_alone(state).to_dict()}
        out = {"question": "fixed tokens per model: each model trained on D tokens of the pool", "params": self.params,
               "tokens": self.tokens, "unique_tokens": self.unique_tokens, "epochs": self.epochs,
               "flops_accounting": "3 forward passes per token trained, 1 per token a teacher reads",
               "alone": {**self.alone.to_dict(), "flops": self.chain_flops(0)}, "units": "nats/token",
               "beyond_measured": self.beyond or None}
        if self.chain is not None:
            out["chain"] = {"generations": [{**with_delta(s), "flops": self.chain_flops(g),
                                             **({} if g == 0 else {"gain_over_previous": self.chain.gains[g - 1].to_dict()})}
                                            for g, s in enumerate(self.chain.generations)],
                            "stops_paying": self.chain.stops_paying, "stops_gaining": self.chain.stops_gaining}
        if self.ensembles:
            out["ensembles"] = {"sizes": [{"members": e.members, "ensemble": with_delta(e.ensemble),
                                           "student": with_delta(e.student), "flops": e.flops} for e in self.ensembles],
                                "stops_paying": self.ensemble_stops_paying}
        return out


def _next_generation(teacher: ModelState, N: float, D: float, U: float | None) -> int | None:
    """A student's place in a chain: one past its teacher's when it repeats its teacher's run (same N, D
    and U); None for a student of another teacher."""
    if teacher.generation is None or (teacher.params, teacher.tokens, teacher.unique_tokens) != (N, D, U):
        return None
    return teacher.generation + 1


def difference(first: ModelState, second: ModelState, calibration=None) -> LossDifference:
    """Delta = L(first) - L(second) with its interval, by the one verdict rule (`laws.difference.decide`
    on the two laws' own intervals, under `calibration`: default a distilled loss against one trained
    alone; `laws.difference.SAME_LAW` for two students), widened by the constants' part of Delta (the two
    losses at the same draws: their spread; beyond the measured range, over every admissible corner) and
    the two residuals; beyond the measured range a Delta straddling 0 reads "cannot tell at this distance"."""
    base = decide(first.value, first.own, second.value, second.own, calibration)
    value = base.value
    if first.beyond or second.beyond:
        below, above = reach(np.append(first.at_corners - second.at_corners, first.at_draws - second.at_draws), value)
    else:
        below, above = spread(first.at_draws - second.at_draws, value)
    half = Z90 * float(quadrature(first.residual, second.residual))
    beyond = base.beyond or first.beyond or second.beyond
    if below == 0 and above == 0 and half == 0:
        return base
    if first.beyond or second.beyond:
        base = replace(base, rule=BEYOND_RULE)
    if not base.has_interval:
        return replace(base, low=value - float(quadrature(below, half)), high=value + float(quadrature(above, half)),
                       level=0.9, beyond=beyond)
    return replace(base, low=value - float(quadrature(value - base.low, below, half)),
                   high=value + float(quadrature(base.high - value, above, half)), beyond=beyond)


def gain(after: ModelState, before: ModelState) -> LossDifference:
    """Delta = L(after) - L(before): what one model gains over another (`difference`)."""
    return difference(after, before)


def _moved(base: Prediction, shift: float) -> Prediction:
    """`base` (its law's loss, interval and all) moved by `shift`."""
    value = float(base.value) + shift
    if not base.has_interval:
        return replace(base, value=value)
    return replace(base, value=value, low=float(np.asarray(base.low)) + shift, high=float(np.asarray(base.high)) + shift)
