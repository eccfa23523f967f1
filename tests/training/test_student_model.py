"""One student interface (`training.student.StudentModel`) for the family's Transformer and a generic Hugging
Face student, and one FLOPs count (`model.hf_flops`) for any Hugging Face model, teacher or student."""

from __future__ import annotations

import pytest

from tests.training.test_hf_student import save_gpt2, tokenizer  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")


def test_a_served_generic_teacher_states_its_attention_per_context_token(tmp_path, tokenizer):  # noqa: F811
    """A served GPT-2 stated 2 x parameters as its base cost and 0 per context token: now the family's count,
    the matmuls (the head included) as base and 4 x n_layers x d_model per token of context."""
    from distillscale.serve.teacher import TeacherService

    service = TeacherService(save_gpt2(tmp_path / "gpt2", tokenizer), top_k=8)
    flops = service.models()["data"][0]["distillscale"]["forward_flops_per_token"]
    d, layers, vocab = 32, 2, 320  # save_gpt2's shape; tied embeddings: the input table is the head
    assert flops == {"base": 2 * (layers * (3 * d * d + d * d + 2 * d * 4 * d) + vocab * d),
                     "per_context_token": 4 * layers * d}
