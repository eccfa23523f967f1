"""Run a sweep: every planned run once, teachers before their students and WSD parents before their forks,
up to K at a time.

    DIR/spec.toml          the resolved spec (a later `sweep run` on DIR must resolve to the same)
    DIR/runs.sqlite        the run store (see store.py)
    DIR/configs/<run_id>.toml  each run's resolved config, launched as `train|distill --config` it
    DIR/runs/<run_id>/     each run's directory, as `train` / `distill` write it (a "pruned" run's: the
                           model `prune` writes, with prune.json, which its students start from)
    DIR/logs/<run_id>.log  each run's output
    DIR/logs/<run_id>.eval.log  with [eval]: the output of its `distillscale eval` (eval.json in its run dir)

Running again is always safe: finished runs are skipped (a run whose result.json exists is adopted,
never recomputed), interrupted ones resume from their checkpoint (the engine does that when given
the same config and run directory), and failed or blocked ones are tried again. A sweep whose finished
runs trained on data this version prepares otherwise (an earlier data format's split, a corpus changed
since: `check_runs_data`) is refused: new runs would be scored on another split than theirs.

With [eval], each completed teacher, baseline and student is then scored by `distillscale eval RUN_DIR
--merge` (the command's own code path) as a job of its own on a free worker slot, like a run, in the
tasks its eval.json has no standing scores of (sweeps/scoring.py: the [eval] or a task's data changed
since; a user's scores of other tasks are kept); one whose scoring failed is tried again by the next
`sweep run`. [eval] changes no run: it may be added to (or changed in) a sweep that already ran.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from rich.text import Text

from distillscale.checks import checked
from distillscale.console import styled, warn
from distillscale.data import prepare_data
from distillscale.data.repetition import epoch_tokens, repetition_warning
from distillscale.errors import ParameterError, UserError
from distillscale.io import atomic_write_text, check_output_dir, read_text_file
from distillscale.sweeps.executors import Executor, Job, LocalExecutor, SlurmExecutor
from distillscale.sweeps.placement import Placement, choose_slot, place_runs, visible_gpus
from distillscale.sweeps.progress import SweepProgress
from distillscale.sweeps.spec import PlannedRun, SweepSpec, load_sweep_spec
from distillscale.sweeps.store import RunStore, is_sweep_dir
from distillscale.settings import load_config, to_toml
from distillscale.training.config import STUDENT_INIT_REPLACES, DistillConfig, TrainConfig
from distillscale.evaluation.scores import EVAL_FILE, EvalRequest, record_mismatch
from distillscale.sweeps.scoring import EVAL_META, check_evaluation, eval_args, evaluated_ids
from distillscale.training.prune_config import PruneConfig
from distillscale.training.records import RunResult
from distillscale.training.run_dir import RunDirectory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ERROR_TAIL_LINES = 20  # lines of a failed run's output kept as its error


@dataclass(frozen=True)
class SweepLayout:
    """Paths inside a sweep directory."""

    root: Path

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.toml"

    @property
    def lock_path(self) -> Path:
        return self.root / "runner.lock"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def log_path(self, run_id: str) -> Path:
        return self.root / "logs" / f"{run_id}.log"

    def config_path(self, run_id: str) -> Path:
        return self.root / "configs" / f"{run_id}.toml"

    def eval_log_path(self, run_id: str) -> Path:
        return self.root / "logs" / f"{run_id}.eval.log"

    def spec_sections(self, fix: str = "restore it") -> dict | None:
        """The resolved spec `sweep run` wrote (spec.toml, as data), None where it wrote none yet; one
        that is no TOML is a one-line UserError ending in `fix`."""
        if not self.spec_path.exists():
            return None
        try:
            return tomllib.loads(read_text_file(self.spec_path, "the sweep's spec"))
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{self.spec_path} is not valid TOML ({exc}): {fix}") from None


def sweep_spec(source: str | Path) -> dict | None:
    """The spec `sweep run` wrote in the sweep directory `source` (as data), or None where `source` is no
    directory (a records file), holds none, or holds one that is no TOML: what a report reads of a sweep's
    design and recipe when it has them."""
    if not Path(source).is_dir():
        return None
    try:
        return SweepLayout(Path(source)).spec_sections()
    except UserError:
        return None


@dataclass
class Sweep:
    """A sweep spec bound to its directory and executor: `Sweep.open("spec.toml").run()` is what
    `distillscale sweep run spec.toml` does."""

    spec: SweepSpec
    directory: Path
    executor: Executor
    threads_per_run: int = 1
    placement: Placement | None = None  # the device of each worker slot (None: every run on the CPU)

    @classmethod
    @checked
    def open(cls, spec: str | Path, out: str | Path | None = None, *, executor: str = "local",
             workers: int | None = None, threads_per_run: int = 1, gpus: str | None = None,
             runs_per_gpu: int | None = None, slurm_partition: str | None = None,
             slurm_timeout_min: int = 24 * 60, slurm_gpus: int = 0,
             run_timeout: float | None = None) -> "Sweep":
        """Read the spec file and claim the sweep directory `out` (default: sweeps/<spec name>), one
        the runner created or a new one; `workers` runs at once, each in its slot's worker process
        (`executor="local"`, executors.py) or a Slurm job (`"slurm"`, through submitit).

        Locally, every visible GPU (or those of `gpus`: "0,1,3", "all", "none") runs `runs_per_gpu`
        runs at once (default 1), each launched with its own CUDA_VISIBLE_DEVICES (placement.py);
        without GPUs `workers` defaults to cores // threads_per_run. A Slurm job gets `slurm_gpus`
        GPUs from Slurm instead. `run_timeout`: seconds a local run may take before it is stopped
        (and recorded as failed, its checkpoint kept); Slurm jobs have `slurm_timeout_min`."""
        if executor not in ("local", "slurm"):
            raise ParameterError("executor", "unknown {} {executor!r}: use local or slurm", executor=executor)
        if threads_per_run < 1 or (workers is not None and workers < 1):
            name, value = ("threads_per_run", threads_per_run) if threads_per_run < 1 else ("workers", workers)
            raise ParameterError(name, "{} must be at least 1, got {value}", value=value)
        if run_timeout is not None and not 0 < run_timeout < math.inf:
            raise ParameterError("run_timeout", "{} must be a positive number of seconds, got {value}",
                                 value=run_timeout)
        if executor == "slurm" and run_timeout is not None:
            raise ParameterError("run_timeout", "{} limits local runs: give Slurm jobs their limit with "
                                 "--slurm-timeout-min")
        if executor == "slurm" and (gpus is not None or runs_per_gpu is not None):
            raise ParameterError("gpus" if gpus is not None else "runs_per_gpu",
                                 "{} places runs of the local executor: Slurm gives each job its GPUs, "
                                 "ask for them with --slurm-gpus")
        placement = None
        if executor == "local":
            placement = place_runs(visible_gpus() if gpus != "none" else [], gpus, runs_per_gpu, workers,
                                   cpu_workers=default_workers(threads_per_run))
        sweep_spec = load_sweep_spec(spec)
        if placement is not None:
            check_gpu_settings(sweep_spec, placement, gpus)
        directory = check_output_dir(Path(out) if out is not None else Path("sweeps") / sweep_spec.name,
                                     is_ours=is_sweep_dir, inputs=[Path(spec), _data_path(sweep_spec)],
                                     what="sweep directory")
        if placement is not None:
            runner: Executor = LocalExecutor(placement.workers, run_timeout=run_timeout)
        else:
            runner = SlurmExecutor(workers or default_workers(threads_per_run), directory / "slurm",
                                   partition=slurm_partition, timeout_min=slurm_timeout_min,
                                   cpus_per_task=threads_per_run, gpus_per_node=slurm_gpus)
        return cls(sweep_spec, directory, runner, threads_per_run, placement)

    def run(self, progress: bool = True) -> dict[str, int]:
        """Run every run that has not finished; returns the number of runs per status."""
        return run_sweep(self.spec, self.directory, self.executor, self.threads_per_run, progress,
                         self.placement)


def _data_path(spec: SweepSpec) -> Path | None:
    """The spec's corpus, an input of every run (None: the built-in corpus)."""
    path = spec.sections.get("data", {}).get("path")
    return Path(path) if path else None


def check_gpu_settings(spec: SweepSpec, placement: Placement, gpus: str | None = None) -> None:
    """Refuse, before anything runs, a spec whose runs ask for a GPU (device = cuda) or for settings
    made for one (bf16, compile) when the sweep's runs get no GPU: without this, every run would
    train on the CPU, slowly and silently. bf16 and compile do work on the CPU: `gpus="none"` says so
    on purpose and lets them run there; device = cuda never runs without a GPU."""
    if placement.gpus:
        return
    asked, cuda = spec.gpu_settings()
    chose_none = gpus is not None and gpus.strip().lower() == "none"
    why = "none were chosen" if chose_none else "no GPU is visible here (torch.cuda.device_count() is 0)"
    if cuda:
        raise ParameterError("gpus", f"{cuda} of the spec's {len(spec.runs)} runs ask for device = cuda, "
                                     f"and {why}: run the sweep on a machine with a GPU, or set device "
                                     f"= \"auto\" in the spec")
    if asked and not chose_none:
        settings = " and ".join(f"{key} = true" for key in asked)
        raise ParameterError("gpus", f"the spec asks for {settings}, settings made for GPUs, and {why}: run "
                                     f"it on a machine with a GPU, or pass {{}} none to run it on the CPU "
                                     f"anyway")


def default_workers(threads_per_run: int) -> int:
    """As many runs as the cores this process may use allow, at `threads_per_run` threads each."""
    return max(1, len(os.sched_getaffinity(0)) // threads_per_run)


def run_sweep(spec: SweepSpec, sweep_dir: str | Path, executor: Executor, threads_per_run: int = 1,
              progress: bool = True, placement: Placement | None = None) -> dict[str, int]:
    """Run every run of `spec` that has not finished; returns the number of runs per status.
    `placement` gives each of the executor's worker slots its device (default: the CPU). The corpus
    is checked once first: a missing or empty one is one error, not a failure per run."""
    from distillscale.data.sources import check_corpus

    data = spec.sections.get("data", {})
    check_corpus(data.get("path"), data.get("text_field") or "text")
    request = check_evaluation(spec)
    placement = placement or Placement(slots=(None,) * executor.workers, gpus=(),
                                       scheduler=getattr(executor, "places_devices", False))
    if placement.workers != executor.workers:
        raise ValueError(f"{placement.workers} placement slots for {executor.workers} workers")
    layout = SweepLayout(Path(sweep_dir).absolute())  # runs may start in another directory (Slurm)
    layout.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(layout.lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"another `distillscale sweep run` is working on {layout.root}: wait for it "
                        f"to end, or stop it first") from None
    try:
        _claim_directory(spec, layout)
        with RunStore(layout.root, create=True) as store:
            check_runs_data(layout, store.records())  # before any work: the corpus is not even prepared
            repeats = repetition_check(spec, progress)
            if repeats:
                warn(repeats)
            store.add((run.run_id, run.kind, run.to_config(), run.depends_on) for run in spec.runs)
            adopted = _adopt_running_jobs(store, executor)
            store.reset_unfinished(keep=adopted)
            store.set_meta("workers", executor.workers)
            store.set_meta("gpus", list(placement.gpus))
            if request is not None:
                store.set_meta(EVAL_META, request.to_json())
            scheduler = _Scheduler(spec, layout, store, executor, threads_per_run, progress, placement, adopted,
                                   request)
            scheduler.run()
            counts = store.counts()
            if request is not None:  # runs scored as [eval] asks (eval.json), and scorings that failed this time
                counts["evaluated"] = sum(1 for run_id in evaluated_ids(spec)
                                          if (layout.run_dir(run_id) / EVAL_FILE).is_file()
                                          and record_mismatch(layout.run_dir(run_id) / EVAL_FILE, request) is None)
                counts["eval_failed"] = len(scheduler.eval_failed)
            return counts
    finally:
        lock.release()


def check_runs_data(layout: SweepLayout, records) -> None:
    """Refuse, in one line naming them, to continue a sweep whose finished runs trained on other data than
    their settings prepare now (`runs_on_other_data`): new runs would train and be scored on the new
    split, whose validation text the old runs trained on; their losses would mix two splits."""
    other, _ = runs_on_other_data(layout, records)
    if other:
        raise UserError(f"{len(other)} finished runs of the sweep in {layout.root} trained on other data than their "
                        f"settings prepare now ({next(iter(other.values()))}): {some_of(other)}; new runs would be "
                        f"scored on another split, whose validation text those runs trained on: rerun the sweep in "
                        f"a new directory (--out NEW_DIR)")


def runs_on_other_data(layout: SweepLayout, records) -> tuple[dict[str, str], int]:
    """(run id -> why, for each finished run of `records` whose recorded data fingerprint is not what its
    settings prepare now: a format that split the corpus otherwise, distillscale.data/1 -> /2 re-split
    every corpus, or a corpus changed since; how many finished runs were checked)."""
    from distillscale.data.prepare import data_identity

    identities: dict[str, object] = {}
    other: dict[str, str] = {}
    checked = 0
    for record in records:
        if record.kind == "pruned" or record.status not in ("completed", "diverged"):
            continue
        recorded = RunDirectory(layout.run_dir(record.id)).recorded_data()
        if recorded is None:
            continue
        config, fingerprint = recorded
        key = config.model_dump_json()
        if key not in identities:
            try:
                identities[key] = data_identity(config)
            except UserError:  # a tokenizer or corpus gone: the run itself would say so
                identities[key] = None
        identity = identities[key]
        if identity is None:
            continue
        checked += 1
        if identity.fingerprint != fingerprint:
            other[record.id] = identity.why_other(fingerprint)
    return other, checked


def some_of(ids) -> str:
    """The first few of `ids`, and how many more."""
    ids = list(ids)
    return ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")


JOB_META = "job/"  # + run id: the cluster job that runs its latest attempt (an executor with job ids)


def _adopt_running_jobs(store: RunStore, executor: Executor) -> dict[str, Future[int]]:
    """The runs an earlier runner left running whose cluster jobs still run (Slurm jobs outlive their
    runner): the new runner waits on those jobs instead of submitting the runs again, which would put
    two jobs on one run directory. At most one per worker; none for an executor without job ids."""
    adopt = getattr(executor, "adopt", None)
    adopted: dict[str, Future[int]] = {}
    if adopt is None:
        return adopted
    for record in store.records():
        job_id = store.meta(JOB_META + record.id) if record.status == "running" else None
        if job_id is not None and len(adopted) < executor.workers:
            future = adopt(job_id)
            if future is not None:
                adopted[record.id] = future
    return adopted


def repetition_check(spec: SweepSpec, progress: bool = False) -> str | None:
    """One line when some runs of `spec` will repeat their data (more than one epoch of their split),
    naming how many, the worst and the corpus size; None when every run fits in its data. Prepares
    the corpus (once: the runs reuse it) to count its tokens."""
    worst: tuple[float, int, int, str] | None = None  # epochs, tokens, unique tokens, split
    repeating, data = 0, None
    for run in spec.runs:
        if run.kind == "pruned":  # reads calibration windows, not a training budget
            continue
        shared = {key: value for key, value in run.settings.items() if key in TrainConfig.model_fields}
        config = TrainConfig.model_validate({**shared, "out": "."})  # a student's steps are its baseline's
        if data is None:
            data = prepare_data(config.data_config(), progress=progress)
        if config.unique_tokens is not None:  # repeats a fixed subset on purpose: the run says so itself
            continue
        tokens = config.steps_for(config.token_budget(run.non_embedding_params)) * config.tokens_per_step
        unique = epoch_tokens(data.manifest["splits"][config.split]["tokens"], config.seq_len)  # as the sampler
        if tokens > unique:
            repeating += 1
            if worst is None or tokens / unique > worst[0]:
                worst = (tokens / unique, tokens, unique, config.split)
    if worst is None:
        return None
    runs = f"{repeating} of {len(spec.runs)} runs repeat their data; the longest"
    return repetition_warning(worst[1], worst[2], worst[3], data.manifest["source"]["description"], runs=runs)


def _claim_directory(spec: SweepSpec, layout: SweepLayout) -> None:
    """Write spec.toml, or check that the sweep already in the directory is this one."""
    text = spec.to_toml()
    earlier = layout.spec_sections(fix="restore it, or choose another --out")
    if earlier is not None:
        # Compared as data, so a different TOML writer's layout does not count as a change.
        now = tomllib.loads(text)
        if _without_eval(earlier) != _without_eval(now):
            raise UserError(f"{layout.root} holds a sweep of a different spec ({layout.spec_path}): "
                            f"give the same spec to continue it, or choose another --out")
        if earlier != now:  # only [eval] differs: it changes no run, the sweep goes on under the new one
            atomic_write_text(layout.spec_path, text)
        return
    if (layout.root / "runs.sqlite").exists():
        raise UserError(f"{layout.root} holds a run store but no spec.toml: choose another --out")
    atomic_write_text(layout.spec_path, text)


def _without_eval(sections: dict) -> dict:
    return {key: value for key, value in sections.items() if key != "eval"}


class _Scheduler:
    """The loop: block runs whose teacher did not complete, start ready ones while workers are free,
    record each run's end as it comes; show progress all along."""

    def __init__(self, spec: SweepSpec, layout: SweepLayout, store: RunStore, executor: Executor,
                 threads_per_run: int, progress: bool, placement: Placement,
                 adopted: dict[str, Future[int]] | None = None, request: EvalRequest | None = None):
        self.spec, self.layout, self.store, self.executor = spec, layout, store, executor
        if request is None and spec.evaluation is not None:
            request = EvalRequest(tasks=tuple(spec.evaluation.tasks), limit=spec.evaluation.limit)
        self.request = request  # what [eval] asks of each run's eval.json
        self.scored: set[str] = set()  # runs whose eval.json was found to match `request`
        self.thread_env = {name: str(threads_per_run) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        self.show_progress = progress
        self.placement = placement
        self.free_slots = list(range(placement.workers))  # worker slots not running a run now
        self.in_flight: dict[Future[int], PlannedRun] = {}
        self.slot_of: dict[Future[int], int] = {}
        self.started: dict[Future[int], float] = {}  # time.monotonic() at each launch
        self.evaluating: set[Future[int]] = set()  # the futures in flight that are [eval] jobs
        self.eval_failed: list[str] = []  # runs whose scoring failed in this session (tried again next time)
        self.evaluated = set(evaluated_ids(spec))  # the runs [eval] scores
        by_id = {run.run_id: run for run in spec.runs}
        for run_id, future in (adopted or {}).items():  # an earlier runner's jobs, still running
            self.in_flight[future], self.slot_of[future] = by_id[run_id], self._free_slot()
            self.started[future] = time.monotonic()

    def run(self) -> None:
        self._adopt_finished()
        with SweepProgress(len(self.spec.runs), enabled=self.show_progress) as bar:
            try:
                while True:
                    statuses = self._statuses()
                    self._block_orphans(statuses, bar)
                    self._start_ready(statuses)
                    self._start_evals(self._statuses())
                    bar.update(self._statuses(), {run.run_id: self.layout.run_dir(run.run_id)
                                                  for future, run in self.in_flight.items()
                                                  if future not in self.evaluating})
                    if not self.in_flight:
                        break
                    done, _ = wait(self.in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in done:
                        run = self.in_flight.pop(future)
                        self.free_slots.append(self.slot_of.pop(future))
                        seconds = time.monotonic() - self.started.pop(future)
                        bar.log(self._record_eval(run, future, seconds) if future in self.evaluating
                                else self._record_end(run, future, seconds))
                        self.evaluating.discard(future)
            finally:
                self.executor.shutdown()

    def _statuses(self) -> dict[str, str]:
        return {record.id: record.status for record in self.store.records()}

    def _adopt_finished(self) -> None:
        """A run whose result.json exists finished, even if the runner died before recording it."""
        for run in self.spec.runs:
            result = _read_outcome(run, self.layout.run_dir(run.run_id))
            if result is not None and self.store.get(run.run_id).status == "pending":
                self.store.finish(run.run_id, result.status, result=result.to_json(), error=_divergence(result))

    def _block_orphans(self, statuses: dict[str, str], bar: SweepProgress) -> None:
        for run in self.spec.runs:
            if statuses[run.run_id] != "pending":
                continue
            for needed in run.depends_on:
                if statuses[needed] in ("diverged", "failed", "blocked"):
                    role = ("teacher" if needed == run.teacher_id else "pruned start" if needed == run.init_id
                            else "parent")
                    reason = f"{role} {needed} {statuses[needed]}"
                    self.store.block(run.run_id, reason)
                    statuses[run.run_id] = "blocked"
                    bar.log(styled(("blocked", "yellow"), f" {run.run_id}: {reason}"))
                    break

    def _start_ready(self, statuses: dict[str, str]) -> None:
        for run in self.spec.runs:
            if len(self.in_flight) >= self.executor.workers:
                return
            ready = statuses[run.run_id] == "pending" and all(
                statuses[needed] == "completed" for needed in run.depends_on)
            if ready and self.store.claim(run.run_id):
                slot = self._free_slot()
                self.store.set_device(run.run_id, self.placement.slots[slot] or "cpu")
                job = self._job(run, slot)
                future = self.executor.submit(job)
                job_id = getattr(self.executor, "job_ids", {}).get(job.log_path)
                if job_id is not None:  # a cluster job outlives this runner: the next one may adopt it
                    self.store.set_meta(JOB_META + run.run_id, job_id)
                self.in_flight[future], self.slot_of[future] = run, slot
                self.started[future] = time.monotonic()

    def _start_evals(self, statuses: dict[str, str]) -> None:
        """[eval]: score each completed run whose eval.json does not match [eval] (none, or scores of
        another [eval] or of data changed since) on a free slot, by `distillscale eval`."""
        busy = {run.run_id for future, run in self.in_flight.items() if future in self.evaluating}
        for run in self.spec.runs:
            if len(self.in_flight) >= self.executor.workers:
                return
            run_dir = self.layout.run_dir(run.run_id)
            if (run.run_id not in self.evaluated or statuses[run.run_id] != "completed" or run.run_id in busy
                    or run.run_id in self.eval_failed or self._scored(run.run_id)):
                continue
            slot = self._free_slot()
            job = Job(args=eval_args(self.spec, run_dir, self.request), log_path=self.layout.eval_log_path(run.run_id),
                      env=self.thread_env | self.placement.env(slot), slot=slot)
            future = self.executor.submit(job)
            self.store.set_scoring(run.run_id, True)  # `sweep status`: being scored, not failed
            self.in_flight[future], self.slot_of[future] = run, slot
            self.started[future] = time.monotonic()
            self.evaluating.add(future)

    def _scored(self, run_id: str) -> bool:
        """Whether the run's eval.json matches [eval] (`EvalRequest.mismatch`); remembered once it does."""
        if run_id not in self.scored:
            path = self.layout.run_dir(run_id) / EVAL_FILE
            if path.is_file() and record_mismatch(path, self.request) is None:
                self.scored.add(run_id)
        return run_id in self.scored

    def _record_eval(self, run: PlannedRun, future: Future[int], seconds: float) -> Text:
        """The line for an [eval] job's end: the run's scores, or where its failure is told."""
        from distillscale.evaluation.scores import read_eval

        path = self.layout.run_dir(run.run_id) / EVAL_FILE
        self.store.set_scoring(run.run_id, False)
        try:
            future.result()
            record = read_eval(path) if path.is_file() else None
        except Exception:  # the executor could not run it, or it left no readable eval.json
            record = None
        if record is not None and self.request.mismatch(record) is not None:
            record = None  # a rescoring that failed leaves the eval.json of another [eval]
        if record is None:
            self.eval_failed.append(run.run_id)
            log = self.layout.eval_log_path(run.run_id)
            return styled(("eval failed", "red"), f" {run.run_id} (see {log}): {_tail(log).splitlines()[-1]}")
        scores = ", ".join(f"{score.task} {score.metric} {score.value:.4f}" for score in record.scores[:4])
        return styled(("evaluated", "green"), f" {run.run_id}: {scores} in {seconds:.1f} s")

    def _free_slot(self) -> int:
        """A free worker slot on the device running the fewest runs now (the runs spread over the GPUs)."""
        slot = choose_slot(self.placement, self.free_slots, list(self.slot_of.values()))
        self.free_slots.remove(slot)
        return slot

    def _job(self, run: PlannedRun, slot: int) -> Job:
        """The run's resolved config, written to its file, and the command that runs it."""
        links = {"out": self.layout.run_dir(run.run_id)}
        if run.teacher_id:
            links["teacher"] = self.layout.run_dir(run.teacher_id)
        if run.parent_id:
            links["fork_from"] = self.layout.run_dir(run.parent_id)
        settings = run.settings
        if run.init_id:  # the start's model has its own shape, the size's (spec.py)
            settings = {key: value for key, value in settings.items() if key not in STUDENT_INIT_REPLACES}
            links["student_init"] = self.layout.run_dir(run.init_id)
        config_class = {"distill": DistillConfig, "prune": PruneConfig}.get(run.command, TrainConfig)
        config = load_config(config_class, None, settings | links)
        path = self.layout.config_path(run.run_id)
        path.parent.mkdir(exist_ok=True)
        atomic_write_text(path, to_toml(config))
        teacher = (str(links["teacher"]),) if run.command == "prune" else ()  # prune's positional argument
        return Job(args=(run.command, *teacher, "--config", str(path)), log_path=self.layout.log_path(run.run_id),
                   env=self.thread_env | self.placement.env(slot), slot=slot)

    def _record_end(self, run: PlannedRun, future: Future[int], seconds: float) -> Text:
        """Store how the run ended; returns a line for the progress log, with the `seconds` its
        process took (start-up included: result.json's wall_seconds counts the training alone, and
        said "in 0 s" of a tiny run the user waited seconds for)."""
        try:
            exit_status = future.result()
        except Exception as exc:  # the executor could not run it at all (e.g. a Slurm job failure)
            exit_status, launch_error = None, f"{type(exc).__name__}: {exc}"
        else:
            launch_error = None
        result = _read_outcome(run, self.layout.run_dir(run.run_id))
        if result is not None:
            self.store.finish(run.run_id, result.status, result=result.to_json(), error=_divergence(result))
            if result.completed:
                took = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
                what = ("pruned" if isinstance(result, PrunedModel)
                        else f"{result.val_loss:.4f} nats/token")
                return styled(("completed", "green"), f" {run.run_id}: {what} in {took}")
            return styled(("diverged", "red"), f" {run.run_id}: {_divergence(result)}")
        error = launch_error or f"exit status {exit_status}: {_tail(self.layout.log_path(run.run_id))}"
        self.store.finish(run.run_id, "failed", error=error)
        return styled(("failed", "red"), f" {run.run_id} (see {self.layout.log_path(run.run_id)}): "
                      f"{error.splitlines()[-1]}")


@dataclass(frozen=True)
class PrunedModel:
    """A "pruned" run's outcome: its directory's prune.json (`training.pruning.PruneRecord`), written
    last, when the pruned model is complete. The store keeps it with its status, so that the sweep's
    compute (sweeps/compute.py) counts the importance pass's FLOPs (prune.json's `flops`)."""

    record: dict
    status: str = "completed"
    completed: bool = True

    def to_json(self) -> dict:
        return {**self.record, "status": self.status}


def _read_outcome(run: PlannedRun, run_dir: Path) -> RunResult | PrunedModel | None:
    """How the run ended, from its directory; None while it has not."""
    if run.kind != "pruned":
        return _read_result(run_dir)
    path = run_dir / "prune.json"  # training.pruning.RECORD_FILE, renamed into place with the model
    if not path.is_file():
        return None
    try:
        return PrunedModel(json.loads(read_text_file(path, "prune.json")))
    except (UserError, ValueError):
        return None


def _read_result(run_dir: Path) -> RunResult | None:
    """The run's result, or None while it has none (or only one that cannot be read: it failed)."""
    try:
        return RunDirectory(run_dir).read_result()
    except UserError:
        return None


def _divergence(result: RunResult) -> str | None:
    if result.completed:
        return None
    return (f"diverged at step {result.diverged_at_step} (loss {result.diverged_loss}, "
            f"gradient norm {result.diverged_grad_norm})")


def _tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join(lines[-ERROR_TAIL_LINES:]) or "(no output)"
