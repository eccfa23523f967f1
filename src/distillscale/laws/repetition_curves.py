"""How much a group of runs loses to repeated data: R_D* (Muennighoff et al.'s half-life of repeated
tokens) fitted to one group (e.g. supervised students, or students distilled from one teacher), per
group and per model size, with the backtest the issue's target names: fitted on the runs of at most
4 epochs, the prediction of those beyond.

    curve = fit_repetition_curve(N, D, U, loss, name="distilled")
    curve.R_D_star, curve.interval             # the group's R_D* and its bootstrap interval
    curve.sizes                                # per size: R_D*, loss at 1 and at the most epochs, penalty
    curve.backtest                             # each run beyond 4 epochs: predicted vs measured
    curve.seed_spread                          # seed-to-seed spread of the loss (runs repeated with seeds)

The runs: a fresh ladder (D <= U) that pins the law's N and D terms, and runs of the same budget D
drawn from U = D / e unique tokens (e epochs). The law is the supervised form that
`fit_supervised(..., unique_tokens=...)` profiles with R_D* (`selection.fit_with_repetition`),
fitted to this group alone: for distilled students of one teacher it stands for the distillation
law at that teacher's loss (a function of the student's N and D only).

Runs trained with several seeds (a spec's `[students] seeds`) share their (N, D, U): the law and R_D*
are fitted to every run, the bootstrap resamples runs (so the interval carries the seed noise), and
the measured losses shown and backtested are each cell's seed mean, next to its seed spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.fitting import SupervisedLawFitter
from distillscale.laws.forms import SupervisedLaw
from distillscale.laws.repetition import (Repetition, effective_tokens, fit_repetition, predict_repeated,
                                          repetition_penalty)
from distillscale.laws.repetition_fit import REPETITION_BACKTEST_EPOCHS, profile_repetition
from distillscale.laws.selection import fit_with_repetition

# A run is repeated when it saw its unique tokens more than this many times (1 + a rounding margin).
REPEATED = 1.0001


@dataclass(frozen=True)
class SizeRepetition:
    """One model size of a group: its R_D* (the group's law held), the measured loss at one epoch
    and at the most epochs of its budget, and the penalty measured and fitted."""

    params: float
    tokens: float
    R_D_star: float
    interval: tuple[float, float] | None
    loss_one_epoch: float | None       # the run of D tokens from D unique ones (nats/token)
    max_epochs: float
    loss_max_epochs: float             # the run of D tokens from the fewest unique ones
    penalty_measured: float | None     # loss_max_epochs / loss_one_epoch - 1
    penalty_fitted: float              # the same ratio under the group's law and R_D*
    seeds: int = 1                     # runs (seeds) averaged in each of the two losses (the fewest)
    seed_spread: float | None = None   # pooled relative SD of one run's loss across seeds (its cells)

    def to_dict(self) -> dict:
        return {"params": self.params, "tokens": self.tokens, "R_D_star": self.R_D_star,
                "R_D_star_interval": list(self.interval) if self.interval else None,
                "loss_one_epoch": self.loss_one_epoch, "max_epochs": self.max_epochs,
                "loss_max_epochs": self.loss_max_epochs, "penalty_measured": self.penalty_measured,
                "penalty_fitted": self.penalty_fitted, "seeds": self.seeds, "seed_spread": self.seed_spread}


@dataclass(frozen=True)
class RepetitionCurve:
    """A group's runs under the data-constrained law: R_D* with its interval, per-size numbers, and
    the backtest (law and R_D* fitted on the runs of at most `backtest_epochs`, scored beyond)."""

    name: str
    form: str
    law: SupervisedLaw                  # fitted to D' = effective_tokens(D, U, R_D*); law.repetition set
    R_D_star: float
    interval: tuple[float, float] | None
    level: float
    n_runs: int
    sizes: list[SizeRepetition]
    backtest_epochs: float
    backtest_R_D_star: float | None
    backtest: list[dict] = field(default_factory=list)   # per run beyond backtest_epochs
    backtest_plain: list[dict] = field(default_factory=list)  # the same runs, repeats counted as new
    seed_spread: float | None = None   # pooled relative SD of one run's loss across seeds (None: one seed)

    @property
    def repetition(self) -> Repetition:
        return Repetition(self.R_D_star, None, self.interval, f"fitted to the {self.name} runs")

    def predict(self, N, D, U):
        """The group's loss (nats/token) for N parameters trained on D tokens from U unique ones."""
        return predict_repeated(self.law, self.repetition, N, D, U)

    def backtest_error(self, epochs: float | None = None) -> float | None:
        """Mean |relative error| of the backtest's predictions (those at `epochs` only, when given)."""
        errors = [abs(run["error"]) for run in self.backtest if epochs is None or abs(run["epochs"] - epochs) < 1e-3]
        return float(np.mean(errors)) if errors else None

    def to_dict(self) -> dict:
        plain = [abs(run["error"]) for run in self.backtest_plain]
        return {"name": self.name, "form": self.form, "coefficients": self.law.coefficients(),
                "R_D_star": self.R_D_star, "R_D_star_interval": list(self.interval) if self.interval else None,
                "level": self.level, "n_runs": self.n_runs, "seed_spread": self.seed_spread, "sizes": [size.to_dict() for size in self.sizes],
                "backtest": {"fitted_up_to_epochs": self.backtest_epochs, "R_D_star": self.backtest_R_D_star,
                             "runs": self.backtest, "mean_abs_error": self.backtest_error(),
                             "max_abs_error": max((abs(r["error"]) for r in self.backtest), default=None),
                             "mean_abs_error_plain": float(np.mean(plain)) if plain else None}}


def fit_repetition_curve(N, D, U, loss, *, name: str = "runs", form: str = "auto", level: float = 0.9,
                         bootstrap: int = 200, seed: int = 0,
                         backtest_epochs: float = REPETITION_BACKTEST_EPOCHS, **fitter_options) -> RepetitionCurve:
    """R_D* of one group of runs (N non-embedding parameters, D tokens, U unique tokens, loss in
    nats/token), profiled jointly with the law's coefficients in `form` (auto: the one
    `fit_supervised(..., unique_tokens=U)` profiles for the group, chosen by a backtest of its fresh
    runs; tied or chinchilla); its interval and each size's R_D* from a bootstrap of the runs with
    the law held (`repetition.fit_repetition`); the backtest refits both on the runs of at most
    `backtest_epochs` epochs and predicts the others. `fitter_options` go to SupervisedLawFitter."""
    N, D, U, loss = (np.asarray(x, float) for x in (N, D, U, loss))
    if not (len(N) == len(D) == len(U) == len(loss)):
        raise ParameterError(("N", "D", "U", "loss"), "{} must have one value per run")
    epochs = D / np.minimum(U, D)
    repeated = epochs > REPEATED
    if not repeated.any():
        raise ParameterError("U", f"no {name} run repeats its data (every D <= U): nothing measures R_D*")
    if (~repeated).sum() < 3:
        raise ParameterError("U", f"the {name} runs hold {(~repeated).sum()} fresh runs (D <= U): the law that "
                                  "repetition bends needs at least 3 (a fresh ladder of budgets)")
    if form == "auto":
        form = fit_with_repetition({"params": N, "tokens": D, "loss": loss, "unique_tokens": U}, bootstrap=0,
                                   level=level, seed=seed, **fitter_options).repetition_record["form"]
    elif form not in ("tied", "chinchilla"):
        raise ParameterError("form", "{} must be auto, tied or chinchilla (the forms R_D* is profiled in), "
                                     f"got {form!r}")

    def make(**options):
        return SupervisedLawFitter(form, **{"bootstrap": 0, "level": level, "seed": seed, **fitter_options,
                                            **options})

    r_star, _ = profile_repetition(make, N, D, U, loss)
    law = make(bootstrap=bootstrap).fit(N, effective_tokens(D, U, r_star), loss).law_
    held = fit_repetition(law, N, D, U, loss, level=level, bootstrap=bootstrap, seed=seed)
    law.repetition = Repetition(r_star, None, held.interval, f"fitted to the {name} runs")

    cell = _cells(N, D, U)
    sizes = []
    for size in np.unique(N):
        rows = N == size
        if not (rows & repeated).any():
            continue
        budget = D[rows & repeated].max()   # the budget its repeated runs share
        at_budget = rows & np.isclose(D, budget, rtol=1e-3)
        most = np.flatnonzero(at_budget)[np.argmax(epochs[at_budget])]
        once = np.flatnonzero(at_budget & ~repeated)
        once = once[cell[once] == cell[once[np.argmax(epochs[once])]]] if len(once) else once
        most = np.flatnonzero(cell == cell[most])
        one_epoch = float(loss[once].mean()) if len(once) else None
        max_loss = float(loss[most].mean())
        own = fit_repetition(law, N[rows], D[rows], U[rows], loss[rows], level=level, bootstrap=bootstrap,
                             seed=seed)
        fitted = float(repetition_penalty(law, law.repetition, size, budget, U[most[0]]))
        seeds = min(len(most), len(once)) if len(once) else len(most)
        sizes.append(SizeRepetition(float(size), float(budget), own.R_D_star, own.interval, one_epoch,
                                    float(epochs[most[0]]), max_loss,
                                    None if one_epoch is None else max_loss / one_epoch - 1, fitted,
                                    seeds, _seed_spread(loss[rows], cell[rows])))

    early = epochs <= backtest_epochs * REPEATED
    backtest, plain, early_star = [], [], None
    if (~early).any() and (early & repeated).any():
        early_star, early_law = profile_repetition(make, N[early], D[early], U[early], loss[early])
        plain_law = make().fit(N[early], D[early], loss[early]).law_
        for key in np.unique(cell[~early]):   # each cell once, scored against its seed mean
            runs = np.flatnonzero(cell == key)
            row, measured = runs[0], loss[runs]
            predicted = float(predict_repeated(early_law, Repetition(early_star), N[row], D[row], U[row]))
            backtest.append(_scored(N[row], D[row], U[row], epochs[row], measured, predicted))
            plain.append(_scored(N[row], D[row], U[row], epochs[row], measured,
                                 float(plain_law.predict(N[row], D[row]))))
    return RepetitionCurve(name, form, law, r_star, held.interval, level, len(N), sizes, backtest_epochs,
                           early_star, backtest, plain, _seed_spread(loss, cell))


def _cells(N, D, U) -> np.ndarray:
    """One label per run: runs of the same (N, D, U) to 4 significant digits (seeds of one run) share it."""
    keys = [(f"{n:.4g}", f"{d:.4g}", f"{u:.4g}") for n, d, u in zip(N, D, U)]
    return np.unique(np.array(keys), axis=0, return_inverse=True)[1].reshape(-1)


def _seed_spread(loss, cell) -> float | None:
    """Pooled relative standard deviation of one run's loss across seeds (the cells with several runs),
    or None when no cell has two."""
    squares, dof = 0.0, 0
    for key in np.unique(cell):
        values = loss[cell == key]
        if len(values) > 1:
            squares += float(np.sum((values / values.mean() - 1) ** 2))
            dof += len(values) - 1
    return float(np.sqrt(squares / dof)) if dof else None


def _scored(N, D, U, epochs, losses, predicted) -> dict:
    """One backtested cell: its seeds' mean loss (nats/token), how many, their spread, the prediction."""
    loss = float(np.mean(losses))
    return {"params": float(N), "tokens": float(D), "unique_tokens": float(U), "epochs": float(epochs),
            "loss": loss, "seeds": len(losses), "seed_spread": _seed_spread(np.asarray(losses), np.zeros(len(losses), int)),
            "predicted": predicted, "error": predicted / loss - 1}
