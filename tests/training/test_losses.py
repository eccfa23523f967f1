"""Losses against direct formulas (values and gradients, float64), and chunked == naive."""

from __future__ import annotations

import weakref

import pytest
import torch
from pydantic import ValidationError

from distillscale.training.losses import (IGNORE_INDEX, DistillationLossConfig,
                                          cross_entropy_loss, distillation_loss)

N_TOKENS, VOCAB = 37, 11
KINDS = ["forward-kl", "reverse-kl", "jsd"]


def identity(h):
    return h


@pytest.fixture
def logits():
    """Student logits (requiring grad), teacher logits and targets with two ignored positions."""
    gen = torch.Generator().manual_seed(0)
    student = (2 * torch.randn(N_TOKENS, VOCAB, generator=gen, dtype=torch.float64)).requires_grad_()
    teacher = 2 * torch.randn(N_TOKENS, VOCAB, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, VOCAB, (N_TOKENS,), generator=gen)
    targets[[4, 20]] = IGNORE_INDEX
    return student, teacher, targets


# ---- direct formulas: dense probabilities, explicit sums, no shared code with the module ----

def naive_ce(student, targets):
    valid = targets != IGNORE_INDEX
    probs = torch.softmax(student[valid], -1)
    return -torch.log(probs[torch.arange(int(valid.sum())), targets[valid]]).mean()


def naive_z_loss(student, targets):
    valid = targets != IGNORE_INDEX
    return (torch.log(torch.exp(student[valid]).sum(-1)) ** 2).mean()


def truncated(probs, k):
    """Keep each row's k largest probabilities, renormalised; zeros elsewhere."""
    if k is None:
        return probs
    threshold = probs.sort(-1, descending=True).values[:, k - 1:k]
    kept = torch.where(probs >= threshold, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def xlogy_ratio(p, q):
    """sum_a p_a log(p_a / q_a), with 0 log 0 = 0 (and a finite gradient there)."""
    positive = p > 0
    ratio = torch.where(positive, p, torch.ones_like(p)) / q
    return torch.where(positive, p * torch.log(ratio), torch.zeros_like(p)).sum(-1)


def naive_kd(student, teacher, targets, kind, tau, k, beta, tail=True):
    valid = targets != IGNORE_INDEX
    p_s = torch.softmax(student[valid] / tau, -1)
    if k is not None and tail:  # k ids + one "everything else" category, for both distributions
        p_full = torch.softmax(teacher[valid] / tau, -1)
        kept = p_full >= p_full.sort(-1, descending=True).values[:, k - 1:k]
        zero = torch.zeros_like(p_s)
        p_t = torch.cat([torch.where(kept, p_full, zero), (p_full * ~kept).sum(-1, keepdim=True)], -1)
        p_s = torch.cat([torch.where(kept, p_s, zero), (p_s * ~kept).sum(-1, keepdim=True)], -1)
        if kind == "forward-kl":
            div = xlogy_ratio(p_t, p_s)
        elif kind == "reverse-kl":
            div = xlogy_ratio(p_s, p_t)
        else:
            mixture = beta * p_t + (1 - beta) * p_s
            div = beta * xlogy_ratio(p_t, mixture) + (1 - beta) * xlogy_ratio(p_s, mixture)
        return tau ** 2 * div.mean()
    p_t = truncated(torch.softmax(teacher[valid] / tau, -1), k)
    if kind == "forward-kl":
        div = xlogy_ratio(p_t, p_s)
    elif kind == "reverse-kl":
        on_support = torch.where(p_t > 0, p_s, torch.zeros_like(p_s))
        conditional = on_support / on_support.sum(-1, keepdim=True)
        div = xlogy_ratio(conditional, torch.where(p_t > 0, p_t, torch.ones_like(p_t)))
    else:
        mixture = beta * p_t + (1 - beta) * p_s
        div = beta * xlogy_ratio(p_t, mixture) + (1 - beta) * xlogy_ratio(p_s, mixture)
    return tau ** 2 * div.mean()


def grad(loss, tensor):
    return torch.autograd.grad(loss, tensor)[0]


# ---- formulas ----

def test_cross_entropy_with_z_loss_matches_formula(logits):
    student, _, targets = logits
    out = cross_entropy_loss(student, identity, targets, z_loss_weight=0.01)
    expected = naive_ce(student, targets) + 0.01 * naive_z_loss(student, targets)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.ce, naive_ce(student, targets).detach())
    torch.testing.assert_close(out.z_loss, naive_z_loss(student, targets).detach())
    assert out.kd is None
    torch.testing.assert_close(grad(out.loss, student), grad(expected, student))
    # Same as PyTorch's own cross-entropy, which uses the same ignore-index convention.
    plain = cross_entropy_loss(student, identity, targets).loss
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(student, targets))


@pytest.mark.parametrize("top_k,tail", [(None, True), (3, True), (3, False)])
@pytest.mark.parametrize("kind", KINDS)
def test_distillation_loss_matches_formula(logits, kind, top_k, tail):
    student, teacher, targets = logits
    config = DistillationLossConfig(kd=kind, temperature=2.0, kd_weight=0.7, z_loss_weight=0.01,
                                    top_k=top_k, jsd_beta=0.3, chunk_size=None, top_k_tail=tail)
    out = distillation_loss(student, identity, teacher, identity, targets, config)
    kd = naive_kd(student, teacher, targets, kind, 2.0, top_k, 0.3, tail)
    expected = (0.3 * naive_ce(student, targets) + 0.7 * kd
                + 0.01 * naive_z_loss(student, targets))
    torch.testing.assert_close(out.kd, kd.detach())
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(grad(out.loss, student), grad(expected, student))


@pytest.mark.parametrize("kind", KINDS)
def test_kd_is_zero_when_the_student_matches_the_teacher(logits, kind):
    _, teacher, targets = logits
    config = DistillationLossConfig(kd=kind, temperature=3.0)
    out = distillation_loss(teacher, identity, teacher, identity, targets, config)
    assert abs(float(out.kd)) < 1e-12


def test_forward_kl_is_the_papers_soft_cross_entropy_minus_teacher_entropy(logits):
    """docs/science.md 5: L_KD = -sum p_T log p_S; reported as a KL, with the same gradient."""
    student, teacher, targets = logits
    config = DistillationLossConfig(z_loss_weight=0.0, chunk_size=None)
    kl = distillation_loss(student, identity, teacher, identity, targets, config).loss
    valid = targets != IGNORE_INDEX
    p_t = torch.softmax(teacher[valid], -1)
    soft_ce = -(p_t * torch.log_softmax(student[valid], -1)).sum(-1).mean()
    teacher_entropy = -(p_t * torch.log(p_t)).sum(-1).mean()
    torch.testing.assert_close(kl, soft_ce - teacher_entropy)
    assert float(kl.detach()) > 0
    torch.testing.assert_close(grad(kl, student), grad(soft_ce, student))


def test_temperature_squared_scaling_approaches_logit_matching():
    """Hinton et al.: for large tau, tau^2 KL(p_T || p_S) -> mean_a (dz_a - mean dz)^2 / 2 for
    dz = z_T - z_S; without the tau^2 factor the loss would vanish like 1/tau^2."""
    gen = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(2, 5, VOCAB, generator=gen, dtype=torch.float64)
    targets = torch.zeros(5, dtype=torch.long)
    config = DistillationLossConfig(temperature=1000.0, z_loss_weight=0.0, chunk_size=None)
    kd = distillation_loss(student, identity, teacher, identity, targets, config).kd
    gap = teacher - student
    matching = ((gap - gap.mean(-1, keepdim=True)) ** 2).mean(-1).mean() / 2
    torch.testing.assert_close(kd, matching, rtol=1e-3, atol=0)


def test_top_k_without_tail_renormalises_over_the_teachers_k_tokens(logits):
    student, teacher, targets = logits
    valid = targets != IGNORE_INDEX

    def kd(top_k):
        config = DistillationLossConfig(top_k=top_k, chunk_size=None, top_k_tail=False)
        return distillation_loss(student, identity, teacher, identity, targets, config).kd

    # k = 1: the renormalised teacher is one-hot on its argmax, so KD is CE against that token.
    argmax_ce = -torch.log_softmax(student[valid], -1).gather(
        -1, teacher[valid].argmax(-1, keepdim=True)).mean()
    torch.testing.assert_close(kd(1), argmax_ce.detach())
    # k >= V keeps everything.
    torch.testing.assert_close(kd(VOCAB), kd(None))
    torch.testing.assert_close(kd(10 * VOCAB), kd(None))
    assert float(kd(3)) != pytest.approx(float(kd(None)))


# ---- masking and mixing ----

@pytest.mark.parametrize("chunk_size", [None, 8])
def test_ignored_positions_are_left_out_of_loss_and_gradients(logits, chunk_size):
    student, teacher, targets = logits
    ignored = targets == IGNORE_INDEX
    config = DistillationLossConfig(kd_weight=0.5, chunk_size=chunk_size)
    out = distillation_loss(student, identity, teacher, identity, targets, config)
    only_valid = distillation_loss(student[~ignored], identity, teacher[~ignored], identity,
                                   targets[~ignored], config)
    torch.testing.assert_close(out.loss, only_valid.loss)
    assert torch.all(grad(out.loss, student)[ignored] == 0)
    # Garbage at ignored positions (e.g. padding) must not leak into the loss.
    poisoned = student.detach().clone()
    poisoned[ignored] = float("nan")
    poisoned.requires_grad_()
    teacher_poisoned = teacher.clone()
    teacher_poisoned[ignored] = float("inf")
    out = distillation_loss(poisoned, identity, teacher_poisoned, identity, targets, config)
    torch.testing.assert_close(out.loss.detach(), only_valid.loss.detach())
    if chunk_size:  # the closed-form gradient is masked too (autograd's would be 0 * nan there)
        poisoned_grad = grad(out.loss, poisoned)
        assert torch.all(poisoned_grad[ignored] == 0)
        torch.testing.assert_close(poisoned_grad[~ignored], grad(only_valid.loss, student)[~ignored])


@pytest.mark.parametrize("kd_weight", [0.0, 0.25, 1.0])
def test_mixing_weights(logits, kd_weight):
    student, teacher, targets = logits
    config = DistillationLossConfig(kd_weight=kd_weight, z_loss_weight=0.5)
    out = distillation_loss(student, identity, teacher, identity, targets, config)
    expected = (1 - kd_weight) * out.ce + kd_weight * out.kd + 0.5 * out.z_loss
    torch.testing.assert_close(out.loss.detach(), expected)


def test_defaults_are_the_papers():
    config = DistillationLossConfig()
    assert (config.kd, config.temperature, config.kd_weight, config.z_loss_weight,
            config.top_k) == ("forward-kl", 1.0, 1.0, 1e-4, None)


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"kd_weight": 1.5}, {"jsd_beta": 1.0},
                                 {"top_k": 0}, {"chunk_size": 0}, {"kd": "kl"},
                                 {"z_loss_weight": -1.0}, {"temprature": 2.0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValidationError):
        DistillationLossConfig(**bad)


def test_vocabulary_mismatch_is_refused(logits):
    student, teacher, targets = logits
    with pytest.raises(ValueError, match="vocabularies must agree"):
        distillation_loss(student, identity, teacher[:, :-1], identity, targets,
                          DistillationLossConfig())


# ---- chunked == naive ----

def scaled_linear(d, vocab, dtype=torch.float64):
    """A head written as a closure with an output multiplier, like a muP readout."""
    weight = torch.nn.Parameter(torch.randn(vocab, d, dtype=dtype) / d)
    return (lambda h: 0.5 * h @ weight.T), [weight]


def linear(d, vocab, dtype=torch.float64):
    head = torch.nn.Linear(d, vocab, dtype=dtype)
    return head, list(head.parameters())


def loss_and_grads(kind, hidden, head, params, teacher_hidden, teacher_head, targets, chunk_size,
                   top_k=None):
    if kind == "ce":
        out = cross_entropy_loss(hidden, head, targets, z_loss_weight=1e-2, chunk_size=chunk_size)
    else:
        config = DistillationLossConfig(kd=kind, kd_weight=0.6, temperature=1.5, top_k=top_k,
                                        z_loss_weight=1e-2, chunk_size=chunk_size)
        out = distillation_loss(hidden, head, teacher_hidden, teacher_head, targets, config)
    return out, torch.autograd.grad(out.loss, [hidden, *params])


@pytest.mark.parametrize("kind,top_k,make_head", [
    ("ce", None, linear), ("forward-kl", None, linear), ("reverse-kl", None, linear),
    ("jsd", None, linear), ("forward-kl", 4, linear), ("reverse-kl", 4, linear),
    ("jsd", 4, linear), ("ce", None, scaled_linear), ("jsd", 4, scaled_linear)])
def test_chunked_equals_naive(kind, top_k, make_head):
    gen = torch.manual_seed(2)
    d, d_teacher = 6, 9
    hidden = torch.randn(3, 13, d, dtype=torch.float64, generator=gen).requires_grad_()
    head, params = make_head(d, VOCAB)
    teacher_hidden = torch.randn(3, 13, d_teacher, dtype=torch.float64, generator=gen)
    teacher_head = torch.nn.Linear(d_teacher, VOCAB, dtype=torch.float64).requires_grad_(False)
    targets = torch.randint(0, VOCAB, (3, 13), generator=gen)
    targets[1, 5] = IGNORE_INDEX
    args = (kind, hidden, head, params, teacher_hidden, teacher_head, targets)
    naive, naive_grads = loss_and_grads(*args, chunk_size=None, top_k=top_k)
    for chunk_size in [5, 16, 64]:  # 39 tokens: 5 and 16 do not divide it, 64 exceeds it
        chunked, chunked_grads = loss_and_grads(*args, chunk_size=chunk_size, top_k=top_k)
        torch.testing.assert_close(chunked.loss, naive.loss)
        for name in ("ce", "kd", "z_loss"):
            torch.testing.assert_close(getattr(chunked, name), getattr(naive, name))
        for got, want in zip(chunked_grads, naive_grads):
            torch.testing.assert_close(got, want)

        with torch.no_grad():  # evaluation: values only
            evaluated = cross_entropy_loss(hidden, head, targets, chunk_size=chunk_size)
        assert not evaluated.loss.requires_grad
        torch.testing.assert_close(evaluated.loss, naive.ce)


def test_chunked_gradient_reaches_a_frozen_body_and_accumulates_with_a_scale():
    """Backward through the chunked loss composes with upstream layers and a loss scale."""
    torch.manual_seed(3)
    body = torch.nn.Linear(4, 6, dtype=torch.float64)
    head = torch.nn.Linear(6, VOCAB, dtype=torch.float64)
    x = torch.randn(20, 4, dtype=torch.float64)
    targets = torch.randint(0, VOCAB, (20,))
    grads = []
    for chunk_size in (None, 7):
        loss = 3.0 * cross_entropy_loss(body(x), head, targets, chunk_size=chunk_size).loss
        grads.append(torch.autograd.grad(loss, [body.weight, head.weight, head.bias]))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)


class RecordingHead:
    """Wraps a head and records the most logit rows it ever had alive at once."""

    def __init__(self, head):
        self.head, self.outputs, self.most_rows_alive = head, weakref.WeakSet(), 0

    def __call__(self, hidden):
        logits = self.head(hidden)
        self.outputs.add(logits)
        self.most_rows_alive = max(self.most_rows_alive, sum(o.shape[0] for o in self.outputs))
        return logits


@pytest.mark.parametrize("chunk_size", [None, 16])
def test_chunked_keeps_one_chunk_of_logits_alive(chunk_size):
    torch.manual_seed(4)
    n, d = 64, 8
    hidden = torch.randn(n, d, requires_grad=True)
    student_head = RecordingHead(torch.nn.Linear(d, VOCAB))
    teacher_head = RecordingHead(torch.nn.Linear(d, VOCAB))
    targets = torch.randint(0, VOCAB, (n,))
    out = distillation_loss(hidden, student_head, torch.randn(n, d), teacher_head, targets,
                            DistillationLossConfig(chunk_size=chunk_size))
    out.loss.backward()
    assert student_head.most_rows_alive == teacher_head.most_rows_alive == (chunk_size or n)


def test_chunked_backward_runs_once():
    hidden = torch.randn(8, 4, requires_grad=True)
    out = cross_entropy_loss(hidden, torch.nn.Linear(4, VOCAB), torch.zeros(8, dtype=torch.long),
                             chunk_size=3)
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="can run only once"):
        out.loss.backward()


def test_chunked_under_autocast_matches_naive():
    torch.manual_seed(5)
    hidden = torch.randn(2, 24, 16, requires_grad=True)
    head = torch.nn.Linear(16, 50)
    targets = torch.randint(0, 50, (2, 24))
    results = []
    for chunk_size in (None, 10):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = cross_entropy_loss(hidden, head, targets, chunk_size=chunk_size)
        results.append((out.loss, *torch.autograd.grad(out.loss, [hidden, head.weight])))
    for got, want in zip(*results):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=1e-3)


def test_chunks_follow_the_vocabulary_within_a_logit_budget_and_give_the_former_chunks_result():
    """Issue 33: at vocabulary 512 a 32K-token batch ran in 32 chunks of 1024 tokens (hundreds of small
    eager operations per step); the chunk now holds up to CHUNK_LOGITS logits whatever the vocabulary."""
    from distillscale.training.config import DistillConfig
    from distillscale.training.kd_settings import CHUNK_LOGITS, chunk_tokens

    assert chunk_tokens(32768) == 1024 and chunk_tokens(512) == 65536 and chunk_tokens(131072) == 256
    assert chunk_tokens(10 * CHUNK_LOGITS) == 1
    assert all(chunk_tokens(v) * v <= CHUNK_LOGITS for v in (320, 512, 50257, 151936))
    config = DistillConfig(out="s", teacher="t", n_layers=1, tokens="1M")
    assert config.loss_config(512).chunk_size == 65536
    assert DistillConfig(out="s", teacher="t", n_layers=1, tokens="1M", loss_chunk_size=7).loss_config(512).chunk_size == 7
    assert config.hash() == config.model_copy(update={"loss_chunk_size": 1024}).hash()  # memory only

    gen = torch.manual_seed(3)
    tokens, d, vocab = 1100, 8, 512
    hidden = torch.randn(tokens, d, generator=gen).requires_grad_()
    head = torch.nn.Linear(d, vocab, bias=False)
    teacher_hidden = torch.randn(tokens, d, generator=gen)
    teacher_head = torch.nn.Linear(d, vocab, bias=False).requires_grad_(False)
    targets = torch.randint(0, vocab, (tokens,), generator=gen)
    results = []
    for chunk_size in (1024, chunk_tokens(vocab)):  # 2 chunks before, 1 now
        out = distillation_loss(hidden, head, teacher_hidden, teacher_head, targets,
                                DistillationLossConfig(chunk_size=chunk_size, kd_weight=0.5))
        results.append((out.loss.detach(), out.kd, out.ce, *torch.autograd.grad(out.loss, [hidden, head.weight])))
    for before, now in zip(*results):  # float32, as trained: equal up to the order of the sums
        torch.testing.assert_close(now, before)


@pytest.mark.parametrize("kind,top_k", [("forward-kl", None), ("reverse-kl", None), ("jsd", None),
                                        ("forward-kl", 4)])
def test_the_chunked_loss_never_writes_into_the_teacher_logits_it_is_given(kind, top_k):
    """With precomputed teacher logits and an identity head, the chunked loss overwrote the
    caller's logits with log-probabilities (an in-place log-softmax of what it took for its own)."""
    gen = torch.manual_seed(3)
    hidden = torch.randn(2, 7, 5, dtype=torch.float64, generator=gen).requires_grad_()
    head, params = linear(5, VOCAB)
    teacher_logits = torch.randn(2, 7, VOCAB, dtype=torch.float64, generator=gen)
    kept = teacher_logits.clone()
    targets = torch.randint(0, VOCAB, (2, 7), generator=gen)
    config = DistillationLossConfig(kd=kind, kd_weight=0.5, top_k=top_k, chunk_size=4)
    chunked = distillation_loss(hidden, head, teacher_logits, lambda h: h, targets, config)
    chunked.loss.backward()
    assert torch.equal(teacher_logits, kept)
    naive = distillation_loss(hidden, head, kept, lambda h: h, targets, config.model_copy(update={"chunk_size": None}))
    torch.testing.assert_close(chunked.loss, naive.loss)
