"""Sampling continuations from a model of the family, with a KV cache (`KVCache` in transformer.py).

    tokens = generate(model, prompt, max_new_tokens=256, temperature=1.0, generator=g).tokens

The prompt is read once (prefill); then every step feeds only the token just sampled, which attends
to the keys and values cached for all earlier positions: no position is recomputed. `use_cache=False`
recomputes the whole prefix at every step instead, the reference the tests and bench/speed/generation_speed.py
hold the cache to (same logits within float rounding, same samples from the same generator).

Every draw is one uniform number per row and token, turned into a token by the inverse CDF of the
row's softmax (`sample`). The uniforms come from a generator or are given up front ([B, new], one
row per sequence): a sequence's continuation then depends on its own row of uniforms alone, not on
which other sequences share its batch (on-policy distillation keys each row by its place in the
run's global batch, so one process and N ranks draw the same continuations: `training/on_policy.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillscale.errors import ParameterError
from distillscale.model.transformer import KVCache, Transformer


@dataclass(frozen=True)
class Generation:
    """tokens: [B, P + new] the prompt and its continuation; logits: [B, new, V] the (untempered)
    logits each new token was sampled from, when asked for."""

    tokens: torch.Tensor
    logits: torch.Tensor | None = None


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of `logits` [B, V] from softmax(logits / temperature), over the `top_k` most
    likely tokens when given; temperature 0 takes the most likely token. -> [B].

    Row b takes the first token whose cumulative probability exceeds uniforms[b] (in [0, 1)): the
    inverse CDF, so each row's token is a function of its own logits and uniform alone. Without
    `uniforms`, B of them are drawn from `generator` (on the logits' device)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if uniforms is None:
        uniforms = torch.rand(logits.shape[0], generator=generator, device=logits.device)
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    # u below the largest float32 under 1 and scaled by the row's total (1 up to rounding): u x total <
    # total, so the token found has mass; right=True skips tokens of none (their CDF equals the one before)
    u = uniforms.to(cdf.device, torch.float32).clamp(max=1 - 2**-24)
    at = (u * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, at, right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


@torch.no_grad()
def generate(model: Transformer, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None, use_cache: bool = True,
             return_logits: bool = False, uniforms: torch.Tensor | None = None) -> Generation:
    """Continue each prompt (token ids [B, P]) by `max_new_tokens` sampled tokens.

    The draws come from `uniforms` [B, max_new_tokens] (row b's continuation from row b's uniforms
    alone, whatever else the batch holds) or else from `generator` (on the model's device) alone, so
    the same uniforms or generator state give the same continuation. The model's train/eval mode is
    left as it is (a model with dropout samples without it in eval mode: `FamilyStudent` switches)."""
    if max_new_tokens < 1:
        raise ParameterError("max_new_tokens", "{} must be at least 1, got {value}", value=max_new_tokens)
    if temperature < 0:
        raise ParameterError("temperature", "{} must be >= 0 (0: the most likely token), got {value}",
                             value=temperature)
    if top_k is not None and top_k < 1:
        raise ParameterError("top_k", "{} must be at least 1, got {value}", value=top_k)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ParameterError("prompt", "{} must be token ids [batch, length >= 1], got shape {shape}",
                             shape=tuple(prompt.shape))
    if uniforms is not None and generator is not None:
        raise ParameterError(("uniforms", "generator"), "give {} or {}, not both")
    if uniforms is not None and tuple(uniforms.shape) != (prompt.shape[0], max_new_tokens):
        raise ParameterError("uniforms", "{} must be [batch, max_new_tokens] = {expected}, got shape {shape}",
                             expected=(prompt.shape[0], max_new_tokens), shape=tuple(uniforms.shape))
    total = prompt.shape[1] + max_new_tokens - 1  # positions read: the last token sampled is not
    if total > model.config.max_seq_len:
        raise ParameterError("max_new_tokens", "a prompt of {length} tokens and {} = {value} make {total} "
                             "positions to read, more than the model's max_seq_len {limit}",
                             length=prompt.shape[1], value=max_new_tokens, total=total,
                             limit=model.config.max_seq_len)
    tokens, steps = prompt, []
    cache = KVCache(model.config.n_layers, total) if use_cache else None
    fed = prompt  # what the next forward reads: the prompt, then the latest token (or everything)
    for step in range(max_new_tokens):
        hidden = model.hidden_states(fed, cache)
        logits = model.head(hidden[:, -1])
        if return_logits:
            steps.append(logits.float())
        token = sample(logits, temperature, top_k, generator, None if uniforms is None else uniforms[:, step])
        tokens = torch.cat([tokens, token.unsqueeze(-1)], dim=-1)
        fed = token.unsqueeze(-1) if use_cache else tokens
    return Generation(tokens, torch.stack(steps, dim=1) if return_logits else None)
