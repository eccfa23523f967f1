"""`demo --data-limited`: distillation when data is the limit, measured on the user's corpus.

    result = run_data_limited(data=Path("my_corpus/"), workers=2)

Runs the design of `sweeps.data_limited` (one student size on a 1-epoch pool and a repeated pool of the
corpus's teacher split: trained alone, a self-distillation chain, a larger teacher's student, an
ensemble's student, after a weight-decay grid), then measures each against the same size trained
alone on the same pool and fits the data-limited law's constants on the runs: the shipped law's form, by its
own fitter (`laws.data_limited_fit.fit_law`, what bench/laws/data_limited_fit.py fits the shipped constants
with), beside the shipped constants.
Writes data_limited.json and data_limited.md into the sweep directory. Re-running reuses every finished
run: only the report is redone.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from distillscale.data.sources import BUILTIN_PREFIX
from distillscale.errors import UserError
from distillscale.io import atomic_write_json, atomic_write_text, check_output_dir
from distillscale.laws.data_limited_fit import fit_law
from distillscale.laws.data_limited_runs import MeasuredRun, observations
from distillscale.sweeps import data_limited as design_module
from distillscale.laws.data_limited_form import SHARE_NAMES
from distillscale.report.data_limited_records import (DataLimitedResult, LawConstants, Measured,
                                                      PoolResult, SharedConstant)
from distillscale.report.data_limited_table import CONSTANTS_FILE, table_lines
from distillscale.sweeps.data_limited import (DataLimitedDesign, best_weight_decay, cell_id, check_corpus_size,
                                              grid_id, plan_runs, read_result, run_plan)

DEFAULT_DATA = BUILTIN_PREFIX + "stdlib"
DESIGN_FILE = "data_limited_design.json"
# The fewest repeated pools whose bootstrap (over pools) gives the constants an interval.
MIN_CELLS = 3
REPORT_JSON, REPORT_MD = "data_limited.json", "data_limited.md"


def sweep_name(data: str, quick: bool = False) -> str:
    prefix = "data-limited-quick-" if quick else "data-limited-"
    if data.startswith(BUILTIN_PREFIX):
        return prefix + data.removeprefix(BUILTIN_PREFIX)
    return prefix + (re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem).strip("-.") or "data")


def run_data_limited(data: Path | str | None = None, out: Path | None = None, workers: int | None = None,
                     progress=lambda message: None, design: DataLimitedDesign | None = None,
                     quick: bool = False) -> DataLimitedResult:
    """Run the data-limited design on `data` (default: Python's standard library) into `out` (default
    sweeps/data-limited-<corpus name>), `workers` runs at a time (default: the cores), and report.
    `quick`: the design shrunk to seconds (`sweeps.data_limited.QUICK_DESIGN`)."""
    from distillscale.sweeps.runner import default_workers

    design = design or (design_module.QUICK_DESIGN if quick else design_module.DEMO_DESIGN)
    corpus = _corpus(data)
    root = check_output_dir(Path(out) if out is not None else Path("sweeps") / sweep_name(corpus, quick),
                            is_ours=lambda path: (path / DESIGN_FILE).exists(),
                            inputs=[] if corpus.startswith(BUILTIN_PREFIX) else [corpus], what="data-limited demo")
    _check_same_design(root, corpus, design)
    check_corpus_size(corpus, design)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / DESIGN_FILE, _design_record(corpus, design))
    runs = plan_runs(design)
    workers = workers or default_workers(threads_per_run=1)
    progress(f"{len(runs)} runs in {root}, {workers} at a time, one thread each")
    start = time.perf_counter()
    statuses = run_plan(runs, root, corpus, design, workers, progress)
    result = collect(root, corpus, design, statuses, time.perf_counter() - start)
    write_reports(result)
    return result


def _corpus(data: Path | str | None) -> str:
    if data is None or str(data).startswith(BUILTIN_PREFIX):
        return str(data or DEFAULT_DATA)
    import glob

    from distillscale.data.sources import check_corpus

    path = str(Path(data).expanduser().absolute())
    if not glob.glob(path):
        raise UserError(f"--data {data} matches no file or directory: give a corpus (text, .jsonl or .parquet "
                        "files, a glob or a datasets directory)")
    check_corpus(path)
    return path


def _design_record(corpus: str, design: DataLimitedDesign) -> dict:
    return {"data": corpus, "design": design.to_json()}


def _check_same_design(root: Path, corpus: str, design: DataLimitedDesign) -> None:
    """Refuse a sweep directory that holds the runs of another corpus or design."""
    import json

    path = root / DESIGN_FILE
    wanted = json.loads(json.dumps(_design_record(corpus, design)))  # tuples as JSON lists
    if path.exists() and json.loads(path.read_text(encoding="utf-8")) != wanted:
        raise UserError(f"--out {root} holds a data-limited demo of another corpus or design: give another "
                        "--out, or the same --data")


def collect(root: Path, corpus: str, design: DataLimitedDesign, statuses: dict[str, str],
            wall_seconds: float) -> DataLimitedResult:
    """The finished runs' numbers, per pool, and the law fitted on them."""
    pools = [_pool(root, design, pool, statuses) for pool in design.pools]
    units = f"nats/token, the validation split of {corpus} in the runs' {design.vocab_size}-id tokenizer trained on it"
    return DataLimitedResult(root, corpus, units, design, pools, fit_runs(measured_runs(root, corpus, design)),
                             statuses, wall_seconds)


def _loss(root: Path, run_id: str, teacher: bool = False) -> float | None:
    result = read_result(root / run_id)
    if result is None or result.get("status", "completed") != "completed":
        return None
    return result["teacher"]["teacher_val_loss"] if teacher else result["val_loss"]


def _pool(root: Path, design: DataLimitedDesign, pool: str, statuses: dict[str, str]) -> PoolResult:
    cell = cell_id(design, pool)
    grid_done = all(statuses.get(grid_id(design, pool, wd)) == "completed" for wd in design.grids[pool])
    choice = best_weight_decay(root, design, pool) if grid_done else None
    seeds = [loss for seed in design.seeds if (loss := _loss(root, f"{cell}-alone-s{seed}")) is not None]
    mean = float(np.mean(seeds)) if seeds else None

    def measured(label: str, run_id: str, teacher: bool = False) -> Measured:
        loss = _loss(root, run_id, teacher)
        if loss is None or mean is None:
            return Measured(label, run_id, loss)
        return Measured(label, run_id, loss, loss - mean, 100 * (loss - mean) / mean)

    k = len(design.seeds)
    generations = [measured(f"generation {g}" + (" (from seed 0 alone)" if g == 1 else ""), f"{cell}-gen{g}")
                   for g in range(1, design.generations + 1)]
    counted = read_result(root / f"{cell}-alone-s{design.seeds[0]}") or {}  # as the sampler counts them
    unique, epochs = counted.get("unique_tokens", design.count(pool)), counted.get("epochs", design.epochs(pool))
    return PoolResult(pool, unique, epochs, choice, seeds, mean,
                      (max(seeds) - min(seeds)) / 2 if len(seeds) > 1 else None, generations,
                      measured(f"depth-{design.larger_depth} teacher alone", f"{cell}-larger"),
                      measured("  its student", f"{cell}-from-larger"),
                      measured(f"ensemble of {k} (mixture)", f"{cell}-ensemble{k}", teacher=True),
                      measured("  its student", f"{cell}-ensemble{k}"))


def measured_runs(root: Path, corpus: str, design: DataLimitedDesign) -> list[MeasuredRun]:
    """The finished runs as the law's fitter reads them (the bench's schema, `laws.data_limited_fit`)."""
    runs = []
    for run in plan_runs(design):
        result = read_result(root / run.run_id)
        if run.role == "grid" or result is None or result.get("status", "completed") != "completed":
            continue
        teacher = result.get("teacher") or {}
        runs.append(MeasuredRun(corpus, run.run_id, run.role, run.pool, float(design.count(design.tokens)),
                                float(result["val_loss"]), result.get("non_embedding_params"), run.seed,
                                run.generation, len(run.teachers) if run.role == "ensemble" else None, run.teachers,
                                teacher.get("teacher_val_loss")))
    return runs


def fit_runs(runs: list[MeasuredRun]) -> LawConstants:
    """The shipped law's constants fitted on the demo's runs (`laws.data_limited_fit.fit_law`, its bootstrap
    over the demo's cells), what a share the runs cannot tell keeps from the shipped constants, beside them."""
    from distillscale.laws.data_limited import SHARE_LABELS, DataLimitedConstants, load_constants

    shipped = load_constants()
    try:
        fit = fit_law(runs, fallback=shipped.shares, fallback_name="the shipped constants")
    except UserError as exc:
        return LawConstants(0, note=str(exc))
    # a bootstrap over cells needs several: with fewer repeated pools its interval would say nothing
    cells = len({c.group for c in observations(runs).chains})
    shares = {SHARE_LABELS[name]: SharedConstant(fit.value(name), fit.interval(name) if cells >= MIN_CELLS else None,
                                                 getattr(shipped, name).value, getattr(shipped, name).interval)
              for name in SHARE_NAMES}
    constants = DataLimitedConstants.from_fit(fit, f"demo --data-limited on {runs[0].corpus}")
    notes = list(fit.notes) + ([f"one repeated pool: too few to resample, so no interval (the shipped ones: "
                                f"{len(shipped.draws)} draws over the measured corpora's pools)"]
                               if cells < MIN_CELLS else [])
    return LawConstants(fit.chains + fit.students, shares, fit.residuals.to_dict(), notes,
                        note="" if fit.chains else "no chain finished: kappa and lambda from the larger teacher's "
                                                   "student alone", constants=constants.to_dict())


def write_reports(result: DataLimitedResult) -> None:
    """data_limited.json (the numbers) and data_limited.md (the table) in the sweep directory."""
    atomic_write_json(result.sweep_dir / REPORT_JSON, result.to_json())
    if result.law.constants is not None:   # what `load_constants` reads: the law fitted on these runs
        atomic_write_json(result.sweep_dir / CONSTANTS_FILE, result.law.constants)
    atomic_write_text(result.sweep_dir / REPORT_MD, "```\n" + "\n".join(table_lines(result)) + "\n```\n")
