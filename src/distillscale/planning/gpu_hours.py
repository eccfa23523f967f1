"""A plan in GPU-hours: the wall-clock, GPU-hours and cost of each of its runs on a given device, from
a measured throughput table (`planning.throughput`).

    setting = GpuSetting("h100", gpus=8, price_per_gpu_hour=2.5)
    estimate(plan_runs(plan), setting)                   # GpuHoursEstimate: a RunHours per part of a run
    with_gpu_hours(plan)                                 # the plan with it, when its settings name a GPU

Each run of a plan is priced at the engine's FLOPs, whatever count the plan searched with (`plan
--flops simple` plans at 2N per token; the engine spends attention and the output layer too): per
part (planning.flops: teacher training 3 F(N_T) D_T, the teacher's logits F(N_T) D_S, the student's
training 3 F(N_S) D_S, F the corrected count at the plan's context, vocabulary and aspect ratio, or a
--student-model's exact count), at the MFU the table gives at its size and the plan's shape:

    GPU-hours = FLOPs / (MFU x peak) / 3600,   wall-clock = GPU-hours / GPUs,   cost = GPU-hours x price

A distilled student's run computes its teacher's logits on its own GPUs: its GPU-hours are its
training's and those logits' (the table's "student run", the run sheet's GPU-h); a teacher served
from its own GPUs (`--teacher-remote`) is on none of the plan's runs. A run uses at most as many GPUs
as it has sequences a step (`train` splits a step's sequences evenly over its GPUs): its wall-clock
is at the GPUs it can use, said. Assumed, and said with every estimate: the GPUs scale perfectly, a
teacher's forward passes run at its training MFU, and data loading, evaluation, checkpoints and
start-up are not counted. Every number is an estimate from the table, never a measurement of the plan.

The GPU options are checked once, for `plan`, `sweep plan` and the planner page alike, in
`planning.throughput` (`whole_gpus`, `mfu_fraction`, `gpu_price`, `check_options`, `check_sweep_options`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from distillscale.planning.flops import ForwardFlops, on_policy_flops
from distillscale.planning.repetition import PRETRAIN_INSTEAD, TEACHER_RUN
from distillscale.planning.throughput import (  # noqa: F401  (the table's names, as this module has always given them)
    DEFAULT_GPU, FORMAT, SAME_SIZE, SHIPPED_TABLE, DeviceRecord, FigureRecord, GpuSetting, MfuEstimate, ModelShape,
    TableRecord, ThroughputTable, check_options, check_sweep_options, gpu_price, mfu_fraction, shape_text, whole_gpus)
from distillscale.units import format_quantity

ASSUMPTIONS = ("perfect scaling over the GPUs; a teacher's forward passes at its training MFU; data loading, "
               "evaluation, checkpoints and start-up not counted")


@dataclass(frozen=True)
class RunFlops:
    """One part of a plan's run, as priced: its group (a scenario or mode), what it is, its model's
    size, the FLOPs it spends (the engine's count) and the plan's run it is part of (`Plan.runs()`'s
    name: on that run's GPUs; None: on other GPUs, a teacher server's)."""

    group: str
    part: str  # teacher training, teacher logits, student training, model, or the model trained without a teacher
    params: float
    flops: float
    run: str | None = None
    plan_flops: float | None = None   # the plan's own count of it (None: the same)


@dataclass(frozen=True)
class RunHours:
    """A part's GPU time: its FLOPs at the MFU it is planned at, on the GPUs its run can use."""

    group: str
    part: str
    params: float
    flops: float
    mfu: MfuEstimate
    gpu_hours: float
    wall_hours: float
    cost: float | None
    run: str | None = None
    gpus: int = 1   # the GPUs its run can use: at most its sequences a step

    def to_dict(self) -> dict:
        return {"group": self.group, "part": self.part, "run": self.run, "params": self.params, "flops": self.flops,
                "mfu": self.mfu.value, "mfu_source": self.mfu.how, "mfu_measured_on": self.mfu.measured_on,
                "mfu_borrowed": self.mfu.borrowed, "mfu_note": self.mfu.note,
                "gpu_hours": self.gpu_hours, "wall_hours": self.wall_hours, "cost": self.cost, "gpus": self.gpus}


@dataclass(frozen=True)
class GpuHoursEstimate:
    """Each run of a plan on `gpus` x `device`: an estimate from the throughput table, never a measurement."""

    device: str
    device_name: str
    peak_flops: float
    gpus: int
    price_per_gpu_hour: float | None
    table: str
    runs: tuple[RunHours, ...]
    peak_source: str = ""
    shape: tuple[int, int] | None = None   # the runs' (vocabulary, context): the series their MFU is read from
    counted: str | None = None             # how the FLOPs were counted, where not as the plan counts them
    scaling: tuple[str, ...] = ()          # runs that cannot use every GPU, or split their steps unevenly

    def totals(self) -> dict[str, tuple[float, float, float | None]]:
        """Per group (scenario or mode): (GPU-hours, wall-clock hours, cost) of its runs but the model
        trained without a teacher (the plan's alternative, not one of its runs)."""
        totals: dict[str, list] = {}
        for run in self.runs:
            if run.part == ALTERNATIVE:
                continue
            total = totals.setdefault(run.group, [0.0, 0.0, None if run.cost is None else 0.0])
            total[0] += run.gpu_hours
            total[1] += run.wall_hours
            if run.cost is not None:
                total[2] += run.cost
        return {group: tuple(values) for group, values in totals.items()}

    def per_run(self) -> dict[str, tuple[float, float, float | None]]:
        """Per run of the plan (`Plan.runs()`'s names): (GPU-hours, wall-clock hours, cost) of its parts
        on its GPUs (a distilled student's: its training and its teacher's logits); what the run sheet shows."""
        totals: dict[str, list] = {}
        for run in self.runs:
            if run.run is None:
                continue
            total = totals.setdefault(run.run, [0.0, 0.0, None if run.cost is None else 0.0])
            total[0] += run.gpu_hours
            total[1] += run.wall_hours
            if run.cost is not None:
                total[2] += run.cost
        return {name: tuple(values) for name, values in totals.items()}

    def notes(self) -> list[str]:
        """What the estimate rests on, one line each."""
        how = [name for name in MARKS if any(run.mfu.how == name for run in self.runs)]
        marks = "; ".join(f"{MARKS[name]} {DESCRIPTIONS[name]}" for name in how)
        notes = [f"estimate from {self.table}, MFU against the {self.device_name}'s peak "
                 f"({self.peak_flops / 1e12:.4g} TFLOP/s, {self.peak_source}): {marks}"]
        shapes = list(dict.fromkeys(run.mfu.shape for run in self.runs if run.mfu.how != "given"))
        if shapes and self.shape is not None and shapes != [self.shape]:
            notes.append(f"MFU measured on the model family at {' and at '.join(shape_text(s) for s in shapes)}; "
                         f"the plan's runs are at {shape_text(self.shape)}")
        notes += _borrowed_notes(self)
        notes += _beyond_notes(self.runs)
        averaged = list(dict.fromkeys(text for run in self.runs for text in run.mfu.averaged))
        if averaged:
            notes.append(f"sizes measured more than once, their MFUs averaged: {'; '.join(averaged)}")
        if self.counted:
            notes.append(self.counted)
        notes += list(self.scaling)
        if any(run.part == ALTERNATIVE for run in self.runs):
            notes.append(f"'{ALTERNATIVE}': the model trained on the whole budget without a teacher, the plan's "
                         "alternative, not in the totals")
        if any(run.run is None for run in self.runs):
            notes.append("a teacher on its own GPUs (a server) is in the totals, on none of the plan's runs")
        return [*notes, f"assumed: {ASSUMPTIONS}"]

    def to_dict(self) -> dict:
        return {"estimate": True, "device": self.device, "device_name": self.device_name,
                "peak_flops": self.peak_flops, "peak_source": self.peak_source, "gpus": self.gpus,
                "price_per_gpu_hour": self.price_per_gpu_hour, "table": self.table,
                "runs": [run.to_dict() for run in self.runs],
                "per_run": {name: {"gpu_hours": hours, "wall_hours": wall, "cost": cost}
                            for name, (hours, wall, cost) in self.per_run().items()},
                "totals": {group: {"gpu_hours": hours, "wall_hours": wall, "cost": cost}
                           for group, (hours, wall, cost) in self.totals().items()},
                "notes": self.notes()}

    def renderables(self) -> list:
        from distillscale.console import Table

        price = "" if self.price_per_gpu_hour is None else f", cost at {self.price_per_gpu_hour:g} per GPU-hour"
        title = (f"GPU time on {self.gpus} x {self.device_name}{price}: an estimate from measured throughput, not "
                 f"a measurement")
        columns = ["run", "N", "FLOPs", "MFU", "GPU-hours", "wall-clock"]
        columns += ["cost"] if self.price_per_gpu_hour is not None else []
        table = Table(*columns, title=title)
        totals, per_run = self.totals(), self.per_run()
        for group in dict.fromkeys(run.group for run in self.runs):
            rows = [run for run in self.runs if run.group == group]
            table.add_row(group, *[""] * (len(columns) - 1))
            for index, run in enumerate(rows):
                table.add_row(f"  {run.part}", format_quantity(run.params), f"{run.flops:.3g}",
                              f"{run.mfu.value:.1%} {MARKS[run.mfu.how]}{BORROWED if run.mfu.borrowed else ''}",
                              format_gpu_hours(run.gpu_hours),
                              format_hours(run.wall_hours), *self._cost(run.cost))
                last_of_run = index + 1 == len(rows) or rows[index + 1].run != run.run
                if run.run is not None and last_of_run and sum(other.run == run.run for other in rows) > 1:
                    hours, wall, cost = per_run[run.run]
                    table.add_row(f"  {STUDENT_RUN}", "", "", "", format_gpu_hours(hours), format_hours(wall),
                                  *self._cost(cost))
            if group in totals and sum(run.part != ALTERNATIVE for run in rows) > 1:
                hours, wall, cost = totals[group]
                table.add_row("  total", "", "", "", format_gpu_hours(hours), format_hours(wall), *self._cost(cost),
                              end_section=True)
        return [table, *self.notes()]

    def _cost(self, cost: float | None) -> list[str]:
        if self.price_per_gpu_hour is None:
            return []
        return [f"{cost:,.0f}" if cost >= 100 else f"{cost:,.2f}"]


def _borrowed_notes(estimate: GpuHoursEstimate) -> list[str]:
    """How a device without figures of its own was priced (one line)."""
    borrowed = [run.mfu for run in estimate.runs if run.mfu.borrowed]
    if not borrowed:
        return []
    measured_on = " and ".join(dict.fromkeys(mfu.measured_on for mfu in borrowed))
    shown = ", ".join(dict.fromkeys(f"{mfu.source_value:.1%} -> {mfu.value:.1%}" for mfu in borrowed))
    return [f"{BORROWED} no throughput was measured on the {estimate.device_name}: the {measured_on}'s time per "
            f"token at each size is split into compute, at the best MFU measured there, which the "
            f"{estimate.device_name}'s peak speeds up or slows down, and the rest (launches, memory-bound work), "
            f"assumed to take as long on both; its MFU ({shown}) is an assumption, not a measurement"]


def _beyond_notes(runs: tuple[RunHours, ...]) -> list[str]:
    """The sizes outside the measured ones, grouped by side and the size whose MFU they take."""
    beyond: dict[tuple, list[str]] = {}
    for run in runs:
        if run.mfu.how == "beyond":
            side = "below" if run.params < run.mfu.nearest else "above"
            key = (side, run.mfu.span, run.mfu.nearest, run.mfu.measured_on)
            beyond.setdefault(key, []).append(format_quantity(run.params))
    notes = []
    for (side, span, nearest, device), sizes in beyond.items():
        sizes = list(dict.fromkeys(sizes))
        listed = ", ".join(sizes[:-1]) + f" and {sizes[-1]}" if len(sizes) > 1 else sizes[0]
        notes.append(f"{listed} {'are' if len(sizes) > 1 else 'is'} {side} the sizes measured on the {device} "
                     f"({span}): planned at the MFU measured at {format_quantity(nearest)}, not measured at "
                     f"{'these sizes' if len(sizes) > 1 else 'this size'}")
    return notes


BORROWED = "(b)"
MARKS = {"measured": "(m)", "interpolated": "(i)", "beyond": "(x)", "given": "(g)"}
DESCRIPTIONS = {"measured": "measured at the run's size", "interpolated": "interpolated in log model size between "
                "measured sizes", "beyond": "outside the measured sizes: the nearest measured size's",
                "given": "given with --mfu, not measured"}
# The part of the model a plan trains instead of distilling: priced, but not one of its runs.
ALTERNATIVE = "pretrain instead"
STUDENT = "student training"   # a student's own training, forward and backward
STUDENT_RUN = "student run"    # a distilled student's run: its training and its teacher's logits, on its GPUs


def format_gpu_hours(hours: float) -> str:
    """GPU-hours as a number: 0.0123 -> 0.0123, 297.4 -> 297, 12345 -> 12,345."""
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.3g}"


def format_hours(hours: float) -> str:
    """Wall-clock hours as a table cell: 0.25 -> 15 min, 30 -> 30 h, 5000 -> 208 days."""
    if hours < 1:
        return f"{hours * 60:.3g} min"
    if hours < 48:
        return f"{hours:.3g} h"
    return f"{hours / 24:,.0f} days" if hours / 24 >= 100 else f"{hours / 24:.3g} days"


def estimate(runs: list[RunFlops], setting: GpuSetting, shape: tuple[int, int] | None = None,
             sequences: dict[str, int] | None = None) -> GpuHoursEstimate:
    """Each part's GPU-hours, wall-clock and cost on `setting`'s GPUs; `shape`, the runs' (vocabulary,
    context) that picks the table's series; `sequences`, each run's sequences a step (by run name):
    a run uses at most that many of the GPUs."""
    setting, table = setting.checked()
    device = table.device(setting.device)
    priced = []
    for run in runs:
        mfu = table.mfu(device.id, run.params, setting.mfu, shape)
        gpus = min(setting.gpus, (sequences or {}).get(run.run, setting.gpus))
        gpu_hours = run.flops / (mfu.value * device.peak_flops) / 3600
        cost = None if setting.price_per_gpu_hour is None else gpu_hours * setting.price_per_gpu_hour
        priced.append(RunHours(run.group, run.part, run.params, run.flops, mfu, gpu_hours, gpu_hours / gpus, cost,
                               run.run, gpus))
    return GpuHoursEstimate(device.id, device.name, device.peak_flops, setting.gpus, setting.price_per_gpu_hour,
                            table.source, tuple(priced), device.peak_source, shape,
                            scaling=tuple(_scaling_notes(runs, setting.gpus, sequences or {})))


def _scaling_notes(runs: list[RunFlops], gpus: int, sequences: dict[str, int]) -> list[str]:
    """The runs whose sequences a step cannot fill `gpus` GPUs, or do not split evenly over them."""
    names = list(dict.fromkeys(run.run for run in runs if run.run in sequences))
    short: dict[int, list[str]] = {}
    uneven: dict[int, list[str]] = {}
    for name in names:
        count = sequences[name]
        if count < gpus:
            short.setdefault(count, []).append(name)
        elif count % gpus:
            uneven.setdefault(count, []).append(name)
    notes = [f"{_listed(members)} {'takes' if len(members) == 1 else 'take'} {count:,} sequence"
             f"{'s' if count > 1 else ''} a step: at most {count:,} of the {gpus:,} GPUs can work (`train` gives "
             f"each GPU an equal share of a step's sequences), so {'its' if len(members) == 1 else 'their'} "
             f"wall-clock is at {count:,} GPU"
             f"{'s' if count > 1 else ''}; fewer GPUs per run, or a larger batch, use them"
             for count, members in short.items()]
    if uneven:
        listed = "; ".join(f"{_listed(members)}: {count:,} ({count - count % gpus:,} or {count - count % gpus + gpus:,} "
                           "do)" for count, members in uneven.items())
        notes.append(f"sequences a step that do not split evenly over {gpus:,} GPUs (`train` gives each GPU an equal "
                     f"share: --batch-size a multiple of {gpus:,}): {listed}")
    return notes


def _listed(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def engine_forward(forward: ForwardFlops) -> ForwardFlops:
    """The engine's count of a plan's forward FLOPs: the corrected one at its context, vocabulary and
    aspect ratio (what a family model of N parameters spends; the plan's own where it counts so)."""
    return forward if forward.method == "corrected" else replace(forward, method="corrected")


def plan_runs(plan) -> list[RunFlops]:
    """The runs of a plan (`planning.plans.Plan`, any kind), part by part, at the engine's FLOPs: per
    scenario the teacher's training and its logits where the scenario pays them, the student's
    training, and the model trained without a teacher instead; per mode of a mode comparison its
    teacher's logits (and scoring) and its student's training (and sampling)."""
    forward = None if plan.planner is None else plan.planner.flops
    engine = None if forward is None else engine_forward(forward)
    exact = getattr(plan.settings, "student_model", None) is not None   # its count is the model's own already

    def counted(flops: float, params: float, student: bool = False) -> float:
        if engine is None or engine is forward or (student and exact):
            return flops
        return flops * float(engine(params)) / float(forward(params))

    def part(group: str, name: str, params: float, flops: float, run: str | None, student: bool = False) -> RunFlops:
        return RunFlops(group, name, params, counted(flops, params, student), run, flops)

    if plan.kind == "supervised":
        supervised = plan.supervised
        return [part("supervised", "model", supervised.student_params, supervised.budget, "supervised", True)]
    if plan.kind == "modes":
        return _mode_runs(plan, engine, part)
    runs: list[RunFlops] = []
    pairs = ([(s.best, s.supervised_best) for s in plan.sweeps] if plan.kind == "sweep"
             else [(p, p.supervised) for p in plan.plans])   # a plan per scenario, or per student of a family
    for p, alternative in pairs:
        group, flops = p.scenario.name, p.flops
        if flops.teacher_pretraining:
            runs.append(part(group, "teacher training", p.teacher_params, flops.teacher_pretraining,
                             TEACHER_RUN.format(group)))
        if flops.teacher_served:
            if p.mixture is not None:  # every teacher of the mixture on every student token
                runs += [part(group, f"teacher logits ({format_quantity(params)})", params,
                              per_token * p.student_tokens, group)
                         for params, per_token in zip(p.mixture.teacher_params, p.mixture.flops_per_token)]
            else:
                runs.append(part(group, "teacher logits", p.teacher_params, flops.teacher_served, group))
        runs.append(part(group, STUDENT, p.student_params, flops.student + flops.student_generation, group, True))
        runs.append(part(group, ALTERNATIVE, alternative.student_params, alternative.budget,
                         PRETRAIN_INSTEAD.format(group), True))
    return runs


def _mode_runs(plan, engine: ForwardFlops | None, part) -> list[RunFlops]:
    """A mode comparison's runs: each distilled mode's FLOPs counted again with the engine's forward
    (on-policy parts are at the sampled sequence's context, so a 2N plan's count is not one factor off)."""
    runs = []
    settings, on_policy = plan.settings, plan.on_policy
    for mode in plan.modes:
        if mode.name == "supervised":
            runs.append(part(mode.name, STUDENT, plan.student_params, mode.flops.student, mode.name))
            continue
        flops = mode.flops
        if engine is not None:
            flops = on_policy_flops(engine, plan.student_params, plan.teacher_params, mode.student_tokens,
                                    mode.fraction, on_policy.prompt_tokens, on_policy.continuation_tokens,
                                    teacher_logits_paid=not settings.logit_cache,
                                    teacher_remote=settings.teacher_remote)
        if flops.teacher_served:
            remote = flops.teacher_remote
            part = "teacher logits (on the teacher server's GPUs)" if remote else "teacher logits"
            runs.append(RunFlops(mode.name, part, plan.teacher_params, flops.teacher_served,
                                 None if remote else mode.name, mode.flops.teacher_served))
        runs.append(RunFlops(mode.name, STUDENT, plan.student_params, flops.student + flops.student_generation,
                             mode.name, mode.flops.student + mode.flops.student_generation))
    return runs


def _counted_note(plan, runs: list[RunFlops]) -> str | None:
    """How the estimate counts FLOPs, where the plan counts otherwise (`--flops simple`)."""
    forward = None if plan.planner is None else plan.planner.flops
    if forward is None or forward.method == "corrected":
        return None
    engine = sum(run.flops for run in runs)
    counted = sum(run.flops if run.plan_flops is None else run.plan_flops for run in runs)
    return (f"FLOPs and hours at the engine's count (attention and the output layer too, at the plan's "
            f"{forward.n_ctx:,}-token context and {forward.n_vocab:,}-token vocabulary), not the plan's 2N per token "
            f"(--flops simple): {engine:.3g} FLOPs in all where the plan counts {counted:.3g} ({engine / counted:.3g}x)")


def setting_of(settings) -> GpuSetting | None:
    """The GPU setting of a plan's `PlanSettings` (None: no --gpu, no estimate)."""
    if settings.gpu is None:
        return None
    return GpuSetting(settings.gpu, settings.gpus, settings.mfu, settings.price_per_gpu_hour,
                      None if settings.throughput_table is None else str(settings.throughput_table))


def with_gpu_hours(plan):
    """The plan with its runs' GPU-hours (`Plan.gpu_hours`) when its settings name a GPU; unchanged otherwise."""
    setting = setting_of(plan.settings)
    if setting is None:
        return plan
    runs = plan_runs(plan)
    forward = None if plan.planner is None else plan.planner.flops
    shape = None if forward is None else (int(forward.n_vocab), int(forward.n_ctx))
    sequences = {name: recipe.batch_sequences for name, recipe in plan.recipes.items()}
    hours = estimate(runs, setting, shape, sequences)
    return replace(plan, gpu_hours=replace(hours, counted=_counted_note(plan, runs)))


GPU_HELP = ("price the plan's runs in GPU-hours on this GPU (h100, h200, a100, l40s, b200, or a device of "
            "--throughput-table): wall-clock, GPU-hours and cost per run, an estimate from measured throughput")
GPUS_HELP = ("with --gpu: how many GPUs each run uses (wall-clock = GPU-hours / GPUs, at most a run's sequences a "
             "step; default 1)")
MFU_HELP = "with --gpu: the MFU to plan at, a fraction of the GPU's dense bf16 peak (default: the measured table's)"
PRICE_HELP = "with --gpu: the price of one GPU-hour, for each run's cost (in your currency)"
TABLE_HELP = ("with --gpu: a throughput table measured on your own device (`python bench/gpu/gpu_step.py --table "
              "FILE`; default: the one shipped)")
