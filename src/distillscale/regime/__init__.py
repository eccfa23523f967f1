"""Large-batch training regime (Hoffer, Hubara & Soudry 2017; science.md §7): square-root learning-rate
scaling, Ghost Batch Normalization, regime adaptation, and the weight-distance diagnostic."""

from distillscale.regime.ghost_batch_norm import GhostBatchNorm, convert_to_ghost_batch_norm
from distillscale.regime.schedules import (LR_SCALING_RULES, AdaptedRegime, adapt_regime,
                                           scale_learning_rate)
from distillscale.regime.weight_distance import WeightDistance, WeightDistanceReading

__all__ = [
    "GhostBatchNorm",
    "convert_to_ghost_batch_norm",
    "scale_learning_rate",
    "adapt_regime",
    "AdaptedRegime",
    "LR_SCALING_RULES",
    "WeightDistance",
    "WeightDistanceReading",
]
