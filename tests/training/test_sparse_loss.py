"""The distillation loss from sparse teacher rows (what a logit cache stores, what a server sends)
equals the loss from the teacher's full logits with the same top-k, in value and gradient, on both
loss paths: with the tail category (normalised log-probabilities, tau = 1, where the tail is known)
and without it (renormalised over the ids, any offset per row, any tau)."""

from __future__ import annotations

import pytest
import torch

from distillscale.training.losses import DistillationLossConfig, distillation_loss, sparse_distillation_loss

VOCAB, TOKENS, STORED = 50, 37, 8


@pytest.mark.parametrize("kd", ["forward-kl", "reverse-kl", "jsd"])
@pytest.mark.parametrize("top_k", [STORED, 5])  # 5: the most likely 5 of the 8 stored
@pytest.mark.parametrize("chunk_size", [None, 16])
@pytest.mark.parametrize("tail", [True, False])
def test_sparse_top_k_rows_give_the_loss_of_full_teacher_logits(kd, top_k, chunk_size, tail):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(TOKENS, 12, generator=generator, dtype=torch.float64, requires_grad=True)
    head_weight = torch.randn(VOCAB, 12, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher_logits = 2 * torch.randn(TOKENS, VOCAB, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, VOCAB, (TOKENS,), generator=generator)
    targets[:3] = -100
    config = DistillationLossConfig(kd=kd, kd_weight=0.6, temperature=1.0 if tail else 1.5, top_k=top_k,
                                    chunk_size=chunk_size, top_k_tail=tail)
    head = lambda h: h @ head_weight.T  # noqa: E731

    values, ids = teacher_logits.log_softmax(-1).topk(STORED, dim=-1)
    offset = 0.0 if tail else -3.0  # without the tail any offset per row renormalises away
    sparse = sparse_distillation_loss(hidden, head, ids, values + offset, targets, config)
    sparse_grads = torch.autograd.grad(sparse.loss, [hidden, head_weight])
    full = distillation_loss(hidden, head, teacher_logits, lambda t: t, targets, config)
    full_grads = torch.autograd.grad(full.loss, [hidden, head_weight])

    for a, b in ((sparse.loss, full.loss), (sparse.kd, full.kd), (sparse.ce, full.ce)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(sparse_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_sparse_rows_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="differ"):
        sparse_distillation_loss(torch.zeros(4, 3), lambda h: h, torch.zeros(4, 2, dtype=torch.long),
                                 torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), DistillationLossConfig())
