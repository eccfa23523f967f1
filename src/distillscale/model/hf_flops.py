"""Forward FLOPs per token of any Hugging Face causal LM, teacher or student: one formula, the family's.

`ModelConfig.forward_flops_per_token` counts 2 FLOPs per weight of every matmul a token goes through
(each block's projections and the output head) plus attention over the context, 4 x n_layers x
n_heads x head_dim per key (the scores q k^T and the weighted sum of values). `hf_forward_flops`
counts the same for a model of any architecture: the matmul weights are the model's matrices (every
parameter of 2 or more dimensions: `nn.Linear`, GPT-2's `Conv1D`, a router; the output head counted
even where it shares the input embedding's matrix), less its lookup tables (`nn.Embedding`: token and
position embeddings are no matmul); a mixture of experts' stacked expert weights ([experts, ...],
as transformers holds them) count num_experts_per_tok / num_experts of theirs, the share a token goes
through. The attention comes from the config (n_layers, heads, head size). A config without them
falls back to 2 x every parameter but the input lookup, attention not counted; `HFFlops.method` says
which it is. Experts held as separate layers are all counted (an upper bound).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from torch import nn

EXACT = "exact-from-config"
PARAMETERS = "2 x parameters"

METHODS = {
    EXACT: ("exact: 2 x the weights of every matmul (the model's matrices but its lookup tables, output head "
            "included; stacked experts at the routed share) + attention over the context, 4 x n_layers x "
            "n_heads x head_dim per key from the config, as ModelConfig.forward_flops_per_token counts the "
            "family (model.hf_flops)"),
    PARAMETERS: ("estimate: 2 x parameters per token (every weight but the input embedding, output head "
                 "included; the config does not state its layers and heads, so attention over the context "
                 "is not counted; model.hf_flops)"),
}


class HFFlops(BaseModel):
    """What a Hugging Face model's forward pass costs per token: 2 x `matmul_params` + `attention_per_key`
    x the context (`forward_flops_per_token`); `method` is EXACT or PARAMETERS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matmul_params: int      # weights used in a matmul once per token, the output head's included
    attention_per_key: int  # FLOPs per token per key attended: 4 n_layers n_heads head_dim (0 if unknown)
    method: str

    def forward_flops_per_token(self, seq_len: int) -> int:
        return 2 * self.matmul_params + self.attention_per_key * seq_len

    @property
    def method_text(self) -> str:
        return METHODS.get(self.method, self.method)


def hf_forward_flops(model: nn.Module) -> HFFlops:
    """`model` (a transformers causal LM, on any device, `meta` included) counted as the family is."""
    config = model.config
    layers, heads = _read(config, "num_hidden_layers"), _read(config, "num_attention_heads")
    hidden = _read(config, "hidden_size")
    head_dim = _read(config, "head_dim") or (hidden // heads if hidden and heads else None)
    if not (layers and heads and head_dim):
        return HFFlops(matmul_params=_parameters_but_input_lookup(model), attention_per_key=0, method=PARAMETERS)
    return HFFlops(matmul_params=_matmul_weights(model), attention_per_key=4 * layers * heads * head_dim,
                   method=EXACT)


def _read(config, name: str) -> int | None:
    """A positive int setting of the config (through its attribute map: GPT-2's n_layer is num_hidden_layers)."""
    value = getattr(config, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _matmul_weights(model: nn.Module) -> int:
    """Weights a token meets in a matmul: every matrix but the lookup tables (the head's counted, tied
    or not); stacked experts at the share of them a token is routed to."""
    from torch import nn  # torch on use: the record (HFFlops) is read without it

    config = model.config
    head = model.get_output_embeddings().weight
    lookups = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)} - {id(head)}
    experts = _read(config, "num_local_experts") or _read(config, "num_experts")
    routed = _read(config, "num_experts_per_tok")
    total = 0
    for weight in model.parameters():  # a tied matrix once
        if weight.ndim < 2 or id(weight) in lookups:
            continue
        stacked_experts = weight.ndim == 3 and experts and routed and weight.shape[0] == experts
        total += weight.numel() * routed // experts if stacked_experts else weight.numel()
    return total


def idle_expert_params(model: nn.Module) -> int:
    """The weights of a mixture of experts' stacked experts a token does not go through (all of them
    but num_experts_per_tok / num_experts of theirs); 0 for a dense model: N counts every expert, and
    N less these is what is active per token."""
    config = model.config
    experts = _read(config, "num_local_experts") or _read(config, "num_experts")
    routed = _read(config, "num_experts_per_tok")
    if not (experts and routed):
        return 0
    stacked = sum(weight.numel() for weight in model.parameters() if weight.ndim == 3 and weight.shape[0] == experts)
    return stacked - stacked * routed // experts


def _parameters_but_input_lookup(model: nn.Module) -> int:
    lookup = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight is lookup
    return sum(p.numel() for p in model.parameters()) - (0 if tied else lookup.numel())
