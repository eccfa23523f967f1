"""Sampled teacher targets: the unbiased forward-KL estimator (float64: its mean over many draws
is the full-distribution loss and gradient), the record encoding, `cache-logits --targets sampled`
(round trip, corruption, resume after kill -9) and `distill --teacher-cache` from it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from distillscale.training.logit_cache import LogitCache, SampledEncoding
from distillscale.training.logit_cache.objective import (
    empirical_entropy,
    sampled_kd_loss,
)
from distillscale.training.losses import DistillationLossConfig, distillation_loss
from distillscale.training.teachers import find_teacher, load_teacher

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

SEQ_LEN, SAMPLES, MAX_BYTES = 32, 6, "200k"
TEACHER = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--seq-len", str(SEQ_LEN),
           "--batch-size", "8", "--tokens", "4k", "--vocab-size", "320", "--max-bytes", MAX_BYTES,
           "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu")
CACHE = ("--targets", "sampled", "--samples", str(SAMPLES), "--temperature", "1.5", "--seq-len", str(SEQ_LEN),
         "--tokens", "2048", "--shard-tokens", "512", "--batch-size", "16", "--eval-tokens", "1k",
         "--device", "cpu")
STUDENT = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "32", "--tokens", "1k", "--batch-size", "8",
           "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu")


def run_cli(*args) -> None:
    from distillscale.cli import main

    assert main([str(a) for a in args]) == 0


def read_json(path) -> dict:
    return json.loads(path.read_text())


# -- the estimator --------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature, chunk_size", [(1.0, None), (2.0, 4096)])
def test_the_sampled_estimator_is_unbiased_in_value_and_gradient(temperature, chunk_size):
    """Draws = rows: each row holds the same student and teacher logits and its own K samples, so
    the mean loss over the rows is the average of the estimator over `draws` independent draws."""
    generator = torch.Generator().manual_seed(0)
    vocab, samples, draws = 12, 3, 40_000
    teacher_logits = torch.randn(vocab, generator=generator, dtype=torch.float64) * 2
    student_logits = torch.randn(vocab, generator=generator, dtype=torch.float64, requires_grad=True)
    p = (teacher_logits / temperature).softmax(-1)
    ids = torch.multinomial(p.expand(draws, vocab), samples, replacement=True, generator=generator)
    entropy = -(p * p.log()).sum().expand(draws)
    targets = torch.zeros(draws, dtype=torch.long)
    config = DistillationLossConfig(kd_weight=1.0, z_loss_weight=0.0, temperature=temperature,
                                    chunk_size=chunk_size)
    identity = lambda h: h

    estimate = sampled_kd_loss(student_logits.expand(draws, vocab), identity, ids, entropy, targets, config)
    (estimate_grad,) = torch.autograd.grad(estimate.loss, student_logits)
    exact = distillation_loss(student_logits.expand(1, vocab), identity, teacher_logits[None], identity,
                              targets[:1], config)
    (exact_grad,) = torch.autograd.grad(exact.loss, student_logits)

    # Per draw, the estimate is tau^2 (-mean_i log q(x_i) - H) and its gradient tau (q - c / K).
    log_q = (student_logits.detach() / temperature).log_softmax(-1)
    per_draw = temperature ** 2 * (-log_q[ids].mean(-1) - entropy)
    frequencies = torch.zeros(draws, vocab, dtype=torch.float64).scatter_add_(
        1, ids, torch.ones_like(ids, dtype=torch.float64)) / samples
    per_draw_grad = temperature * (log_q.exp() - frequencies)
    assert estimate.kd.item() == pytest.approx(per_draw.mean().item(), rel=1e-10)
    assert torch.allclose(estimate_grad, per_draw_grad.mean(0), rtol=1e-9, atol=1e-12)
    # Unbiased: the mean over the draws is the exact loss and gradient within 4 standard errors.
    value_error = per_draw.std() / draws ** 0.5
    assert abs(estimate.kd - exact.kd) < 4 * value_error, (estimate.kd, exact.kd, value_error)
    grad_error = per_draw_grad.std(0) / draws ** 0.5
    assert torch.all((estimate_grad - exact_grad).abs() < 4 * grad_error + 1e-12)
    # ... and a top-K renormalised teacher at the same K is far off (the bias sampling removes).
    top_k = distillation_loss(student_logits.expand(1, vocab), identity, teacher_logits[None], identity,
                              targets[:1], config.model_copy(update={"top_k": samples}))
    assert abs(top_k.kd - exact.kd) > 20 * value_error


def test_empirical_entropy_counts_repeated_samples():
    ids = torch.tensor([[3, 3, 3, 3], [1, 2, 3, 4], [5, 5, 7, 7]])
    assert torch.allclose(empirical_entropy(ids), torch.tensor([0.0, np.log(4), np.log(2)], dtype=torch.float64))


def test_sampled_loss_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="forward KL"):
        sampled_kd_loss(torch.zeros(2, 5), lambda h: h, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2),
                        torch.zeros(2, dtype=torch.long), DistillationLossConfig(kd="jsd"))


# -- the encoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size, samples", [(320, 6), (32768, 12), (5, 40), (1 << 20, 1)])
def test_sampled_records_round_trip_the_multiset_and_the_entropy_exactly(vocab_size, samples):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, min(vocab_size, 7 if vocab_size > 100 else vocab_size), size=(50, samples))
    ids[::3] = rng.integers(0, vocab_size, size=(len(ids[::3]), samples))  # some rows spread out
    entropy = rng.random(50).astype(np.float32) * 5
    encoding = SampledEncoding(vocab_size, samples)
    records = encoding.encode(ids, entropy)
    assert records.itemsize == encoding.bytes_per_token
    decoded, decoded_entropy = encoding.decode(records)
    assert np.array_equal(decoded, np.sort(ids, axis=1)) and np.array_equal(decoded_entropy, entropy)


def test_sampled_bytes_per_token():
    assert SampledEncoding(512, 12).bytes_per_token == 16
    assert SampledEncoding(32768, 12).bytes_per_token == 25  # uint16 ids + float32: 28


# -- cache-logits --targets sampled ----------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    run_cli("train", "--out", out, *TEACHER)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory, teacher):
    out = tmp_path_factory.mktemp("caches") / "sampled"
    run_cli("cache-logits", "--teacher", teacher, "--out", out, *CACHE)
    return out


def test_the_sampled_cache_holds_draws_from_the_teachers_distribution(cache, teacher):
    manifest = read_json(cache / "cache.json")
    assert manifest["targets"] == "sampled" and manifest["samples"] == SAMPLES
    assert manifest["sampling"] == {"temperature": 1.5, "seed": 0}
    assert manifest["bytes_per_token"] == SampledEncoding(320, SAMPLES).bytes_per_token
    logit_cache = LogitCache(cache)
    assert logit_cache.targets == "sampled" and logit_cache.temperature == 1.5
    windows = np.arange(logit_cache.windows)
    ids, entropy = logit_cache.teacher_predictions(windows)
    assert ids.shape == (len(windows), SEQ_LEN, SAMPLES) and entropy.shape == (len(windows), SEQ_LEN)

    from distillscale.data import DataConfig, prepare_data

    data = prepare_data(DataConfig(tokenizer=teacher / "tokenizer.json", max_bytes=MAX_BYTES), progress=False)
    tokens = torch.from_numpy(data.split("student")[:logit_cache.tokens].astype(np.int64)).view(-1, SEQ_LEN)
    model = load_teacher(find_teacher(teacher), data.vocab_size, torch.device("cpu"), SEQ_LEN)
    with torch.no_grad():
        p = (model.head(model.hidden_states(tokens)) / 1.5).softmax(-1).double()
    assert np.allclose(entropy, -(p * p.log()).sum(-1).numpy(), atol=1e-4)
    # The draws follow p: the mean probability of a drawn id is E_p[p] = sum p^2, over 12k draws.
    drawn = p.gather(-1, torch.from_numpy(ids)).mean().item()
    assert drawn == pytest.approx((p ** 2).sum(-1).mean().item(), rel=0.05)


def test_a_corrupted_sampled_shard_is_refused_then_rebuilt(cli, tmp_path, cache, teacher):
    copy = shutil.copytree(cache, tmp_path / "cache")
    shard = copy / "shard-00002.bin"
    shard.write_bytes(shard.read_bytes()[:-1] + bytes([shard.read_bytes()[-1] ^ 1]))
    code, _, err = cli("distill", "--teacher-cache", copy, "--out", tmp_path / "student", *STUDENT)
    assert code == 2 and "is corrupted (sha256 mismatch)" in err, err
    assert not (tmp_path / "student").exists()
    assert cli("cache-logits", "--teacher", teacher, "--out", copy, *CACHE)[0] == 0
    assert shard.read_bytes() == (cache / "shard-00002.bin").read_bytes()


def test_a_partial_write_left_by_a_killed_run_is_cleared_on_resume(cli, tmp_path, cache, teacher):
    """kill -9 inside an atomic write leaves its temporary file (found by the test below)."""
    copy = shutil.copytree(cache, tmp_path / "cache")
    (copy / "cache.json").unlink()
    (copy / "shard-00001.bin").unlink()
    (copy / ".tmp-k9x2").write_bytes(b"half a shard")
    assert cli("cache-logits", "--teacher", teacher, "--out", copy, *CACHE)[0] == 0
    assert not list(copy.glob(".tmp-*"))
    assert (copy / "shard-00001.bin").read_bytes() == (cache / "shard-00001.bin").read_bytes()


@pytest.mark.slow
def test_cache_logits_resumes_after_kill_9_to_the_uninterrupted_cache(tmp_path, cache, teacher):
    """A real SIGKILL of the `cache-logits` process after its first shard, then the same command."""
    out, reference = tmp_path / "killed", tmp_path / "reference"
    # 64 shards of one window each, one window per forward pass: many small steps to be killed between.
    settings = [*CACHE[:6], "--seq-len", str(SEQ_LEN), "--tokens", "2048", "--shard-tokens", str(SEQ_LEN),
                "--batch-size", "1", "--eval-tokens", "1k", "--device", "cpu"]
    args = [sys.executable, "-c", "import sys; from distillscale.cli import main; sys.exit(main(sys.argv[1:]))",
            "cache-logits", "--teacher", str(teacher), "--out", str(out),
            *settings]
    run_cli("cache-logits", "--teacher", teacher, "--out", reference, *settings)
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(args, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.glob("shard-*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = list(out.glob("shard-*.json"))
    assert finished and not (out / "cache.json").exists(), "the run was not killed mid-way"
    assert len(finished) < 64

    resumed = subprocess.run(args, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert read_json(out / "cache.json")["shards"] == read_json(reference / "cache.json")["shards"]
    for shard in reference.glob("shard-*.bin"):
        assert (out / shard.name).read_bytes() == shard.read_bytes()


# -- distill --teacher-cache from samples ----------------------------------------------------------

def test_distill_from_a_sampled_cache_uses_its_temperature_and_records_it(cli, tmp_path, cache):
    out = tmp_path / "student"
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", out, *STUDENT, "--kd-weight", "0.7")
    assert code == 0, err
    result = read_json(out / "result.json")
    assert result["teacher_cache"]["targets"] == "sampled" and result["teacher_cache"]["samples"] == SAMPLES
    assert result["distillation"]["temperature"] == 1.5 and result["distillation"]["top_k"] is None
    assert result["status"] == "completed" and np.isfinite(result["val_loss"])


@pytest.mark.parametrize("args, message", [
    (("--temperature", "1.0"), "differs from the 1.5 the logit cache"),
    (("--kd", "jsd"), "--kd jsd cannot be estimated"),
    (("--top-k", "4"), "--top-k does not apply"),
    (("--no-top-k-tail",), "--no-top-k-tail does not apply"),
])
def test_distill_refuses_settings_a_sampled_cache_cannot_serve(cli, tmp_path, cache, args, message):
    code, _, err = cli("distill", "--teacher-cache", cache, "--out", tmp_path / "student", *STUDENT, *args)
    assert code == 2 and message in err, err
