"""`distillscale sweep run | plan | status | export`: run a calibration sweep (or plan it without running it),
watch it, export its runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, ClassVar

import typer
from pydantic import BeforeValidator

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import console, print_json, styled, warn
from distillscale.errors import UserError
from distillscale.io import check_output_file
from distillscale.planning.throughput import gpu_price, mfu_fraction
from distillscale.sweeps.store import STORE_NAME
from distillscale.units import format_quantity

sweep_app = typer.Typer(help="Run a sweep of training and distillation runs, and export their results.",
                        no_args_is_help=True)


# Section names are written \\[data] in help texts: rich reads a bare [data] as markup and drops it.
class SweepRunSettings(CommandSettings):
    """`distillscale sweep run`."""

    command_path: ClassVar[str] = "sweep run"

    spec: Path = argument(help="sweep spec (TOML): \\[data], \\[model], \\[teachers], \\[students], \\[distill]")
    out: Path | None = option(None, help="sweep directory (default: sweeps/<spec name>)")
    workers: int | None = option(None, min=1, help="runs at once (default: one per GPU x --runs-per-gpu, or "
                                                   "without GPUs cores // --threads-per-run)")
    gpus: str | None = option(None, help="GPUs the local runs use: all (default), none, or ids such as 0,1,3; "
                                         "each run gets one, as CUDA_VISIBLE_DEVICES")
    runs_per_gpu: int | None = option(None, help="runs sharing each GPU at once (default 1; small models "
                                                 "cannot fill a large GPU alone)")
    threads_per_run: int = option(1, min=1, help="CPU threads of each run (OMP_NUM_THREADS)")
    executor: str = option("local", help="local (subprocesses) or slurm (submitit)")
    slurm_partition: str | None = option(None, help="Slurm partition")
    slurm_timeout_min: int = option(24 * 60, min=1, help="time limit of each Slurm job, minutes")
    slurm_gpus: int = option(0, min=0, help="GPUs per Slurm job")
    run_timeout: float | None = option(None, help="seconds a local run may take: then it is stopped and counted "
                                                  "failed, its last checkpoint kept for the next `sweep run`")
    as_json: bool = option(False, flag="--json", help="print the number of runs per status as JSON")


RUN_HELP = """Run every run of a sweep spec: teachers first, then the students distilled from them and their
    supervised baselines, up to --workers at a time, each in its own process.

    Spec sections: \\[data] as `train` (path, vocab_size, max_bytes, val_fraction, tokenizer,
    text_field, seq_len); \\[model] as `train` (aspect_ratio, head_dim, lr, batch_size, warmup_steps,
    ...); \\[teachers] and \\[students]: n_layers = [...] with tokens_per_param (fixed M = D/N) or
    budgets (IsoFLOP profiles, D = C / 6N); \\[distill]: kd, temperature, kd_weight, top_k,
    on_policy_fraction (and on_policy_temperature, on_policy_start, ...), supervised_baselines;
    \\[repetition] (optional): epochs = [1, 2, 4, 8, 16], the students'
    longest budget again on fixed subsets of D / epochs unique tokens; \\[tune] (optional): lr = [...],
    batch_size = [...], an lr x batch grid of the teachers (ladder = "students": of the students);
    \\[eval] (optional): tasks = [...], limit, batch_size, include_path: each finished run scored by
    `distillscale eval` after it trains (the eval extra), its scores in `sweep export` and `report`.
    Running again skips finished runs, resumes interrupted ones from their
    checkpoints and retries failed ones. Exit status 1 when a run failed, diverged or was blocked,
    or could not be scored ([eval]).
    """


@sweep_app.command("run", help=RUN_HELP)
@command(SweepRunSettings)
def run_command(s: SweepRunSettings) -> int:
    """`distillscale sweep run` (its help: RUN_HELP)."""
    from distillscale.sweeps.runner import Sweep

    sweep = Sweep.open(s.spec, s.out, **s.model_dump(exclude={"spec", "out", "as_json"}))
    for note in sweep.spec.notes:
        warn(note)
    counts = sweep.run(progress=not s.as_json) if s.as_json else _run_printing(sweep, s.executor)
    if s.as_json:
        print_json(counts)
    return _exit_status(sweep, counts)


def _run_printing(sweep, executor: str) -> dict:
    """Run the sweep, saying where and how, then how many runs ended how."""
    where = f", {sweep.placement.describe()}" if sweep.placement is not None else ""
    console.print(styled("sweep ", (sweep.spec.name, "bold"), f": {len(sweep.spec.runs)} runs in {sweep.directory}, "
                         f"{sweep.executor.workers} at a time ({executor}{where})"), highlight=False)
    counts = sweep.run(progress=True)
    console.print(", ".join(f"{count} {status}" for status, count in counts.items() if count), highlight=False)
    return counts


def _exit_status(sweep, counts: dict) -> int:
    """1 (and a warning saying where to look) when a run did not complete, else 0."""
    unfinished = counts["failed"] + counts["diverged"] + counts["blocked"]
    if unfinished:
        warn(f"{unfinished} of {len(sweep.spec.runs)} runs did not complete: see `distillscale sweep status "
             f"{sweep.directory}` and the logs in {sweep.directory / 'logs'}; run the same command again to "
             f"retry failed runs")
        return 1
    if counts.get("eval_failed"):
        warn(f"{counts['eval_failed']} runs could not be scored ([eval]): see their logs/<run_id>.eval.log in "
             f"{sweep.directory}; run the same command again to score them")
        return 1
    return 0


class SweepPlanSettings(CommandSettings):
    """`distillscale sweep plan`."""

    command_path: ClassVar[str] = "sweep plan"

    spec: Path = argument(help="sweep spec (TOML), as `sweep run` takes it")
    gpus: str | None = option(None, help="plan for N GPUs, or none for the CPU (default: the GPUs visible here; "
                                         "one when there are none and the spec asks for bf16, compile or "
                                         "device = cuda)")
    runs_per_gpu: int | None = option(None, help="runs sharing each GPU at once, as `sweep run` takes it (default 1)")
    workers: int | None = option(None, help="runs at once, as `sweep run` takes it")
    flops_per_second: float | None = option(None, help="achieved FLOP/s of one run alone on its device "
                                                       "(default: the GPU's measured MFU at the run's size, "
                                                       "printed with the plan)")
    gpu: str | None = option(None, help="the GPU the sweep is planned on: h100 (the default), h200, a100, l40s, b200, "
                                        "or a device of --throughput-table (its measured MFU by model size; a table "
                                        "of one device: that one)")
    mfu: Annotated[float | None, BeforeValidator(mfu_fraction)] = option(
        None, help="the MFU every run achieves, a fraction of the GPU's dense bf16 peak (default: the throughput "
                   "table's at each run's size)")
    price_per_gpu_hour: Annotated[float | None, BeforeValidator(gpu_price)] = option(
        None, help="the price of one GPU-hour: the sweep's cost (reserved GPU-hours x price)")
    throughput_table: Path | None = option(None, help="a throughput table measured on your own device "
                                                      "(`python bench/gpu/gpu_step.py --table FILE`; default: the "
                                                      "one shipped)")
    startup_seconds: float | None = option(None, help="seconds each run's process takes to start (default: 5, "
                                                      "measured on a 2-core CPU)")
    compile_seconds: float | None = option(None, help="seconds of CUDA start and torch.compile per compiled run "
                                                      "(default: 20, assumed)")
    as_json: bool = option(False, flag="--json", help="print the plan as JSON")


@sweep_app.command("plan")
@command(SweepPlanSettings)
def plan_command(s: SweepPlanSettings) -> int:
    """Dry run: print every run the spec resolves to (the runs `sweep run` launches, in its order) with
    its parameters, tokens, tokens per parameter, steps, FLOPs (a WSD fork: its cooldown only) and
    estimated device seconds, then the total wall time on the GPUs given; nothing is trained. The
    throughput is an assumption, stated with the plan; `--flops-per-second` sets it."""
    from distillscale.sweeps.dry_run import Throughput, dry_run
    from distillscale.sweeps.spec import load_sweep_spec

    given = s.model_dump(include={"flops_per_second", "startup_seconds", "compile_seconds", "gpu", "mfu",
                                  "price_per_gpu_hour"}, exclude_none=True)
    if s.throughput_table is not None:
        given["throughput_table"] = str(s.throughput_table)
    plan = dry_run(load_sweep_spec(s.spec), gpus=_gpu_count(s.gpus), runs_per_gpu=s.runs_per_gpu, workers=s.workers,
                   throughput=Throughput(**given))
    if s.as_json:
        print_json(plan.to_json())
    else:
        _print_plan(plan)
    return 0


def _gpu_count(value: str | None) -> int | None:
    """`sweep plan --gpus`: a number of GPUs, none (0, the CPU), or None (those visible here)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == "none":
        return 0
    if not text.isdigit():
        raise UserError(f"--gpus {value!r} is not a number of GPUs: give e.g. --gpus 1, --gpus 8 or --gpus none")
    return int(text)


def _print_plan(plan) -> None:
    from distillscale.console import Table

    unit = "GPU s" if plan.on_gpu else "CPU s"
    table = Table("run", "kind", "N", "D", "D/N", "steps", "FLOPs", unit, "start", box=None, pad_edge=False,
                  header_style="bold underline", caption="N non-embedding parameters, D tokens; a fork's steps "
                                                         "are its cooldown's / the run's")
    for column in table.columns:
        column.no_wrap = True
    for run in plan.runs:
        steps = f"{run.own_steps}/{run.steps}" if run.own_steps != run.steps else str(run.steps)
        table.add_row(run.run_id, run.kind, format_quantity(run.non_embedding_params), format_quantity(run.tokens),
                      f"{run.tokens_per_param:.3g}", steps, f"{run.flops:.2g}", f"{run.device_seconds:.1f}",
                      _short_duration(run.start_seconds))
    console.print(table)
    counts = plan.counts()
    where = (f"{len(plan.placement.gpus)} GPU{'s' if len(plan.placement.gpus) > 1 else ''}, {plan.runs_per_gpu} "
             f"run{'s' if plan.runs_per_gpu > 1 else ''} per GPU" if plan.on_gpu
             else f"the CPU, {plan.placement.workers} at a time")
    prunes = f", {counts['prune']} prune" if counts.get("prune") else ""
    prunes += f"; {counts['eval']} scored after training ([eval])" if "eval" in counts else ""
    console.print(f"{len(plan.runs)} runs ({counts['train']} train, {counts['distil']} distil, {counts['fork']} "
                  f"fork{prunes}); {plan.flops:.3g} FLOPs "
                  f"({plan.separate_flops:.3g} as separate runs)"
                  + (f", evaluations {plan.evaluation_flops:.2g}" if plan.evaluation_flops else ""), highlight=False)
    console.print(f"{unit[:3]} time {_short_duration(plan.device_seconds)} ({plan.device_seconds:.0f} "
                  f"{unit}), start-up {_short_duration(plan.startup_seconds)} in all; wall time on {where}: "
                  f"{_short_duration(plan.wall_seconds)}", highlight=False)
    if plan.gpu_time() is not None:
        console.print(plan.gpu_time().describe(), highlight=False)
    if plan.describe_grid():
        console.print(plan.describe_grid(), highlight=False)
    for note in plan.notes():
        console.print(f"note: {note}", highlight=False)


SWEEP_DIR_HELP = "sweep directory (the --out of `sweep run`)"


class SweepStatusSettings(CommandSettings):
    """`distillscale sweep status`."""

    command_path: ClassVar[str] = "sweep status"

    sweep_dir: Path = argument(help=SWEEP_DIR_HELP)
    as_json: bool = option(False, flag="--json", help="print JSON")


@sweep_app.command("status")
@command(SweepStatusSettings)
def status_command(s: SweepStatusSettings) -> int:
    """Show a sweep's progress: runs done, running, failed, remaining, an ETA, and one row per run;
    with \\[eval], which runs are scored, wait for scoring, or failed to score (`sweep run` retries them)."""
    from distillscale.sweeps.status import sweep_status

    status = sweep_status(s.sweep_dir)
    if s.as_json:
        print_json(status)
    else:
        _print_status(status, s.sweep_dir)
    return 0


class SweepExportSettings(CommandSettings):
    """`distillscale sweep export`."""

    command_path: ClassVar[str] = "sweep export"

    sweep_dir: Path = argument(help=SWEEP_DIR_HELP)
    fmt: str = option("csv", flag="--format", help="csv or jsonl")
    out: Path | None = option(None, help="file to write (default: standard output)")
    overwrite: bool = option(False, help="replace the --out file if it is an earlier export (never another file)")


@sweep_app.command("export")
@command(SweepExportSettings)
def export_command(s: SweepExportSettings) -> int:
    """Write one record per finished run (teachers, baselines, students) for `distillscale fit`:
    columns run_id, kind, status, n_layers, non_embedding_params, tokens, tokens_per_param, flops,
    val_loss (nats/token), teacher_id, teacher_params, teacher_tokens, teacher_loss, budget, run_dir,
    wall_seconds."""
    from distillscale.sweeps.export import export_records, format_records, is_export, write_records

    if s.fmt not in ("csv", "jsonl"):
        raise UserError(f"unknown --format {s.fmt!r}: use csv or jsonl")
    if s.out is not None:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=is_export, inputs=[s.sweep_dir / STORE_NAME],
                          what="sweep export distillscale wrote")
    records = export_records(s.sweep_dir)
    if s.out is None:
        typer.echo(format_records(records, s.fmt), nl=False)
    else:
        write_records(records, s.out, s.fmt)
        console.print(f"wrote {len(records)} runs to {s.out}", highlight=False)
    return 0


def _print_status(status: dict, sweep_dir: Path) -> None:
    from rich.text import Text

    from distillscale.console import Table

    counts = status["counts"]
    eta = status["eta_seconds"]
    console.print(
        styled(f"{status['total']} runs: ", (f"{counts['completed']} done", "green"), f", {counts['running']} running, "
               f"{counts['interrupted']} interrupted, ", (f"{counts['failed']} failed", "red"),
               f", {counts['diverged']} diverged, {counts['blocked']} blocked, {counts['pending']} remaining; ETA "
               + ("unknown (no run finished yet)" if eta is None else _duration(eta))
               + f" at {status['workers']} workers"), highlight=False)
    # Readable at 80 columns: no vertical rules, short cells whole, and each failure's note on its own
    # line below the table instead of a column squeezed to a few letters.
    retried = any(run["attempts"] > 1 for run in status["runs"])
    # The device and epochs columns only where some run has them (a sweep placed on GPUs; runs that
    # record how often they saw their data).
    devices = any(run.get("device") for run in status["runs"])
    repeats = any(run.get("epochs") is not None for run in status["runs"])
    scoring = "scoring" in status  # the sweep has [eval]
    headers = ["run", "kind", "status", *(["device"] if devices else []), "params", "tokens",
               *(["epochs"] if repeats else []), "val loss", *(["scored"] if scoring else []),
               *(["tries"] if retried else []), "wall"]
    table = Table(*headers, box=None, pad_edge=False, header_style="bold underline",
                  caption="val loss in nats/token" if status["runs"] else None)
    for column in table.columns[1:]:
        column.no_wrap = True
    styles = {"completed": "green", "failed": "red", "diverged": "red", "blocked": "yellow",
              "running": "cyan", "interrupted": "yellow"}
    notes = []
    for run in status["runs"]:
        loss = "" if run["val_loss"] is None else f"{run['val_loss']:.4f}"
        wall = "" if run["wall_seconds"] is None else _short_duration(run["wall_seconds"])
        note = (run["error"] or "").strip().splitlines()
        if note:
            notes.append(styled((f"{run['status']} ", styles.get(run["status"], "")), f"{run['run_id']}: {note[-1]}"))
        epochs = run.get("epochs")
        epochs_cell = Text("" if epochs is None else f"{epochs:.2f}", style="yellow" if (epochs or 0) > 1 else "")
        table.add_row(run["run_id"], run["kind"], Text(run["status"], style=styles.get(run["status"], "")),
                      *([run.get("device") or ""] if devices else []),
                      format_quantity(run["non_embedding_params"]), format_quantity(run["tokens"]),
                      *([epochs_cell] if repeats else []), loss,
                      *([_scored_cell(run["scoring"])] if scoring else []),
                      *([str(run["attempts"])] if retried else []), wall)
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)
    if scoring:
        console.print(_scoring_line(status, sweep_dir), highlight=False)
    compute = status["compute"]
    if compute["forks"]:
        console.print(f"compute: {compute['flops_spent']:.3g} FLOPs spent; as separate runs "
                      f"{compute['flops_separate']:.3g} ({compute['saved_fraction']:.0%} saved by "
                      f"{compute['forks']} WSD forks)", highlight=False)
    else:
        console.print(f"compute: {compute['flops_spent']:.3g} FLOPs spent", highlight=False)


def _scored_cell(state: str | None):
    """A run's cell of the "scored" column: yes, scoring (now), stale (scored under another [eval]),
    waiting, failed, or empty (not completed, or a kind [eval] does not score)."""
    from rich.text import Text

    text, style = {"scored": ("yes", "green"), "scoring": ("scoring", "cyan"), "stale": ("stale", "yellow"),
                   "pending": ("waiting", ""), "failed": ("failed", "red")}.get(state, ("", ""))
    return Text(text, style=style)


def _scoring_line(status: dict, sweep_dir: Path):
    """[eval]'s summary: runs scored, being scored, scored under another [eval] (stale), waiting, and
    failed (where to read why; the next run retries)."""
    counts = status["scoring"]
    failed = [run["run_id"] for run in status["runs"] if run["scoring"] == "failed"]
    stale = counts.get("stale", 0)
    parts = [(f"{counts['scored']} scored", "green"), *([f", {counts['scoring']} being scored"]
                                                         if counts["scoring"] else []),
             *([(f", {stale} stale", "yellow"), " (scored under another [eval]: `sweep run` scores them again)"]
               if stale else []),
             f", {counts['pending']} waiting for scoring, ", (f"{counts['failed']} failed", "red" if failed else "")]
    if failed:
        log = sweep_dir / "logs" / (f"{failed[0]}.eval.log" if len(failed) == 1 else "<run_id>.eval.log of each")
        parts.append(f" (see {log}; `sweep run` retries {'it' if len(failed) == 1 else 'them'})")
    return styled("scoring ([eval]): ", *parts)


def _short_duration(seconds: float) -> str:
    """74 -> 1m14s, 4000 -> 1h06m: a table cell."""
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds < 86400 else f"{seconds / 86400:.1f}d"


def _duration(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f} days"
