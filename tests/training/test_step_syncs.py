"""The training step without host syncs: the same losses, gradients and weights, bit for bit, as the
step that read its numbers every step (kept here as the reference); no number read from the device
inside the step; a non-finite step (or one after it) leaves weights and optimizer state alone; a
run whose divergence is seen only at its next logging step stops as one that looked every step."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch

from distillscale.model import ModelConfig, Transformer
from distillscale.training.distributed import Distributed
from distillscale.training.parallel import TrainingModel
from distillscale.training.losses import LossOutput
from distillscale.training.objective import SupervisedObjective
from distillscale.training.optim import build_optimizer
from distillscale.training.parallel import full_tensor
from distillscale.training.step import DivergenceWatch, train_step

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

VOCAB = 64
TINY = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--vocab-size", "320", "--max-bytes", "300k",
        "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "4k", "--tokens", "10k", "--device", "cpu")


def reference_step(model, objective, optimizer, micro_batches, grad_clip, group, autocast):
    """train_step as it was before the syncs went: (loss, ce, kd, grad_norm) read every step."""
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, dtype=torch.float64)
    for index, (inputs, targets, *extras) in enumerate(micro_batches):
        is_last = index == len(micro_batches) - 1
        with contextlib.nullcontext() if is_last else model.no_sync():
            with autocast:
                output = objective(model, inputs, targets, *extras)
            (output.loss / len(micro_batches)).backward()
        kd = output.kd if output.kd is not None else torch.zeros_like(output.ce)
        totals += torch.stack([output.loss.detach(), output.ce.detach(), kd.detach()]).double().cpu()
    totals = group.mean(totals / len(micro_batches))
    parameters = [p for group_ in optimizer.param_groups for p in group_["params"]]
    grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf))
    loss, grad_norm = totals[0].item(), grad_norm.item()
    if math.isfinite(loss) and math.isfinite(grad_norm):
        optimizer.step()
    return (loss, totals[1].item(), totals[2].item() if output.kd is not None else None, grad_norm)


class WithKD(SupervisedObjective):
    """CE plus a distillation-like term (so the kd slot carries a number)."""

    def __call__(self, model, inputs, targets):
        out = super().__call__(model, inputs, targets)
        kd = model.hidden_states(inputs).square().mean()
        return LossOutput(loss=out.loss + 0.1 * kd, ce=out.ce, kd=kd.detach(), z_loss=out.z_loss)


def setup(seed=0):
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(n_layers=2, aspect_ratio=16, head_dim=16, vocab_size=VOCAB, max_seq_len=16))
    return model, build_optimizer(model, lr=3e-2, weight_decay=1e-4)


def batches(step, micro=2):
    generator = torch.Generator().manual_seed(step)
    return [tuple(torch.randint(0, VOCAB, (4, 16), generator=generator) for _ in range(2)) for _ in range(micro)]


@pytest.mark.parametrize("objective", [SupervisedObjective(z_loss_weight=1e-4), WithKD(z_loss_weight=1e-4)],
                         ids=["supervised", "with-kd"])
def test_the_step_without_syncs_gives_the_same_numbers_and_weights_bit_for_bit(objective):
    group, autocast = Distributed(), torch.autocast("cpu", enabled=False)
    (model_a, optimizer_a), (model_b, optimizer_b) = setup(), setup()
    for step in range(6):
        expected = reference_step(TrainingModel(model_a, group), objective, optimizer_a, batches(step), 1.0, group,
                                  autocast)
        got = train_step(TrainingModel(model_b, group), objective, optimizer_b, batches(step), 1.0, group, autocast)
        assert (got.loss, got.ce, got.kd, got.grad_norm) == expected
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)


def test_the_step_reads_no_number_from_the_device(monkeypatch):
    model, optimizer = setup()
    group, autocast = Distributed(), torch.autocast("cpu", enabled=False)
    watch = DivergenceWatch(group.device)

    def host_sync(*args, **kwargs):
        raise AssertionError("the step waited for the device")

    with monkeypatch.context() as patch:
        for name in ("item", "tolist", "cpu", "__bool__", "__float__", "__int__"):
            patch.setattr(torch.Tensor, name, host_sync)
        for step in range(3):
            result = train_step(TrainingModel(model, group), SupervisedObjective(), optimizer, batches(step), 1.0,
                                group, autocast, halted=watch.halted)
            watch.record(step + 1, result)
    assert result.finite and watch.first_bad() is None


class NaNAt(SupervisedObjective):
    def __init__(self, bad_calls):
        super().__init__()
        self.calls, self.bad_calls = 0, bad_calls

    def __call__(self, model, inputs, targets):
        out = super().__call__(model, inputs, targets)
        self.calls += 1
        return out if self.calls not in self.bad_calls else LossOutput(out.loss * math.nan, out.ce, None, out.z_loss)


def snapshot(model, optimizer):
    state = optimizer.state_dict()["state"]
    return ([p.detach().clone() for p in model.parameters()],
            [{key: value.clone() for key, value in entry.items()} for entry in state.values()])


def same(a, b) -> bool:
    return (all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
            and all(entry_a.keys() == entry_b.keys() and all(torch.equal(entry_a[k], entry_b[k]) for k in entry_a)
                    for entry_a, entry_b in zip(a[1], b[1])))


def test_a_non_finite_step_and_the_steps_after_it_leave_weights_and_optimizer_state_alone():
    model, optimizer = setup()
    group, autocast = Distributed(), torch.autocast("cpu", enabled=False)
    objective, watch = NaNAt(bad_calls={3}), DivergenceWatch(group.device)
    results = []
    for step in range(5):  # calls 1, 2 train; 3 is NaN; 4, 5 are finite but come after it
        if step == 2:
            before = snapshot(model, optimizer)
        results.append(train_step(TrainingModel(model, group), objective, optimizer, batches(step, micro=1), 1.0,
                                  group, autocast, halted=watch.halted))
        watch.record(step + 1, results[-1])
    assert same(before, snapshot(model, optimizer))  # Adam's step counts too
    assert results[3].finite and results[4].finite
    bad_step, bad = watch.first_bad()
    assert bad_step == 3 and math.isnan(bad.loss) and bad.kd is None


def not_json(constant: str):
    raise AssertionError(f"{constant} is not JSON: result.json and metrics.jsonl must be valid JSON")


def test_divergence_seen_at_the_next_logging_step_stops_the_run_as_looking_every_step_does(cli, tmp_path):
    results = {}
    for log_every in (1, 7):
        run = tmp_path / f"log{log_every}"
        code, _, err = cli("train", "--out", run, *TINY, "--lr", "1e5", "--warmup-steps", "0",
                           "--log-every", log_every, "--save-every", "1000")
        assert code == 1 and "training diverged at step" in err
        results[log_every] = json.loads((run / "result.json").read_text(), parse_constant=not_json)
        for line in (run / "metrics.jsonl").read_text().splitlines():
            json.loads(line, parse_constant=not_json)
    every, later = results[1], results[7]
    assert later["status"] == "diverged" and later["diverged_at_step"] == every["diverged_at_step"]
    assert later["steps"] == every["steps"] == every["diverged_at_step"] - 1
    assert later["diverged_loss"] == every["diverged_loss"]  # a number, or "NaN" / "Infinity" (valid JSON)
    from distillscale.training.records import RunResult
    loaded = RunResult.load(tmp_path / "log7" / "result.json")  # read back as the number it was
    assert repr(loaded.diverged_loss) == repr(float(later["diverged_loss"]))


def test_a_step_averages_over_its_trained_tokens_not_over_its_micro_batches():
    """Item 8: an on-policy micro-batch trains on the C sampled tokens of each window, a corpus one on
    all seq_len positions; averaging the micro-batches' means weighed each on-policy token seq_len / C
    times more than a corpus token. The step is the token average that one batch of both gives."""
    from distillscale.training.losses import IGNORE_INDEX

    group, autocast = Distributed(), torch.autocast("cpu", enabled=False)
    (inputs_a, targets_a), (inputs_b, targets_b) = batches(0)
    targets_a = targets_a.clone()
    targets_a[:, :-2] = IGNORE_INDEX  # 2 trained positions of 16, as an on-policy window with C = 2
    objective = SupervisedObjective(z_loss_weight=1e-4)

    def gradients(micro_batches):
        model, _ = setup()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        result = train_step(TrainingModel(model, group), objective, optimizer, micro_batches, 0.0, group, autocast)
        return result, torch.cat([p.grad.flatten() for p in model.parameters()])

    split, split_grads = gradients([(inputs_a, targets_a), (inputs_b, targets_b)])
    whole, whole_grads = gradients([(torch.cat([inputs_a, inputs_b]), torch.cat([targets_a, targets_b]))])
    assert split.loss == pytest.approx(whole.loss, rel=1e-6) and split.ce == pytest.approx(whole.ce, rel=1e-6)
    assert (split_grads - whole_grads).norm() <= 1e-5 * whole_grads.norm()  # float32 summation order only
    model, _ = setup()  # the mean of the micro-batches' means, as before
    for inputs, targets in ((inputs_a, targets_a), (inputs_b, targets_b)):
        (objective(model, inputs, targets).loss / 2).backward()
    means = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert (means - whole_grads).norm() > 100 * (split_grads - whole_grads).norm()
