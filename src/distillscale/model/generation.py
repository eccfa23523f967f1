"""Sampling continuations from a model of the family, with a KV cache (`KVCache` in transformer.py).

    tokens = generate(model, prompt, max_new_tokens=256, temperature=1.0, generator=g).tokens

The prompt is read once (prefill); then every step feeds only the token just sampled, which attends
to the keys and values cached for all earlier positions: no position is recomputed. `use_cache=False`
recomputes the whole prefix at every step instead, the reference the tests and bench/generation_speed.py
hold the cache to (same logits within float rounding, same samples from the same generator).
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
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of `logits` [B, V] from softmax(logits / temperature), over the `top_k` most
    likely tokens when given; temperature 0 takes the most likely token. -> [B]."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Transformer, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None, use_cache: bool = True,
             return_logits: bool = False) -> Generation:
    """Continue each prompt (token ids [B, P]) by `max_new_tokens` sampled tokens.

    The draws come from `generator` (on the model's device) alone, so the same generator state gives
    the same continuation. The model's train/eval mode is left as it is (the family has no dropout)."""
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
        token = sample(logits, temperature, top_k, generator)
        tokens = torch.cat([tokens, token.unsqueeze(-1)], dim=-1)
        fed = token.unsqueeze(-1) if use_cache else tokens
    return Generation(tokens, torch.stack(steps, dim=1) if return_logits else None)
