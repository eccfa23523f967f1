"""The data-limited law's constants fitted on measured runs: the one fitter behind the shipped constants
(bench/laws/data_limited_fit.py on the runs file their source names) and `distillscale demo
--data-limited` (on a user's runs).

The runs are records of one schema (`MeasuredRun`, the bench's JSON `runs`; `laws.data_limited_runs`): per
corpus and student size, cells of one pool each (a pool as large as the runs' tokens is fresh data: the cell
every other pool's penalty is measured against, its runs the others' "fresh twins", of the same name).
Roles: `alone` (seeds; their mean is the cell's reference), `chain` (generation g distilled from g - 1,
generation 1 from a seed alone; a cell may hold several chains, each fitted on), `larger` (a larger teacher
trained alone) and `student-of-larger`, `ensemble` (a student of k members; its teacher's loss is the
ensemble's own: the mixture's). The form is `laws.data_limited_form`'s; here, each constant is fitted where
it shows:

- kappa and lam on every generation of every chain: generation g's change against generation 0,
  L_g - L_0 = (F_g - F_0) + p_g - P, through the recursion from p_0 = P (its seeds' mean penalty), F_g the
  fresh chain (measured; past its last generation, its last step continued at the ratio rho of its
  measured steps); and on every student of a larger teacher, L_S - F_S = kappa p_T + lam P_S, the teacher's
  (L_T, F_T) measured. Generation 1 alone cannot tell kappa from lam (its teacher's penalty is its size's):
  the later generations and the larger teacher separate them. Least squares: kappa on a grid, lam solved
  at each (both within [0, 1]);
- eta and gamma on every ensemble's own loss, L_1 - L_k = eta (1 - k^-gamma) L_1 (L_1 the members'
  mean), gamma on a grid with eta solved at each; gamma needs two ensemble sizes (else the given one is
  kept);
- theta on every student of an ensemble: L_ref - L_S = theta (L_1 - L_k), L_ref the cell's student of one
  member (generation 1).

Intervals: every constant refitted together on cells (corpus, size, pool) resampled with replacement
(`bootstrap`), so a loss at each draw carries their joint spread; the fit's residuals (`Residuals`: the
chain's per generation and the larger teacher's student's as a share of the student's penalty alone, the
ensembles' and their students' as a share of the member's loss), which a loss's interval adds; and where the
constants were measured (`MeasuredRange`). `left_out` refits without each corpus and predicts it, through
the same form (`laws.data_limited_check.predict_cell`), with the same intervals, against both naive rules
for later generations. The runs and what each constant is fitted on: `laws.data_limited_runs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from distillscale.errors import UserError
from distillscale.laws.data_limited_form import BOUNDS, SHARE_NAMES, Shares
from distillscale.laws.data_limited_runs import (ChainCell, EnsembleCell, Group, MeasuredRun, Observations, StudentOf,
                                                 observations)

KAPPA_GRID = np.linspace(0.0, 1.0, 1001)
GAMMA_GRID = np.exp(np.linspace(np.log(BOUNDS["gamma"][0]), np.log(BOUNDS["gamma"][1]), 401))
RHO_MAX = 0.95     # the fresh chain's steps shrink: a ratio at most this (1 would never settle)
DRAWS = 400


# --- the fits -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitConstants:
    """The five shares and rho (the fresh chain's ratio of steps: how the fit continues F_g past the
    measured generations; the product's fresh chain is the distillation law's own)."""

    shares: Shares
    rho: float

    def row(self) -> list[float]:
        return [float(getattr(self.shares, name)) for name in SHARE_NAMES] + [self.rho]


def fresh_at(cell: ChainCell, generation: int, rho):
    """F_g of a chain: measured, or the fresh chain's last step continued at the ratio rho (a float, or
    an array of draws' ratios)."""
    fresh = cell.fresh
    if generation < len(fresh):
        return fresh[generation]
    if len(fresh) < 2:
        return fresh[-1]
    step, extra = fresh[-1] - fresh[-2], generation - (len(fresh) - 1)
    return fresh[-1] + step * sum(np.asarray(rho, float) ** j for j in range(1, extra + 1))


def fit_rho(chains: Sequence[ChainCell]) -> float:
    """The ratio of successive steps of the fresh chains (least squares through 0), within [0, RHO_MAX]."""
    seen, num, den = set(), 0.0, 0.0
    for cell in chains:
        if cell.fresh_group in seen:
            continue
        seen.add(cell.fresh_group)
        steps = np.diff(cell.fresh)
        num += float(np.sum(steps[:-1] * steps[1:]))
        den += float(np.sum(steps[:-1] ** 2))
    return float(np.clip(num / den, 0.0, RHO_MAX)) if den > 0 else 0.0


def _kappa_lambda_terms(chains, students, rho):
    """For every observation: y, and b(kappa), a(kappa) on KAPPA_GRID with prediction b + lam a. A chain
    gives each generation's step, L_g - L_{g-1} = (F_g - F_{g-1}) + p_g - p_{g-1}, p_0 = P (each step
    counted once: a later generation's error is not its first step's again)."""
    ys, bs, as_ = [], [], []
    k = KAPPA_GRID
    for cell in chains:
        P = cell.penalty
        before_b, before_a = np.zeros_like(k), np.zeros_like(k)   # p_g - P = b_g + lam a_g; 0 at g = 0
        for g in range(1, len(cell.losses)):
            b_g, a_g = P * (k ** g - 1.0), P * sum(k ** j for j in range(g))
            ys.append(cell.losses[g] - cell.losses[g - 1])
            bs.append(fresh_at(cell, g, rho) - fresh_at(cell, g - 1, rho) + b_g - before_b)
            as_.append(a_g - before_a)
            before_b, before_a = b_g, a_g
    for s in students:
        ys.append(s.L_S - s.F_S)
        bs.append(k * (s.L_T - s.F_T))
        as_.append(np.full_like(k, s.own_penalty))
    return np.array(ys), np.array(bs).reshape(len(ys), -1), np.array(as_).reshape(len(ys), -1)


def fit_kappa_lambda(chains: Sequence[ChainCell], students: Sequence[StudentOf], rho: float) -> tuple[float, float]:
    """kappa (grid) and lam (least squares at each kappa, within [0, 1]) minimising the squared errors."""
    y, b, a = _kappa_lambda_terms(chains, students, rho)
    if len(y) == 0:
        raise UserError("the data-limited fit needs a chain or a student of a larger teacher with fresh-data twins")
    denominator = np.sum(a * a, axis=0)
    lam = np.clip(np.divide(np.sum(a * (y[:, None] - b), axis=0), denominator, out=np.zeros_like(denominator),
                            where=denominator > 0), *BOUNDS["lam"])
    sse = np.sum((b + lam * a - y[:, None]) ** 2, axis=0)
    best = int(np.argmin(sse))
    return float(KAPPA_GRID[best]), float(lam[best])


def fit_gamma(ensembles: Sequence[EnsembleCell]) -> float | None:
    """gamma from the cells that measured two or more ensemble sizes: within each cell, the gains
    L_1 - L_k (as a share of L_1) in proportion to 1 - k^-gamma, each cell its own scale (least squares
    on GAMMA_GRID), so that cells whose gains differ in level do not stand for a change with k; None
    without such a cell."""
    by_cell: dict[Group, list[EnsembleCell]] = {}
    for e in ensembles:
        by_cell.setdefault(e.group, []).append(e)
    cells = [cell for cell in by_cell.values() if len({e.members for e in cell}) >= 2]
    if not cells:
        return None
    def sse(grid: np.ndarray) -> np.ndarray:
        total = np.zeros_like(grid)
        for cell in cells:
            ks = np.array([e.members for e in cell], float)
            y = np.array([(e.L_1 - e.L_k) / e.L_1 for e in cell])
            a = 1.0 - ks[:, None] ** -grid[None, :]
            scale = np.sum(a * y[:, None], axis=0) / np.sum(a * a, axis=0)
            total += np.sum((scale * a - y[:, None]) ** 2, axis=0)
        return total
    best = int(np.argmin(sse(GAMMA_GRID)))
    low, high = GAMMA_GRID[max(best - 1, 0)], GAMMA_GRID[min(best + 1, len(GAMMA_GRID) - 1)]
    from scipy.optimize import minimize_scalar

    refined = minimize_scalar(lambda g: float(sse(np.array([g]))[0]), bounds=(low, high), method="bounded",
                              options={"xatol": 1e-6})
    return float(refined.x) if refined.fun <= sse(GAMMA_GRID)[best] else float(GAMMA_GRID[best])


def fit_eta(ensembles: Sequence[EnsembleCell], gamma: float) -> float:
    """eta of L_1 - L_k = eta (1 - k^-gamma) L_1 at `gamma`, least squares within [0, 1]."""
    if not ensembles:
        return 0.0
    ks = np.array([e.members for e in ensembles], float)
    L1 = np.array([e.L_1 for e in ensembles])
    y = L1 - np.array([e.L_k for e in ensembles])
    a = (1.0 - ks ** -gamma) * L1
    return float(np.clip(a @ y / (a @ a), *BOUNDS["eta"]))


def fit_theta(ensembles: Sequence[EnsembleCell]) -> float | None:
    """theta of L_ref - L_S = theta (L_1 - L_k), within [0, 1]; None without an ensemble's student."""
    used = [e for e in ensembles if e.student is not None and e.one_member_student is not None]
    if not used:
        return None
    a = np.array([e.L_1 - e.L_k for e in used])
    y = np.array([e.one_member_student - e.student for e in used])
    return float(np.clip(a @ y / (a @ a), *BOUNDS["theta"])) if a @ a > 0 else 0.0


def fit_constants(obs: Observations, gamma: float | None = None, fallback: Shares | None = None) -> FitConstants:
    """Every constant on `obs` (see the module). `gamma`: held at this value; `fallback`: what a share the
    observations cannot tell takes (gamma with one ensemble size, theta without an ensemble's student)."""
    rho = fit_rho(obs.chains)
    kappa, lam = fit_kappa_lambda(obs.chains, obs.students, rho)
    fitted_gamma = gamma if gamma is not None else fit_gamma(obs.ensembles)
    if fitted_gamma is None:
        fitted_gamma = float(fallback.gamma) if fallback is not None else 1.0
    eta = fit_eta(obs.ensembles, fitted_gamma)
    theta = fit_theta(obs.ensembles)
    if theta is None:
        theta = float(fallback.theta) if fallback is not None else 0.0
    return FitConstants(Shares(kappa, lam, eta, fitted_gamma, theta), rho)


def bootstrap(obs: Observations, draws: int = DRAWS, seed: int = 0, fallback: FitConstants | None = None) -> np.ndarray:
    """Every constant refitted together on cells resampled with replacement (cells sorted, so the draws do
    not depend on the runs' order): rows (kappa, lam, eta, gamma, theta, rho). A draw whose cells tell one
    ensemble size only keeps `fallback`'s gamma (and its theta without an ensemble's student)."""
    groups = obs.groups()
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(draws):
        sample = obs.restricted(groups[i] for i in rng.integers(0, len(groups), len(groups)))
        if not sample.chains and not sample.students:
            sample = obs
        rows.append(fit_constants(sample, fallback=None if fallback is None else fallback.shares).row())
    return np.array(rows)


# --- predictions at the cells' own runs, and residuals -------------------------------------------------

@dataclass(frozen=True)
class Residuals:
    """What the form misses on the runs it was fitted on, as standard deviations: the chain's generation g
    (`chain[g - 1]`, past the last: the last) and a larger teacher's student, each as a share of the
    student's penalty trained alone (P); an ensemble's own loss and its student, as a share of the member's
    loss."""

    chain: tuple[float, ...]
    student: float
    ensemble: float
    ensemble_student: float

    def at_generation(self, generation: int) -> float:
        if not self.chain:
            return 0.0
        return self.chain[min(generation, len(self.chain)) - 1]

    def to_dict(self) -> dict:
        return {"chain_per_generation": list(self.chain), "student_of_larger": self.student,
                "ensemble": self.ensemble, "ensemble_student": self.ensemble_student,
                "units": "standard deviations: the chain's and a larger teacher's student's as a share of the "
                         "student's penalty trained alone; the ensemble's and its student's as a share of a member's loss"}

    @classmethod
    def from_dict(cls, data: dict) -> "Residuals":
        return cls(tuple(float(x) for x in data["chain_per_generation"]), float(data["student_of_larger"]),
                   float(data["ensemble"]), float(data["ensemble_student"]))


def chain_prediction(cell: ChainCell, shares: Shares, rho: float, generations: int | None = None) -> np.ndarray:
    """L_0 + (F_g - F_0) + p_g - P for g = 1 .. G (the cell's measured chain length unless given): the
    chain predicted from its generation 0, its penalty alone and its fresh chain; shares may be draws
    (then one row per generation, one column per draw)."""
    G = len(cell.losses) - 1 if generations is None else generations
    P = cell.penalty
    return np.array([cell.losses[0] + fresh_at(cell, g, rho) - cell.fresh[0] + shares.chain_penalty(P, g) - P
                     for g in range(1, G + 1)])


def student_prediction(s: StudentOf, shares: Shares) -> np.ndarray | float:
    return s.F_S + shares.student_penalty(s.L_T - s.F_T, s.own_penalty)


def ensemble_prediction(e: EnsembleCell, shares: Shares) -> np.ndarray | float:
    return e.L_1 * (1.0 - shares.ensemble_share(e.members))


def ensemble_student_prediction(e: EnsembleCell, shares: Shares, ensemble_loss=None):
    """The student of the ensemble: the cell's student of one member less theta of the ensemble's gain
    (`ensemble_loss`: the ensemble's predicted loss; default its measured one)."""
    L_k = e.L_k if ensemble_loss is None else ensemble_loss
    return e.one_member_student - shares.ensemble_student_gain(e.L_1 - np.asarray(L_k, float))


def residuals(obs: Observations, fit: FitConstants) -> Residuals:
    """Each part's error as a standard deviation (root mean square; see `Residuals`), out of sample where
    the runs hold several corpora: each corpus's runs predicted by the constants fitted on the others (a
    new corpus differs from the fitted ones by more than the fitted ones from their fit); with one corpus,
    the fit's own residuals."""
    corpora = sorted({g[0] for g in obs.groups()})
    if len(corpora) < 2:
        return _errors(obs, {corpora[0] if corpora else "": fit})
    fits = {}
    for corpus in corpora:
        kept = obs.without(corpus)
        if kept.chains or kept.students:
            fits[corpus] = fit_constants(kept, fallback=fit.shares)
    return _errors(obs, fits)


def _errors(obs: Observations, fits: dict[str, FitConstants]) -> Residuals:
    """The RMS of each part's relative errors, each corpus's items predicted by `fits[corpus]`."""
    per_generation: dict[int, list[float]] = {}
    student, ensemble, ensemble_student = [], [], []
    for cell in obs.chains:
        if cell.corpus not in fits:
            continue
        fit = fits[cell.corpus]
        predicted = chain_prediction(cell, fit.shares, fit.rho)
        for g, (p, y) in enumerate(zip(predicted, cell.losses[1:]), 1):
            per_generation.setdefault(g, []).append((float(p) - y) / cell.penalty)
    for s in (s for s in obs.students if s.group[0] in fits):
        student.append((float(student_prediction(s, fits[s.group[0]].shares)) - s.L_S) / s.own_penalty)
    for e in (e for e in obs.ensembles if e.group[0] in fits):
        shares = fits[e.group[0]].shares
        ensemble.append((float(ensemble_prediction(e, shares)) - e.L_k) / e.L_1)
        if e.student is not None and e.one_member_student is not None:
            ensemble_student.append((float(ensemble_student_prediction(e, shares)) - e.student) / e.L_1)
    chain = [_rms(per_generation[g]) for g in sorted(per_generation)]
    # an error grows with the generation: each generation's at least the one before's
    chain = tuple(float(x) for x in np.maximum.accumulate(chain)) if chain else ()
    return Residuals(chain, _rms(student), _rms(ensemble), _rms(ensemble_student))


def _rms(values: Sequence[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else 0.0


# --- where the constants were measured -----------------------------------------------------------------

@dataclass(frozen=True)
class MeasuredRange:
    """Where the constants were measured: the students' sizes, their pools' epochs, their parameters per
    unique token, and the ensembles' sizes (k), each [low, high]. A loss priced outside it lies at a
    distance no run measured (`distance`)."""

    params: tuple[float, float]
    epochs: tuple[float, float]
    params_per_unique_token: tuple[float, float]
    members: tuple[int, int] | None = None

    @classmethod
    def everywhere(cls) -> "MeasuredRange":
        """A range that holds every model (constants given by hand: nothing says where they hold less)."""
        return cls((0.0, math.inf), (1.0, math.inf), (0.0, math.inf), None)

    def distance(self, params: float | None = None, epochs: float | None = None,
                 params_per_unique_token: float | None = None, members: int | None = None) -> dict[str, float]:
        """How far outside the range each given quantity lies, as a ratio (> 1), by name; empty inside."""
        out = {}
        for name, value in (("params", params), ("epochs", epochs), ("params_per_unique_token", params_per_unique_token),
                            ("members", members)):
            bounds = getattr(self, name)
            if value is None or bounds is None:
                continue
            low, high = bounds
            ratio = max(low / value, value / high if math.isfinite(high) else 0.0) if value > 0 else math.inf
            if ratio > 1.0 + 1e-9:
                out[name] = float(ratio)
        return out

    def describe(self) -> str:
        def span(name, low, high, fmt):
            return f"{name} {fmt(low)}" + (f"-{fmt(high)}" if high != low else "")
        from distillscale.units import format_quantity

        parts = [span("parameters", *self.params, format_quantity), span("epochs", *self.epochs, lambda x: f"{x:.3g}"),
                 span("parameters per unique token", *self.params_per_unique_token, lambda x: f"{x:.3g}")]
        if self.members is not None:
            parts.append(span("ensembles of", *self.members, str))
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"params": list(self.params), "epochs": list(self.epochs),
                "params_per_unique_token": list(self.params_per_unique_token),
                "members": None if self.members is None else list(self.members)}

    @classmethod
    def from_dict(cls, data: dict) -> "MeasuredRange":
        members = data.get("members")
        return cls(tuple(map(float, data["params"])), tuple(map(float, data["epochs"])),
                   tuple(map(float, data["params_per_unique_token"])),
                   None if members is None else (int(members[0]), int(members[1])))


def measured_range(runs: Sequence[MeasuredRun]) -> MeasuredRange:
    """The range the runs' students and ensembles cover (students: alone, chain and ensemble students;
    the larger teachers count by their parameters per unique token, which their students inherit from)."""
    students = [r for r in runs if r.role in ("alone", "chain", "student-of-larger", "ensemble") and r.params]
    teachers = [r for r in runs if r.role == "larger" and r.params]
    if not students:
        raise UserError("the data-limited runs hold no student with its parameter count")
    params = [r.params for r in students]
    per_unique = [r.params / r.unique_tokens for r in students + teachers if r.epochs > 1.0] or \
                 [r.params / r.unique_tokens for r in students]
    members = [r.members for r in runs if r.role == "ensemble" and r.members]
    return MeasuredRange((min(params), max(params)), (1.0, max(r.epochs for r in students)),
                         (min(per_unique), max(per_unique)), (min(members), max(members)) if members else None)


# --- the whole fit ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataLimitedFit:
    """The constants fitted on runs: the point fit, the bootstrap's draws (rows kappa, lam, eta, gamma,
    theta, rho), the residuals, where they were measured, and how much went in."""

    fit: FitConstants
    draws: np.ndarray
    residuals: Residuals
    measured: MeasuredRange
    cells: int
    chains: int
    students: int
    ensembles: int
    ensemble_students: int
    notes: tuple[str, ...] = ()
    level: float = 0.9

    def interval(self, name: str) -> tuple[float, float]:
        column = (*SHARE_NAMES, "rho").index(name)
        low, high = np.quantile(self.draws[:, column], [(1 - self.level) / 2, (1 + self.level) / 2])
        return float(low), float(high)

    def value(self, name: str) -> float:
        return self.fit.rho if name == "rho" else float(getattr(self.fit.shares, name))

    def draw_shares(self) -> Shares:
        return Shares.from_rows(self.draws[:, :len(SHARE_NAMES)])


def fit_law(runs: Sequence[MeasuredRun], draws: int = DRAWS, seed: int = 0, level: float = 0.9,
            fallback: Shares | None = None, fallback_name: str = "the given constants") -> DataLimitedFit:
    """The data-limited law's constants on `runs` (see the module), their joint bootstrap over cells, the
    residuals and the measured range. `fallback` (named `fallback_name`): what a share the runs cannot tell
    takes (the shipped constants', for a user's runs: gamma from one ensemble size, theta without an
    ensemble's student)."""
    obs = observations(runs)
    if not obs.chains and not obs.students:
        raise UserError("the data-limited runs hold no chain and no student of a larger teacher with their "
                        "fresh-data twins: nothing fits kappa and lambda")
    point = fit_constants(obs, fallback=fallback)
    rows = bootstrap(obs, draws, seed, fallback=point)
    notes = []
    if fit_gamma(obs.ensembles) is None:
        notes.append("gamma: no pool measured two ensemble sizes, so gamma is "
                     + (f"kept from {fallback_name}" if fallback is not None else "held at 1"))
    if not any(e.student is not None and e.one_member_student is not None for e in obs.ensembles):
        notes.append("theta: no student of an ensemble measured, so theta is "
                     + (f"kept from {fallback_name}" if fallback is not None else "held at 0"))
    return DataLimitedFit(point, rows, residuals(obs, point), measured_range(runs), len(obs.groups()),
                          len(obs.chains), len(obs.students), len(obs.ensembles),
                          sum(e.student is not None and e.one_member_student is not None for e in obs.ensembles),
                          tuple(notes), level)


