"""Hyperparameter laws: the optimal peak learning rate and batch size from N and D (issue 53).

    fit = fit_hyperparameters(runs)                    # an lr x batch grid of runs (laws.hyperparameters.fit)
    law = load_hyperparameter_law("steplaw2025")       # a preset or a saved law (laws.hyperparameters.presets)
    law.recommend(1e9, 20e9)                           # Recommendation (laws.hyperparameters.law)

`surface` fits one cell's loss surface in (ln lr, ln B); `conditions` the beta2 and warmup a
grid may vary or hold (each cell fitted at its best run's setting); `fit` the laws across cells, their
selection and backtest; `law` the saved record and its predictions; `presets` the published laws.
"""

from distillscale.laws.hyperparameters.fit import HyperparameterFit, fit_hyperparameters, score_cells
from distillscale.laws.hyperparameters.law import (
    HyperparameterLaw,
    PowerLaw,
    Recommendation,
    RegimeAdaptation,
)
from distillscale.laws.hyperparameters.presets import HYPERPARAMETER_PRESETS, load_hyperparameter_law
from distillscale.laws.hyperparameters.records import CellOptimum, CellScore, FitSummary, SettingChoice

__all__ = ["CellOptimum", "CellScore", "FitSummary", "HyperparameterFit", "HyperparameterLaw", "PowerLaw",
           "Recommendation", "RegimeAdaptation", "SettingChoice", "HYPERPARAMETER_PRESETS", "fit_hyperparameters",
           "load_hyperparameter_law", "score_cells"]
