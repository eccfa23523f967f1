"""Large-batch training regime (Hoffer, Hubara & Soudry 2017; docs/science.md §7): square-root learning-rate
scaling, Ghost Batch Normalization, regime adaptation, and the weight-distance diagnostic.

Names are imported on first use, so the CLI does not load torch at start-up.
"""

from distillscale.lazy import lazy_exports

_EXPORTS = {
    "GhostBatchNorm": "distillscale.regime.ghost_batch_norm",
    "convert_to_ghost_batch_norm": "distillscale.regime.ghost_batch_norm",
    "scale_learning_rate": "distillscale.regime.schedules",
    "adapt_regime": "distillscale.regime.schedules",
    "AdaptedRegime": "distillscale.regime.schedules",
    "LR_SCALING_RULES": "distillscale.regime.schedules",
    "WeightDistance": "distillscale.regime.weight_distance",
    "WeightDistanceReading": "distillscale.regime.weight_distance",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
