"""The optimizer step of FSDP-sharded parameters on their local shards (`training.sharded_step`): the
same first steps as the unsharded model's fused AdamW, no operation dispatched through DTensor in the
clip and update, and a non-finite step skipped on the device. One rank, gloo, in this process (the
two-rank run against one process is test_fsdp.py's)."""

from __future__ import annotations

import contextlib
import socket

import pytest
import torch
import torch.distributed as dist
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from distillscale.model import ModelConfig, Transformer
from distillscale.training.distributed import Distributed
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import build_optimizer
from distillscale.training.parallel import TrainingModel
from distillscale.training.step import _clip_and_update, train_step

CONFIG = ModelConfig(n_layers=2, aspect_ratio=16, head_dim=16, vocab_size=64, max_seq_len=16)
STEPS = 4


class OneRank(Distributed):
    @property
    def enabled(self) -> bool:  # a one-rank process group: the model is sharded for real
        return True


@pytest.fixture
def one_rank_group():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield OneRank(rank=0, world_size=1, device=torch.device("cpu"))
    finally:
        dist.destroy_process_group()


class DTensorOps(TorchDispatchMode):
    """The operations run under it that take a DTensor (each dispatched through sharding propagation)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.distributed.tensor import DTensor

        if any(isinstance(leaf, DTensor) for leaf in pytree.tree_leaves((args, kwargs))):
            self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _batches(steps: int, micro: int = 2):
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, CONFIG.vocab_size, (steps, micro, 4, 17), generator=generator)
    return [[(window[:, :-1], window[:, 1:]) for window in step] for step in tokens]


def _train(group: Distributed, parallel: str, grad_clip: float = 0.05):
    torch.manual_seed(0)
    model = Transformer(CONFIG)
    trained = TrainingModel(model, group, parallel=parallel)
    optimizer = build_optimizer(model, lr=3e-3, weight_decay=1e-2)
    objective = SupervisedObjective(z_loss_weight=1e-3)
    losses = [train_step(trained, objective, optimizer, batch, grad_clip, group, contextlib.nullcontext())
              for batch in _batches(STEPS)]
    weights = {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
               for name, p in model.named_parameters()}
    return [(r.loss, r.grad_norm) for r in losses], weights, trained, optimizer, objective


def test_the_sharded_step_matches_the_unsharded_fused_adamw_over_the_first_steps(one_rank_group):
    plain_results, plain_weights, *_ = _train(Distributed(device=torch.device("cpu")), "ddp")
    sharded_results, sharded_weights, *_ = _train(one_rank_group, "fsdp")
    # One rank: the same arithmetic in the same order, so the same bits (the norm is reduced as DTensor
    # reduces it; a sum of squares instead differed by 1e-7 relative and the weights by 2e-6).
    assert sharded_results == plain_results
    assert plain_results[0][1] > 0.05  # clipping was active: the clip is part of what agrees
    for name, weight in plain_weights.items():
        assert torch.equal(sharded_weights[name], weight), name


def test_the_sharded_clip_and_update_dispatch_nothing_through_dtensor(one_rank_group):
    _, _, trained, optimizer, objective = _train(one_rank_group, "fsdp")
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    inputs, targets = _batches(1, micro=1)[0][0]
    objective(trained, inputs, targets).loss.backward()
    totals = torch.zeros(3, dtype=torch.float64)
    with DTensorOps() as seen:
        result = _clip_and_update(optimizer, parameters, totals, 1.0, False, None)
    assert seen.names == []
    assert result.finite and not isinstance(result.values, type(parameters[0]))


def test_a_non_finite_sharded_step_leaves_weights_and_state_as_they_were(one_rank_group):
    _, _, trained, optimizer, objective = _train(one_rank_group, "fsdp")
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    before = [p.to_local().clone() for p in parameters]
    moments = [optimizer.state[p]["exp_avg"].to_local().clone() for p in parameters]
    steps = [optimizer.state[p]["step"].clone() for p in parameters]
    inputs, targets = _batches(1, micro=1)[0][0]
    objective(trained, inputs, targets).loss.backward()
    parameters[0].grad.to_local()[0, 0] = float("nan")
    result = _clip_and_update(optimizer, parameters, torch.zeros(3, dtype=torch.float64), 1.0, False, None)
    assert not result.finite
    for p, weight, moment, step in zip(parameters, before, moments, steps):
        assert torch.equal(p.to_local(), weight)
        assert torch.equal(optimizer.state[p]["exp_avg"].to_local(), moment)
        assert torch.equal(optimizer.state[p]["step"], step) and int(step) == STEPS
