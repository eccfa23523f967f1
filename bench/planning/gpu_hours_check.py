"""The planner's GPU time against GPU ladders that ran (issue 65's target: a plan's GPU-hours within 15%
of the measured wall-clock of a GPU ladder run), side by side, from the runs recorded in docs/:

1. The H200 sizes ladder (bench/laws/gpu_ladder_sizes.py, issue 55; docs/gpu_ladder_sizes_h200.csv): its spec
   dry-run (`sweep plan --gpu h200 --runs-per-gpu 4`, as it ran) against the 314 s the sweep took
   (docs/gpu_ladder.md) and, run by run, each run's predicted wall time (start to end in the simulated
   schedule) against its recorded wall_seconds.
2. The H100 ladder (examples/gpu_ladder.toml at 2 runs per GPU, 2026-11-24; docs/gpu_ladder_h100.csv):
   run by run the same (the runs matched by role, depth, tokens per parameter and teacher depth: the
   ladder's rates, and so its run ids, changed since), and the sweep's 799 s, which also holds the
   corpus's preparation, a stop and resume and a minute of fits and report (an upper bound).

Nothing trains: it reads the recorded runs and plans their specs (the ladder's corpus is prepared once,
about 2 minutes on 2 cores, to resolve the specs' token windows). In-sample, said: the warm-compile
figure of the dry run (~1 s a run) was read off the H200 ladder's forks; the MFU table's H100 and H200
figures were measured by bench/gpu/gpu_step.py, not on these ladders.

With --verify-dir DIR (bench/gpu/gpu_verify.sh's stage gpuhours, on a GPU machine), section 1 compares
the sizes ladder that stage `sizes` trained in this session (DIR/sizes/sizes.csv, its seconds from
DIR/sizes.txt) on this GPU, planned from the shipped table and, when stage `family` wrote it, from the
table measured in this session (DIR/throughput.json).

Usage: python bench/planning/gpu_hours_check.py [--work DIR] [--verify-dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports

ROOT = Path(__file__).resolve().parents[2]
TARGET = 0.15
SIZES_WALL_SECONDS = 314.0   # docs/gpu_ladder.md: "25 runs in 314 s" (one H200, 4 runs sharing it)
H100_WALL_SECONDS = 799.0    # docs/gpu_ladder.md: 63 runs in 799 s, data preparation, a resume and the report included


def plan(spec: Path, gpu: str, runs_per_gpu: int, table: Path | None = None) -> dict:
    command = [sys.executable, "-m", "distillscale.cli", "sweep", "plan", str(spec), "--gpus", "1", "--gpu", gpu,
               "--runs-per-gpu", str(runs_per_gpu), "--json"]
    command += [] if table is None else ["--throughput-table", str(table)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def walls(dry: dict) -> dict[str, float]:
    return {run["run_id"]: run["end_seconds"] - run["start_seconds"] for run in dry["runs"]}


def verdict(ratio: float) -> str:
    return "within 15%" if abs(ratio - 1) <= TARGET else "MISSED (beyond 15%)"


def sizes_ladder(work: Path, export: Path, seconds: float, gpu: str, table: Path | None = None,
                 label: str = "H200 sizes ladder (docs/gpu_ladder_sizes_h200.csv)") -> None:
    from bench.laws.gpu_ladder_sizes import spec
    from bench.common.gpu_ladder import GPU_RUNS_PER_GPU

    path = work / "sizes.toml"
    spec(path)
    dry = plan(path, gpu, GPU_RUNS_PER_GPU, table)
    predicted = walls(dry)
    rows = list(csv.DictReader(open(export)))
    measured = {row["run_id"]: float(row["wall_seconds"]) for row in rows}
    common = sorted(set(measured) & set(predicted))
    source = "the shipped throughput table" if table is None else f"the table measured here ({table})"
    print(f"\n1. {label}: {len(common)} of {len(rows)} recorded runs planned ({len(dry['runs'])} in the spec), "
          f"{GPU_RUNS_PER_GPU} runs sharing one {gpu.upper()}, planned from {source}")
    print(f"   {'':<34} {'measured':>10} {'planned':>10} {'ratio':>6}")
    ratio = dry["wall_seconds"] / seconds
    print(f"   {'the sweep, wall-clock (s)':<34} {seconds:>10.0f} {dry['wall_seconds']:>10.0f} "
          f"{ratio:>6.2f}  {verdict(ratio)}")
    by_role = collections.defaultdict(lambda: [0.0, 0.0])
    runs = {run["run_id"]: run for run in dry["runs"]}
    for run_id in common:
        kind = "forks" if runs[run_id]["parent_id"] else "parents"
        by_role[kind][0] += measured[run_id]
        by_role[kind][1] += predicted[run_id]
    for kind, (m, p) in sorted(by_role.items()):
        print(f"   {'sum of the ' + kind + '’ walls (s)':<34} {m:>10.0f} {p:>10.0f} {p / m:>6.2f}")
    m, p = (sum(values) for values in zip(*by_role.values()))
    print(f"   {'sum of every run’s wall (s)':<34} {m:>10.0f} {p:>10.0f} {p / m:>6.2f}  {verdict(p / m)}")
    hours = dry["gpu_hours"]
    print(f"   GPU-hours: {hours['busy_hours']:.3f} busy, {hours['reserved_hours']:.3f} reserved; "
          f"measured {seconds / 3600:.3f} reserved")


def h100_ladder() -> None:
    dry = plan(ROOT / "examples" / "gpu_ladder.toml", "h100", 2)
    predicted = walls(dry)
    by_id = {run["run_id"]: run for run in dry["runs"]}

    def key(role, depth, per_param, teacher_depth):
        return role, int(depth), round(float(per_param)), teacher_depth

    planned = collections.defaultdict(list)
    for run in dry["runs"]:
        teacher = by_id[run["teacher_id"]]["n_layers"] if run["teacher_id"] else None
        planned[key(run["role"], run["n_layers"], run["tokens_per_param"], teacher)].append(run["run_id"])
    by_kind = collections.defaultdict(lambda: [0.0, 0.0, 0])
    rows = list(csv.DictReader(open(ROOT / "docs" / "gpu_ladder_h100.csv")))
    for row in rows:
        teacher = int(row["teacher_depth"]) if row["teacher_depth"] else None
        run_id = planned[key(row["kind"], row["depth"], row["tokens_per_param"], teacher)].pop(0)
        kind = "forks" if by_id[run_id]["parent_id"] else "parents"
        by_kind[kind][0] += float(row["seconds"])
        by_kind[kind][1] += predicted[run_id]
        by_kind[kind][2] += 1
    print(f"\n2. H100 ladder (examples/gpu_ladder.toml, 2 runs sharing one H100): {len(rows)} recorded runs")
    print(f"   {'':<34} {'measured':>10} {'planned':>10} {'ratio':>6}")
    for kind, (m, p, n) in sorted(by_kind.items()):
        print(f"   {f'sum of the {n} {kind}’ walls (s)':<34} {m:>10.0f} {p:>10.0f} {p / m:>6.2f}")
    m, p = (sum(values[i] for values in by_kind.values()) for i in (0, 1))
    print(f"   {'sum of every run’s wall (s)':<34} {m:>10.0f} {p:>10.0f} {p / m:>6.2f}  {verdict(p / m)}")
    print(f"   {'the sweep, wall-clock (s)':<34} {H100_WALL_SECONDS:>10.0f} {dry['wall_seconds']:>10.0f} "
          f"{dry['wall_seconds'] / H100_WALL_SECONDS:>6.2f}  (measured: an upper bound, see the docstring)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="where the sizes spec is written (default: a "
                                                                 "temporary directory)")
    parser.add_argument("--verify-dir", type=Path, default=None, help="bench/gpu/gpu_verify.sh's DIR: the sizes "
                                                                       "ladder trained there, on this GPU")
    args = parser.parse_args()
    print("the dry run's GPU time (`sweep plan --gpu`, the shipped throughput table) against recorded GPU ladders")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if args.verify_dir is None:
            sizes_ladder(work, ROOT / "docs" / "gpu_ladder_sizes_h200.csv", SIZES_WALL_SECONDS, "h200")
        else:
            verified(work, args.verify_dir)
    h100_ladder()


def verified(work: Path, directory: Path) -> None:
    """Section 1 on the sizes ladder gpu_verify.sh trained in `directory` on this machine's GPU."""
    import torch

    export, log = directory / "sizes" / "sizes.csv", directory / "sizes.txt"
    found = re.search(r"^sweep: 0 after (\d+) s$", log.read_text(), re.M) if log.exists() else None
    if not export.exists() or found is None:
        raise SystemExit(f"gpu_hours_check: no finished sizes ladder in {directory} (stage sizes: {export}, "
                         f"and 'sweep: 0 after N s' in {log}): run bench/gpu/gpu_verify.sh --only sizes first")
    name = torch.cuda.get_device_name().lower() if torch.cuda.is_available() else ""
    gpu = next((known for known in ("h200", "h100", "a100", "l40s", "b200") if known in name), None)
    if gpu is None:
        raise SystemExit(f"gpu_hours_check: this GPU ({name or 'none'}) is not one of the shipped table's")
    label = f"the sizes ladder trained in {directory} on this {gpu.upper()}"
    sizes_ladder(work, export, float(found.group(1)), gpu, label=label)
    table = directory / "throughput.json"
    if table.exists():
        from distillscale.planning.gpu_hours import ThroughputTable

        device = next(iter(d for d in ThroughputTable.load(table).devices))
        sizes_ladder(work, export, float(found.group(1)), device, table, label=label)


if __name__ == "__main__":
    main()
