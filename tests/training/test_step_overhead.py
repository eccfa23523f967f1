"""The training step's per-step overheads cut (issue 65 item 2) without changing a number: one
micro-batch's step skips the accumulation weights and is bit for bit the step before (kept here as the
reference), a step's finiteness is computed once from a view, and the loss weights are made once."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from distillscale.data import TokenSampler
from distillscale.model import ModelConfig, Transformer
from distillscale.training.distributed import Distributed
from distillscale.training.losses import _Objective, cross_entropy_loss
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import build_optimizer
from distillscale.training.parallel import TrainingModel
from distillscale.training.step import DivergenceWatch, StepResult, _skips_on_device, train_step


def reference_step(model, objective, optimizer, micro_batches, grad_clip, group, autocast, halted=None):
    """`train_step` as it was before issue 65 (every micro-batch weighted, the finiteness by a list index)."""
    optimizer.zero_grad(set_to_none=True)
    totals = first_tokens = weight_sum = None
    for index, (inputs, targets, *extras) in enumerate(micro_batches):
        with contextlib.nullcontext():
            with autocast:
                output = objective(model, inputs, targets, *extras)
            tokens = (output.tokens if output.tokens is not None
                      else torch.ones((), device=output.loss.device)).detach().double()
            first_tokens = tokens if first_tokens is None else first_tokens
            weight = tokens / first_tokens
            (output.loss * weight.to(output.loss.dtype) / len(micro_batches)).backward()
        weight_sum = weight if weight_sum is None else weight_sum + weight
        kd = output.kd if output.kd is not None else torch.zeros_like(output.ce)
        micro = torch.stack([output.loss.detach(), output.ce.detach(), kd.detach()]).double() * weight
        totals = micro if totals is None else totals + micro
    totals = group.mean(totals / weight_sum)
    parameters = [p for group_ in optimizer.param_groups for p in group_["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf)
    values = torch.cat([totals, grad_norm.detach().double().reshape(1)])
    finite = torch.isfinite(values[[0, 3]]).all()
    skip = ~finite if halted is None else halted | ~finite
    assert _skips_on_device(optimizer, parameters)
    optimizer.found_inf = skip.float()
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf
    return values


def trained(step, z_loss: float = 1e-4, steps: int = 6):
    torch.manual_seed(0)
    config = ModelConfig(n_layers=1, aspect_ratio=16, head_dim=16, vocab_size=128, max_seq_len=16)
    model = Transformer(config)
    group = Distributed(device=torch.device("cpu"))
    optimizer = build_optimizer(model, lr=3e-3, weight_decay=1e-4)
    sampler = TokenSampler(np.random.default_rng(0).integers(0, 128, 40 * 16 + 1).astype(np.uint16), 16, 2, seed=0)
    objective, values = SupervisedObjective(z_loss_weight=z_loss), []
    for index in range(steps):
        result = step(TrainingModel(model, group), objective, optimizer, [sampler.batch(index)], 1.0, group,
                      torch.autocast("cpu", enabled=False))
        values.append((result.values if isinstance(result, StepResult) else result).clone())
    return torch.stack(values), [p.detach().clone() for p in model.parameters()]


def test_one_micro_batch_steps_are_bit_for_bit_the_steps_before():
    with torch.random.fork_rng():
        now, weights_now = trained(train_step)
    with torch.random.fork_rng():
        before, weights_before = trained(reference_step)
    assert torch.equal(now, before)
    assert all(torch.equal(a, b) for a, b in zip(weights_now, weights_before))


def test_a_steps_finiteness_is_computed_once_from_its_values():
    result = StepResult(torch.tensor([1.0, 2.0, 0.0, 3.0], dtype=torch.float64))
    assert result.finite_on_device is result.finite_on_device and bool(result.finite_on_device)
    assert not bool(StepResult(torch.tensor([1.0, 2.0, 0.0, math.inf], dtype=torch.float64)).finite_on_device)
    assert not bool(StepResult(torch.tensor([math.nan, 2.0, 0.0, 1.0], dtype=torch.float64)).finite_on_device)
    assert bool(StepResult(torch.tensor([1.0, math.nan, math.inf, 1.0], dtype=torch.float64)).finite_on_device)
    watch = DivergenceWatch(torch.device("cpu"))
    watch.record(1, result)
    watch.record(2, StepResult(torch.tensor([math.nan, 0.0, 0.0, 1.0], dtype=torch.float64)))
    assert watch.first_bad()[0] == 2


def test_the_loss_weights_are_made_once_per_device_and_the_loss_is_unchanged():
    objective = _Objective(ce_weight=1.0, kd_weight=0.0, z_loss_weight=1e-4)
    like = torch.zeros(3)
    assert objective.weights(like) is objective.weights(torch.ones(3))
    assert torch.equal(objective.weights(like), torch.tensor([1.0, 0.0, 1e-4]))
    assert objective.weights(like.double()).dtype == torch.float64
    torch.manual_seed(0)
    hidden, head = torch.randn(10, 8, requires_grad=True), torch.nn.Linear(8, 32, bias=False)
    targets = torch.randint(0, 32, (10,))
    targets[3] = -100
    output = cross_entropy_loss(hidden, head, targets, z_loss_weight=1e-4)
    logits = head(hidden)
    valid = targets != -100
    lse = logits.logsumexp(-1)
    ce = (lse - logits.gather(-1, targets.where(valid, 0).unsqueeze(-1)).squeeze(-1)).where(valid, 0.0).sum()
    z = lse.square().where(valid, 0.0).sum()
    assert output.kd is None and torch.equal(output.ce, ce / 9) and torch.equal(output.z_loss, z / 9)
