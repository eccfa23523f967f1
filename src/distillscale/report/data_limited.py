"""`demo --data-limited`: distillation when data is the limit, measured on the user's corpus.

    result = run_data_limited(data=Path("my_corpus/"), workers=2)

Runs the design of `sweeps.data_limited` (one student size on a 1-epoch pool and a repeated pool of the
corpus's teacher split: trained alone, a self-distillation chain, a larger teacher's student, an
ensemble's student, after a weight-decay grid), then measures each against the same size trained
alone on the same pool and fits the data-limited law's constants on the runs (`laws.data_limited_fit`).
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
from distillscale.laws.data_limited_fit import (EnsemblePair, StudentPair, bootstrap_kappa_lambda, fit_eta,
                                                fit_kappa_lambda, interval)
from distillscale.sweeps import data_limited as design_module
from distillscale.report.data_limited_records import (DataLimitedResult, LawConstants, Measured,
                                                      PoolResult)
from distillscale.report.data_limited_table import table_lines
from distillscale.sweeps.data_limited import (DataLimitedDesign, best_weight_decay, cell_id, check_corpus_size,
                                              grid_id, plan_runs, read_result, run_plan)

DEFAULT_DATA = BUILTIN_PREFIX + "stdlib"
DESIGN_FILE = "data_limited_design.json"
REPORT_JSON, REPORT_MD = "data_limited.json", "data_limited.md"


def sweep_name(data: str) -> str:
    if data.startswith(BUILTIN_PREFIX):
        return "data-limited-" + data.removeprefix(BUILTIN_PREFIX)
    return "data-limited-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem).strip("-.") or "data")


def run_data_limited(data: Path | str | None = None, out: Path | None = None, workers: int | None = None,
                     progress=lambda message: None, design: DataLimitedDesign | None = None) -> DataLimitedResult:
    """Run the data-limited design on `data` (default: Python's standard library) into `out` (default
    sweeps/data-limited-<corpus name>), `workers` runs at a time (default: the cores), and report."""
    from distillscale.sweeps.runner import default_workers

    design = design or design_module.DEMO_DESIGN
    corpus = _corpus(data)
    root = check_output_dir(Path(out) if out is not None else Path("sweeps") / sweep_name(corpus),
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
    return DataLimitedResult(root, corpus, units, design, pools, fit_law(pools), statuses, wall_seconds)


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


def fit_law(pools: list[PoolResult]) -> LawConstants:
    """kappa and lambda on every repeated pool's students whose 1-epoch twins finished (generations
    1 and 2 against their teacher, the larger teacher's and the ensemble's students), each pair its own
    bootstrap group; eta on each repeated pool's ensemble."""
    fresh, repeated = pools[0], pools[1:]
    pairs, ensembles = [], []
    for pool in repeated:
        if pool.alone_mean is None or fresh.alone_mean is None:
            continue
        penalty = pool.alone_mean - fresh.alone_mean
        alone = Measured("alone", "", pool.alone_seeds[0]), Measured("alone", "", fresh.alone_seeds[0])
        chain = list(zip((alone[0], *pool.generations), pool.generations))
        fresh_chain = list(zip((alone[1], *fresh.generations), fresh.generations))
        for (teacher, student), (fresh_teacher, fresh_student) in [
                *zip(chain[:2], fresh_chain[:2]), ((pool.larger, pool.from_larger), (fresh.larger, fresh.from_larger)),
                ((pool.ensemble, pool.ensemble_student), (fresh.ensemble, fresh.ensemble_student))]:
            values = (teacher.loss, fresh_teacher.loss, student.loss, fresh_student.loss)
            if None not in values:
                pairs.append(StudentPair(*values, penalty, group=(pool.pool, student.run_id)))
        if pool.ensemble.loss is not None:
            ensembles.append(EnsemblePair(len(pool.alone_seeds), pool.alone_mean, fresh.alone_mean, pool.ensemble.loss))
    eta = fit_eta(ensembles) if ensembles else None
    if len(pairs) < 3:
        return LawConstants(len(pairs), eta=eta, note=f"kappa and lambda need 3 students with 1-epoch twins; "
                                                      f"{len(pairs)} finished")
    fit = fit_kappa_lambda(pairs)
    draws = bootstrap_kappa_lambda(pairs)
    return LawConstants(len(pairs), fit.kappa, interval(draws[:, 0]), fit.lam, interval(draws[:, 1]),
                        fit.residual_rms, eta)


def write_reports(result: DataLimitedResult) -> None:
    """data_limited.json (the numbers) and data_limited.md (the table) in the sweep directory."""
    atomic_write_json(result.sweep_dir / REPORT_JSON, result.to_json())
    atomic_write_text(result.sweep_dir / REPORT_MD, "```\n" + "\n".join(table_lines(result)) + "\n```\n")
