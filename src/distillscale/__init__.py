"""distillscale: plan and run knowledge distillation of language models with scaling laws.

The Python API (each name is imported on first use, so `import distillscale` loads no torch):

    import distillscale as ds
    laws = ds.load_laws("busbridge2025")                 # a preset, or a law file saved by fit
    laws.supervised.prediction(546e6, 10.92e9)           # loss (nats/token) with its interval
    fit = ds.fit_supervised(runs, params="N", tokens="D", loss="loss")   # a DataFrame, or arrays
    fit.law, fit.chosen, fit.candidates, fit.backtest, fit.extrapolation_error, fit.save("law.json")
    students = ds.fit_distillation(runs, student_law=fit.law)           # teacher_loss= column too
    ds.fit_downstream(losses, errors).error(2.5)   # Gadre et al.'s loss-to-error law of a task set
    hp = ds.fit_hyperparameters(grid)         # lr x batch runs -> hp.law.recommend(N, D): lr, batch_tokens
    ds.plan(laws, student_params=546e6, compute=1e21), ds.plan_supervised(fit.law, compute=1e21)
    ds.DataLimitedLaw(laws).chain(1.5e9, 4e8, 5e7, generations=4)   # self-distillation on a 50M-token pool
    ds.train(ds.TrainConfig(out="runs/a", n_layers=2, tokens="2M"))    # -> RunResult

The README's tour of this API runs as a test (tests/test_readme.py); docs/reference/ documents each name.
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
    "fit_hyperparameters": "distillscale.laws.hyperparameters",
    "fit_downstream": "distillscale.laws.downstream",
    "DownstreamLaw": "distillscale.laws.downstream",
    "load_downstream_law": "distillscale.laws.downstream",
    "load_hyperparameter_law": "distillscale.laws.hyperparameters",
    "HyperparameterFit": "distillscale.laws.hyperparameters",
    "HyperparameterLaw": "distillscale.laws.hyperparameters",
    "Recommendation": "distillscale.laws.hyperparameters",
    "calibrate": "distillscale.laws.calibrate",
    "Calibration": "distillscale.laws.calibrate",
    "FitRecord": "distillscale.laws.record",
    "LossIdentity": "distillscale.data.loss_identity",
    "loss_identity": "distillscale.data.loss_identity",
    "LossRecord": "distillscale.data.loss_record",
    "evaluate_loss": "distillscale.evaluation.loss",
    "DataLimitedLaw": "distillscale.laws.data_limited",
    "DistillationPlanner": "distillscale.planning.solver",
    "plan": "distillscale.planning.plan",
    "plan_supervised": "distillscale.planning.plan",
    "rank_teachers_for": "distillscale.planning.teacher_plan",
    "TeacherCandidate": "distillscale.planning.teacher",
    "Plan": "distillscale.planning.plans",
    "PlanSettings": "distillscale.planning.options",
    "ScenarioPlans": "distillscale.planning.plans",
    "StudentSizePlans": "distillscale.planning.plans",
    "SupervisedOnlyPlan": "distillscale.planning.plans",
    "ExistingTeacher": "distillscale.planning.options",
    "ModeComparison": "distillscale.planning.plans",
    "OnPolicy": "distillscale.planning.modes",
    "UserError": "distillscale.errors",
    "TrainConfig": "distillscale.training.config",
    "DistillConfig": "distillscale.training.config",
    "CacheConfig": "distillscale.training.logit_cache.config",
    "load_config": "distillscale.settings",
    "train": "distillscale.training.recipe",
    "distill": "distillscale.training.distillation",
    "cache_logits": "distillscale.training.logit_cache.writer",
    "Sweep": "distillscale.sweeps.runner",
    "export_records": "distillscale.sweeps.export",
})
