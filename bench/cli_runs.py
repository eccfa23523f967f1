"""Running `distillscale` commands from a bench script, each in a process of its own, a finished run
reused: shared by the bench scripts that chain training runs (pruned_start.py, teacher_mixture.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def cli(*args) -> None:
    """`distillscale ARGS` in a new process; its stderr and exit on failure, one timed line on success."""
    args = [str(arg) for arg in args]
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "distillscale.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(args)}\n{result.stderr[-2000:]}")
    print(f"  {time.time() - start:6.1f} s  {' '.join(args[:1] + args[-2:])}", flush=True)


def run_once(out: Path, *args) -> dict:
    """Run a training command into `out` unless it already holds a finished result; return result.json."""
    if not (out / "result.json").is_file():
        cli(*args, "--out", out)
    return json.loads((out / "result.json").read_text())
