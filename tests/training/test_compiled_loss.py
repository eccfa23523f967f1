"""`cross_entropy_loss(compile=True)`: the supervised loss's terms through torch.compile (issue 65: a small
model's step is mostly its loss's passes over the [tokens, V] logits). The same loss and gradients as the
eager reference up to float rounding, one compiled graph for a run's steps, and the recipe's --compile
reaches it."""

import pytest
import torch

from distillscale.training.losses import IGNORE_INDEX, cross_entropy_loss
from distillscale.training.objective import SupervisedObjective

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _inputs(seed: int, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the head's initialisation
    hidden = torch.randn(96, 16, generator=generator, dtype=dtype).requires_grad_()
    head = torch.nn.Linear(16, 40, bias=False).to(dtype)
    targets = torch.randint(0, 40, (96,), generator=generator)
    targets[::7] = IGNORE_INDEX  # ignored positions stay out of both
    return hidden, head, targets


def _loss_and_grads(compile: bool, seed: int, dtype=torch.float32):
    hidden, head, targets = _inputs(seed, dtype)
    output = cross_entropy_loss(hidden, head, targets, z_loss_weight=1e-2, compile=compile)
    output.loss.backward()
    return output, hidden.grad, head.weight.grad


def test_the_compiled_loss_matches_the_eager_reference_in_value_gradients_and_components():
    torch._dynamo.reset()
    for seed in (0, 1):
        eager, eager_hidden, eager_head = _loss_and_grads(False, seed)
        fused, fused_hidden, fused_head = _loss_and_grads(True, seed)
        assert fused.loss.item() == pytest.approx(eager.loss.item(), rel=1e-5)
        assert fused.ce.item() == pytest.approx(eager.ce.item(), rel=1e-5)
        assert fused.z_loss.item() == pytest.approx(eager.z_loss.item(), rel=1e-5)
        assert fused.kd is None and int(fused.tokens) == int(eager.tokens) == 96 - len(range(0, 96, 7))
        torch.testing.assert_close(fused_hidden, eager_hidden, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(fused_head, eager_head, rtol=1e-5, atol=1e-7)


def test_a_runs_steps_reuse_one_compiled_graph():
    """Each step makes a fresh objective record; the compiled loss must not recompile for it."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    for seed in range(4):
        _loss_and_grads(True, seed)
    assert counters["stats"]["unique_graphs"] == 1


def test_the_compiled_loss_upcasts_bf16_logits_as_the_eager_one_does():
    torch._dynamo.reset()
    eager, eager_hidden, _ = _loss_and_grads(False, 3, torch.bfloat16)
    fused, fused_hidden, _ = _loss_and_grads(True, 3, torch.bfloat16)
    assert fused.loss.dtype == eager.loss.dtype == torch.float32
    assert fused.loss.item() == pytest.approx(eager.loss.item(), rel=1e-4)
    torch.testing.assert_close(fused_hidden.float(), eager_hidden.float(), rtol=2e-2, atol=1e-3)


def test_the_supervised_objective_passes_compile_and_the_recipe_sets_it_from_compile():
    import inspect

    from distillscale.training import recipe

    assert SupervisedObjective(compile=True).compile and not SupervisedObjective().compile
    assert "SupervisedObjective(z_loss_weight=config.z_loss, compile=config.compile)" in inspect.getsource(recipe)
