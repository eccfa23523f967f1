"""One law from several forms: the median of their predictions, refitted into a single law.

On the validation pack (`laws.published`, bench/laws/extrapolation.py) no one form extrapolates best on
every set: tied exponents are the best on Epoch's Chinchilla runs and the worst on Porian's, the
free chinchilla form the reverse; choosing one per fit by its backtest picks the luckiest form on
few folds and lost to the median of the three forms' predictions on every development set. The
median is not itself a law the planner can optimise, so it is refitted into one: the Busbridge
form (gamma free, the most flexible of the three) fitted by least squares in log space to the
median of the members' predictions on a grid of sizes from the smallest fitted to REACH times the
largest, at the fitted runs' tokens per parameter.

    fitter = MedianLawFitter([SupervisedLawFitter(f, bootstrap=200) for f in ("tied", "chinchilla", "busbridge")])
    fitter.fit(N, D, loss).law_                       # a SupervisedLaw, with its fit record
    median_law([law_a, law_b, law_c], N, D)           # the refit alone, from laws already fitted

Each member's E is fitted. With `marginal=True` it is marginalized instead (`laws.marginal`; a
member whose E the user fixed or gave a prior keeps it): better on the validation pack's
development runs, worse on its held-back and far runs and on six micro corpora, so not the default
(docs/validation_pack.md).

The bootstrap: the members share their seed, so their k-th resamples are the same resample of the
runs; the ensemble's k-th sample is the refit of the median of the members' k-th fits (each moved
by its resample's departure from the member's own fit; with E marginalized, around the member's
law at an E drawn from its posterior, so that the samples carry E's uncertainty as well).
"""

from __future__ import annotations

import numpy as np
import torch

from distillscale.laws.fitting import SupervisedLawFitter
from distillscale.laws.objective import Runs
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.lbfgs import PER_START, MultiStartResult
from distillscale.laws.marginal import MarginalLaw, fit_marginal
from distillscale.laws.record import MarginalE

# The grid the median is refitted on: sizes from the smallest fitted to REACH times the largest
# (the planner's and the pack's extrapolations reach 8x), log-spaced, at tokens per parameter
# spanning the fitted runs'.
REACH = 16.0
GRID_SIZES = 24
GRID_RATIOS = 12
# The refit is a least-squares fit: this Huber delta on log-loss is above the refit's residuals,
# and small enough that the gradient tolerance (1e-2 delta) lets the fit converge.
REFIT_DELTA = 0.05
REFIT_FORM = "busbridge"


def median_grid(N: np.ndarray, D: np.ndarray, reach: float = REACH) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) of the refit grid for runs of sizes N and tokens D."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    sizes = np.geomspace(N.min(), N.max() * reach, GRID_SIZES)
    ratio = D / N
    ratios = np.geomspace(ratio.min(), ratio.max(), GRID_RATIOS) if ratio.max() > ratio.min() else ratio[:1]
    n, r = (a.ravel() for a in np.meshgrid(sizes, ratios))
    return n, n * r


def _refitter(irreducible_loss: float | None = None, **options) -> SupervisedLawFitter:
    return SupervisedLawFitter(REFIT_FORM, bootstrap=0, huber_delta=REFIT_DELTA, irreducible_loss=irreducible_loss,
                               **options)


def marginalizes(member) -> bool:
    """Whether a member's E is marginalized: it is, unless the user fixed E or gave it a prior. A
    member: a `SupervisedLawFitter`, or anything else that says both (a selection candidate)."""
    return member.irreducible_loss is None and member.irreducible_loss_prior is None


def median_law(laws: list[SupervisedLaw | MarginalLaw], N: np.ndarray, D: np.ndarray, reach: float = REACH,
               irreducible_loss: float | None = None) -> SupervisedLaw:
    """The single law nearest (least squares of log-loss on `median_grid`) to the median of the
    laws' predictions, E held at `irreducible_loss` if given: the point refit, as backtests need it."""
    n, d = median_grid(N, D, reach)
    target = np.median([law.predict(n, d) for law in laws], axis=0)
    return _refitter(irreducible_loss).fit(n, d, target).law_


class MedianLawFitter:
    """Fit every member form to the runs, then the single law nearest the median of their
    predictions (`median_law`), with a bootstrap from the members' resamples. Quacks like a
    SupervisedLawFitter where `LawFit` needs it: `law_`, `intervals_`, `not_identified_`,
    `bootstrap`, `members_`."""

    def __init__(self, members: list[SupervisedLawFitter], reach: float = REACH, progress=None,
                 marginal: bool = False):
        self.members = members
        self.reach = reach
        self.progress = progress  # progress(message): told as the bootstrap's refits go (the longest step)
        self.marginal = marginal  # each member's E marginalized (`laws.marginal`) where the user left it free
        self.bootstrap = members[0].bootstrap
        self.level = members[0].level

    def fit(self, N, D, loss) -> "MedianLawFitter":
        runs = Runs(N, D, loss)
        # A form with more coefficients than runs sits out; a median needs at least two forms, so
        # with fewer the second-smallest form's error says how many runs are needed.
        points = runs.distinct_points()
        able = [m for m in self.members if len(m.form.parameters) <= points]
        if len(able) < min(2, len(self.members)):
            sorted(self.members, key=lambda m: len(m.form.parameters))[min(1, len(self.members) - 1)]._check_runs(runs)
        self.members_ = []
        for number, member in enumerate(able, 1):
            if self.progress is not None:
                self.progress(f"fitting the {member.form_name} form ({number} of {len(able)})"
                              + (f" with {member.bootstrap} bootstrap resamples" if member.bootstrap else ""))
            self.members_.append(member.fit(runs.params, runs.tokens, runs.loss))
        self.marginals_ = [self._marginal(member, runs) for member in self.members_]
        predictors = [marginal or member.law_ for member, marginal in zip(self.members_, self.marginals_)]
        n, d = median_grid(runs.params, runs.tokens, self.reach)
        refit = _refitter(self.members[0].irreducible_loss, level=self.level, seed=self.members[0].seed)
        refit.fit(n, d, np.median([p.predict(n, d) for p in predictors], axis=0))
        forms = ", ".join(m.form_name for m in self.members_)
        deltas = ", ".join(f"{m.huber_delta:g}" for m in self.members_)
        shared = {m.huber_delta for m in self.members_}
        marginal = any(self.marginals_)
        record = refit.record_.model_copy(update={
            "objective": f"median of the {forms} fits (each a summed Huber of log-loss residuals, delta "
                         f"{deltas}" + ("; E marginalized over a grid, laws.marginal" if marginal else "")
                         + f"), refitted by least squares on a grid of {len(n)} (N, D) up to "
                         f"{self.reach:g}x the largest fitted N",
            "marginal_e": self._record(runs) if marginal else None,
            # the delta the runs were fitted with (--huber-delta), when the forms share one
            "huber_delta": shared.pop() if len(shared) == 1 else refit.record_.huber_delta,
            "n_runs": len(runs), "data_hash": runs.data_hash(), "data_range": runs.data_range(),
            "solver": f"median of the {forms} fits, refitted in the {REFIT_FORM} form: {refit.record_.solver}",
            "diagnostics": self._diagnostics(refit, runs)})
        refit.record_ = record
        if self.bootstrap and all(m.samples_ is not None for m in self.members_):
            refit.samples_, refit.bootstrap_result_ = self._bootstrap(refit, n, d, predictors)
            refit.bootstrap = self.bootstrap
        law = SupervisedLaw(**refit.form.to_coefficients(refit.x_))
        refit.lowest_loss_ = float(np.min(runs.loss))  # E against the runs, not the refit's grid
        fixed = ("E",) if refit.irreducible_loss is not None else ()
        law.fit = refit._finish_record([c for c in SupervisedLaw.COEFFICIENTS if c not in fixed])
        refit.law_ = law
        self.refit_, self.law_ = refit, law
        self.intervals_, self.not_identified_ = refit.intervals_, refit.not_identified_
        return self

    def predict(self, N, D):
        return self.law_.predict(N, D)

    def _marginal(self, member: SupervisedLawFitter, runs: Runs) -> MarginalLaw | None:
        """The member marginalized over E (`fit_marginal`), or None where it keeps its fitted E (the
        user's E, the ensemble's `marginal` off, or runs too few to fit it with E held)."""
        if not (self.marginal and marginalizes(member)):
            return None
        if self.progress is not None:
            self.progress(f"marginalizing the {member.form_name} form over E")
        marginal = fit_marginal(member.clone(bootstrap=0), runs.params, runs.tokens, runs.loss)[0]
        return marginal if isinstance(marginal, MarginalLaw) else None

    def _record(self, runs: Runs) -> MarginalE:
        """E's posterior of each marginalized member, for the fit record."""
        forms = {}
        for member, marginal in zip(self.members_, self.marginals_):
            if marginal is not None:
                forms[member.form_name] = (marginal.mean_E, *marginal.interval(self.level))
        sizes = next(m.sizes for m in self.marginals_ if m is not None)
        return MarginalE(sizes=sizes, level=self.level, lowest_loss=float(runs.loss.min()), forms=forms)

    def _diagnostics(self, refit: SupervisedLawFitter, runs: Runs):
        law = SupervisedLaw(**refit.form.to_coefficients(refit.x_))
        relative = law.predict(runs.params, runs.tokens) / runs.loss - 1
        return refit.diagnostics_.model_copy(update={
            "rmse_log_loss": float(np.sqrt(np.mean(np.log1p(relative) ** 2))),
            "max_relative_error": float(np.max(np.abs(relative)))})

    def _bootstrap(self, refit: SupervisedLawFitter, n: np.ndarray, d: np.ndarray, predictors: list):
        """The k-th sample: the refit (from the point refit) of the median of the members' k-th fits,
        each as its prediction times its k-th resample's ratio to its own fit. A marginalized
        member's prediction in the k-th sample is its law at an E drawn from E's posterior (one
        uniform draw per sample, shared by the members: `MarginalLaw.draw`), so the samples carry
        what the runs leave unknown about E as well as their noise."""
        draws = np.random.default_rng([self.members[0].seed, 34]).uniform(size=len(self.members_[0].samples_))
        member_predictions = []
        for member, predictor in zip(self.members_, predictors):
            point = member.law_.coefficients()
            fitted = member.law_.predict(n, d)
            centres = ([predictor.draw(u).predict(n, d) for u in draws] if isinstance(predictor, MarginalLaw)
                       else [predictor.predict(n, d)] * len(draws))
            member_predictions.append(np.stack([
                centre * SupervisedLaw(**{**point, **member.form.to_coefficients(x)}).predict(n, d) / fitted
                for centre, x in zip(centres, member.samples_)]))
        targets = np.median(member_predictions, axis=0)
        results = []
        start = torch.as_tensor(refit.x_, dtype=torch.float64)[None]
        base = Runs(n, d, targets[0]).log_tensors()
        tenth = max(1, len(targets) // 10)
        for k, target in enumerate(targets, 1):
            tensors = {**base, "log_loss": torch.as_tensor(np.log(target), dtype=torch.float64)}
            results.append(refit._minimize(tensors, start))
            if self.progress is not None and (k % tenth == 0 or k == len(targets)):
                self.progress(f"bootstrap of the median: {k} of {len(targets)} resamples refitted")
        merged = MultiStartResult(**{f: np.concatenate([getattr(r, f) for r in results]) for f in PER_START})
        return merged.xs, merged
