"""Issue 53: does a per-size learning rate from a fitted hyperparameter law remove the micro demo's
one-sided over-prediction of its held-out model size?

The demo (`report/micro_sweep.toml`) trains every size at one muP base rate, 0.003; bench/demo/mup_lr.py
found the best rate falls with width at these sizes, so the smaller sizes may train at a rate off
their optimum, and a law fitted on them extrapolates with a bias (Porian et al. 2024). Three steps:

1. `grid`: the demo's teacher ladder without its held-out size (depths 1-3, every budget of the demo,
   WSD forks) at 5 base rates 2x apart (`[tune]`), on the default stdlib corpus only; the
   hyperparameter law (`ds.fit_hyperparameters`, one batch: the lr law alone, lr* = a N^b D^c) is
   fitted on it and saved as WORK/law.json. The held-out depth 4 is never in the grid, and no other
   corpus is: on them the law is out of sample.
2. `run`: per corpus, the demo as it ships ("before": `demo --data`) and the demo with each size's
   rate from that law ("after": `demo --data --lr-law WORK/law.json`: every size at lr*(N, its
   longest budget D)), each into WORK/{before,after}/NAME (finished runs are reused).
3. `table`: each report's held-out supervised check (the 6 runs of the 443K teacher fitted on the
   3 smaller sizes; the distillation law's 7 students of it): mean and max |relative error|, the
   share of runs over-predicted, and the 90% intervals' coverage, before and after.

Corpora: `stdlib` (the default corpus) and the directories bench/demo/demo_corpora.py builds under
--root (c-include, man-en, doc-en, pkgdoc-en, perl-code).

Usage:
    nice -n 5 python bench/demo/tuned_calibration.py grid  [--work /work/tcal]
    nice -n 5 python bench/demo/tuned_calibration.py run   stdlib c-include man-en [--root /work/corpora]
    python bench/demo/tuned_calibration.py table stdlib c-include man-en

On a GPU (bench/gpu/gpu_verify.sh's lrgrid and tuned stages, the GPU ladder; docs/gpu_ladder.md):
    python bench/demo/tuned_calibration.py grid --scale gpu --work DIR      # 56 runs; law-gpu.json, grid_gpu.csv
    python bench/demo/tuned_calibration.py heldout --scale gpu --work DIR   # the grid's largest depth held out
    python bench/demo/tuned_calibration.py arms --work DIR                  # teachers at the width rule and the law
    python bench/demo/tuned_calibration.py teachers DIR/teachers_arms.csv [--forms auto,chinchilla,interaction]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

import distillscale as ds
from distillscale.report.demo import builtin_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.common.runs import distillscale  # noqa: E402
from bench.common.gpu_ladder import GPU_RUNS_PER_GPU, gpu_ladder_sections  # noqa: E402
from bench.common.holdout import supervised_holdout  # noqa: E402
from bench.common.specs import write_spec  # noqa: E402

GRID_LRS = [0.0015, 0.003, 0.006, 0.012, 0.024]   # base rates 2x apart around the demo's 0.003
HELD_OUT_DEPTH = 4                                 # the demo's largest teacher, its held-out size
# --scale gpu: the GPU ladder (report/gpu_ladder.toml; its width rule gives 0.0021-0.0010 at d_model
# 192-448) gridded at 4 rates 2x apart, on its budgets up to 8 tokens/parameter (the held-out size
# trains 3 and 4), its largest teacher depth held out as in its report. The rates are centred on the
# H100 recipe grid's evidence (docs/gpu_ladder.md): the best rate was the rule's 0.0021 at d_model 192
# and 2x the rule, 0.0033, at 256, so 0.00075-0.006 brackets both and the rule's rate at 384-448.
GPU_GRID_LRS = [0.00075, 0.0015, 0.003, 0.006]
GPU_GRID_MAX_M = 8


def corpus_paths(work: Path, corpus: str) -> dict[str, Path]:
    """The grid's and the held-out grid's files for a corpus (stdlib's keep their first names)."""
    if corpus == "stdlib":
        return {"grid_spec": work / "grid_stdlib.toml", "grid": work / "grid-stdlib", "grid_csv": work / "grid.csv",
                "law": work / "law.json", "heldout_spec": work / "heldout_stdlib.toml",
                "heldout": work / "heldout-stdlib", "heldout_csv": work / "heldout.csv"}
    return {"grid_spec": work / f"grid_{corpus}.toml", "grid": work / f"grid-{corpus}",
            "grid_csv": work / f"grid-{corpus}.csv", "law": work / f"law-{corpus}.json",
            "heldout_spec": work / f"heldout_{corpus}.toml", "heldout": work / f"heldout-{corpus}",
            "heldout_csv": work / f"heldout-{corpus}.csv"}


def demo_table(corpus: str, root: Path) -> dict:
    """The demo's spec as a table, on `corpus` (stdlib: the default corpus; else ROOT/CORPUS)."""
    table = tomllib.loads(builtin_spec().read_text())
    if corpus != "stdlib":
        table["data"]["path"] = str((root / corpus).absolute())
    return table


def grid_spec(path: Path, corpus: str = "stdlib", root: Path = Path("/work/corpora")) -> None:
    """The demo's spec, teachers only, without the held-out depth, one seed, at GRID_LRS."""
    table = demo_table(corpus, root)
    teachers = {key: value for key, value in table["teachers"].items() if key not in ("seeds", "seeded")}
    teachers["n_layers"] = [n for n in teachers["n_layers"] if n != HELD_OUT_DEPTH]
    write_spec(path, "micro-lr-grid", {"data": table["data"], "model": table["model"], "teachers": teachers,
                                       "tune": {"lr": GRID_LRS}})


def gpu_grid_spec(path: Path) -> None:
    """The GPU ladder's spec, teachers only, without its largest depth (the report's held-out size), one
    seed, budgets up to GPU_GRID_MAX_M, at GPU_GRID_LRS (no per-size rate)."""
    sections, model = gpu_ladder_sections()
    teachers = {key: value for key, value in sections["teachers"].items() if key not in ("seeds", "seeded")}
    teachers["n_layers"] = sorted(teachers["n_layers"], reverse=True)[1:]
    teachers["tokens_per_param"] = [m for m in teachers["tokens_per_param"] if m <= GPU_GRID_MAX_M]
    write_spec(path, "gpu-lr-grid", {"data": sections["data"], "model": model, "teachers": teachers,
                                     "tune": {"lr": GPU_GRID_LRS}})


def grid(work: Path, scale: str = "micro", corpus: str = "stdlib", root: Path = Path("/work/corpora")) -> None:
    if scale == "gpu":
        spec, sweep, export, law = work / "grid_gpu.toml", work / "grid-gpu", work / "grid_gpu.csv", work / "law-gpu.json"
        gpu_grid_spec(spec)
    else:
        paths = corpus_paths(work, corpus)
        spec, sweep, export, law = paths["grid_spec"], paths["grid"], paths["grid_csv"], paths["law"]
        grid_spec(spec, corpus, root)
    placement = ("--runs-per-gpu", str(GPU_RUNS_PER_GPU)) if scale == "gpu" else ("--workers", "2")
    print(f"grid sweep {sweep_and_export(spec, sweep, export, placement):.0f} s")
    columns = read_grid(export)
    fit = ds.fit_hyperparameters(columns, name="gpu-ladder-grid" if scale == "gpu" else f"micro-{corpus}-depths1-3", lr_unit="mup-base:256")
    fit.save(law)
    law = fit.law.lr
    print(f"lr* = {law.coefficient:.4g} N^{law.exponents[0]:.3f} D^{law.exponents[1]:.3f} "
          f"(window {fit.selection.window}; {len(fit.cells)} cells, {columns['loss'].size} runs)")
    for cell in fit.cells:
        print(f"  N {cell.params:.3g} D {cell.tokens:.3g}: lr* {cell.lr:.3g}")
    if fit.backtest is not None:
        for score in fit.backtest:
            print(f"  backtest N {score.params:.3g} D {score.tokens:.3g}: penalty {100 * score.penalty:.2f}%")


def read_grid(export: Path, kinds: tuple[str, ...] = ("teacher",)) -> dict[str, np.ndarray]:
    """The completed runs of the given kinds in a sweep export: N, D, lr, batch tokens, loss."""
    with export.open() as f:
        rows = [row for row in csv.DictReader(f)
                if row["status"] == "completed" and row["val_loss"] and row["kind"] in kinds]
    return {key: np.array([float(row[col]) for row in rows]) for key, col in
            {"params": "non_embedding_params", "tokens": "tokens", "lr": "lr",
             "batch_tokens": "batch_tokens", "loss": "val_loss"}.items()}


def sweep_and_export(spec: Path, sweep: Path, export: Path, placement: tuple[str, ...] = ("--workers", "2")) -> float:
    started = time.perf_counter()
    code = subprocess.run([*distillscale(), "sweep", "run", str(spec), "--out", str(sweep), *placement]).returncode
    if code not in (0, 1):  # 1: a run diverged (a high rate may); the export leaves it out
        raise SystemExit(f"{spec}: the sweep exited with {code}")
    wall = time.perf_counter() - started
    subprocess.run([*distillscale(), "sweep", "export", str(sweep), "--out", str(export), "--overwrite"], check=True,
                   stdout=subprocess.DEVNULL)
    return wall


def heldout(work: Path, corpus: str = "stdlib", root: Path = Path("/work/corpora")) -> None:
    """The held-out width's own grid (depth 4, its demo budgets, the same 5 rates; stdlib) scored against
    the law fitted on depths 1-3: issue 53's micro-grid target (the nearest grid run's loss within 0.5%
    of the size's best), beside the demo's one rate."""
    from distillscale.laws.hyperparameters import HyperparameterLaw, score_cells
    from distillscale.laws.hyperparameters.surface import nearest_run_loss, split_cells

    table = demo_table(corpus, root)
    teachers = {key: value for key, value in table["teachers"].items() if key not in ("seeds", "seeded")}
    teachers["n_layers"] = [HELD_OUT_DEPTH]
    paths = corpus_paths(work, corpus)
    write_spec(paths["heldout_spec"], "micro-lr-heldout", {"data": table["data"], "model": table["model"],
                                                          "teachers": teachers, "tune": {"lr": GRID_LRS}})
    wall = sweep_and_export(paths["heldout_spec"], paths["heldout"], paths["heldout_csv"])
    law = HyperparameterLaw.load(paths["law"])
    cells = split_cells(*read_grid(paths["heldout_csv"]).values())
    print(f"held-out depth {HELD_OUT_DEPTH} grid: {wall:.0f} s")
    print("| D | best rate | best loss | law's rate | nearest run's loss | vs best | demo's 0.003: vs best |")
    print("|---|---|---|---|---|---|---|")
    for cell, score in zip(cells, score_cells(law, cells)):
        demo = nearest_run_loss(cell, 0.003, None)
        print(f"| {cell.tokens:.3g} | {cell.lr[cell.best]:g} | {cell.loss.min():.4f} | {score.lr:.3g} | "
              f"{score.nearest_loss:.4f} | {100 * score.penalty:+.2f}% | {100 * (demo / cell.loss.min() - 1):+.2f}% |")


def gpu_heldout(work: Path) -> None:
    """The GPU grid's own held-out width (no training: from WORK/grid_gpu.csv): the law fitted on its
    smaller depths, scored at its largest depth's cells (the nearest grid run's loss against the cell's
    best, the micro grid's 0.5% target), beside the ladder's width rule (0.003 x (d_model/128)^-0.87)
    and the law fitted on every depth (the one `tuned` trains the ladder with)."""
    from distillscale.laws.hyperparameters import score_cells
    from distillscale.laws.hyperparameters.surface import cell_optimum, nearest_run_loss, split_cells

    columns = read_grid(work / "grid_gpu.csv")
    largest = columns["params"].max()
    fitted = {key: values[columns["params"] < largest] for key, values in columns.items()}
    fit = ds.fit_hyperparameters(fitted, name="gpu-ladder-grid-smaller-depths", lr_unit="mup-base:256")
    law = fit.law.lr
    print(f"fitted on the {len(fit.cells)} cells below N = {largest:.3g} ({fitted['loss'].size} runs): "
          f"lr* = {law.coefficient:.4g} N^{law.exponents[0]:.3f} D^{law.exponents[1]:.3f}")
    depths = [tomllib.loads(path.read_text())["model"]["n_layers"]
              for path in (work / "grid-gpu" / "configs").glob("t-*.toml")]
    d_model = max(depths) * tomllib.loads((work / "grid_gpu.toml").read_text())["model"]["aspect_ratio"]
    rule = 0.003 * (d_model / 128) ** -0.87
    print("| N | d_model | D | best rate | best loss | surface lr* | law's rate | nearest run | vs best "
          "| width rule's rate | nearest run | vs best |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in split_cells(*columns.values()):
        if cell.params != largest:
            continue
        score = score_cells(fit.law, [cell])[0]
        at_rule = nearest_run_loss(cell, rule, None)
        best = float(cell.loss.min())
        print(f"| {cell.params:.3g} | {d_model} | {cell.tokens:.3g} | {cell.lr[cell.best]:g} | {best:.4f} | "
              f"{cell_optimum(cell, None).lr:.3g} | {score.lr:.3g} | {score.nearest_loss:.4f} | "
              f"{100 * score.penalty:+.2f}% | {rule:.3g} | {at_rule:.4f} | {100 * (at_rule / best - 1):+.2f}% |")
    print("every cell's best rate (N, D: best, surface optimum):")
    for cell in split_cells(*columns.values()):
        print(f"  N {cell.params:.3g} D {cell.tokens:.3g}: {cell.lr[cell.best]:g}, {cell_optimum(cell, None).lr:.3g}  "
              + " ".join(f"{lr:g}:{loss:.4f}" for lr, loss in sorted(zip(cell.lr, cell.loss))))


def gpu_arms(work: Path) -> None:
    """The GPU ladder's teachers (the shipped design, held-out size included) twice: at the width rule's
    rates (lr = 0.003 x (d_model/128)^-0.87, its first design) and at WORK/law-gpu.json's (the grid's
    law), each a teachers-only sweep with 4 runs sharing the GPU; both exports in one file with an
    `arm` column (WORK/teachers_arms.csv), then each arm's held-out check (`gpu_teachers`)."""
    import pandas as pd

    law = work / "law-gpu.json"
    if not law.is_file():
        raise SystemExit(f"{law} is missing: run the grid first")
    sections, model = gpu_ladder_sections()
    frames = []
    for arm, rule in (("width-rule", {"lr_reference_width": 128, "lr_width_exponent": -0.87}),
                      ("lr-law", {"lr_law": str(law.absolute())})):
        spec = work / f"teachers_{arm}.toml"
        write_spec(spec, f"gpu-ladder-teachers-{arm}", {"data": sections["data"], "model": {**model, **rule},
                                                        "teachers": sections["teachers"]})
        wall = sweep_and_export(spec, work / f"teachers-{arm}", work / f"teachers-{arm}.csv",
                                ("--runs-per-gpu", str(GPU_RUNS_PER_GPU)))
        print(f"{arm}: {wall:.0f} s")
        frames.append(pd.read_csv(work / f"teachers-{arm}.csv").assign(arm=arm))
    pd.concat(frames).to_csv(work / "teachers_arms.csv.tmp", index=False)
    (work / "teachers_arms.csv.tmp").rename(work / "teachers_arms.csv")
    gpu_teachers([work / "teachers_arms.csv"], ("auto", "chinchilla", "interaction"))


def gpu_teachers(exports: list[Path], forms: tuple[str, ...] = ("auto",)) -> None:
    """The GPU ladder's supervised held-out check from teachers-only sweeps' exports (one per arm, or one
    file with an `arm` column: the width rule's rates, the law's), fitted as `report` fits it (median of the forms, 100 bootstraps,
    90% intervals, the largest size held out): mean and max |error|, sign, coverage; and each size's
    rate and the held-out runs' losses. The students' arm of the ladder is left out: the check that
    tests per-size tuning is the supervised one."""
    import pandas as pd

    print("| arm | form | teachers' lr, smallest to largest | held-out runs: observed | predicted | mean abs. error "
          "| max | over-predicted | inside 90% |")
    print("|---|---|---|---|---|---|---|---|---|")
    arms = {}   # an export per arm, or a file of several with an `arm` column (docs/gpu_ladder_teachers_h200.csv)
    for export in exports:
        runs = pd.read_csv(export)
        runs = runs[(runs.get("status", "completed") == "completed") & (runs.kind == "teacher")]
        arms.update({arm: group.reset_index(drop=True) for arm, group in runs.groupby("arm")} if "arm" in runs
                    else {export.stem: runs.reset_index(drop=True)})
    for (arm, runs), form in ((item, form) for item in arms.items() for form in forms):
        check, _ = supervised_holdout(runs, "largest", form)
        errors = check.errors
        lrs = runs.groupby("n_layers").lr.first()
        print(f"| {arm} | {check.form} | {', '.join(f'{lr:.3g}' for lr in lrs)} | "
              f"{', '.join(f'{run.observed:.4f}' for run in check.runs)} | "
              f"{', '.join(f'{run.predicted:.4f}' for run in check.runs)} | {np.abs(errors).mean():.2%} | "
              f"{np.abs(errors).max():.2%} | {check.n_over_predicted}/{len(errors)} | "
              f"{sum(bool(run.covered) for run in check.runs)}/{len(errors)} |")


def distill_grid(work: Path) -> None:
    """Does distillation move the optimal rate? One teacher (depth 3, 8 tokens/parameter, the demo's
    rate), students of depths 1-2 at 4 and 16 tokens/parameter, each baseline and each student at the
    same 5 rates (`[tune] ladder = "students"`): each cell's optimum for the two, and the loss a student
    loses at its baseline's best rate (its pre-training recipe)."""
    from distillscale.laws.hyperparameters.surface import cell_optimum, nearest_run_loss, split_cells

    table = tomllib.loads(builtin_spec().read_text())
    spec = work / "distill_grid.toml"
    write_spec(spec, "micro-lr-distill", {
        "data": table["data"], "model": table["model"],
        "teachers": {"n_layers": [3], "tokens_per_param": [8]},
        "students": {"n_layers": [2, 1], "tokens_per_param": [4, 16], "min_tokens": "20K"},
        "distill": {**table["distill"], "teach_from": "longest"},
        "tune": {"lr": GRID_LRS, "ladder": "students"}})
    wall = sweep_and_export(spec, work / "distill-grid", work / "distill_grid.csv")
    print(f"distillation grid: {wall:.0f} s")
    grids = {kind: {(c.params, c.tokens): c for c in split_cells(*read_grid(work / "distill_grid.csv", (kind,)).values())}
             for kind in ("baseline", "student")}
    print("| N | D | baseline: best rate, surface lr* | student: best rate, surface lr* | student at the baseline's "
          "best rate: vs its best |")
    print("|---|---|---|---|---|")
    for key in sorted(grids["baseline"]):
        base, student = grids["baseline"][key], grids["student"].get(key)
        if student is None:
            continue
        base_best, student_best = base.lr[base.best], student.lr[student.best]
        base_opt, student_opt = cell_optimum(base, None).lr, cell_optimum(student, None).lr
        at_base = nearest_run_loss(student, base_best, None)
        print(f"| {key[0]:.3g} | {key[1]:.3g} | {base_best:g}, {base_opt:.3g} | {student_best:g}, {student_opt:.3g} | "
              f"{100 * (at_base / student.loss.min() - 1):+.2f}% |")


def arm_dirs(work: Path, name: str, scale: str) -> dict[str, Path]:
    """Where each arm's demo sweep lives: WORK/{before,after}/NAME; on the GPU, bench/gpu/gpu_verify.sh's
    ladder stage's WORK/ladder (the ladder as it ships) and WORK/ladder-lr-law."""
    if scale == "gpu":
        return {"before": work / "ladder", "after": work / "ladder-lr-law"}
    return {arm: work / arm / name for arm in ("before", "after")}


def run(names: list[str], root: Path, work: Path, scale: str = "micro") -> None:
    law = work / ("law-gpu.json" if scale == "gpu" else "law.json")
    if not law.is_file():
        raise SystemExit(f"{law} is missing: run the grid first")
    for name in ["gpu"] if scale == "gpu" else names:
        data = (["--scale", "gpu"] if scale == "gpu" else [] if name == "stdlib" else ["--data", str(root / name)])
        for arm, extra in (("before", []), ("after", ["--lr-law", str(law)])):
            out = arm_dirs(work, name, scale)[arm]
            out.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            print(f"{name} {arm}: demo -> {out} ({time.strftime('%H:%M:%S')})", flush=True)
            result = subprocess.run([*distillscale(), "demo", *data, *extra, "--out", str(out), "--json"],
                                    stdout=subprocess.PIPE, text=True)
            (out.parent / f"{out.name}.wall").write_text(f"{time.perf_counter() - started:.0f}\n")
            if result.returncode not in (0, 1):
                raise SystemExit(f"{name} {arm}: demo exited with {result.returncode}")


def check_row(check: dict | None) -> str:
    if not isinstance(check, dict) or check.get("mean_abs_relative_error") is None:
        return "- | - | - | -"
    runs = check["runs"]
    over = sum(run["predicted"] > run["observed"] for run in runs)
    covered = sum(bool(run["covered"]) for run in runs)
    return (f"{check['mean_abs_relative_error']:.2%} | {check['max_abs_relative_error']:.2%} | "
            f"{over}/{len(runs)} | {covered}/{len(runs)}")


def teacher_lrs(sweep: Path) -> str:
    """Each teacher depth's rate in the sweep (from its run configs)."""
    lrs = {}
    for path in (sweep / "configs").glob("t-*.toml"):
        config = tomllib.loads(path.read_text())
        lrs[config["model"]["n_layers"]] = config["optim"]["lr"]
    return ", ".join(f"{lrs[n]:.3g}" for n in sorted(lrs)) if lrs else "-"


def table(names: list[str], work: Path, scale: str = "micro") -> None:
    print("| corpus | arm | teachers' lr, smallest to largest | supervised mean | max | over-predicted | inside 90% "
          "| distillation mean | max | over-predicted | inside 90% |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ["gpu"] if scale == "gpu" else names:
        for arm, sweep in arm_dirs(work, name, scale).items():
            report = sweep / "report.json"
            if not report.is_file():
                print(f"| {name} | {arm} | (no report yet) |")
                continue
            checks = json.loads(report.read_text()).get("extrapolation_check", {})
            print(f"| {name} | {arm} | {teacher_lrs(sweep)} | {check_row(checks.get('supervised'))} | "
                  f"{check_row(checks.get('distillation'))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["grid", "heldout", "distill", "run", "table", "arms", "teachers"])
    parser.add_argument("names", nargs="*", default=["stdlib", "c-include", "man-en"])
    parser.add_argument("--work", type=Path, default=Path("/work/tcal"))
    parser.add_argument("--root", type=Path, default=Path("/work/corpora"))
    parser.add_argument("--scale", choices=["micro", "gpu"], default="micro",
                        help="gpu: the GPU ladder (grid, heldout from the grid's export, run and table; "
                             "bench/gpu/gpu_verify.sh's lrgrid and tuned stages)")
    parser.add_argument("--plan", action="store_true", help="grid: write the grid's spec and stop (a check)")
    parser.add_argument("--corpus", default="stdlib", help="grid, heldout: the corpus (stdlib, or a directory "
                                                           "under --root); run uses the stdlib law throughout")
    parser.add_argument("--forms", default="auto", help="teachers: the supervised forms, comma-separated (auto: "
                                                        "the report's median of the three)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.action == "grid" and args.plan:
        spec = args.work / ("grid_gpu.toml" if args.scale == "gpu" else "grid_stdlib.toml")
        (gpu_grid_spec if args.scale == "gpu" else grid_spec)(spec)
        subprocess.run([*distillscale(), "sweep", "plan", str(spec), *(["--gpus", "1"] if args.scale == "gpu" else [])],
                       check=True)
    elif args.action == "grid":
        grid(args.work, args.scale, args.corpus, args.root)
    elif args.action == "heldout":
        gpu_heldout(args.work) if args.scale == "gpu" else heldout(args.work, args.corpus, args.root)
    elif args.action == "arms":  # the GPU ladder's teachers at the width rule's rates and at the grid's law's
        gpu_arms(args.work)
    elif args.action == "teachers":  # names: the teachers-only sweeps' exports, one per arm
        gpu_teachers([Path(name) for name in args.names], tuple(args.forms.split(",")))
    elif args.action == "distill":
        distill_grid(args.work)
    elif args.action == "run":
        run(args.names, args.root, args.work, args.scale)
    else:
        table(args.names, args.work, args.scale)


if __name__ == "__main__":
    main()
