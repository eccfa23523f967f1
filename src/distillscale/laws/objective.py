"""What a law's fit minimises, and over what: the runs (`Runs`: one value per run, as the
log-space tensors the forms read), the Huber loss of log-residuals, and Gaussian priors on
coefficients (`PriorTerm`; the user's `ExponentPrior` on alpha and beta). `laws.fitting` minimises
their sum over many starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import hashlib

import numpy as np
import torch

from distillscale.errors import ParameterError
from distillscale.laws.logspace import EXPONENT_BOUNDS
from distillscale.laws.record import DataRange


def huber_and_slope(residual: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber_delta(r) (r^2 / 2 inside [-delta, delta], linear outside: the Chinchilla/Epoch objective)
    and its derivative, the residual clamped to [-delta, delta]: Huber_delta(r) = slope * (r - slope / 2)."""
    slope = residual.clamp(-delta, delta)
    return slope * (residual - 0.5 * slope), slope


def huber(residual: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber_delta(r), differentiable by autograd."""
    return huber_and_slope(residual, delta)[0]


@dataclass(frozen=True)
class Runs:
    """The runs a law is fitted to, one value per run: non-embedding parameters, tokens and loss
    (nats/token); for the distillation law also each run's teacher loss and the loss the student
    would reach trained supervised on the same tokens (Ltilde_S, from its supervised law)."""

    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    teacher_loss: np.ndarray | None = None
    student_supervised_loss: np.ndarray | None = None

    # The names the log-space forms read their inputs by (`laws.logspace`): log_n, log_d, ...
    LOG_NAMES = {"params": "n", "tokens": "d", "teacher_loss": "teacher_loss",
                 "student_supervised_loss": "student_supervised_loss"}

    def __post_init__(self) -> None:
        for column in fields(self):
            value = getattr(self, column.name)
            if value is not None:
                object.__setattr__(self, column.name, np.asarray(value, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.loss)

    def subset(self, mask: np.ndarray) -> "Runs":
        return Runs(**{c.name: None if getattr(self, c.name) is None else getattr(self, c.name)[mask]
                       for c in fields(self)})

    def _inputs(self) -> dict[str, np.ndarray]:
        """The form's inputs under their log-space names (the loss excluded)."""
        return {self.LOG_NAMES[c.name]: getattr(self, c.name) for c in fields(self)
                if c.name != "loss" and getattr(self, c.name) is not None}

    def log_tensors(self) -> dict[str, torch.Tensor]:
        """{"log_n": log N, ..., "log_loss": log L} as float64 tensors: what the log-space forms read."""
        return {"log_" + key: torch.as_tensor(np.log(value), dtype=torch.float64)
                for key, value in {**self._inputs(), "loss": self.loss}.items()}

    def distinct_points(self) -> int:
        """How many different inputs (N, D, and L_T for distillation) the runs measure: a run repeated
        ten times is one point of the law, not ten."""
        inputs = self._inputs()
        return len(np.unique(np.column_stack([inputs[key] for key in sorted(inputs)]), axis=0))

    def data_hash(self) -> str:
        """Identifies the runs (law.json's `data_hash`)."""
        digest = hashlib.sha256()
        inputs = self._inputs()
        for key in sorted(inputs):
            digest.update(key.encode() + np.ascontiguousarray(inputs[key]).tobytes())
        digest.update(np.ascontiguousarray(self.loss).tobytes())
        return "sha256:" + digest.hexdigest()[:16]

    def data_range(self) -> DataRange:
        """Where the law was fitted: `laws.extrapolation` keeps predictions and plans inside it."""
        return DataRange(params=_span(self.params), tokens=_span(self.tokens),
                         tokens_per_param=_span(self.tokens / self.params))


@dataclass(frozen=True)
class PriorTerm:
    """A Gaussian prior N(mean, sd) on one coefficient, read from the log-space parameters theta:
    exp(theta[index]) for a log-coefficient (E); theta[index] * theta[gamma_index] for an exponent
    of a form with gamma free (the exponent the loss follows far out, alpha * gamma); else theta[index]."""

    index: int
    mean: float
    sd: float
    log: bool = False
    gamma_index: int | None = None

    def value(self, theta: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """The coefficient per start, and its partial derivatives as (parameter index, values)."""
        x = theta[:, self.index]
        if self.log:
            value = torch.exp(x)
            return value, [(self.index, value)]
        if self.gamma_index is None:
            return x, [(self.index, torch.ones_like(x))]
        gamma = theta[:, self.gamma_index]
        return x * gamma, [(self.index, gamma), (self.gamma_index, x)]


@dataclass(frozen=True)
class ExponentPrior:
    """Gaussian priors on a supervised law's exponents, each (mean, sd) or None: e.g. what fits to
    other data sets found (a hierarchical fit). They act on the exponents the loss follows, alpha *
    gamma and beta * gamma in the busbridge form; in the tied form both act on its one exponent."""

    alpha: tuple[float, float] | None = None
    beta: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            given = getattr(self, name)
            if given is None:
                continue
            try:
                mean, sd = (float(v) for v in given)
            except (TypeError, ValueError):
                raise ParameterError(f"exponent_prior.{name}", "{} must be (mean, sd), got {value!r}",
                                     value=given) from None
            low, high = EXPONENT_BOUNDS
            if not (low < mean < high and 0 < sd < high):
                raise ParameterError(f"exponent_prior.{name}", "{} " + f"needs a mean between {low:g} and {high:g} "
                                     f"and a positive sd below {high:g} (an exponent), got {mean:g}, {sd:g}")
            object.__setattr__(self, name, (mean, sd))

    def items(self) -> list[tuple[str, tuple[float, float]]]:
        return [(name, getattr(self, name)) for name in ("alpha", "beta") if getattr(self, name) is not None]

    @property
    def description(self) -> str:
        return ", ".join(f"{name} ~ N({mean:.3g}, {sd:.3g})" for name, (mean, sd) in self.items())


def _span(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))

