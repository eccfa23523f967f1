"""A decoder-only transformer as in Busbridge et al. 2025: pre-norm RMSNorm, RoPE, SwiGLU, QK-norm.

Simple muP (Wortsman et al. 2024, "Small-scale proxies for large-scale Transformer training
instabilities") makes one learning rate serve every width: hidden matrices are initialised with
std 1/sqrt(fan_in) and trained at lr * base_width / d_model; the logits are multiplied by
base_width / d_model; embedding and output head start at the width-independent std `init_std`
and, like the norm gains, keep the base learning rate. Then the change of the logits in one
optimiser step no longer grows with width (tests/model/test_model.py checks it).
With `mup=False` every matrix starts at std `init_std` and every tensor trains at the base rate.

`dropout` P > 0 zeroes a share P of the embedding output and of each attention and MLP output before its
residual add, in train mode only (eval mode, as a teacher always is, computes the model exactly);
at P = 0 there is no dropout module at all, so the model computes as it did before dropout existed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distillscale.errors import UserError
from distillscale.model.config import ModelConfig


class RotaryEmbedding(nn.Module):
    """Rotates pairs (i, i + head_dim/2) of q and k by position-dependent angles (the HF/Llama layout)."""

    def __init__(self, head_dim: int, max_seq_len: int, base: float):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        # Not persistent: recomputed from the config, so checkpoints hold weights only.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x: [B, n_heads, T, head_dim] at positions start .. start + T - 1."""
        T = x.shape[-2]
        cos, sin = self.cos[start:start + T].to(x.dtype), self.sin[start:start + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class KVCache:
    """The keys and values of the positions a model has read so far, one buffer pair per layer, so
    that generating a token reads only that token (generation.py): prefill once, then one step each.

    Each layer's buffers [B, n_kv_heads, max_len, head_dim] are allocated at its first write (in the
    dtype it computes in, bf16 under autocast); `length` is how many positions they hold, advanced
    by the model once every layer has written the new positions."""

    def __init__(self, n_layers: int, max_len: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.max_len = max_len
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer `layer`'s keys and values [B, n_kv_heads, T, head_dim] of the new positions; return
        those of every position so far."""
        if self.keys[layer] is None:
            shape = (*k.shape[:2], self.max_len, k.shape[3])
            self.keys[layer] = k.new_empty(shape)
            self.values[layer] = v.new_empty(shape)
        end = self.length + k.shape[-2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class Attention(nn.Module):
    """Multi-head causal self-attention; q and k are RMS-normalised per head before RoPE (as in Qwen3).
    With fewer key/value heads than query heads (grouped-query attention, imported models), query
    head i reads key/value head i // (n_heads / n_kv_heads), as in Llama and Qwen3."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.split = (config.q_dim, config.kv_dim, config.kv_dim)
        self.qkv = nn.Linear(config.d_model, sum(self.split), bias=False)
        self.out = nn.Linear(config.q_dim, config.d_model, bias=False)
        if config.qk_norm:
            self.q_norm = nn.RMSNorm(config.head_dim, eps=config.norm_eps)
            self.k_norm = nn.RMSNorm(config.head_dim, eps=config.norm_eps)
        else:
            self.q_norm = self.k_norm = nn.Identity()

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding,
                cache: tuple[KVCache, int] | None = None) -> torch.Tensor:
        """x: [B, T, d_model]; with `cache` = (KVCache, layer), x holds the positions after the cached
        ones, which it attends to as well."""
        B, T, _ = x.shape
        start = cache[0].length if cache is not None else 0
        q, k, v = self.qkv(x).split(self.split, dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim)
        k = k.view(B, T, self.n_kv_heads, self.head_dim)
        v = v.view(B, T, self.n_kv_heads, self.head_dim)
        # Normalise in the norms' dtype, then back to v's dtype, which SDPA needs under autocast: float32
        # for a model with float32 weights (as HF Qwen3 does, also under bf16 autocast), bf16 for one whose
        # weights are bf16 (a frozen teacher on CUDA), whose norms would otherwise get float32 input and
        # leave rms_norm's fused kernel ("Mismatch dtype between input and weight").
        norm_dtype = getattr(self.q_norm, "weight", q).dtype  # no QK-norm: no cast
        q = rope(self.q_norm(q.to(norm_dtype)).to(v.dtype).transpose(1, 2), start)
        k = rope(self.k_norm(k.to(norm_dtype)).to(v.dtype).transpose(1, 2), start)
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache[0].append(cache[1], k, v)
        grouped = {"enable_gqa": True} if self.n_kv_heads != self.n_heads else {}
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **grouped)
        else:  # new position i (absolute start + i) sees the keys at 0 .. start + i
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **grouped)
        return self.out(y.transpose(1, 2).reshape(B, T, self.split[0]))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), with gate and up fused into one matmul."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.d_ff, bias=False)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


def dropout(config: ModelConfig) -> nn.Module:
    """The config's dropout (active in train mode only), or nothing at all at P = 0."""
    return nn.Dropout(config.dropout) if config.dropout else nn.Identity()


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attn = Attention(config)
        self.ffn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.ffn = FeedForward(config)
        self.drop = dropout(config)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding,
                cache: tuple[KVCache, int] | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rope, cache))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.embed_drop = dropout(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.rope = RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_base)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = self.config.init_std
        nn.init.normal_(self.embed.weight, std=std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=std)
        for param in self.blocks.parameters():
            if param.ndim == 1:
                nn.init.ones_(param)
            else:
                fan_in = param.shape[1]
                nn.init.normal_(param, std=1 / math.sqrt(fan_in) if self.config.mup else std)
        nn.init.ones_(self.norm.weight)

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids [B, T] -> final-normed hidden states [B, T, d_model].

        With a `cache`, idx holds the positions after the cached ones (cache.length of them): their
        keys and values are added to the cache, and they attend to every earlier position."""
        start = cache.length if cache is not None else 0
        T = start + idx.shape[-1]
        if T > self.config.max_seq_len:
            raise UserError(f"sequence length {T} exceeds the model's max_seq_len {self.config.max_seq_len}: "
                            "use shorter sequences or a model built with a larger max_seq_len")
        if cache is not None and T > cache.max_len:
            raise ValueError(f"{T} positions do not fit a KV cache of {cache.max_len}")
        x = self.embed_drop(self.embed(idx))
        for layer, block in enumerate(self.blocks):
            x = block(x, self.rope, None if cache is None else (cache, layer))
        if cache is not None:
            cache.length = T
        return self.norm(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., d_model] -> logits [..., vocab_size], including the muP output multiplier."""
        logits = self.lm_head(h)
        multiplier = self.config.mup_multiplier
        return logits * multiplier if multiplier != 1.0 else logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_states(idx))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW parameter groups implementing simple muP.

        - block matrices: lr * mup_multiplier, weight decay weight_decay / mup_multiplier, so the
          per-step shrinkage lr * weight_decay of torch's AdamW is the same for every decayed tensor;
        - embedding and output head: lr, weight_decay;
        - norm gains: lr, no weight decay.
        """
        matrices, embeddings, gains = [], [], []
        for name, param in self.named_parameters():  # yields a tied matrix once
            if param.ndim == 1:
                gains.append(param)
            elif name.startswith("blocks."):
                matrices.append(param)
            else:
                embeddings.append(param)
        multiplier = self.config.mup_multiplier
        return [
            {"name": "matrices", "params": matrices, "lr": lr * multiplier,
             "weight_decay": weight_decay / multiplier},
            {"name": "embeddings", "params": embeddings, "lr": lr, "weight_decay": weight_decay},
            {"name": "gains", "params": gains, "lr": lr, "weight_decay": 0.0},
        ]
