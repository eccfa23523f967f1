"""Several teachers, one target: the weighted mixture of their distributions.

`distill --teacher A --teacher B --teacher-weight 0.7 --teacher-weight 0.3` distils the student towards

    p_mix = sum_i w_i softmax(z_i / tau)          (weights normalised to sum 1)

in probability space, not a mixture of logits. The mixture is seen through the interface of one teacher
(`hidden_states(idx)`, `head(h)`), so the chunked loss, top-k targets (the top k of the mixture, on the
union of the teachers' ids) and on-policy batches take it unchanged:

- `hidden_states` concatenates the teachers' hidden states along the last axis;
- `head` splits them again and returns tau * logsumexp_i(log w_i + log_softmax(z_i / tau)), logits whose
  softened distribution softmax(. / tau) is exactly p_mix. A zero-weight teacher adds no mass and is
  left out of the sum; with one teacher of positive weight left (weights (1, 0)) the head is that
  teacher's own logits, so the mixture equals distilling from the first teacher alone, bit for bit
  (tests/training/test_mixture.py; the zero-weight teacher is still run and counted).

Routing (`--teacher NAME=PATH ... --teacher-route FIELD`): each position is distilled from the teacher
named by the FIELD of the jsonl/parquet row of its document (prepared per token, `data.prepare`): the
position's log-weights (0 for its teacher, -inf for the others) ride along with the hidden states, and
a window that spans two documents gives each position its own document's teacher (no per-sequence
choice to make). Every teacher still runs on every position (their FLOPs are counted so).

Every teacher speaks the student's tokenizer (a mixture across tokenizers is refused). Its cost is
every teacher's forward pass on every training token (zero-weight teachers included: they are run);
result.json's `teacher` is the mixture (kind "mixture", its validation loss the mixture's
cross-entropy on the student's validation tokens) with each teacher, its weight, loss and FLOPs, in
`teacher.teachers`. The distillation law was fitted for one teacher: `plan` applies it to a mixture with
the mixture's measured cross-entropy as L_T, marked outside its fit (planning/plan.py).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from distillscale.data.sampler import TokenSampler, iter_eval_batches
from distillscale.training.losses import cross_entropy_loss
from distillscale.training.records import TeacherRecord
from distillscale.training.teachers import Teacher

MIXTURE_FLOPS_METHOD = "the sum of the teachers' forward FLOPs per token (each teacher runs on every token)"


def normalised_weights(weights: list[float] | None, count: int) -> list[float]:
    """The mixture's weights summing to 1 (equal when not given); the config has checked them."""
    weights = list(weights) if weights is not None else [1.0] * count
    total = math.fsum(weights)
    return [weight / total for weight in weights]


@dataclass(frozen=True)
class MixtureInfo:
    """What result.json records about a mixture: each teacher's info, weight and validation loss (kept
    in `TeacherRecord`'s extra keys `teachers`, and `weight` and `name` in each, so that a single
    teacher's record is as it was)."""

    teachers: list[Any]           # each teacher's `TeacherInfo`
    weights: list[float]          # normalised (routed: each teacher's share of the training tokens)
    teacher_val_losses: list[float]
    names: list[str | None]
    route: str | None = None      # routed: the data field naming each document's teacher (weights: token shares)

    path = "mixture"
    kind = "mixture"
    flops_method = MIXTURE_FLOPS_METHOD

    @property
    def forward_flops_per_token(self) -> int:
        return sum(info.forward_flops_per_token for info in self.teachers)

    @property
    def non_embedding_params(self) -> int:
        """The largest teacher's (the size a student is compared with)."""
        return max(info.non_embedding_params for info in self.teachers)

    def record(self, teacher_val_loss: float, tokens: int, **more: Any) -> TeacherRecord:
        """result.json's `teacher`: the mixture (its cross-entropy `teacher_val_loss`, the FLOPs of all
        teachers) and `teachers`, each teacher's own record with its weight."""
        teachers = [info.record(loss, tokens, weight=weight, **({"name": name} if name else {}))
                    for info, weight, loss, name in zip(self.teachers, self.weights, self.teacher_val_losses,
                                                        self.names)]
        return TeacherRecord(path=self.path, kind=self.kind, teacher_val_loss=teacher_val_loss,
                             non_embedding_params=None, total_params=None,
                             forward_flops_per_token=self.forward_flops_per_token,
                             flops=float(sum(teacher.flops for teacher in teachers)),
                             flops_method=self.flops_method,
                             teachers=[teacher.model_dump(mode="json") for teacher in teachers],
                             **({"route": self.route} if self.route is not None else {}), **more)


class MixtureTeacher(nn.Module):
    """Frozen teachers seen as one: `head` returns logits whose softmax at `temperature` is the weighted
    mixture of the teachers' softmaxes at that temperature (module docstring)."""

    def __init__(self, teachers: list[Teacher], weights: list[float], temperature: float = 1.0,
                 info: MixtureInfo | None = None):
        super().__init__()
        if len(teachers) != len(weights) or len(teachers) < 2:
            raise ValueError("a mixture needs two teachers or more and one weight per teacher")
        self.teachers = nn.ModuleList(teachers)
        self.weights = list(weights)
        self.temperature = temperature
        self.vocab_size = teachers[0].vocab_size
        self.info = info
        # not a buffer: `.to(bf16)` of the teachers must leave the weights in float32
        self.log_weights = torch.tensor([math.log(w) if w > 0 else -math.inf for w in weights])
        self._widths: list[int] = []
        # routed (`--teacher-route`): the teacher index of each position of the next batch, [B, T]
        self.route: torch.Tensor | None = None
        self._routed = False

    def at_temperature(self, temperature: float) -> MixtureTeacher:
        """The same teachers and weights at another temperature (1: the mixture's own distribution)."""
        return MixtureTeacher(list(self.teachers), self.weights, temperature, self.info)

    def train(self, mode: bool = True) -> MixtureTeacher:
        return super().train(False)

    def compile_trunk(self) -> MixtureTeacher:
        for teacher in self.teachers:
            teacher.compile_trunk()
        return self

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        states = [teacher.hidden_states(idx) for teacher in self.teachers]
        self._widths = [state.shape[-1] for state in states]
        dtype = states[0].dtype
        self._routed = self.route is not None
        if self._routed:  # each position's log-weights ride along: 0 for its teacher, -inf for the others
            if self.route.shape != idx.shape:
                raise ValueError(f"routes {tuple(self.route.shape)} for a batch of {tuple(idx.shape)}")
            log_weights = torch.full((*idx.shape, len(self.teachers)), -math.inf, dtype=dtype, device=idx.device)
            log_weights.scatter_(-1, self.route.to(idx.device).long().unsqueeze(-1), 0.0)
            states.append(log_weights)
            self._widths.append(len(self.teachers))
        return torch.cat([state.to(dtype) for state in states], dim=-1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        if sum(self._widths) != h.shape[-1]:
            raise ValueError(f"mixture hidden states of width {h.shape[-1]}, expected {sum(self._widths)} "
                             f"(call hidden_states first)")
        tau = self.temperature
        parts = torch.split(h, self._widths, dim=-1)
        if self._routed:  # each row its own teacher: the log-weights are the last columns
            log_probs = torch.stack([(teacher.head(part).float() / tau).log_softmax(-1)
                                     for teacher, part in zip(self.teachers, parts)])
            row_weights = parts[-1].float().movedim(-1, 0).unsqueeze(-1)  # [K, ..., 1]
            return tau * torch.logsumexp(log_probs + row_weights, dim=0)
        # a zero-weight teacher adds no mass: left out, and one teacher left is its own logits (exactly)
        kept = [i for i, weight in enumerate(self.weights) if weight > 0]
        if len(kept) == 1:
            return self.teachers[kept[0]].head(parts[kept[0]])
        log_probs = torch.stack([(self.teachers[i].head(parts[i]).float() / tau).log_softmax(-1) for i in kept])
        log_weights = self.log_weights[kept].to(log_probs.device).view(-1, *([1] * (log_probs.dim() - 1)))
        return tau * torch.logsumexp(log_probs + log_weights, dim=0)


class RoutedSampler(TokenSampler):
    """`TokenSampler`'s batches with the teacher index of every input position: the route of its
    document, read from the prepared corpus's per-token routes."""

    def __init__(self, tokens: np.ndarray, routes: np.ndarray, teacher_of: np.ndarray, seq_len: int,
                 batch_size: int, seed: int):
        super().__init__(tokens, seq_len, batch_size, seed)
        if len(routes) != len(tokens):
            raise RuntimeError(f"{len(routes)} routes for {len(tokens)} tokens")
        self.routes = routes
        self.teacher_of = teacher_of

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        inputs, targets = super().batch(step, rank, world_size)
        starts = self.rank_windows(step, rank, world_size) * self.seq_len
        route_ids = self.routes[starts[:, None] + np.arange(self.seq_len)]
        return inputs, targets, torch.from_numpy(self.teacher_of[route_ids])


ROUTE_CHUNK = 1 << 20  # route ids counted at once (`route_shares`): 8 MB of int64 at most


def route_shares(routes: np.ndarray, teacher_of: np.ndarray, teachers: int) -> list[float]:
    """Each teacher's share of the tokens whose route ids are `routes` (the prepared corpus's memory-mapped
    per-token ids, one byte each), counted a chunk at a time: never a copy of the whole split."""
    counts = np.zeros(len(teacher_of), dtype=np.int64)
    for first in range(0, len(routes), ROUTE_CHUNK):
        counts += np.bincount(routes[first:first + ROUTE_CHUNK], minlength=len(teacher_of))
    per_teacher = np.bincount(teacher_of, weights=counts, minlength=teachers)
    return (per_teacher / per_teacher.sum()).tolist()


@torch.no_grad()
def routed_loss(mixture: MixtureTeacher, tokens: np.ndarray, routes: np.ndarray, teacher_of: np.ndarray,
                seq_len: int, batch_size: int, max_tokens: int | None, device: torch.device, autocast) -> float:
    """The routed mixture's cross-entropy on the validation windows `evaluate` reads (every process
    computes all of them: the same number everywhere); `routes` are the split's per-token route ids
    (memory-mapped), mapped to teachers by `teacher_of` one batch at a time."""
    total, count = 0.0, 0
    teacher_of = torch.from_numpy(np.asarray(teacher_of, dtype=np.int64))
    batches = zip(iter_eval_batches(tokens, seq_len, batch_size, max_tokens),
                  iter_eval_batches(routes, seq_len, batch_size, max_tokens))
    for (inputs, targets), (route_ids, _) in batches:
        mixture.route = teacher_of[route_ids]
        with autocast:
            output = cross_entropy_loss(mixture.hidden_states(inputs.to(device)), mixture.head, targets.to(device))
        mixture.route = None
        total += output.ce.double().item() * targets.numel()
        count += targets.numel()
    return total / count


# --- served teachers (`--teacher-url` given several times): top-k targets merged on the union of ids ---

def merge_top_k(ids: list[torch.Tensor], log_probs: list[torch.Tensor], weights: list[float],
                vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted mixture of top-k teachers on the union of their ids: teacher i gives ids [..., k_i]
    and their log-probabilities (normalised over the vocabulary); an id gets log sum_i w_i p_i(id),
    p_i(id) = 0 where teacher i did not list it (that mass stays in its tail, and so in the mixture's
    tail, 1 - the union's mass). Zero-weight teachers are left out; one teacher left is returned as is.

    Returns ids and log-probabilities [..., K], K = sum of the kept k_i, most likely first. Where the
    union holds fewer than K ids (the teachers agree on some), the free slots take distinct ids outside
    it, each with an even share of the mixture's tail, (1 - union mass) / (V - union size): the tail
    taken as uniform over those few ids, its total unchanged.
    """
    kept = [i for i, weight in enumerate(weights) if weight > 0]  # (None for a zero-weight teacher is fine)
    if len(kept) == 1:
        return ids[kept[0]], log_probs[kept[0]]
    all_ids = torch.cat([ids[i].long() for i in kept], -1)
    all_p = torch.cat([weights[i] * log_probs[i].double().exp() for i in kept], -1)
    width = all_ids.shape[-1]
    if vocab_size < 2 * width:
        raise ValueError(f"a vocabulary of {vocab_size} ids is too small to merge {width} top-k ids")
    sorted_ids, order = all_ids.sort(-1)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[..., 1:] = sorted_ids[..., 1:] != sorted_ids[..., :-1]
    group = first.long().cumsum(-1) - 1                       # the union's slot of each entry
    mass = torch.zeros_like(all_p).scatter_add_(-1, group, all_p.gather(-1, order))
    union = torch.zeros_like(sorted_ids).scatter_(-1, group, sorted_ids)
    size = first.sum(-1, keepdim=True)                        # [..., 1]
    slot = torch.arange(width, device=all_ids.device)
    free = slot >= size                                       # [..., K]
    # distinct ids outside the union: the first ids of 0 .. 2K - 1 that are not in it
    candidates = torch.arange(2 * width, device=all_ids.device).expand(*all_ids.shape[:-1], 2 * width)
    in_union = ((candidates.unsqueeze(-1) == union.unsqueeze(-2)) & ~free.unsqueeze(-2)).any(-1)
    outside = candidates.gather(-1, in_union.long().sort(dim=-1, stable=True).indices)
    fillers = outside.gather(-1, (slot - size).clamp(min=0))
    tail = (1.0 - mass.masked_fill(free, 0.0).sum(-1, keepdim=True)).clamp(min=0.0)
    share = tail / (vocab_size - size).clamp(min=1)
    merged_ids = torch.where(free, fillers, union)
    merged_p = torch.where(free, share.expand_as(mass), mass)
    merged_log_p = merged_p.clamp(min=1e-300).log()
    merged_log_p, order = merged_log_p.sort(-1, descending=True)
    return merged_ids.gather(-1, order), merged_log_p.to(log_probs[kept[0]].dtype)


def ask_servers(clients: list, prompts: torch.Tensor, weights: list[float] | None = None) -> list:
    """Each server's `top_logprobs(prompts)` (a `TopK`), in server order, every server asked at the same
    time: a thread per server, since the work is waiting for HTTP, so a batch waits for the slowest server,
    not for the sum of their latencies. A server of weight 0 is never asked (None in its place); with no
    `weights`, every server is asked. Each client is used by its own thread alone (a `TeacherClient`
    opens a connection per request and keeps only its own counters). The answers are the ones the servers
    would give asked one after another. If a server fails, its own one-line error is raised, the first
    in server order (as asked one after another), once every thread has ended."""
    asked = [i for i in range(len(clients)) if weights is None or weights[i] > 0]
    answers = [None] * len(clients)
    if len(asked) < 2:  # nothing to overlap
        for i in asked:
            answers[i] = clients[i].top_logprobs(prompts)
        return answers
    with ThreadPoolExecutor(max_workers=len(asked), thread_name_prefix="served-teacher") as pool:
        futures = [(i, pool.submit(clients[i].top_logprobs, prompts)) for i in asked]
    # leaving the block waited for every thread: none is left running, whatever failed
    for i, future in futures:
        answers[i] = future.result()
    return answers


class ServedMixtureSampler(TokenSampler):
    """`ServedTeacherSampler` for several servers: every server's top-k for each batch, merged on the
    union of ids (`merge_top_k`)."""

    def __init__(self, clients: list, weights: list[float], vocab_size: int, tokens: np.ndarray, seq_len: int,
                 batch_size: int, seed: int):
        super().__init__(tokens, seq_len, batch_size, seed)
        self.clients, self.weights, self.vocab_size = clients, weights, vocab_size

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        inputs, targets = super().batch(step, rank, world_size)
        prompts = torch.cat([inputs, targets[:, -1:]], dim=1)
        ids, log_probs = served_mixture_top_k(self.clients, self.weights, prompts, self.vocab_size)
        return inputs, targets, ids.to(torch.int32), log_probs


def served_mixture_top_k(clients: list, weights: list[float], prompts: torch.Tensor,
                         vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture's merged top-k after each prefix of `prompts` [B, L]: every server of positive weight
    asked (`merge_top_k`); ids and log-probabilities [B, L - 1, K]."""
    answers = ask_servers(clients, prompts, weights)
    return merge_top_k([a.ids if a is not None else None for a in answers],
                       [a.log_probs if a is not None else None for a in answers], weights, vocab_size)


def served_mixture_losses(clients: list, weights: list[float], tokens: np.ndarray, seq_len: int, batch_size: int,
                          max_tokens: int | None) -> tuple[list[float], float]:
    """Each served teacher's cross-entropy and the mixture's, -log sum_i w_i p_i(token), on the windows
    `evaluate` reads, from the log-probabilities the servers give the tokens themselves (exact)."""
    nats, mixed, count = [0.0] * len(clients), 0.0, 0
    log_weights = torch.tensor([math.log(w) if w > 0 else -math.inf for w in weights], dtype=torch.float64)
    for inputs, targets in iter_eval_batches(tokens, seq_len, batch_size, max_tokens):
        prompts = torch.cat([inputs, targets[:, -1:]], dim=1)
        token_log_probs = torch.stack([answer.token_log_probs.double() for answer in ask_servers(clients, prompts)])
        for i in range(len(clients)):
            nats[i] -= token_log_probs[i].sum().item()
        mixed -= torch.logsumexp(token_log_probs + log_weights.view(-1, 1, 1), dim=0).sum().item()
        count += targets.numel()
    return [value / count for value in nats], mixed / count


def served_mixture_record(clients: list, weights: list[float], losses: list[float], flops_per_token: list[float],
                          mixture_loss: float, tokens: int) -> TeacherRecord:
    """result.json's `teacher` for a mixture of servers: the mixture, and each server with its weight, loss,
    FLOPs (0 where it does not state them) and exchange (`server`)."""
    teachers = []
    for client, weight, loss, flops in zip(clients, weights, losses, flops_per_token):
        about = (client.model.about if client.model else None)
        teachers.append(TeacherRecord(
            path=client.base, kind="server", teacher_val_loss=loss,
            non_embedding_params=getattr(about, "non_embedding_params", None),
            total_params=getattr(about, "total_params", None), forward_flops_per_token=flops or None,
            flops=flops * tokens, flops_method=getattr(about, "flops_method", None) if flops else
            "weight 0: never asked for the training tokens, nothing counted" if weight == 0 else
            "not stated by the server: the teacher's FLOPs are not counted", weight=weight,
            server=client.record().model_dump(mode="json")).model_dump(mode="json"))
    return TeacherRecord(path="mixture", kind="mixture", teacher_val_loss=mixture_loss, non_embedding_params=None,
                         total_params=None, forward_flops_per_token=sum(flops_per_token),
                         flops=float(sum(t["flops"] for t in teachers)), flops_method=MIXTURE_FLOPS_METHOD,
                         teachers=teachers)
