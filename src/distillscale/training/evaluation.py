"""Validation cross-entropy in nats/token over the held-out split (deterministic), and the numerics
it is measured in: a run's own `val_loss` and its teacher's loss L_T are both measured on fp32
weights under the run's autocast (`bf16_autocast`), so the laws compare like with like."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from distillscale.data import iter_eval_batches
from distillscale.training.distributed import Distributed
from distillscale.training.losses import cross_entropy_loss
from distillscale.training.parallel import is_sharded


def default_bf16(device: torch.device) -> bool:
    """bf16 autocast when a run leaves it unsaid: on GPUs that support it, off on the CPU."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def bf16_autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """The autocast a run trains and evaluates under (`RunPlan.bf16`): bf16 when enabled, else off."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def evaluate(model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
             max_tokens: int | None = None, group: Distributed = Distributed(),
             autocast: contextlib.AbstractContextManager = contextlib.nullcontext()) -> float:
    """Mean next-token cross-entropy (nats/token) of a `Transformer`-like model on `tokens`.

    Always the same batches (`iter_eval_batches`); under DDP each process takes every
    world_size-th batch and the sums are added, so the result does not depend on the process count.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64)  # summed nats, tokens
    batches, first = 0, None
    for index, (inputs, targets) in enumerate(iter_eval_batches(tokens, seq_len, batch_size, max_tokens)):
        batches, first = index + 1, first if first is not None else inputs
        if index % group.world_size != group.rank:
            continue
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast:
            output = cross_entropy_loss(model.hidden_states(inputs), model.head, targets)
        totals += torch.stack([output.ce.double().cpu() * targets.numel(),
                               torch.tensor(targets.numel(), dtype=torch.float64)])
    if group.enabled and is_sharded(model):
        # A sharded model's forward is a collective: a rank with one batch fewer runs one more
        # forward pass, whose result it drops, so that every rank gathers the blocks as often.
        own = len(range(group.rank, batches, group.world_size))
        for _ in range(math.ceil(batches / group.world_size) - own):
            with autocast:
                model.hidden_states(first.to(device))
    model.train(was_training)
    totals = group.sum(totals)
    return (totals[0] / totals[1]).item()
