"""The model family: ladder sizes, exact counts, forward behaviour, muP, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from distillscale.errors import UserError
from distillscale.model import ModelConfig, Transformer, load_pretrained, save_pretrained

TINY = dict(n_layers=2, aspect_ratio=32, head_dim=16, vocab_size=101, max_seq_len=32)


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def build(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny(**overrides))


def tokens(batch=2, length=16, vocab=TINY["vocab_size"]) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


# --- sizes and counts -------------------------------------------------------------------------

def test_ladder_derives_width_heads_and_ffn():
    config = ModelConfig(n_layers=14, vocab_size=32168)  # the paper's 546M shape: 14 x 1792
    assert (config.d_model, config.n_heads, config.head_dim) == (1792, 14, 128)
    assert config.d_ff == 4800  # 8/3 * 1792 = 4778.7, rounded up to a multiple of 64
    assert config.d_ff % 64 == 0 and config.d_ff >= 8 * config.d_model / 3
    assert config.non_embedding_params == pytest.approx(546e6, rel=0.02)


@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("tie", [True, False])
def test_parameter_counts_match_a_hand_count_and_the_module(qk_norm, tie):
    config = tiny(qk_norm=qk_norm, tie_embeddings=tie)
    d, d_ff, V, L = 64, 192, 101, 2  # d_ff: 8/3 * 64 = 170.7 -> 192
    per_layer = 4 * d * d + 3 * d * d_ff + 2 * d + (2 * 16 if qk_norm else 0)
    assert config.non_embedding_params == L * per_layer + d
    assert config.total_params == L * per_layer + d + V * d * (1 if tie else 2)

    model = Transformer(config)
    assert sum(p.numel() for p in model.parameters()) == config.total_params
    non_embedding = sum(p.numel() for name, p in model.named_parameters()
                        if not name.startswith(("embed.", "lm_head.")))
    assert non_embedding == config.non_embedding_params


def test_forward_flops_match_a_hand_count_and_torch_flop_counter():
    config = tiny()
    d, d_ff, V, L, T = 64, 192, 101, 2, 32
    matmuls = 2 * (L * (4 * d * d + 3 * d * d_ff) + d * V)
    attention = L * (2 * T * d + 2 * T * d)  # q k^T and the weighted sum of v, full context
    assert config.forward_flops_per_token(T) == matmuls + attention
    assert config.forward_flops_per_token() == config.forward_flops_per_token(config.max_seq_len)

    # torch's counter sees every weight matmul (it does not count CPU SDPA kernels).
    batch = tokens(batch=2, length=T)
    with FlopCounterMode(display=False) as counter:
        Transformer(config)(batch)
    assert counter.get_total_flops() == matmuls * batch.numel()


# --- bad configs --------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (dict(aspect_ratio=20), "d_model = aspect_ratio * n_layers = 20 * 2 = 40 is not a multiple of head_dim 16"),
    (dict(head_dim=9, aspect_ratio=9), "head_dim must be even"),
    (dict(n_layers=0), "n_layers: Input should be greater than 0 (got 0)"),
    (dict(rope_base=-1.0), "rope_base: Input should be greater than 0"),
    (dict(n_head=4), "n_head: Extra inputs are not permitted"),
    (dict(n_heads=4, n_kv_heads=3), "n_heads 4 is not a multiple of n_kv_heads 3"),
    (dict(vocab_size="many"), "vocab_size: Input should be a valid integer"),
])
def test_bad_configs_raise_one_line_user_errors(overrides, message):
    with pytest.raises(UserError) as info:
        tiny(**overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- forward ------------------------------------------------------------------------------------

def test_forward_is_head_of_hidden_states_and_head_takes_any_leading_shape():
    model = build()
    idx = tokens()
    hidden = model.hidden_states(idx)
    assert hidden.shape == (2, 16, 64)
    logits = model(idx)
    assert logits.shape == (2, 16, 101)
    torch.testing.assert_close(model.head(hidden), logits)
    torch.testing.assert_close(model.head(hidden.reshape(-1, 64)), logits.reshape(-1, 101))


@pytest.mark.parametrize("qk_norm", [True, False])
def test_attention_is_causal(qk_norm):
    model = build(qk_norm=qk_norm)
    idx = tokens()
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 101
    before, after = model(idx), model(changed)
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_sequences_longer_than_max_seq_len_are_refused():
    with pytest.raises(UserError, match="sequence length 33 exceeds the model's max_seq_len 32"):
        build()(tokens(length=33))


def test_tied_embeddings_share_one_matrix():
    model = build(tie_embeddings=True)
    assert model.lm_head.weight is model.embed.weight


def test_bf16_autocast_forward_and_backward_on_cpu():
    model = build()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens())
    assert logits.dtype == torch.bfloat16
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile + bf16 is checked on CUDA only")
def test_compiled_bf16_model_matches_eager_on_cuda():
    model = build().cuda()
    idx = tokens().cuda()
    compiled = torch.compile(model)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        torch.testing.assert_close(compiled(idx).float(), model(idx).float(), atol=5e-2, rtol=5e-2)


# --- muP ----------------------------------------------------------------------------------------

def test_mup_multiplies_logits_by_base_width_over_width():
    model = build(mup_base_width=256)  # d_model 64: multiplier 4
    hidden = model.hidden_states(tokens())
    torch.testing.assert_close(model.head(hidden), 4.0 * (hidden @ model.lm_head.weight.T))
    standard = build(mup=False)
    hidden = standard.hidden_states(tokens())
    torch.testing.assert_close(standard.head(hidden), hidden @ standard.lm_head.weight.T)


@pytest.mark.parametrize("mup", [True, False])
def test_param_groups_cover_every_parameter_once_with_mup_rates(mup):
    model = build(mup=mup, tie_embeddings=True, mup_base_width=128)  # multiplier 2 under muP
    groups = {g["name"]: g for g in model.param_groups(lr=1e-2, weight_decay=1e-4)}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))

    scale = 2.0 if mup else 1.0
    assert groups["matrices"]["lr"] == pytest.approx(1e-2 * scale)
    assert groups["matrices"]["lr"] * groups["matrices"]["weight_decay"] == pytest.approx(1e-6)
    assert (groups["embeddings"]["lr"], groups["embeddings"]["weight_decay"]) == (1e-2, 1e-4)
    assert groups["gains"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups["gains"]["params"])
    assert len(groups["matrices"]["params"]) == 2 * 4  # qkv, out, gate_up, down per block
    assert groups["embeddings"]["params"] == [model.embed.weight]
    torch.optim.AdamW(model.param_groups(1e-2, 1e-4))  # accepted as is


@pytest.mark.parametrize("aspect_ratio", [64, 256])
def test_mup_initialises_hidden_matrices_at_one_over_sqrt_fan_in(aspect_ratio):
    model = build(aspect_ratio=aspect_ratio, vocab_size=64)
    for name, param in model.blocks.named_parameters():
        if param.ndim == 2:
            assert param.std().item() == pytest.approx(1 / math.sqrt(param.shape[1]), rel=0.05), name
    standard = build(aspect_ratio=aspect_ratio, vocab_size=64, mup=False)
    assert standard.blocks[0].ffn.down.weight.std().item() == pytest.approx(0.02, rel=0.05)


# --- checkpoints --------------------------------------------------------------------------------

@pytest.mark.parametrize("tie", [True, False])
def test_save_and_load_pretrained_round_trip(tmp_path, tie):
    model = build(tie_embeddings=tie, qk_norm=not tie, mup=tie)
    save_pretrained(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["model.safetensors", "model_config.json"]
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(tokens()), model(tokens()), rtol=0, atol=0)
    assert (loaded.lm_head.weight is loaded.embed.weight) == tie


def test_load_pretrained_refuses_bad_directories(tmp_path):
    with pytest.raises(UserError, match="model_config.json is missing"):
        load_pretrained(tmp_path)

    save_pretrained(build(), tmp_path)
    config_file = tmp_path / "model_config.json"
    good = json.loads(config_file.read_text())

    config_file.write_text(json.dumps({**good, "n_layers": 3, "aspect_ratio": 32}))
    with pytest.raises(UserError, match="model.safetensors does not match model_config.json"):
        load_pretrained(tmp_path)

    config_file.write_text(json.dumps({**good, "attention_bias": True}))   # a setting the family does not have
    with pytest.raises(UserError, match="model_config.json: invalid model config: attention_bias"):
        load_pretrained(tmp_path)

    config_file.write_text(json.dumps({**good, "dropout": 1.5}))
    with pytest.raises(UserError, match="model_config.json: invalid model config: dropout"):
        load_pretrained(tmp_path)

    config_file.write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        load_pretrained(tmp_path)

    config_file.write_text(json.dumps(good))
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="is not a readable safetensors file"):
        load_pretrained(tmp_path)

    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        load_pretrained(tmp_path)


def logit_change_after_one_step(width: int, mup: bool) -> float:
    """RMS change of the logits after one AdamW step at the same base learning rate."""
    model = build(n_layers=1, aspect_ratio=width, mup=mup, mup_base_width=64, vocab_size=64)
    idx = tokens(batch=4, length=16, vocab=64)
    optimizer = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.0))
    before = model(idx)
    torch.nn.functional.cross_entropy(before.flatten(0, 1), idx.roll(-1, dims=1).flatten()).backward()
    optimizer.step()
    with torch.no_grad():
        return (model(idx) - before).pow(2).mean().sqrt().item()


def test_mup_keeps_the_update_size_of_the_logits_across_widths():
    """The point of muP: with one learning rate, a 4x wider model moves its logits about as much
    per step (standard parameterisation moves them several times more)."""
    mup_ratio = logit_change_after_one_step(256, mup=True) / logit_change_after_one_step(64, mup=True)
    standard_ratio = logit_change_after_one_step(256, mup=False) / logit_change_after_one_step(64, mup=False)
    assert 0.5 < mup_ratio < 1.5
    assert standard_ratio > 2.0


def test_dropout_zero_is_the_model_without_dropout():
    """--dropout 0 (the default) adds no module and no state, dumps its config as before, and computes
    bit for bit what a model built without the setting computes, in train mode too."""
    plain, zero = build(), build(dropout=0.0)
    assert tiny(dropout=0.0).model_dump() == tiny().model_dump() and "dropout" not in tiny().model_dump()
    assert list(zero.state_dict()) == list(plain.state_dict())
    assert not any(isinstance(module, torch.nn.Dropout) for module in zero.modules())
    x = tokens()
    assert torch.equal(zero.train()(x), plain.train()(x))


def test_dropout_is_active_in_train_mode_only():
    model, x = build(dropout=0.3), tokens()
    assert sum(isinstance(module, torch.nn.Dropout) for module in model.modules()) == 1 + TINY["n_layers"]
    model.train()
    assert not torch.equal(model(x), model(x))   # a new mask each forward
    model.eval()
    with torch.no_grad():
        once = model(x)
        assert torch.equal(once, model(x))
        plain = build()   # the same weights (same seed), no dropout: eval computes the model exactly
        assert torch.equal(once, plain.eval()(x))
    assert tiny(dropout=0.3).forward_flops_per_token() == tiny().forward_flops_per_token()
    assert tiny(dropout=0.3).model_dump()["dropout"] == 0.3


def test_a_teacher_of_a_dropout_model_stays_deterministic():
    from distillscale.training.teachers import Teacher

    teacher = Teacher(build(dropout=0.5), TINY["vocab_size"], info=None)
    teacher.train()   # a teacher never leaves eval mode, whoever asks
    x = tokens()
    with torch.no_grad():
        assert torch.equal(teacher.head(teacher.hidden_states(x)), teacher.head(teacher.hidden_states(x)))


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_dropout_outside_zero_to_one_is_refused(value):
    with pytest.raises(UserError, match="dropout"):
        tiny(dropout=value)
