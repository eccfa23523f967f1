"""The main job end to end: run the built-in micro sweep on the default corpus (this Python's
standard library sources), then calibrate the laws on it and write the report.

    sweep_dir, report, counts = run_demo(quick=True)

`data=PATH` runs the same design on the user's corpus (a design known to calibrate, instead of one
to invent), into sweeps/<name>-<corpus name> unless `out` is given.
The sweeps are package data: `micro_sweep.toml` (the full demo, minutes on a 2-core CPU) and
`micro_sweep_quick.toml` (fewer, shorter runs: a smoke test of the whole pipeline);
`repetition_sweep.toml` (`repetition=True`: students on 1-16 epochs of fixed subsets, whose report
fits R_D* for supervised and distilled students); `capacity_gap_sweep.toml` (`capacity_gap=True`:
students pruned from each of six teachers and from scratch, whose report fits MiniMA's law of capacity
gap for each start). Re-running
reuses every finished run (the sweep runner skips them) and only redoes the report.
"""

from __future__ import annotations

import glob
import re
import sys
import time
from pathlib import Path
from typing import Any

from distillscale.data.sources import BUILTIN_PREFIX
from distillscale.errors import UserError
from distillscale.laws.hyperparameters.presets import HYPERPARAMETER_PRESETS
from distillscale.io import check_output_dir
from distillscale.report.calibration import CalibrationSettings
from distillscale.report.design import builtin_spec
from distillscale.report.report import write_report
from distillscale.units import Quantity, parse_quantity

SCALES = ("micro", "gpu")
# Bootstrap resamples of the demo's report: intervals in seconds (the quick sweep has few runs).
BOOTSTRAP = {False: 100, True: 20}
GPU_RUNS_PER_GPU = 2  # the ladder's models (1M-17M parameters) cannot fill an H100 alone


def builtin_sweep(quick: bool = False, data: Path | None = None, scale: str = "micro", gpus: int = 1,
                  repetition: bool = False, capacity_gap: bool = False, lr_law: str | None = None,
                  teacher: Path | None = None, progress=lambda message: None, other_corpus: bool = False):
    """The built-in sweep, on the default corpus or on `data` (files, a glob or a datasets directory);
    with `lr_law` (a preset name or a law file), each size's lr from that hyperparameter law instead of
    the spec's lr or lr_law, and the name suffixed `-lr-law`; with `teacher` (a model directory), the
    corpus in that teacher's tokenizer (the sweep's models speak it; the laws' losses are in its units),
    split as the teacher split it where it is a run (`_split_as_teacher`, said to `progress`; not with
    `other_corpus`: the corpus shares no text with the run's), and the name suffixed with the teacher's.

    The GPU ladder's token window grows with the GPUs (`max_tokens` x gpus), but never past what the
    corpus's splits hold: its runs never repeat their data (the corpus is prepared to count it), and
    a teacher depth whose two shortest budgets do not both fit is left out, so the held-out size
    always has both."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    from distillscale.sweeps.spec import resolve_sweep_spec

    if scale not in SCALES:
        raise UserError(f"unknown --scale {scale!r}: use micro (CPU minutes) or gpu (the GPU ladder)")
    if repetition and (quick or scale != "micro"):
        raise UserError("--repetition runs its own micro sweep: leave out --quick and --scale")
    if capacity_gap and (quick or scale != "micro" or repetition):
        raise UserError("--capacity-gap runs its own micro sweep: leave out --quick, --scale and --repetition")
    path = builtin_spec(quick, scale, repetition, capacity_gap)
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    if data is not None and not str(data).startswith(BUILTIN_PREFIX):
        from distillscale.data.sources import check_corpus

        if not glob.glob(str(Path(data).expanduser())):
            raise UserError(f"--data {data} matches no file or directory: give a corpus (text, .jsonl or "
                            f".parquet files, a glob or a datasets directory)")
        check_corpus(str(Path(data).expanduser()))  # before the sweep's first line of progress
        table["data"]["path"] = str(Path(data).expanduser().absolute())
        table["name"] += "-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem).strip("-.") or "data")
    elif data is not None:
        table["data"]["path"] = str(data)
        table["name"] += "-" + str(data).removeprefix(BUILTIN_PREFIX)
    if teacher is not None:
        table["data"].pop("vocab_size", None)  # the teacher's tokenizer decides it
        table["data"]["tokenizer"] = str(Path(teacher).expanduser().absolute())
        table["name"] += "-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(teacher).expanduser().absolute().name).strip("-.")
                                or "teacher")
    if teacher is not None and not other_corpus:
        _split_as_teacher(table["data"], teacher, progress)
    if lr_law is not None:
        from distillscale.sweeps.spec_sections import LR_RULE_KEYS

        for key in LR_RULE_KEYS:  # the law replaces whatever per-size rate the spec had
            table["model"].pop(key, None)
        table["model"]["lr_law"] = lr_law if lr_law in HYPERPARAMETER_PRESETS else str(Path(lr_law).expanduser().absolute())
        table["name"] += "-lr-law"
    if scale == "gpu":
        full = resolve_sweep_spec(table, source=str(path), base_dir=path.parent)
        params = {run.n_layers: run.non_embedding_params for run in full.runs}
        unique = _split_tokens(full)
        for section in ("teachers", "students"):
            ladder = table[section]
            cap = int(min(parse_quantity(ladder["max_tokens"], "max_tokens", kind=Quantity.TOKENS) * gpus, unique[section]))
            # a teacher size keeps its two shortest budgets (the held-out size: its M = 3 and 4) or is
            # left out; a student size its shortest
            budgets = sorted(ladder["tokens_per_param"])
            kept = budgets[:2][-1] if section == "teachers" else budgets[0]
            ladder["max_tokens"] = cap
            ladder["n_layers"] = [n for n in ladder["n_layers"] if kept * params[n] <= cap]
            if len(ladder["n_layers"]) < (3 if section == "teachers" else 1):
                raise UserError(f"the corpus's {section[:-1]} split holds {unique[section] / 1e6:.3g}M tokens, "
                                f"too few for the GPU ladder's {section} without repeating data: use "
                                f"--data {BUILTIN_PREFIX}python-env (the default) or a larger corpus")
    return resolve_sweep_spec(table, source=str(path), base_dir=path.parent)


def _split_as_teacher(data: dict[str, Any], teacher: Path, progress) -> None:
    """The sweep's [data] section `data` split as the teacher run split its corpus (`data.trained_split`:
    its val_fraction, and where the sweep reads that very corpus its max_bytes), so that the laws'
    validation split, on which the teacher is measured and its students planned, holds none of the
    teacher's training text, whatever text the corpus shares with the teacher's; a teacher whose split
    cannot be kept (an earlier version's, another data seed: a sweep splits with seed 0) is refused in
    one line, before the sweep. A Hugging Face teacher leaves it as it is."""
    from distillscale.data import DataConfig
    from distillscale.data.trained_split import TrainedSplit

    split = TrainedSplit.of_run(Path(teacher).expanduser().absolute())
    if split is None:
        return
    reader = DataConfig(**{key: data[key] for key in ("path", "text_field", "max_bytes", "val_fraction") if key in data})
    adopted = split.as_trained(reader)
    split.check(adopted.model_copy(update={"seed": reader.seed}), who="the sweep",
                fix="give --data another corpus, or train the teacher on this one")
    if adopted == reader:
        return
    for key in ("max_bytes", "val_fraction"):
        if getattr(adopted, key) is not None:
            data[key] = getattr(adopted, key)
    differ = ", ".join(f"{name} {theirs!r}" for name, (_, theirs) in split.differences(reader).items())
    progress(f"--teacher {teacher} trained on its corpus split with {differ}: the sweep splits it the same way, "
             "so the laws' validation split holds none of the teacher's training text")


def _split_tokens(spec) -> dict[str, int]:
    """Unique tokens of the teacher and student splits of the spec's corpus (prepared now, once), as the
    sampler counts them (`epoch_tokens`: those one epoch of its windows predicts)."""
    from distillscale.data import prepare_data
    from distillscale.data.repetition import epoch_tokens
    from distillscale.training.config import TrainConfig

    settings = {key: value for key, value in spec.runs[0].settings.items() if key in TrainConfig.model_fields}
    config = TrainConfig.model_validate({**settings, "out": "."})
    data = prepare_data(config.data_config())
    return {section: epoch_tokens(data.manifest["splits"][split]["tokens"], config.seq_len)
            for section, split in (("teachers", "teacher"), ("students", "student"))}


def require_gpus() -> list[str]:
    """The visible GPUs, or a one-line UserError when there are none."""
    from distillscale.sweeps.placement import visible_gpus

    gpus = visible_gpus()
    if not gpus:
        raise UserError("--scale gpu trains a ladder of 1M-17M-parameter models sized for GPUs (about 20 "
                        "minutes on one H100), and no GPU is visible here: run it on a machine with a GPU, "
                        "or leave out --scale for the micro demo (minutes on a CPU)")
    return gpus


def run_demo(out: Path | None = None, quick: bool = False, workers: int | None = None,
             progress=lambda message: None, data: Path | None = None,
             scale: str = "micro", repetition: bool = False, capacity_gap: bool = False,
             lr_law: str | None = None, bias_correction: bool = True, teacher: Path | None = None,
             trust_remote_code: bool = False, other_corpus: bool = False) -> tuple[Path, dict[str, Any], dict[str, int]]:
    """Run the built-in sweep (on `data`, or the default corpus) into `out` (default sweeps/<name>)
    and report on it; returns the sweep directory, report.json's content and the number of runs per
    status. `scale="gpu"` runs the GPU ladder on every visible GPU (refused without one);
    `repetition=True` the repetition sweep (repetition_sweep.toml), whose report fits R_D*;
    `capacity_gap=True` the capacity-gap sweep (capacity_gap_sweep.toml), whose report fits N_T* = k N_S
    for pruned and from-scratch students; `lr_law` each size's lr from a hyperparameter law;
    `bias_correction=False` reports the supervised law's raw predictions (`laws.crossladder`); `teacher`
    (a run or Hugging Face directory with its tokenizer): the sweep in the teacher's tokenizer, then the
    teacher measured on its validation split and planned for (`report.teacher`); `other_corpus`: `data`
    shares no text with a teacher run's corpus (split on its own, not checked: `data.trained_split`)."""
    from distillscale.sweeps.executors import LocalExecutor
    from distillscale.sweeps.placement import place_runs
    from distillscale.sweeps.runner import default_workers, run_sweep
    from distillscale.sweeps.store import is_sweep_dir

    if scale not in SCALES:
        raise UserError(f"unknown --scale {scale!r}: use micro (CPU minutes) or gpu (the GPU ladder)")
    if scale == "gpu" and quick:
        raise UserError("--quick shortens the micro demo: leave it out with --scale gpu")
    gpus = require_gpus() if scale == "gpu" else []
    spec = builtin_sweep(quick, data, scale, gpus=max(1, len(gpus)), repetition=repetition, capacity_gap=capacity_gap,
                         lr_law=lr_law, teacher=teacher, progress=progress, other_corpus=other_corpus)
    if teacher is not None:
        check_teacher(teacher, trust_remote_code, scale, progress, max(int(run.settings["seq_len"]) for run in spec.runs))
    sweep_dir = check_output_dir(Path(out) if out is not None else Path("sweeps") / spec.name,
                                 is_ours=is_sweep_dir, inputs=[data, teacher], what="sweep directory")
    placement = place_runs(gpus, "none" if not gpus else None, GPU_RUNS_PER_GPU if gpus and not workers else None,
                           workers, cpu_workers=default_workers(threads_per_run=1))
    progress(f"sweep {spec.name}: {len(spec.runs)} runs in {sweep_dir}, {placement.workers} at a time "
             f"{placement.describe()}")
    for note in spec.notes:
        progress(f"warning: {note}")
    start = time.perf_counter()
    counts = run_sweep(spec, sweep_dir, LocalExecutor(placement.workers), threads_per_run=1, progress=True,
                       placement=placement)
    progress(f"sweep done in {time.perf_counter() - start:.0f} s: "
             + ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    _, report = write_report(sweep_dir, sweep_dir, CalibrationSettings(bootstrap=BOOTSTRAP[quick],
                                                                       no_bias_correction=not bias_correction), progress,
                             teacher=teacher, trust_remote_code=trust_remote_code, other_corpus=other_corpus)
    return sweep_dir, report, counts


# Above this many token ids, the micro sweep's models (d_model 24-96) spend most of their compute in
# the output layer: minutes become hours on a CPU.
MICRO_VOCABULARY = 4096


def check_teacher(teacher: Path, trust_remote_code: bool, scale: str, progress, seq_len: int) -> None:
    """Refuse, in one line, a teacher the demo cannot calibrate for (not a model, its own code not
    trusted, no tokenizer, weights that do not run: one forward on a short window); say before the
    sweep when its vocabulary makes the micro sweep slow, and when its context is shorter than the
    sweep's windows (`seq_len`: it is measured in windows of its own context)."""
    from distillscale.data.tokenizer import load_tokenizer, tokenizer_vocab_size
    from distillscale.model.pretrained import tokenizer_of
    from distillscale.model.sizes import model_size
    from distillscale.training.teachers import check_teacher_runs, find_teacher

    size = model_size(teacher, trust_remote_code, given_as="--teacher")
    found = tokenizer_of(Path(teacher).expanduser())
    if found is None:
        raise UserError(f"--teacher {teacher} has no tokenizer (tokenizer.json or tokenizer_config.json): the sweep "
                        "calibrates the laws in the teacher's tokenizer; save it there")
    ids = tokenizer_vocab_size(load_tokenizer(found)[0])
    memory = _check_teacher_memory(teacher, size, ids)
    context = min(seq_len, size.context or seq_len)
    check_teacher_runs(find_teacher(teacher, trust_remote_code, given_as="--teacher"), ids, context, trust_remote_code)
    progress(memory)
    if context < seq_len:
        progress(f"--teacher {teacher} takes at most {context} tokens of context: it is measured in windows of "
                 f"{context}, the sweep's models in windows of {seq_len}")
    if scale == "micro" and ids > MICRO_VOCABULARY:
        progress(f"warning: the teacher's tokenizer has {ids:,} ids: the micro sweep's small models spend most of "
                 f"their compute in an output layer that wide, many times the usual minutes on a CPU; on a GPU use "
                 "--scale gpu")


def _check_teacher_memory(teacher: Path, size, ids: int) -> str:
    """Before the sweep: the memory the teacher's measurement will take (its weights in float32 and a
    window at its context, at most 2048), refused in one line when the machine lacks it; else what
    to say of it."""
    from distillscale.evaluation.cost import estimate_cost
    from distillscale.training.distributed import resolve_device

    context = min(size.context or 2048, 2048)
    estimate = estimate_cost(size, context, context, ids, resolve_device("auto"))
    if not estimate.fits:
        raise UserError(f"--teacher {teacher} needs {estimate.describe_memory()} to be measured "
                        "after the sweep: too large for this machine; run the demo on one with more memory (a GPU), "
                        "or calibrate with `data prepare --tokenizer` and a sweep, and measure the teacher with "
                        "`distillscale loss` where it fits")
    return (f"--teacher {teacher}: {size.describe_params()}; its loss is measured after the sweep, in "
            f"{estimate.describe_memory()}")
