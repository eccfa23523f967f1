"""What a model directory holds, counted from its config without reading its weights: the engine's one
count of parameters (non-embedding and total) and of forward FLOPs per token, for any model the
engine can load (a run of the family, a Llama/Qwen3 directory imported as the family, any other
Hugging Face causal LM through AutoModelForCausalLM, built on the meta device).

    size = model_size("models/qwen")         # ModelSize: .non_embedding_params, .count, .context
    size.forward_flops_per_token(2048)      # as `distill` counts its teacher at that context

Loading is safe: config.json is read as JSON, a model that needs its own code (`auto_map`) is refused
without `trust_remote_code`, and no weights are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from distillscale.errors import UserError, path_kind
from distillscale.model.hf_flops import HFFlops

if TYPE_CHECKING:
    from torch import nn

    from distillscale.model.config import ModelConfig


@dataclass(frozen=True)
class HFParameterCounts:
    """A Hugging Face model's parameters: all, all but the input and output embeddings (a tied matrix
    counted once), the input embedding's, and the output layer's rows."""

    total: int
    non_embedding: int
    input_embedding: int
    output_rows: int
    tied: bool


def hf_parameter_counts(model: nn.Module) -> HFParameterCounts:
    """The parameters of a transformers causal LM (on any device, `meta` included), the one count of
    the generic path's teachers and students."""
    input_embedding = model.get_input_embeddings().weight
    output_embedding = model.get_output_embeddings().weight
    tied = output_embedding is input_embedding
    total = sum(p.numel() for p in model.parameters())
    embedding = input_embedding.numel() + (0 if tied else output_embedding.numel())
    return HFParameterCounts(total=total, non_embedding=total - embedding, input_embedding=input_embedding.numel(),
                             output_rows=output_embedding.shape[0], tied=tied)


@dataclass(frozen=True)
class ModelSize:
    """A model's sizes and FLOP count: `count` is its ModelConfig (the family, imported Llama/Qwen3
    included) or its `HFFlops` (the generic path); `context` its longest sequence (None: not stated)."""

    path: str
    kind: Literal["family", "hf"]
    architecture: str
    non_embedding_params: int
    total_params: int
    output_rows: int
    context: int | None
    count: ModelConfig | HFFlops
    # A mixture of experts: its non-embedding parameters a token goes through (N counts every expert);
    # None for a dense model.
    active_params: int | None = None

    def describe_params(self) -> str:
        """N in words: a mixture of experts' total and active per token both."""
        if self.active_params is None:
            return f"{self.non_embedding_params:,} non-embedding parameters"
        return (f"{self.non_embedding_params:,} non-embedding parameters, every expert counted (a mixture of "
                f"experts: {self.active_params:,} active per token; the laws were fitted on dense models)")

    def forward_flops_per_token(self, seq_len: int) -> int:
        return self.count.forward_flops_per_token(seq_len)

    @property
    def flops_method(self) -> str:
        if isinstance(self.count, HFFlops):
            return self.count.method_text
        return "exact: ModelConfig.forward_flops_per_token (every matmul, output head and attention over the context)"


def needs_remote_code(path: str | os.PathLike) -> bool:
    """Whether a Hugging Face directory's config asks for its own code (`auto_map`)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("auto_map"))


def model_size(path: str | os.PathLike, trust_remote_code: bool = False, given_as: str = "model") -> ModelSize:
    """The sizes of the model in `path` (a run directory or a Hugging Face causal-LM directory), or a
    one-line UserError saying what `path` should be (`given_as` names it: "--teacher-model")."""
    from distillscale.model.checkpoint import CONFIG_FILE, load_config
    from distillscale.model.hf_import import hf_model_config, is_hf_directory, unsupported_reason

    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{given_as} {path} {path_kind(path)}, not a directory: give a distillscale run directory or "
                        "a Hugging Face causal-LM directory (config.json and weights)")
    if (path / CONFIG_FILE).is_file():
        return _family(path, load_config(path), "distillscale run")
    if not is_hf_directory(path):
        raise UserError(f"{given_as} {path} holds neither {CONFIG_FILE} (a distillscale run) nor a Hugging Face "
                        "config.json with a model_type: give a run directory or a Hugging Face causal-LM directory")
    if needs_remote_code(path) and not trust_remote_code:
        raise UserError(f"{given_as} {path} needs its own code (its config.json has auto_map), which distillscale "
                        "does not run by default: pass --trust-remote-code if you trust that code")
    if not needs_remote_code(path) and unsupported_reason(path) is None:
        return _family(path, hf_model_config(path), "Hugging Face (imported as the family)")
    return _generic(path, trust_remote_code, given_as)


def _family(path: Path, config: ModelConfig, architecture: str) -> ModelSize:
    return ModelSize(path=str(path), kind="family", architecture=architecture,
                     non_embedding_params=config.non_embedding_params, total_params=config.total_params,
                     output_rows=config.vocab_size, context=config.max_seq_len, count=config)


def _generic(path: Path, trust_remote_code: bool, given_as: str) -> ModelSize:
    """Any other causal LM: built from its config on the meta device (no memory, no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from distillscale.model.hf_flops import hf_forward_flops, idle_expert_params

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read the Hugging Face model config in {given_as} {path}: {first}") from None
    counts = hf_parameter_counts(model)
    context = getattr(config, "max_position_embeddings", None)
    idle = idle_expert_params(model)
    return ModelSize(path=str(path), kind="hf", architecture=(config.architectures or [type(model).__name__])[0],
                     non_embedding_params=counts.non_embedding, total_params=counts.total,
                     output_rows=counts.output_rows, context=context if isinstance(context, int) else None,
                     count=hf_forward_flops(model), active_params=counts.non_embedding - idle if idle else None)
