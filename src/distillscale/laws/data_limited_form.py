"""The data-limited law's form: the arithmetic its fit and its predictions share.

Each model has a state (L, F): L its loss (nats/token) on its pool, F the loss it would reach with fresh
data at the same size and tokens; p = L - F is its repetition penalty, P a model's penalty trained alone
on its pool (what its size pays with no teacher).

- a student of a teacher (L_T, F_T):  p_S = kappa p_T + lam P_S, F_S the distillation law on F_T;
- a chain (generation 0 trained alone, each next the student of the one before, same N, D, U): the
  penalty goes p_0 = P, p_g = kappa p_{g-1} + lam P, settling at lam P / (1 - kappa); the gains fall
  by kappa each generation;
- an ensemble of k trained alone (logits mixed): L_k = L_1 (1 - s_k), F_k = F_1 (1 - s_k),
  s_k = eta (1 - k^-gamma): a power of k towards a limit (Kim et al. 2025), the share of the member's
  loss an ensemble of many removes being eta;
- a student of an ensemble of k: the student of one member, less theta of the ensemble's gain over one
  member (L_1 - L_k): theta is the share of the ensemble's gain it keeps (0 to 1).

kappa, lam, eta, gamma and theta may be floats or arrays (the bootstrap's draws, one row each), so one
call prices a loss at every draw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# The 90% quantile of a normal error: a residual's standard deviation times it is its 90% half-width.
Z90 = 1.6448536269514722
# The names of the shares, in the order the bootstrap's draws store them.
SHARE_NAMES = ("kappa", "lam", "eta", "gamma", "theta")
# Where each share may lie: a student inherits at most its teacher's whole penalty and pays at most its own
# size's; an ensemble removes at most the member's whole loss; gamma within what k = 2-8 can tell; a student
# keeps at most its ensemble's whole gain.
BOUNDS = {"kappa": (0.0, 1.0), "lam": (0.0, 1.0), "eta": (0.0, 1.0), "gamma": (0.1, 4.0), "theta": (0.0, 1.0)}


@dataclass(frozen=True)
class Shares:
    """The law's constants at one point (floats) or at many (arrays of one length: the draws)."""

    kappa: float | np.ndarray
    lam: float | np.ndarray
    eta: float | np.ndarray
    gamma: float | np.ndarray
    theta: float | np.ndarray

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> "Shares":
        """Shares from an array of rows (kappa, lam, eta, gamma, theta)."""
        rows = np.asarray(rows, float).reshape(-1, len(SHARE_NAMES))
        return cls(*(rows[:, i] for i in range(len(SHARE_NAMES))))

    def rows(self) -> np.ndarray:
        return np.column_stack([np.atleast_1d(np.asarray(getattr(self, f.name), float)) for f in fields(self)])

    def student_penalty(self, teacher_penalty, own_penalty):
        """p_S = kappa p_T + lam P_S: what a student's loss lies above its fresh-data loss."""
        return self.kappa * np.asarray(teacher_penalty, float) + self.lam * np.asarray(own_penalty, float)

    def chain_penalty(self, alone_penalty, generation: int):
        """p_g of a chain whose generation 0 pays `alone_penalty` (P): kappa^g P + lam P (1 + ... + kappa^(g-1))."""
        p = np.asarray(alone_penalty, float) + 0.0 * self.kappa
        for _ in range(generation):
            p = self.student_penalty(p, alone_penalty)
        return p

    def ensemble_share(self, members: int):
        """s_k = eta (1 - k^-gamma): the share of one member's loss an ensemble of k removes (0 at k = 1)."""
        return self.eta * (1.0 - float(members) ** -np.asarray(self.gamma, float))

    def ensemble_student_gain(self, ensemble_gain):
        """theta (L_1 - L_k): what a student of an ensemble gains beyond the student of one member."""
        return self.theta * np.asarray(ensemble_gain, float)


def quadrature(*halves) -> np.ndarray | float:
    """Half-widths of independent errors combined: the square root of their squares' sum."""
    return np.sqrt(sum(np.asarray(h, float) ** 2 for h in halves))


def spread(values: np.ndarray, value: float, level: float = 0.9) -> tuple[float, float]:
    """How far below and above `value` the central `level` of `values` (a loss at each draw) reaches
    (each >= 0): the constants' part of an interval."""
    values = np.asarray(values, float)
    if values.size == 0:
        return 0.0, 0.0
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return max(0.0, value - float(low)), max(0.0, float(high) - value)


def reach(values: np.ndarray, value: float) -> tuple[float, float]:
    """How far below and above `value` any of `values` lies (each >= 0): the constants' part of an
    interval taken over every admissible constant (beyond where they were measured)."""
    values = np.asarray(values, float)
    if values.size == 0:
        return 0.0, 0.0
    return max(0.0, value - float(values.min())), max(0.0, float(values.max()) - value)


def loss_interval(value: float, at_draws: np.ndarray, residual_sd: float, level: float = 0.9,
                  own: tuple[float, float] | None = None, at_corners: np.ndarray | None = None) -> tuple[float, float]:
    """A data-limited loss's interval, the one every surface prints and the fit's checks score: its law's
    own interval (`own`, (low, high); None: a measured base, no law's error), the constants' part (the
    central `level` of the loss at the bootstrap's draws; with `at_corners`, beyond the measured range, how
    far any draw or admissible corner reaches) and the fit's residual (a standard deviation, nats/token),
    combined in quadrature on each side."""
    if at_corners is not None:
        below, above = reach(np.append(np.asarray(at_corners, float), np.asarray(at_draws, float)), value)
    else:
        below, above = spread(at_draws, value, level)
    half = Z90 * float(residual_sd)
    own_below, own_above = (0.0, 0.0) if own is None else (value - float(own[0]), float(own[1]) - value)
    return (value - float(quadrature(own_below, below, half)), value + float(quadrature(own_above, above, half)))
