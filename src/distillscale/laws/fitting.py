"""Fitting scaling laws to runs: multi-start L-BFGS on a summed Huber loss of log-residuals, with
bootstrap intervals and diagnostics (science.md §4).

    fitter = SupervisedLawFitter(form="chinchilla", huber_delta=1e-3, bootstrap=1000).fit(N, D, loss)
    fitter.law_              # SupervisedLaw, with the fit record in `law_.fit`
    fitter.intervals_        # {"E": (lo, hi), ...} at `fitter.level`
    fitter.diagnostics_      # RMSE of log-loss, max relative error, bounds and grid-edge flags
    fitter.result_           # MultiStartResult: convergence of every start

Every grid start is optimised (vectorised; the objective runs over cache-sized chunks of starts,
on one intra-op thread by default: for such small tensors, handing work between threads costs more
than it saves, and far more on a busy machine); the best is kept. By default the grid is screened
(`Screening`): every start takes 10 L-BFGS iterations in float32, and the best 2% of them (at least
100) continue to convergence in float64; `screening=None` runs every start to convergence. The
convergence record says how many starts were continued. On the Epoch data screening finds the same
optimum; the distillation law has many minima within ~0.2% of each other in objective, and there a
start that reaches the lowest may look unpromising after 10 iterations, so a screened fit can end
in one of the others (same predictions to ~0.1%).
The bootstrap refits K resamples of the runs (multinomial counts used as weights, so all resamples
are one batched problem) warm-started from the best fit.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch

from distillscale.errors import UserError
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.lbfgs import Screening, minimize_lbfgs, minimize_lbfgs_screened
from distillscale.laws.logspace import DISTILLATION, SUPERVISED_FORMS, LogSpaceForm

# Elements of one (starts x runs) tensor per chunk of the objective: small enough to stay in a
# CPU core's cache (several times faster than streaming from memory) and to bound memory.
CHUNK_ELEMENTS = 32_000


@contextlib.contextmanager
def _intra_op_threads(threads: int | None):
    """Run torch with `threads` intra-op threads inside the block (None: leave torch's setting)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def huber_and_slope(residual: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber_delta(r) (r^2 / 2 inside [-delta, delta], linear outside: the Chinchilla/Epoch objective)
    and its derivative, the residual clamped to [-delta, delta]: Huber_delta(r) = slope * (r - slope / 2)."""
    slope = residual.clamp(-delta, delta)
    return slope * (residual - 0.5 * slope), slope


def huber(residual: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber_delta(r), differentiable by autograd."""
    return huber_and_slope(residual, delta)[0]


class _LogLossFitter:
    """What both fitters share: multi-start fit, bootstrap, diagnostics and the fit record."""

    form: LogSpaceForm

    def __init__(self, *, huber_delta: float, bootstrap: int, level: float, seed: int,
                 max_iter: int, screening: Screening | None, chunk_elements: int, threads: int | None):
        if not huber_delta > 0:
            raise UserError(f"--huber-delta must be positive, got {huber_delta}")
        if bootstrap < 0:
            raise UserError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap}")
        if not 0 < level < 1:
            raise UserError(f"--level must be between 0 and 1 (e.g. 0.9), got {level}")
        self.huber_delta = huber_delta
        self.bootstrap = bootstrap
        self.level = level
        self.seed = seed
        self.max_iter = max_iter
        self.screening = screening
        self.chunk_elements = chunk_elements
        self.threads = threads

    def _objective(self, data: dict[str, torch.Tensor], weights: torch.Tensor | None = None):
        """Summed (optionally count-weighted) Huber loss of log-residuals, and its gradient, in the
        dtype of the parameters it is given.

        Starts are evaluated a chunk at a time so each (starts x runs) tensor stays in cache."""
        form, delta = self.form, self.huber_delta
        chunk = max(1, self.chunk_elements // len(data["log_loss"]))
        by_dtype = {}

        def value_and_grad(theta: torch.Tensor, index: torch.Tensor):
            if theta.dtype not in by_dtype:
                by_dtype[theta.dtype] = ({key: value.to(theta.dtype) for key, value in data.items()},
                                         None if weights is None else weights.to(theta.dtype))
            data_, weights_ = by_dtype[theta.dtype]
            values, grads = [], []
            for rows in torch.split(torch.arange(len(theta)), chunk):
                log_loss, vjp = form.forward(theta[rows], data_)
                losses, slopes = huber_and_slope(log_loss - data_["log_loss"], delta)
                if weights_ is not None:
                    count = weights_[index[rows]]
                    losses, slopes = losses * count, slopes * count
                values.append(losses.sum(dim=1))
                grads.append(vjp(slopes))
            return torch.cat(values), torch.cat(grads)

        return value_and_grad

    def _minimize(self, data, starts: torch.Tensor, weights: torch.Tensor | None = None, *,
                  screened: bool = False):
        """Every row of `starts` from its own start (screened: the grid's, see `Screening`)."""
        lower, upper = self.form.bounds()
        # The gradient of a summed Huber loss scales with delta: so does the gradient tolerance
        # (SciPy's default 1e-5 at the Chinchilla/Epoch delta of 1e-3).
        options = {"max_iter": self.max_iter, "gtol": 1e-2 * self.huber_delta}
        objective = self._objective(data, weights)
        if screened and self.screening is not None:
            return minimize_lbfgs_screened(objective, starts, lower, upper, self.screening, **options)
        return minimize_lbfgs(objective, starts, lower, upper, **options)

    def _fit_log_space(self, data: dict[str, np.ndarray], loss: np.ndarray) -> None:
        n_runs, n_params = len(loss), len(self.form.parameters)
        if n_runs < n_params:
            raise UserError(f"{n_runs} runs cannot determine the {n_params} parameters of the "
                            f"{self.form.name} law: give at least {n_params} runs")
        tensors = {key: torch.as_tensor(np.log(value), dtype=torch.float64)
                   for key, value in {**data, "loss": loss}.items()}
        tensors = {("log_" + key): value for key, value in tensors.items()}
        grid = self.form.grid()
        with _intra_op_threads(self.threads):
            self.result_ = self._minimize(tensors, grid, screened=True)
            self.x_ = self.result_.x
            self.samples_ = self._bootstrap(tensors, n_runs) if self.bootstrap else None

        names = self.form.names
        lower, upper = (b.numpy() for b in self.form.bounds())
        tolerance = 1e-6 * (upper - lower)
        best_start = grid[self.result_.best].numpy()
        predicted = np.exp(self.form.log_loss(torch.as_tensor(self.x_)[None], tensors)[0].numpy())
        log_residual = np.log(predicted) - np.log(loss)
        self.diagnostics_ = {
            "rmse_log_loss": float(np.sqrt(np.mean(log_residual ** 2))),
            "max_relative_error": float(np.max(np.abs(predicted / loss - 1))),
            "on_bound": [name for name, x, lo, hi, tol in zip(names, self.x_, lower, upper, tolerance)
                         if x <= lo + tol or x >= hi - tol],
            "best_start_on_grid_edge": [p.name for p, v in zip(self.form.parameters, best_start)
                                        if len(p.grid) > 1 and v in (min(p.grid), max(p.grid))],
        }
        self.record_ = {
            "form": self.form.name,
            "objective": "sum over runs of Huber_delta(log L_hat - log L)",
            "huber_delta": self.huber_delta,
            "n_runs": n_runs,
            "data_hash": _data_hash(data, loss),
            # Where the law was fitted: planning.extrapolation keeps plans inside it.
            "data_range": {"params": _span(data["n"]), "tokens": _span(data["d"]),
                           "tokens_per_param": _span(data["d"] / data["n"])},
            "grid": {"n_starts": len(grid), "values": {p.name: list(p.grid) for p in self.form.parameters}},
            "bounds": {p.name: list(p.bounds) for p in self.form.parameters},
            "parameters": dict(zip(names, map(float, self.x_))),
            "convergence": self.result_.summary(),
            "diagnostics": self.diagnostics_,
        }

    def _bootstrap(self, tensors: dict[str, torch.Tensor], n_runs: int) -> np.ndarray:
        """K refits on runs resampled with replacement, warm-started from the best fit."""
        rng = np.random.default_rng(self.seed)
        counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs), size=self.bootstrap)
        weights = torch.as_tensor(counts, dtype=torch.float64)
        starts = torch.as_tensor(self.x_, dtype=torch.float64).repeat(self.bootstrap, 1)
        self.bootstrap_result_ = self._minimize(tensors, starts, weights)
        return self.bootstrap_result_.xs

    def _finish_record(self, coefficients: list[str]) -> dict:
        """Intervals per coefficient and the bootstrap samples, added to the fit record."""
        record = dict(self.record_)
        if self.samples_ is None:
            self.intervals_ = {}
            return record
        samples = np.array([[c[name] for name in coefficients]
                            for c in map(self.form.to_coefficients, self.samples_)])
        quantiles = np.quantile(samples, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
        self.intervals_ = {name: (float(lo), float(hi)) for name, lo, hi in zip(coefficients, *quantiles)}
        record.update({
            "level": self.level,
            "intervals": {name: list(bounds) for name, bounds in self.intervals_.items()},
            "bootstrap": {"resamples": self.bootstrap, "seed": self.seed,
                          "convergence": self.bootstrap_result_.summary(),
                          "coefficients": coefficients,
                          "samples": [[float(f"{v:.7g}") for v in row] for row in samples]},
        })
        return record


class SupervisedLawFitter(_LogLossFitter):
    """Fit L(N, D) = E + (A/N^alpha + B/D^beta)^gamma to runs.

    form: "chinchilla" (gamma = 1, Chinchilla grid, delta 1e-3 by default) or "busbridge" (gamma free,
    Busbridge grid, delta 1e-4). grid: replace some parameters' start values, e.g. {"alpha": (0.5,)}.
    """

    def __init__(self, form: str = "chinchilla", *, huber_delta: float | None = None,
                 bootstrap: int = 1000, level: float = 0.9, grid: dict | None = None,
                 seed: int = 0, max_iter: int = 1000, screening: Screening | None = Screening(),
                 chunk_elements: int = CHUNK_ELEMENTS, threads: int | None = 1):
        if form not in SUPERVISED_FORMS:
            raise UserError(f"unknown form {form!r}: use one of {', '.join(SUPERVISED_FORMS)}")
        self.form_name = form
        self.form = SUPERVISED_FORMS[form].with_grid(grid or {})
        default_delta = 1e-3 if form == "chinchilla" else 1e-4
        super().__init__(huber_delta=default_delta if huber_delta is None else huber_delta,
                         bootstrap=bootstrap, level=level, seed=seed, max_iter=max_iter,
                         screening=screening, chunk_elements=chunk_elements, threads=threads)

    def fit(self, N, D, loss) -> "SupervisedLawFitter":
        """N non-embedding parameters, D tokens, loss in nats/token: positive arrays of one length."""
        self._fit_log_space({"n": np.asarray(N, float), "d": np.asarray(D, float)},
                            np.asarray(loss, float))
        coefficients = self.form.to_coefficients(self.x_)
        law = SupervisedLaw(**coefficients)
        fitted = [c for c in SupervisedLaw.COEFFICIENTS if c != "gamma" or self.form_name != "chinchilla"]
        law.fit = self._finish_record(fitted)
        self.law_ = law
        return self

    def predict(self, N, D):
        return self.law_.predict(N, D)


class DistillationLawFitter(_LogLossFitter):
    """Fit the distillation law (Busbridge Eq. 8) to distilled runs, given the student's supervised
    law for Ltilde_S. The bootstrap holds that supervised law fixed."""

    def __init__(self, student_law: SupervisedLaw, *, huber_delta: float = 1e-4,
                 bootstrap: int = 200, level: float = 0.9, grid: dict | None = None,
                 seed: int = 0, max_iter: int = 500, screening: Screening | None = Screening(),
                 chunk_elements: int = CHUNK_ELEMENTS, threads: int | None = 1):
        self.student_law = student_law
        self.form = DISTILLATION.with_grid(grid or {})
        super().__init__(huber_delta=huber_delta, bootstrap=bootstrap, level=level, seed=seed,
                         max_iter=max_iter, screening=screening, chunk_elements=chunk_elements,
                         threads=threads)

    def fit(self, N_S, D_S, L_T, L_S) -> "DistillationLawFitter":
        """Student parameters and tokens, teacher loss and distilled student loss, one per run."""
        N_S, D_S = np.asarray(N_S, float), np.asarray(D_S, float)
        data = {"n": N_S, "d": D_S, "teacher_loss": np.asarray(L_T, float),
                "student_supervised_loss": np.asarray(self.student_law.predict(N_S, D_S), float)}
        self._fit_log_space(data, np.asarray(L_S, float))
        law = DistillationLaw(**self.form.to_coefficients(self.x_), student_law=self.student_law)
        law.fit = self._finish_record(list(DistillationLaw.COEFFICIENTS))
        self.law_ = law
        return self

    def predict(self, N_S, D_S, L_T):
        return self.law_.predict(N_S, D_S, L_T)


def relative_errors(predicted, observed) -> np.ndarray:
    """(predicted - observed) / observed, per run."""
    return np.asarray(predicted, float) / np.asarray(observed, float) - 1.0


def _span(values: np.ndarray) -> list[float]:
    return [float(np.min(values)), float(np.max(values))]


def _data_hash(data: dict[str, np.ndarray], loss: np.ndarray) -> str:
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + np.ascontiguousarray(data[key], dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(loss, dtype=np.float64).tobytes())
    return "sha256:" + digest.hexdigest()[:16]

