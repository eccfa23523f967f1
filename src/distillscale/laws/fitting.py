"""Fitting scaling laws to runs: multi-start L-BFGS on a summed Huber loss of log-residuals, with
bootstrap intervals and diagnostics (docs/science.md §4).

    fitter = SupervisedLawFitter(form="chinchilla", huber_delta=1e-3, bootstrap=1000).fit(N, D, loss)
    fitter.law_              # SupervisedLaw, with its FitRecord (`laws.record`) in `law_.fit`
    fitter.intervals_        # {"E": (lo, hi), ...} at `fitter.level`
    fitter.diagnostics_      # Diagnostics: RMSE of log-loss, max relative error, bounds and grid-edge flags
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

The gamma = 1 supervised forms (chinchilla, tied) are solved by variable projection by default
(`laws.varpro`: every exponent pair on a fine grid gets its exact (E, A, B), the best pairs are
polished by L-BFGS): as exact as the grid of starts and several times faster, which matters once
backtests multiply the number of fits. A coefficient that the data cannot pin down (it ends on a
bound of the box, the bootstrap never moves it, its interval spans more than DECADES decades, or
for E: it lies below E_FLOOR_FRACTION of the lowest observed loss) is listed in the record's
`not_identified`, never reported as an estimate with an interval. `irreducible_loss_profile` then
says which E the runs allow, and predictions carry that range (`laws.forms`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from statistics import NormalDist

import numpy as np
import torch

from distillscale.errors import ParameterError, UserError
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.lbfgs import Screening, minimize_lbfgs, minimize_lbfgs_screened, polish
from distillscale.laws.logspace import BUSBRIDGE, DISTILLATION, SUPERVISED_FORMS, LogSpaceForm, power_chart
from distillscale.laws.objective import ExponentPrior, PriorTerm, Runs, huber_and_slope
from distillscale.laws.record import Bootstrap, Diagnostics, FitRecord, Profile
from distillscale.laws.ties import first_lowest
from distillscale.laws.varpro import varpro_starts

# Elements of one (starts x runs) tensor per chunk of the objective: small enough to stay in a
# CPU core's cache (several times faster than streaming from memory) and to bound memory.
CHUNK_ELEMENTS = 32_000
# Starts that variable projection hands to L-BFGS: the best exponent pairs (gamma = 1 forms), and
# for the Busbridge form the best few at each gamma below.
VARPRO_STARTS = 20
BUSBRIDGE_SEEDS = 20
BUSBRIDGE_GAMMAS = (0.5, 0.75, 1.0, 1.5)
# Relative reduction of the objective below which a start stops (SciPy's L-BFGS-B default).
FTOL = 2.2e-9
# Bootstrap intervals: at least MIN_TAIL resamples beyond each end of the interval (20 at 90%), else
# its ends are the extreme resamples and it can miss the estimate itself; fewer than ROUGH_BELOW are
# allowed with a warning.
MIN_TAIL = 1
ROUGH_BELOW = 100
# The best POLISH_STARTS starts of a fit (of each backtest fold) are taken on to a gradient below
# POLISH_GTOL times the Huber delta: the usual tolerance stops starts anywhere along a flat valley,
# and which of them wins then depends on the CPU and on the order of the runs (on the Epoch runs
# below 92M parameters the Busbridge fit's E moved from 2.04 to 2.56 with the rows reordered, and
# the default's error 2-8x beyond with it, 0.6% -> 1.1%). Twenty, not ten: the Busbridge fit of those
# runs, rows shuffled eight ways, reached its best minimum (E 2.77, not 0.52) in 7 of 8 orders with 20
# polished starts, 5 of 8 with 10. POLISH_MAX_ITER bounds the extra work.
POLISH_STARTS = 20
POLISH_GTOL = 1e-9
POLISH_MAX_ITER = 5000


def min_resamples(level: float) -> int:
    """The fewest bootstrap resamples for `level` intervals: MIN_TAIL beyond each end."""
    return math.ceil(2 * MIN_TAIL / (1 - level) - 1e-9)


def check_intervals(bootstrap, level) -> None:
    """`bootstrap` (0, or enough resamples for `level`) and `level` (between 0 and 1), as given to a
    fit: ParameterError naming the one that is wrong."""
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise ParameterError("level", "{} must be a number between 0 and 1 (e.g. 0.9), got {value!r}", value=level)
    if not 0 < level < 1:
        raise ParameterError("level", "{} must be between 0 and 1 (e.g. 0.9), got {value!r}", value=level)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ParameterError("bootstrap", "{} must be 0 (no intervals) or a whole number of resamples, got {value!r}",
                             value=bootstrap)
    if 0 < bootstrap < min_resamples(level):
        raise ParameterError("bootstrap", "{} " + f"{bootstrap} is too few resamples for {level:.0%} intervals (their "
                             "ends would be the extreme resamples): give 0 for no intervals, or at least "
                             f"{min_resamples(level)} ({ROUGH_BELOW} or more for intervals to rely on)")


# A coefficient that the bootstrap moves by less than this (relative) is not identified.
FLAT = 1e-4
# A coefficient whose interval spans more than this many decades (high / low > 10^DECADES) is not
# identified: the runs allow values a thousand times apart (the micro demo's runs: A from 1.8e-5 to 9.5e9).
DECADES = 3
# An irreducible loss E below this fraction of the lowest observed loss is not identified: the runs
# never come near where the loss levels off, so E is the power law carried to infinite scale, not a
# measurement (the micro demo: E = 0.027 on runs that all lie above 2.4). Published fits sit at 0.4-0.9
# of their lowest loss (Chinchilla's E = 1.69 under runs near 2).
E_FLOOR_FRACTION = 0.2
# Start grids of "coarse" fits: a few hundred starts instead of the papers' thousands (4,500
# supervised, 108,000 distillation), for backtest refits and micro sweeps; the same values,
# thinned, so a coarse fit starts where the full grid would.
COARSE_GRIDS = {
    "supervised": {"log_E": (-1.0, 0.0, 1.0), "log_A": (0.0, 5.0, 10.0, 15.0),
                   "log_B": (0.0, 5.0, 10.0, 15.0), "alpha": (0.5, 1.0), "beta": (0.5, 1.0)},
    "distillation": {"log_A": (0.0, 5.0, 10.0), "log_B": (0.0, 5.0, 10.0), "alpha": (0.5,), "beta": (0.5,),
                     "c0": (0.0, 1.0), "c1": (0.5, 1.5), "f1": (0.5, 1.5), "log_d1": (-0.5, 0.0, 0.5)},
}


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


def remembers_arguments(init):
    """Keep the arguments a fitter was built with (defaults filled in), so `clone` can build its twin."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self._params = {name: value for name, value in bound.arguments.items() if name != "self"}
        init(self, *args, **kwargs)
    return wrapper


class _LogLossFitter:
    """What both fitters share: multi-start fit, bootstrap, diagnostics and the fit record."""

    form: LogSpaceForm
    _params: dict  # the arguments it was built with (`remembers_arguments`)
    # Gaussian priors on coefficients (see `_penalty`); set by a fitter that has any.
    _prior: tuple[PriorTerm, ...] = ()

    def __init__(self, *, huber_delta: float, bootstrap: int, level: float, seed: int,
                 max_iter: int, ftol: float, screening: Screening | None, chunk_elements: int,
                 threads: int | None, polish: bool = True):
        if isinstance(huber_delta, bool) or not isinstance(huber_delta, (int, float)):
            raise ParameterError("huber_delta", "{} must be a number, got {value!r}", value=huber_delta)
        if not huber_delta > 0:
            raise ParameterError("huber_delta", "{} must be positive, got {value!r}", value=huber_delta)
        check_intervals(bootstrap, level)
        self.huber_delta = huber_delta
        self.bootstrap = bootstrap
        self.level = level
        self.seed = seed
        self.max_iter = max_iter
        self.ftol = ftol
        self.screening = screening
        self.chunk_elements = chunk_elements
        self.threads = threads
        self.polish = polish  # the best starts taken on to a tight tolerance (POLISH_STARTS)

    def clone(self, **overrides) -> "_LogLossFitter":
        """A new, unfitted fitter with the same settings except `overrides` (scikit-learn's clone):
        backtests refit the same law on subsets of the runs with it."""
        return type(self)(**{**self._params, **overrides})

    def _penalty(self, theta: torch.Tensor, noise_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian priors on coefficients, each as one more run: its pseudo-residual is the
        coefficient's distance from the prior mean in prior SDs, times `noise_scale` (the runs' own
        log-residual scale), so one prior SD weighs as much as one typical run's misfit."""
        total = torch.zeros(len(theta), dtype=theta.dtype)
        grad = torch.zeros_like(theta)
        for term in self._prior:
            value, partials = term.value(theta)
            residual = noise_scale * (value - term.mean) / term.sd
            loss, slope = huber_and_slope(residual, self.huber_delta)
            total = total + loss
            for index, partial in partials:
                grad[:, index] += slope * noise_scale * partial / term.sd
        return total, grad

    def _objective(self, data: dict[str, torch.Tensor], weights: torch.Tensor | None = None,
                   noise_scale: float | None = None, pinned: torch.Tensor | None = None):
        """Summed (optionally count-weighted) Huber loss of log-residuals, plus the prior's penalty
        when the fitter has one, and its gradient, in the dtype of the parameters it is given.
        `pinned` (one flag per start): those starts' log_E gets no gradient, so it stays where it
        started (a profile over E solved as one batch, `_fit_subsets`).

        Starts are evaluated a chunk at a time so each (starts x runs) tensor stays in cache."""
        form, delta = self.form, self.huber_delta
        chunk = max(1, self.chunk_elements // len(data["log_loss"]))
        by_dtype = {}
        e_column = form.names.index("log_E") if pinned is not None else None

        def value_and_grad(theta: torch.Tensor, index: torch.Tensor):
            if theta.dtype not in by_dtype:
                by_dtype[theta.dtype] = ({key: value.to(theta.dtype) for key, value in data.items()},
                                         None if weights is None else weights.to(theta.dtype))
            data_, weights_ = by_dtype[theta.dtype]

            def rows_value_and_grad(rows: torch.Tensor | None):
                log_loss, vjp = form.forward(theta if rows is None else theta[rows], data_)
                losses, slopes = huber_and_slope(log_loss - data_["log_loss"], delta)
                if weights_ is not None:
                    count = weights_[index if rows is None else index[rows]]
                    losses, slopes = losses * count, slopes * count
                return losses.sum(dim=1), vjp(slopes)

            # A batch within one chunk (a polish: a few starts, thousands of iterations) skips the
            # split: the same arithmetic, without the indexing that costs more than it at that size.
            if len(theta) <= chunk:
                value, grad = rows_value_and_grad(None)
            else:
                values, grads = zip(*(rows_value_and_grad(rows) for rows in torch.split(torch.arange(len(theta)), chunk)))
                value, grad = torch.cat(values), torch.cat(grads)
            if noise_scale is not None:
                penalty, penalty_grad = self._penalty(theta, noise_scale)
                value, grad = value + penalty, grad + penalty_grad
            if pinned is not None:
                grad[pinned[index], e_column] = 0.0
            return value, grad

        return value_and_grad

    def _minimize(self, data, starts: torch.Tensor, weights: torch.Tensor | None = None, *,
                  screened: bool = False, polished: bool = False, groups: np.ndarray | None = None,
                  pinned: torch.Tensor | None = None):
        """Every row of `starts` from its own start (screened: the grid's, see `Screening`);
        `polished`: the best of them (of each of `groups`) then to a tight tolerance (`polish`);
        `pinned` starts keep their E (see `_objective`)."""
        lower, upper = self.form.bounds()
        # The gradient of a summed Huber loss scales with delta: so does the gradient tolerance
        # (SciPy's default 1e-5 at the Chinchilla/Epoch delta of 1e-3).
        options = {"max_iter": self.max_iter, "gtol": 1e-2 * self.huber_delta, "ftol": self.ftol}
        objective = self._objective(data, weights, getattr(self, "noise_scale_", None), pinned)
        if screened and self.screening is not None:
            result = minimize_lbfgs_screened(objective, starts, lower, upper, self.screening, **options)
        else:
            result = minimize_lbfgs(objective, starts, lower, upper, **options)
        if not polished:
            return result
        return polish(objective, result, lower, upper, groups, keep=POLISH_STARTS, max_iter=POLISH_MAX_ITER,
                      gtol=POLISH_GTOL * self.huber_delta, ftol=0.0, converged_gtol=options["gtol"],
                      chart=power_chart(self.form, data))

    def _starts(self, tensors: dict[str, torch.Tensor], irreducible_loss: float | None = None
                ) -> tuple[torch.Tensor, bool, str]:
        """(starts, screened, solver): the form's grid of starts, screened (subclasses may know better);
        with `irreducible_loss`, starts with E at that value (only a fitter that can hold E has them)."""
        grid = self.form.grid()
        if irreducible_loss is not None:
            if "log_E" not in self.form.names:
                raise UserError(f"the {self.form.name} law has no free E to hold at a value")
            grid[:, self.form.names.index("log_E")] = math.log(irreducible_loss)
        return grid, True, "multi-start L-BFGS from the grid"

    def _check_runs(self, runs: Runs, held: bool = False) -> None:
        """Enough different runs for the form's coefficients (one fewer with E `held`): counted by
        distinct inputs (a run repeated is one point of the law)."""
        n_params, points = len(self.form.parameters) - held, runs.distinct_points()
        if points < n_params:
            repeated = f" at {points} distinct (N, D) point{'s' if points != 1 else ''}" if points < len(runs) else ""
            raise UserError(f"{len(runs)} runs{repeated} cannot determine the {n_params} parameters of the "
                            f"{self.form.name} law: give at least {n_params} runs at different sizes and token counts")

    def _fit_log_space(self, runs: Runs) -> None:
        n_runs = len(runs)
        self._check_runs(runs)
        tensors = runs.log_tensors()
        self.noise_scale_ = None
        with _intra_op_threads(self.threads):
            grid, screened, solver = self._starts(tensors)
            self.result_ = self._minimize(tensors, grid, screened=screened, polished=self.polish)
            if self._prior:
                # The prior weighs like one run of typical misfit: take that misfit from the fit
                # without the prior, then refit with it from the same starts and that optimum.
                residual = self.form.log_loss(torch.as_tensor(self.result_.x)[None], tensors)[0] \
                    - tensors["log_loss"]
                self.noise_scale_ = max(float(residual.pow(2).mean().sqrt()), self.huber_delta)
                grid = torch.cat([torch.as_tensor(self.result_.x)[None], grid])
                self.result_ = self._minimize(tensors, grid, screened=screened, polished=self.polish)
            self.x_ = self.result_.x
            self.samples_ = self._bootstrap(tensors, n_runs) if self.bootstrap else None
        self.lowest_loss_ = float(np.min(runs.loss))  # `_finish_record` compares E with it

        names = self.form.names
        lower, upper = (b.numpy() for b in self.form.bounds())
        tolerance = 1e-6 * (upper - lower)
        best_start = grid[self.result_.best].numpy()
        predicted = np.exp(self.form.log_loss(torch.as_tensor(self.x_)[None], tensors)[0].numpy())
        log_residual = np.log(predicted) - np.log(runs.loss)
        self.diagnostics_ = Diagnostics(
            rmse_log_loss=float(np.sqrt(np.mean(log_residual ** 2))),
            max_relative_error=float(np.max(np.abs(predicted / runs.loss - 1))),
            on_bound=[name for name, x, lo, hi, tol in zip(names, self.x_, lower, upper, tolerance)
                      if x <= lo + tol or x >= hi - tol],
            best_start_on_grid_edge=[p.name for p, v in zip(self.form.parameters, best_start)
                                     if screened and len(p.grid) > 1 and v in (min(p.grid), max(p.grid))])
        # What the fit itself knows; `_finish_record` adds the intervals and the bootstrap.
        self.record_ = FitRecord(
            form=self.form.name, constraints=self.constraints(),
            objective="sum over runs of Huber_delta(log L_hat - log L)", huber_delta=self.huber_delta,
            n_runs=n_runs, data_hash=runs.data_hash(), data_range=runs.data_range(), solver=solver,
            grid={"n_starts": len(grid), "values": {p.name: list(p.grid) for p in self.form.parameters}},
            bounds={p.name: p.bounds for p in self.form.parameters},
            parameters=dict(zip(names, map(float, self.x_))), convergence=self.result_.summary(),
            diagnostics=self.diagnostics_)

    def _fit_subsets(self, runs: Runs, masks: list[np.ndarray],
                     irreducible_losses: list[float | None] | None = None) -> list[np.ndarray | str]:
        """Point fits (no bootstrap) on each subset of the runs: the parameter vector of each, or
        why it could not be fitted. Backtests need one fit per fold; they are solved as one batched
        problem (each start weighs the runs of its own subset 1, the others 0), so the fixed cost of
        an L-BFGS iteration is paid once for all folds. `irreducible_losses` (one per subset, None
        for E free): E held at that value in that subset's fit, in the same batch (a profile over E,
        `laws.marginal`). A fitter with a prior, or whose starts are screened, fits the subsets one
        by one (screening ranks starts, which only works per subset)."""
        tensors = runs.log_tensors()
        outcomes: list[np.ndarray | str | None] = [None] * len(masks)
        held = list(irreducible_losses) if irreducible_losses is not None else [None] * len(masks)
        starts, owner = [], []
        with _intra_op_threads(self.threads):
            for k, (mask, irreducible_loss) in enumerate(zip(masks, held)):
                try:
                    self._check_runs(runs.subset(mask), held=irreducible_loss is not None)
                except UserError as exc:
                    outcomes[k] = str(exc)
                    continue
                subset = {key: value[torch.as_tensor(mask)] for key, value in tensors.items()}
                rows, screened, _ = self._starts(subset, irreducible_loss)
                if screened or self._prior:
                    fitter = self.clone(bootstrap=0) if irreducible_loss is None else \
                        self.clone(bootstrap=0, irreducible_loss=irreducible_loss)
                    fitter._fit_log_space(runs.subset(mask))
                    outcomes[k] = fitter.x_ if irreducible_loss is None else \
                        self._vector(fitter.form.to_coefficients(fitter.x_))
                    continue
                starts.append(rows)
                owner += [k] * len(rows)
            if starts:
                owner = np.array(owner)
                weights = torch.as_tensor(np.array(masks, dtype=np.float64)[owner])
                pinned = torch.as_tensor(np.array([h is not None for h in held])[owner]) \
                    if any(h is not None for h in held) else None
                result = self._minimize(tensors, torch.cat(starts), weights, polished=self.polish, groups=owner,
                                        pinned=pinned)
                for k in np.unique(owner):
                    mine = np.flatnonzero(owner == k)
                    outcomes[k] = result.xs[mine[first_lowest(result.funs[mine])]]
        return outcomes

    def _bootstrap(self, tensors: dict[str, torch.Tensor], n_runs: int) -> np.ndarray:
        """K refits on runs resampled with replacement, warm-started from the best fit."""
        rng = np.random.default_rng(self.seed)
        counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs), size=self.bootstrap)
        weights = torch.as_tensor(counts, dtype=torch.float64)
        starts = torch.as_tensor(self.x_, dtype=torch.float64).repeat(self.bootstrap, 1)
        self.bootstrap_result_ = self._minimize(tensors, starts, weights)
        return self.bootstrap_result_.xs

    def _finish_record(self, coefficients: list[str]) -> FitRecord:
        """The fit record, with intervals per coefficient, the coefficients the data do not
        identify, and the bootstrap samples."""
        on_bound = {_coefficient_name(name) for name in self.diagnostics_.on_bound}
        point = self.form.to_coefficients(self.x_)
        not_identified = {name: "on a bound of the search box" for name in coefficients if name in on_bound}
        if "E" in coefficients and "E" not in not_identified and point["E"] < E_FLOOR_FRACTION * self.lowest_loss_:
            not_identified["E"] = (f"{point['E']:.3g} is far below every observed loss (the lowest is "
                                   f"{self.lowest_loss_:.4g}): the runs do not show where the loss levels off")
        if self.samples_ is None:
            self.intervals_ = {}
            self.not_identified_ = not_identified
            return self.record_.model_copy(update={"not_identified": not_identified})
        samples = np.array([[c[name] for name in coefficients]
                            for c in map(self.form.to_coefficients, self.samples_)])
        quantiles = np.quantile(samples, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
        self.intervals_ = {name: (float(lo), float(hi)) for name, lo, hi in zip(coefficients, *quantiles)}
        for column, name in enumerate(coefficients):
            value = point[name]
            unmoved = np.abs(samples[:, column] - value) <= FLAT * abs(value) + 1e-300
            low, high = self.intervals_[name]
            # Resamples of noisy runs move every coefficient they constrain by about its standard
            # error, far more than FLAT; one they leave (nearly) in place has no gradient along it:
            # a flat direction of the objective, not a precise estimate.
            if name not in not_identified and (unmoved.mean() > 0.5 or high - low <= FLAT * abs(value)):
                not_identified[name] = "the bootstrap does not move it (the runs leave it flat)"
            elif name not in not_identified and low > 0 and high > low * 10 ** DECADES:
                not_identified[name] = (f"its {self.level:.0%} interval spans {np.log10(high / low):.0f} decades "
                                        f"({low:.2g} to {high:.2g})")
        self.not_identified_ = not_identified
        bootstrap = Bootstrap(resamples=self.bootstrap, seed=self.seed, convergence=self.bootstrap_result_.summary(),
                              coefficients=coefficients,
                              samples=[[float(f"{v:.7g}") for v in row] for row in samples])
        return self.record_.model_copy(update={"level": self.level, "intervals": self.intervals_,
                                               "not_identified": not_identified, "bootstrap": bootstrap})


class SupervisedLawFitter(_LogLossFitter):
    """Fit L(N, D) = E + (A/N^alpha + B/D^beta)^gamma to runs.

    form: "chinchilla" (gamma = 1, Chinchilla grid, delta 1e-3 by default), "tied" (gamma = 1 and
    alpha = beta) or "busbridge" (gamma free, Busbridge grid, delta 1e-4).
    irreducible_loss: hold E at this value; irreducible_loss_prior: (mean, sd), a Gaussian prior on E.
    exponent_prior: an `ExponentPrior`, Gaussian priors on alpha and beta.
    solver: "varpro" (starts from variable projection, see `laws.varpro`; for the Busbridge form its
    gamma = 1 solutions seed several gammas), "grid" (multi-start from the form's grid, screened)
    or "auto" (varpro unless a grid is given).
    grid: replace some parameters' start values, e.g. {"alpha": (0.5,)}.
    """

    @remembers_arguments
    def __init__(self, form: str = "chinchilla", *, irreducible_loss: float | None = None,
                 irreducible_loss_prior: tuple[float, float] | None = None,
                 exponent_prior: ExponentPrior | None = None, solver: str = "auto",
                 huber_delta: float | None = None, bootstrap: int = 1000, level: float = 0.9,
                 grid: dict | None = None, seed: int = 0, max_iter: int = 1000, ftol: float = FTOL,
                 screening: Screening | None = Screening(), chunk_elements: int = CHUNK_ELEMENTS,
                 threads: int | None = 1, polish: bool = True):
        if form not in SUPERVISED_FORMS:
            raise UserError(f"unknown form {form!r}: use one of {', '.join(SUPERVISED_FORMS)}")
        if solver not in ("auto", "varpro", "grid"):
            raise UserError(f"unknown solver {solver!r}: use auto, varpro or grid")
        if irreducible_loss is not None and irreducible_loss_prior is not None:
            raise UserError("give either a fixed irreducible loss or a prior on it, not both")
        if irreducible_loss is not None and not 0 < irreducible_loss < 1e3:
            raise UserError(f"the irreducible loss must be positive (nats/token), got {irreducible_loss}")
        if irreducible_loss_prior is not None:
            mean, sd = irreducible_loss_prior
            if not (0 < mean < 1e3 and 0 < sd < 1e3):
                raise UserError("the irreducible-loss prior needs a positive mean and standard deviation "
                                f"(nats/token), got {mean}, {sd}")
        self.form_name = form
        self.irreducible_loss = irreducible_loss
        self.irreducible_loss_prior = irreducible_loss_prior
        self.grid = grid
        # One --grid serves every candidate form: a parameter this form ties or lacks (beta of the
        # tied form, gamma of chinchilla) is skipped; a name no form has is an error.
        BUSBRIDGE.with_grid(grid or {})
        base = SUPERVISED_FORMS[form]
        base = base.with_grid({k: v for k, v in (grid or {}).items() if k in base.names})
        self.form = (base if irreducible_loss is None else
                     base.constrained(form, fixed={"log_E": math.log(irreducible_loss)}))
        self.exponent_prior = exponent_prior
        priors = []
        if irreducible_loss_prior is not None:
            priors.append(PriorTerm(self.form.names.index("log_E"), *map(float, irreducible_loss_prior), log=True))
        for name, (mean, sd) in (exponent_prior.items() if exponent_prior is not None else []):
            # the tied form's one exponent stands for both
            index = self.form.names.index(name if name in self.form.names else "alpha")
            gamma = self.form.names.index("gamma") if "gamma" in self.form.names else None
            priors.append(PriorTerm(index, mean, sd, gamma_index=gamma))
        self._prior = tuple(priors)
        self.solver = "varpro" if solver == "varpro" or (solver == "auto" and not grid) else "grid"
        default_delta = 1e-4 if form == "busbridge" else 1e-3
        super().__init__(huber_delta=default_delta if huber_delta is None else huber_delta,
                         bootstrap=bootstrap, level=level, seed=seed, max_iter=max_iter, ftol=ftol,
                         screening=screening, chunk_elements=chunk_elements, threads=threads, polish=polish)

    def constraints(self) -> dict:
        """What the form holds fixed or ties, for the fit record."""
        constraints = {"gamma": 1.0} if self.form_name != "busbridge" else {}
        if self.form_name == "tied":
            constraints["beta"] = "alpha"
        if self.irreducible_loss is not None:
            constraints["E"] = self.irreducible_loss
        if self.irreducible_loss_prior is not None:
            constraints["E_prior"] = {"mean": self.irreducible_loss_prior[0],
                                      "sd": self.irreducible_loss_prior[1]}
        for name, (mean, sd) in (self.exponent_prior.items() if self.exponent_prior is not None else []):
            constraints[f"{name}_prior"] = {"mean": mean, "sd": sd,
                                            "on": f"{name} * gamma" if self.form_name == "busbridge" else name}
        return constraints

    def _vector(self, coefficients: dict[str, float]) -> np.ndarray:
        """The log-space parameter vector of this fitter's form for a law's coefficients."""
        values = {"log_E": math.log(coefficients["E"]), "log_A": math.log(coefficients["A"]),
                  "log_B": math.log(coefficients["B"]), "alpha": coefficients["alpha"],
                  "beta": coefficients["beta"], "gamma": coefficients["gamma"]}
        return np.array([values[name] for name in self.form.names])

    def _starts(self, tensors, irreducible_loss: float | None = None):
        if irreducible_loss is not None and self.irreducible_loss is not None:
            raise UserError("this fit holds E at a value already: it cannot hold it at another")
        if self.solver != "varpro":
            return super()._starts(tensors, irreducible_loss)
        busbridge = self.form_name == "busbridge"
        held = self.irreducible_loss if irreducible_loss is None else irreducible_loss
        rows = varpro_starts(tensors["log_n"].numpy(), tensors["log_d"].numpy(),
                             tensors["log_loss"].exp().numpy(), tied=self.form_name == "tied",
                             irreducible_loss=held, huber_delta=self.huber_delta,
                             n_starts=BUSBRIDGE_SEEDS if busbridge else VARPRO_STARTS)
        description = (f"variable projection over {'alpha = beta' if self.form_name == 'tied' else 'alpha, beta'}"
                       f" on a 0.02 grid, best {len(rows)} polished by L-BFGS")
        if busbridge:
            # gamma != 1 is not linear in (E, A, B): start from the best gamma = 1 solutions, each
            # at several gammas with every power term rescaled to keep its size, (A/N^alpha)^gamma.
            rows = np.concatenate([np.column_stack([rows[:, :1], rows[:, 1:5] / g, np.full(len(rows), g)])
                                   for g in BUSBRIDGE_GAMMAS])
            description = (f"L-BFGS from the {len(rows) // len(BUSBRIDGE_GAMMAS)} best gamma = 1 solutions "
                           "of variable projection, at gamma " + ", ".join(map(str, BUSBRIDGE_GAMMAS)))
        columns = [BUSBRIDGE.names.index(name) for name in self.form.names]
        return torch.as_tensor(np.column_stack([rows, np.ones(len(rows))])[:, columns]), False, description

    def fit(self, N, D, loss) -> "SupervisedLawFitter":
        """N non-embedding parameters, D tokens, loss in nats/token: positive arrays of one length."""
        self._fit_log_space(Runs(N, D, loss))
        law = SupervisedLaw(**self.form.to_coefficients(self.x_))
        fixed = [name for name, value in self.constraints().items() if isinstance(value, float)]
        law.fit = self._finish_record([c for c in SupervisedLaw.COEFFICIENTS if c not in fixed])
        self.law_ = law
        return self

    def predict(self, N, D):
        return self.law_.predict(N, D)

    def fit_subsets(self, N, D, loss, masks: list[np.ndarray],
                    irreducible_losses: list[float | None] | None = None) -> list[SupervisedLaw | str]:
        """For each subset of the runs (a boolean mask), the law of a point fit on that subset
        alone, or why it could not be fitted (see `_fit_subsets`); with `irreducible_losses` (one
        per subset), E held at that value in that subset's fit."""
        return [fit if isinstance(fit, str) else SupervisedLaw(**self.form.to_coefficients(fit))
                for fit in self._fit_subsets(Runs(N, D, loss), masks, irreducible_losses)]

    def predict_subsets(self, N, D, loss, masks: list[np.ndarray]) -> list[np.ndarray | str]:
        """For each subset of the runs (a boolean mask), the predictions for every run of a point
        fit on that subset alone, or why it could not be fitted (see `_fit_subsets`)."""
        return [law if isinstance(law, str) else law.predict(N, D) for law in self.fit_subsets(N, D, loss, masks)]


class DistillationLawFitter(_LogLossFitter):
    """Fit the distillation law (Busbridge Eq. 8) to distilled runs, given the student's supervised
    law for Ltilde_S. The bootstrap holds that supervised law fixed.

    tie_exponents: hold alpha', beta' at the supervised law's alpha, beta (Busbridge et al. find
    distillation does not change the data-scaling exponents): two fewer parameters, which a small
    sweep may not be able to pin down otherwise."""

    @remembers_arguments
    def __init__(self, student_law: SupervisedLaw, *, tie_exponents: bool = False,
                 huber_delta: float = 1e-4, bootstrap: int = 200, level: float = 0.9,
                 grid: dict | None = None, seed: int = 0, max_iter: int = 500, ftol: float = FTOL,
                 screening: Screening | None = Screening(), chunk_elements: int = CHUNK_ELEMENTS,
                 threads: int | None = 1, polish: bool = True):
        self.student_law = student_law
        self.tie_exponents = tie_exponents
        form = DISTILLATION.with_grid(grid or {})
        self.form = (form.constrained("distillation-tied", fixed={"alpha": student_law.alpha,
                                                                  "beta": student_law.beta})
                     if tie_exponents else form)
        super().__init__(huber_delta=huber_delta, bootstrap=bootstrap, level=level, seed=seed,
                         max_iter=max_iter, ftol=ftol, screening=screening,
                         chunk_elements=chunk_elements, threads=threads, polish=polish)

    def constraints(self) -> dict:
        return ({"alpha": "student law's alpha", "beta": "student law's beta"}
                if self.tie_exponents else {})

    def fit(self, N_S, D_S, L_T, L_S) -> "DistillationLawFitter":
        """Student parameters and tokens, teacher loss and distilled student loss, one per run."""
        self._fit_log_space(self._runs(N_S, D_S, L_T, L_S))
        law = DistillationLaw(**self.form.to_coefficients(self.x_), student_law=self.student_law)
        fixed = ("alpha", "beta") if self.tie_exponents else ()
        law.fit = self._finish_record([c for c in DistillationLaw.COEFFICIENTS if c not in fixed])
        self.law_ = law
        return self

    def predict(self, N_S, D_S, L_T):
        return self.law_.predict(N_S, D_S, L_T)

    def predict_subsets(self, N_S, D_S, L_T, L_S, masks: list[np.ndarray]) -> list[np.ndarray | str]:
        """For each subset of the runs, the predictions for every run of a point fit on that subset
        alone, or why it could not be fitted (see `_fit_subsets`)."""
        runs = self._runs(N_S, D_S, L_T, L_S)
        fits = self._fit_subsets(runs, masks)
        return [fit if isinstance(fit, str) else
                DistillationLaw(**self.form.to_coefficients(fit), student_law=self.student_law).predict(
                    runs.params, runs.tokens, runs.teacher_loss)
                for fit in fits]

    def _runs(self, N_S, D_S, L_T, L_S) -> Runs:
        N_S, D_S = np.asarray(N_S, float), np.asarray(D_S, float)
        return Runs(N_S, D_S, L_S, teacher_loss=L_T, student_supervised_loss=self.student_law.predict(N_S, D_S))


# The irreducible losses `irreducible_loss_profile` tries, as fractions of the lowest observed loss;
# with E held, variable projection solves (A, B) exactly on its exponent grid and a short polish
# suffices (20 L-BFGS iterations: the same residuals to 1% as 200, 4x faster), and no polish
# (POLISH_STARTS) either: the profile compares fits stopped alike.
PROFILE_FRACTIONS = (0.001, 0.003, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
PROFILE_MAX_ITER = 20


def irreducible_loss_profile(N, D, loss, *, level: float = 0.9, huber_delta: float | None = None,
                             seed: int = 0) -> Profile:
    """Which irreducible losses E the runs allow, for a fit that cannot pin E down: the chinchilla
    law refitted with E held at PROFILE_FRACTIONS of the lowest observed loss, each fit kept whose
    sum of squared log-residuals exceeds the best one's by at most chi^2_1(level) residual variances
    (a profile-likelihood interval, Wilks), the variance from the fit with E free. The kept fits
    are laws the runs cannot tell from the fitted one; predictions span them (`laws.forms`)."""
    N, D, loss = (np.asarray(x, dtype=np.float64) for x in (N, D, loss))
    options = {"bootstrap": 0, "seed": seed, "max_iter": PROFILE_MAX_ITER, "huber_delta": huber_delta,
               "polish": False}

    def fitted(irreducible_loss=None):
        law = SupervisedLawFitter("chinchilla", irreducible_loss=irreducible_loss, **options).fit(N, D, loss).law_
        return law, float(np.sum(np.log(law.predict(N, D) / loss) ** 2))

    free, free_ssr = fitted()
    fits = [fitted(fraction * float(loss.min())) for fraction in PROFILE_FRACTIONS]
    best = min([free_ssr] + [ssr for _, ssr in fits])
    variance = max(free_ssr / max(len(loss) - len(SupervisedLaw.COEFFICIENTS) + 1, 1), 1e-12)
    allowed = best + NormalDist().inv_cdf((1 + level) / 2) ** 2 * variance
    kept = [law for law, ssr in fits if ssr <= allowed]
    return Profile(coefficient="E", level=level, values=[law.E for law in kept],
                   laws=[{name: float(v) for name, v in law.coefficients().items()} for law in kept])


def _coefficient_name(parameter: str) -> str:
    """The law coefficient a log-space parameter stands for: log_E -> E, alpha -> alpha."""
    return parameter.removeprefix("log_")
