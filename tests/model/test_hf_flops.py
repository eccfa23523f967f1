"""One FLOPs count for any Hugging Face checkpoint, teacher or student (`model.hf_flops`): the family's formula.

Models are built on the meta device from their configs: no weights, no download."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

from distillscale.model import ModelConfig
from distillscale.model.hf_flops import EXACT, PARAMETERS, hf_forward_flops


def on_meta(model_class, config):
    with torch.device("meta"):
        return model_class(config)


@pytest.mark.parametrize("tied", [False, True])
def test_a_family_shaped_llama_counts_as_the_family(tied):
    """A Llama of the family's shape (grouped-query attention, the ladder's FFN) costs what ModelConfig counts."""
    family = ModelConfig(n_layers=2, aspect_ratio=32, head_dim=16, vocab_size=320, max_seq_len=64, n_kv_heads=2,
                         tie_embeddings=tied)
    llama = on_meta(LlamaForCausalLM, LlamaConfig(
        vocab_size=320, hidden_size=family.d_model, intermediate_size=family.d_ff, num_hidden_layers=2,
        num_attention_heads=family.n_heads, num_key_value_heads=family.n_kv_heads, head_dim=16,
        max_position_embeddings=64, tie_word_embeddings=tied))
    count = hf_forward_flops(llama)
    assert count.method == EXACT
    for seq_len in (0, 1, 37, 64):
        assert count.forward_flops_per_token(seq_len) == family.forward_flops_per_token(seq_len)


def test_gpt2_small_counts_its_output_head_and_attention():
    """GPT-2 small (tied embeddings, Conv1D projections): the 50257 x 768 head is a matmul per token, as is
    attention over the context; 2 x non-embedding parameters (the generic student's count before) missed
    both, 2 x parameters (the teacher's) counted the position table and missed attention."""
    model = on_meta(GPT2LMHeadModel, GPT2Config())
    count = hf_forward_flops(model)
    d, layers, vocab, context = 768, 12, 50257, 1024
    matmuls = layers * (d * 3 * d + d * d + 2 * d * 4 * d) + vocab * d  # c_attn, c_proj, c_fc + c_proj, head
    assert count.method == EXACT and count.matmul_params == matmuls
    assert count.forward_flops_per_token(context) == 2 * matmuls + 4 * layers * d * context
    assert count.forward_flops_per_token(context) == 284_812_800


def test_a_config_without_layers_and_heads_falls_back_to_two_flops_per_parameter():
    model = on_meta(GPT2LMHeadModel, GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
                                                bos_token_id=0, eos_token_id=0))
    model.config = SimpleNamespace(vocab_size=64)  # a config of another vocabulary, silent about the shape
    count = hf_forward_flops(model)
    parameters = sum(p.numel() for p in model.parameters())  # tied: the input table is the head
    assert count.method == PARAMETERS and count.forward_flops_per_token(16) == 2 * parameters
    assert "attention over the context is not counted" in count.method_text


def test_a_mixture_of_experts_counts_the_experts_a_token_is_routed_to():
    """Mixtral holds its experts as stacked tensors, no nn.Linear: a count by module type missed them all.
    A token goes through 2 of 4 experts: half their weights, plus the router and the attention."""
    d, ffn, vocab, experts = 32, 64, 64, 4
    model = on_meta(MixtralForCausalLM, MixtralConfig(
        vocab_size=vocab, hidden_size=d, intermediate_size=ffn, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=experts, num_experts_per_tok=2, tie_word_embeddings=False))
    count = hf_forward_flops(model)
    attention = d * d + 2 * (d * 16) + d * d  # q, k, v (2 kv heads of 8), o
    routed = 2 * (3 * d * ffn)  # gate, up, down of the 2 experts a token is routed to
    assert count.method == EXACT and count.matmul_params == attention + experts * d + routed + vocab * d


def test_a_mixture_of_experts_size_says_its_total_and_active_parameters(tmp_path):
    """N counts every expert (what the laws' N is for a dense model); a mixture of experts' size says so
    and gives the parameters a token goes through."""
    from distillscale.model.sizes import model_size

    d, ffn, vocab, experts = 32, 64, 64, 4
    MixtralForCausalLM(MixtralConfig(
        vocab_size=vocab, hidden_size=d, intermediate_size=ffn, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=experts, num_experts_per_tok=2, tie_word_embeddings=False,
        max_position_embeddings=64)).save_pretrained(tmp_path / "moe")
    size = model_size(tmp_path / "moe")
    idle = (experts - 2) * 3 * d * ffn  # the two experts of four a token skips
    assert size.active_params == size.non_embedding_params - idle
    assert f"{size.active_params:,} active per token" in size.describe_params()
    dense = tmp_path / "dense"
    LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=ffn, num_hidden_layers=1,
                                 num_attention_heads=4, max_position_embeddings=64)).save_pretrained(dense)
    assert model_size(dense).active_params is None and "active" not in model_size(dense).describe_params()
