"""Supervised laws whose data term depends on model size, numpy only.

The interaction form:

    L(N, D) = E + A / N^alpha + B / D^(beta + beta1 ln(N / N0))

beta is the data exponent at the reference size N0 (the geometric mean of the fitted runs' N,
stored with the law: only a choice of origin, every N0 gives the same family of laws), beta1 how
much it grows per e-fold of N. beta1 > 0: a larger model gains more from data than a smaller one,
which a size-independent exponent (chinchilla, busbridge) cannot say. With beta1 = 0 it is the
chinchilla law. Fitted by `laws.interaction.InteractionLawFitter`; a fit whose runs do not pin
beta1 down keeps beta1 = 0 (the plain law) and says so in its record's `not_identified`.

Farseer's surface (Li et al. 2025, "Predictable Scale: Part II", arXiv 2506.10972),

    L(N, D) = exp(a3 N^g + b3) + exp(a2 N^b + b2) D^(-exp(a1 N^c + b1)),

has nine parameters: a loss at infinite data, a data coefficient and a data exponent, each a
stretched exponential of N. Fitted on ~1,000 models it pins them; 3-6 model sizes do not. The
`farseer` form keeps its structure (the data term's coefficient AND exponent both functions of N)
with each function to first order in ln N around N0, which is what 3-6 sizes can resolve:

    L(N, D) = E + A / N^alpha + B (N/N0)^kappa / D^(beta (N/N0)^nu)

- exp(a3 N^g + b3) = e^b3 (1 + a3 N^g + ...): E + A / N^alpha to first order in the size term;
- exp(a2 N^b + b2): ln B(N) linear in ln N, B (N/N0)^kappa (kappa = a2 b N0^b);
- exp(a1 N^c + b1): ln beta(N) linear in ln N, beta(N) = beta (N/N0)^nu (nu = a1 c N0^c; the
  exponent stays positive at every N, as Farseer's does).
With kappa = nu = 0 it is the chinchilla law. Fitted by `laws.interaction.InteractionLawFitter`
("farseer"), with the same identification rule (both kept or both 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distillscale.laws.forms import ArrayLike, SupervisedLaw, _pos

INTERACTION = "interaction"
FARSEER = "farseer"


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

    def raw_predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray | float:
        N, D = _pos(N, "N"), _pos(D, "D")
        beta = self.beta + self.beta1 * np.log(N / self.N0)
        log_terms = np.logaddexp(np.log(self.A) - self.alpha * np.log(N), np.log(self.B) - beta * np.log(D))
        out = self.E + np.exp(self.gamma * log_terms)
        return float(out) if out.ndim == 0 else out

    def data_slopes(self, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(d ln B(N) / d ln N, d beta(N) / d ln N): (0, beta1)."""
        return np.zeros_like(N), np.full_like(N, self.beta1)

    def compute_optimal_params(self, D: ArrayLike) -> np.ndarray:
        return stationary_params(self, D)

    def form_text(self) -> str:
        if self.beta1 == 0.0:
            return _plain_text(self, "beta1 = 0", "a data exponent that depends on N")
        return (f"interaction (data exponent beta + beta1 ln(N/N0): beta = {self.beta:.3g}, beta1 = {self.beta1:.3g} "
                f"per e-fold of N, N0 = {self.N0:.3g})")

    def with_coefficients(self, coefficients: dict[str, float]) -> "InteractionLaw":
        return InteractionLaw(**{**self.coefficients(), **coefficients})

    # from_dict: SupervisedLaw's, which reads cls.COEFFICIENTS (beta1 and N0 too).


@dataclass
class FarseerLaw(SupervisedLaw):
    """L(N, D) = E + A/N^alpha + B (N/N0)^kappa / D^(beta (N/N0)^nu) (gamma is always 1): Farseer's
    surface to first order in ln N (module docstring)."""

    kappa: float = 0.0
    nu: float = 0.0
    N0: float = 1.0

    COEFFICIENTS = ("E", "A", "B", "alpha", "beta", "gamma", "kappa", "nu", "N0")

    @property
    def form(self) -> str:
        return FARSEER

    def data_exponent(self, N: ArrayLike) -> np.ndarray | float:
        """The exponent of D at model size N: beta (N/N0)^nu."""
        out = self.beta * np.exp(self.nu * np.log(_pos(N, "N") / self.N0))
        return float(out) if np.ndim(out) == 0 else out

    def data_coefficient(self, N: ArrayLike) -> np.ndarray | float:
        """The coefficient of D's term at model size N: B (N/N0)^kappa."""
        out = self.B * np.exp(self.kappa * np.log(_pos(N, "N") / self.N0))
        return float(out) if np.ndim(out) == 0 else out

    def raw_predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray | float:
        N, D = _pos(N, "N"), _pos(D, "D")
        x = np.log(N / self.N0)
        beta = self.beta * np.exp(self.nu * x)
        log_terms = np.logaddexp(np.log(self.A) - self.alpha * np.log(N),
                                 np.log(self.B) + self.kappa * x - beta * np.log(D))
        out = self.E + np.exp(self.gamma * log_terms)
        return float(out) if out.ndim == 0 else out

    def data_slopes(self, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(d ln B(N) / d ln N, d beta(N) / d ln N): (kappa, nu beta(N))."""
        return np.full_like(N, self.kappa), self.nu * self.data_exponent(N)

    def compute_optimal_params(self, D: ArrayLike) -> np.ndarray:
        return stationary_params(self, D)

    def form_text(self) -> str:
        if self.kappa == 0.0 and self.nu == 0.0:
            return _plain_text(self, "kappa = nu = 0", "a data term that depends on N")
        return (f"farseer (data term B (N/N0)^kappa / D^(beta (N/N0)^nu): beta = {self.beta:.3g}, "
                f"kappa = {self.kappa:.3g}, nu = {self.nu:.3g}, N0 = {self.N0:.3g})")

    def with_coefficients(self, coefficients: dict[str, float]) -> "FarseerLaw":
        return FarseerLaw(**{**self.coefficients(), **coefficients})


# Where `stationary_params` looks for the compute-optimal N of a number of tokens (ln N), the grid
# it scans for the first sign change, and the bisection steps within that grid cell.
STATIONARY_LOG_N = (0.0, math.log(1e20))
STATIONARY_GRID = 401
BISECTION_STEPS = 60


def stationary_params(law, D: ArrayLike) -> np.ndarray:
    """N that is compute-optimal for D tokens under a law whose data term T(N, D) = B(N) D^-beta(N)
    depends on N. No closed form: the smallest N in STATIONARY_LOG_N where moving compute from
    tokens to parameters stops paying, the first root from below of dP/d ln N - dP/d ln D,
    P = A N^-alpha + T (E and gamma do not move it),
        -alpha A N^-alpha + T (d ln B/d ln N - (d beta/d ln N) ln D + beta(N)) = 0,
    found on a log grid and refined by bisection in its cell. Where it has no root in that range
    (the size term's slope wins everywhere) it is inf: no size is too large for D tokens."""
    D = np.asarray(_pos(D, "D"), dtype=np.float64)
    log_d = np.log(D)[..., None]

    def gap(log_n: np.ndarray) -> np.ndarray:
        N = np.exp(log_n)
        slope_b, slope_beta = law.data_slopes(N)
        beta = law.data_exponent(N)
        data = law.data_coefficient(N) * np.exp(-beta * log_d)
        return -law.alpha * law.A * np.exp(-law.alpha * log_n) + data * (slope_b - slope_beta * log_d + beta)

    grid = np.linspace(*STATIONARY_LOG_N, STATIONARY_GRID)
    crosses = (gap(grid[:-1]) < 0) & (gap(grid[1:]) >= 0)          # (..., cells)
    found = crosses.any(axis=-1)
    cell = np.argmax(crosses, axis=-1)
    low, high = grid[cell][..., None], grid[np.minimum(cell + 1, len(grid) - 1)][..., None]
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        below = gap(middle) < 0
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return np.where(found, np.exp((low + high)[..., 0] / 2), np.inf)


def _plain_text(law: SupervisedLaw, zero: str, what: str) -> str:
    why = "its runs did not identify " if law.fit is not None and law.fit.not_identified else "no "
    return f"{law.form} with {zero} ({why}{what}: the chinchilla law, beta = {law.beta:.3g})"


LAW_CLASSES = {INTERACTION: InteractionLaw, FARSEER: FarseerLaw}


def supervised_law_from_dict(data: dict) -> SupervisedLaw:
    """A supervised law from law.json, of the class its `form` names (an interaction law keeps beta1,
    a farseer law kappa and nu)."""
    if isinstance(data, dict) and data.get("form") in LAW_CLASSES:
        return LAW_CLASSES[data["form"]].from_dict(data)
    return SupervisedLaw.from_dict(data)
