"""A supervised law whose data exponent depends on model size (issue 55), numpy only:

    L(N, D) = E + A / N^alpha + B / D^(beta + beta1 ln(N / N0))

beta is the data exponent at the reference size N0 (the geometric mean of the fitted runs' N,
stored with the law: only a choice of origin, every N0 gives the same family of laws), beta1 how
much it grows per e-fold of N. beta1 > 0: a larger model gains more from data than a smaller one,
which a size-independent exponent (chinchilla, busbridge) cannot say. With beta1 = 0 it is the
chinchilla law. Fitted by `laws.interaction.InteractionLawFitter`; a fit whose runs do not pin
beta1 down keeps beta1 = 0 (the plain law) and says so in its record's `not_identified`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillscale.laws.forms import ArrayLike, SupervisedLaw, _pos

INTERACTION = "interaction"


@dataclass
class InteractionLaw(SupervisedLaw):
    """L(N, D) = E + A/N^alpha + B/D^(beta + beta1 ln(N/N0)) (gamma is always 1)."""

    beta1: float = 0.0
    N0: float = 1.0

    COEFFICIENTS = ("E", "A", "B", "alpha", "beta", "gamma", "beta1", "N0")

    @property
    def form(self) -> str:
        return INTERACTION

    def data_exponent(self, N: ArrayLike) -> np.ndarray | float:
        """The exponent of D at model size N: beta + beta1 ln(N / N0)."""
        out = self.beta + self.beta1 * np.log(_pos(N, "N") / self.N0)
        return float(out) if np.ndim(out) == 0 else out

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray | float:
        N, D = _pos(N, "N"), _pos(D, "D")
        beta = self.beta + self.beta1 * np.log(N / self.N0)
        log_terms = np.logaddexp(np.log(self.A) - self.alpha * np.log(N), np.log(self.B) - beta * np.log(D))
        out = self.E + np.exp(self.gamma * log_terms)
        return float(out) if out.ndim == 0 else out

    def with_coefficients(self, coefficients: dict[str, float]) -> "InteractionLaw":
        return InteractionLaw(**{**self.coefficients(), **coefficients})

    # from_dict: SupervisedLaw's, which reads cls.COEFFICIENTS (beta1 and N0 too).


def supervised_law_from_dict(data: dict) -> SupervisedLaw:
    """A supervised law from law.json, of the class its `form` names (an interaction law keeps beta1)."""
    if isinstance(data, dict) and data.get("form") == INTERACTION:
        return InteractionLaw.from_dict(data)
    return SupervisedLaw.from_dict(data)
