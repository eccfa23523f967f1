"""The settings of the distillation objective, torch-free: what `losses.py`, the objectives, the
distill config and sweep specs share, and what result.json's `distillation` and `on_policy` sections
record."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


# lambda of top-k targets when none is given (docs/top_k_teachers.md): with only the teacher's
# top k and one tail category, a pure-KD student learns nothing of how the tail spreads over the other ids;
# measured, a CE share of 0.5 keeps top-5 and top-20 students within 2% of full-distribution ones.
TOP_K_KD_WEIGHT = 0.5


# Logits one chunk of the chunked loss may hold: 1024 tokens at a 32K vocabulary, as the former fixed
# chunk of 1024 tokens did there (128 MiB per float32 [chunk, V] buffer, about four alive at a time).
# At a small vocabulary the chunks grow (65,536 tokens at 512: a 32K-token batch in one chunk instead
# of 32), so a step issues fewer small operations; at a larger one they shrink, so memory stays bounded.
CHUNK_LOGITS = 1024 * 32768


def chunk_tokens(vocab_size: int, budget: int = CHUNK_LOGITS) -> int:
    """Tokens per chunk of the chunked loss at `vocab_size`: as many as keep chunk x vocabulary within
    `budget` logits (at least one)."""
    return max(1, budget // vocab_size)


class DistillationLossConfig(BaseModel):
    """Settings of the distillation objective (defaults as in Busbridge et al. 2025, docs/science.md §5)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kd: Literal["forward-kl", "reverse-kl", "jsd"] = "forward-kl"
    temperature: float = Field(1.0, gt=0, description="tau; KD is scaled by tau^2")
    kd_weight: float = Field(1.0, ge=0, le=1, description="lambda; CE gets 1 - lambda (default: 1, or "
                                                         f"{TOP_K_KD_WEIGHT} with top-k targets)")
    z_loss_weight: float = Field(1e-4, ge=0, description="lambda_z")
    top_k: int | None = Field(None, ge=1, description="keep the teacher's k most likely tokens")
    top_k_tail: bool = Field(True, description="with top_k: keep the teacher's mass outside the k ids as one "
                                               "more category (off: renormalise over the k ids, which lets a "
                                               "pure-KD student collapse onto them)")
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="teacher weight in the JSD mixture")
    chunk_size: int | None = Field(1024, ge=1, description="tokens per chunk; None = no chunking")


class OnPolicyConfig(BaseModel):
    """On-policy distillation (GKD, Agarwal et al. 2024): on a share `fraction` of the batches (GKD's
    lambda) the student continues prompts from the corpus by `continuation_tokens` sampled tokens at
    `temperature`, and the KD loss is computed on those tokens, the teacher scoring prompt plus
    continuation (training/on_policy.py). Resolved from the distill flags: lengths in tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fraction: float = Field(gt=0, le=1, description="lambda: share of batches the student generates")
    temperature: float = Field(1.0, ge=0, description="sampling temperature (0: the most likely token)")
    prompt_tokens: int = Field(ge=1, description="corpus tokens the student continues")
    continuation_tokens: int = Field(ge=1, description="tokens the student samples after each prompt")
    start: float = Field(0.0, ge=0, lt=1, description="share of the steps before the first on-policy batch")
