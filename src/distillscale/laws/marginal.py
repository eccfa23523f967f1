"""The irreducible loss marginalized rather than fitted: a form's predictions averaged over the E
its runs allow, each E weighted by how well the form fits the runs with it.

Runs of small models rarely pin E down: the loss of the largest model fitted says little about
where the loss levels off, and the fitted E is wherever the objective's long, flat valley happens
to end. That E then decides the extrapolation: on the validation pack (`laws.published`,
bench/laws/extrapolation.py) an E too high made the law over-predict every larger model (the Marin
ladders, Li et al.'s LR-swept ladder), one too low under-predict them (Gadre et al.'s C4). Held
at each E of a grid over (0, lowest loss) instead, the form is fitted once per E, and its
predictions are averaged with the posterior weights of the E's:

    prior:       uniform in E on (0, lowest observed loss)
    nodes:       the midpoints of E_BINS equal bins, and the E the form fits with E free (so that
                 runs that do pin E are not held to the grid's resolution); each node weighs its
                 share of (0, lowest loss), the cell of E nearer to it than to any other node
    likelihood:  Laplace in the log-residuals, its scale profiled: -K log(mean |log residual|)

K is the number of distinct model sizes, not of runs: the runs of one size share one misfit of the
form (the residuals of a misfit law are not independent), and E is told apart by how the loss
bends from size to size. Runs of many sizes pin E: the weight gathers on the E they fit; runs of
three sizes leave it spread over the E they allow, and the prediction averages over them.

    marginal = fit_marginal(SupervisedLawFitter("chinchilla", bootstrap=0), N, D, loss)[0]
    marginal.predict(N_big, D_big), marginal.mean_E, marginal.interval(0.9)

`laws.ensemble` marginalizes each member form this way before taking their median when asked
(`fit_supervised(marginal_e=True)`). It is not the default: on the validation pack's development
runs it beat the fitted E on all 12 sets, but on the held-back runs, the far runs and six micro
corpora it did worse, most at three sizes, where the uniform prior lifts an E the runs put near 0
and the law over-predicts larger models (docs/validation_pack.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillscale.laws.backtest import scale_levels
from distillscale.laws.fitting import SupervisedLawFitter
from distillscale.laws.objective import Runs
from distillscale.laws.forms import SupervisedLaw

# The E grid: midpoints of E_BINS equal bins of (0, lowest observed loss), i.e. a uniform prior.
E_BINS = 10
E_FRACTIONS = (np.arange(E_BINS) + 0.5) / E_BINS
# A mean |log residual| below this counts as this (an exact fit would otherwise weigh infinitely).
RESIDUAL_FLOOR = 1e-12


@dataclass(frozen=True)
class MarginalLaw:
    """A form's laws with E held at each node, and the posterior weight of each: predicts their
    weighted mean. `sizes` is the number of distinct model sizes the likelihood counted, and
    `lowest_loss` the top of E's prior."""

    laws: tuple[SupervisedLaw, ...]
    weights: np.ndarray
    sizes: int
    lowest_loss: float

    @property
    def E(self) -> np.ndarray:
        return np.array([law.E for law in self.laws])

    @property
    def mean_E(self) -> float:
        """The posterior mean of E."""
        return float(np.dot(self.weights, self.E))

    def interval(self, level: float = 0.9) -> tuple[float, float]:
        """The central `level` interval of E's posterior, its density taken uniform over each node's
        cell (so that a posterior on one node still spans that node's share of E, never a point)."""
        edges = cell_edges(self.E, self.lowest_loss)
        order = np.argsort(self.E)
        cdf = np.concatenate([[0.0], np.cumsum(self.weights[order])])
        low, high = np.interp([(1 - level) / 2, (1 + level) / 2], cdf, edges)
        return float(low), float(high)

    def predict(self, N, D) -> np.ndarray | float:
        """The posterior mean of the laws' predictions (nats/token)."""
        return sum(w * np.asarray(law.predict(N, D), float) for w, law in zip(self.weights, self.laws))

    def draw(self, u: float) -> SupervisedLaw:
        """The law at the node of E's posterior whose cumulative weight first reaches `u` (in [0, 1],
        nodes in order of E): a uniform u draws E from the posterior; a u shared by several forms
        draws them at matching quantiles of E."""
        order = np.argsort(self.E)
        node = np.searchsorted(np.cumsum(self.weights[order]), u, side="left")
        return self.laws[order[min(int(node), len(order) - 1)]]


def cell_edges(E: np.ndarray, lowest_loss: float) -> np.ndarray:
    """The edges of the nodes' cells in (0, lowest_loss), in order of E: each node's cell holds the
    E nearer to it than to any other node."""
    E = np.sort(np.asarray(E, float))
    return np.concatenate([[0.0], (E[1:] + E[:-1]) / 2, [lowest_loss]])


def posterior_weights(E: np.ndarray, log_residuals: list[np.ndarray], sizes: int, lowest_loss: float) -> np.ndarray:
    """The posterior weight of each node E (a uniform prior on (0, lowest_loss)) from the
    log-residuals of the form fitted with E held there: a Laplace likelihood with its scale
    profiled, counted over `sizes`, times the node's cell (`cell_edges`)."""
    E = np.asarray(E, float)
    cell = np.empty(len(E))
    cell[np.argsort(E)] = np.maximum(np.diff(cell_edges(E, lowest_loss)), 0.0)
    mean_abs = np.array([max(float(np.mean(np.abs(r))), RESIDUAL_FLOOR) for r in log_residuals])
    log_like = -sizes * np.log(mean_abs)
    weights = cell * np.exp(log_like - log_like.max())
    return weights / weights.sum()


def fit_marginal(fitter: SupervisedLawFitter, N, D, loss,
                 masks: list[np.ndarray] | None = None) -> list[MarginalLaw | str]:
    """For each subset of the runs (a boolean mask; default all of them), the fitter's form
    marginalized over E (`MarginalLaw`), or why it could not be fitted. Every (subset, E) fit, the
    fit with E free among them, is one problem of a single batch (`SupervisedLawFitter.fit_subsets`).
    The fitter must leave E free."""
    if fitter.irreducible_loss is not None or fitter.irreducible_loss_prior is not None:
        raise ValueError("fit_marginal needs a fitter with E free (no fixed value, no prior)")
    runs = Runs(N, D, loss)
    masks = [np.ones(len(runs), bool)] if masks is None else [np.asarray(m, bool) for m in masks]
    per_mask = E_BINS + 1
    problems = [(mask, e) for mask in masks
                for e in [None, *(float(f * runs.loss[mask].min()) for f in E_FRACTIONS)]]
    laws = fitter.fit_subsets(runs.params, runs.tokens, runs.loss, [m for m, _ in problems], [e for _, e in problems])
    out: list[MarginalLaw | str] = []
    for k, mask in enumerate(masks):
        lowest = float(runs.loss[mask].min())
        # the free fit is a node only where its E lies inside the prior's range
        mine = [law for law in laws[k * per_mask:(k + 1) * per_mask]]
        fitted = [law for law in mine if not isinstance(law, str) and 0 < law.E < lowest]
        if not fitted:
            out.append(next((law for law in mine if isinstance(law, str)), "no fit with E below the lowest loss"))
            continue
        out.append(weigh(fitted, runs.params[mask], runs.tokens[mask], runs.loss[mask], lowest))
    return out


def weigh(laws: list[SupervisedLaw], N, D, loss, lowest_loss: float, count: float | None = None) -> MarginalLaw:
    """The laws fitted with E held at their nodes, weighed by their posterior on the runs (N, D,
    loss) they were fitted to (`posterior_weights`): the likelihood counted over the runs' distinct
    sizes, or over `count` where given (bench/laws/e_posterior.py scores sharper posteriors with it)."""
    N, D, loss = (np.asarray(x, float) for x in (N, D, loss))
    residuals = [np.log(law.predict(N, D) / loss) for law in laws]
    sizes = len(scale_levels(N))
    weights = posterior_weights([law.E for law in laws], residuals, sizes if count is None else count, lowest_loss)
    return MarginalLaw(tuple(laws), weights, sizes, lowest_loss)
