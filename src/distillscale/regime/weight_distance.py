"""Distance of the weights from their initial values, ||w_t - w_0|| (Hoffer et al. 2017, docs/science.md §7).

Hoffer et al. observed that in the high-learning-rate phase this distance grows like the logarithm of
the number of updates, whatever the batch size: a large-batch run that makes fewer updates ends
closer to its initialisation. Plotting it against log(updates) shows whether a regime caught up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class WeightDistanceReading:
    """||w_t - w_0|| at one optimizer step: over all tracked parameters, and per layer (module)."""

    step: int
    total: float
    per_layer: dict[str, float]


class WeightDistance:
    """Tracks ||w_t - w_0|| of a model's trainable parameters during training.

    w_0 is a detached copy of the parameters when the tracker is built or, to resume a run,
    `initial`: the `tracker.initial` mapping (parameter name -> tensor) saved at the start.
    `compute(step)` returns the current distance; `update(step)` also appends it to `history`.
    Per-layer distances group the parameters by the module that owns them ("blocks.0.mlp" for its
    weight and bias). Reading the distance builds no autograd graph and costs one pass over the
    parameters.
    """

    def __init__(self, model: nn.Module, initial: Mapping[str, torch.Tensor] | None = None) -> None:
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters to track")
        if initial is not None and set(initial) != {name for name, _ in named}:
            raise ValueError("`initial` must hold exactly the model's trainable parameters")
        self.parameters = [p for _, p in named]
        self.initial = {name: (p if initial is None else initial[name]).detach().clone()
                        .to(p.device, p.dtype) for name, p in named}
        self.layers = [name.rpartition(".")[0] or name for name, _ in named]
        self.history: list[WeightDistanceReading] = []

    @torch.no_grad()
    def compute(self, step: int = 0) -> WeightDistanceReading:
        squared = torch.stack([torch.linalg.vector_norm(p - w0, dtype=torch.float64).square()
                               for p, w0 in zip(self.parameters, self.initial.values())])
        squared = squared.cpu().tolist()
        per_layer: dict[str, float] = {}
        for layer, value in zip(self.layers, squared):
            per_layer[layer] = per_layer.get(layer, 0.0) + value
        return WeightDistanceReading(step=step, total=sum(squared) ** 0.5,
                                     per_layer={k: v ** 0.5 for k, v in per_layer.items()})

    def update(self, step: int) -> WeightDistanceReading:
        reading = self.compute(step)
        self.history.append(reading)
        return reading
