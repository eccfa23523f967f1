"""Fitting the forms whose data term depends on model size (`laws.interaction_law`):

    interaction: L(N, D) = E + A / N^alpha + B / D^(beta + beta1 ln(N / N0))
    farseer:     L(N, D) = E + A / N^alpha + B (N/N0)^kappa / D^(beta (N/N0)^nu)

with the supervised fitter's machinery: Huber loss on log-loss, starts from variable projection
(the chinchilla form's best exponent pairs, each at several beta1), batched L-BFGS, the bootstrap,
and backtest folds fitted as one batch (`fit_subsets`). `fit_supervised(form="interaction")`
(`--form interaction`) backtests it like any form.

The rule below is written for beta1; the farseer form follows it with its two interaction
parameters (kappa, nu) together: the likelihood-ratio threshold is the chi-square quantile with
2 degrees of freedom, each bootstrap interval must exclude 0, and when any test fails both are 0.

Identification first. With few model sizes beta1 trades off against the other coefficients, and a
free exponent carried far beyond the runs is the extrapolation the form exists to improve, not
to invent. beta1 is kept only when every test below passes; otherwise the law is the chinchilla
fit to the same runs (beta1 = 0) and its record's `not_identified["beta1"]` says which failed:
- the runs cover at least MIN_SIZES model sizes;
- beta1 improves the fit beyond the runs' noise: the sum of squared log-residuals of the fit with
  beta1 = 0 exceeds the interaction fit's by more than z^2 residual variances (z the normal
  quantile of the fit's `level`, the variance the interaction fit's per degree of freedom: the
  likelihood-ratio rule `irreducible_loss_profile` uses for E);
- with a bootstrap: beta1 is not on a bound nor left in place by it, and its interval excludes 0.
The same rule decides each backtest fold, so the backtest measures the form as it is used.

Farseer (Li et al. 2025, arXiv 2506.10972) makes both the data exponent and its coefficient
smooth functions of N fitted on ~1,000 models; the farseer form is its surface to first order in
ln N (`laws.interaction_law`; docs/validation_pack.md, "Interaction forms").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np
import torch

from distillscale.errors import UserError
from distillscale.laws.backtest import scale_levels
from distillscale.laws.fitting import VARPRO_STARTS, Runs, SupervisedLawFitter
from distillscale.laws.interaction_law import FARSEER, INTERACTION, LAW_CLASSES, FarseerLaw, InteractionLaw
from distillscale.laws.logspace import (CHINCHILLA, SUPERVISED_FORMS, LogSpaceForm, Parameter,
                                        _logaddexp_and_share)
from distillscale.laws.varpro import varpro_starts

# Fewer model sizes than this cannot pin an exponent that changes with size: beta1 = 0.
MIN_SIZES = 4
# beta1's box (per e-fold of N) and its starts around each chinchilla solution.
BETA1_BOUNDS = (-0.5, 0.5)
BETA1_STARTS = (-0.03, 0.0, 0.03)
# The farseer form's: the data coefficient's power of N/N0 and the data exponent's.
KAPPA_BOUNDS, KAPPA_STARTS = (-1.0, 1.0), (-0.1, 0.0, 0.1)
NU_BOUNDS, NU_STARTS = (-0.5, 0.5), (-0.03, 0.0, 0.03)


def _three_terms(e: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
    """log L = LSE(e, LSE(u, v)) (E, the N term, the D term), and the split of an upstream gradient
    on log L into its parts on e, u and v (each term's share of L)."""
    power, share_n = _logaddexp_and_share(u, v)
    log_loss, share_e = _logaddexp_and_share(e, power)

    def split(upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        on_e = upstream * share_e
        on_power = upstream - on_e
        on_n = on_power * share_n
        return on_e, on_n, on_power - on_n

    return log_loss, split


def interaction_form(log_n0: float) -> LogSpaceForm:
    """The log-space form, N's origin at exp(log_n0):
    log L = LSE(e, LSE(a - alpha log N, b - (beta + beta1 (log N - log_n0)) log D))."""

    def forward(theta, data):
        e, a, b, alpha, beta, beta1 = (column[:, None] for column in theta.unbind(dim=1))
        log_n, log_d = data["log_n"], data["log_d"]
        x_log_d = (log_n - log_n0) * log_d
        log_loss, split = _three_terms(e, a - alpha * log_n, b - beta * log_d - beta1 * x_log_d)

        def vjp(upstream: torch.Tensor) -> torch.Tensor:
            on_e, on_n, on_d = split(upstream)
            return torch.stack([on_e.sum(dim=1), on_n.sum(dim=1), on_d.sum(dim=1), -(on_n @ log_n),
                                -(on_d @ log_d), -(on_d @ x_log_d)], dim=1)

        return log_loss, vjp

    def to_coefficients(x: np.ndarray) -> dict[str, float]:
        e, a, b, alpha, beta, beta1 = (float(v) for v in x)
        return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta,
                "gamma": 1.0, "beta1": beta1}

    return LogSpaceForm(INTERACTION, (*CHINCHILLA.parameters, Parameter("beta1", BETA1_STARTS, BETA1_BOUNDS)),
                        forward, to_coefficients)


def farseer_form(log_n0: float) -> LogSpaceForm:
    """The log-space farseer form, N's origin at exp(log_n0), x = log N - log_n0:
    log L = LSE(e, LSE(a - alpha log N, b + kappa x - beta exp(nu x) log D))."""

    def forward(theta, data):
        e, a, b, alpha, beta, kappa, nu = (column[:, None] for column in theta.unbind(dim=1))
        log_n, log_d = data["log_n"], data["log_d"]
        x = log_n - log_n0
        growth = torch.exp(nu * x)
        beta_n = beta * growth
        log_loss, split = _three_terms(e, a - alpha * log_n, b + kappa * x - beta_n * log_d)

        def vjp(upstream: torch.Tensor) -> torch.Tensor:
            on_e, on_n, on_d = split(upstream)
            return torch.stack([on_e.sum(dim=1), on_n.sum(dim=1), on_d.sum(dim=1), -(on_n @ log_n),
                                -(on_d * growth * log_d).sum(dim=1), on_d @ x,
                                -(on_d * beta_n * log_d * x).sum(dim=1)], dim=1)

        return log_loss, vjp

    def to_coefficients(x: np.ndarray) -> dict[str, float]:
        e, a, b, alpha, beta, kappa, nu = (float(v) for v in x)
        return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta,
                "gamma": 1.0, "kappa": kappa, "nu": nu}

    return LogSpaceForm(FARSEER, (*CHINCHILLA.parameters, Parameter("kappa", KAPPA_STARTS, KAPPA_BOUNDS),
                                  Parameter("nu", NU_STARTS, NU_BOUNDS)), forward, to_coefficients)


@dataclass(frozen=True)
class InteractionSpec:
    """An interaction form: its log-space form (given log N0) and the parameters it adds to
    chinchilla's five, each 0 where the runs do not identify them."""

    build: Callable[[float], LogSpaceForm]
    extras: tuple[str, ...]

    def values(self, law) -> str:
        return ", ".join(f"{name} = {getattr(law, name):.3g}" for name in self.extras)

    @property
    def zero(self) -> str:
        return " = ".join(self.extras) + " = 0"


SPECS = {INTERACTION: InteractionSpec(interaction_form, ("beta1",)),
         FARSEER: InteractionSpec(farseer_form, ("kappa", "nu"))}
INTERACTION_FORMS = tuple(SPECS)
# Every supervised form a fit may be given (`fit_supervised(form=...)`, `--form`), besides auto.
SUPERVISED_FORM_NAMES = (*SUPERVISED_FORMS, *INTERACTION_FORMS)
# Their coefficients: chinchilla's five and the extras (N0 is a fixed origin, not fitted).
N_PARAMETERS = {form: len(CHINCHILLA.parameters) + len(spec.extras) for form, spec in SPECS.items()}


def _ssr(law, N, D, loss) -> float:
    return float(np.sum(np.log(law.predict(N, D) / loss) ** 2))


def chi_square_quantile(level: float, dof: int) -> float:
    """The chi-square quantile at `level` with 1 (z^2) or 2 (-2 ln(1 - level)) degrees of freedom."""
    if dof == 1:
        return NormalDist().inv_cdf((1 + level) / 2) ** 2
    if dof == 2:
        return -2.0 * math.log1p(-level)
    raise ValueError(f"no chi-square quantile for {dof} degrees of freedom")


def not_identified_reason(extras: tuple[str, ...], values: str, *, sizes: int, points: int, ssr: float,
                          ssr_plain: float, level: float, n_parameters: int,
                          plain: str = "the chinchilla law") -> str | None:
    """Why runs of `sizes` model sizes (`points` distinct runs) do not pin the interaction
    parameters `extras` (fitted at `values`, in words) down: the size and noise tests of the module
    docstring; None when they do. `ssr`, `ssr_plain`: the sums of squared log-residuals of the fit
    with them and with them 0 (`plain`, in words). Every law whose data term may depend on N decides
    by it (`SPECS`; the distillation law's, `bench/laws/distillation_interaction_law.py`)."""
    zero = " = ".join(extras) + " = 0"
    if sizes < MIN_SIZES:
        return (f"{sizes} model size{'s' if sizes != 1 else ''} cannot pin a data term that changes with "
                f"size (at least {MIN_SIZES}): {plain} ({zero}) is used")
    variance = max(ssr / max(points - n_parameters, 1), 1e-30)
    threshold = chi_square_quantile(level, len(extras)) * variance
    if ssr_plain - ssr <= threshold:
        return (f"{values} fit{'s' if len(extras) == 1 else ''} the runs no better than {zero} within their "
                f"noise (squared log-residuals {ssr_plain:.3g} -> {ssr:.3g}, less than {threshold:.2g} apart): "
                f"{plain} ({zero}) is used")
    return None


def interaction_not_identified(law, plain, N, D, loss, *, level: float, n_parameters: int) -> str | None:
    """Why the runs do not pin the law's interaction parameters down (`not_identified_reason`), or None."""
    spec = SPECS[law.form]
    return not_identified_reason(spec.extras, spec.values(law), sizes=len(scale_levels(N)),
                                 points=Runs(N, D, loss).distinct_points(), ssr=_ssr(law, N, D, loss),
                                 ssr_plain=_ssr(plain, N, D, loss), level=level, n_parameters=n_parameters)


class InteractionLawFitter(SupervisedLawFitter):
    """Fit an interaction form (`SPECS`: interaction, farseer), N0 the geometric mean of the runs'
    N; its interaction parameters 0 (the chinchilla fit) when the runs do not identify them.
    Takes SupervisedLawFitter's options (E fixed or with a prior, exponent priors on alpha and
    beta, bootstrap, level, huber_delta, ...); its starts come from variable projection."""

    def __init__(self, form: str = INTERACTION, *, solver: str = "auto", grid: dict | None = None, **options):
        if form not in INTERACTION_FORMS:
            raise UserError(f"unknown interaction form {form!r}: use {', '.join(INTERACTION_FORMS)}")
        if grid:
            raise UserError("the interaction form starts from variable projection: it takes no --grid")
        super().__init__("chinchilla", solver="varpro", **options)
        self._params = {**self._params, "form": form}
        self._params.pop("solver", None)
        self._params.pop("grid", None)
        self.form_name = form
        self.spec = SPECS[form]
        self.chinchilla = SupervisedLawFitter("chinchilla", **{**options, "bootstrap": 0})
        self._set_origin(1.0)

    def _set_origin(self, n0: float) -> None:
        """The form with N's origin at n0 (E held when the fitter holds it)."""
        self.n0 = float(n0)
        form = self.spec.build(math.log(self.n0))
        self.form = form if self.irreducible_loss is None else \
            form.constrained(self.form_name, fixed={"log_E": math.log(self.irreducible_loss)})

    def constraints(self) -> dict:
        return {**super().constraints(), "N0": self.n0}

    def _vector(self, coefficients: dict[str, float]) -> np.ndarray:
        values = {"log_E": math.log(coefficients["E"]), "log_A": math.log(coefficients["A"]),
                  "log_B": math.log(coefficients["B"]), "alpha": coefficients["alpha"],
                  "beta": coefficients["beta"], **{name: coefficients.get(name, 0.0) for name in self.spec.extras}}
        return np.array([values[name] for name in self.form.names])

    def _starts(self, tensors, irreducible_loss: float | None = None):
        if irreducible_loss is not None and self.irreducible_loss is not None:
            raise UserError("this fit holds E at a value already: it cannot hold it at another")
        held = self.irreducible_loss if irreducible_loss is None else irreducible_loss
        rows = varpro_starts(tensors["log_n"].numpy(), tensors["log_d"].numpy(), tensors["log_loss"].exp().numpy(),
                             irreducible_loss=held, huber_delta=self.huber_delta, n_starts=VARPRO_STARTS)
        full_form = self.spec.build(0.0)
        extras = [p for p in full_form.parameters if p.name in self.spec.extras]
        grid = list(itertools.product(*(p.grid for p in extras)))
        full = np.concatenate([np.column_stack([rows, np.tile(values, (len(rows), 1))]) for values in grid])
        columns = [full_form.names.index(name) for name in self.form.names]
        return (torch.as_tensor(full[:, columns]), False,
                f"variable projection over alpha, beta (the chinchilla form), best {len(rows)} each at "
                + "; ".join(f"{p.name} " + ", ".join(map(str, p.grid)) for p in extras) + ", polished by L-BFGS")

    def clone(self, **overrides) -> "SupervisedLawFitter":
        """scikit-learn's clone; a form of another family (the repetition refit's chinchilla) gets
        that family's fitter with the same options (E, priors, bootstrap, ...)."""
        if overrides.get("form", self.form_name) not in INTERACTION_FORMS:
            return SupervisedLawFitter(**{**self._params, **overrides})
        twin = super().clone(**overrides)
        twin._set_origin(self.n0)  # a subset's fit reads its parameters at this fitter's origin
        return twin

    def _law(self, x: np.ndarray) -> InteractionLaw | FarseerLaw:
        return LAW_CLASSES[self.form_name](**self.form.to_coefficients(x), N0=self.n0)

    def _plain(self, law) -> InteractionLaw | FarseerLaw:
        """A chinchilla law as a law of this form, its interaction parameters 0."""
        return LAW_CLASSES[self.form_name](**law.coefficients(), **dict.fromkeys(self.spec.extras, 0.0),
                                           N0=self.n0)

    def _free_parameters(self) -> int:
        return len(self.form.parameters)

    def fit(self, N, D, loss) -> "InteractionLawFitter":
        N, D, loss = (np.asarray(x, dtype=np.float64) for x in (N, D, loss))
        self._set_origin(float(np.exp(np.mean(np.log(N)))))
        self._fit_log_space(Runs(N, D, loss))
        law = self._law(self.x_)
        extras = self.spec.extras
        fixed = [name for name, value in self.constraints().items() if isinstance(value, float)]
        record = self._finish_record([c for c in ("E", "A", "B", "alpha", "beta", *extras) if c not in fixed])
        plain = self.chinchilla.fit(N, D, loss).law_
        reason = next((f"{name}: {record.not_identified[name]}" if len(extras) > 1 else record.not_identified[name]
                       for name in extras if name in record.not_identified), None)
        reason = reason or interaction_not_identified(law, plain, N, D, loss, level=self.level,
                                                      n_parameters=self._free_parameters())
        for name in extras:
            low, high = record.intervals.get(name, (None, None))
            if reason is None and low is not None and low <= 0 <= high:
                reason = (f"{name}'s {self.level:.0%} interval ({low:.3g} to {high:.3g}) includes 0: the chinchilla "
                          f"law ({self.spec.zero}) is used")
        if reason is not None:
            # The plain law, with its own bootstrap and record: what the runs do identify.
            fallback = SupervisedLawFitter("chinchilla", **{k: v for k, v in self._params.items() if k != "form"})
            fallback.fit(N, D, loss)
            law = self._plain(fallback.law_)
            not_identified = {**fallback.law_.fit.not_identified, **dict.fromkeys(extras, reason)}
            record = fallback.law_.fit.model_copy(update={
                "form": self.form_name, "not_identified": not_identified,
                "constraints": {**fallback.law_.fit.constraints, **dict.fromkeys(extras, 0.0), "N0": self.n0}})
            self.intervals_ = fallback.intervals_
        self.not_identified_ = dict(record.not_identified)
        law.fit = record
        self.law_ = law
        return self

    def fit_subsets(self, N, D, loss, masks: list[np.ndarray],
                    irreducible_losses: list[float | None] | None = None) -> list[InteractionLaw | FarseerLaw | str]:
        """Point fits on each subset (one batch), each with the identification rule applied: the
        law of this form, or the chinchilla law as one with its interaction parameters 0."""
        N, D, loss = (np.asarray(x, dtype=np.float64) for x in (N, D, loss))
        self._set_origin(float(np.exp(np.mean(np.log(N)))))
        fits = self._fit_subsets(Runs(N, D, loss), masks, irreducible_losses)
        plains = self.chinchilla.fit_subsets(N, D, loss, masks, irreducible_losses)
        held = list(irreducible_losses) if irreducible_losses is not None else [None] * len(masks)
        bounds = {p.name: p.bounds for p in self.form.parameters}
        out: list[InteractionLaw | FarseerLaw | str] = []
        for fit, plain, mask, e in zip(fits, plains, masks, held):
            if isinstance(fit, str) or isinstance(plain, str):
                out.append(fit if isinstance(fit, str) else plain)
                continue
            law = self._law(fit)
            on_bound = any(not bounds[name][0] + 1e-6 < getattr(law, name) < bounds[name][1] - 1e-6
                           for name in self.spec.extras)
            reason = "on a bound" if on_bound else interaction_not_identified(
                law, plain, N[mask], D[mask], loss[mask], level=self.level,
                n_parameters=self._free_parameters() - (e is not None))
            out.append(law if reason is None else self._plain(plain))
        return out

    def predict_subsets(self, N, D, loss, masks: list[np.ndarray]) -> list[np.ndarray | str]:
        return [law if isinstance(law, str) else law.predict(N, D) for law in self.fit_subsets(N, D, loss, masks)]
