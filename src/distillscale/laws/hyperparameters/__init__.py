"""Hyperparameter laws: the optimal peak learning rate and batch size from N and D.

    fit = fit_hyperparameters(runs)                    # an lr x batch grid of runs (laws.hyperparameters.fit)
    law = load_hyperparameter_law("steplaw2025")       # a preset or a saved law (laws.hyperparameters.presets)
    law.recommend(1e9, 20e9)                           # Recommendation (laws.hyperparameters.law)

`surface` fits one cell's loss surface in (ln lr, ln B); `conditions` the beta2 and warmup a
grid may vary or hold (each cell fitted at its best run's setting); `fit` the laws across cells, their
selection and backtest; `law` the saved record and its predictions; `presets` the published laws.
"""

from distillscale.lazy import lazy_exports

# Imported on first use: `rates` (a law's unit, the rate at another batch) is read by the engine's
# config, which must not load SciPy for it.
_EXPORTS = {
    **dict.fromkeys(("HyperparameterFit", "fit_hyperparameters", "score_cells"), "distillscale.laws.hyperparameters.fit"),
    **dict.fromkeys(("HyperparameterLaw", "PowerLaw", "Recommendation", "BatchAdaptation"),
                    "distillscale.laws.hyperparameters.law"),
    **dict.fromkeys(("HYPERPARAMETER_PRESETS", "load_hyperparameter_law"), "distillscale.laws.hyperparameters.presets"),
    **dict.fromkeys(("CellOptimum", "CellScore", "GridFit", "SettingChoice"), "distillscale.laws.hyperparameters.records"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
