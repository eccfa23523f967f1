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
