"""Importing a Hugging Face Llama / Qwen3 directory as a model of the family: same logits, exact
round trip with the export, one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

from distillscale.errors import UserError
from distillscale.model import ModelConfig, Transformer, save_pretrained
from distillscale.model.hf_export import hf_state_dict
from distillscale.model.hf_import import hf_model_config, import_hf

VOCAB = 96


def hf_model(kind: str, tie: bool = False, **overrides):
    """A tiny random Llama or Qwen3 (grouped-query attention; Qwen3 with head_dim * heads != hidden)."""
    common = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-5, tie_word_embeddings=tie, initializer_range=0.2,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
    if kind == "qwen3":
        config = Qwen3Config(**common, head_dim=16, architectures=["Qwen3ForCausalLM"], **overrides)
    else:
        config = LlamaConfig(**common, architectures=["LlamaForCausalLM"], **overrides)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # norm gains away from 1, so that a misplaced gain shows in the logits
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_imported_model_has_the_hf_logits(tmp_path, kind, tie):
    reference = hf_model(kind, tie=tie)
    reference.save_pretrained(tmp_path / "hf")
    model = import_hf(tmp_path / "hf")
    config = model.config
    assert (config.d_model, config.n_heads, config.n_kv_heads, config.d_ff, config.n_layers) == (48, 4, 2, 80, 2)
    assert config.head_dim == (16 if kind == "qwen3" else 12) and config.qk_norm == (kind == "qwen3")
    assert config.tie_embeddings == tie and not config.mup
    assert config.non_embedding_params == sum(p.numel() for p in reference.model.layers.parameters()) + 48
    idx = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(idx).logits
        torch.testing.assert_close(model(idx), expected, rtol=0, atol=1e-5)
        assert expected.abs().max() > 1  # logits that would show a wrong weight


@pytest.mark.parametrize("mup", [False, True], ids=["sp", "mup"])
def test_export_then_import_round_trips(tmp_path, cli, mup):
    from distillscale.data.tokenizer import train_byte_level_bpe

    config = ModelConfig(n_layers=2, aspect_ratio=32, head_dim=16, vocab_size=320, max_seq_len=64,
                         mup=mup, mup_base_width=96)
    torch.manual_seed(0)
    original = Transformer(config)
    save_pretrained(original, tmp_path / "run")
    train_byte_level_bpe(["def f(x):\n    return x\n" * 20], vocab_size=300).save(str(tmp_path / "run" / "tokenizer.json"))
    assert cli("export-hf", tmp_path / "run", tmp_path / "hf")[0] == 0

    imported = import_hf(tmp_path / "hf")
    # The imported weights are exactly the exported ones (muP's multiplier is folded into lm_head)...
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    mine = hf_state_dict(imported)
    assert mine.keys() == exported.keys()
    assert all(torch.equal(mine[name], exported[name]) for name in exported)
    idx = torch.randint(0, 320, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not mup:  # ... and without one, the model is the original, bit for bit
            network = ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "vocab_size",
                       "max_seq_len", "rope_base", "norm_eps", "tie_embeddings", "qk_norm", "mup_multiplier")
            assert [getattr(imported.config, key) for key in network] == [getattr(config, key) for key in network]
            assert all(torch.equal(a, b) for a, b in zip(imported.state_dict().values(),
                                                         original.state_dict().values()))
            assert torch.equal(imported(idx), original(idx))
        else:
            torch.testing.assert_close(imported(idx), original(idx), rtol=0, atol=1e-5)


def test_other_architectures_and_inexact_configs_are_refused_in_one_line(tmp_path):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                               "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UserError, match="only LlamaForCausalLM and Qwen3ForCausalLM import.*generic") as error:
        hf_model_config(tmp_path / "gpt2")
    assert "\n" not in str(error.value)

    hf_model("llama", attention_bias=True).save_pretrained(tmp_path / "bias")
    with pytest.raises(UserError, match="attention_bias=True cannot be imported exactly"):
        import_hf(tmp_path / "bias")

    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text((tmp_path / "bias" / "config.json").read_text()
                                                      .replace('"attention_bias": true', '"attention_bias": false'))
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UserError, match="safetensors only"):
        import_hf(tmp_path / "pickled")


def test_ladder_configs_dump_as_before_and_explicit_shapes_round_trip():
    ladder = ModelConfig(n_layers=4, aspect_ratio=64, head_dim=64, vocab_size=100)
    assert not {"d_model", "n_heads", "n_kv_heads", "d_ff"} & ladder.model_dump().keys()
    assert (ladder.d_model, ladder.n_heads, ladder.n_kv_heads, ladder.d_ff) == (256, 4, 4, 704)
    assert ladder.non_embedding_params == 4 * (4 * 256**2 + 3 * 256 * 704 + 2 * 256 + 2 * 64) + 256
    pruned = ModelConfig(n_layers=3, d_model=96, n_heads=4, n_kv_heads=2, head_dim=32, d_ff=200, vocab_size=100)
    assert ModelConfig(**pruned.model_dump()) == pruned
    assert pruned.layer_matmul_params == 96 * (2 * 128 + 2 * 64) + 3 * 96 * 200
    assert sum(p.numel() for p in Transformer(pruned).blocks.parameters()) + 96 == pruned.non_embedding_params
    with pytest.raises(UserError, match="n_heads 4 is not a multiple of n_kv_heads 3"):
        ModelConfig(n_layers=1, d_model=96, n_heads=4, n_kv_heads=3, head_dim=32, vocab_size=100)


def test_grouped_query_attention_decodes_with_the_kv_cache(tmp_path):
    """The cache keeps n_kv_heads heads; a prefill then one position at a time gives the full forward's logits."""
    from distillscale.model.transformer import KVCache

    hf_model("qwen3").save_pretrained(tmp_path / "hf")
    model = import_hf(tmp_path / "hf")
    idx = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    cache = KVCache(model.config.n_layers, 12)
    with torch.no_grad():
        steps = [model.head(model.hidden_states(idx[:, :8], cache))]
        steps += [model.head(model.hidden_states(idx[:, t:t + 1], cache)) for t in range(8, 12)]
        torch.testing.assert_close(torch.cat(steps, dim=1), model(idx), rtol=0, atol=1e-5)
    assert cache.keys[0].shape == (2, 2, 12, 16)  # [B, n_kv_heads, max_len, head_dim]
