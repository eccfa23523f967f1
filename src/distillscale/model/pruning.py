"""Structured pruning of a model of the family into a smaller one (a student that starts from its teacher).

Importance, measured on calibration batches (`importance`):
- "gradient" (MiniMA, after CoFi): a mask of ones multiplies each attention head's output, each FFN
  neuron's activation and each hidden channel of the residual stream (the embedding's output and
  every block's attention and FFN outputs); a unit's importance is |dL/dmask| (first-order Taylor
  estimate of the loss change when it is removed), summed over the batches;
- "activation" (Minitron): the mean L2 norm of each head's output, the mean |activation| of each FFN
  neuron, and the mean |value| of each channel of every RMSNorm's output, summed over layers.
The scores of heads and neurons are normalised per layer (each layer's sum is 1): every layer keeps
the same number of them (one shape for all blocks), chosen within the layer.
Block importance (Men et al., ShortGPT; used by Minitron for depth): 1 - the mean cosine between a
block's input and output residual stream.

`prune` keeps the most important units: blocks (by block importance, or the first ones, dropping
blocks from the end of the stack), hidden channels, key/value head groups (a group's score is the sum
of its query heads'; with multi-head attention a group is one head) and FFN neurons. The kept weights
are copied as they are, so with nothing pruned the model is the original, bit for bit; under muP the
output multiplier base/d_model changes with d_model, and the ratio is folded into lm_head.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal

import torch
import torch.nn.functional as F

from distillscale.errors import UserError
from distillscale.model.config import ModelConfig
from distillscale.model.transformer import Transformer

ImportanceMethod = Literal["gradient", "activation"]
DepthBy = Literal["importance", "last"]


@dataclass(frozen=True)
class Importance:
    """Scores of every prunable unit, higher = more important; heads and neurons normalised per layer."""

    method: ImportanceMethod
    heads: torch.Tensor      # [n_layers, n_heads]
    neurons: torch.Tensor    # [n_layers, d_ff]
    channels: torch.Tensor   # [d_model]
    blocks: torch.Tensor     # [n_layers]: 1 - cos(block input, block output)
    tokens: int              # calibration tokens they were measured on


@dataclass(frozen=True)
class PruneTarget:
    """The pruned shape; None keeps the teacher's."""

    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None

    def resolve(self, config: ModelConfig) -> dict[str, int]:
        """The target shape, checked against the teacher's (no dimension may grow)."""
        shape = {"n_layers": self.n_layers or config.n_layers, "d_model": self.d_model or config.d_model,
                 "n_heads": self.n_heads or config.n_heads, "d_ff": self.d_ff or config.d_ff}
        for name, value in shape.items():
            if value > getattr(config, name):
                raise UserError(f"--{name.replace('_', '-')} {value} is larger than the teacher's "
                                f"{getattr(config, name)}: pruning only removes units; give at most that")
        group = config.n_heads // config.n_kv_heads
        if shape["n_heads"] % group:
            raise UserError(f"--n-heads {shape['n_heads']} is not a multiple of the teacher's {group} query heads "
                            f"per key/value head: pruning removes whole groups, give a multiple of {group}")
        shape["n_kv_heads"] = shape["n_heads"] // group
        return shape


def target_for_params(config: ModelConfig, non_embedding_params: int) -> PruneTarget:
    """The widest uniform width pruning (same fraction of heads, channels and FFN neurons, depth kept)
    with at most `non_embedding_params` non-embedding parameters."""
    group = config.n_heads // config.n_kv_heads
    for n_heads in range(config.n_heads, 0, -group):
        fraction = n_heads / config.n_heads
        target = PruneTarget(d_model=max(1, round(fraction * config.d_model)), n_heads=n_heads,
                             d_ff=max(1, round(fraction * config.d_ff)))
        if pruned_config(config, target.resolve(config)).non_embedding_params <= non_embedding_params:
            return target
    raise UserError(f"--params {non_embedding_params} is below the smallest uniform pruning of the teacher "
                    f"(one key/value group per layer): give a shape with --n-layers, --d-model, --n-heads, --d-ff")


def pruned_config(config: ModelConfig, shape: dict[str, int]) -> ModelConfig:
    """The teacher's config at `shape` (a tied matrix is untied when muP's multiplier changes)."""
    values = config.model_dump() | shape
    if config.mup and shape["d_model"] != config.d_model:
        values["tie_embeddings"] = False
    return ModelConfig(**values)


@contextlib.contextmanager
def _hooks(model: Transformer, method: ImportanceMethod) -> Iterator[dict[str, list]]:
    """Masks (gradient) or activation statistics (activation) on every unit, and the block cosines."""
    config = model.config
    L, H, hd = config.n_layers, config.n_heads, config.head_dim
    device = model.embed.weight.device
    dtype = torch.promote_types(model.embed.weight.dtype, torch.float32)  # float32, or float64 for a float64 model
    found: dict[str, list] = {"blocks": [], "heads": [None] * L, "neurons": [None] * L,
                              "channels": torch.zeros(config.d_model, device=device, dtype=dtype)}
    masks = None
    if method == "gradient":
        masks = {"heads": torch.ones(L, H, device=device, dtype=dtype, requires_grad=True),
                 "neurons": torch.ones(L, config.d_ff, device=device, dtype=dtype, requires_grad=True),
                 "channels": torch.ones(config.d_model, device=device, dtype=dtype, requires_grad=True)}
        found["masks"] = masks
    handles = []

    def on_heads(layer: int):
        def hook(module, args):
            y = args[0]
            heads = y.unflatten(-1, (H, hd))
            if masks is not None:
                return ((heads * masks["heads"][layer][:, None].to(y.dtype)).flatten(-2),)
            found["heads"][layer] = heads.detach().norm(dim=-1).flatten(0, -2).mean(0)
        return hook

    def on_neurons(layer: int):
        def hook(module, args):
            if masks is not None:
                return (args[0] * masks["neurons"][layer].to(args[0].dtype),)
            found["neurons"][layer] = args[0].detach().abs().flatten(0, -2).mean(0)
        return hook

    def on_residual(module, args, output):  # gradient: the channel mask on what enters the residual stream
        return output * masks["channels"].to(output.dtype)

    def on_norm(module, args, output):  # activation: every RMSNorm's output, summed over layers
        found["channels"] += output.detach().abs().flatten(0, -2).mean(0)

    def on_block(module, args, output):
        cos = F.cosine_similarity(args[0].detach().float(), output.detach().float(), dim=-1)
        found["blocks"].append(1 - cos.mean())

    for i, block in enumerate(model.blocks):
        handles.append(block.attn.out.register_forward_pre_hook(on_heads(i)))
        handles.append(block.ffn.down.register_forward_pre_hook(on_neurons(i)))
        handles.append(block.register_forward_hook(on_block))
        if masks is not None:
            handles += [module.register_forward_hook(on_residual) for module in (block.attn, block.ffn)]
        else:
            handles += [norm.register_forward_hook(on_norm) for norm in (block.attn_norm, block.ffn_norm)]
    if masks is not None:
        handles.append(model.embed.register_forward_hook(on_residual))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def importance(model: Transformer, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               method: ImportanceMethod = "gradient") -> Importance:
    """Scores of `model`'s units on calibration `batches` of (inputs [B, T], targets [B, T])."""
    config = model.config
    was_training = model.training
    model.eval()
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # only the masks need gradients
    heads = torch.zeros(config.n_layers, config.n_heads, dtype=torch.float64)  # sums over batches
    neurons = torch.zeros(config.n_layers, config.d_ff, dtype=torch.float64)
    channels = torch.zeros(config.d_model, dtype=torch.float64)
    blocks = torch.zeros(config.n_layers, dtype=torch.float64)
    tokens = 0
    try:
        for inputs, targets in batches:
            with _hooks(model, method) as found, torch.enable_grad() if method == "gradient" else torch.no_grad():
                logits = model(inputs)
                if method == "gradient":
                    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
                    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
                    masks = found["masks"]
                    grads = torch.autograd.grad(loss, [masks["heads"], masks["neurons"], masks["channels"]])
                    heads += grads[0].abs().cpu()
                    neurons += grads[1].abs().cpu()
                    channels += grads[2].abs().cpu()
                else:
                    heads += torch.stack(found["heads"]).cpu()
                    neurons += torch.stack(found["neurons"]).cpu()
                    channels += found["channels"].cpu()
                blocks += torch.stack(found["blocks"]).cpu()
            tokens += inputs.numel()
    finally:
        for param, flag in zip(model.parameters(), requires_grad):
            param.requires_grad_(flag)
        model.train(was_training)
    if tokens == 0:
        raise ValueError("importance needs at least one calibration batch")
    return Importance(method=method, heads=_per_layer(heads), neurons=_per_layer(neurons), channels=channels,
                      blocks=blocks, tokens=tokens)


def _per_layer(scores: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (a row of zeros stays zero)."""
    return scores / scores.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in their original order (ties: the earlier unit)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:k]
    return torch.tensor(sorted(order), dtype=torch.long)


@torch.no_grad()
def prune(model: Transformer, target: PruneTarget, scores: Importance, depth_by: DepthBy = "importance"
          ) -> tuple[Transformer, dict[str, list[int]]]:
    """The pruned model and the teacher's units it kept ("blocks", "channels")."""
    config = model.config
    shape = target.resolve(config)
    new_config = pruned_config(config, shape)
    group = config.n_heads // config.n_kv_heads
    blocks = (_top(scores.blocks, shape["n_layers"]) if depth_by == "importance"
              else torch.arange(shape["n_layers"]))
    channels = _top(scores.channels, shape["d_model"])
    pruned = Transformer(new_config).to(model.embed.weight.device, model.embed.weight.dtype)
    state = {"embed.weight": model.embed.weight[:, channels], "norm.weight": model.norm.weight[channels]}
    head = model.lm_head.weight[:, channels]
    if config.mup:  # keep lm_head(h) * multiplier: the multiplier is base / d_model
        head = head * (config.mup_multiplier / new_config.mup_multiplier)
    state["lm_head.weight"] = head
    hd = config.head_dim
    for new, old in enumerate(blocks.tolist()):
        block = model.blocks[old]
        groups = _top(scores.heads[old].view(config.n_kv_heads, group).sum(-1), shape["n_kv_heads"])
        heads = (groups[:, None] * group + torch.arange(group)).flatten()
        q_rows = (heads[:, None] * hd + torch.arange(hd)).flatten()
        kv_rows = (groups[:, None] * hd + torch.arange(hd)).flatten()
        q, k, v = block.attn.qkv.weight.split(block.attn.split)
        neurons = _top(scores.neurons[old], shape["d_ff"])
        gate, up = block.ffn.gate_up.weight.chunk(2)
        prefix = f"blocks.{new}."
        state |= {
            prefix + "attn_norm.weight": block.attn_norm.weight[channels],
            prefix + "attn.qkv.weight": torch.cat([q[q_rows], k[kv_rows], v[kv_rows]])[:, channels],
            prefix + "attn.out.weight": block.attn.out.weight[channels][:, q_rows],
            prefix + "ffn_norm.weight": block.ffn_norm.weight[channels],
            prefix + "ffn.gate_up.weight": torch.cat([gate[neurons], up[neurons]])[:, channels],
            prefix + "ffn.down.weight": block.ffn.down.weight[channels][:, neurons],
        }
        if config.qk_norm:
            state[prefix + "attn.q_norm.weight"] = block.attn.q_norm.weight
            state[prefix + "attn.k_norm.weight"] = block.attn.k_norm.weight
    pruned.load_state_dict(state, strict=True)
    return pruned, {"blocks": blocks.tolist(), "channels": channels.tolist()}
