"""Top-k teachers keep their tail (issue 39): the k ids plus one "everything else" category, against
a hand computation; k = V is the full loss; a low top-k mass warns; a pure-KD top-5 student does not
collapse onto the top 5 (its loss on the teacher's own samples stays below a uniform guess)."""

from __future__ import annotations

import math

import pytest
import torch

from distillscale.training.losses import (
    DistillationLossConfig,
    distillation_loss,
    kd_divergence,
    sparse_distillation_loss,
)
from distillscale.training.top_k import LOW_TOP_K_MASS, check_top_k_mass, normalise_relative

KINDS = ["forward-kl", "reverse-kl", "jsd"]


def hand_divergence(p: list[float], q: list[float], kind: str, beta: float) -> float:
    """D over explicit categories, in Python floats (float64), written out term by term."""
    if kind == "forward-kl":
        return sum(a * math.log(a / b) for a, b in zip(p, q))
    if kind == "reverse-kl":
        return sum(b * math.log(b / a) for a, b in zip(p, q))
    m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
    return (beta * sum(a * math.log(a / c) for a, c in zip(p, m))
            + (1 - beta) * sum(b * math.log(b / c) for b, c in zip(q, m)))


@pytest.mark.parametrize("kind", KINDS)
def test_tail_bucket_loss_equals_a_hand_computation_in_float64(kind):
    teacher = [0.40, 0.25, 0.15, 0.10, 0.06, 0.04]  # top-2: 0.65, tail 0.35
    student = [0.10, 0.30, 0.20, 0.20, 0.15, 0.05]
    # categories: id 0, id 1, everything else
    p = [0.40, 0.25, 0.35]
    q = [0.10, 0.30, 0.60]
    expected = hand_divergence(p, q, kind, beta=0.3)

    teacher_logits = torch.tensor([teacher], dtype=torch.float64).log() + 1.7  # any offset: logits
    student_logits = torch.tensor([student], dtype=torch.float64).log() - 0.4
    live = kd_divergence(student_logits, teacher_logits, kind, top_k=2, jsd_beta=0.3)
    assert live.dtype == torch.float64
    assert live.item() == pytest.approx(expected, rel=1e-12)

    config = DistillationLossConfig(kd=kind, kd_weight=1.0, z_loss_weight=0.0, top_k=2, jsd_beta=0.3)
    ids = torch.tensor([[0, 1]])
    log_probs = torch.tensor([[0.40, 0.25]], dtype=torch.float64).log()  # normalised: the tail is known
    for chunk_size in (None, 1):
        out = sparse_distillation_loss(student_logits, lambda h: h, ids, log_probs, torch.tensor([3]),
                                       config.model_copy(update={"chunk_size": chunk_size}))
        assert out.kd.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_top_k_with_k_equal_to_the_vocabulary_is_the_full_loss(kind, chunk_size):
    generator = torch.Generator().manual_seed(1)
    vocab, tokens = 17, 23
    hidden = torch.randn(tokens, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, 6, generator=generator, dtype=torch.float64)
    teacher_logits = 3 * torch.randn(tokens, vocab, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    head = lambda h: h @ weight.T  # noqa: E731
    config = DistillationLossConfig(kd=kind, kd_weight=0.8, chunk_size=chunk_size)

    teacher_head = lambda t: t.clone()  # noqa: E731  (the chunked loss overwrites the logits it is given)
    full = distillation_loss(hidden, head, teacher_logits, teacher_head, targets, config)
    full_grad = torch.autograd.grad(full.loss, hidden)[0]
    log_probs, ids = teacher_logits.log_softmax(-1).topk(vocab, dim=-1)
    top = sparse_distillation_loss(hidden, head, ids, log_probs, targets, config.model_copy(update={"top_k": vocab}))
    top_grad = torch.autograd.grad(top.loss, hidden)[0]
    torch.testing.assert_close(top.kd, full.kd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(top_grad, full_grad, rtol=1e-9, atol=1e-12)
    # and the live teacher's top-(V - 1) with its tail is a finite, smaller-or-equal coarsening, up to the
    # rounding of its tail, 1 - sum(top-k) as a server's is: 1e-16 on a least likely id's 1.7e-7 here
    # (reverse KL 2.8e-12 above the full loss, measured; the exact tail gave 0)
    coarse = distillation_loss(hidden, head, teacher_logits, teacher_head, targets,
                               config.model_copy(update={"top_k": vocab - 1}))
    assert torch.isfinite(coarse.kd) and coarse.kd <= full.kd + 1e-10


def test_a_low_top_k_mass_warns_once_and_is_recorded(capsys):
    flat = torch.full((64, 20), math.log(0.5 / 20))  # the top 20 hold half the mass
    record = check_top_k_mass(flat, 20, "served", "known", "known", tail_in_loss=True)
    err = capsys.readouterr().err
    assert record.mean_top_k_mass == pytest.approx(0.5) and record.checked_tokens == 64
    assert err.count("warning:") == 1 and "--top-k" in err and "sampled" in err and "--kd-weight" in err
    assert record.warning is not None and "50%" in record.warning
    peaked = torch.log(torch.full((64, 20), (LOW_TOP_K_MASS + 0.05) / 20))
    assert check_top_k_mass(peaked, 20, "cache", "known", "known", tail_in_loss=True).warning is None
    assert "warning" not in capsys.readouterr().err


def test_relative_cache_values_are_normalised_to_the_stored_mass_or_the_mean():
    relative = torch.tensor([[0.0, -1.0, -2.0]]).numpy()
    mass = normalise_relative(relative, torch.tensor([math.log(0.8)]).numpy(), None)
    assert float(torch.from_numpy(mass).logsumexp(-1).exp()) == pytest.approx(0.8, rel=1e-6)
    estimated = normalise_relative(relative, None, 0.6)  # a cache made before the mass was stored
    assert float(torch.from_numpy(estimated).logsumexp(-1).exp()) == pytest.approx(0.6, rel=1e-6)


def test_a_tiny_top_5_student_does_not_end_above_a_uniform_guess():
    """Pure KD (kd_weight 1) from a teacher whose top 5 hold about half the mass: the renormalised
    target drove such students above log V (issue 39); with the tail they stay well below it."""
    generator = torch.Generator().manual_seed(0)
    vocab, contexts, k = 64, 8, 5
    teacher_logits = 1.3 * torch.randn(contexts, vocab, generator=generator)
    teacher_log_probs = teacher_logits.log_softmax(-1)
    top_mass = teacher_log_probs.topk(k, -1).values.logsumexp(-1).exp().mean()
    assert 0.3 < top_mass < 0.8
    student = torch.nn.Linear(contexts, vocab)
    optimiser = torch.optim.Adam(student.parameters(), lr=0.05)
    config = DistillationLossConfig(kd_weight=1.0, top_k=k, z_loss_weight=0.0)
    for _ in range(200):
        context = torch.randint(0, contexts, (64,), generator=generator)
        hidden = torch.nn.functional.one_hot(context, contexts).float()
        targets = torch.multinomial(teacher_log_probs[context].exp(), 1, generator=generator).squeeze(-1)
        values, ids = teacher_log_probs[context].topk(k, -1)
        loss = sparse_distillation_loss(hidden, student, ids, values, targets, config).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    context = torch.arange(contexts).repeat_interleave(500)
    targets = torch.multinomial(teacher_log_probs[context].exp(), 1, generator=generator).squeeze(-1)
    with torch.no_grad():
        hidden = torch.nn.functional.one_hot(context, contexts).float()
        validation = torch.nn.functional.cross_entropy(student(hidden), targets).item()
    assert validation < math.log(vocab)
