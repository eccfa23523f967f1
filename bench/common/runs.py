"""Running `distillscale` commands from a bench script: in this process (`run_here`), or each in a
process of its own (`cli`, `distillscale()` for a subprocess's command line), a finished run reused
(`run_once`). Shared by the bench scripts that chain training runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def distillscale() -> list[str]:
    """The command line that runs `distillscale` in a child process, with this interpreter."""
    return [sys.executable, "-m", "distillscale.cli"]


def run_here(*args, allowed=(0, None)) -> None:
    """`distillscale ARGS` in this process; exits naming the command when its status is not `allowed`."""
    from distillscale.cli import main

    code = main([str(a) for a in args])
    if code not in allowed:
        raise SystemExit(f"distillscale {' '.join(map(str, args))} exited with {code}")


def cli(*args, capture: bool = False) -> str:
    """`distillscale ARGS` in a new process; its stderr and exit on failure, one timed line on success;
    its stdout when `capture`."""
    args = [str(arg) for arg in args]
    start = time.time()
    result = subprocess.run([*distillscale(), *args], stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(args)}\n{result.stderr[-2000:]}")
    print(f"  {time.time() - start:6.1f} s  {' '.join(args[:1] + args[-2:])}", flush=True)
    return result.stdout if capture else ""


def run_once(out: Path, *args) -> dict:
    """Run a training command into `out` unless it already holds a finished result; return result.json."""
    if not (out / "result.json").is_file():
        cli(*args, "--out", out)
    return json.loads((out / "result.json").read_text())
