"""The size and shape of one model of the family, with its exact parameter and FLOP counts.

Sizes come from a ladder (Busbridge et al. 2025, docs/science.md §5): the depth `n_layers` and the
aspect ratio fix the width, d_model = aspect_ratio * n_layers; the head size is fixed, so
n_heads = d_model / head_dim. The gated FFN has 8/3 * d_model hidden units, rounded UP to a
multiple of 64 (the width matmul kernels tile well), so every layer holds about 12 d_model^2 weights.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, ValidationError, model_validator

from distillscale.errors import UserError

FFN_MULTIPLE_OF = 64


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

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise UserError(_one_line(exc)) from None

    @model_validator(mode="after")
    def _check_shape(self) -> "ModelConfig":
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.d_model % self.head_dim:
            raise ValueError(
                f"d_model = aspect_ratio * n_layers = {self.aspect_ratio} * {self.n_layers} = {self.d_model} "
                f"is not a multiple of head_dim {self.head_dim}: change the aspect ratio, the depth or head_dim")
        return self

    @property
    def d_model(self) -> int:
        return self.aspect_ratio * self.n_layers

    @property
    def n_heads(self) -> int:
        return self.d_model // self.head_dim

    @property
    def d_ff(self) -> int:
        """8/3 * d_model rounded up to a multiple of FFN_MULTIPLE_OF."""
        return -(-8 * self.d_model // (3 * FFN_MULTIPLE_OF)) * FFN_MULTIPLE_OF

    @property
    def mup_multiplier(self) -> float:
        """mup_base_width / d_model under muP, else 1: scales the hidden-matrix learning rate and the logits."""
        return self.mup_base_width / self.d_model if self.mup else 1.0

    @property
    def layer_matmul_params(self) -> int:
        """Weights of one block's matrices: q, k, v, o projections and the gate, up, down projections."""
        return 4 * self.d_model**2 + 3 * self.d_model * self.d_ff

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
        2 * seq_len * d_model for the scores q k^T and the same for the weighted sum of values,
        over the full context (the causal mask is not credited, as in Hoffmann et al. 2022 App. F).
        Not counted: the embedding lookup, norms, RoPE, SwiGLU and softmax element-wise work.
        """
        seq_len = self.max_seq_len if seq_len is None else seq_len
        matmul_weights = self.n_layers * self.layer_matmul_params + self.d_model * self.vocab_size
        attention = self.n_layers * 2 * (2 * seq_len * self.d_model)
        return 2 * matmul_weights + attention


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    where = f"{field}: " if field else ""
    got = f" (got {error['input']!r})" if field and error["type"] != "missing" else ""
    return f"invalid model config: {where}{message}{got}"
