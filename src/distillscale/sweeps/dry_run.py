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
the run compiles) and its device work, FLOPs / achieved FLOP/s. **The throughput is assumed, not
measured** (no GPU figure of this project's own benches exists yet; `Throughput.describe` says so in
every output):

- on a GPU, a run alone achieves F(N) FLOP/s, a power law in its non-embedding parameters N through
  issue 24's two H100 figures (bf16 + torch.compile, one run on the GPU): 476K tokens/s at
  `bench/gpu_step.py`'s 85M shape (depth 12) and ~1.5M tokens/s at its 11M shape (depth 6), both at
  aspect ratio 64, head size 64, vocabulary 8192 and 1024-token sequences, counted in the engine's
  exact FLOPs; no faster than the 85M figure above it. Runs sharing one GPU (`--runs-per-gpu`)
  share its throughput equally (their start-ups overlap; their device work does not);
- on the CPU, each run has a core of its own at `CPU_FLOPS_PER_SECOND` (measured: docs/guides/sweeps.md's
  `bench/micro_mfu.py` figure, 35% of one core's 92 GFLOP/s fp32 matmul peak at one thread);
- the start-up, `STARTUP_SECONDS`, was measured on the 2-core development machine (python -c
  importing the CLI and the recipes: 2.1-2.5 s; walking and fingerprinting the 27,827 files of
  builtin:python-env: 1.5-2.6 s; 4.7-5.5 s in all per process); `COMPILE_SECONDS`, CUDA's start and
  the compilation of a run that compiles, is assumed. Checkpoint writes are not counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from distillscale.data.prepare import DEFAULT_VOCAB_SIZE
from distillscale.errors import ParameterError
from distillscale.model.config import ModelConfig
from distillscale.planning.flops import run_flops
from distillscale.sweeps.placement import Placement, choose_slot, place_runs, visible_gpus
from distillscale.sweeps.spec import PlannedRun, SweepSpec
from distillscale.sweeps.spec_sections import EVALUATED_KINDS
from distillscale.training.config import DistillConfig, TrainConfig
from distillscale.training.on_policy import run_generation_flops
from distillscale.training.prune_config import calibration_input_tokens, calibration_window, importance_flops

# issue 24's H100 figures, one run alone on the GPU (bf16 + torch.compile): (depth, tokens/s) at
# bench/gpu_step.py's shapes. Assumed, not measured by this project.
GPU_FIGURES = ((6, 1.5e6), (12, 476e3))
GPU_FIGURE_SHAPE = {"aspect_ratio": 64, "head_dim": 64, "vocab_size": 8192, "max_seq_len": 1024}
CPU_FLOPS_PER_SECOND = 32e9  # bench/micro_mfu.py (docs/guides/sweeps.md): 35% of one core's ~92 GFLOP/s, one thread
STARTUP_SECONDS = 5.0        # measured: imports + the walk of builtin:python-env, one process, 2 cores
COMPILE_SECONDS = 20.0       # assumed: CUDA's start and torch.compile, per run that compiles


@dataclass(frozen=True)
class Throughput:
    """How fast runs go: a run's achieved FLOP/s (`flops_per_second` fixes it for every run; None: the
    default of the device, see the module's docstring), its start-up and its compilation, seconds."""

    flops_per_second: float | None = None
    startup_seconds: float = STARTUP_SECONDS
    compile_seconds: float = COMPILE_SECONDS

    def __post_init__(self) -> None:
        if self.flops_per_second is not None and not 0 < self.flops_per_second < math.inf:
            raise ParameterError("flops_per_second", "{} must be a positive number of FLOP/s, got {value}",
                                 value=self.flops_per_second)
        for name in ("startup_seconds", "compile_seconds"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ParameterError(name, "{} must be a number of seconds, at least 0, got {value}",
                                     value=getattr(self, name))

    def rate(self, non_embedding_params: int, on_gpu: bool) -> float:
        """Achieved FLOP/s of one run of N non-embedding parameters alone on its device."""
        if self.flops_per_second is not None:
            return self.flops_per_second
        if not on_gpu:
            return CPU_FLOPS_PER_SECOND
        (n1, f1), (n2, f2) = _gpu_figures()
        exponent = math.log(f2 / f1) / math.log(n2 / n1)
        return f1 * (min(non_embedding_params, n2) / n1) ** exponent

    def describe(self, on_gpu: bool) -> list[str]:
        """The model's assumptions, one line each, as every output states them."""
        if self.flops_per_second is not None:
            rate = (f"{self.flops_per_second:.3g} FLOP/s per run alone on its "
                    f"{'GPU' if on_gpu else 'CPU core'} (--flops-per-second): assumed, not measured")
        elif on_gpu:
            (n1, f1), (n2, f2) = _gpu_figures()
            rate = (f"GPU throughput assumed, not measured: a run alone achieves {f1:.3g} FLOP/s at "
                    f"{n1 / 1e6:.3g}M parameters and {f2:.3g} at {n2 / 1e6:.3g}M (issue 24's H100 figures, "
                    f"bf16 + compile), a power law between; runs sharing a GPU share it; set "
                    f"--flops-per-second once measured (bench/gpu_step.py)")
        else:
            rate = (f"CPU throughput {CPU_FLOPS_PER_SECOND:.3g} FLOP/s per run, one core each "
                    f"(bench/micro_mfu.py on the 2-core development machine)")
        start = (f"start-up {self.startup_seconds:g} s per worker process, once per slot (imports and the corpus "
                 f"walk, measured on a 2-core CPU) + {self.compile_seconds:g} s per compiled run (CUDA and "
                 f"torch.compile: assumed)")
        return [rate, start]


def _gpu_figures() -> tuple[tuple[int, float], tuple[int, float]]:
    """(non-embedding parameters, achieved FLOP/s) of GPU_FIGURES, in the engine's exact FLOPs."""
    figures = []
    for depth, tokens_per_second in GPU_FIGURES:
        model = ModelConfig(n_layers=depth, **GPU_FIGURE_SHAPE)
        figures.append((model.non_embedding_params,
                        3 * model.forward_flops_per_token(GPU_FIGURE_SHAPE["max_seq_len"]) * tokens_per_second))
    return figures[0], figures[1]


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
    lr: float | None = None   # its peak learning rate (muP's base rate under muP), as launched
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


def dry_run(spec: SweepSpec, gpus: int | None = None, runs_per_gpu: int | None = None,
            workers: int | None = None, throughput: Throughput = Throughput(),
            threads_per_run: int = 1) -> SweepDryRun:
    """Every run of `spec`, its cost and the sweep's wall time on `gpus` GPUs (None: those visible
    here, or one when there are none and the spec asks for GPUs; 0: the CPU), `runs_per_gpu` and
    `workers` as `sweep run` takes them."""
    from distillscale.sweeps.runner import default_workers

    if gpus is not None and gpus < 0:
        raise ParameterError("gpus", "{} must be a number of GPUs (0: the CPU), got {value}", value=gpus)
    here = len(visible_gpus())
    asked, cuda_runs = spec.gpu_settings()
    if gpus is None:
        gpus = here or (1 if asked or cuda_runs else 0)
    placement = place_runs([str(index) for index in range(gpus)], "all" if gpus else "none", runs_per_gpu,
                           workers, cpu_workers=default_workers(threads_per_run))
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
    compile_seconds: float   # paid by every run that compiles (a worker's compile cache starts empty)


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
    steps = config.steps_for(config.token_budget(run.non_embedding_params))
    own_steps = config.cooldown_steps(steps) if run.parent_id else steps
    teacher_flops = 0.0
    if teacher is not None:
        teacher_config = _config(teacher)
        teacher_flops = (teacher_config.model_shape(vocab_size or DEFAULT_VOCAB_SIZE)
                         .forward_flops_per_token(config.seq_len))
    whole = run_flops(model, config.seq_len, steps * config.tokens_per_step, teacher_flops).total \
        + _generation_flops(run, model, steps)
    evaluations = (own_steps // config.eval_every if config.eval_every else 0) + 1
    evaluation = (evaluations * (config.eval_tokens or 0) * model.forward_flops_per_token(config.seq_len))
    flops = whole * own_steps / steps
    kind = "fork" if run.parent_id else "distil" if run.command == "distill" else "train"
    return _Cost(kind, steps, own_steps, flops, whole, evaluation,
                 (flops + evaluation) / throughput.rate(run.non_embedding_params, on_gpu),
                 throughput.startup_seconds, throughput.compile_seconds if config.compile else 0.0)


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
    return _Cost("prune", 0, 0, flops, flops, 0.0, flops / throughput.rate(teacher.non_embedding_params, on_gpu),
                 throughput.startup_seconds, 0.0)


def _simulate(planned: tuple[PlannedRun, ...], costs: dict[str, _Cost],
              placement: Placement) -> tuple[list[RunEstimate], float]:
    """The runner's loop in simulated time: ready runs start in the spec's order on the slot
    `choose_slot` gives; each spends its start-up (the slot's worker process for its first run, the
    compilation for every run that compiles), then its device work, which the runs on one GPU share
    equally (a CPU slot is a core of its own)."""
    now, done, warm = 0.0, set(), set()  # warm: slots whose worker process has started
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
                startup = cost.compile_seconds + (0.0 if slot in warm else cost.startup_seconds)
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
