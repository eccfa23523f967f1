"""The supervised held-out check of a sweep's runs, fitted as `report` fits it: what the bench scripts
that score a ladder or a demo against its held-out size compare."""

from __future__ import annotations


def supervised_holdout(runs, holdout, form: str = "auto"):
    """The supervised held-out check of a sweep export's runs (a DataFrame), fitted as `report` fits it
    (100 bootstraps, 90% intervals, coarse start grid): `holdout` "largest" or one boolean per run
    (True: fitted). Returns the HoldoutCheck and the law fitted on the fitted runs."""
    from distillscale.laws.calibrate import calibrate, start_grid_options

    grid, _ = start_grid_options("coarse")
    laws = calibrate(params=runs.non_embedding_params.to_numpy(float), tokens=runs.tokens.to_numpy(float),
                     loss=runs.val_loss.to_numpy(float), holdout=holdout, min_ratios=2, form=form,
                     supervised_options={"level": 0.9, "bootstrap": 100, "seed": 0, "max_iter": 300, **grid})
    return laws.holdout["supervised"], laws.supervised.law


def distillation_holdout(sweep, **distillation_options):
    """The report's distillation held-out check of a finished sweep (the law fitted without the
    strongest teacher's students, under the report's supervised law and fit options), as the
    calibration benches read it: (the sweep's runs, its report's laws, the check; the check's rows
    index `runs.students`)."""
    import json

    import numpy as np

    from distillscale.laws.calibrate import calibrate
    from distillscale.laws.lawset import LawSet
    from distillscale.report.calibration import CalibrationSettings
    from distillscale.report.runs import load_runs

    _, options = CalibrationSettings().fit_options()
    runs = load_runs(sweep)
    students = runs.students
    laws = LawSet.from_dict(json.loads((sweep / "report.json").read_text())["laws"])

    def column(key: str) -> np.ndarray:
        return np.array([r[key] for r in students], dtype=np.float64)

    result = calibrate(params=column("non_embedding_params"), tokens=column("tokens"), loss=column("val_loss"),
                       teacher_loss=column("teacher_loss"), supervised_law=laws.supervised, holdout="largest",
                       distillation_options={**options, **distillation_options})
    return runs, laws, result.holdout["distillation"]
