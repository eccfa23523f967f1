"""distillscale.regime: Ghost Batch Normalization, LR scaling, regime adaptation, weight distance."""

import math

import pytest
import torch
from torch import nn

from distillscale.errors import UserError
from distillscale.regime import (AdaptedRegime, GhostBatchNorm, WeightDistance, adapt_regime,
                                 convert_to_ghost_batch_norm, scale_learning_rate)

SHAPES = [(2, 5), (3, 5, 7), (4, 5, 3, 3)]  # (N, C), (N, C, L), (N, C, H, W) per sample count


def batch_norm_for(shape, **kwargs):
    return (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], **kwargs)


def random_input(batch_size, shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, *shape[1:], generator=generator, dtype=torch.float64) * 3 + 1)


def randomize_affine(*modules):
    generator = torch.Generator().manual_seed(1)
    weight = torch.rand(modules[0].num_features, generator=generator, dtype=torch.float64) + 0.5
    bias = torch.randn(modules[0].num_features, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        for module in modules:
            module.weight.copy_(weight)
            module.bias.copy_(bias)


def forward_backward(forward, norm, x):
    """forward(x), and gradients of a non-trivial loss w.r.t. x and the weight and bias of `norm`."""
    norm.zero_grad()
    x = x.clone().requires_grad_(True)
    out = forward(x)
    loss = (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view(out.shape)).sum()
    loss.backward()
    return out.detach(), x.grad, norm.weight.grad, norm.bias.grad


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_ghost_batch_norm_is_batch_norm_when_ghost_covers_the_batch(shape, momentum):
    ghost = GhostBatchNorm(shape[1], ghost_batch_size=64, momentum=momentum).double()
    reference = batch_norm_for(shape, momentum=momentum).double()
    randomize_affine(ghost, reference)
    for step, batch_size in enumerate((64, 17)):  # two steps: the running statistics compound
        x = random_input(batch_size, shape, seed=step)
        got = forward_backward(ghost, ghost, x)
        for got, want in zip(got, forward_backward(reference, reference, x)):
            assert torch.equal(got, want)
        assert torch.equal(ghost.running_mean, reference.running_mean)
        assert torch.equal(ghost.running_var, reference.running_var)
        assert ghost.num_batches_tracked == reference.num_batches_tracked == step + 1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("batch_size", [48, 53])  # whole ghost batches; a smaller remainder
def test_ghost_batch_norm_equals_batch_norm_applied_per_ghost_batch(shape, momentum, batch_size):
    ghost = GhostBatchNorm(shape[1], ghost_batch_size=8, momentum=momentum).double()
    reference = batch_norm_for(shape, momentum=momentum).double()
    randomize_affine(ghost, reference)
    def per_ghost_batch(x):
        return torch.cat([reference(chunk) for chunk in x.split(8)])

    for step in range(2):
        x = random_input(batch_size, shape, seed=step)
        got = forward_backward(ghost, ghost, x)
        want = forward_backward(per_ghost_batch, reference, x)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ghost.running_mean, reference.running_mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ghost.running_var, reference.running_var, rtol=1e-10, atol=1e-12)
        assert ghost.num_batches_tracked == reference.num_batches_tracked
    assert ghost.num_batches_tracked == 2 * math.ceil(batch_size / 8)


def test_ghost_batch_norm_statistics_are_per_ghost_batch():
    # Two ghost batches with very different offsets are each normalised to mean 0, variance 1.
    x = torch.cat([torch.randn(16, 3), torch.randn(16, 3) * 10 + 100])
    out = GhostBatchNorm(3, ghost_batch_size=16, affine=False)(x)
    for half in out.split(16):
        torch.testing.assert_close(half.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(half.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_ghost_batch_norm_eval_uses_running_statistics_per_sample():
    ghost = GhostBatchNorm(4, ghost_batch_size=8)
    for seed in range(3):
        ghost(random_input(40, (1, 4)).float() + seed)
    ghost.eval()
    before = ghost.running_mean.clone(), ghost.num_batches_tracked.clone()
    x = random_input(10, (1, 4), seed=5).float()
    expected = ((x - ghost.running_mean) / torch.sqrt(ghost.running_var + ghost.eps)
                * ghost.weight + ghost.bias)
    torch.testing.assert_close(ghost(x), expected)
    torch.testing.assert_close(ghost(x[:3]), expected[:3])  # independent of the other samples
    assert torch.equal(ghost.running_mean, before[0]) and ghost.num_batches_tracked == before[1]


def test_ghost_batch_norm_rejects_bad_input():
    with pytest.raises(ValueError, match="expected 2D, 3D or 4D input"):
        GhostBatchNorm(3)(torch.randn(2, 3, 2, 2, 2))
    with pytest.raises(UserError, match="ghost_batch_size must be a positive integer"):
        GhostBatchNorm(3, ghost_batch_size=0)
    with pytest.raises(ValueError, match="remainder of 1 after ghost batches of 4"):
        GhostBatchNorm(3, ghost_batch_size=4)(torch.randn(9, 3))


def test_convert_keeps_parameters_buffers_mode_and_outputs():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6)))
    model.double()
    model(torch.randn(32, 2, 5, dtype=torch.float64))  # move the running statistics off their init
    model.eval()
    x = torch.randn(8, 2, 5, dtype=torch.float64)
    expected = model(x)
    old_bn = model[1]
    state = {k: v.clone() for k, v in model.state_dict().items()}

    converted = convert_to_ghost_batch_norm(model, ghost_batch_size=16)

    assert converted is model
    assert isinstance(model[1], GhostBatchNorm) and isinstance(model[3][2], GhostBatchNorm)
    assert model[1].ghost_batch_size == 16 and not model[1].training
    assert model[1].weight is old_bn.weight and model[1].running_var is old_bn.running_var
    assert model[1].running_mean.dtype == torch.float64
    assert state.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_convert_a_bare_batch_norm_and_refuse_untracked_statistics():
    bn2d = nn.BatchNorm2d(3, momentum=None, eps=1e-3)
    ghost = convert_to_ghost_batch_norm(bn2d, ghost_batch_size=2)
    assert isinstance(ghost, GhostBatchNorm) and ghost.momentum is None and ghost.eps == 1e-3
    assert ghost.training
    with pytest.raises(UserError, match="track_running_stats=False"):
        convert_to_ghost_batch_norm(nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False)))


@pytest.mark.parametrize("rule, expected", [("sqrt", 0.4), ("linear", 1.6), ("none", 0.1)])
def test_scale_learning_rate_known_cases(rule, expected):
    assert scale_learning_rate(0.1, 4096, 256, rule) == pytest.approx(expected)
    assert scale_learning_rate(0.4, 256, 4096, "sqrt") == pytest.approx(0.1)


@pytest.mark.parametrize("args, fragment", [
    ((0.1, 512, 64, "cube"), "unknown learning-rate scaling rule 'cube'"),
    ((-0.1, 512, 64), "learning rate must be a positive finite number"),
    ((float("nan"), 512, 64), "learning rate must be a positive finite number"),
    ((0.1, 0, 64), "batch_size must be a positive integer"),
    ((0.1, 512, 6.4), "reference_batch_size must be a whole number"),
])
def test_scale_learning_rate_rejects_bad_input(args, fragment):
    with pytest.raises(UserError, match=fragment):
        scale_learning_rate(*args)


def test_adapt_regime_epochs_keeps_the_number_of_updates():
    adapted = adapt_regime(100, [30, 60], batch_size=1024, reference_batch_size=256, unit="epochs")
    assert adapted == AdaptedRegime(total_steps=400, milestones=(120, 240), factor=4.0,
                                    unit="epochs")
    samples = 8192
    reference_updates = 100 * samples // 256
    assert adapted.total_steps * samples // 1024 == reference_updates
    assert adapt_regime(3, [1], 384, 256, unit="epochs").total_steps == pytest.approx(4.5)


def test_adapt_regime_steps_are_whole_and_default():
    # 1000 steps at batch 4096 = 16000 steps at batch 256 with the same data: adaptation restores them.
    adapted = adapt_regime(1000, [500, 750], batch_size=4096, reference_batch_size=256)
    assert (adapted.unit, adapted.total_steps, adapted.milestones) == ("steps", 16000, (8000, 12000))
    assert adapt_regime(10, [3], 96, 64, unit="steps").milestones == (4,)  # 4.5 rounds to even


@pytest.mark.parametrize("args, kwargs, fragment", [
    ((100, [30, 120], 512, 64), {}, "milestones must lie strictly between 0 and"),
    ((100, [60, 30], 512, 64), {}, "milestones must be strictly increasing"),
    ((0, [], 512, 64), {}, "schedule length must be a positive number of steps"),
    ((100, [], 512, 64), {"unit": "tokens"}, "unknown schedule unit 'tokens'"),
    ((100, [], 512, -1), {}, "reference_batch_size must be a positive integer"),
])
def test_adapt_regime_rejects_bad_input(args, kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        adapt_regime(*args, **kwargs)


def test_weight_distance_global_and_per_layer():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[1].bias.requires_grad_(False)  # frozen parameters are not tracked
    tracker = WeightDistance(model)
    assert tracker.compute().total == 0.0
    with torch.no_grad():
        model[0].weight += 1.0  # 4 entries moved by 1 -> distance 2
        model[1].weight[0, 0] -= 1.5
        model[1].bias += 100.0
    reading = tracker.update(step=7)
    assert reading.total == pytest.approx(2.5)
    assert reading.per_layer == pytest.approx({"0": 2.0, "1": 1.5})
    assert tracker.history == [reading] and reading.step == 7


def test_weight_distance_builds_no_graph_and_grows_with_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    tracker = WeightDistance(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    for step in range(1, 21):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step in (1, 20):
            tracker.update(step)
    first, last = tracker.history
    assert 0 < first.total < last.total
    assert set(last.per_layer) == {"0", "1", "3"}
    assert isinstance(last.total, float)


def test_weight_distance_resumes_from_a_saved_initial_state():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    tracker = WeightDistance(model)
    with torch.no_grad():
        model[1].weight += 2.0  # 3 entries -> distance sqrt(12)
    resumed = WeightDistance(model, initial={k: v.clone() for k, v in tracker.initial.items()})
    assert resumed.compute().total == pytest.approx(math.sqrt(12))
    assert resumed.compute().per_layer == tracker.compute().per_layer
    with pytest.raises(ValueError, match="exactly the model's trainable parameters"):
        WeightDistance(model, initial={"0.weight": tracker.initial["0.weight"]})
