"""The runs the data-limited law is fitted on (`laws.data_limited_fit`), as the bench records them
(bench/data/data_limited_regime.json and the earlier bench/data/data_limited_runs.json `runs`, written by
bench/distillation/data_limited.py collect) and `distillscale demo --data-limited` collects them:
`MeasuredRun` records, and the observations each constant is fitted on, arranged per (corpus, student size,
pool) cell with its fresh twin (`observations`).

Schema of a run: corpus, run_id (SIZE-uPOOL-NAME: d2-u16K-alone-s1), role (alone, chain, larger,
student-of-larger, ensemble, grid, larger-grid), pool (unique tokens, "16K"), tokens, val_loss; and where
they apply non_embedding_params, seed, generation, chain, members, teachers (their run_ids),
teacher_val_loss (an ensemble's student: the ensemble's own loss, its mixture's), member_val_losses, cell
(SIZE-uPOOL: a larger teacher's is its student's), unique_tokens and status. Two forms of it:

- the regime's (bench/data/data_limited_regime.json): two student sizes (d2-, d3-), seeds alone s1..s8,
  chains numbered (d2-u4K-chain2/generation-3, chain 2, generation 1 distilled from alone-s2), ensembles of
  the first k seeds (d2-u4K-ensemble8), a larger teacher per size (d2-u4K-larger: depth 3's seed 1 alone;
  d3-u4K-larger: the best depth-4 run) and its student (d2-u4K-from-larger);
- the one-size runs (bench/data/data_limited_runs.json): one chain per cell (d2-u16K-gen3, no chain
  number: chain 1), generation 1 distilled from alone-s0.

A run without a loss (diverged or failed) is left out. A pool no run reads more than FRESH_EPOCHS times is
fresh data: its runs are the other pools' fresh twins (of the same corpus and size), found by name; a
repeated cell's chains take the fresh chain of their number, else its first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from distillscale.errors import UserError
from distillscale.units import Quantity, parse_quantity


@dataclass(frozen=True)
class MeasuredRun:
    """One run of the schema the bench writes (bench/data/data_limited_regime.json `runs`): named
    SIZE-uPOOL-NAME (d2-u16K-alone-s1; a chain's generation d2-u16K-chain1/generation-3, `chain` saying
    which chain of its cell), its validation loss (nats/token) and, for a distilled run, its teacher's (an
    ensemble's: the mixture's, each member's in `member_losses`). `cell`: SIZE-uPOOL, the student size's cell
    (a larger teacher's is its student's); `unique`: the pool's unique tokens as the engine counted them."""

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
    chain: int | None = None
    cell: str | None = None
    unique: float | None = None
    member_losses: tuple[float, ...] = ()

    @property
    def size(self) -> str:
        return (self.cell or self.run_id).split("-", 1)[0]

    @property
    def name(self) -> str:
        return run_name(self.run_id)

    @property
    def unique_tokens(self) -> float:
        if self.unique:
            return self.unique
        return parse_quantity(self.pool, "pool", kind=Quantity.TOKENS)

    @property
    def epochs(self) -> float:
        return max(1.0, self.tokens / self.unique_tokens)

    @classmethod
    def from_record(cls, record: dict) -> "MeasuredRun":
        """A run of either schema: the one-size runs (bench/data/data_limited_runs.json: one chain per cell,
        d2-u16K-gen3) and the regime's (chains numbered, ensembles' member losses, the cell named)."""
        def number(key):
            return None if record.get(key) is None else float(record[key])
        if not isinstance(record, dict):
            raise UserError(f"a data-limited run record is not an object: {str(record)[:60]!r}")
        try:
            return cls(str(record["corpus"]), str(record["run_id"]), str(record["role"]), str(record["pool"]),
                       float(record["tokens"]), float(record["val_loss"]), number("non_embedding_params"),
                       int(record.get("seed") or 0), record.get("generation"), record.get("members"),
                       tuple(record.get("teachers") or ()), number("teacher_val_loss"),
                       None if record.get("chain") is None else int(record["chain"]), record.get("cell"),
                       number("unique_tokens"),
                       tuple(float(x) for x in record.get("member_val_losses") or () if x is not None))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"a data-limited run record is malformed ({exc!r}): each needs corpus, run_id, role, "
                            f"pool, tokens and val_loss") from None


def run_name(run_id: str) -> str:
    """A run's name within its cell: its id less SIZE-uPOOL- (d2-u16K-chain1/generation-3: chain1/generation-3)."""
    return run_id.split("-", 2)[2] if run_id.count("-") >= 2 else run_id


def finished(record: dict) -> bool:
    """Whether a record is a finished run with a loss (a diverged run has none: it is not fitted on)."""
    return record.get("val_loss") is not None and record.get("status", "completed") == "completed"


def load_runs(path: Path | str) -> list[MeasuredRun]:
    """The finished runs of a data-limited measurement file (`{"runs": [...]}`, either schema; a run without
    a loss, diverged or failed, is left out)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a data-limited runs file ({exc}); it holds {{\"runs\": [...]}} as "
                        f"bench/distillation/data_limited.py collect writes it") from None
    if not isinstance(records, list):
        raise UserError(f"{path}: its \"runs\" is not a list of run records")
    return [MeasuredRun.from_record(record) for record in records if not isinstance(record, dict) or finished(record)]


# --- what each constant is fitted on ------------------------------------------------------------------

Group = tuple[str, str, str]   # (corpus, size, pool): what the bootstrap resamples
# A pool its runs read at most this many times is fresh data (whole windows can leave a pool a few tokens
# short of the runs' tokens).
FRESH_EPOCHS = 1.1


@dataclass(frozen=True)
class ChainCell:
    """One chain of a repeated cell (a cell may hold several, `chain` numbering them): P (the cell's seeds'
    mean penalty against their fresh twins' mean), the chain's losses L_0 (the run alone generation 1 was
    distilled from) .. L_G, and the fresh chain F_0 (its run alone) .. (as far as measured); `alone_mean`
    and `fresh_mean`: the two cells' means trained alone (the reference every Delta is measured against)."""

    group: Group
    penalty: float
    losses: tuple[float, ...]
    fresh: tuple[float, ...]
    fresh_group: Group
    chain: int = 1
    alone_mean: float | None = None
    fresh_mean: float | None = None

    @property
    def corpus(self) -> str:
        return self.group[0]

    @property
    def size(self) -> str:
        return self.group[1]

    def from_means(self) -> "ChainCell":
        """The chain with generation 0 the cells' means trained alone instead of the seeds it was distilled
        from (what a plan has: the law's loss trained alone, no seed)."""
        return replace(self, losses=(self.alone_mean, *self.losses[1:]), fresh=(self.fresh_mean, *self.fresh[1:]))


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
    its student's loss and the cell's student of one member (its chains' generation 1, averaged), where
    run; `first_step`: what those generations 1 gained over the runs alone they were distilled from."""

    group: Group
    members: int
    L_1: float
    L_k: float
    student: float | None = None
    one_member_student: float | None = None
    first_step: float | None = None

    def from_members(self) -> "EnsembleCell":
        """The ensemble with the student of one member read as its members' mean plus the cell's first step
        (a student near its own teacher: the members' seeds, not the chains', set its level)."""
        if self.first_step is None:
            return self
        return replace(self, one_member_student=self.L_1 + self.first_step)


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
    seeds: int = 1


def observations(runs: Sequence[MeasuredRun]) -> Observations:
    """The runs arranged as the fit reads them (see the module): per (corpus, size, pool) cell, each of its
    chains (numbered), each student of a larger teacher, each ensemble; a cell's penalty against the
    largest pool of its corpus and size that no run repeats (its fresh twin)."""
    cells: dict[Group, dict[str, MeasuredRun]] = {}
    for run in runs:
        cells.setdefault((run.corpus, run.size, run.pool), {})[run.name] = run
    fresh_pool = {}
    for (corpus, size, pool), cell in cells.items():
        if all(run.epochs <= FRESH_EPOCHS for run in cell.values()):
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
        mean = float(np.mean(seeds))
        summaries.append(CellSummary(group, mean, float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None,
                                     alone[0].params, epochs, alone[0].unique_tokens, len(seeds)))
        own_chains = _chains(cell)
        first_students = [chain[1].val_loss for chain in own_chains.values() if len(chain) > 1]
        one_member_student = float(np.mean(first_students)) if first_students else None
        steps = [chain[1].val_loss - chain[0].val_loss for chain in own_chains.values() if len(chain) > 1]
        first_step = float(np.mean(steps)) if steps else None
        for ensemble in sorted((run for run in cell.values() if run.role == "ensemble"), key=lambda r: r.run_id):
            members = _member_losses(cell, ensemble)
            if ensemble.teacher_val_loss is None or members is None:
                continue
            ensembles.append(EnsembleCell(group, len(members), float(np.mean(members)), ensemble.teacher_val_loss,
                                          ensemble.val_loss, one_member_student, first_step))
        twin_group = (corpus, size, fresh_pool[(corpus, size)]) if (corpus, size) in fresh_pool else None
        if twin_group is None or twin_group == group:
            continue
        twin = cells.get(twin_group, {})
        twin_alone = [run.val_loss for run in twin.values() if run.role == "alone"]
        if not twin_alone:
            continue
        fresh_mean = float(np.mean(twin_alone))
        penalty = mean - fresh_mean
        twin_chains = _chains(twin)
        for number, chain in sorted(own_chains.items()):
            fresh_chain = twin_chains.get(number) or next(iter(twin_chains.values()), None)
            if len(chain) < 2 or not fresh_chain:
                continue
            chains.append(ChainCell(group, penalty, tuple(r.val_loss for r in chain),
                                    tuple(r.val_loss for r in fresh_chain), twin_group, number, mean, fresh_mean))
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
    return cell.get(run_name(run_ids[0]))


def _member_losses(cell: dict[str, MeasuredRun], ensemble: MeasuredRun) -> list[float] | None:
    """The losses of an ensemble's members: its teachers' runs in the cell, else the member losses its run
    measured; None when neither holds all of them (or fewer than two)."""
    runs = [cell.get(run_name(t)) for t in ensemble.teachers]
    if len(runs) >= 2 and all(run is not None for run in runs):
        return [run.val_loss for run in runs]
    if len(ensemble.member_losses) >= 2 and len(ensemble.member_losses) == len(ensemble.teachers):
        return list(ensemble.member_losses)
    return None


def _chains(cell: dict[str, MeasuredRun]) -> dict[int, list[MeasuredRun]]:
    """Each chain of the cell by its number (a run without one: chain 1): the run alone generation 1 was
    distilled from, then the generations in order, as far as each is the student of the one before."""
    numbered: dict[int, dict[int, MeasuredRun]] = {}
    for run in cell.values():
        if run.role == "chain" and run.generation:
            numbered.setdefault(run.chain or 1, {})[int(run.generation)] = run
    out = {}
    for number, by_generation in numbered.items():
        first = by_generation.get(1)
        teacher = _named(cell, first.teachers) if first is not None else None
        if teacher is None:
            continue
        chain = [teacher, first]
        while (next_run := by_generation.get(len(chain))) is not None and \
                [run_name(t) for t in next_run.teachers] == [chain[-1].name]:
            chain.append(next_run)
        out[number] = chain
    return out
