"""Issue 55 Build 2 on the micro demo sweeps: does the distilled student's data exponent depend on
N_S? Per sweep, the distillation law refitted on the students of the weaker teachers, predicting
those of the strongest (the report's distillation check, `report`'s holdout="largest"), Ltilde_S
from the supervised law the sweep's default report fitted (its report.json `laws`), for Busbridge's
law and the variant with beta' + beta1 ln(N_S/N0) (`laws.distillation_interaction`), with the
identification rule and without it (beta1 kept whatever the runs say). Point fits, coarse grid.

    python bench/laws/distillation_interaction.py stdlib=/work/tcal/before/stdlib:/tmp/s5/stdlib-auto/report.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from distillscale.laws import load_laws
from distillscale.laws.backtest import scale_levels
from distillscale.laws.fitting import COARSE_GRIDS, DistillationLawFitter
from distillscale.report.runs import load_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench.*` imports
from bench.laws.distillation_interaction_law import DistillationInteractionFitter, DistillationInteractionLaw  # noqa: E402


def students(sweep: str) -> tuple[np.ndarray, ...]:
    runs = load_runs(sweep).students
    return tuple(np.array([r[k] for r in runs], dtype=np.float64)
                 for k in ("non_embedding_params", "tokens", "teacher_loss", "val_loss"))


def supervised_law(report_json: str):
    with open(report_json) as handle, tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(json.load(handle)["laws"], out)
    return load_laws(out.name).supervised


def score(law, N, D, L_T, L_S, rows) -> dict:
    errors = law.predict(N[rows], D[rows], L_T[rows]) / L_S[rows] - 1
    return {"mean_abs": float(np.mean(np.abs(errors))), "signed": float(np.mean(errors)),
            "over": int(np.sum(errors > 0)), "n": int(len(errors)), "beta1": float(getattr(law, "beta1", 0.0))}


def unruled(student_law, tie: bool, N, D, L_T, L_S) -> DistillationInteractionLaw:
    """The variant's fit with beta1 kept whatever the runs say (the rule off)."""
    fitter = DistillationInteractionFitter(student_law, tie_exponents=tie, bootstrap=0,
                                           grid=COARSE_GRIDS["distillation"])
    fitter._set_origin(float(np.exp(np.mean(np.log(N)))))
    fitter._fit_log_space(fitter._runs(N, D, L_T, L_S))
    return DistillationInteractionLaw(**fitter.form.to_coefficients(fitter.x_), N0=fitter.n0, student_law=student_law)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="NAME=SWEEP_DIR:REPORT_JSON")
    parser.add_argument("--json", help="write the scores here")
    args = parser.parse_args()
    results = {}
    for item in args.sweeps:
        name, paths = item.split("=", 1)
        sweep, report = paths.split(":", 1)
        N, D, L_T, L_S = students(sweep)
        law = supervised_law(report)
        held = L_T == L_T.min()      # the students of the strongest teacher
        fit = ~held
        print(f"{name}: {int(fit.sum())} students fitted ({len(scale_levels(N[fit]))} sizes, "
              f"{len(np.unique(L_T[fit]))} teachers), {int(held.sum())} held out")
        results[name] = {}
        for tie in (True, False):
            options = {"tie_exponents": tie, "bootstrap": 0, "grid": COARSE_GRIDS["distillation"]}
            plain = DistillationLawFitter(law, **options).fit(N[fit], D[fit], L_T[fit], L_S[fit]).law_
            ruled = DistillationInteractionFitter(law, **options).fit(N[fit], D[fit], L_T[fit], L_S[fit]).law_
            free = unruled(law, tie, N[fit], D[fit], L_T[fit], L_S[fit])
            form = "tied" if tie else "free"
            for variant, fitted in (("busbridge", plain), ("beta1 with the rule", ruled), ("beta1 without the rule", free)):
                row = score(fitted, N, D, L_T, L_S, held)
                results[name][f"{form} {variant}"] = row
                print(f"  {form:4} {variant:24} mean |error| {100 * row['mean_abs']:.2f}%, signed "
                      f"{100 * row['signed']:+.2f}%, {row['over']} of {row['n']} over, beta1 {row['beta1']:.4f}"
                      + (f" ({ruled.fit.not_identified['beta1']})" if variant == "beta1 with the rule"
                         and "beta1" in ruled.fit.not_identified else ""))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    names = list(results)
    for variant in next(iter(results.values())):
        if "busbridge" in variant:
            continue
        base = variant.split()[0] + " busbridge"
        worse = [n for n in names if results[n][variant]["mean_abs"] > results[n][base]["mean_abs"] + 1e-12]
        print(f"{variant}: worse than {base} on {len(worse)} of {len(names)} sets" + (f" ({', '.join(worse)})" if worse else "")
              + f"; mean of sets {100 * np.mean([results[n][variant]['mean_abs'] for n in names]):.2f}% vs "
              f"{100 * np.mean([results[n][base]['mean_abs'] for n in names]):.2f}%")


if __name__ == "__main__":
    main()
