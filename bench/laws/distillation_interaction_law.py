"""Does the distilled student's data exponent depend on its size? (issue 55, Build 2)

Busbridge's distillation law (docs/science.md §2) gives the student's data term one exponent beta'
for every student size. The lightest test of that is one more parameter:

    L_S = L_T + L_T^(-c0) (1 + (L_T / (Ltilde_S d1))^(1/f1))^(-c1 f1)
                (A' / N_S^alpha' + B' / D_S^(beta' + beta1 ln(N_S / N0)))^gamma'

N0 the geometric mean of the fitted students' N_S (an origin only), beta1 how much beta' grows per
e-fold of student size; beta1 = 0 is Busbridge's law. It is fitted like the distillation law
(`DistillationLawFitter`: free or with alpha', beta' tied to the supervised law's, the grid's starts
each at BETA1_STARTS) and decided by the supervised interaction form's identification rule
(`laws.interaction.not_identified_reason`): at least MIN_SIZES student sizes, a fit better than
beta1 = 0's beyond the runs' noise, beta1 not on its bound, and with a bootstrap its interval
excluding 0; otherwise the law is Busbridge's fitted to the same runs (beta1 = 0) and its record's
`not_identified["beta1"]` says why. Evidence only (bench/laws/distillation_interaction.py,
docs/validation_pack.md), not a form `fit distillation` offers: the evidence did not pass the rule, so
the law lives beside the bench that tests it, not in the package (issue 66: no dead modules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from distillscale.laws.backtest import scale_levels
from distillscale.laws.fitting import DistillationLawFitter
from distillscale.laws.forms import ArrayLike, DistillationLaw, _pos
from distillscale.laws.interaction import BETA1_BOUNDS, BETA1_STARTS, not_identified_reason
from distillscale.laws.logspace import (
    DISTILLATION,
    LogSpaceForm,
    Parameter,
    _columns,
    _distillation_coefficients,
    _logaddexp_and_share,
)


@dataclass
class DistillationInteractionLaw(DistillationLaw):
    """Busbridge's distillation law with the student's data exponent beta' + beta1 ln(N_S / N0)."""

    beta1: float = 0.0
    N0: float = 1.0

    COEFFICIENTS = (*DistillationLaw.COEFFICIENTS, "beta1", "N0")

    def data_exponent(self, N_S: ArrayLike) -> np.ndarray | float:
        """The student's data exponent at size N_S: beta' + beta1 ln(N_S / N0)."""
        out = self.beta + self.beta1 * np.log(_pos(N_S, "N_S") / self.N0)
        return float(out) if np.ndim(out) == 0 else out

    def predict(self, N_S: ArrayLike, D_S: ArrayLike, L_T: ArrayLike,
                student_supervised_loss: ArrayLike | None = None) -> np.ndarray | float:
        N_S, D_S, L_T = _pos(N_S, "N_S"), _pos(D_S, "D_S"), _pos(L_T, "L_T")
        L_tilde = _pos(self.student_law.predict(N_S, D_S) if student_supervised_loss is None
                       else student_supervised_loss, "student_supervised_loss")
        log_lt = np.log(L_T)
        log_gap = -self.c1 * self.f1 * np.logaddexp(0.0, (log_lt - np.log(L_tilde) - np.log(self.d1)) / self.f1)
        log_power = self.gamma * np.logaddexp(np.log(self.A) - self.alpha * np.log(N_S),
                                              np.log(self.B) - self.data_exponent(N_S) * np.log(D_S))
        out = L_T + np.exp(-self.c0 * log_lt + log_gap + log_power)
        return float(out) if np.ndim(out) == 0 else out


def distillation_interaction_form(log_n0: float) -> LogSpaceForm:
    """The distillation law's log-space form (`laws.logspace`) with beta1 last, N_S's origin at
    exp(log_n0): its power term LSE(a' - alpha' log N_S, b' - (beta' + beta1 (log N_S - log_n0)) log D_S)."""

    def forward(theta, data):
        a, b, alpha, beta, gamma, c0, c1, f1, log_d1, beta1 = _columns(theta)
        log_lt, log_n, log_d = data["log_teacher_loss"], data["log_n"], data["log_d"]
        x_log_d = (log_n - log_n0) * log_d
        scaled = (log_lt - data["log_student_supervised_loss"] - log_d1) / f1
        softplus, switch_share = _logaddexp_and_share(scaled, scaled.new_zeros(()))
        power, share_n = _logaddexp_and_share(a - alpha * log_n, b - beta * log_d - beta1 * x_log_d)
        z = gamma * power - c0 * log_lt - c1 * f1 * softplus
        log_loss, share_z = _logaddexp_and_share(z, log_lt)

        def vjp(upstream: torch.Tensor) -> torch.Tensor:
            on_z = upstream * share_z
            on_scaled = on_z * switch_share
            on_softplus = torch.linalg.vecdot(on_z, softplus)
            g, c1_, f1_ = gamma[:, 0], c1[:, 0], f1[:, 0]
            on_n = on_z * share_n
            on_d = on_z - on_n
            return torch.stack([
                g * on_n.sum(dim=1), g * on_d.sum(dim=1), -g * (on_n @ log_n), -g * (on_d @ log_d),
                torch.linalg.vecdot(on_z, power),
                -(on_z @ log_lt),
                -f1_ * on_softplus,
                -c1_ * (on_softplus - torch.linalg.vecdot(on_scaled, scaled)),
                c1_ * on_scaled.sum(dim=1),
                -g * (on_d @ x_log_d),
            ], dim=1)

        return log_loss, vjp

    def to_coefficients(x: np.ndarray) -> dict[str, float]:
        return {**_distillation_coefficients(x[:-1]), "beta1": float(x[-1])}

    return LogSpaceForm("distillation-interaction",
                        (*DISTILLATION.parameters, Parameter("beta1", BETA1_STARTS, BETA1_BOUNDS)),
                        forward, to_coefficients)


class DistillationInteractionFitter(DistillationLawFitter):
    """`DistillationLawFitter` (its options, tie_exponents included) for the law with beta1; beta1 = 0
    (Busbridge's law fitted to the same runs) where the runs do not identify it (module docstring)."""

    def __init__(self, student_law, **options):
        super().__init__(student_law, **options)
        self.grid = options.get("grid")
        self._set_origin(1.0)

    def _set_origin(self, n0: float) -> None:
        self.n0 = float(n0)
        form = distillation_interaction_form(math.log(self.n0)).with_grid(self.grid or {})
        law = self.student_law
        self.form = (form.constrained("distillation-interaction-tied", fixed={"alpha": law.alpha, "beta": law.beta})
                     if self.tie_exponents else form)

    def constraints(self) -> dict:
        return {**super().constraints(), "N0": self.n0}

    def _plain_options(self) -> dict:
        return {k: v for k, v in self._params.items() if k != "student_law"}

    def fit(self, N_S, D_S, L_T, L_S) -> "DistillationInteractionFitter":
        N_S, D_S, L_T, L_S = (np.asarray(x, dtype=np.float64) for x in (N_S, D_S, L_T, L_S))
        self._set_origin(float(np.exp(np.mean(np.log(N_S)))))
        runs = self._runs(N_S, D_S, L_T, L_S)
        self._fit_log_space(runs)
        law = DistillationInteractionLaw(**self.form.to_coefficients(self.x_), N0=self.n0,
                                         student_law=self.student_law)
        fixed = ("alpha", "beta") if self.tie_exponents else ()
        record = self._finish_record([c for c in (*DistillationLaw.COEFFICIENTS, "beta1") if c not in fixed])
        plain = DistillationLawFitter(self.student_law, **{**self._plain_options(), "bootstrap": 0}).fit(
            N_S, D_S, L_T, L_S).law_
        reason = record.not_identified.get("beta1") or self.not_identified(law, plain, N_S, D_S, L_T, L_S)
        low, high = record.intervals.get("beta1", (None, None))
        if reason is None and low is not None and low <= 0 <= high:
            reason = (f"beta1's {self.level:.0%} interval ({low:.3g} to {high:.3g}) includes 0: Busbridge's law "
                      "(beta1 = 0) is used")
        if reason is not None:
            fallback = DistillationLawFitter(self.student_law, **self._plain_options()).fit(N_S, D_S, L_T, L_S)
            law = DistillationInteractionLaw(**fallback.law_.coefficients(), beta1=0.0, N0=self.n0,
                                             student_law=self.student_law)
            record = fallback.law_.fit.model_copy(update={
                "form": "distillation-interaction",
                "not_identified": {**fallback.law_.fit.not_identified, "beta1": reason},
                "constraints": {**fallback.law_.fit.constraints, "beta1": 0.0, "N0": self.n0}})
            self.intervals_ = fallback.intervals_
        self.not_identified_ = dict(record.not_identified)
        law.fit = record
        self.law_ = law
        return self

    def not_identified(self, law, plain, N_S, D_S, L_T, L_S) -> str | None:
        """Why these runs do not pin beta1 down (`not_identified_reason`), or None."""
        def ssr(fitted) -> float:
            return float(np.sum(np.log(fitted.predict(N_S, D_S, L_T) / L_S) ** 2))

        return not_identified_reason(("beta1",), f"beta1 = {law.beta1:.3g}", sizes=len(scale_levels(N_S)),
                                     points=self._runs(N_S, D_S, L_T, L_S).distinct_points(), ssr=ssr(law),
                                     ssr_plain=ssr(plain), level=self.level, n_parameters=len(self.form.parameters),
                                     plain="Busbridge's law")
