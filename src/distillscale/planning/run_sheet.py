"""A plan's run sheet: one row per distinct training run the plan asks for, what a user
copies into `train`/`distill`. A row is a role (a distilled student, a teacher the scenario
pre-trains, or a model trained without a teacher), its N and D, its peak lr with the interval, its
batch, steps and warmup, the `--lr` to pass, with `--gpu` its GPU-hours, and the plan's runs it
stands for (`uses`: the scenarios that share it, in one cell). Text, JSON (`run_sheet`) and the
planner page are drawn from these rows, so they agree row by row.

    rows = run_sheet(plan)                  # RunSheetRow records, in the order of `plan.runs()`
    rows[0].role, rows[0].uses, rows[0].recipe.train_lr, rows[0].gpu_hours
    [row.to_dict() for row in rows]         # what `plan --json` carries as "run_sheet"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillscale.planning.recipes import RunRecipe
from distillscale.planning.repetition import PRETRAIN_INSTEAD, TEACHER_RUN, is_distilled
from distillscale.units import format_quantity

ROLES = {"student": "student", "teacher": "teacher", "alone": "no teacher"}
ROLES_NOTE = ("student: distilled; teacher: pre-trained by the scenario; no teacher: the model trained on the "
              "scenario's whole budget without one")
COLUMNS = ("run", "N", "D", "peak lr (90%)", "batch", "steps", "warmup", "--lr")   # the text table's
GPU_CAPTION = ("; GPU-h: the run's GPU-hours, an estimate (below; a distilled student's: its training and its "
               "teacher's logits, the GPU table's student run)")


@dataclass(frozen=True)
class RunSheetRow:
    """One distinct run: its role, the plan's runs it stands for, how to run it, and its GPU time."""

    role: str                       # a key of ROLES
    uses: tuple[str, ...]           # the plan's run names (`Plan.runs()`) this one run stands for
    recipe: RunRecipe               # N, D, lr, batch, steps, warmup, --lr (`planning.recipes`)
    gpu_hours: float | None = None  # with --gpu (`planning.gpu_hours`): the run's, the teacher logits on its GPUs included
    wall_hours: float | None = None
    cost: float | None = None

    def cells(self) -> list[str]:
        """The text table's cells, in COLUMNS order (and "GPU-h" after them with --gpu)."""
        r = self.recipe
        low, high = r.lr_interval
        cells = [f"{ROLES[self.role]}{'*' if r.beyond_data else ''}{'!' if r.problems else ''}", format_quantity(r.params),
                 format_quantity(r.tokens), f"{r.lr:.3g}\n" + ("sweep's" if r.sweep else f"{low:.2g}–{high:.2g}"),
                 f"{format_quantity(r.batch_tokens)}\n{r.batch_sequences:,} seq", f"{r.steps:,}",
                 f"{r.warmup_steps:,}", f"{r.train_lr:.4g}" + ("" if r.schedule is None else f"\n{r.schedule}")]
        if self.gpu_hours is not None:
            from distillscale.planning.gpu_hours import format_gpu_hours

            cells.append(format_gpu_hours(self.gpu_hours))
        return cells

    def to_dict(self) -> dict[str, Any]:
        r = self.recipe
        return {"role": self.role, "uses": list(self.uses), "params": r.params, "tokens": r.tokens, "lr": r.lr,
                "lr_interval": list(r.lr_interval), "level": r.level, "batch_tokens": r.batch_tokens,
                "batch_sequences": r.batch_sequences, "n_ctx": r.n_ctx, "steps": r.steps,
                "warmup_steps": r.warmup_steps, "train_lr": r.train_lr, "schedule": r.schedule, "flags": r.flags(),
                "follows": r.follows, "beyond_law_data": r.beyond_data,
                "problems": list(r.problems),
                "gpu_hours": self.gpu_hours, "wall_hours": self.wall_hours, "cost": self.cost}


def role_of(name: str) -> str:
    """The role of a plan's run, by its name (`Plan.runs()`)."""
    if name.endswith(TEACHER_RUN.format("")):
        return "teacher"
    return "student" if is_distilled(name) else "alone"


def run_sheet(plan) -> list[RunSheetRow]:
    """The plan's distinct runs: runs of one role with the same recipe (the same model on the same
    tokens, run the same way) are one row, standing for each of them."""
    hours = _hours(plan)
    rows: dict[tuple, list] = {}
    for name, recipe in plan.recipes.items():
        key = (role_of(name), repr({k: v for k, v in recipe.to_dict().items() if k != "name"}))
        rows.setdefault(key, [[], recipe])[0].append(name)
    return [RunSheetRow(role, tuple(names), recipe, *hours.get(names[0], (None, None, None)))
            for (role, _), (names, recipe) in rows.items()]


def uses_text(row: RunSheetRow, groups: int | None = None) -> str:
    """The plan's runs a row stands for, as one cell: each scenario (or mode) once; "every scenario"
    where it stands for all `groups` of them."""
    names = list(dict.fromkeys(name.removesuffix(PRETRAIN_INSTEAD.format("")).removesuffix(TEACHER_RUN.format(""))
                               for name in row.uses))
    return "every scenario" if groups is not None and groups > 1 and len(names) == groups else ", ".join(names)


def run_sheet_table(rows: list[RunSheetRow]):
    """The run sheet as a table: a section per set of scenarios (`uses_text`), a row per run in it
    (COLUMNS, and GPU-hours with --gpu); its title says what the recipes follow (`RunRecipe.follows`)."""
    from rich import box

    from distillscale.console import Table

    gpu = any(row.gpu_hours is not None for row in rows)
    flagged = "; !: not a run to train (below)" if any(row.recipe.problems for row in rows) else ""
    first = rows[0].recipe
    outside = "" if first.sweep else "; *: N or D outside its data"
    table = Table(title=f"Run sheet ({first.follows}{outside}{flagged})", box=box.SIMPLE_HEAD,
                  pad_edge=False,
                  caption=f"{ROLES_NOTE}; peak lr: the hidden matrices', "
                          + ("at the sweep's --lr (no interval: the sweep's own rate)" if first.sweep
                             else "with its 90% interval") + "; batch: tokens "
                          "and sequences; --lr: what to give `train`/`distill`"
                          + (f", with --schedule {first.schedule}" if first.schedule else "")
                          + (GPU_CAPTION if gpu else ""))
    for column in (*COLUMNS, *(("GPU-h",) if gpu else ())):   # a column never folds a number: the table fits 100
        table.add_column(column.replace(" (", "\n("), justify="left" if column == "run" else "right")
    groups = len({name for row in rows for name in uses_text(row).split(", ")})
    sections: dict[str, list[RunSheetRow]] = {}
    for row in rows:
        sections.setdefault(uses_text(row, groups), []).append(row)
    for uses, members in sections.items():   # a scenario's long name broken at its hyphens, as the plan's table does
        label = ",\n".join(name if len(name) <= 12 else name.replace("-", "-\n") for name in uses.split(", "))
        table.add_row(f"{label}:", *[""] * (len(table.columns) - 1))
        for row in members:
            table.add_row(*(f"  {cell}" if k == 0 else cell for k, cell in enumerate(row.cells())))
    return table


def generation_commands(tokens: float, unique_tokens: float, generations: int) -> list[str]:
    """Self-distillation on a pool as commands: generation 0 trained alone, each next one distilled from
    the one before on the teacher's split of the pool, then the whole chain from generation 0 as one command. CORPUS and
    the student's model flags are the user's (the run sheet's --lr for its size)."""
    common = f"--data CORPUS --unique-tokens {format_quantity(unique_tokens)} --tokens {format_quantity(tokens)}"
    lines = [f"distillscale train {common} --out gen0"]
    lines += [f"distillscale distill --teacher gen{g - 1} --split teacher {common} --out gen{g}"
              for g in range(1, generations + 1)]
    return lines + [f"distillscale distill --teacher gen0 --generations {generations} --split teacher {common} "
                    f"--out chain"]


def _hours(plan) -> dict[str, tuple[float, float, float | None]]:
    """Each run name's (GPU-hours, wall-clock hours, cost) from the plan's estimate (`--gpu`,
    `GpuHoursEstimate.per_run`: a distilled student's includes the teacher logits it computes on its
    GPUs, the GPU table's "student run"); empty without an estimate."""
    estimate = getattr(plan, "gpu_hours", None)
    return {} if estimate is None else estimate.per_run()
