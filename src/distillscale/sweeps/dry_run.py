"""The dry run of a sweep (`distillscale sweep plan SPEC`): every run the spec resolves to, what each
costs and how long the whole sweep takes on the GPUs given, before anything is spent.

    plan = dry_run(load_sweep_spec("examples/gpu_ladder.toml"), gpus=1, runs_per_gpu=2)
    plan.runs            # RunEstimate per run, in the order `sweep run` launches them
    plan.wall_seconds    # the sweep's wall time, simulated as the runner schedules it

The runs are the spec's own (`load_sweep_spec`, as `sweep run` resolves it), placed on worker slots
by `place_runs` and `choose_slot` as the runner places them: a run starts when its teacher and its
WSD parent have finished and a slot is free, in the spec's order. Each run's FLOPs are counted as its
result.json will count them (`planning.flops.run_flops` over its whole steps, a student's teacher
forward passes included); its evaluations (when `eval_tokens` is set), which result.json does not
count, are its `evaluation_flops`, spent on the device beside them; a fork spends only its
cooldown steps, its parent's stable phase being shared (training/fork.py); a `prune` run (the start of a
student pruned from its teacher) spends its importance pass, as prune.json counts it.

Time, per run: a start-up (a new process: imports and the corpus walk; plus `torch.compile` when
the run compiles) and its device work, FLOPs / achieved FLOP/s. The throughput is an estimate
(`Throughput.describe` says from what in every output):

- on a GPU (`--gpu`, default h100), a run alone achieves MFU(N) x the device's dense bf16 peak, the
  MFU measured on that device at the run's size N (non-embedding parameters), interpolated in log N
  between the sizes the throughput table measured and the nearest measured size's outside them
  (`planning.gpu_hours`: the table shipped with the package, `--throughput-table` a user's own,
  `--mfu` one MFU for every run). Runs sharing one GPU (`--runs-per-gpu`) share its throughput
  equally (their start-ups overlap; their device work does not); with a price per GPU-hour the
  sweep's cost is its reserved GPU-hours (wall time x GPUs) at that price;
- on the CPU, each run has a core of its own at `CPU_FLOPS_PER_SECOND` (measured: docs/guides/sweeps.md's
  `bench/demo/micro_mfu.py` figure, 35% of one core's 92 GFLOP/s fp32 matmul peak at one thread);
- the start-up, `STARTUP_SECONDS`, was measured on the 2-core development machine (python -c
  importing the CLI and the recipes: 2.1-2.5 s; walking and fingerprinting the 27,827 files of
  builtin:python-env: 1.5-2.6 s; 4.7-5.5 s in all per process); `COMPILE_SECONDS`, CUDA's start and
  the compilation of a model shape the sweep has not compiled yet (cold: 20.1 s measured on an H100
  at the ladder's depth 4, `bench/gpu/gpu_step.py --ladder`), and `WARM_COMPILE_SECONDS`, a later run of a
  shape whose compilation finished (Inductor's on-disk cache is the machine's, so every worker finds
  it warm; the GPU ladder's forks on an H200 took about 1 s beyond their device time,
  docs/gpu_ladder_sizes_h200.csv). Checkpoint writes are not counted.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from distillscale.data.config import DEFAULT_VOCAB_SIZE
from distillscale.errors import ParameterError
from distillscale.model.config import ModelConfig
from distillscale.planning.flops import run_flops
from distillscale.planning.gpu_hours import (DEFAULT_GPU, ThroughputTable, check_sweep_options, format_gpu_hours,
                                             gpu_price, mfu_fraction)
from distillscale.sweeps.placement import Placement, choose_slot, place_runs, visible_gpus
from distillscale.sweeps.spec import PlannedRun, SweepSpec
from distillscale.sweeps.spec_sections import EVALUATED_KINDS
from distillscale.training.config import DistillConfig, TrainConfig
from distillscale.training.on_policy import run_generation_flops
from distillscale.training.prune_config import calibration_input_tokens, calibration_window, importance_flops
from distillscale.units import format_quantity

CPU_FLOPS_PER_SECOND = 32e9  # bench/demo/micro_mfu.py (docs/guides/sweeps.md): 35% of one core's ~92 GFLOP/s, one thread
STARTUP_SECONDS = 5.0        # measured: imports + the walk of builtin:python-env, one process, 2 cores
COMPILE_SECONDS = 20.0       # CUDA's start and torch.compile of a shape not compiled yet (20.1 s measured, H100)
WARM_COMPILE_SECONDS = 1.0   # a later run of a compiled shape (measured: ~1 s, the H200 ladder's forks)


@dataclass(frozen=True)
class Throughput:
    """How fast runs go: a run's achieved FLOP/s (`flops_per_second` fixes it for every run; None: the
    default of the device, see the module's docstring), its start-up and its compilation, seconds; on
    a GPU, which one (`gpu`, an id of the throughput table; None: its default, `gpu_hours.DEFAULT_GPU`
    or a table's only device), an MFU replacing the table's, the table itself (None: the shipped one)
    and the price of a GPU-hour (None: no cost). Its values are checked when it is made; how the GPU
    options combine, once the sweep's device is known (`resolved`: `gpu_hours.check_sweep_options`,
    the one check of `sweep plan`'s GPU options), and the table is read only then."""

    flops_per_second: float | None = None
    startup_seconds: float = STARTUP_SECONDS
    compile_seconds: float = COMPILE_SECONDS
    gpu: str | None = None
    mfu: float | None = None
    throughput_table: str | None = None
    price_per_gpu_hour: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mfu", mfu_fraction(self.mfu))
        object.__setattr__(self, "price_per_gpu_hour", gpu_price(self.price_per_gpu_hour))
        if self.flops_per_second is not None and not 0 < self.flops_per_second < math.inf:
            raise ParameterError("flops_per_second", "{} must be a positive number of FLOP/s, got {value}",
                                 value=self.flops_per_second)
        for name in ("startup_seconds", "compile_seconds"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ParameterError(name, "{} must be a number of seconds, at least 0, got {value}",
                                     value=getattr(self, name))

    def resolved(self, on_gpu: bool) -> "Throughput":
        """This throughput for a sweep planned on GPUs (`on_gpu`) or the CPU: its GPU options checked as
        they combine there and its device the table's id (None where no device is read)."""
        device = check_sweep_options(self.gpu, self.mfu, self.price_per_gpu_hour, self.throughput_table,
                                     self.flops_per_second, on_gpu)
        return replace(self, gpu=device)

    def rate(self, non_embedding_params: int, on_gpu: bool, shape: tuple[int, int] | None = None) -> float:
        """Achieved FLOP/s of one run of N non-embedding parameters alone on its device (`shape`: its
        vocabulary and sequence length, which pick the table's figures)."""
        if self.flops_per_second is not None:
            return self.flops_per_second
        if not on_gpu:
            return CPU_FLOPS_PER_SECOND
        return self.table.flops_per_second(self.gpu or DEFAULT_GPU, non_embedding_params, self.mfu, shape)

    @property
    def table(self) -> ThroughputTable:
        return _table(self.throughput_table)

    def describe(self, on_gpu: bool) -> list[str]:
        """The model's assumptions, one line each, as every output states them."""
        if self.flops_per_second is not None:
            rate = (f"{self.flops_per_second:.3g} FLOP/s per run alone on its "
                    f"{'GPU' if on_gpu else 'CPU core'} (--flops-per-second): assumed, not measured")
        elif on_gpu:
            device = self.table.device(self.gpu)
            peak = f"the {device.name}'s dense bf16 peak ({device.peak_flops / 1e12:.4g} TFLOP/s)"
            if self.mfu is not None:
                rate = f"GPU throughput: MFU {self.mfu:.1%} (--mfu, not measured) x {peak}"
            else:
                measured = self.table.measured_device(self.gpu)
                borrowed = ("" if measured is device else f" (none measured on the {device.name}: the "
                            f"{measured.name}'s time per token, its part beyond compute at the best MFU measured "
                            f"there kept as it is)")
                rate = (f"GPU throughput estimated from {self.table.source}: a run alone at the MFU measured on "
                        f"the {measured.name}{borrowed} at its size, from the figures of the shape nearest its "
                        f"vocabulary and sequence length that cover its size (interpolated in log size between "
                        f"{self.table.series_text(self.gpu)}; the nearest outside them) x {peak}")
            rate += "; runs sharing a GPU share it; --gpu, --mfu or --flops-per-second set it"
        else:
            rate = (f"CPU throughput {CPU_FLOPS_PER_SECOND:.3g} FLOP/s per run, one core each "
                    f"(bench/demo/micro_mfu.py on the 2-core development machine)")
        start = (f"start-up {self.startup_seconds:g} s per worker process, once per slot (imports and the corpus "
                 f"walk, measured on a 2-core CPU) + {self.compile_seconds:g} s for a compiled run of a model shape "
                 f"not compiled yet (CUDA and torch.compile, measured cold on an H100), {WARM_COMPILE_SECONDS:g} s "
                 f"for later runs of it (Inductor's cache warm, measured)")
        return [rate, start]


@functools.lru_cache(maxsize=8)
def _table(path: str | None) -> ThroughputTable:
    """The throughput table at `path` (None: the shipped one), read once per process."""
    return ThroughputTable.load(path)


@dataclass(frozen=True)
class RunEstimate:
    """One run of the dry run: what `sweep run` launches, what it spends, where and when it runs."""

    run_id: str
    kind: str                 # train, distil, fork (a fork trains or distils its cooldown only) or prune
    role: str                 # teacher, baseline, student or pruned
    n_layers: int
    non_embedding_params: int
    tokens: int               # the run's token budget, as launched
    tokens_per_param: float   # tokens / non_embedding_params
    steps: int                # the run's optimizer steps (a fork's include its parent's shared ones)
    own_steps: int            # the steps it trains itself (a fork: its cooldown)
    flops: float              # training FLOPs it spends itself (a fork: its cooldown), as result.json counts
    run_flops: float          # FLOPs of the whole run, as its result.json records them
    evaluation_flops: float   # its evaluations' forward passes (result.json does not count them)
    device_seconds: float     # its device work alone on its device: (flops + evaluation_flops) / FLOP/s
    startup_seconds: float    # process start-up and compilation
    device: str               # the GPU of its slot, or "cpu"
    start_seconds: float      # when the simulated runner starts it
    end_seconds: float
    parent_id: str | None
    teacher_id: str | None
    lr: float | None = None   # its --lr, as launched (under muP, the family's default, the base rate)
    batch_size: int | None = None   # sequences per micro-batch


@dataclass(frozen=True)
class SweepDryRun:
    """A sweep's runs and totals before it runs; `to_json` is `sweep plan --json`."""

    name: str
    runs: tuple[RunEstimate, ...]   # in launch order
    placement: Placement
    throughput: Throughput
    gpu_settings: tuple[str, ...]   # bf16/compile, as the spec asks (`SweepSpec.gpu_settings`)
    cuda_runs: int                  # runs that ask for device = cuda
    gpus_here: int                  # GPUs visible on this machine
    wall_seconds: float
    tune: dict[str, list] | None = None  # the spec's [tune] grid (lr and/or batch_size lists), if any
    spec_notes: tuple[str, ...] = ()     # the spec's own warnings (`SweepSpec.notes`)
    evaluations: int = 0                 # runs [eval] scores after they train (`distillscale eval`)
    evaluation: str | None = None        # what [eval] scores them on

    @property
    def on_gpu(self) -> bool:
        return bool(self.placement.gpus)

    @property
    def needs_gpu(self) -> bool:
        return bool(self.gpu_settings or self.cuda_runs)

    @property
    def runs_per_gpu(self) -> int | None:
        return -(-self.placement.workers // len(self.placement.gpus)) if self.on_gpu else None

    @property
    def device_seconds(self) -> float:
        return sum(run.device_seconds for run in self.runs)

    @property
    def startup_seconds(self) -> float:
        return sum(run.startup_seconds for run in self.runs)

    @property
    def flops(self) -> float:
        return sum(run.flops for run in self.runs)

    @property
    def evaluation_flops(self) -> float:
        return sum(run.evaluation_flops for run in self.runs)

    @property
    def separate_flops(self) -> float:
        """FLOPs of the same runs trained separately from scratch (no forks)."""
        return sum(run.run_flops for run in self.runs)

    def gpu_time(self) -> "SweepGpuHours | None":
        """On GPUs: the sweep's busy GPU-hours (its runs' device work), the GPU-hours it reserves (wall
        time x GPUs) and, with a price, what those cost; None on the CPU."""
        if not self.on_gpu:
            return None
        gpus = len(self.placement.gpus)
        reserved = self.wall_seconds * gpus / 3600
        price = self.throughput.price_per_gpu_hour
        name = (self.throughput.table.device(self.throughput.gpu).name if self.throughput.flops_per_second is None
                else f"GPU at {self.throughput.flops_per_second:.3g} FLOP/s")
        return SweepGpuHours(self.throughput.gpu, name, gpus, self.device_seconds / 3600, reserved, price,
                             None if price is None else reserved * price)

    def counts(self) -> dict[str, int]:
        kinds = ("train", "distil", "fork") + (("prune",) if any(run.kind == "prune" for run in self.runs) else ())
        counts = {kind: sum(run.kind == kind for run in self.runs) for kind in kinds}  # prune: only a sweep's that has them
        return counts | ({"eval": self.evaluations} if self.evaluation is not None else {})  # likewise [eval]

    def notes(self) -> list[str]:
        """The assumptions, and what `sweep run` would say about the spec on this machine."""
        notes = [*self.spec_notes, *self.throughput.describe(self.on_gpu)]
        if self.evaluation is not None:
            notes.append(f"{self.evaluation}: {self.evaluations} runs scored by `distillscale eval` after they train, "
                         "each a job on a free slot (its time is not in the estimates; a run whose eval.json matches "
                         "[eval] is not scored again, one scored under another [eval] is)")
        if self.needs_gpu and not self.gpus_here:
            asked = [f"{key} = true" for key in self.gpu_settings]
            asked += [f"device = cuda ({self.cuda_runs} runs)"] if self.cuda_runs else []
            gpus = len(self.placement.gpus)
            planned = f"; planned for {gpus} GPU{'s' if gpus > 1 else ''} (--gpus N)" if self.on_gpu else ""
            notes.append(f"this spec needs GPUs ({', '.join(asked)}) and none is visible here: `sweep run` "
                         f"refuses it on this machine{planned}")
        return notes

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "runs": [asdict(run) for run in self.runs], "counts": self.counts(),
                "gpus": len(self.placement.gpus), "runs_per_gpu": self.runs_per_gpu,
                "workers": self.placement.workers, "device": "gpu" if self.on_gpu else "cpu",
                "flops": self.flops, "flops_separate": self.separate_flops,
                "evaluation_flops": self.evaluation_flops,
                "device_seconds": self.device_seconds, "startup_seconds": self.startup_seconds,
                "wall_seconds": self.wall_seconds, "needs_gpu": self.needs_gpu, "gpus_here": self.gpus_here,
                "throughput": asdict(self.throughput), "assumptions": self.notes(),
                "gpu_hours": None if self.gpu_time() is None else asdict(self.gpu_time()),
                "tune": None if self.tune is None else {**self.tune, "points": self.grid_points}}

    @property
    def grid_points(self) -> int:
        """(lr, batch_size) pairs each (size, tokens) cell of the tuned ladder runs at: 1 without [tune]."""
        return math.prod(len(values) for key, values in (self.tune or {}).items() if key in ("lr", "batch_size"))

    def describe_grid(self) -> str | None:
        """One line on the [tune] grid: its shape, the ladder it grids and what the sweep costs."""
        if self.tune is None:
            return None
        shape = " x ".join(f"{len(self.tune[key])} {name}" for key, name in (("lr", "lr"), ("batch_size", "batch sizes"))
                           if key in self.tune)
        ladder = ("[teachers]" if self.tune.get("ladder", "teachers") == "teachers"
                  else "[students] (each baseline, and each student of each teacher)")
        return (f"lr x batch grid [tune]: {shape} = {self.grid_points} runs per (size, tokens) cell of {ladder}; "
                f"{len(self.runs)} runs and {self.flops:.3g} FLOPs in all")


@dataclass(frozen=True)
class SweepGpuHours:
    """A GPU sweep's time in GPU-hours: `busy`, its runs' device work; `reserved`, its wall time x GPUs
    (what renting them costs: start-ups and idle slots included); `cost`, reserved x the price given."""

    gpu: str
    device_name: str
    gpus: int
    busy_hours: float
    reserved_hours: float
    price_per_gpu_hour: float | None
    cost: float | None

    def describe(self) -> str:
        cost = "" if self.cost is None else f"; cost {self.cost:,.2f} at {self.price_per_gpu_hour:g} per GPU-hour"
        return (f"GPU-hours on {self.gpus} x {self.device_name} (an estimate): {format_gpu_hours(self.busy_hours)} "
                f"busy (the runs' device work), {format_gpu_hours(self.reserved_hours)} reserved (wall time x "
                f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}){cost}")


def dry_run(spec: SweepSpec, gpus: int | None = None, runs_per_gpu: int | None = None,
            workers: int | None = None, throughput: Throughput | None = None,
            threads_per_run: int = 1) -> SweepDryRun:
    """Every run of `spec`, its cost and the sweep's wall time on `gpus` GPUs (None: those visible
    here, or one when there are none and the spec asks for GPUs; 0: the CPU), `runs_per_gpu` and
    `workers` as `sweep run` takes them; `throughput` how fast runs go (None: the defaults)."""
    from distillscale.sweeps.runner import default_workers

    if gpus is not None and gpus < 0:
        raise ParameterError("gpus", "{} must be a number of GPUs (0: the CPU), got {value}", value=gpus)
    here = len(visible_gpus())
    asked, cuda_runs = spec.gpu_settings()
    if gpus is None:
        gpus = here or (1 if asked or cuda_runs else 0)
    placement = place_runs([str(index) for index in range(gpus)], "all" if gpus else "none", runs_per_gpu,
                           workers, cpu_workers=default_workers(threads_per_run))
    throughput = (throughput or Throughput()).resolved(on_gpu=gpus > 0)
    costs = {run.run_id: _cost(run, spec, throughput, on_gpu=gpus > 0) for run in spec.runs}
    runs, wall = _simulate(spec.runs, costs, placement)
    return SweepDryRun(name=spec.name, runs=tuple(runs), placement=placement, throughput=throughput,
                       gpu_settings=asked, cuda_runs=cuda_runs, gpus_here=here, wall_seconds=wall,
                       tune=spec.sections.get("tune"), spec_notes=spec.notes,
                       evaluations=sum(run.kind in EVALUATED_KINDS for run in spec.runs) if spec.evaluation else 0,
                       evaluation=None if spec.evaluation is None else spec.evaluation.describe())


@dataclass(frozen=True)
class _Cost:
    kind: str
    steps: int
    own_steps: int
    flops: float
    run_flops: float
    evaluation_flops: float
    device_seconds: float
    startup_seconds: float   # a new worker process: paid by a slot's first run only (sweeps/executors.py)
    compile_seconds: float   # paid by a run that compiles a shape not compiled yet (warm: `warm_compile_seconds`)
    warm_compile_seconds: float = 0.0
    shape: tuple = ()        # what one compilation serves: the model's depth and size


def _config(run: PlannedRun) -> TrainConfig:
    """The run's training settings (a student's steps are its baseline's), as `sweep run` resolves them."""
    shared = {key: value for key, value in run.settings.items() if key in TrainConfig.model_fields}
    return TrainConfig.model_validate({**shared, "out": "."})


def _cost(run: PlannedRun, spec: SweepSpec, throughput: Throughput, on_gpu: bool) -> _Cost:
    teacher = next((other for other in spec.runs if other.run_id == run.teacher_id), None)
    if run.kind == "pruned":
        return _prune_cost(run, teacher, throughput, on_gpu)
    config = _config(run)
    # a student reads its teacher's tokenizer (its settings leave vocab_size out: TEACHER_FIXED_KEYS)
    vocab_size = _config(teacher).vocab_size if teacher else config.vocab_size
    model = config.model_shape(vocab_size or DEFAULT_VOCAB_SIZE)
    teacher_flops = 0.0
    if teacher is not None:
        teacher_config = _config(teacher)
        teacher_flops = (teacher_config.model_shape(vocab_size or DEFAULT_VOCAB_SIZE)
                         .forward_flops_per_token(config.seq_len))
    steps, whole = training_flops(config, model, run.non_embedding_params, teacher_flops)
    own_steps = config.cooldown_steps(steps) if run.parent_id else steps
    whole += _generation_flops(run, model, steps)
    evaluations = (own_steps // config.eval_every if config.eval_every else 0) + 1
    evaluation = (evaluations * (config.eval_tokens or 0) * model.forward_flops_per_token(config.seq_len))
    flops = whole * own_steps / steps
    kind = "fork" if run.parent_id else "distil" if run.command == "distill" else "train"
    return _Cost(kind, steps, own_steps, flops, whole, evaluation,
                 (flops + evaluation) / throughput.rate(run.non_embedding_params, on_gpu,
                                                        (model.vocab_size, config.seq_len)),
                 throughput.startup_seconds, throughput.compile_seconds if config.compile else 0.0,
                 WARM_COMPILE_SECONDS if config.compile else 0.0, (run.n_layers, run.non_embedding_params))


def training_flops(config: TrainConfig, model: ModelConfig, non_embedding_params: int,
                   teacher_flops_per_token: float = 0.0) -> tuple[int, float]:
    """A run's optimizer steps and the FLOPs of its whole steps (`planning.flops.run_flops`: the
    model's exact forward count, a student's teacher forward passes included), as its result.json
    counts them; a WSD fork spends the share `config.cooldown_steps(steps) / steps` of them. The one
    count of a run's training FLOPs for `sweep plan` and the ladder designer (`sweeps.ladder`)."""
    steps = config.steps_for(config.token_budget(non_embedding_params))
    return steps, run_flops(model, config.seq_len, steps * config.tokens_per_step, teacher_flops_per_token).total


def _generation_flops(run: PlannedRun, model: ModelConfig, steps: int) -> float:
    """An on-policy student's sampling over its run (0 for any other run), as result.json adds it."""
    if run.command != "distill":
        return 0.0
    shared = {key: value for key, value in run.settings.items() if key in DistillConfig.model_fields}
    # the teacher is the run `teacher_id` names, resolved when the sweep runs: any name validates here
    config = DistillConfig.model_validate({**shared, "out": ".", "teacher": run.teacher_id or "teacher"})
    on_policy = config.on_policy_config()
    if on_policy is None:
        return 0.0
    return run_generation_flops(on_policy, model, steps, config.grad_accum, config.batch_size)


def _prune_cost(run: PlannedRun, teacher: PlannedRun, throughput: Throughput, on_gpu: bool) -> _Cost:
    """A `prune` run: its importance pass over the calibration windows, as prune.json counts it
    (`importance_flops`); no optimizer steps."""
    teacher_config = _config(teacher)
    teacher_model = teacher_config.model_shape(teacher_config.vocab_size or DEFAULT_VOCAB_SIZE)
    seq_len = calibration_window(run.settings.get("seq_len"), teacher_model.max_seq_len)
    tokens = calibration_input_tokens(run.settings["calibration_tokens"], seq_len)
    flops = float(importance_flops(run.settings["importance"], teacher_model.forward_flops_per_token(seq_len),
                                   tokens))
    rate = throughput.rate(teacher.non_embedding_params, on_gpu, (teacher_model.vocab_size, seq_len))
    return _Cost("prune", 0, 0, flops, flops, 0.0, flops / rate,
                 throughput.startup_seconds, 0.0)


def _simulate(planned: tuple[PlannedRun, ...], costs: dict[str, _Cost],
              placement: Placement) -> tuple[list[RunEstimate], float]:
    """The runner's loop in simulated time: ready runs start in the spec's order on the slot
    `choose_slot` gives; each spends its start-up (the slot's worker process for its first run, the
    compilation for every run that compiles), then its device work, which the runs on one GPU share
    equally (a CPU slot is a core of its own)."""
    now, done, warm = 0.0, set(), set()  # warm: slots whose worker process has started
    compiled: dict[tuple, float] = {}  # a model shape -> when its first compilation ends
    free, busy = list(range(placement.workers)), {}  # busy: run id -> slot
    left: dict[str, list[float]] = {}  # run id -> [start-up left, device seconds left]
    started: dict[str, tuple[float, int]] = {}
    finished: list[RunEstimate] = []
    pending = list(planned)
    while pending or busy:
        for run in list(pending):
            if not free:
                break
            if all(needed in done for needed in run.depends_on):
                slot = choose_slot(placement, free, list(busy.values()))
                free.remove(slot)
                busy[run.run_id] = slot
                pending.remove(run)
                cost = costs[run.run_id]
                process = 0.0 if slot in warm else cost.startup_seconds
                if cost.compile_seconds and compiled.get(cost.shape, math.inf) <= now:
                    startup = process + cost.warm_compile_seconds  # Inductor's cache holds the shape
                else:
                    startup = process + cost.compile_seconds
                    if cost.compile_seconds:
                        compiled[cost.shape] = min(compiled.get(cost.shape, math.inf), now + startup)
                warm.add(slot)
                left[run.run_id] = [startup, cost.device_seconds]
                started[run.run_id] = (now, slot, startup)
        if not busy:
            raise ValueError("a run depends on a run that is not in the spec")  # resolve_sweep_spec forbids it
        working = [placement.slots[slot] for run_id, slot in busy.items() if left[run_id][0] <= 0]
        rates = {}
        for run_id, slot in busy.items():
            sharing = working.count(placement.slots[slot]) if placement.slots[slot] is not None else 1
            rates[run_id] = 1.0 if left[run_id][0] > 0 else 1.0 / sharing
        step = min((left[run_id][0] if left[run_id][0] > 0 else left[run_id][1] / rates[run_id])
                   for run_id in busy)
        now += step
        for run_id in list(busy):
            phase = 0 if left[run_id][0] > 0 else 1
            left[run_id][phase] -= step * rates[run_id]
            if left[run_id][1] <= 1e-9 * max(1.0, costs[run_id].device_seconds) and left[run_id][0] <= 1e-9:
                free.append(busy.pop(run_id))
                done.add(run_id)
                finished.append(_estimate(next(r for r in planned if r.run_id == run_id), costs[run_id],
                                          placement, *started[run_id], now))
            elif phase == 0 and left[run_id][0] <= 1e-9:
                left[run_id][0] = 0.0
    order = {run_id: index for index, run_id in enumerate(started)}
    return sorted(finished, key=lambda run: order[run.run_id]), now


def _estimate(run: PlannedRun, cost: _Cost, placement: Placement, start: float, slot: int,
              startup: float, end: float) -> RunEstimate:
    return RunEstimate(run_id=run.run_id, kind=cost.kind, role=run.kind, n_layers=run.n_layers,
                       non_embedding_params=run.non_embedding_params, tokens=run.tokens,
                       tokens_per_param=run.tokens / run.non_embedding_params, steps=cost.steps,
                       own_steps=cost.own_steps, flops=cost.flops, run_flops=cost.run_flops,
                       evaluation_flops=cost.evaluation_flops,
                       device_seconds=cost.device_seconds, startup_seconds=startup,
                       device=placement.slots[slot] or "cpu", start_seconds=start, end_seconds=end,
                       parent_id=run.parent_id, teacher_id=run.teacher_id, lr=run.settings.get("lr"),
                       batch_size=run.settings.get("batch_size"))
