"""FLOP accounting for distillation (Busbridge et al. 2025, Eq. 9 and App. H).

    total = 3 F(N_S) D_S + F(N_T) (delta_lgt D_S + delta_pre 3 D_T)

F(N) is the forward cost of one token for a model with N non-embedding parameters; training costs
three forwards (forward plus a backward twice as expensive). The scenario indicators say whether the
teacher's logits (delta_lgt) and its pre-training (delta_pre) are paid out of the budget.

`run_flops` is the same equation for one engine run, with the model's exact forward count: the FLOPs
every result.json records, so the planner's accounting and what the engine spends are one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from distillscale.errors import UserError
from distillscale.laws import ComputeSettings
from distillscale.model.config import GATED_FFN_OMEGA

ArrayLike = Any


class ForwardCount(Protocol):
    """A model's exact forward FLOPs per token at a context: `ModelConfig` (the family), a generic
    Hugging Face student's record (`model.hf_flops`, the same count for any architecture)."""

    def forward_flops_per_token(self, seq_len: int) -> int: ...


@dataclass(frozen=True)
class ForwardFlops:
    """Forward FLOPs per token F(N), vectorised over N.

    `method="simple"` is the 2N approximation. `method="corrected"` adds attention over the context
    and the output projection for models of fixed aspect ratio rho = d_model / n_layers:

        F(N) = 2N (1 + sigma1 n_ctx N^(-1/3) + sigma2 n_vocab N^(-2/3)),
        sigma1 = (1 / (rho omega^2))^(1/3),  sigma2 = (rho / omega)^(1/3).
    """

    method: str = "corrected"
    n_ctx: int = 4096
    n_vocab: int = 32168
    aspect_ratio: float = 128.0
    omega: float = GATED_FFN_OMEGA

    METHODS = ("simple", "corrected")

    def __post_init__(self) -> None:
        if self.method not in self.METHODS:
            raise UserError(f"unknown FLOP method {self.method!r}: use one of {', '.join(self.METHODS)}")

    @classmethod
    def from_settings(cls, settings: ComputeSettings, method: str = "corrected") -> "ForwardFlops":
        """The accounting of a law's own setting (context, vocabulary, aspect ratio)."""
        return cls(method, settings.n_ctx, settings.n_vocab, settings.aspect_ratio)

    @property
    def sigma1(self) -> float:
        return (1.0 / (self.aspect_ratio * self.omega**2)) ** (1 / 3)

    @property
    def sigma2(self) -> float:
        return (self.aspect_ratio / self.omega) ** (1 / 3)

    def __call__(self, N: ArrayLike) -> np.ndarray | float:
        N = np.asarray(N, dtype=np.float64)
        if self.method == "simple":
            out = 2.0 * N
        else:
            out = 2.0 * N * (1.0 + self.sigma1 * self.n_ctx * N ** (-1 / 3)
                             + self.sigma2 * self.n_vocab * N ** (-2 / 3))
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Scenario:
    """Which parts of the teacher's cost come out of the budget (Busbridge Sec. 5)."""

    name: str
    teacher_inference: bool    # delta_lgt: the teacher's forward pass on every distillation token
    teacher_pretraining: bool  # delta_pre: training the teacher on D_T tokens
    description: str


SCENARIOS = {
    s.name: s for s in (
        Scenario("best-case", False, False, "the teacher is free: any teacher loss can be chosen"),
        Scenario("teacher-inference", True, False,
                 "the teacher exists; its logits on the student's tokens are paid"),
        Scenario("teacher-pretraining", False, True,
                 "the teacher is trained; its logits are shared by many students"),
        Scenario("teacher-pretraining-inference", True, True,
                 "the teacher is trained and used for this one student"),
    )
}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UserError(f"unknown scenario {name!r}: use one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


@dataclass(frozen=True)
class FlopBreakdown:
    """Where the FLOPs of a distillation go, by phase.

    student : training the student (forward and backward, 3 forwards per token).
    teacher_inference : the teacher's logits on off-policy (corpus) tokens.
    teacher_pretraining : training the teacher.
    student_generation : on-policy: the student sampling its continuations (KV-cache forwards).
    teacher_scoring : on-policy: the teacher's forward over each prompt and sampled continuation.
    teacher_remote : the teacher runs on its own GPUs (a server): its inference and scoring are not
        on the student's budget (`total`) but in `off_budget`.
    """

    student: float
    teacher_inference: float
    teacher_pretraining: float
    student_generation: float = 0.0
    teacher_scoring: float = 0.0
    teacher_remote: bool = False

    @property
    def teacher_served(self) -> float:
        """The teacher's forward passes for this student: its logits and its scoring."""
        return self.teacher_inference + self.teacher_scoring

    @property
    def total(self) -> float:
        """The FLOPs on the student's budget."""
        return (self.student + self.student_generation + self.teacher_pretraining
                + (0.0 if self.teacher_remote else self.teacher_served))

    @property
    def off_budget(self) -> float:
        """A remote teacher's FLOPs, spent on its own GPUs (0 when the teacher shares the budget)."""
        return self.teacher_served if self.teacher_remote else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"student": self.student, "teacher_inference": self.teacher_inference,
                "teacher_pretraining": self.teacher_pretraining,
                "student_generation": self.student_generation, "teacher_scoring": self.teacher_scoring,
                "teacher_remote": self.teacher_remote, "total": self.total, "off_budget": self.off_budget}


def distillation_flops(scenario: Scenario, student_flops_per_token: float, student_tokens: float,
                       teacher_flops_per_token: float = 0.0,
                       teacher_tokens: float = 0.0) -> FlopBreakdown:
    """Busbridge Eq. 9, split into its three parts, for per-token forward costs F(N_S), F(N_T)."""
    return FlopBreakdown(
        student=3.0 * student_flops_per_token * student_tokens,
        teacher_inference=(teacher_flops_per_token * student_tokens
                           if scenario.teacher_inference else 0.0),
        teacher_pretraining=(3.0 * teacher_flops_per_token * teacher_tokens
                             if scenario.teacher_pretraining else 0.0),
    )


def run_flops(model: ForwardCount, seq_len: int, tokens: float,
              teacher_flops_per_token: float = 0.0) -> FlopBreakdown:
    """What one training run of the engine spends on `tokens` tokens: Eq. 9 in the teacher-inference
    scenario (a distilled run pays its teacher's forward pass on every token; a supervised run has no
    teacher), with F = the model's exact forward FLOPs at its context (every matmul, attention
    included: `ModelConfig.forward_flops_per_token`) instead of the N-only approximation."""
    return distillation_flops(SCENARIOS["teacher-inference"], model.forward_flops_per_token(seq_len), tokens,
                              teacher_flops_per_token, teacher_tokens=0.0)


def generation_flops(model: ForwardCount, prompt_tokens: int, new_tokens: int, sequences: float = 1) -> float:
    """Forward FLOPs of sampling `new_tokens` after a prompt of `prompt_tokens`, per sequence times
    `sequences`, with a KV cache (model.generation): the model reads the prompt once and then every
    sampled token but the last, P + C - 1 positions, and the token at position t (1-based) attends
    to the t keys cached so far, i.e. costs `forward_flops_per_token(t)`:

        sum_{t=1}^{P+C-1} (2 W + 4 n_layers d_model t) = n 2W + 4 n_layers d_model n (n + 1) / 2,  n = P + C - 1

    with W the block and head weights (forward_flops_per_token(0) = 2W). Sampling itself (a softmax
    over the vocabulary) is element-wise work, not counted, as in `forward_flops_per_token`."""
    positions = prompt_tokens + new_tokens - 1
    weights = model.forward_flops_per_token(0)
    attention = model.forward_flops_per_token(1) - weights  # 4 n_layers d_model per key
    return float(sequences) * (positions * weights + attention * positions * (positions + 1) / 2)


def teacher_scoring_flops(teacher_flops_per_token: float, tokens: float) -> float:
    """The teacher's forward pass over `tokens` positions of prompts and their sampled continuations
    (on-policy distillation scores what the student generated): one forward per position, at the
    teacher's per-token cost at the training context, as for the teacher's logits on data."""
    return teacher_flops_per_token * tokens


# -- on-policy distillation and remote teachers, as the planner counts them ---------------------------
# (docs/science.md §3) An on-policy sequence is a prompt of P corpus tokens and a continuation of G
# tokens the student samples; the student trains on the continuation (its loss tokens) and the teacher
# scores the whole sequence. F(N) at context n is Busbridge's per-token forward cost of an n-token
# sequence: its attention term is the causal average over n positions, so attending to one position
# costs twice the term's per-position share.

def kv_cache_generation_flops(forward: ForwardFlops, params: float, prompt_tokens: int,
                              continuation_tokens: int) -> float:
    """Forward FLOPs of sampling a G-token continuation after a P-token prompt with a KV cache.

    The model runs once at each of the S - 1 positions (S = P + G: the prompt's prefill, then every
    sampled token but the last, whose logits are never needed), the token at position t attending
    to the t positions cached so far. Summed, that is (S - 1) F(N) at context S: one forward over
    the finished sequence, never a recomputation of the prefix."""
    length = prompt_tokens + continuation_tokens
    return (length - 1) * float(replace(forward, n_ctx=length)(params))


def on_policy_flops(forward: ForwardFlops, student_params: float, teacher_params: float, tokens: float,
                    fraction: float, prompt_tokens: int, continuation_tokens: int, *,
                    teacher_logits_paid: bool = True, teacher_remote: bool = False) -> FlopBreakdown:
    """The FLOPs of distilling on `tokens` student training tokens, a share `fraction` (GKD's lambda)
    of them continuations the student sampled (on-policy), the rest corpus tokens (off-policy).

    Per off-policy token: 3 F(N_S) to train and F(N_T) for the teacher's logits (at the accounting's
    context; not paid with `teacher_logits_paid=False`: a logit cache built before).
    Per on-policy sequence (S = P + G tokens, G of them trained on): 3 S F(N_S) to train on it,
    the KV-cache generation (`kv_cache_generation_flops`) and S F(N_T) for the teacher's scoring,
    each F at context S. `teacher_remote`: the teacher's FLOPs are off the student's budget.
    fraction = 0 with the logits paid is Eq. 9's teacher-inference scenario."""
    length = prompt_tokens + continuation_tokens
    at_length = replace(forward, n_ctx=length)
    sequences = fraction * tokens / continuation_tokens
    off_policy = (1.0 - fraction) * tokens
    return FlopBreakdown(
        student=3.0 * float(forward(student_params)) * off_policy
        + 3.0 * length * float(at_length(student_params)) * sequences,
        teacher_inference=float(forward(teacher_params)) * off_policy if teacher_logits_paid else 0.0,
        teacher_pretraining=0.0,
        student_generation=kv_cache_generation_flops(forward, student_params, prompt_tokens,
                                                     continuation_tokens) * sequences,
        teacher_scoring=length * float(at_length(teacher_params)) * sequences,
        teacher_remote=teacher_remote)
