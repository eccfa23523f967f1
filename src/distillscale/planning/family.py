"""A family of students from one teacher: K students sharing the teacher's cost (Gemma 2's 2B and 9B
from 27B; Llama 3.2's 1B and 3B; Minitron's 4B and 8B).

Each student i has its budget C_i (a share of the family's compute) and pays, besides its own training
(3 F(N_S,i) D_i), its part of the teacher's costs:

- the teacher's forward passes, by how its targets are made (`TARGETS`):
  - online: each student runs the teacher on its own tokens, F(N_T) D_i (the teacher-inference scenario,
    per student);
  - cached: the teacher runs once over the most tokens any student reads, its top-k predictions kept
    in a logit cache every student reads (`distillscale cache-logits`, then `distill --logit-cache`).
    The cache's forward passes are shared as an airport's runway is (Littlechild & Owen 1973): the
    cost of the tokens up to the shortest student's D is split among all K students, that of the next
    stretch among the K - 1 that read it, and so on; a cache capped by a storage limit holds the first
    tokens only, and each student pays the teacher online beyond them;
- the teacher's training (`teacher_trained`: a teacher trained for the family), 3 F(N_T) D_T split
  equally: every student needs all of it.

So D_i = (C_i - training share) / (3 F(N_S,i) + f_i), f_i the student's teacher-forward FLOPs per token
(F(N_T) online; its cache share over D_i cached), found by fixed-point iteration (the shares fall as the
tokens they are shared over rise). With one student, online and cached are the same plan, the
teacher-inference plan of `plan --teacher-params`. Each student's verdict is against itself trained
alone on its whole budget C_i, read off Delta's interval as every verdict (`laws.difference`).

The cache's storage is the engine's own encoding of top-k targets (`training.logit_cache.encoding`:
Elias-Fano ids, uint8 codes, a float32 step and log-mass): `bytes_per_token(V, k)`; 296 bytes at k = 128
and V = 32,768, 296 TB for a trillion tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distillscale.errors import ParameterError
from distillscale.units import format_byte_pair, format_bytes, format_quantity, parse_bytes  # noqa: F401 (parse_bytes: the family's flag)

TARGETS = ("cached", "online")
DEFAULT_TOP_K = 128   # the logit cache's k the plan prices its storage at (`distillscale cache-logits --top-k`)


def bytes_per_token(vocab_size: int, top_k: int) -> int:
    """Bytes of one token's top-k record in the engine's logit cache (`TopKEncoding.bytes_per_token`, held
    equal by a test): Elias-Fano ids (ceil((k + ((V - 1) >> l) + 1) / 8) + ceil(k l / 8) bytes, l =
    floor(log2(V / k))), k uint8 codes, a float32 step and a float32 log-mass."""
    low = max(0, math.floor(math.log2(vocab_size / top_k)))
    return math.ceil((top_k + ((vocab_size - 1) >> low) + 1) / 8) + math.ceil(top_k * low / 8) + top_k + 4 + 4


def cache_shares(tokens: list[float], teacher_flops: float, cached: float = math.inf) -> list[float]:
    """Each student's FLOPs of the teacher's forward passes with a shared cache of the first `cached`
    tokens (see the module): the cost of each stretch of the cache split among the students that read it,
    and beyond the cache each student's own tokens at the full F(N_T)."""
    order = sorted(range(len(tokens)), key=lambda i: tokens[i])
    shares, start = [0.0] * len(tokens), 0.0
    for rank, i in enumerate(order):
        end = min(tokens[i], cached)
        if end > start:
            each = teacher_flops * (end - start) / (len(order) - rank)
            for j in order[rank:]:
                shares[j] += each
            start = end
    return [share + teacher_flops * max(0.0, d - cached) for share, d in zip(shares, tokens)]


@dataclass(frozen=True)
class FamilyCosts:
    """What each student spends on the teacher (FLOPs): its forward passes (`forward`) and its share of
    the teacher's training (`training`), and the tokens each student trains on (`tokens`)."""

    tokens: tuple[float, ...]
    forward: tuple[float, ...]
    training: tuple[float, ...]
    iterations: int


def family_costs(budgets: list[float], student_flops: list[float], teacher_flops: float, targets: str,
                 training: float = 0.0, cached_tokens: float = math.inf) -> FamilyCosts:
    """The tokens and teacher costs of each student (see the module): `budgets` C_i, `student_flops`
    F(N_S,i), `teacher_flops` F(N_T), `training` the teacher's whole training (0: an existing teacher),
    `cached_tokens` the most tokens a storage limit lets the cache hold.

    Cached, solved exactly in the students' order of tokens: the m-th shortest student reads the stretch
    above the (m-1)-th's tokens with K - m + 1 students (F(N_T) / (K - m + 1) a token there, F(N_T) above
    the cache), after paying what every longer student paid below; a closed form per student, repeated
    with the students re-ordered by their tokens until the order holds (a few passes)."""
    k = len(budgets)
    train = [training / k] * k
    tokens = [(c - t) / (3.0 * f + teacher_flops) for c, t, f in zip(budgets, train, student_flops)]
    if targets == "online":
        return FamilyCosts(tuple(tokens), tuple(teacher_flops * d for d in tokens), tuple(train), 0)
    for passes in range(1, 2 * k + 2):
        order = sorted(range(k), key=lambda i: tokens[i])
        new, below, paid = list(tokens), 0.0, 0.0
        for m, i in enumerate(order):
            rate, left = teacher_flops / (k - m), budgets[i] - train[i] - paid
            own = 3.0 * student_flops[i]
            # within the cache: own x + rate (x - below) = left
            x = (left + rate * below) / (own + rate)
            if x > cached_tokens:   # past the cache: F(N_T) a token on its own
                shared = rate * max(cached_tokens - below, 0.0)
                x = (left - shared + teacher_flops * cached_tokens) / (own + teacher_flops)
            new[i] = x
            if x > below:
                paid += rate * (min(x, cached_tokens) - min(below, cached_tokens))
                below = x
        settled = sorted(range(k), key=lambda i: new[i]) == order and all(
            new[a] <= new[b] * (1 + 1e-12) for a, b in zip(order, order[1:]))
        tokens = new
        if settled:
            break
    return FamilyCosts(tuple(tokens), tuple(cache_shares(tokens, teacher_flops, cached_tokens)), tuple(train), passes)


@dataclass(frozen=True)
class CacheStorage:
    """The logit cache of a family: its k, the bytes a token's record takes, the tokens it holds (the most
    any student reads, or what `limit` allows) and their bytes."""

    top_k: int
    vocab_size: int
    bytes_per_token: int
    tokens: float
    needed_tokens: float             # the most tokens any student reads: the cache without a limit
    limit: float | None = None       # bytes (--cache-storage), None: no limit

    @property
    def bytes(self) -> float:
        return self.tokens * self.bytes_per_token

    @property
    def capped(self) -> bool:
        return self.tokens < self.needed_tokens * (1 - 1e-12)

    def describe(self) -> str:
        held = (f"the first {format_quantity(self.tokens)} of the {format_quantity(self.needed_tokens)} tokens the "
                f"students read (the --cache-storage {format_bytes(self.limit)} limit), beyond them each student "
                "pays the teacher online" if self.capped else f"{format_quantity(self.tokens)} tokens, the most any "
                "student reads")
        return (f"logit cache: top-{self.top_k} of {self.vocab_size:,} ids, {self.bytes_per_token} bytes/token x "
                f"{held}: {format_bytes(self.bytes)}")

    def to_dict(self) -> dict:
        return {"top_k": self.top_k, "vocab_size": self.vocab_size, "bytes_per_token": self.bytes_per_token,
                "tokens": self.tokens, "needed_tokens": self.needed_tokens, "bytes": self.bytes,
                "limit_bytes": self.limit, "capped": self.capped}


def cache_storage(budget_tokens: list[float], vocab_size: int, top_k: int, limit: float | None) -> CacheStorage:
    """The cache a family needs for `budget_tokens` (each student's D_i), within `limit` bytes: refused in
    one line when the limit holds less than the fewest tokens any student reads (no student could read
    its tokens from it: plan online targets instead)."""
    per = bytes_per_token(vocab_size, top_k)
    needed = max(budget_tokens)
    tokens = needed if limit is None else min(needed, limit / per)
    if limit is not None and limit < per * min(budget_tokens):
        shown_limit, shown_need = format_byte_pair(limit, per * min(budget_tokens))
        raise ParameterError("cache_storage", f"{{}} {shown_limit} is below the "
                             f"{shown_need} one student's cache needs (its "
                             f"{format_quantity(min(budget_tokens))} tokens of top-{top_k} predictions, {per} bytes "
                             "each): raise it, or plan online targets (--targets online)")
    return CacheStorage(top_k, vocab_size, per, tokens, needed, limit)
