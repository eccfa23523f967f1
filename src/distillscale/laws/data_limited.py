"""Distillation where unique data is the limit: a pool of U unique tokens read for many epochs.

Each model has a state (L, F): L its loss (nats/token) on its pool, F the loss it would reach with
fresh data at the same size and tokens (F = L on fresh data); L - F is its repetition penalty.

- trained alone on (N, D, U): L = the pooled supervised loss (`laws.repetition.pooled_loss`), F =
  the supervised law at (N, D);
- a student (N_S, D_S, U_S) of a teacher (L_T, F_T):

      L_S = G(N_S, D_S; F_T) + lam (S_pooled(N_S, D_S, U_S) - S(N_S, D_S)) + kappa (L_T - F_T)
      F_S = G(N_S, D_S; F_T)

  G the distillation law, S the supervised law, S_pooled it with repetition: the student's loss as
  if its teacher had seen fresh data, plus its own repetition penalty (the share lam of what the
  same model trained alone on the pool pays), plus the share kappa of its teacher's repetition
  penalty it inherits. With kappa < 1 a student beats a teacher whose penalty is large; on fresh
  data both penalties are 0 and this is the distillation law itself, number for number. Constants
  without lam price the student's own repetition with the distilled student's R_D* instead
  (`laws.repetition.distilled_repetition`: G_pooled);
- a measured teacher (its loss L_T known) whose pool is given: F_T = L_T - (pooled S(N_T, D_T, U_T)
  - S(N_T, D_T)), S the supervised law; its pool unknown: F_T = L_T (fresh);
- a chain (self-distillation): generation 0 trained alone, generation g the student of g - 1, each
  of the same N, D and U: the penalty shrinks by kappa each generation while F rises, so the gains
  shrink and the chain settles (`Chain.stops_paying`);
- an ensemble of k models trained alone (seeds), logits mixed: L_ens = L_1 - eta (1 - 1/k) (L_1 -
  F_1), F_ens = F_1; a student distilled from it as from any teacher.

kappa, eta and lam (`DataLimitedConstants`) come with a 90% interval, measured at micro scale
(data_limited.json, `bench/laws/data_limited_fit.py`). Every loss carries an interval: the distillation or supervised law's own (the
one its verdicts use, `laws.difference.used_interval`, with R_D*'s), moved to the losses at the ends
of the constants' intervals; each Delta is `laws.difference.decide` of two such losses.

    law = DataLimitedLaw(laws)                      # constants from data_limited.json
    chain = law.chain(N, D, U, generations=4)       # chain.generations[g].loss, chain.stops_paying
    student = law.student(N, D, U, law.ensemble(N, D, U, members=4))
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.difference import LossDifference, decide, used_interval
from distillscale.laws.extrapolation import marked
from distillscale.laws.lawset import LawSet
from distillscale.laws.repetition import distilled_repetition, pooled_loss, pooled_prediction, repeated_prediction
from distillscale.laws.uncertainty import Prediction

CONSTANTS_FILE = Path(__file__).with_name("data_limited.json")


@dataclass(frozen=True)
class Constant:
    """One constant of the law with its interval (at the record's level)."""

    value: float
    interval: tuple[float, float]

    def __post_init__(self) -> None:
        low, high = self.interval
        if not (0 <= low <= self.value <= high <= 1):
            raise ParameterError("constant", f"{{}} must lie in [0, 1] inside its interval: got {self.value} "
                                             f"[{low}, {high}]")

    def to_dict(self) -> dict:
        return {"value": self.value, "interval": list(self.interval)}

    @classmethod
    def from_dict(cls, data: dict) -> "Constant":
        low, high = data["interval"]
        return cls(float(data["value"]), (float(low), float(high)))


@dataclass(frozen=True)
class DataLimitedConstants:
    """kappa: the share of its teacher's repetition penalty a student inherits; eta: the share of a
    member's penalty an ensemble of many members removes; lam (optional): a distilled student's own
    repetition penalty as a share of the penalty the same model trained alone on the same pool pays
    (None: the distilled student's R_D* prices it, `laws.repetition.distilled_repetition`); each with
    its interval, and where they come from."""

    kappa: Constant
    eta: Constant
    level: float = 0.9
    source: str = ""
    lam: Constant | None = None

    def corners(self) -> list[tuple[float, float, float | None]]:
        """(kappa, eta, lam) at the ends of their intervals: where a loss's constants part is read."""
        lams = self.lam.interval if self.lam is not None else (None,)
        return list(itertools.product(self.kappa.interval, self.eta.interval, lams))

    def to_dict(self) -> dict:
        out = {"kappa": self.kappa.to_dict(), "eta": self.eta.to_dict(), "level": self.level, "source": self.source}
        return out | ({"lambda": self.lam.to_dict()} if self.lam is not None else {})

    @classmethod
    def from_dict(cls, data: dict) -> "DataLimitedConstants":
        lam = Constant.from_dict(data["lambda"]) if data.get("lambda") else None
        return cls(Constant.from_dict(data["kappa"]), Constant.from_dict(data["eta"]), float(data.get("level", 0.9)),
                   str(data.get("source", "")), lam)

    def describe(self) -> str:
        def one(name: str, c: Constant) -> str:
            return f"{name} {c.value:.3g} [{c.interval[0]:.3g}, {c.interval[1]:.3g}]"
        lam = f", {one('lambda', self.lam)}" if self.lam is not None else ""
        return f"{one('kappa', self.kappa)}, {one('eta', self.eta)}{lam} ({self.level:.0%}; {self.source or 'given'})"


def load_constants(path: Path = CONSTANTS_FILE) -> DataLimitedConstants:
    """The constants shipped with distillscale (data_limited.json), or those of another such file."""
    return DataLimitedConstants.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ModelState:
    """One model of a data-limited plan: its loss on its pool (`loss`, with its interval) and the
    loss it would reach with fresh data (`fresh`), nats/token; `corners`: its loss at each of the
    constants' corners (`DataLimitedConstants.corners`), what its interval's constants part is
    read from. `unique_tokens` None: fresh data, or a measured teacher whose pool is unknown."""

    role: str                       # alone, student, teacher (measured), ensemble
    params: float | None
    tokens: float | None
    unique_tokens: float | None
    loss: Prediction
    fresh: Prediction
    corners: tuple[float, ...]
    members: int = 1                # an ensemble's

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

    def to_dict(self) -> dict:
        def interval(p: Prediction) -> list[float] | None:
            return [float(p.low), float(p.high)] if p.has_interval else None

        return {"role": self.role, "params": self.params, "tokens": self.tokens, "unique_tokens": self.unique_tokens,
                "epochs": self.epochs, "loss": self.value, "loss_interval": interval(self.loss),
                "loss_fresh": float(self.fresh.value), "loss_fresh_interval": interval(self.fresh),
                "penalty": self.penalty, "members": self.members}


@dataclass(frozen=True)
class Chain:
    """Self-distillation for K generations: `generations[0]` trained alone, each next the student of
    the one before; `gains[g - 1]` is Delta = L_g - L_{g-1} with its interval (negative: generation g
    gains)."""

    generations: list[ModelState]
    gains: list[LossDifference]

    @property
    def stops_paying(self) -> int | None:
        """The first generation whose gain over the one before lies within its interval (the verdict
        of Delta is not "distill"); None when every generation up to K still gains."""
        return next((g for g, d in enumerate(self.gains, 1) if d.verdict != "distill"), None)

    @property
    def stops_gaining(self) -> int | None:
        """The first generation no lower than the one before (its gain <= 0); None within K."""
        return next((g for g, d in enumerate(self.gains, 1) if d.value >= 0), None)

    def to_dict(self) -> dict:
        return {"generations": [s.to_dict() for s in self.generations],
                "gains": [d.to_dict() for d in self.gains], "stops_paying": self.stops_paying,
                "stops_gaining": self.stops_gaining}


class DataLimitedLaw:
    """The law of distillation on a pool of unique tokens (see the module), under `laws` (a law set
    with a distillation law) and `constants` (default: the shipped ones, data_limited.json)."""

    def __init__(self, laws: LawSet, constants: DataLimitedConstants | None = None):
        self.laws = laws
        self.distillation = laws.require_distillation()
        self.supervised = self.distillation.student_law
        self.constants = constants if constants is not None else load_constants()

    # --- the states -----------------------------------------------------------------------------

    def alone(self, N: float, D: float, U: float | None) -> ModelState:
        """A model trained without a teacher on D tokens from U unique ones (None: fresh data)."""
        fresh = used_interval(marked(self.supervised.prediction(N, D), self.laws, N, D), "alone")
        loss = fresh if U is None else pooled_prediction(self.supervised, fresh, N, D, U)
        return ModelState("alone", N, D, U, loss, fresh, (float(loss.value),) * len(self.constants.corners()))

    def measured_teacher(self, loss: float, N: float | None = None, D: float | None = None,
                         U: float | None = None) -> ModelState:
        """A teacher whose loss is measured: with its size, tokens and pool, F_T = L_T minus the
        supervised law's repetition penalty at (N, D, U); without its pool, F_T = L_T (fresh)."""
        point = Prediction(float(loss), None, None, None, None, None, None)
        if U is None:
            return ModelState("teacher", N, D, None, point, point, (float(loss),) * len(self.constants.corners()))
        if N is None or D is None:
            raise ParameterError(("unique_tokens", "params"), "a measured teacher's pool ({}) needs its size ({}) and "
                                                              "tokens: the penalty is read at them")
        penalty = pooled_loss(self.supervised, N, D, U) - float(self.supervised.predict(N, D))
        fresh = replace(point, value=float(loss) - penalty)
        return ModelState("teacher", N, D, U, point, fresh, (float(loss),) * len(self.constants.corners()))

    def student(self, N: float, D: float, U: float | None, teacher: ModelState) -> ModelState:
        """A student of N parameters distilled on D tokens from U unique ones (None: fresh data) from
        `teacher`: L_S = G(F_T) + own penalty + kappa (L_T - F_T), F_S = G(F_T); the own penalty lam
        times the supervised law's penalty at (N, D, U) when the constants carry lam, else the
        distilled student's R_D* on G (`G_pooled`)."""
        F_T = float(teacher.fresh.value)
        fresh = used_interval(marked(self.distillation.prediction(N, D, F_T), self.laws, N, D, students=True),
                              "distilled")
        corners = self.constants.corners()
        if U is None:
            base, own = fresh, [0.0] * len(corners)
        elif self.constants.lam is None:
            base = repeated_prediction(self.supervised, fresh, N, D, U, distilled_repetition(self.distillation))
            own = [0.0] * len(corners)
        else:
            alone_penalty = pooled_loss(self.supervised, N, D, U) - float(self.supervised.predict(N, D))
            base = _moved(fresh, self.constants.lam.value * alone_penalty, ())
            own = [(lam - self.constants.lam.value) * alone_penalty for _, _, lam in corners]
        # kappa of the teacher's penalty (and lam of its own), at their values and at each corner
        at_corners = tuple(float(base.value) + extra + k * (L_T - F_T)
                           for (k, _, _), extra, L_T in zip(corners, own, teacher.corners))
        loss = _moved(base, self.constants.kappa.value * (teacher.value - F_T), at_corners)
        return ModelState("student", N, D, U, loss, fresh, at_corners)

    def ensemble(self, N: float, D: float, U: float | None, members: int) -> ModelState:
        """`members` models of N parameters trained alone on D tokens from U unique ones (different
        seeds), their logits mixed: L = L_1 - eta (1 - 1/k) (L_1 - F_1), F = F_1."""
        if members < 1:
            raise ParameterError("members", "{} must be at least 1")
        one = self.alone(N, D, U)
        removable = (1.0 - 1.0 / members) * one.penalty   # eta of it is removed
        corners = tuple(one.value - e * removable for _, e, _ in self.constants.corners())
        loss = _moved(one.loss, -self.constants.eta.value * removable, corners)
        return ModelState("ensemble", N, D, U, loss, one.fresh, corners, members)

    def chain(self, N: float, D: float, U: float | None, generations: int) -> Chain:
        """Generation 0 trained alone, then `generations` students, each of the one before."""
        if generations < 1:
            raise ParameterError("generations", "{} must be at least 1")
        states = [self.alone(N, D, U)]
        for _ in range(generations):
            states.append(self.student(N, D, U, states[-1]))
        return Chain(states, [gain(after, before) for before, after in zip(states, states[1:])])


def gain(after: ModelState, before: ModelState) -> LossDifference:
    """Delta = L(after) - L(before) with its interval, by the one rule of every verdict (`decide`)."""
    return decide(after.value, after.loss, before.value, before.loss)


def _moved(base: Prediction, shift: float, corners: tuple[float, ...]) -> Prediction:
    """`base` (its law's loss, interval and all) moved by `shift`, its interval reaching out to the
    losses at the constants' corners as far as they lie beyond the value."""
    value = float(base.value) + shift
    out = replace(base, value=value)
    if not base.has_interval:
        return out
    below = min(0.0, min(corners) - value) if corners else 0.0
    above = max(0.0, max(corners) - value) if corners else 0.0
    return replace(out, low=float(np.asarray(base.low)) + shift + below,
                   high=float(np.asarray(base.high)) + shift + above)
