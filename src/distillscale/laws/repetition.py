"""Repeated data in the laws: Muennighoff et al. 2023, "Scaling Data-Constrained Language Models".

A token seen for the (k+1)-th time is worth less than a new one. With U unique tokens and D tokens
trained on, R_D = D / U - 1 repetitions, the effective data is

    D' = U + U R_D* (1 - exp(-R_D / R_D*))

(D' = D without repetition; D' -> U (1 + R_D*) as the repetitions grow: a corpus is never worth more
than 1 + R_D* times itself). The same decay applies to parameters in excess of the compute-optimal
size for U tokens, U_N = min(N, N_opt(U)), R_N = N / U_N - 1:

    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*))

and the loss is the law's at (N', D'). Muennighoff et al. fit R_D* = 15.4 and R_N* = 5.3 on C4
(GPT-2 tokenizer, up to 9B parameters and 900B tokens; their repository's README gives
R_D* = 15.387756, R_N* = 5.309743). `fit_repetition` fits R_D* to runs that repeat data, with the
law's other coefficients held (their second stage).

    rep = Repetition(R_D_star=15.4)
    law.predict_repeated(N, D, U)            # SupervisedLaw with law.repetition set
    repetition_penalty(law, rep, N, D, U)    # relative loss increase over fresh data
    unique_tokens_needed(law, rep, N, D, 0.01)   # the U that keeps the penalty within 1%
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from distillscale.errors import ParameterError
from distillscale.laws.ties import first_lowest

# Muennighoff et al. 2023, Table/README: the C4 fit of the full data-constrained law (natural-log
# coefficients a, b, e exponentiated to A, B, E).
MUENNIGHOFF2023 = {"E": float(np.exp(0.6254804)), "A": float(np.exp(6.255414)), "B": float(np.exp(7.3049974)),
                   "alpha": 0.3526596, "beta": 0.3526596, "R_D_star": 15.387756, "R_N_star": 5.309743}
# Box of a fitted R_D*: below 0.05 repeated tokens are worth nothing, above 1e4 they are new.
R_STAR_BOUNDS = (0.05, 1e4)


@dataclass(frozen=True)
class Repetition:
    """The decay constants of repeated tokens (R_D*) and excess parameters (R_N*, None: not modelled),
    with R_D*'s interval when fitted and where they come from."""

    R_D_star: float
    R_N_star: float | None = None
    interval: tuple[float, float] | None = None   # of R_D*, at the fit's level
    source: str = ""
    backtest: dict | None = None   # fitted on the runs of few epochs, the error on those of many

    def to_dict(self) -> dict:
        return {"R_D_star": self.R_D_star, "R_N_star": self.R_N_star,
                "R_D_star_interval": list(self.interval) if self.interval else None, "source": self.source,
                "backtest": self.backtest}

    @classmethod
    def from_dict(cls, data: dict) -> "Repetition":
        interval = data.get("R_D_star_interval")
        return cls(float(data["R_D_star"]), None if data.get("R_N_star") is None else float(data["R_N_star"]),
                   tuple(map(float, interval)) if interval else None, str(data.get("source", "")),
                   data.get("backtest"))


PUBLISHED = Repetition(MUENNIGHOFF2023["R_D_star"], MUENNIGHOFF2023["R_N_star"],
                       source="Muennighoff et al. 2023 (C4)")


def counted_as_new(why: str, backtest: dict | None = None) -> Repetition:
    """Constants under which repeated tokens count as new (R_D* at the box's top, R_N* none): what a
    fit keeps when the data-constrained law did not predict its repeated runs better."""
    return Repetition(R_STAR_BOUNDS[1], None, None, f"repeats counted as new: {why}", backtest)

# Distilled students' R_D* where no sweep of the user's measured one: this project's repetition sweep
# (report/repetition_sweep.toml, `distillscale demo --repetition`: students of depth 1 and 2, 7K and
# 56K parameters, distilled from one teacher, 2 seeds, Python sources;
# docs/repetition_sweep.md): 37 [18, 75] against 5.2 [4.4, 6.2] for the same models trained without a teacher.
DISTILLED_MICRO = Repetition(37.0, None, (18.0, 75.0),
                             source="distilled students, measured at micro scale (7K-56K parameters, "
                                    "the repetition sweep)")


def distilled_repetition(distillation_law) -> Repetition:
    """The decay of repeated data for distilled students: the distillation law's own constant when a
    sweep measured one (`DistillationLaw.repetition`), else the micro-scale measurement."""
    return getattr(distillation_law, "repetition", None) or DISTILLED_MICRO


@dataclass(frozen=True)
class RStarPrior:
    """What is known of R_D* before a user's runs: log-normal, `median` and `log_sd` (natural log)."""

    median: float
    log_sd: float
    source: str = ""

    def log_density(self, r_star) -> np.ndarray:
        """Log density in log R_D* (up to a constant)."""
        return -0.5 * ((np.log(np.asarray(r_star, float)) - np.log(self.median)) / self.log_sd) ** 2

    def interval(self, level: float = 0.9) -> tuple[float, float]:
        from statistics import NormalDist

        z = NormalDist().inv_cdf((1 + level) / 2)
        return (float(self.median * np.exp(-z * self.log_sd)), float(self.median * np.exp(z * self.log_sd)))


# The prior of a data-constrained fit: Muennighoff et al.'s R_D* (15.4, C4, 14M-9B parameters) as the
# median, with a spread (log-sd 1.0: 90% within 3.0-79) that takes in the supervised values this
# project measured at micro scale (5.2 [4.4, 6.2] on Python sources, 3.9 [1.7, 25] on C headers:
# docs/repetition_sweep.md) and the 4.1-9.5 that profiles of Muennighoff et al.'s own runs give
# (bench/laws/repetition_backtest.py); a fit's R_D* is the posterior under it.
R_D_STAR_PRIOR = RStarPrior(MUENNIGHOFF2023["R_D_star"], 1.0,
                            "Muennighoff et al. 2023's 15.4, log-sd 1.0 (90%: 3.0-79)")


def epochs(D, U) -> np.ndarray:
    """Passes over the unique data: D / U."""
    return np.asarray(D, float) / np.asarray(U, float)


def _decayed(unique, total, r_star) -> np.ndarray:
    """unique + unique r* (1 - exp(-R / r*)), R = total / unique - 1 (>= 0): total when R = 0, and
    for r* at the top of the box (R_STAR_BOUNDS: repeats counted as new)."""
    if r_star >= R_STAR_BOUNDS[1]:
        return np.asarray(total, float) + 0.0 * np.asarray(unique, float)
    unique = np.minimum(np.asarray(unique, float), np.asarray(total, float))
    repeats = np.asarray(total, float) / unique - 1.0
    return unique + unique * r_star * -np.expm1(-repeats / r_star)


def effective_tokens(D, U, R_D_star: float) -> np.ndarray:
    """D' = U + U R_D* (1 - exp(-(D/U - 1) / R_D*)); D itself when D <= U."""
    return _decayed(U, D, R_D_star)


def effective_params(law, N, U, R_N_star: float) -> np.ndarray:
    """N' = U_N + U_N R_N* (1 - exp(-(N/U_N - 1) / R_N*)), U_N = min(N, N_opt(U)), N_opt(U) the
    size compute-optimal for U tokens under the law's own form (`SupervisedLaw.compute_optimal_params`)."""
    return _decayed(np.minimum(np.asarray(N, float), law.compute_optimal_params(U)), N, R_N_star)


def predict_repeated(law, repetition: Repetition, N, D, U):
    """The data-constrained law's loss (nats/token) for N parameters trained on D tokens of which U
    are unique (U above D counts as D: a run sees no more unique tokens than it trains on).

    With R_N* set, this is below the plain law's loss even without repetition for a model larger
    than compute-optimal for its data (N' < N at U = D): compare it with itself at U = D
    (`repetition_ratio`), not with the plain law, to see what repetition costs."""
    _check_unique(U)
    U = np.minimum(np.asarray(U, float), np.asarray(D, float))
    D_eff = effective_tokens(D, U, repetition.R_D_star)
    N_eff = N if repetition.R_N_star is None else effective_params(law, N, U, repetition.R_N_star)
    return law.predict(N_eff, D_eff)


def repetition_ratio(law, repetition: Repetition, N, D, U):
    """What repeating costs, as a factor on the loss: the data-constrained law with U unique tokens
    over the same law with D unique ones (1 at U >= D, whatever R_N* says of the model's size)."""
    out = (np.asarray(predict_repeated(law, repetition, N, D, U), float)
           / np.asarray(predict_repeated(law, repetition, N, D, D), float))
    return float(out) if out.ndim == 0 else out


def repetition_penalty(law, repetition: Repetition, N, D, U):
    """Relative loss increase of D tokens with U unique over D fresh tokens (0 without repetition):
    `repetition_ratio` - 1."""
    return repetition_ratio(law, repetition, N, D, U) - 1.0


def unique_tokens_needed(law, repetition: Repetition, N: float, D: float, max_penalty: float) -> float:
    """The fewest unique tokens that keep the loss within `max_penalty` (relative, e.g. 0.01) of
    fresh data, for N parameters and D tokens: bisection in log U (the penalty falls as U grows)."""
    return fewest_unique(lambda U: repetition_penalty(law, repetition, N, D, U), D, max_penalty)


def fewest_unique(penalty, D: float, max_penalty: float) -> float:
    """The fewest unique tokens U (from D / 1e6 to D) with `penalty(U)` within `max_penalty`, for a
    penalty that falls as U grows and is 0 from U = D on: bisection in log U."""
    if not 0 < max_penalty < 1:
        raise ParameterError("max_penalty", f"{{}} must be a fraction between 0 and 1, got {max_penalty}")
    low, high = np.log(D) - np.log(1e6), np.log(D)
    if penalty(np.exp(low)) <= max_penalty:
        return float(np.exp(low))
    for _ in range(60):
        mid = (low + high) / 2
        if penalty(np.exp(mid)) <= max_penalty:
            high = mid
        else:
            low = mid
    return float(np.exp(high))


def _check_unique(U) -> None:
    U = np.asarray(U, float)
    if not (0.0 < float(U) < math.inf if U.ndim == 0 else np.all(np.isfinite(U) & (U > 0))):  # one count: cheaply
        raise ParameterError("unique_tokens", "{} must be positive token counts")


def fit_repetition(law, N, D, U, loss, *, huber_delta: float = 1e-3, level: float = 0.9,
                   bootstrap: int = 200, seed: int = 0, fit_r_n: bool = False) -> Repetition:
    """R_D* (and with `fit_r_n` R_N*) fitted to runs that repeat data, the law's other coefficients
    held: the Huber loss of log-residuals, minimised over a fine log grid of R* (the objective is
    one-dimensional and cheap, so the grid is exact to its spacing, 1%). The interval is a bootstrap
    over the runs; an R* whose interval reaches the box (R_STAR_BOUNDS) says the runs do not
    constrain it. Runs with D <= U (no repetition) do not move R_D*, but they are fitted as well."""
    N, D, U, loss = (np.asarray(x, float) for x in (N, D, U, loss))
    _check_unique(U)
    if not np.any(D > U * 1.0001):
        raise ParameterError("unique_tokens", "no run repeats its data (every D <= U): nothing constrains R_D*")
    grid = np.exp(np.linspace(np.log(R_STAR_BOUNDS[0]), np.log(R_STAR_BOUNDS[1]), 1200))
    r_n_grid = grid[::20] if fit_r_n else [None]
    log_loss = np.log(loss)
    residuals = []  # (r_n, r_d) -> per-run log residual
    pairs = []
    for r_n in r_n_grid:
        N_eff = N if r_n is None else effective_params(law, N, U, r_n)
        for r_d in grid:
            residuals.append(np.log(law.predict(N_eff, effective_tokens(D, U, r_d))) - log_loss)
            pairs.append((r_n, r_d))
    residuals = np.array(residuals)
    slope = np.clip(residuals, -huber_delta, huber_delta)
    per_run = slope * (residuals - slope / 2)   # Huber, per candidate and run
    best = first_lowest(per_run.sum(axis=1))   # ties (a flat objective): the smaller R*
    interval = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(loss), np.full(len(loss), 1.0 / len(loss)), size=bootstrap)
        picks = first_lowest(counts @ per_run.T, axis=1)
        r_d_samples = np.array([pairs[i][1] for i in picks])
        interval = tuple(float(x) for x in np.quantile(r_d_samples, [(1 - level) / 2, (1 + level) / 2]))
    r_n, r_d = pairs[best]
    return Repetition(float(r_d), None if r_n is None else float(r_n), interval,
                      source=f"fitted to {int(np.sum(D > U * 1.0001))} runs that repeat data "
                             f"(up to {float(np.max(D / U)):.3g} epochs)")


def describe_r_star(value: float, interval) -> str:
    """R_D* for people: "15.4 [10.2, 22.1]", or with an interval that reaches the box's edge, the
    side the runs do bound ("> 120: the runs do not bound it above")."""
    if not interval:
        return f"{value:.3g} (no interval)"
    low, high = interval
    if high >= R_STAR_BOUNDS[1] * 0.99:
        return f"> {low:.3g} (the runs do not bound it above: repetition cost little here)"
    if low <= R_STAR_BOUNDS[0] * 1.01:
        return f"< {high:.3g} (the runs do not bound it below: repeated tokens were worth little)"
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


# Beyond this many times the most epochs of the runs a law's R_D* was fitted on, a prediction says that it
# extrapolates repetition far (the number is unchanged): on Muennighoff et al.'s runs, fitted on <= 4
# epochs, the runs to 16 epochs were predicted within 2.8% on average, those beyond within 12-19%,
# whatever the form tried (bench/laws/repetition_backtest.py --forms, docs/repetition.md).
FAR_EPOCHS_FACTOR = 4.0


def fitted_epochs(repetition: Repetition | None) -> float | None:
    """The most epochs of the runs behind `repetition` (its fit's record), None when not recorded."""
    record = (repetition.backtest or {}) if repetition is not None else {}
    value = record.get("max_epochs")
    return float(value) if value else None


# The largest loss penalty from repetition that a plan accepts before it says how much unique data
# would avoid it (--max-penalty).
DEFAULT_MAX_PENALTY = 0.01


@dataclass(frozen=True)
class RepetitionAssessment:
    """What repeating U unique tokens costs a model of N parameters trained on D tokens."""

    params: float
    tokens: float
    unique_tokens: float
    epochs: float
    loss_fresh: float            # the law's loss with D unique tokens (nats/token)
    loss_repeated: float         # with U unique tokens repeated to D: loss_fresh times `repetition_ratio`
    penalty: float               # loss_repeated / loss_fresh - 1
    max_penalty: float
    unique_tokens_needed: float  # the fewest unique tokens keeping the penalty within max_penalty
    repetition: Repetition
    # A distilled student whose teacher is pre-trained on the same corpus: the teacher's check, and the
    # relative rise of the student's loss through its teacher's (already in `penalty`, `loss_repeated`
    # and `unique_tokens_needed`, which are the student's whole).
    teacher: "RepetitionAssessment | None" = None
    through_teacher: float = 0.0
    # A distilled student's share of its size's penalty trained alone (the data-limited law's lam): its
    # own penalty is that share of what `repetition` prices; None for a model trained alone.
    own_share: float | None = None

    @property
    def within(self) -> bool:
        return self.penalty <= self.max_penalty

    @property
    def effective_tokens(self) -> float:
        """D': what the repeated tokens are worth as fresh ones, where the law is evaluated (its
        data range applies to D', not to D)."""
        return float(effective_tokens(self.tokens, self.unique_tokens, self.repetition.R_D_star))

    def to_dict(self) -> dict:
        return {"unique_tokens": self.unique_tokens, "epochs": self.epochs, "loss_fresh": self.loss_fresh,
                "loss_repeated": self.loss_repeated, "penalty": self.penalty, "max_penalty": self.max_penalty,
                "unique_tokens_needed": self.unique_tokens_needed, "repetition": self.repetition.to_dict(),
                **({} if self.teacher is None else {"through_teacher": self.through_teacher,
                                                    "teacher_penalty": self.teacher.penalty}),
                **({} if self.own_share is None else {"own_share": self.own_share})}

    def describe(self, format_quantity=lambda x: f"{x:.3g}") -> list[str]:
        """Lines for the terminal: epochs and penalty, and the unique data that keeps it small."""
        lines = [f"{format_quantity(self.unique_tokens)} unique tokens: {self.epochs:.3g} epochs of "
                 f"{format_quantity(self.tokens)} tokens; loss {self.loss_repeated:.4f} nats/token vs "
                 f"{self.loss_fresh:.4f} with fresh data ({self.penalty:+.2%}{self._teacher_part(format_quantity)}; "
                 + (f"a distilled student pays lambda = {self.own_share:.3g} of its size's penalty alone, "
                    if self.own_share is not None else "")
                 + f"R_D* = {self.repetition.R_D_star:.3g}"
                 + (f", R_N* = {self.repetition.R_N_star:.3g}" if self.repetition.R_N_star else "")
                 + f", {self.repetition.source or 'given'})"]
        verdict = ("within" if self.within else "above") + f" {self.max_penalty:.1%}"
        if self.teacher is not None:
            verdict += " (its teacher's included)"
        lines.append(f"the penalty is {verdict}: {format_quantity(self.unique_tokens_needed)} "
                     f"unique tokens ({self.tokens / self.unique_tokens_needed:.3g} epochs) keep it within "
                     f"{self.max_penalty:.1%}")
        return lines

    def _teacher_part(self, format_quantity) -> str:
        if self.teacher is None:
            return ""
        own = (1.0 + self.penalty) / (1.0 + self.through_teacher) - 1.0
        pool = ("the same corpus" if self.teacher.unique_tokens == self.unique_tokens
                else f"{format_quantity(self.teacher.unique_tokens)} unique tokens")
        return (f": {self.through_teacher:+.2%} through its teacher, trained on {pool} "
                f"({self.teacher.epochs:.3g} epochs, {self.teacher.penalty:+.2%}), {own:+.2%} of its own")


def pooled_loss(law, N, D, U, repetition: Repetition | None = None) -> float:
    """The loss (nats/token) of a model trained without a teacher, N parameters on D tokens drawn from
    a pool of U unique tokens, under `repetition` (default: the law's own, else Muennighoff et al.'s):
    the law's loss with fresh data times `repetition_ratio` (exactly the fresh loss at U >= D). The one
    computation behind `predict supervised --unique-tokens` and a teacher trained on a pool (`plan`,
    `predict distillation`, `teacher` with --teacher-unique-tokens)."""
    _check_unique(U)
    repetition = repetition or getattr(law, "repetition", None) or PUBLISHED
    return float(law.predict(N, D)) * float(repetition_ratio(law, repetition, N, D, U))


def pooled_prediction(law, prediction, N: float, D: float, U: float, repetition: Repetition | None = None):
    """`prediction` (the law's own at (N, D), fresh data) for a model trained without a teacher on D
    tokens from U unique ones: `repeated_prediction`'s interval around `pooled_loss`'s value."""
    repetition = repetition or getattr(law, "repetition", None) or PUBLISHED
    return replace(repeated_prediction(law, prediction, N, D, U, repetition),
                   value=pooled_loss(law, N, D, U, repetition))


def repeated_prediction(law, prediction, N, D, U, repetition: Repetition | None = None):
    """`prediction` (the law's `Prediction` at (N, D), fresh data) for D tokens of which U are unique,
    under `repetition` (default: the law's own, else Muennighoff et al.'s): value and interval times
    the loss ratio with repetition, the interval widened to the losses at the two ends of R_D*'s
    interval (an R_D* the runs pin loosely widens it). Floats or arrays."""
    _check_unique(U)
    repetition = repetition or getattr(law, "repetition", None) or PUBLISHED
    ratio = np.asarray(repetition_ratio(law, repetition, N, D, U), float)
    out = prediction.scaled(ratio if ratio.ndim else float(ratio))
    if repetition.interval:
        ends = [np.asarray(repetition_ratio(law, Repetition(r, repetition.R_N_star), N, D, U), float) / ratio
                for r in repetition.interval]
        out = out.stretched(np.minimum(*ends), np.maximum(*ends))
    return out


def assess(law, N: float, D: float, U: float, max_penalty: float = DEFAULT_MAX_PENALTY,
           repetition: Repetition | None = None) -> RepetitionAssessment:
    """Epochs, loss penalty and the unique data needed for a run of N parameters and D tokens drawn
    from U unique tokens, under `repetition` (default: the law's own, else Muennighoff et al.'s)."""
    _check_unique(U)
    repetition = repetition or getattr(law, "repetition", None) or PUBLISHED
    fresh = float(law.predict(N, D))
    penalty = float(repetition_penalty(law, repetition, N, D, U))
    return RepetitionAssessment(float(N), float(D), float(U), float(D / U), fresh, fresh * (1.0 + penalty),
                                penalty, max_penalty,
                                unique_tokens_needed(law, repetition, N, D, max_penalty), repetition)
