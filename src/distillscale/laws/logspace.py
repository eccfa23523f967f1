"""The laws as the fitter sees them: log-space parameters, their start grids and bounds, and the
batched log-loss in torch (docs/science.md §4).

    supervised:   log L = LSE(e, gamma * LSE(a - alpha log N, b - beta log D)),  E = exp(e), ...
    distillation: log L_S = LSE(log L_T, z),
                  z = -c0 log L_T - c1 f1 softplus((log L_T - log Ltilde_S - log d1) / f1)
                      + gamma' LSE(a' - alpha' log N_S, b' - beta' log D_S)

`theta` has one row per start, so every function here returns one row of per-run values per start.
Grid values at which a law degenerates are left out of the published grids: gamma = 0 (the loss
no longer depends on N or D, so a start there has no gradient to follow) and f1 = 0 (division by
f1). This is what makes the Busbridge distillation grid 108,000 starts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from distillscale.errors import UserError
from distillscale.laws.lbfgs import Chart


@dataclass(frozen=True)
class Parameter:
    """A fitted parameter: start values of the grid and the box the optimiser stays in."""

    name: str
    grid: tuple[float, ...]
    bounds: tuple[float, float]


@dataclass(frozen=True)
class LogSpaceForm:
    """One law form: its parameters, its batched log-loss with a hand-written vector-Jacobian
    product, and the map from a parameter vector to the law's coefficients.

    `forward(theta (S, P), data) -> (log_loss (S, R), vjp)`, where `vjp(upstream (S, R)) -> (S, P)`
    is sum over runs of upstream * d log_loss / d theta. Written by hand because torch autograd
    spends several times the forward pass on these broadcast shapes.
    """

    name: str
    parameters: tuple[Parameter, ...]
    forward: Callable[[torch.Tensor, dict[str, torch.Tensor]], tuple[torch.Tensor, Callable]]
    to_coefficients: Callable[[np.ndarray], dict[str, float]]
    expand_parameters: Callable[[np.ndarray], np.ndarray] | None = None

    def log_loss(self, theta: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward(theta, data)[0]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def grid(self) -> torch.Tensor:
        """Every combination of the parameters' grid values, shape (starts, parameters)."""
        return torch.tensor(list(itertools.product(*(p.grid for p in self.parameters))),
                            dtype=torch.float64)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = zip(*(p.bounds for p in self.parameters))
        return torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)

    def with_grid(self, grid: dict[str, tuple[float, ...]]) -> "LogSpaceForm":
        """The same form with some parameters' grid values replaced (e.g. a smaller grid)."""
        unknown = set(grid) - set(self.names)
        if unknown:
            raise UserError(f"the {self.name} law has no parameter {sorted(unknown)[0]!r} to set a grid "
                            f"for; its parameters: {', '.join(self.names)}")
        parameters = tuple(Parameter(p.name, tuple(grid.get(p.name, p.grid)), p.bounds)
                           for p in self.parameters)
        return LogSpaceForm(self.name, parameters, self.forward, self.to_coefficients,
                            self.expand_parameters)

    def expand(self, x: np.ndarray) -> np.ndarray:
        """The full parameter vector of the unconstrained law this form restricts (`x` itself for
        an unconstrained form)."""
        x = np.asarray(x, dtype=np.float64)
        return x if self.expand_parameters is None else self.expand_parameters(x)

    def constrained(self, name: str, *, fixed: dict[str, float] | None = None,
                    tied: dict[str, str] | None = None) -> "LogSpaceForm":
        """This form with some parameters held at values (`fixed`, e.g. {"log_E": log 1.7}) or set
        equal to another (`tied`, e.g. {"beta": "alpha"}). The constrained form's parameters are the
        free ones; its forward pass expands them to the full vector and folds the gradient back."""
        fixed, tied = dict(fixed or {}), dict(tied or {})
        unknown = (set(fixed) | set(tied) | set(tied.values())) - set(self.names)
        if unknown:
            raise UserError(f"the {self.name} law has no parameter {sorted(unknown)[0]!r}")
        free = [p for p in self.parameters if p.name not in fixed and p.name not in tied]
        position = {p.name: i for i, p in enumerate(free)}
        # source[j]: which free parameter fills full parameter j (-1: a fixed value).
        source = torch.tensor([position.get(tied.get(p.name, p.name), -1) for p in self.parameters])
        constant = torch.tensor([fixed.get(p.name, 0.0) for p in self.parameters], dtype=torch.float64)
        is_fixed = source < 0
        base = self

        def expand_tensor(theta: torch.Tensor) -> torch.Tensor:
            full = theta[:, source.clamp(min=0)]
            return torch.where(is_fixed, constant.to(theta.dtype), full)

        def forward(theta, data):
            log_loss, vjp = base.forward(expand_tensor(theta), data)

            def folded_vjp(upstream: torch.Tensor) -> torch.Tensor:
                grad_full = vjp(upstream)[:, ~is_fixed]
                return torch.zeros_like(theta).index_add_(1, source[~is_fixed], grad_full)

            return log_loss, folded_vjp

        def expand(x: np.ndarray) -> np.ndarray:
            return base.expand(expand_tensor(torch.as_tensor(np.atleast_2d(x), dtype=torch.float64))
                               .numpy().reshape(*np.shape(x)[:-1], len(base.parameters)))

        return LogSpaceForm(name, tuple(free), forward, lambda x: base.to_coefficients(expand(x)), expand)


def _steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.arange(start, stop + step / 2, step), 10))


def _columns(theta: torch.Tensor) -> list[torch.Tensor]:
    """Parameters as (S, 1) columns, ready to broadcast against per-run (R,) data."""
    return [column[:, None] for column in theta.unbind(dim=1)]


def _logaddexp_and_share(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log(e^u + e^v) and e^u / (e^u + e^v), its derivative with respect to u.

    Two fused kernels (logaddexp, sigmoid) rather than a chain of elementwise steps: on these
    (starts x runs) tensors the fitter's time goes to passes over memory, not arithmetic."""
    return torch.logaddexp(u, v), torch.sigmoid(u - v)


# Bounds: exponents non-negative (loss falls with scale), log-coefficients wide enough for models
# from thousands to trillions of parameters; the optimiser reports a fit that ends on one.
_LOG_COEFFICIENT = (-20.0, 60.0)
_EXPONENT = EXPONENT_BOUNDS = (0.0, 4.0)
_GAMMA = (0.05, 4.0)
_LOG_E = (-5.0, 5.0)


def _power_terms(a, b, alpha, beta, data):
    """log(A/N^alpha + B/D^beta) and a vector-Jacobian product for (a, b, alpha, beta)."""
    log_n, log_d = data["log_n"], data["log_d"]
    lse, share = _logaddexp_and_share(torch.addcmul(a, alpha, log_n, value=-1),
                                      torch.addcmul(b, beta, log_d, value=-1))

    def vjp(upstream: torch.Tensor) -> list[torch.Tensor]:
        on_n = upstream * share
        # Sums of the B/D^beta part are total minus the A/N^alpha part: no second (starts x runs) tensor.
        total_n, total_d = on_n.sum(dim=1), upstream.sum(dim=1)
        return [total_n, total_d - total_n, -(on_n @ log_n), (on_n @ log_d) - (upstream @ log_d)]

    return lse, vjp


def _supervised_forward(theta, data):
    """log L = LSE(e, gamma * LSE(a - alpha log N, b - beta log D)); gamma = 1 with 5 parameters."""
    fixed_gamma = theta.shape[1] == 5
    e, a, b, alpha, beta, *rest = _columns(theta)
    power, power_vjp = _power_terms(a, b, alpha, beta, data)
    log_loss, share_e = _logaddexp_and_share(e, power if fixed_gamma else rest[0] * power)

    def vjp(upstream: torch.Tensor) -> torch.Tensor:
        on_e = upstream * share_e
        on_power = upstream - on_e
        if fixed_gamma:
            return torch.stack([on_e.sum(dim=1), *power_vjp(on_power)], dim=1)
        gamma = rest[0][:, 0]
        # The power terms' gradient is linear in the upstream: scale its sums by gamma afterwards.
        return torch.stack([on_e.sum(dim=1), *(gamma * g for g in power_vjp(on_power)),
                            torch.linalg.vecdot(on_power, power)], dim=1)

    return log_loss, vjp


def _supervised_coefficients(x: np.ndarray) -> dict[str, float]:
    e, a, b, alpha, beta, *gamma = (float(v) for v in x)
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
            "alpha": alpha, "beta": beta, "gamma": gamma[0] if gamma else 1.0}


CHINCHILLA = LogSpaceForm(
    "chinchilla",
    (Parameter("log_E", _steps(-1, 1, 0.5), _LOG_E),
     Parameter("log_A", _steps(0, 25, 5), _LOG_COEFFICIENT),
     Parameter("log_B", _steps(0, 25, 5), _LOG_COEFFICIENT),
     Parameter("alpha", _steps(0, 2, 0.5), _EXPONENT),
     Parameter("beta", _steps(0, 2, 0.5), _EXPONENT)),
    _supervised_forward, _supervised_coefficients)

BUSBRIDGE = LogSpaceForm(
    "busbridge",
    (Parameter("log_E", _steps(-1, 1.5, 0.5), _LOG_E),
     Parameter("log_A", _steps(0, 20, 5), _LOG_COEFFICIENT),
     Parameter("log_B", _steps(0, 20, 5), _LOG_COEFFICIENT),
     Parameter("alpha", _steps(0, 1.5, 0.5), _EXPONENT),
     Parameter("beta", _steps(0, 1.5, 0.5), _EXPONENT),
     Parameter("gamma", _steps(0.5, 1.5, 0.5), _GAMMA)),
    _supervised_forward, _supervised_coefficients)


def _distillation_forward(theta, data):
    a, b, alpha, beta, gamma, c0, c1, f1, log_d1 = _columns(theta)
    log_lt = data["log_teacher_loss"]
    # f1 * softplus(x / f1) is a smooth max(x, 0): the capacity-gap switch at L_T = d1 Ltilde_S.
    scaled = (log_lt - data["log_student_supervised_loss"] - log_d1) / f1
    softplus, switch_share = _logaddexp_and_share(scaled, scaled.new_zeros(()))
    power, power_vjp = _power_terms(a, b, alpha, beta, data)
    z = torch.addcmul(torch.addcmul(gamma * power, c0, log_lt, value=-1), c1 * f1, softplus, value=-1)
    log_loss, share_z = _logaddexp_and_share(z, log_lt)

    def vjp(upstream: torch.Tensor) -> torch.Tensor:
        on_z = upstream * share_z
        on_scaled = on_z * switch_share
        on_softplus = torch.linalg.vecdot(on_z, softplus)
        _, _, _, _, gamma, _, c1, f1, _ = theta.unbind(dim=1)  # per-start factors of the sums
        return torch.stack([
            *(gamma * g for g in power_vjp(on_z)),
            torch.linalg.vecdot(on_z, power),
            -(on_z @ log_lt),
            -f1 * on_softplus,
            # d/df1 [f1 softplus(x/f1)] = softplus(s) - s sigmoid(s), with s = x / f1
            -c1 * (on_softplus - torch.linalg.vecdot(on_scaled, scaled)),
            c1 * on_scaled.sum(dim=1),
        ], dim=1)

    return log_loss, vjp


def _distillation_coefficients(x: np.ndarray) -> dict[str, float]:
    a, b, alpha, beta, gamma, c0, c1, f1, log_d1 = (float(v) for v in x)
    return {"A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": alpha, "beta": beta,
            "gamma": gamma, "c0": c0, "c1": c1, "f1": f1, "d1": float(np.exp(log_d1))}


DISTILLATION = LogSpaceForm(
    "distillation",
    (Parameter("log_A", _steps(0, 20, 5), _LOG_COEFFICIENT),
     Parameter("log_B", _steps(0, 20, 5), _LOG_COEFFICIENT),
     Parameter("alpha", _steps(0, 1, 0.5), _EXPONENT),
     Parameter("beta", _steps(0, 1, 0.5), _EXPONENT),
     Parameter("gamma", _steps(0.5, 1, 0.5), _GAMMA),
     # Busbridge's fit has c1 = 522.6 and c0 = 2.5: the starts are small, the box is not.
     Parameter("c0", _steps(0, 1.5, 0.5), (-10.0, 20.0)),
     Parameter("c1", _steps(0, 1.5, 0.5), (0.0, 5000.0)),
     Parameter("f1", _steps(0.5, 1.5, 0.5), (0.01, 10.0)),
     Parameter("log_d1", _steps(-1, 1, 0.5), (-3.0, 3.0))),
    _distillation_forward, _distillation_coefficients)


def power_chart(form: LogSpaceForm, data: dict[str, torch.Tensor]) -> Chart | None:
    """Coordinates in which the valley of a Busbridge fit, LSE(e, gamma * LSE(a - alpha log N,
    b - beta log D)), is straight, for the polish (`lbfgs.polish`); None for the other forms.

    Such a fit is pinned down by its values across the runs, not by each coefficient: along its
    valley a coefficient trades against its exponent (a - alpha log N is held at the runs' typical
    N), and as gamma grows, a, b, alpha and beta shrink as 1/gamma. In the form's coordinates that
    valley is long and curved, and L-BFGS follows it in thousands of short steps. The chart's are
        p = gamma (a - alpha c_N),  r = gamma alpha,  q = gamma (b - beta c_D),  s = gamma beta,
    c_N and c_D the runs' mean log N and log D, the other parameters as they are. Measured on the
    reports' fits: the Busbridge polish takes 3-8x fewer iterations, to the same or a lower minimum.
    Not for the forms without gamma (no faster), nor for the distillation form: its fits end
    against the box (c1, log B), which the chart does not see, and took longer in it."""
    names = form.names
    if form.name != BUSBRIDGE.name or not {"log_A", "log_B", "alpha", "beta", "gamma"} <= set(names):
        return None
    pairs = [(names.index(coefficient), names.index(exponent), float(data[key].mean()))
             for coefficient, exponent, key in (("log_A", "alpha", "log_n"), ("log_B", "beta", "log_d"))]
    g = names.index("gamma")

    def to_x(z: torch.Tensor) -> torch.Tensor:
        x = z.clone()
        for coefficient, exponent, center in pairs:
            x[:, exponent] = z[:, exponent] / z[:, g]
            x[:, coefficient] = z[:, coefficient] / z[:, g] + center * x[:, exponent]
        return x

    def to_z(x: torch.Tensor) -> torch.Tensor:
        z = x.clone()
        for coefficient, exponent, center in pairs:
            z[:, exponent] = x[:, g] * x[:, exponent]
            z[:, coefficient] = x[:, g] * (x[:, coefficient] - center * x[:, exponent])
        return z

    def pullback(z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        for coefficient, exponent, center in pairs:
            on_exponent = grad[:, exponent] + center * grad[:, coefficient]
            out[:, coefficient] = grad[:, coefficient] / z[:, g]
            out[:, exponent] = on_exponent / z[:, g]
            out[:, g] -= (grad[:, coefficient] * z[:, coefficient] + on_exponent * z[:, exponent]) / z[:, g] ** 2
        return out

    lower, upper = form.bounds()
    changed = [i for pair in pairs for i in pair[:2]]
    lower[changed], upper[changed] = -math.inf, math.inf
    return Chart(to_x, to_z, pullback, lower, upper)


# Tied exponents (alpha = beta): one exponent for both terms, a common and more stable form for
# few or over-trained runs (docs/science.md §8).
TIED = CHINCHILLA.constrained("tied", tied={"beta": "alpha"})

SUPERVISED_FORMS = {"chinchilla": CHINCHILLA, "tied": TIED, "busbridge": BUSBRIDGE}
