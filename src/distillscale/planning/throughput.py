"""The measured throughput table, and the MFU a run is planned at from it.

    table = ThroughputTable.load()                       # the table shipped with the package
    table.mfu("h100", 85e6)                              # MfuEstimate: interpolated, and how
    table.mfu("h100", 85e6, shape=(32168, 4096))         # ... from the figures nearest that vocabulary and context

The table (`throughput.json` beside this module, or a file `bench/gpu/gpu_step.py --table` wrote on the
user's own device) holds, per device, its dense bf16 peak and the training throughput measured on it
at a few model sizes: tokens/s and the engine's exact training FLOPs per token (3 x its forward
count), so MFU = tokens/s x FLOPs per token / peak. The rules, stated once here:

- a device's figures form one series per model shape (vocabulary and sequence length: what sets
  how much of the step is matmul at a given N). A run's MFU comes from one series, never a mix of
  two: the series whose sizes cover the run's N, nearest the run's shape (where it is known; else
  the one with most sizes); where none covers it, the series nearest its shape;
- within the series, figures within SAME_SIZE of each other are one measured size, their MFUs
  averaged (said, with each figure's); a run at a measured size takes it (measured), between two
  sizes the MFU linear in log N (interpolated), beyond them the nearest size's (beyond, said);
- a device the table lists without figures takes them from the device it names (`mfu_from`): that
  device's time per token at the run's size is split into compute, at the best MFU it reached at
  any size, and the rest (launches, memory-bound work), which is assumed to take the same time on
  the other device; so a compute-bound size keeps its MFU and an overhead-bound one its tokens/s
  (said: borrowed);
- `--mfu` replaces all of that (given, said).

The GPU options (`--gpu`, `--gpus`, `--mfu`, `--price-per-gpu-hour`, `--throughput-table`) are
checked here once, for `plan`, `ds.plan`, the planner page (`check_options`) and `sweep plan`
(`check_sweep_options`), each value by one function a settings field validates with (`whole_gpus`,
`mfu_fraction`, `gpu_price`); this module imports nothing heavy, so a command's flags can use them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distillscale.errors import ParameterError, UserError
from distillscale.units import format_quantity

FORMAT = "distillscale.throughput/1"
SHIPPED_TABLE = Path(__file__).with_name("throughput.json")
# A run within this factor of a measured size is at that size (no interpolation to speak of), and
# figures within it of each other are one measured size.
SAME_SIZE = 1.01


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

    @property
    def series(self) -> tuple[int, int] | None:
        """The shape it belongs to among a device's figures: (vocabulary, sequence length); None unknown."""
        return None if self.model is None else (self.model.vocab_size, self.model.seq_len)


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
    device the table lists without figures: `borrowed`, `source_value` that device's MFU)."""

    value: float
    how: str
    note: str
    measured_on: str | None = None  # the device name whose figures gave it (None: given)
    borrowed: bool = False
    nearest: float | None = None    # beyond: the measured size whose MFU it is
    span: str | None = None         # beyond: the measured sizes, "3.21M-680M"
    shape: tuple[int, int] | None = None   # the series it came from: (vocabulary, sequence length)
    averaged: tuple[str, ...] = ()  # measured sizes it read that hold several figures, each with their MFUs
    source_value: float | None = None      # borrowed: the MFU the other device achieves at this size
    best: float | None = None       # the device's best MFU (the compute-bound one a borrowed MFU keeps)

    @property
    def measured(self) -> bool:
        """Whether the MFU is a measurement of this device at this size."""
        return self.how == "measured" and not self.borrowed


@dataclass(frozen=True)
class _Point:
    size: float
    mfu: float                  # the mean of its figures'
    figures: tuple[float, ...]  # each figure's MFU

    def text(self) -> str:
        """'85M (2 figures: 33.9% and 31.0%, averaged)' for a size measured several times; '' otherwise."""
        if len(self.figures) == 1:
            return ""
        values = ", ".join(f"{value:.1%}" for value in self.figures[:-1]) + f" and {self.figures[-1]:.1%}"
        return f"{format_quantity(self.size)} ({len(self.figures)} figures: {values}, averaged)"


@dataclass(frozen=True)
class _Series:
    shape: tuple[int, int] | None
    points: tuple[_Point, ...]   # by size

    def covers(self, params: float) -> bool:
        return self.points[0].size / SAME_SIZE <= params <= self.points[-1].size * SAME_SIZE

    def distance(self, shape: tuple[int, int] | None) -> float:
        """How far its shape is from `shape`, in log vocabulary plus log sequence length (0: either unknown)."""
        if shape is None:
            return 0.0
        if self.shape is None:
            return math.inf
        return abs(math.log(self.shape[0] / shape[0])) + abs(math.log(self.shape[1] / shape[1]))


def _series(device: DeviceRecord) -> list[_Series]:
    """The device's figures by shape, each series' figures within SAME_SIZE of each other one point."""
    grouped: dict[tuple[int, int] | None, list[FigureRecord]] = {}
    for figure in device.figures:
        grouped.setdefault(figure.series, []).append(figure)
    out = []
    for shape, figures in grouped.items():
        clusters: list[list[FigureRecord]] = []
        for figure in sorted(figures, key=lambda f: f.non_embedding_params):
            if clusters and figure.non_embedding_params <= clusters[-1][0].non_embedding_params * SAME_SIZE:
                clusters[-1].append(figure)
            else:
                clusters.append([figure])
        points = []
        for cluster in clusters:
            values = tuple(f.flops_per_second / device.peak_flops for f in cluster)
            size = math.exp(sum(math.log(f.non_embedding_params) for f in cluster) / len(cluster))
            points.append(_Point(size, sum(values) / len(values), values))
        out.append(_Series(shape, tuple(points)))
    return out


def _chosen(device: DeviceRecord, params: float, shape: tuple[int, int] | None) -> _Series:
    """The series a run of `params` and `shape` reads (the module's rules)."""
    series = _series(device)
    pool = [s for s in series if s.covers(params)] or series
    return min(pool, key=lambda s: (s.distance(shape), -len(s.points), s.shape or (0, 0)))


def _interpolated(device: DeviceRecord, params: float, shape: tuple[int, int] | None = None) -> MfuEstimate:
    """MFU at `params` from one series of the device's figures: linear in log N between measured sizes,
    the nearest size's beyond them."""
    series = _chosen(device, params, shape)
    points = series.points
    best = max(point.mfu for other in _series(device) for point in other.points)   # the device's compute-bound MFU
    span = f"{format_quantity(points[0].size)}-{format_quantity(points[-1].size)}"
    common = {"measured_on": device.name, "shape": series.shape, "best": best}
    for point in points:
        if 1 / SAME_SIZE <= params / point.size <= SAME_SIZE:
            return MfuEstimate(point.mfu, "measured", f"measured at {format_quantity(point.size)}",
                               averaged=tuple(filter(None, [point.text()])), **common)
    if params < points[0].size or params > points[-1].size:
        point = points[0] if params < points[0].size else points[-1]
        side = "below" if params < point.size else "above"
        return MfuEstimate(point.mfu, "beyond", f"{side} the sizes measured ({span}): the MFU measured at "
                                                f"{format_quantity(point.size)}, not measured at this size",
                           nearest=point.size, span=span, averaged=tuple(filter(None, [point.text()])), **common)
    low, high = next((a, b) for a, b in zip(points, points[1:]) if a.size < params < b.size)
    weight = math.log(params / low.size) / math.log(high.size / low.size)
    return MfuEstimate(low.mfu + weight * (high.mfu - low.mfu), "interpolated",
                       f"interpolated between {format_quantity(low.size)} and {format_quantity(high.size)}",
                       averaged=tuple(filter(None, [low.text(), high.text()])), **common)


def borrowed_mfu(source: float, best: float, peak_ratio: float) -> float:
    """The MFU on a device of `peak_ratio` x the peak of the one that measured `source` at this size,
    `best` the best MFU that device's series reached: its time per token split into compute (at
    `best`), which scales with the peak, and the rest, which is assumed not to."""
    return 1.0 / (peak_ratio * (1.0 / source - 1.0 / best) + 1.0 / best)


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
            raise UserError(f"throughput table {source} does not exist: give a file `python bench/gpu/gpu_step.py "
                            f"--table FILE` wrote, or leave out --throughput-table for the shipped one") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"throughput table {source} is not readable JSON ({exc}): give a file "
                            f"`python bench/gpu/gpu_step.py --table FILE` wrote") from None
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
                                 f"{', '.join(self.devices)}; measure yours with `python bench/gpu/gpu_step.py --table "
                                 "FILE` and plan with that table", value=name)
        return self.devices[key]

    def measured_device(self, name: str) -> DeviceRecord:
        """The device whose figures a run on `name` reads: itself, or the one it borrows from."""
        device = self.device(name)
        return device if device.figures or device.mfu_from is None else self.devices[device.mfu_from]

    def mfu(self, name: str, params: float, given: float | None = None,
            shape: tuple[int, int] | None = None) -> MfuEstimate:
        """The MFU of a run of `params` non-embedding parameters on device `name` (`given`: --mfu;
        `shape`: the run's (vocabulary, sequence length), which picks the series it reads)."""
        device = self.device(name)
        if given is not None:
            return MfuEstimate(given, "given", f"MFU {given:.1%} given (--mfu), not measured")
        if device.figures:
            return _interpolated(device, params, shape)
        if device.mfu_from is None:
            raise ParameterError("mfu", f"{self.source} has no measured throughput on the "
                                 f"{device.name}: give {{}} (e.g. 0.35), or measure it with "
                                 "`python bench/gpu/gpu_step.py --table FILE` and give --throughput-table FILE")
        other = self.devices[device.mfu_from]
        found = _interpolated(other, params, shape)
        value = borrowed_mfu(found.value, found.best, device.peak_flops / other.peak_flops)
        return replace(found, value=value, borrowed=True, source_value=found.value,
                       note=f"not measured on the {device.name}: the {other.name}'s {found.value:.1%} ({found.note}) "
                            f"with its time beyond compute at its best MFU ({found.best:.1%}) kept: {value:.1%}")

    def flops_per_second(self, name: str, params: float, given: float | None = None,
                         shape: tuple[int, int] | None = None) -> float:
        """Achieved training FLOP/s of one run alone on one GPU: MFU x peak."""
        return self.mfu(name, params, given, shape).value * self.device(name).peak_flops

    def series_text(self, name: str) -> str:
        """The measured sizes `name`'s MFU reads, by shape: '6.35M-680M (vocabulary 8,192, 1,024-token
        sequences); 3.21M (vocabulary 512, 512-token sequences)'."""
        device = self.measured_device(name)
        return "; ".join(f"{', '.join(format_quantity(p.size) for p in s.points)} ({shape_text(s.shape)})"
                         for s in _series(device))


# -- the GPU options: one check for plan, sweep plan and the planner page ----------------------------

def whole_gpus(value: Any) -> int:
    """GPUs per run: a whole number, at least 1 (a number, or its digits as text)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.0*)?\s*", value, flags=re.ASCII):
        number = int(float(value))
    if number is None or number < 1:
        raise ParameterError("gpus", "{} must be a whole number of GPUs, at least 1 (e.g. 8), got {value!r}",
                             value=value)
    return number


def _number(param: str, value: Any, what: str) -> float | None:
    """`value` as a float (None or empty text: None), or ParameterError saying `what` it must be."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(param, "{} must be " + what + ", got {value!r}", value=value) from None


def mfu_fraction(value: Any) -> float | None:
    """--mfu: a fraction of the peak in (0, 1] (None: the table's)."""
    what = "a fraction of the peak in (0, 1] (e.g. 0.35)"
    number = _number("mfu", value, what)
    if number is not None and not 0 < number <= 1:
        raise ParameterError("mfu", "{} must be " + what + ", got {value!r}", value=value)
    return number


def gpu_price(value: Any) -> float | None:
    """--price-per-gpu-hour: a finite price, at least 0 (None: no cost)."""
    what = "a number, at least 0 (e.g. 2.5)"
    number = _number("price_per_gpu_hour", value, what)
    if number is not None and not 0 <= number < math.inf:
        raise ParameterError("price_per_gpu_hour", "{} must be " + what + ", got {value!r}", value=value)
    return number


def check_options(gpu: str | None, gpus: Any = 1, mfu: Any = None, price_per_gpu_hour: Any = None,
                  throughput_table: str | Path | None = None) -> "GpuSetting | None":
    """The GPU options of a plan (`plan`, `ds.plan`, the planner page) as they combine: the others
    need a GPU; a bad value, an unknown device or a bad table is a ParameterError or UserError in one
    line. The checked setting, or None without a GPU."""
    gpus, mfu, price = whole_gpus(gpus), mfu_fraction(mfu), gpu_price(price_per_gpu_hour)
    if gpu is None or not str(gpu).strip():
        given = [name for name, value in (("gpus", gpus != 1), ("mfu", mfu is not None),
                                          ("price_per_gpu_hour", price is not None),
                                          ("throughput_table", throughput_table is not None)) if value]
        if given:
            raise ParameterError((given[0], "gpu"), "{} needs {}, the GPU the plan is priced on (e.g. h100)")
        return None
    return GpuSetting(str(gpu), gpus, mfu, price, None if throughput_table is None else str(throughput_table)).checked()[0]


DEFAULT_GPU = "h100"  # the device a GPU sweep is planned on without --gpu, where its table has it


def check_sweep_options(gpu: str | None, mfu: float | None, price_per_gpu_hour: float | None,
                        throughput_table: str | None, flops_per_second: float | None,
                        on_gpu: bool) -> str | None:
    """The GPU options of a sweep's dry run (`sweep plan`) as they combine, once its device is known
    (`on_gpu`: planned on GPUs): on the CPU none of them applies; --flops-per-second replaces the
    table's MFU, so --mfu, --throughput-table and --gpu do not combine with it. The device's id
    (`gpu`, or the table's default: DEFAULT_GPU, or a table's only device), or None where none is read."""
    given = [name for name, value in (("gpu", gpu), ("mfu", mfu), ("throughput_table", throughput_table))
             if value is not None]
    if gpu is not None or throughput_table is not None:   # a bad value first: an unknown device, a bad table
        table = ThroughputTable.load(throughput_table)
        device = None if gpu is None else table.device(gpu).id
    if not on_gpu:
        given += ["price_per_gpu_hour"] * (price_per_gpu_hour is not None)
        if given:
            raise ParameterError((given[0], "gpus", "gpus", given[0]), "{} applies to GPUs and this sweep is "
                                 "planned on the CPU (no GPU visible here and the spec asks for none, or {} none): "
                                 "give {} N to plan it on GPUs, or leave out {}")
        return None
    if flops_per_second is not None:
        if given:
            raise ParameterError((given[0], "flops_per_second"), "{} sets how fast a run goes from a GPU's "
                                 "measured MFU and {} sets it outright: give one")
        return None
    if gpu is not None:
        return device
    table = ThroughputTable.load(throughput_table)
    if DEFAULT_GPU in table.devices or len(table.devices) > 1:
        if DEFAULT_GPU not in table.devices:
            raise ParameterError("gpu", f"give {{}}: {table.source} has no {DEFAULT_GPU} (the GPU a sweep is "
                                 f"planned on by default); its devices are {', '.join(table.devices)}")
        return DEFAULT_GPU
    return next(iter(table.devices))   # a table of one device: that one


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
        """(this setting with its values checked and the device's id, the table), or ParameterError
        naming the option."""
        setting = replace(self, gpus=whole_gpus(self.gpus), mfu=mfu_fraction(self.mfu),
                          price_per_gpu_hour=gpu_price(self.price_per_gpu_hour))
        table = ThroughputTable.load(self.table)
        device = table.device(self.device)
        return replace(setting, device=device.id), table



def shape_text(shape: tuple[int, int] | None) -> str:
    """A series' shape in words."""
    if shape is None:
        return "shape not recorded"
    return f"vocabulary {shape[0]:,}, {shape[1]:,}-token sequences"


def _first_error(exc: ValidationError) -> str:
    """The first validation error, named by where it is in the file (devices[1].figures[0].date)."""
    error = exc.errors()[0]
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    message = {"missing": "is missing", "extra_forbidden": "is not a field of a throughput table"}.get(
        error["type"], error["msg"].removeprefix("Value error, "))
    return f"{path}: {message}" if path else message
