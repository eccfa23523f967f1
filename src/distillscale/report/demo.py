"""The main job end to end: run the built-in micro sweep on the default corpus (this Python's
standard library sources), then calibrate the laws on it and write the report.

    sweep_dir, report, counts = run_demo(quick=True)

`data=PATH` runs the same design on the user's corpus (a design known to calibrate, instead of one
to invent), into sweeps/<name>-<corpus name> unless `out` is given.
The sweeps are package data: `micro_sweep.toml` (the full demo, minutes on a 2-core CPU) and
`micro_sweep_quick.toml` (fewer, shorter runs: a smoke test of the whole pipeline). Re-running
reuses every finished run (the sweep runner skips them) and only redoes the report.
"""

from __future__ import annotations

import glob
import re
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from distillscale.errors import UserError
from distillscale.io import check_output_dir
from distillscale.report.calibration import CalibrationSettings
from distillscale.report.report import write_report

SPECS = {False: "micro_sweep.toml", True: "micro_sweep_quick.toml"}
# Bootstrap resamples of the demo's report: intervals in seconds (the quick sweep has few runs).
BOOTSTRAP = {False: 100, True: 20}


def builtin_spec(quick: bool = False) -> Path:
    return Path(str(resources.files("distillscale.report") / SPECS[quick]))


def builtin_sweep(quick: bool = False, data: Path | None = None):
    """The built-in sweep, on the default corpus or on `data` (files, a glob or a datasets directory)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    from distillscale.sweeps.spec import resolve_sweep_spec

    path = builtin_spec(quick)
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    if data is not None:
        from distillscale.data.sources import check_corpus

        if not glob.glob(str(Path(data).expanduser())):
            raise UserError(f"--data {data} matches no file or directory: give a corpus (text, .jsonl or "
                            f".parquet files, a glob or a datasets directory)")
        check_corpus(str(Path(data).expanduser()))  # before the sweep's first line of progress
        table["data"]["path"] = str(Path(data).expanduser().absolute())
        table["name"] += "-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem).strip("-.") or "data")
    return resolve_sweep_spec(table, source=str(path), base_dir=path.parent)


def run_demo(out: Path | None = None, quick: bool = False, workers: int | None = None,
             progress=lambda message: None,
             data: Path | None = None) -> tuple[Path, dict[str, Any], dict[str, int]]:
    """Run the built-in sweep (on `data`, or the default corpus) into `out` (default sweeps/<name>)
    and report on it; returns the sweep directory, report.json's content and the number of runs per
    status."""
    from distillscale.sweeps.executors import LocalExecutor
    from distillscale.sweeps.runner import default_workers, run_sweep
    from distillscale.sweeps.store import is_sweep_dir

    spec = builtin_sweep(quick, data)
    sweep_dir = check_output_dir(Path(out) if out is not None else Path("sweeps") / spec.name,
                                 is_ours=is_sweep_dir, what="sweep directory")
    workers = workers or default_workers(threads_per_run=1)
    progress(f"sweep {spec.name}: {len(spec.runs)} runs in {sweep_dir}, {workers} at a time")
    start = time.perf_counter()
    counts = run_sweep(spec, sweep_dir, LocalExecutor(workers), threads_per_run=1, progress=True)
    progress(f"sweep done in {time.perf_counter() - start:.0f} s: "
             + ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    _, report = write_report(sweep_dir, sweep_dir, CalibrationSettings(bootstrap=BOOTSTRAP[quick]), progress)
    return sweep_dir, report, counts
