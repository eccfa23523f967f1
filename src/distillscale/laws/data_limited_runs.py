"""The runs the data-limited law is fitted on (`laws.data_limited_fit`), as the bench records them
(bench/data/data_limited_runs.json `runs`, written by bench/distillation/data_limited.py collect) and
`distillscale demo --data-limited` collects them: `MeasuredRun` records, and the observations each constant
is fitted on, arranged per (corpus, student size, pool) cell with its fresh twin (`observations`).

Schema of a run: corpus, run_id (SIZE-uPOOL-NAME: d2-u16K-gen1), role (alone, chain, larger,
student-of-larger, ensemble, grid), pool (unique tokens, "16K"), tokens, val_loss; and where they apply
non_embedding_params, seed, generation, members, teachers (their run_ids) and teacher_val_loss (an
ensemble's student: the ensemble's own loss, its mixture's). A pool as large as the runs' tokens is fresh
data: its runs are the other pools' fresh twins, found by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from distillscale.errors import UserError
from distillscale.units import Quantity, parse_quantity


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


