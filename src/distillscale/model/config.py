"""The size and shape of one model of the family, with its exact parameter and FLOP counts.

Sizes come from a ladder (Busbridge et al. 2025, docs/science.md §5): the depth `n_layers` and the
aspect ratio fix the width, d_model = aspect_ratio * n_layers; the head size is fixed, so
n_heads = d_model / head_dim. The gated FFN has 8/3 * d_model hidden units, rounded UP to a
multiple of 64 (the width matmul kernels tile well), so every layer holds about 12 d_model^2 weights.

A model that does not come from the ladder (imported from Llama / Qwen3, or pruned from a teacher)
states its shape: `d_model`, `n_heads`, `n_kv_heads` (grouped-query attention) and `d_ff`, each
independent of the others and of `n_layers`. Left out, each is derived as above (and `n_kv_heads` =
`n_heads`), and a derived value is left out of `model_dump()` too, so a ladder config reads and
writes exactly as before these fields existed.
"""

from __future__ import annotations

from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, SerializerFunctionWrapHandler,
                      ValidationError, model_serializer, model_validator)

from distillscale.errors import UserError

FFN_MULTIPLE_OF = 64
# The omega of Busbridge App. H, N = omega * n_layers * d_model^2: multi-head attention holds
# 4 d_model^2 per layer and a gated FFN of ratio 8/3 holds 3 * 8/3 d_model^2, so omega = 12.
GATED_FFN_OMEGA = 12.0


def family_width(params: float, aspect_ratio: float) -> float:
    """d_model of the family's model of `params` non-embedding parameters at `aspect_ratio` =
    d_model / n_layers: N = omega n_layers d_model^2 = omega d_model^3 / aspect_ratio (a continuous
    width, for a model known by its size alone)."""
    return (params * aspect_ratio / GATED_FFN_OMEGA) ** (1 / 3)


def ladder_d_ff(d_model: int) -> int:
    """8/3 * d_model rounded up to a multiple of FFN_MULTIPLE_OF."""
    return -(-8 * d_model // (3 * FFN_MULTIPLE_OF)) * FFN_MULTIPLE_OF


class ModelConfig(BaseModel):
    """Hyper-parameters of a decoder-only transformer (pre-norm RMSNorm, RoPE, SwiGLU, QK-norm).

    Building one from bad values raises `UserError` with a one-line message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layers: PositiveInt
    aspect_ratio: PositiveInt = 128
    head_dim: PositiveInt = 128
    vocab_size: PositiveInt
    max_seq_len: PositiveInt = 2048
    rope_base: PositiveFloat = 500_000.0
    tie_embeddings: bool = False
    qk_norm: bool = True
    mup: bool = True
    mup_base_width: PositiveInt = 256
    norm_eps: PositiveFloat = 1e-6
    init_std: PositiveFloat = 0.02
    # The explicit shape (None: derived from the ladder; always an int once the config is built).
    d_model: PositiveInt | None = None
    n_heads: PositiveInt | None = None
    n_kv_heads: PositiveInt | None = None
    d_ff: PositiveInt | None = None
    # Dropout on the embedding output and on each attention and MLP output before its residual add, in
    # train mode only (no FLOPs counted); 0 (the default) leaves it out of the model and of `model_dump()`.
    dropout: float = Field(0.0, ge=0, lt=1)

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise UserError(_one_line(exc)) from None

    @model_validator(mode="after")
    def _check_shape(self) -> "ModelConfig":
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        derived = self.derived_shape()
        if self.n_heads is None and derived["d_model"] % self.head_dim:
            width = (f"d_model = aspect_ratio * n_layers = {self.aspect_ratio} * {self.n_layers} = "
                     f"{derived['d_model']}" if self.d_model is None else f"d_model {self.d_model}")
            raise ValueError(f"{width} is not a multiple of head_dim {self.head_dim}: change the aspect ratio, "
                             f"the depth or head_dim, or give n_heads")
        for name, value in derived.items():  # frozen: set once, here
            object.__setattr__(self, name, value)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}: each "
                             f"key/value head serves the same number of query heads")
        return self

    def derived_shape(self) -> dict[str, int]:
        """The shape: each field as given, or as the ladder derives it from the others."""
        d_model = self.d_model or self.aspect_ratio * self.n_layers
        n_heads = self.n_heads or d_model // self.head_dim
        return {"d_model": d_model, "n_heads": n_heads, "n_kv_heads": self.n_kv_heads or n_heads,
                "d_ff": self.d_ff or ladder_d_ff(d_model)}

    @model_serializer(mode="wrap")
    def _leave_out_derived(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A shape field equal to what the ladder derives is left out: a ladder config dumps as before."""
        values = handler(self)
        d_model = self.aspect_ratio * self.n_layers
        if values.get("d_model") == d_model:
            del values["d_model"]
        d_model = self.d_model
        if d_model % self.head_dim == 0 and values.get("n_heads") == d_model // self.head_dim:
            del values["n_heads"]
        if values.get("n_kv_heads") == self.n_heads:
            del values["n_kv_heads"]
        if values.get("d_ff") == ladder_d_ff(d_model):
            del values["d_ff"]
        if values.get("dropout") == 0:
            del values["dropout"]
        return values

    @property
    def q_dim(self) -> int:
        """Width of the attention's queries (and of its output projection's input): n_heads * head_dim."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of its keys, and of its values: n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def mup_multiplier(self) -> float:
        """mup_base_width / d_model under muP, else 1: scales the hidden-matrix learning rate and the logits."""
        return self.mup_base_width / self.d_model if self.mup else 1.0

    @property
    def layer_matmul_params(self) -> int:
        """Weights of one block's matrices: q, k, v, o projections and the gate, up, down projections
        (4 d_model^2 + 3 d_model d_ff on the ladder)."""
        return self.d_model * (2 * self.q_dim + 2 * self.kv_dim) + 3 * self.d_model * self.d_ff

    @property
    def non_embedding_params(self) -> int:
        """All parameters except the token embedding and the output head (the N of the scaling laws):
        per block the matrices, two RMSNorm gains and (with QK-norm) the q and k gains; the final norm."""
        norm_gains = 2 * self.d_model + (2 * self.head_dim if self.qk_norm else 0)
        return self.n_layers * (self.layer_matmul_params + norm_gains) + self.d_model

    @property
    def embedding_params(self) -> int:
        """Token embedding plus output head (one shared matrix when tied)."""
        return self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)

    @property
    def total_params(self) -> int:
        return self.non_embedding_params + self.embedding_params

    def forward_flops_per_token(self, seq_len: int | None = None) -> int:
        """Forward-pass FLOPs per token at context `seq_len` (default max_seq_len), matmuls only.

        Counted: 2 FLOPs per weight of every block matrix and of the output head, plus, per layer,
        2 * seq_len * n_heads * head_dim (= d_model on the ladder) for the scores q k^T and the same
        for the weighted sum of values,
        over the full context (the causal mask is not credited, as in Hoffmann et al. 2022 App. F).
        Not counted: the embedding lookup, norms, RoPE, SwiGLU and softmax element-wise work.
        """
        seq_len = self.max_seq_len if seq_len is None else seq_len
        matmul_weights = self.n_layers * self.layer_matmul_params + self.d_model * self.vocab_size
        attention = self.n_layers * 2 * (2 * seq_len * self.q_dim)
        return 2 * matmul_weights + attention


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    where = f"{field}: " if field else ""
    got = f" (got {error['input']!r})" if field and error["type"] != "missing" else ""
    return f"invalid model config: {where}{message}{got}"
