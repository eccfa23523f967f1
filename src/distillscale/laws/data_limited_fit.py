"""The data-limited law's constants fitted on measured runs: the one fitter behind the shipped constants
(bench/laws/data_limited_fit.py on bench/data/data_limited_runs.json) and `distillscale demo
--data-limited` (on a user's runs).

The runs are records of one schema (`MeasuredRun`, the bench's JSON `runs`): per corpus and student size,
cells of one pool each (a pool as large as the runs' tokens is fresh data: the cell every other pool's
penalty is measured against, its runs the others' "fresh twins", of the same name). Roles: `alone` (seeds),
`chain` (generation g distilled from g - 1, generation 1 from seed 0 alone), `larger` (a larger teacher
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
the same form (`predict_cell`), with the same intervals, against both naive rules for later generations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from distillscale.errors import UserError
from distillscale.laws.data_limited_form import BOUNDS, SHARE_NAMES, Z90, Shares, quadrature, spread
from distillscale.units import Quantity, parse_quantity

KAPPA_GRID = np.linspace(0.0, 1.0, 1001)
GAMMA_GRID = np.exp(np.linspace(np.log(BOUNDS["gamma"][0]), np.log(BOUNDS["gamma"][1]), 401))
RHO_MAX = 0.95     # the fresh chain's steps shrink: a ratio at most this (1 would never settle)
DRAWS = 400


# --- the runs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeasuredRun:
    """One run of the schema the bench writes (bench/data/data_limited_runs.json `runs`): named
    SIZE-uPOOL-NAME (d2-u16K-gen1), its validation loss (nats/token) and, for a distilled run, its
    teacher's (an ensemble's: the mixture's)."""

    corpus: str
    run_id: str
    role: str
    pool: str
    tokens: float
    val_loss: float
    params: float | None = None
    seed: int = 0
    generation: int | None = None
    members: int | None = None
    teachers: tuple[str, ...] = ()
    teacher_val_loss: float | None = None

    @property
    def size(self) -> str:
        return self.run_id.split("-", 2)[0]

    @property
    def name(self) -> str:
        return self.run_id.split("-", 2)[2]

    @property
    def unique_tokens(self) -> float:
        return parse_quantity(self.pool, "pool", kind=Quantity.TOKENS)

    @property
    def epochs(self) -> float:
        return max(1.0, self.tokens / self.unique_tokens)

    @classmethod
    def from_record(cls, record: dict) -> "MeasuredRun":
        try:
            return cls(str(record["corpus"]), str(record["run_id"]), str(record["role"]), str(record["pool"]),
                       float(record["tokens"]), float(record["val_loss"]),
                       None if record.get("non_embedding_params") is None else float(record["non_embedding_params"]),
                       int(record.get("seed") or 0), record.get("generation"), record.get("members"),
                       tuple(record.get("teachers") or ()),
                       None if record.get("teacher_val_loss") is None else float(record["teacher_val_loss"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"a data-limited run record is malformed ({exc!r}): each needs corpus, run_id, role, "
                            f"pool, tokens and val_loss") from None


def load_runs(path: Path | str) -> list[MeasuredRun]:
    """The runs of a data-limited measurement file (`{"runs": [...]}`)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))["runs"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a data-limited runs file ({exc}); it holds {{\"runs\": [...]}} as "
                        f"bench/distillation/data_limited.py collect writes it") from None
    return [MeasuredRun.from_record(record) for record in records]


# --- what each constant is fitted on ------------------------------------------------------------------

Group = tuple[str, str, str]   # (corpus, size, pool): what the bootstrap resamples


@dataclass(frozen=True)
class ChainCell:
    """One repeated cell's chain: P (its seeds' mean penalty against their fresh twins), the chain's
    losses L_0 (generation 1's teacher) .. L_G, and the fresh chain F_0 .. (as far as measured)."""

    group: Group
    penalty: float
    losses: tuple[float, ...]
    fresh: tuple[float, ...]
    fresh_group: Group

    @property
    def corpus(self) -> str:
        return self.group[0]


@dataclass(frozen=True)
class StudentOf:
    """A student of another teacher (a larger one) on the pool: both measured there and on fresh data."""

    group: Group
    L_T: float
    F_T: float
    L_S: float
    F_S: float
    own_penalty: float   # P_S: the student's size trained alone on the pool, against fresh data


@dataclass(frozen=True)
class EnsembleCell:
    """An ensemble of k trained alone: the members' mean loss L_1, the ensemble's own (the mixture's) L_k;
    its student's loss and the cell's student of one member (generation 1), where run."""

    group: Group
    members: int
    L_1: float
    L_k: float
    student: float | None = None
    one_member_student: float | None = None


@dataclass(frozen=True)
class Observations:
    """Everything the constants are fitted on, each item with its cell (`Group`)."""

    chains: tuple[ChainCell, ...]
    students: tuple[StudentOf, ...]
    ensembles: tuple[EnsembleCell, ...]
    cells: tuple["CellSummary", ...] = ()

    def groups(self) -> list[Group]:
        out = {c.group for c in self.chains} | {c.fresh_group for c in self.chains if c.fresh_group}
        out |= {s.group for s in self.students} | {e.group for e in self.ensembles}
        return sorted(out)

    def restricted(self, groups: Iterable[Group]) -> "Observations":
        """The observations of `groups`, each as many times as it appears there (a bootstrap resample)."""
        counts: dict[Group, int] = {}
        for group in groups:
            counts[group] = counts.get(group, 0) + 1

        def take(items, key=lambda item: item.group):
            return tuple(item for item in items for _ in range(counts.get(key(item), 0)))
        return Observations(take(self.chains), take(self.students), take(self.ensembles), self.cells)

    def without(self, corpus: str) -> "Observations":
        return self.restricted(g for g in self.groups() if g[0] != corpus)


@dataclass(frozen=True)
class CellSummary:
    """A cell's runs trained alone: the seeds' mean and standard deviation, the size and epochs."""

    group: Group
    alone_mean: float
    alone_sd: float | None
    params: float | None
    epochs: float
    unique_tokens: float


def observations(runs: Sequence[MeasuredRun]) -> Observations:
    """The runs arranged as the fit reads them (see the module)."""
    cells: dict[Group, dict[str, MeasuredRun]] = {}
    for run in runs:
        cells.setdefault((run.corpus, run.size, run.pool), {})[run.name] = run
    fresh_pool = {}
    for (corpus, size, pool), cell in cells.items():
        if all(run.epochs <= 1.0 for run in cell.values()):
            key = (corpus, size)
            if key not in fresh_pool or _count(pool) > _count(fresh_pool[key]):
                fresh_pool[key] = pool
    chains, students, ensembles, summaries = [], [], [], []
    for group in sorted(cells):
        corpus, size, pool = group
        cell = cells[group]
        alone = sorted((run for run in cell.values() if run.role == "alone"), key=lambda r: r.seed)
        if not alone:
            continue
        seeds = [run.val_loss for run in alone]
        epochs = max(run.epochs for run in alone)
        summaries.append(CellSummary(group, float(np.mean(seeds)), float(np.std(seeds, ddof=1)) if len(seeds) > 1
                                     else None, alone[0].params, epochs, alone[0].unique_tokens))
        twin_group = (corpus, size, fresh_pool[(corpus, size)]) if (corpus, size) in fresh_pool else None
        twin = cells.get(twin_group, {}) if twin_group else {}
        for ensemble in (run for run in cell.values() if run.role == "ensemble" and run.teacher_val_loss is not None):
            members = [cell[t.split("-", 2)[2]].val_loss for t in ensemble.teachers if t.split("-", 2)[2] in cell]
            if len(members) != len(ensemble.teachers) or len(members) < 2:
                continue
            reference = _chain(cell)
            ensembles.append(EnsembleCell(group, len(members), float(np.mean(members)), ensemble.teacher_val_loss,
                                          ensemble.val_loss, reference[1].val_loss if len(reference) > 1 else None))
        if twin_group is None or twin_group == group:
            continue
        twin_alone = [run.val_loss for run in twin.values() if run.role == "alone"]
        if not twin_alone:
            continue
        penalty = float(np.mean(seeds)) - float(np.mean(twin_alone))
        chain, fresh_chain = _chain(cell), _chain(twin)
        if len(chain) > 1 and fresh_chain:
            chains.append(ChainCell(group, penalty, tuple(r.val_loss for r in chain),
                                    tuple(r.val_loss for r in fresh_chain), twin_group))
        for student in (run for run in cell.values() if run.role == "student-of-larger"):
            teacher = _named(cell, student.teachers)
            twin_student, twin_teacher = twin.get(student.name), _named(twin, student.teachers)
            if teacher is None or twin_student is None or twin_teacher is None:
                continue
            students.append(StudentOf(group, teacher.val_loss, twin_teacher.val_loss, student.val_loss,
                                      twin_student.val_loss, penalty))
    return Observations(tuple(chains), tuple(students), tuple(ensembles), tuple(summaries))


def _count(pool: str) -> float:
    return parse_quantity(pool, "pool", kind=Quantity.TOKENS)


def _named(cell: dict[str, MeasuredRun], run_ids: Sequence[str]) -> MeasuredRun | None:
    """The one run of `cell` named as `run_ids`' single entry (by its name within a cell)."""
    if len(run_ids) != 1:
        return None
    return cell.get(run_ids[0].split("-", 2)[2])


def _chain(cell: dict[str, MeasuredRun]) -> list[MeasuredRun]:
    """Generation 0 (generation 1's teacher) and the chain's generations in order, as far as unbroken."""
    by_generation = {run.generation: run for run in cell.values() if run.role == "chain" and run.generation}
    first = by_generation.get(1)
    if first is None or len(first.teachers) != 1 or first.teachers[0].split("-", 2)[2] not in cell:
        return []
    out = [cell[first.teachers[0].split("-", 2)[2]], first]
    while (next_run := by_generation.get(len(out))) is not None:
        out.append(next_run)
    return out


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


# --- left out a corpus at a time --------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One left-out prediction: what, where, the measured and predicted loss (nats/token) with the 90%
    interval, and Delta against the cell's seeds trained alone (measured, predicted), their spread."""

    kind: str            # generation g, larger's student, ensemble of k, its student
    group: Group
    measured: float
    predicted: float
    low: float
    high: float
    alone_mean: float
    alone_sd: float | None
    generation: int | None = None
    members: int | None = None
    naive_first: float | None = None    # a later generation predicted as the measured generation 1
    naive_alone: float | None = None    # ... as the model trained alone (generation 0)

    @property
    def covered(self) -> bool:
        return self.low <= self.measured <= self.high

    @property
    def error(self) -> float:
        return abs(self.predicted - self.measured) / self.measured

    @property
    def measured_delta(self) -> float:
        return self.measured - self.alone_mean

    @property
    def predicted_delta(self) -> float:
        return self.predicted - self.alone_mean

    @property
    def clear(self) -> bool:
        """Whether the measured Delta exceeds two seeds' standard deviations."""
        return self.alone_sd is not None and abs(self.measured_delta) > 2 * self.alone_sd

    @property
    def sign_right(self) -> bool:
        return np.sign(self.measured_delta) == np.sign(self.predicted_delta)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "corpus": self.group[0], "size": self.group[1], "pool": self.group[2],
                "generation": self.generation, "members": self.members, "measured": self.measured,
                "predicted": self.predicted, "interval": [self.low, self.high], "covered": self.covered,
                "error": self.error, "measured_delta": self.measured_delta, "predicted_delta": self.predicted_delta,
                "alone_sd": self.alone_sd, "clear": self.clear, "sign_right": bool(self.sign_right),
                "naive_first": self.naive_first, "naive_alone": self.naive_alone}


def _interval(value: float, at_draws: np.ndarray, residual_sd: float, level: float) -> tuple[float, float]:
    """`value`'s interval: the draws' spread and the residual, combined (`laws.data_limited_form`)."""
    below, above = spread(at_draws, value, level)
    half = Z90 * residual_sd
    return value - float(quadrature(below, half)), value + float(quadrature(above, half))


def predict_cell(obs: Observations, law: DataLimitedFit, corpus: str) -> list[Check]:
    """Every prediction `law` makes of `corpus`'s runs from its runs trained alone and its fresh twins: each
    chain's generations, each larger teacher's student, each ensemble's own loss and its student's."""
    draws, shares, rho, level = law.draw_shares(), law.fit.shares, law.fit.rho, law.level
    rhos = law.draws[:, len(SHARE_NAMES)]
    summary = {c.group: c for c in obs.cells}
    checks = []
    for cell in (c for c in obs.chains if c.corpus == corpus):
        alone = summary[cell.group]
        predicted = chain_prediction(cell, shares, rho)
        at_draws = chain_prediction(cell, draws, rhos)
        for g in range(1, len(cell.losses)):
            value = float(predicted[g - 1])
            low, high = _interval(value, at_draws[g - 1], law.residuals.at_generation(g) * cell.penalty, level)
            checks.append(Check(f"generation {g}", cell.group, cell.losses[g], value, low, high, alone.alone_mean,
                                alone.alone_sd, generation=g, naive_first=cell.losses[1] if g > 1 else None,
                                naive_alone=cell.losses[0] if g > 1 else None))
    for s in (s for s in obs.students if s.group[0] == corpus):
        alone = summary[s.group]
        value = float(student_prediction(s, shares))
        low, high = _interval(value, student_prediction(s, draws), law.residuals.student * s.own_penalty, level)
        checks.append(Check("larger teacher's student", s.group, s.L_S, value, low, high, alone.alone_mean,
                            alone.alone_sd))
    for e in (e for e in obs.ensembles if e.group[0] == corpus):
        alone = summary[e.group]
        value = float(ensemble_prediction(e, shares))
        low, high = _interval(value, ensemble_prediction(e, draws), law.residuals.ensemble * e.L_1, level)
        checks.append(Check(f"ensemble of {e.members}", e.group, e.L_k, value, low, high, alone.alone_mean,
                            alone.alone_sd, members=e.members))
        if e.student is None or e.one_member_student is None:
            continue
        # its student from the predicted ensemble (what a user has before training it)
        value = float(ensemble_student_prediction(e, shares, value))
        at_draws = ensemble_student_prediction(e, draws, ensemble_prediction(e, draws))
        sd = float(quadrature(law.residuals.ensemble_student, law.residuals.ensemble * shares.theta)) * e.L_1
        low, high = _interval(value, at_draws, sd, level)
        checks.append(Check(f"student of an ensemble of {e.members}", e.group, e.student, value, low, high,
                            alone.alone_mean, alone.alone_sd, members=e.members))
    return checks


@dataclass(frozen=True)
class LeftOut:
    """Each corpus's runs predicted by the law fitted on the other corpora (`predict_cell`)."""

    checks: tuple[Check, ...]
    fits: dict[str, DataLimitedFit] = field(default_factory=dict)

    def of(self, kind: str) -> list[Check]:
        return [c for c in self.checks if c.kind.startswith(kind)]

    def later_generations(self) -> list[Check]:
        return [c for c in self.checks if c.generation is not None and c.generation > 1]

    def last_generations(self) -> list[Check]:
        last: dict[Group, Check] = {}
        for c in self.checks:
            if c.generation is not None and (c.group not in last or c.generation > last[c.group].generation):
                last[c.group] = c
        return list(last.values())

    def summary(self) -> dict:
        """Errors (relative, mean and worst) of generations 2..K against both naive rules; coverage of
        the first generation, the chain's last, the larger teacher's students, the ensembles and their
        students; signs where the measured Delta exceeds two seeds' standard deviations."""
        later = self.later_generations()

        def errors(rule):
            values = [abs(rule(c) - c.measured) / c.measured for c in later]
            return {"mean": float(np.mean(values)), "worst": float(np.max(values))} if values else None

        def coverage(checks):
            return {"covered": sum(c.covered for c in checks), "of": len(checks)}
        ks = sorted({c.members for c in self.checks if c.members})
        clear = [c for c in self.checks if c.clear]
        return {"later_generations": {"law": errors(lambda c: c.predicted), "as_generation_1": errors(lambda c: c.naive_first),
                                      "as_alone": errors(lambda c: c.naive_alone), "n": len(later)},
                "coverage": {"first_generation": coverage([c for c in self.checks if c.generation == 1]),
                             "last_generation": coverage(self.last_generations()),
                             "larger_teacher_student": coverage(self.of("larger")),
                             **{f"ensemble_of_{k}": coverage([c for c in self.of("ensemble") if c.members == k])
                                for k in ks},
                             **{f"student_of_ensemble_of_{k}": coverage([c for c in self.of("student of an ensemble")
                                                                         if c.members == k]) for k in ks},
                             "all": coverage(list(self.checks))},
                "signs": {"clear": len(clear), "right": int(sum(c.sign_right for c in clear))}}


def left_out(runs: Sequence[MeasuredRun], draws: int = 200, seed: int = 0,
             fallback: Shares | None = None) -> LeftOut:
    """Each corpus left out: the law fitted on the others (`fit_law`, `draws` bootstrap draws) predicts its
    runs (`predict_cell`)."""
    obs = observations(runs)
    corpora = sorted({g[0] for g in obs.groups()})
    checks, fits = [], {}
    for corpus in corpora:
        kept = [r for r in runs if r.corpus != corpus]
        try:
            fits[corpus] = fit_law(kept, draws, seed, fallback=fallback)
        except UserError:
            continue
        checks += predict_cell(obs, fits[corpus], corpus)
    return LeftOut(tuple(checks), fits)


def rejected_fit(obs: Observations, **changes) -> FitConstants:
    """The point fit with some constants held (`kappa=`, `lam=`, `gamma=`, ...), for the rejected forms."""
    fit = fit_constants(obs)
    return replace(fit, shares=replace(fit.shares, **changes))
