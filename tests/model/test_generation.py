"""Sampling with a KV cache (model/generation.py): the same logits and tokens as recomputing the
prefix at every step, rotary positions offset past the cache, and the FLOPs of generation."""

from __future__ import annotations

import pytest
import torch

from distillscale.errors import ParameterError
from distillscale.model import ModelConfig, Transformer, generate
from distillscale.model.generation import sample
from distillscale.model.transformer import KVCache
from distillscale.planning.flops import generation_flops

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = ModelConfig(n_layers=2, aspect_ratio=32, head_dim=16, vocab_size=97, max_seq_len=64)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(CONFIG)


@pytest.mark.parametrize("logit_scale", [1, 10])
def test_kv_cache_generation_equals_recomputing_the_prefix(model, logit_scale):
    """Within 1e-5 at the initial weights (logits' std ~0.6); with the logits scaled up to a trained
    model's spread (std ~6), within 1e-5 relative to their largest magnitude (fp32 rounding of
    matmuls of other shapes grows with the values)."""
    scaled = Transformer(CONFIG)
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled.lm_head.weight.mul_(logit_scale)
    prompt = torch.randint(0, 97, (3, 7), generator=torch.Generator().manual_seed(1))
    cached = generate(scaled, prompt, 24, temperature=1.0, generator=torch.Generator().manual_seed(2),
                      return_logits=True)
    recomputed = generate(scaled, prompt, 24, temperature=1.0, generator=torch.Generator().manual_seed(2),
                          use_cache=False, return_logits=True)
    assert cached.tokens.shape == (3, 31) and torch.equal(cached.tokens[:, :7], prompt)
    assert torch.equal(cached.tokens, recomputed.tokens)
    assert cached.logits.shape == (3, 24, 97)
    tolerance = 1e-5 * (1 if logit_scale == 1 else cached.logits.abs().max().item())
    assert (cached.logits - recomputed.logits).abs().max() < tolerance
    # and both are the logits one forward pass over the finished sequence gives
    with torch.no_grad():
        full = scaled(cached.tokens[:, :-1])[:, 6:]
    assert (cached.logits - full).abs().max() < tolerance
    assert cached.logits.std() > 0.3 * logit_scale  # not trivially equal: the logits spread
    # another seed draws another continuation
    other = generate(scaled, prompt, 24, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(other.tokens, cached.tokens)


def test_a_cache_filled_in_chunks_gives_the_full_forward_pass(model):
    tokens = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(4))
    cache = KVCache(CONFIG.n_layers, 20)
    with torch.no_grad():
        parts = [model.hidden_states(tokens[:, a:b], cache) for a, b in ((0, 5), (5, 6), (6, 20))]
        assert cache.length == 20
        assert (torch.cat(parts, dim=1) - model.hidden_states(tokens)).abs().max() < 1e-5
        with pytest.raises(ValueError, match="do not fit a KV cache of 20"):
            model.hidden_states(tokens[:, :1], cache)


def test_sampling_settings(model):
    prompt = torch.zeros(2, 3, dtype=torch.long)
    greedy = generate(model, prompt, 5, temperature=0, return_logits=True)
    assert torch.equal(greedy.tokens[:, 3:], greedy.logits.argmax(-1))
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]]).repeat(200, 1)
    drawn = sample(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {1, 2}
    with pytest.raises(ParameterError, match="temperature"):
        generate(model, prompt, 5, temperature=-1)
    with pytest.raises(ParameterError, match="max_new_tokens"):
        generate(model, prompt, 0)
    with pytest.raises(ParameterError, match="make 65 positions to read, more than the model's max_seq_len 64"):
        generate(model, prompt, 63)


def test_sampling_at_a_temperature_follows_the_tempered_softmax():
    """The inverse CDF of softmax(logits / T): draws from a generator match the probabilities within 5
    binomial standard errors (fixed seed), and evenly spaced uniforms give each token its share of
    them to within one draw (no randomness: a quantile count)."""
    logits, temperature, draws = torch.tensor([1.0, -0.5, 2.0, 0.0, -3.0]), 0.7, 100_000
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    drawn = sample(logits.repeat(draws, 1), temperature, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=5).double()
    error = (draws * probs * (1 - probs)).sqrt()
    assert ((counts - draws * probs).abs() < 5 * error).all(), (counts / draws, probs)
    quantiles = (torch.arange(draws, dtype=torch.float64) + 0.5) / draws
    spread = torch.bincount(sample(logits.repeat(draws, 1), temperature, uniforms=quantiles), minlength=5)
    assert ((spread.double() - draws * probs).abs() <= 1).all(), (spread, draws * probs)
    # top-k: tokens outside it are never drawn, even at the ends of [0, 1)
    ends = torch.tensor([0.0, 0.5, 1 - 1e-12])
    assert set(sample(logits.repeat(3, 1), 1.0, top_k=2, uniforms=ends).tolist()) == {0, 2}
    assert sample(torch.tensor([[0.0, float("-inf"), 0.0, float("-inf")]] * 2), 1.0,
                  uniforms=torch.tensor([0.0, 1 - 1e-12])).tolist() == [0, 2]


def test_a_rows_continuation_is_drawn_from_its_own_uniforms(model):
    """Given uniforms [B, new], row b's continuation is its own: the same alone as in a batch."""
    prompt = torch.randint(0, 97, (3, 5), generator=torch.Generator().manual_seed(5))
    uniforms = torch.rand(3, 8, generator=torch.Generator().manual_seed(6))
    batch = generate(model, prompt, 8, uniforms=uniforms).tokens
    alone = torch.cat([generate(model, prompt[b:b + 1], 8, uniforms=uniforms[b:b + 1]).tokens for b in range(3)])
    assert torch.equal(batch, alone) and len({tuple(row) for row in batch[:, 5:].tolist()}) == 3
    with pytest.raises(ParameterError, match=r"uniforms must be \[batch, max_new_tokens\] = \(3, 8\)"):
        generate(model, prompt, 8, uniforms=uniforms[:, :7])
    with pytest.raises(ParameterError, match="give uniforms or generator, not both"):
        generate(model, prompt, 8, uniforms=uniforms, generator=torch.Generator())


def test_generation_flops_count_each_position_read_at_its_context():
    # prompt 3, 4 new tokens: positions 1..6 are read, each attending to the keys so far
    expected = 5 * sum(CONFIG.forward_flops_per_token(t) for t in range(1, 7))
    assert generation_flops(CONFIG, 3, 4, sequences=5) == pytest.approx(expected, rel=1e-12)
