"""A plan in GPU-hours: the wall-clock, GPU-hours and cost of each of its runs on a given device, from
a measured throughput table.

    table = ThroughputTable.load()                       # the table shipped with the package
    table.mfu("h100", 85e6)                              # MfuEstimate: interpolated, and how
    setting = GpuSetting("h100", gpus=8, price_per_gpu_hour=2.5)
    estimate(plan_runs(plan), setting)                   # GpuHoursEstimate: a RunHours per run

The table (`throughput.json` beside this module, or a file `bench/gpu_step.py --table` wrote on the
user's own device) holds, per device, its dense bf16 peak and the training throughput measured on it
at a few model sizes: tokens/s and the engine's exact training FLOPs per token (3 x its forward
count), so MFU = tokens/s x FLOPs per token / peak. A run of N non-embedding parameters gets the MFU
interpolated linearly in log N between the device's measured sizes; beyond them, the MFU of the
nearest measured size (said: not measured at this size); a device the table lists without figures,
the MFU of the device it names (`mfu_from`, said); `--mfu` replaces all of that (said). Then

    GPU-hours = FLOPs / (MFU x peak) / 3600,   wall-clock = GPU-hours / GPUs,   cost = GPU-hours x price

with the plan's own FLOPs per run (planning.flops: teacher training 3 F(N_T) D_T, the teacher's
logits F(N_T) D_S, the student 3 F(N_S) D_S). Assumed, and said with every estimate: the GPUs scale
perfectly, a teacher's forward passes run at its training MFU, and data loading, evaluation,
checkpoints and start-up are not counted. Every number is an estimate from the table, never a
measurement of the plan.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distillscale.errors import ParameterError, UserError
from distillscale.units import format_quantity

FORMAT = "distillscale.throughput/1"
SHIPPED_TABLE = Path(__file__).with_name("throughput.json")
# A run within this factor of a measured size is at that size (no interpolation to speak of).
SAME_SIZE = 1.01
ASSUMPTIONS = ("perfect scaling over the GPUs; a teacher's forward passes at its training MFU; data loading, "
               "evaluation, checkpoints and start-up not counted")


class ModelShape(BaseModel):
    """The model family's shape a figure was measured at (`ModelConfig` and the batch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layers: int = Field(ge=1)
    aspect_ratio: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    batch_sequences: int = Field(ge=1)


class FigureRecord(BaseModel):
    """One measured throughput: a model shape trained alone on the device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: str
    model: ModelShape | None = None  # the family's shape, where it was one (its counts are checked by the tests)
    non_embedding_params: float = Field(gt=0)
    flops_per_token: float = Field(gt=0)  # training FLOPs per token: 3 x the exact forward count
    tokens_per_second: float = Field(gt=0)
    date: str
    torch: str | None = None
    source: str

    @field_validator("date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"must be a date as YYYY-MM-DD, got {value!r}") from None
        return value

    @property
    def flops_per_second(self) -> float:
        return self.tokens_per_second * self.flops_per_token


class DeviceRecord(BaseModel):
    """A device: its id (what --gpu takes), its dense bf16 peak and its measured figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    name: str
    peak_flops: float = Field(gt=0)
    peak_source: str
    measured_matmul_peak: float | None = Field(default=None, gt=0)
    mfu_from: str | None = None  # no figures of its own: the device whose MFU it takes
    figures: tuple[FigureRecord, ...] = ()

    @model_validator(mode="after")
    def _figures_fit_the_peak(self) -> "DeviceRecord":
        for figure in self.figures:
            if figure.flops_per_second > self.peak_flops:
                raise ValueError(f"{self.id}'s figure at {format_quantity(figure.non_embedding_params)} parameters "
                                 f"achieves {figure.flops_per_second:.3g} FLOP/s, above the device's peak "
                                 f"{self.peak_flops:.3g}: check tokens_per_second, flops_per_token and peak_flops")
        return self


class TableRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    description: str = ""
    devices: tuple[DeviceRecord, ...] = Field(min_length=1)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != FORMAT:
            raise ValueError(f"must be {FORMAT!r}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _devices(self) -> "TableRecord":
        ids = [device.id for device in self.devices]
        repeated = sorted({name for name in ids if ids.count(name) > 1})
        if repeated:
            raise ValueError(f"device {repeated[0]!r} is listed twice")
        measured = {device.id for device in self.devices if device.figures}
        for device in self.devices:
            if not device.figures and device.mfu_from is None:
                continue  # a device --mfu must be given for
            if device.figures and device.mfu_from is not None:
                raise ValueError(f"device {device.id!r} has figures of its own and mfu_from: drop mfu_from")
            if device.mfu_from is not None and device.mfu_from not in measured:
                raise ValueError(f"device {device.id!r} takes its MFU from {device.mfu_from!r}, which is not a "
                                 f"device of the table with figures")
        return self


@dataclass(frozen=True)
class MfuEstimate:
    """The MFU a run is planned at, and how it was had: measured (at a measured size), interpolated
    (between two measured sizes), beyond (outside the measured sizes: the nearest one's) or given
    (--mfu); `measured_on` is the device whose figures gave it (another than the one planned on for a
    device the table lists without figures: `borrowed`)."""

    value: float
    how: str
    note: str
    measured_on: str | None = None  # the device name whose figures gave it (None: given)
    borrowed: bool = False
    nearest: float | None = None    # beyond: the measured size whose MFU it is
    span: str | None = None         # beyond: the measured sizes, "3.21M-680M"

    @property
    def measured(self) -> bool:
        """Whether the MFU is a measurement of this device at this size."""
        return self.how == "measured" and not self.borrowed


class ThroughputTable:
    """A throughput table, validated: `load` refuses a bad file in one line."""

    def __init__(self, record: TableRecord, path: Path | None = None):
        self.record = record
        self.path = path
        self.devices = {device.id: device for device in record.devices}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ThroughputTable":
        """The table at `path` (None: the one shipped with the package)."""
        source = SHIPPED_TABLE if path is None else Path(path).expanduser()
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"throughput table {source} does not exist: give a file `python bench/gpu_step.py "
                            f"--table FILE` wrote, or leave out --throughput-table for the shipped one") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"throughput table {source} is not readable JSON ({exc}): give a file "
                            f"`python bench/gpu_step.py --table FILE` wrote") from None
        try:
            record = TableRecord.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"throughput table {source}: {_first_error(exc)}") from None
        return cls(record, None if path is None else source)

    def with_device(self, device: DeviceRecord) -> "ThroughputTable":
        """This table with `device` added, or in place of the device of its id."""
        devices = [d for d in self.record.devices if d.id != device.id] + [device]
        return ThroughputTable(TableRecord.model_validate({**self.record.model_dump(), "devices": [
            d.model_dump() for d in devices]}), self.path)

    def save(self, path: str | Path) -> None:
        """Write the table (atomically) where `load` reads it."""
        from distillscale.io import atomic_write_json

        atomic_write_json(path, self.record.model_dump(exclude_none=True))

    @property
    def source(self) -> str:
        if self.path is None:
            return "the throughput table shipped with distillscale"
        return f"throughput table {self.path}"

    def device(self, name: str) -> DeviceRecord:
        key = name.strip().lower()
        if key not in self.devices:
            source = self.source.replace("{", "{{").replace("}", "}}")
            raise ParameterError("gpu", "unknown GPU {value!r} for {}: " + source + f" knows "
                                 f"{', '.join(self.devices)}; measure yours with `python bench/gpu_step.py --table "
                                 "FILE` and plan with that table", value=name)
        return self.devices[key]

    def mfu(self, name: str, params: float, given: float | None = None) -> MfuEstimate:
        """The MFU of a run of `params` non-embedding parameters on device `name` (`given`: --mfu)."""
        device = self.device(name)
        if given is not None:
            return MfuEstimate(given, "given", f"MFU {given:.1%} given (--mfu), not measured")
        if device.figures:
            return _interpolated(device, params)
        if device.mfu_from is None:
            raise ParameterError("mfu", f"{self.source} has no measured throughput on the "
                                 f"{device.name}: give {{}} (e.g. 0.35), or measure it with "
                                 "`python bench/gpu_step.py --table FILE` and give --throughput-table FILE")
        other = self.devices[device.mfu_from]
        found = _interpolated(other, params)
        return replace(found, borrowed=True, note=f"not measured on the {device.name}: the {other.name}'s MFU "
                                                 f"({found.note}) applied to its peak")

    def flops_per_second(self, name: str, params: float, given: float | None = None) -> float:
        """Achieved training FLOP/s of one run alone on one GPU: MFU x peak."""
        return self.mfu(name, params, given).value * self.device(name).peak_flops


def _interpolated(device: DeviceRecord, params: float) -> MfuEstimate:
    """MFU at `params` from the device's figures: linear in log N between measured sizes (figures at one
    size averaged), the nearest size's beyond them."""
    sizes: dict[float, list[float]] = {}
    for figure in device.figures:
        sizes.setdefault(figure.non_embedding_params, []).append(figure.flops_per_second / device.peak_flops)
    points = sorted((size, sum(values) / len(values)) for size, values in sizes.items())
    span = f"{format_quantity(points[0][0])}-{format_quantity(points[-1][0])}"
    for size, mfu in points:
        if 1 / SAME_SIZE <= params / size <= SAME_SIZE:
            return MfuEstimate(mfu, "measured", f"measured at {format_quantity(size)}", device.name)
    if params < points[0][0] or params > points[-1][0]:
        size, mfu = points[0] if params < points[0][0] else points[-1]
        side = "below" if params < size else "above"
        return MfuEstimate(mfu, "beyond", f"{side} the sizes measured ({span}): the MFU measured at "
                                          f"{format_quantity(size)}, not measured at this size", device.name,
                           nearest=size, span=span)
    (low, low_mfu), (high, high_mfu) = next((a, b) for a, b in zip(points, points[1:]) if a[0] < params < b[0])
    weight = math.log(params / low) / math.log(high / low)
    return MfuEstimate(low_mfu + weight * (high_mfu - low_mfu), "interpolated",
                       f"interpolated between {format_quantity(low)} and {format_quantity(high)}", device.name)


def _first_error(exc: ValidationError) -> str:
    """The first validation error, named by where it is in the file (devices[1].figures[0].date)."""
    error = exc.errors()[0]
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    message = {"missing": "is missing", "extra_forbidden": "is not a field of a throughput table"}.get(
        error["type"], error["msg"].removeprefix("Value error, "))
    return f"{path}: {message}" if path else message


@dataclass(frozen=True)
class GpuSetting:
    """What a plan is priced on: a device of the table, how many GPUs, an MFU that replaces the table's
    (None: the table's), a price per GPU-hour (None: no cost) and the table's path (None: shipped)."""

    device: str
    gpus: int = 1
    mfu: float | None = None
    price_per_gpu_hour: float | None = None
    table: str | None = None

    def checked(self) -> tuple["GpuSetting", ThroughputTable]:
        """(this setting with the device's id, the table), or ParameterError naming the option."""
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 1:
            raise ParameterError("gpus", "{} must be a whole number of GPUs, at least 1, got {value!r}",
                                 value=self.gpus)
        if self.mfu is not None and not 0 < self.mfu <= 1:
            raise ParameterError("mfu", "{} must be a fraction of the peak in (0, 1] (e.g. 0.35), got {value!r}",
                                 value=self.mfu)
        if self.price_per_gpu_hour is not None and not 0 <= self.price_per_gpu_hour < math.inf:
            raise ParameterError("price_per_gpu_hour", "{} must be a price per GPU-hour, at least 0, got {value!r}",
                                 value=self.price_per_gpu_hour)
        table = ThroughputTable.load(self.table)
        device = table.device(self.device)
        return replace(self, device=device.id), table


@dataclass(frozen=True)
class RunFlops:
    """One run of a plan, as priced: its group (a scenario or mode), what it is, its model's size and
    the FLOPs it spends."""

    group: str
    part: str  # teacher training, teacher logits, student, or the model trained without a teacher
    params: float
    flops: float


@dataclass(frozen=True)
class RunHours:
    """A run's GPU time: its FLOPs at the MFU it is planned at."""

    group: str
    part: str
    params: float
    flops: float
    mfu: MfuEstimate
    gpu_hours: float
    wall_hours: float
    cost: float | None

    def to_dict(self) -> dict:
        return {"group": self.group, "part": self.part, "params": self.params, "flops": self.flops,
                "mfu": self.mfu.value, "mfu_source": self.mfu.how, "mfu_measured_on": self.mfu.measured_on,
                "mfu_borrowed": self.mfu.borrowed, "mfu_note": self.mfu.note,
                "gpu_hours": self.gpu_hours, "wall_hours": self.wall_hours, "cost": self.cost}


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

    def notes(self) -> list[str]:
        """What the estimate rests on, one line each."""
        how = [name for name in MARKS if any(run.mfu.how == name for run in self.runs)]
        marks = "; ".join(f"{MARKS[name]} {DESCRIPTIONS[name]}" for name in how)
        notes = [f"estimate from {self.table}, MFU against the {self.device_name}'s peak "
                 f"({self.peak_flops / 1e12:.4g} TFLOP/s, {self.peak_source}): {marks}"]
        measured_on = list(dict.fromkeys(run.mfu.measured_on for run in self.runs if run.mfu.borrowed))
        if measured_on:
            notes.append(f"{BORROWED} no throughput was measured on the {self.device_name}: the MFU measured on the "
                         f"{' and '.join(measured_on)} applied to its peak")
        beyond: dict[tuple, list[str]] = {}
        for run in self.runs:
            if run.mfu.how == "beyond":
                side = "below" if run.params < run.mfu.nearest else "above"
                key = (side, run.mfu.span, run.mfu.nearest, run.mfu.measured_on)
                beyond.setdefault(key, []).append(format_quantity(run.params))
        for (side, span, nearest, device), sizes in beyond.items():
            sizes = list(dict.fromkeys(sizes))
            listed = ", ".join(sizes[:-1]) + f" and {sizes[-1]}" if len(sizes) > 1 else sizes[0]
            notes.append(f"{listed} {'are' if len(sizes) > 1 else 'is'} {side} the sizes measured on the {device} "
                         f"({span}): planned at the MFU measured at {format_quantity(nearest)}, not measured at "
                         f"{'these sizes' if len(sizes) > 1 else 'this size'}")
        if any(run.part == ALTERNATIVE for run in self.runs):
            notes.append(f"'{ALTERNATIVE}': the model trained on the whole budget without a teacher, the plan's "
                         "alternative, not in the totals")
        return [*notes, f"assumed: {ASSUMPTIONS}"]

    def to_dict(self) -> dict:
        return {"estimate": True, "device": self.device, "device_name": self.device_name,
                "peak_flops": self.peak_flops, "peak_source": self.peak_source, "gpus": self.gpus,
                "price_per_gpu_hour": self.price_per_gpu_hour, "table": self.table,
                "runs": [run.to_dict() for run in self.runs],
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
        totals = self.totals()
        for group in dict.fromkeys(run.group for run in self.runs):
            rows = [run for run in self.runs if run.group == group]
            table.add_row(group, *[""] * (len(columns) - 1))
            for run in rows:
                table.add_row(f"  {run.part}", format_quantity(run.params), f"{run.flops:.3g}",
                              f"{run.mfu.value:.1%} {MARKS[run.mfu.how]}{BORROWED if run.mfu.borrowed else ''}",
                              format_gpu_hours(run.gpu_hours),
                              format_hours(run.wall_hours), *self._cost(run.cost))
            if group in totals and sum(run.part != ALTERNATIVE for run in rows) > 1:
                hours, wall, cost = totals[group]
                table.add_row("  total", "", "", "", format_gpu_hours(hours), format_hours(wall), *self._cost(cost),
                              end_section=True)
        return [table, *self.notes()]

    def _cost(self, cost: float | None) -> list[str]:
        if self.price_per_gpu_hour is None:
            return []
        return [f"{cost:,.0f}" if cost >= 100 else f"{cost:,.2f}"]


BORROWED = "(b)"
MARKS = {"measured": "(m)", "interpolated": "(i)", "beyond": "(x)", "given": "(g)"}
DESCRIPTIONS = {"measured": "measured at the run's size", "interpolated": "interpolated in log model size between "
                "measured sizes", "beyond": "outside the measured sizes: the nearest measured size's",
                "given": "given with --mfu, not measured"}
# The part of the model a plan trains instead of distilling: priced, but not one of its runs.
ALTERNATIVE = "pretrain instead"


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


def estimate(runs: list[RunFlops], setting: GpuSetting) -> GpuHoursEstimate:
    """Each run's GPU-hours, wall-clock and cost on `setting`'s GPUs."""
    setting, table = setting.checked()
    device = table.device(setting.device)
    priced = []
    for run in runs:
        mfu = table.mfu(device.id, run.params, setting.mfu)
        gpu_hours = run.flops / (mfu.value * device.peak_flops) / 3600
        cost = None if setting.price_per_gpu_hour is None else gpu_hours * setting.price_per_gpu_hour
        priced.append(RunHours(run.group, run.part, run.params, run.flops, mfu, gpu_hours, gpu_hours / setting.gpus,
                               cost))
    return GpuHoursEstimate(device.id, device.name, device.peak_flops, setting.gpus, setting.price_per_gpu_hour,
                            table.source, tuple(priced), device.peak_source)


def plan_runs(plan) -> list[RunFlops]:
    """The runs of a plan (`planning.plans.Plan`, any kind) with their FLOPs as the plan counts them:
    per scenario the teacher's training and its logits where the scenario pays them, the student, and
    the model trained without a teacher instead; per mode of a mode comparison its teacher's logits
    (and scoring) and its student."""
    runs: list[RunFlops] = []
    if plan.kind == "supervised":
        supervised = plan.supervised
        return [RunFlops("supervised", "model", supervised.student_params, supervised.budget)]
    if plan.kind == "modes":
        for mode in plan.modes:
            flops = mode.flops
            if flops.teacher_served:
                where = " (on the teacher server's GPUs)" if flops.teacher_remote else ""
                runs.append(RunFlops(mode.name, f"teacher logits{where}", plan.teacher_params, flops.teacher_served))
            runs.append(RunFlops(mode.name, "student", plan.student_params, flops.student + flops.student_generation))
        return runs
    pairs = ([(p, p.supervised) for p in plan.plans] if plan.kind == "plans"
             else [(s.best, s.supervised_best) for s in plan.sweeps])
    for p, alternative in pairs:
        group, flops = p.scenario.name, p.flops
        if flops.teacher_pretraining:
            runs.append(RunFlops(group, "teacher training", p.teacher_params, flops.teacher_pretraining))
        if flops.teacher_served:
            if p.mixture is not None:  # every teacher of the mixture on every student token
                runs += [RunFlops(group, f"teacher logits ({format_quantity(params)})", params,
                                  per_token * p.student_tokens)
                         for params, per_token in zip(p.mixture.teacher_params, p.mixture.flops_per_token)]
            else:
                runs.append(RunFlops(group, "teacher logits", p.teacher_params, flops.teacher_served))
        runs.append(RunFlops(group, "student", p.student_params, flops.student + flops.student_generation))
        runs.append(RunFlops(group, ALTERNATIVE, alternative.student_params, alternative.budget))
    return runs


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
    return replace(plan, gpu_hours=estimate(plan_runs(plan), setting))


GPU_HELP = ("price the plan's runs in GPU-hours on this GPU (h100, h200, a100, l40s, b200, or a device of "
            "--throughput-table): wall-clock, GPU-hours and cost per run, an estimate from measured throughput")
GPUS_HELP = "with --gpu: how many GPUs each run uses (wall-clock = GPU-hours / GPUs; default 1)"
MFU_HELP = "with --gpu: the MFU to plan at, a fraction of the GPU's dense bf16 peak (default: the measured table's)"
PRICE_HELP = "with --gpu: the price of one GPU-hour, for each run's cost (in your currency)"
TABLE_HELP = ("with --gpu: a throughput table measured on your own device (`python bench/gpu_step.py --table "
              "FILE`; default: the one shipped)")


def check_options(gpu: str | None, gpus: int, mfu: float | None, price_per_gpu_hour: float | None,
                  throughput_table: str | Path | None) -> None:
    """The GPU options of `plan` (and `sweep plan`) as they combine: the others need --gpu; a bad value,
    an unknown device or a bad table is a ParameterError or UserError in one line."""
    if gpu is None:
        given = [name for name, value in (("gpus", gpus != 1), ("mfu", mfu is not None),
                                          ("price_per_gpu_hour", price_per_gpu_hour is not None),
                                          ("throughput_table", throughput_table is not None)) if value]
        if given:
            raise ParameterError((given[0], "gpu"), "{} needs {}, the GPU the plan is priced on (e.g. --gpu h100)")
        return
    table = None if throughput_table is None else str(throughput_table)
    GpuSetting(gpu, gpus, mfu, price_per_gpu_hour, table).checked()
