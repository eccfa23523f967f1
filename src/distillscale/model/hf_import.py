"""Import a Hugging Face Llama or Qwen3 directory (config.json + safetensors) as a model of the family,
with the same logits: the inverse of `hf_export`.

Both architectures are our network with a stated shape (`ModelConfig.d_model`, `n_heads`,
`n_kv_heads`, `d_ff`): pre-norm RMSNorm, SwiGLU, the half-split RoPE layout, and for Qwen3 the per-head
q/k RMSNorm before RoPE (QK-norm). The q, k, v and the gate, up matrices are concatenated into our
fused ones; nothing else changes. The imported model has no muP multiplier (`mup=False`: its logits
are its output layer's, as in the original).

Loading is safe: config.json is read as JSON (no code of the directory runs) and the weights only
from safetensors files. A configuration that our network cannot reproduce exactly (another
architecture, biases, RoPE scaling, sliding windows, another activation) is refused in one line;
such a model can still be a teacher through the generic Hugging Face path (`AutoModelForCausalLM`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from distillscale.errors import UserError, path_kind
from distillscale.model.config import ModelConfig
from distillscale.model.transformer import Transformer

ARCHITECTURES = {"LlamaForCausalLM": False, "Qwen3ForCausalLM": True}  # architecture -> QK-norm
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
GENERIC_PATH = ("other causal LMs are used as teachers and students through the generic Hugging Face path "
                "(`distill --teacher DIR` or `--student-init DIR`, AutoModelForCausalLM)")


def is_hf_directory(path: str | os.PathLike) -> bool:
    """Whether `path` holds a Hugging Face model's config.json (one with a model_type)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except PermissionError:   # there but unreadable: said as such (naming it), not as "no model here"
        raise
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and "model_type" in values


def is_generic_hf(path: str | os.PathLike) -> bool:
    """Whether `path` is a Hugging Face directory the family does not import (another architecture, a
    Llama/Qwen3 configuration it cannot reproduce, or its own code in `auto_map`): used through
    AutoModelForCausalLM instead (the generic path). `~` is expanded, as every reader of a start expands
    it (in a config file, no shell has)."""
    path = Path(path).expanduser()
    if not is_hf_directory(path) or (path / "model_config.json").is_file():
        return False
    return bool(read_hf_config(path).get("auto_map")) or unsupported_reason(path) is not None


def unsupported_reason(directory: str | os.PathLike) -> str | None:
    """Why the Hugging Face directory cannot be imported exactly (None: it can)."""
    try:
        hf_model_config(directory)
    except UserError as exc:
        return str(exc)
    return None


def hf_model_config(directory: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of the Llama / Qwen3 model in `directory` (its config.json), or a one-line refusal."""
    directory = Path(directory)
    values = read_hf_config(directory)
    architectures = values.get("architectures") or []
    architecture = architectures[0] if isinstance(architectures, list) and len(architectures) == 1 else None
    if architecture not in ARCHITECTURES:
        raise UserError(f"{directory} holds a {architectures or values.get('model_type')!r} model: only "
                        f"{' and '.join(ARCHITECTURES)} import into the family; {GENERIC_PATH}")

    def check(key: str, allowed: Any, why: str) -> None:
        if values.get(key, allowed[0]) not in allowed:
            raise UserError(f"{directory}: {architecture} with {key}={values[key]!r} cannot be imported "
                            f"exactly ({why}); {GENERIC_PATH}")

    check("hidden_act", ("silu",), "the family's FFN is SwiGLU")
    check("attention_bias", (False,), "the family has no biases")
    check("mlp_bias", (False,), "the family has no biases")
    check("use_sliding_window", (False,), "the family attends to the whole context")
    rope = values.get("rope_parameters") or values.get("rope_scaling") or {}
    if not isinstance(rope, dict) or rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UserError(f"{directory}: {architecture} with RoPE scaling {rope!r} cannot be imported exactly "
                        f"(the family's RoPE is unscaled); {GENERIC_PATH}")
    rope_base = rope.get("rope_theta", values.get("rope_theta", 10_000.0))
    try:
        d_model, n_heads = int(values["hidden_size"]), int(values["num_attention_heads"])
        head_dim = values.get("head_dim") or d_model // n_heads
        return ModelConfig(
            n_layers=values["num_hidden_layers"], d_model=d_model, n_heads=n_heads,
            n_kv_heads=values.get("num_key_value_heads") or n_heads, head_dim=head_dim,
            d_ff=values["intermediate_size"], vocab_size=values["vocab_size"],
            max_seq_len=values.get("max_position_embeddings", 2048), rope_base=rope_base,
            norm_eps=values.get("rms_norm_eps", 1e-6), tie_embeddings=bool(values.get("tie_word_embeddings")),
            qk_norm=ARCHITECTURES[architecture], mup=False,
            init_std=values.get("initializer_range", 0.02))
    except KeyError as exc:
        raise UserError(f"{directory}/config.json lacks {exc.args[0]!r}: it is not a complete {architecture} "
                        f"config") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"{directory}/config.json: {exc}") from None
    except UserError as exc:
        raise UserError(f"{directory}/config.json: {exc}") from None


def import_hf(directory: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> Transformer:
    """The Llama / Qwen3 model in `directory` as our `Transformer` (weights in `dtype`), same logits."""
    directory = Path(directory)
    config = hf_model_config(directory)
    tensors = _read_safetensors(directory)
    with torch.device("meta"):
        model = Transformer(config)
    state = family_state_dict(tensors, config, where=str(directory))
    model.load_state_dict({name: tensor.to(dtype) for name, tensor in state.items()}, strict=True, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.rope = type(model.rope)(config.head_dim, config.max_seq_len, config.rope_base)  # was built on meta
    return model.to(device)


def family_state_dict(tensors: dict[str, torch.Tensor], config: ModelConfig, where: str) -> dict[str, torch.Tensor]:
    """Llama / Qwen3 tensor names -> our state dict (fused qkv and gate_up); unknown or missing names refused."""
    tensors = dict(tensors)
    tensors.pop("model.rotary_emb.inv_freq", None)  # old checkpoints store RoPE's frequencies; ours are derived
    state: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        try:
            return tensors.pop(name)
        except KeyError:
            raise UserError(f"{where} lacks the tensor {name}: the weights do not match config.json") from None

    state["embed.weight"] = take("model.embed_tokens.weight")
    state["norm.weight"] = take("model.norm.weight")
    for i in range(config.n_layers):
        prefix = f"model.layers.{i}"
        for layer_name in (f"{prefix}.rotary_emb.inv_freq", f"{prefix}.self_attn.rotary_emb.inv_freq"):
            tensors.pop(layer_name, None)
        attn = f"{prefix}.self_attn"
        state |= {
            f"blocks.{i}.attn_norm.weight": take(f"{prefix}.input_layernorm.weight"),
            f"blocks.{i}.attn.qkv.weight": torch.cat([take(f"{attn}.{p}_proj.weight") for p in "qkv"]),
            f"blocks.{i}.attn.out.weight": take(f"{attn}.o_proj.weight"),
            f"blocks.{i}.ffn_norm.weight": take(f"{prefix}.post_attention_layernorm.weight"),
            f"blocks.{i}.ffn.gate_up.weight": torch.cat([take(f"{prefix}.mlp.gate_proj.weight"),
                                                         take(f"{prefix}.mlp.up_proj.weight")]),
            f"blocks.{i}.ffn.down.weight": take(f"{prefix}.mlp.down_proj.weight"),
        }
        if config.qk_norm:
            state[f"blocks.{i}.attn.q_norm.weight"] = take(f"{attn}.q_norm.weight")
            state[f"blocks.{i}.attn.k_norm.weight"] = take(f"{attn}.k_norm.weight")
    head = tensors.pop("lm_head.weight", None)
    if head is None and not config.tie_embeddings:
        raise UserError(f"{where} lacks lm_head.weight although config.json says the embeddings are not tied")
    state["lm_head.weight"] = state["embed.weight"] if head is None or config.tie_embeddings else head
    if tensors:
        raise UserError(f"{where} holds tensors a {config.n_layers}-layer Llama/Qwen3 does not have "
                        f"(e.g. {sorted(tensors)[0]}): the weights do not match config.json")
    expected = family_shapes(config)
    for name, tensor in state.items():
        if tuple(tensor.shape) != expected[name]:
            raise UserError(f"{where}: {name} has shape {tuple(tensor.shape)}, config.json implies "
                            f"{expected[name]}: the weights do not match config.json")
    return state


def family_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor of our model of `config` (built on the meta device: no memory)."""
    with torch.device("meta"):
        return {name: tuple(tensor.shape) for name, tensor in Transformer(config).state_dict().items()}


def read_hf_config(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise UserError(f"{directory} {path_kind(directory)}, not a directory: give a Hugging Face model "
                        f"directory (config.json and safetensors)")
    path = directory / "config.json"
    if not path.is_file():
        raise UserError(f"{directory} has no config.json: give a Hugging Face model directory")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}): restore it") from None
    if not isinstance(values, dict):
        raise UserError(f"{path} must hold a JSON object")
    return values


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the directory's safetensors file(s) (one file, or the shards its index names)."""
    if (directory / SINGLE_FILE).is_file():
        files = [directory / SINGLE_FILE]
    elif (directory / INDEX_FILE).is_file():
        try:
            names = sorted(set(json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{directory / INDEX_FILE} is not a readable safetensors index") from None
        if not all(isinstance(name, str) and Path(name).name == name and name.endswith(".safetensors")
                   for name in names):
            raise UserError(f"{directory / INDEX_FILE} names files that are not safetensors files of the directory")
        files = [directory / name for name in names]
    else:
        raise UserError(f"{directory} has no {SINGLE_FILE} (nor {INDEX_FILE}): import reads safetensors only "
                        f"(pickled .bin weights can run code); convert them with safetensors first")
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(path, framework="pt") as handle:
                for name in handle.keys():
                    tensors[name] = handle.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
    return tensors
