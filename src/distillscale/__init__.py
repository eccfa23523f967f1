"""distillscale: plan and run knowledge distillation of language models with scaling laws.

The Python API (each name is imported on first use, so `import distillscale` loads no torch):

    import distillscale as ds
    laws = ds.load_laws("busbridge2025")                 # a preset, or a law file saved by fit
    laws.supervised.prediction(546e6, 10.92e9)           # loss (nats/token) with its interval
    fit = ds.fit_supervised(N, D, loss)                  # form chosen by extrapolation backtest
    fit.law, fit.chosen, fit.candidates, fit.backtest, fit.extrapolation_error
    fit = ds.fit_distillation(N_S, D_S, L_T, L_S, student_law)
"""

from distillscale.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {
    "load_laws": "distillscale.laws.lawset",
    "LawSet": "distillscale.laws.lawset",
    "SupervisedLaw": "distillscale.laws.forms",
    "DistillationLaw": "distillscale.laws.forms",
    "fit_supervised": "distillscale.laws.selection",
    "fit_distillation": "distillscale.laws.selection",
    "LawFit": "distillscale.laws.selection",
    "calibrate": "distillscale.laws.calibrate",
    "Calibration": "distillscale.laws.calibrate",
    "FitRecord": "distillscale.laws.record",
    "DistillationPlanner": "distillscale.planning.solver",
    "plan": "distillscale.planning.plan",
    "plan_supervised": "distillscale.planning.plan",
    "Plan": "distillscale.planning.plan",
    "ExistingTeacher": "distillscale.planning.plan",
    "UserError": "distillscale.errors",
    "TrainConfig": "distillscale.training.config",
    "DistillConfig": "distillscale.training.config",
    "CacheConfig": "distillscale.training.config",
    "load_train_config": "distillscale.training.config",
    "train": "distillscale.training.recipe",
    "distill": "distillscale.training.distillation",
    "cache_logits": "distillscale.training.logit_cache.writer",
    "Sweep": "distillscale.sweeps.runner",
    "export_records": "distillscale.sweeps.export",
})
