"""Device choice: DISTILLSCALE_DEVICE steers `--device auto` (the suite pins it to the CPU, so CPU-exact
comparisons hold on GPU machines too); the CUDA paths of the training loop, tested where CUDA is."""

from __future__ import annotations

import math

import pytest
import torch

from distillscale.errors import UserError
from distillscale.training.distributed import DEVICE_ENV, Distributed, resolve_device
from distillscale.training.parallel import TrainingModel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_the_suite_runs_auto_on_the_cpu():
    assert resolve_device("auto") == torch.device("cpu")


def test_the_device_variable_steers_auto_only(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(UserError, match="DISTILLSCALE_DEVICE='tpu' is not a device: set it to cpu or cuda"):
        resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit --device wins
    monkeypatch.delenv(DEVICE_ENV)
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected


@cuda
def test_auto_means_cuda_when_asked_for_on_a_gpu_machine(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert resolve_device("auto") == torch.device("cuda", 0)


@cuda
def test_the_background_reader_pins_and_copies_to_the_gpu():
    from distillscale.training.prefetch import BatchPrefetcher

    def read(step):
        return [(torch.full((2, 3), step), torch.arange(4) + step)]

    device = torch.device("cuda", 0)
    with BatchPrefetcher(read, 0, 5, device, depth=2) as batches:
        for step in range(5):
            (got,) = batches.next(step)
            assert all(t.device == device for t in got)
            for a, b in zip(got, read(step)[0]):
                assert torch.equal(a.cpu(), b)


@cuda
def test_a_non_finite_step_on_the_gpu_is_skipped_on_the_device():
    from distillscale.model import ModelConfig, Transformer
    from distillscale.training.losses import LossOutput
    from distillscale.training.objective import SupervisedObjective
    from distillscale.training.optim import build_optimizer
    from distillscale.training.step import DivergenceWatch, train_step

    class NaNLoss(SupervisedObjective):
        def __call__(self, model, inputs, targets):
            out = super().__call__(model, inputs, targets)
            return LossOutput(out.loss * math.nan, out.ce, None, out.z_loss)

    device = torch.device("cuda", 0)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layers=1, aspect_ratio=32, head_dim=32, vocab_size=64, max_seq_len=8)).to(device)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    group, watch = Distributed(device=device), DivergenceWatch(device)
    batch = [tuple(torch.randint(0, 64, (2, 8), device=device) for _ in range(2))]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    train_step(TrainingModel(model, group), SupervisedObjective(), optimizer, batch, 1.0, group, autocast)
    before = [p.detach().clone() for p in model.parameters()]
    result = train_step(TrainingModel(model, group), NaNLoss(), optimizer, batch, 1.0, group, autocast,
                        halted=watch.halted)
    watch.record(2, result)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert watch.first_bad()[0] == 2 and not result.finite
    assert not hasattr(optimizer, "found_inf")  # the flag is the step's only
