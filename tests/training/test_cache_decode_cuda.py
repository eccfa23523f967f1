"""On CUDA (bench/gpu/gpu_verify.sh's tests stage): a logit cache's records copied as stored through the
background reader (pinned, non-blocking) and decoded on the GPU give the host decode's ids exactly and
its loss to float32 rounding (issue 65 item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillscale.training.logit_cache import CachedDistillationObjective, CachedWindowSampler
from distillscale.training.losses import DistillationLossConfig
from distillscale.training.prefetch import BatchPrefetcher
from tests.training.test_cache_decode import synthetic_cache

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="decoding on the GPU needs CUDA")


def test_records_decoded_on_the_gpu_train_as_the_host_decoded_ones(tmp_path):
    cuda = torch.device("cuda")
    vocab, k, seq_len = 8192, 128, 64
    cache = synthetic_cache(tmp_path / "cache", vocab, k, seq_len, windows=8)
    tokens = np.random.default_rng(0).integers(0, vocab, cache.tokens + 1).astype(np.uint16)
    host = CachedWindowSampler(cache, tokens, batch_size=4, seed=0)
    device = CachedWindowSampler(cache, tokens, batch_size=4, seed=0, decode="device")
    with BatchPrefetcher(lambda step: [device.batch(step)], 0, 3, cuda) as reader:
        for step in range(3):
            ((inputs, targets, raw),) = reader.next(step)
            assert raw.is_cuda and raw.dtype == torch.uint8
            ids, values = cache.predictions_from_bytes(raw)
            _, _, host_ids, host_values = host.batch(step)
            assert torch.equal(ids.cpu(), host_ids.long())
            torch.testing.assert_close(values.cpu(), host_values, rtol=0, atol=2e-6)
    torch.manual_seed(0)
    head = torch.nn.Linear(16, vocab, bias=False).to(cuda)
    model = type("Student", (), {"hidden_states": staticmethod(
        lambda x: torch.tanh(x.unsqueeze(-1).float() / 1000.0 * torch.ones(16, device=cuda))), "head": head})()
    objective = CachedDistillationObjective(cache, DistillationLossConfig(kd_weight=0.5, top_k=k, chunk_size=64), "")
    inputs, targets, ids, values = (t.to(cuda) for t in host.batch(0))
    _, _, raw = device.batch(0)
    exact = objective(model, inputs, targets, ids, values)
    torch.testing.assert_close(objective(model, inputs, targets, raw.to(cuda)).loss, exact.loss, rtol=1e-5, atol=0)
