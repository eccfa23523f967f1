"""The student a recipe trains, of either kind, through one interface: `StudentModel`.

Two kinds implement it: `FamilyStudent` (the family's `Transformer`, its shape and exact counts in
`ModelConfig`) and `HFStudent` (any Hugging Face causal LM, `training/hf_student.py`). The recipes, the
checkpoints (`sharded_checkpoint.py`) and on-policy sampling (`on_policy.py`) call the interface and
never ask which kind a student is. What a run records about its student (`record()`: `ModelConfig` or
`HFStudentRecord`, `RunPlan.student`) counts its FLOPs by the same rule for both kinds: every matmul,
output head included, plus attention over the context (`ModelConfig.forward_flops_per_token`,
`model.hf_flops` for a Hugging Face model).

`FamilyStudent` is the `Transformer` itself (same modules, same state dict, same initialisation),
with the interface added here, so that the model stays lean and knows neither its checkpoints nor
its sampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from distillscale.model import ModelConfig, Transformer, generate, save_pretrained
from distillscale.planning.flops import generation_flops

if TYPE_CHECKING:
    from distillscale.training.records import HFStudentRecord


class StudentModel(Protocol):
    """A student of either kind: an `nn.Module` with `hidden_states(idx)`, `head(h)`, `param_groups`,
    and what a run needs of it besides training."""

    def record(self) -> ModelConfig | HFStudentRecord:
        """What config.json's plan records about it (`RunPlan.model` or `RunPlan.hf_student`)."""

    def forward_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token at context `seq_len`: block and head matmuls plus attention."""

    def generation_flops(self, prompt_tokens: int, new_tokens: int, sequences: float = 1) -> float:
        """FLOPs of sampling `new_tokens` after `prompt_tokens` with a KV cache (`planning.flops.generation_flops`)."""

    def save(self, run_path: Path) -> None:
        """Its weights at a checkpoint, in the run directory (atomically)."""

    def unsharded_copy(self) -> StudentModel:
        """A new student of the same shape on CPU, its weights to be loaded (the whole of a sharded model)."""

    def sample_continuations(self, prompt: torch.Tensor, new_tokens: int, temperature: float,
                             uniforms: torch.Tensor) -> torch.Tensor:
        """Prompt [B, P] followed by `new_tokens` tokens sampled with a KV cache [B, P + C]: token t of
        row b drawn by `model.generation.sample` from uniforms[b, t] ([B, C], in [0, 1)) alone, so that a
        row's continuation does not depend on the other rows of its batch."""


class CountsFromRecord:
    """`forward_flops_per_token` and `generation_flops` of a student, from its record (either kind)."""

    def record(self) -> ModelConfig | HFStudentRecord:
        raise NotImplementedError

    def forward_flops_per_token(self, seq_len: int) -> int:
        return self.record().forward_flops_per_token(seq_len)

    def generation_flops(self, prompt_tokens: int, new_tokens: int, sequences: float = 1) -> float:
        return generation_flops(self.record(), prompt_tokens, new_tokens, sequences)


class FamilyStudent(CountsFromRecord, Transformer):
    """A model of the family as a student: the `Transformer` with the `StudentModel` interface."""

    @classmethod
    def starting_from(cls, config: ModelConfig, weights: dict[str, torch.Tensor] | None = None) -> FamilyStudent:
        """`FamilyStudent(config)` (random weights from the global RNG), holding `weights` when given (a start)."""
        student = cls(config)
        if weights is not None:
            student.load_state_dict(weights, strict=True)
        return student

    def record(self) -> ModelConfig:
        return self.config

    def save(self, run_path: Path) -> None:
        save_pretrained(self, run_path)  # model.safetensors + model_config.json

    def unsharded_copy(self) -> FamilyStudent:
        return FamilyStudent(self.config)

    def sample_continuations(self, prompt: torch.Tensor, new_tokens: int, temperature: float,
                             uniforms: torch.Tensor) -> torch.Tensor:
        """Sampled in eval mode (no dropout in the policy's samples), the mode restored after."""
        was_training = self.training
        self.eval()
        try:
            return generate(self, prompt, new_tokens, temperature, uniforms=uniforms).tokens
        finally:
            self.train(was_training)
