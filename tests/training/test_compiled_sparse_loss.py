"""`sparse_distillation_loss(compile=True)`: the loss of a student fed from a top-k logit cache, with its
per-chunk terms and closed-form gradient through torch.compile. Eager, a chunk's loss is one kernel per
operation (dozens); compiled, the same numbers come from a few fused kernels. Eager stays the reference:
value and gradients agree to float rounding, and the compiled graph's kernels are counted from its code."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from distillscale.training import losses
from distillscale.training.losses import IGNORE_INDEX, DistillationLossConfig, sparse_distillation_loss, tail_log_mass

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.slow]

VOCAB, TOKENS, STORED, WIDTH = 512, 64, 16, 32  # one chunk of 64 tokens: one compiled graph for both tests
CONFIG = DistillationLossConfig(kd_weight=0.7, z_loss_weight=1e-3, top_k=STORED, chunk_size=TOKENS)
# Operations that launch no kernel (views and metadata).
VIEWS = {"view", "_unsafe_view", "unsqueeze", "squeeze", "slice", "select", "expand", "t", "transpose",
         "permute", "alias", "as_strided", "detach", "reshape", "split", "unbind", "lift_fresh"}


class LaunchCount(TorchDispatchMode):
    """The ATen operations run under it that compute something (one eager kernel each)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            self.names.append(name)
        return func(*args, **(kwargs or {}))


def _chunk_inputs():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(TOKENS, VOCAB, generator=generator)
    values, ids = (2 * torch.randn(TOKENS, VOCAB, generator=generator)).log_softmax(-1).topk(STORED, dim=-1)
    rows = torch.cat([ids.float(), values, tail_log_mass(values)], dim=-1)  # as sparse_distillation_loss packs
    targets = torch.randint(0, VOCAB, (TOKENS,), generator=generator)
    targets[::7] = IGNORE_INDEX
    objective = losses._Objective(ce_weight=1 - CONFIG.kd_weight, kd_weight=CONFIG.kd_weight,
                                  z_loss_weight=CONFIG.z_loss_weight, top_k=STORED, teacher_rows="top-k")
    return objective, logits, targets, rows, (targets != IGNORE_INDEX).sum()


def test_a_chunks_sparse_loss_runs_in_a_few_compiled_kernels_where_eager_launches_dozens():
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    objective, logits, targets, rows, n_valid = _chunk_inputs()
    with LaunchCount() as eager:
        eager_sums, eager_grad = losses._chunk_values_and_grad(objective, logits, targets, rows, n_valid, True)
    compiled = losses._compiled(losses._chunk_values_and_grad, dynamic=False)  # the one the loss calls
    (sums, grad), code = run_and_get_code(compiled, objective, logits, targets, rows, n_valid, True)
    torch.testing.assert_close(sums, eager_sums, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-8)
    call = "\n".join(code).split("def call(", 1)[1]
    fused = re.findall(r"^\s+(?:cpp|triton)_\w+\(", call, flags=re.MULTILINE)
    fallbacks = re.findall(r"^\s+(?:aten|extern_kernels)\.\w+", call, flags=re.MULTILINE)
    assert len(eager.names) >= 40, eager.names  # the reference: a kernel per operation
    assert 1 <= len(fused) and len(fused) + len(fallbacks) <= 6, (fused, fallbacks)


def test_the_compiled_sparse_loss_matches_the_eager_one_in_value_and_gradients():
    generator = torch.Generator().manual_seed(1)
    _, _, targets, _, _ = _chunk_inputs()
    values, ids = (2 * torch.randn(TOKENS, VOCAB, generator=generator)).log_softmax(-1).topk(STORED, dim=-1)
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        hidden = torch.randn(TOKENS, WIDTH, requires_grad=True)
        head = torch.nn.Linear(WIDTH, VOCAB, bias=False)
        output = sparse_distillation_loss(hidden, head, ids, values, targets, CONFIG, compile=compile)
        output.loss.backward()
        results.append((output, hidden.grad, head.weight.grad))
    (eager, eager_hidden, eager_head), (fused, fused_hidden, fused_head) = results
    for a, b in ((fused.loss, eager.loss), (fused.ce, eager.ce), (fused.kd, eager.kd), (fused.z_loss, eager.z_loss)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused_hidden, eager_hidden, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused_head, eager_head, rtol=1e-5, atol=1e-7)


def test_the_cache_fed_objective_passes_compile_and_distill_sets_it_from_compile():
    import inspect

    from distillscale.training.logit_cache import CachedDistillationObjective, distill

    assert CachedDistillationObjective(None, CONFIG, "", compile=True).compile
    assert not CachedDistillationObjective(None, CONFIG, "").compile
    assert "compile=config.compile" in inspect.getsource(distill.distill_from_cache)
