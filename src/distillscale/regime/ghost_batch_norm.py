"""Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017; docs/science.md §7).

In training, a large batch is split into consecutive "ghost" batches of `ghost_batch_size` samples;
each is normalised with its own mean and variance, as if the model were trained with small batches,
while the affine parameters are shared. Running statistics are updated once per ghost batch, in order,
exactly as `nn.BatchNorm` would update them if it saw the ghost batches one after another. In eval
mode the running statistics are used, as usual.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from distillscale.errors import UserError


class GhostBatchNorm(_BatchNorm):
    """Drop-in replacement for `nn.BatchNorm1d` / `nn.BatchNorm2d` with per-ghost-batch statistics.

    Accepts (N, C), (N, C, L) and (N, C, H, W) inputs. A batch of N samples is split into
    N // ghost_batch_size full ghost batches plus, when N is not a multiple, one smaller final
    ghost batch. With `ghost_batch_size >= N` it is exactly `nn.BatchNorm` (values, gradients,
    running statistics). `momentum=None` gives a cumulative average, as in `nn.BatchNorm`.
    Cost in training: one native batch-norm call for all full ghost batches (one more for a
    remainder) plus a layout copy of the input and of the output, and of their gradients.
    """

    def __init__(self, num_features: int, ghost_batch_size: int = 128, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, device=None, dtype=None) -> None:
        if isinstance(ghost_batch_size, bool) or not isinstance(ghost_batch_size, int) \
                or ghost_batch_size < 1:
            raise UserError(f"ghost_batch_size must be a positive integer, got {ghost_batch_size!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True,
                         device=device, dtype=dtype)
        self.ghost_batch_size = ghost_batch_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch_size={self.ghost_batch_size}"

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self.training:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        batch_size = input.shape[0]
        if batch_size <= self.ghost_batch_size:
            # One ghost batch: exactly what nn.BatchNorm does, with the same kernel.
            self.num_batches_tracked.add_(1)
            momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                        else self.momentum)
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                True, momentum, self.eps)
        remainder = batch_size % self.ghost_batch_size
        if remainder == 0:
            return self._normalize_ghost_batches(input, self.ghost_batch_size)
        whole, rest = input.split([batch_size - remainder, remainder])
        return torch.cat([self._normalize_ghost_batches(whole, self.ghost_batch_size),
                          self._normalize_ghost_batches(rest, remainder)])

    def _normalize_ghost_batches(self, input: torch.Tensor, ghost_size: int) -> torch.Tensor:
        """Normalise `input` (a whole number of ghost batches of `ghost_size`) in one kernel call."""
        n_ghost = input.shape[0] // ghost_size
        channels, spatial = input.shape[1], input.shape[2:]
        if ghost_size * math.prod(spatial) == 1:
            raise ValueError(
                f"a ghost batch of 1 sample has no variance: the batch of {input.shape[0]} leaves a "
                f"remainder of 1 after ghost batches of {self.ghost_batch_size}; change one of them")
        # (n_ghost * ghost, C, *S) -> (ghost, n_ghost * C, *S): every (ghost batch, channel) pair
        # becomes one channel of an ordinary batch norm, so the fused native kernel does the work.
        stacked = (input.reshape(n_ghost, ghost_size, channels, *spatial).transpose(0, 1)
                   .reshape(ghost_size, n_ghost * channels, *spatial))
        # With momentum 1 the kernel writes each ghost batch's mean and unbiased variance into
        # these buffers (new = 1 * batch + 0 * old), computed in the same pass as the output.
        means = self.running_mean.new_zeros(n_ghost * channels)
        variances = self.running_var.new_zeros(n_ghost * channels)
        weight = self.weight.repeat(n_ghost) if self.weight is not None else None
        bias = self.bias.repeat(n_ghost) if self.bias is not None else None
        output = F.batch_norm(stacked, means, variances, weight, bias, True, 1.0, self.eps)
        self._update_running_stats(means.view(n_ghost, channels), variances.view(n_ghost, channels))
        return (output.reshape(ghost_size, n_ghost, channels, *spatial).transpose(0, 1)
                .reshape(input.shape))

    @torch.no_grad()
    def _update_running_stats(self, means: torch.Tensor, variances: torch.Tensor) -> None:
        """Apply nn.BatchNorm's running-statistics update once per ghost batch (rows, in order),
        in closed form so that no Python loop runs over the ghost batches."""
        n_ghost = means.shape[0]
        if self.momentum is None:
            # Cumulative average over every ghost batch seen so far.
            seen = self.num_batches_tracked.to(means.dtype)
            for running, batch in ((self.running_mean, means), (self.running_var, variances)):
                running.mul_(seen).add_(batch.sum(0)).div_(seen + n_ghost)
        else:
            # k updates r <- (1 - m) r + m s_i leave r_0 with weight (1 - m)^k and s_i with
            # weight m (1 - m)^(k - 1 - i).
            m = self.momentum
            ages = torch.arange(n_ghost - 1, -1, -1, device=means.device, dtype=means.dtype)
            weights = m * (1 - m) ** ages
            self.running_mean.mul_((1 - m) ** n_ghost).add_(weights @ means)
            self.running_var.mul_((1 - m) ** n_ghost).add_(weights @ variances)
        self.num_batches_tracked.add_(n_ghost)


def convert_to_ghost_batch_norm(model: nn.Module, ghost_batch_size: int = 128) -> nn.Module:
    """Replace every `nn.BatchNorm1d` / `nn.BatchNorm2d` inside `model` by a `GhostBatchNorm`.

    Children are replaced in place and `model` is returned (a new module only when `model` itself
    is a BatchNorm). The new modules share the old parameter and buffer tensors, so weights,
    running statistics, device, dtype, train/eval mode and optimizers built beforehand all carry over.
    """
    converted = model
    if type(model) in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not model.track_running_stats:
            raise UserError("cannot convert a BatchNorm with track_running_stats=False: Ghost Batch "
                            "Normalization needs running statistics for evaluation")
        converted = GhostBatchNorm(model.num_features, ghost_batch_size, model.eps, model.momentum,
                                   model.affine, device=model.running_mean.device,
                                   dtype=model.running_mean.dtype)
        converted.weight, converted.bias = model.weight, model.bias
        converted.running_mean, converted.running_var = model.running_mean, model.running_var
        converted.num_batches_tracked = model.num_batches_tracked
        converted.train(model.training)
    for name, child in model.named_children():
        converted.add_module(name, convert_to_ghost_batch_norm(child, ghost_batch_size))
    return converted
