"""The cross-ladder bias correction (issue 64, `laws.crossladder`) on ladders outside the validation
pack, the shipped model (fitted on the pack alone) against the raw law: the GPU ladder's recorded
runs (docs/*.csv) and the demo's micro corpora (their sweeps).

    python bench/laws/crossladder_external.py gpu                    # docs/gpu_ladder_*.csv, report's check
    python bench/laws/crossladder_external.py demo /tmp/sweeps64/*   # each sweep re-reported, raw and corrected

`gpu` fits each recorded GPU ladder as `report` fits it (the median of the forms, 100 bootstraps,
90% intervals, coarse grid; bench/common/holdout.py's `supervised_holdout`): the supervised
teachers (and baselines) below the held-out depth, predicting every larger run; the shipped ladder's
split on the H100 record and on both arms of the H200 teachers' record, and the four splits of the
H200 record at seven sizes. `demo` re-reports each sweep (`report.write_report` into SWEEP/report64,
the sweep untouched) and prints the supervised and distillation checks, raw and corrected. Both
print mean |error|, the signed mean, how many runs were over-predicted and how many lie inside their
90% intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.holdout import supervised_holdout  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _line(label: str, errors: np.ndarray, covered: list) -> str:
    return (f"{label}: {np.abs(errors).mean():.2%} (signed {errors.mean():+.2%}, {int((errors > 0).sum())}/{len(errors)} "
            f"over" + (f", {sum(covered)}/{len(covered)} inside 90%" if covered else "") + ")")


def gpu_sets():
    """(label, teacher runs as a DataFrame with n_layers, non_embedding_params, tokens, val_loss, the
    fitted depths)."""
    import pandas as pd

    h100 = pd.read_csv(DOCS / "gpu_ladder_h100.csv")
    h100 = h100[h100.kind.isin(["teacher", "baseline"])].rename(columns={
        "depth": "n_layers", "tokens_approx": "tokens", "val_loss_nats_per_token": "val_loss"})
    yield "H100 (teachers and baselines), depths 3-6 -> 7", h100.reset_index(drop=True), (3, 6)
    h200 = pd.read_csv(DOCS / "gpu_ladder_teachers_h200.csv")
    for arm, runs in h200.groupby("arm"):
        yield f"H200 teachers, {arm} arm, depths 3-6 -> 7", runs.reset_index(drop=True), (3, 6)
    sizes = pd.read_csv(DOCS / "gpu_ladder_sizes_h200.csv")
    sizes = sizes[(sizes.status == "completed") & (sizes.kind == "teacher")]
    for low, high in ((3, 6), (2, 6), (2, 7), (3, 7)):
        yield (f"H200 seven sizes, depths {low}-{high} -> {high + 1}-8",
               sizes[sizes.n_layers >= low].reset_index(drop=True), (low, high))


def gpu() -> dict:
    out = {}
    for label, runs, (low, high) in gpu_sets():
        fit_rows = (runs.n_layers <= high).to_numpy()
        check, law = supervised_holdout(runs, fit_rows)
        covered = [bool(run.covered) for run in check.runs]
        print(f"{label}\n  {_line('corrected', check.errors, covered)}\n  {_line('raw', check.raw_errors, [])}",
              flush=True)
        out[label] = {"corrected": check.errors.tolist(), "raw": check.raw_errors.tolist(), "covered": covered}
    return out


def demo(sweeps: list[Path]) -> dict:
    from distillscale.report.calibration import CalibrationSettings
    from distillscale.report.report import write_report

    out = {}
    for sweep in sweeps:
        if not (sweep / "spec.toml").is_file():
            print(f"{sweep}: not a sweep, skipped", file=sys.stderr)
            continue
        target = sweep / "report64"
        target.mkdir(exist_ok=True)
        # the pack's correction alone: the micro demo's family term is bench/demo/demo_family.py's
        _, report = write_report(sweep, target, CalibrationSettings(family_term=False))
        out[sweep.name] = {}
        for name in ("supervised", "distillation"):
            check = report["extrapolation_check"].get(name, {})
            if not check.get("runs"):
                print(f"{sweep.name} {name}: {check.get('skipped', 'no check')}")
                continue
            corrected = np.array([r["relative_error"] for r in check["runs"]])
            raw = np.array([r["raw_relative_error"] for r in check["runs"]])
            covered = [bool(r["covered"]) for r in check["runs"]]
            print(f"{sweep.name} {name}: {_line('corrected', corrected, covered)}; {_line('raw', raw, [])}", flush=True)
            out[sweep.name][name] = {"corrected": corrected.tolist(), "raw": raw.tolist(), "covered": covered}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["gpu", "demo"])
    parser.add_argument("sweeps", nargs="*", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = gpu() if args.what == "gpu" else demo(args.sweeps)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
