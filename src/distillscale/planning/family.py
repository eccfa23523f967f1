"""A family of students from one teacher: K students sharing the teacher's cost (Gemma 2's 2B and 9B
from 27B; Llama 3.2's 1B and 3B; Minitron's 4B and 8B).

Each student i has its budget C_i (a share of the family's compute) and pays, besides its own training
(3 F(N_S,i) D_i), its part of the teacher's costs:

- the teacher's forward passes, by how its targets are made (`TARGETS`):
  - online: each student runs the teacher on its own tokens, F(N_T) D_i (the teacher-inference scenario,
    per student; `distill --teacher`);
  - cached: the teacher runs once over the first tokens, its top-k predictions kept in a logit cache
    the students read (`distillscale cache-logits`, then `distill --teacher-cache`). Each student reads
    the cache's first min(D_i, r_i) tokens, its reach r_i (`planning.family_cache` chooses it, within a
    storage limit): past it, it re-reads them (`distill --teacher-cache --unique-tokens r_i`), at no more
    teacher FLOPs, its loss that of repeating them (`planning.repetition`, its reach its unique tokens).
    The cache's forward passes are shared as an airport's runway is (Littlechild & Owen 1973): the
    cost of the tokens up to the shortest reach is split among all K students, that of the next
    stretch among the K - 1 that read it, and so on;
- the teacher's training (`teacher_trained`: a teacher trained for the family), 3 F(N_T) D_T split
  equally among the students that distil: every one needs all of it.

So D_i = (C_i - training share) / (3 F(N_S,i) + f_i), f_i the student's teacher-forward FLOPs per token
(F(N_T) online; its cache share over D_i cached), found by fixed-point iteration (the shares fall as the
tokens they are shared over rise). With one student reading every token once, online and cached are the
same plan, the teacher-inference plan of `plan --teacher-params`. Each student's verdict is against itself trained
alone on its whole budget C_i, read off Delta's interval as every verdict (`laws.difference`).

Which students distil is decided jointly (`planning.family_plan`): a verdict assumes the students it
shares the teacher with distil too, so the students that do not distil leave the shared cost and the
rest are planned again, until no verdict changes (`FamilyRound`, each such plan).

The cache's storage is the engine's own encoding of top-k targets (`training.logit_cache.encoding`:
Elias-Fano ids, uint8 codes, a float32 step and log-mass): `bytes_per_token(V, k)`; 296 bytes at k = 128
and V = 32,768, 296 TB for a trillion tokens; a sampled cache's (`sampled_bytes_per_token(V, K)`: K ids
and a float32 entropy) beside it. Both are priced at the teacher's vocabulary (its output rows, else
--vocab-size, else the law's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distillscale.errors import ParameterError
from distillscale.units import format_bytes, format_quantity, format_quantity_pair, parse_bytes  # noqa: F401 (parse_bytes: the family's flag)

TARGETS = ("cached", "online")
DEFAULT_TOP_K = 128   # the logit cache's k the plan prices its storage at (`distillscale cache-logits --top-k`)
DEFAULT_SAMPLES = 12  # a sampled cache's ids per token the plan prices beside it (`cache-logits --samples`)
# What a family's cached targets assume: a top-k cache's students get the loss of the full distribution's.
TOP_K_FREE = "top-k truncation assumed free (within 2.4% at top-5 to 64: docs/top_k_teachers.md)"


def bytes_per_token(vocab_size: int, top_k: int) -> int:
    """Bytes of one token's top-k record in the engine's logit cache (`TopKEncoding.bytes_per_token`, held
    equal by a test): Elias-Fano ids (ceil((k + ((V - 1) >> l) + 1) / 8) + ceil(k l / 8) bytes, l =
    floor(log2(V / k))), k uint8 codes, a float32 step and a float32 log-mass."""
    return _elias_fano_bytes(vocab_size, top_k) + top_k + 4 + 4


def _elias_fano_bytes(vocab_size: int, count: int) -> int:
    """Bytes of `count` sorted ids of a `vocab_size` vocabulary in Elias-Fano form (`EliasFanoIds`)."""
    low = max(0, math.floor(math.log2(vocab_size / count)))
    return math.ceil((count + ((vocab_size - 1) >> low) + 1) / 8) + math.ceil(count * low / 8)


def sampled_bytes_per_token(vocab_size: int, samples: int) -> int:
    """Bytes of one token's record in a sampled logit cache (`SampledEncoding.bytes_per_token`, held equal
    by a test): `samples` ids drawn from the teacher, in Elias-Fano form, and a float32 entropy."""
    return _elias_fano_bytes(vocab_size, samples) + 4


def student_names(sizes: tuple[float, ...] | list[float]) -> list[str]:
    """Each student's name in a plan ("student 1B"), its size with as many digits as it takes (3 to 10) for
    no two to read alike; a ParameterError naming --students when two still do."""
    for digits in range(3, 11):
        names = [f"student {format_quantity(size, digits)}" for size in sizes]
        if len(set(names)) == len(names):
            return names
    alike = next(name for name in names if names.count(name) > 1)
    raise ParameterError("students", f"{{}} lists two sizes that read alike ({alike.removeprefix('student ')}): "
                         "give each student once, as sizes that differ")


def _each(reach: float | list[float] | tuple[float, ...], count: int) -> list[float]:
    """A reach per student: one number for all, or one each."""
    return [float(reach)] * count if isinstance(reach, (int, float)) else [float(r) for r in reach]


def cache_shares(tokens: list[float], teacher_flops: float, reach: float | list[float] = math.inf) -> list[float]:
    """Each student's FLOPs of the teacher's forward passes with a shared cache (see the module), each
    student reading the first min(tokens, reach) of it (`reach`: one for all, or one each): the cost of
    each stretch of the cache split among the students that read it; a student reading past its reach
    re-reads it, at no more teacher FLOPs."""
    ends = [min(d, r) for d, r in zip(tokens, _each(reach, len(tokens)))]
    order = sorted(range(len(tokens)), key=lambda i: ends[i])
    shares, start = [0.0] * len(tokens), 0.0
    for rank, i in enumerate(order):
        if ends[i] > start:
            each = teacher_flops * (ends[i] - start) / (len(order) - rank)
            for j in order[rank:]:
                shares[j] += each
            start = ends[i]
    return shares


@dataclass(frozen=True)
class FamilyCosts:
    """What each student spends on the teacher (FLOPs): its forward passes (`forward`) and its share of
    the teacher's training (`training`), the tokens each student trains on (`tokens`) and the cache's
    first tokens it reads (`reach`: min(tokens, its reach); fewer than its tokens: it re-reads them)."""

    tokens: tuple[float, ...]
    forward: tuple[float, ...]
    training: tuple[float, ...]
    iterations: int
    reach: tuple[float, ...] = ()


def family_costs(budgets: list[float], student_flops: list[float], teacher_flops: float, targets: str,
                 training: float = 0.0, reach: float | list[float] | tuple[float, ...] = math.inf) -> FamilyCosts:
    """The tokens and teacher costs of each student (see the module): `budgets` C_i, `student_flops`
    F(N_S,i), `teacher_flops` F(N_T), `training` the teacher's whole training (0: an existing teacher),
    `reach` the most of the cache's first tokens each student reads (one for all, or one each: a storage
    limit's, or what the student chooses, `planning.family_cache`), re-reading them past it.

    Cached, solved exactly in the students' order of reach: the m-th shortest reader pays for the stretch
    above the (m-1)-th's reach with K - m + 1 students (F(N_T) / (K - m + 1) a token there, nothing past
    its own reach, which it re-reads), after paying what every longer reader paid below; a closed form
    per student, repeated with the students re-ordered by their reach until the order holds (a few
    passes)."""
    k = len(budgets)
    train = [training / k] * k
    tokens = [(c - t) / (3.0 * f + teacher_flops) for c, t, f in zip(budgets, train, student_flops)]
    if targets == "online":
        return FamilyCosts(tuple(tokens), tuple(teacher_flops * d for d in tokens), tuple(train), 0, tuple(tokens))
    caps = _each(reach, k)
    for passes in range(1, 2 * k + 2):
        ends = [min(d, r) for d, r in zip(tokens, caps)]
        order = sorted(range(k), key=lambda i: ends[i])
        new, below, paid = list(tokens), 0.0, 0.0
        for m, i in enumerate(order):
            rate, left = teacher_flops / (k - m), budgets[i] - train[i] - paid
            own = 3.0 * student_flops[i]
            # within its reach: own x + rate (x - below) = left
            x = (left + rate * below) / (own + rate)
            if x > caps[i]:   # past its reach: the cache's first tokens re-read, no more teacher FLOPs
                x = (left - rate * max(caps[i] - below, 0.0)) / own
            new[i] = x
            end = min(x, caps[i])
            if end > below:
                paid += rate * (end - below)
                below = end
        ends = [min(d, r) for d, r in zip(new, caps)]
        settled = sorted(range(k), key=lambda i: ends[i]) == order and all(
            ends[a] <= ends[b] * (1 + 1e-12) for a, b in zip(order, order[1:]))
        tokens = new
        if settled:
            break
    return FamilyCosts(tuple(tokens), tuple(cache_shares(tokens, teacher_flops, caps)), tuple(train), passes,
                       tuple(min(d, r) for d, r in zip(tokens, caps)))


@dataclass(frozen=True)
class FamilyRound:
    """One plan of a family in deciding which students distil: the students planned as sharing the
    teacher's cost (`sharing`, by name) and each one's verdict so (`verdicts`)."""

    sharing: tuple[str, ...]
    verdicts: dict[str, str]

    def to_dict(self) -> dict:
        return {"sharing": list(self.sharing), "verdicts": dict(self.verdicts)}


@dataclass(frozen=True)
class CacheStorage:
    """The logit cache of a family: its k, the bytes a token's record takes, the tokens it holds (the
    longest reach of a student: the most any student reads, or fewer where a storage limit allows fewer
    or a student re-reading fewer does better, `planning.family_cache`) and their bytes; a sampled cache's
    bytes a token beside it. `rereads`: each student reading past its reach, as (name, its reach, its
    tokens)."""

    top_k: int
    vocab_size: int
    bytes_per_token: int
    tokens: float
    needed_tokens: float             # the most tokens any student reads: the cache without re-reading
    limit: float | None = None       # bytes (--cache-storage), None: no limit
    samples: int = DEFAULT_SAMPLES
    sampled_bytes_per_token: int = 0
    rereads: tuple[tuple[str, float, float], ...] = ()

    @property
    def bytes(self) -> float:
        return self.tokens * self.bytes_per_token

    @property
    def capped(self) -> bool:
        """Some student reads past its reach: re-reads the cache's first tokens."""
        return bool(self.rereads)

    @property
    def reads(self) -> float:
        """The most times a student reads its reach of the cache (1: once each)."""
        return max((tokens / reach for _, reach, tokens in self.rereads), default=1.0)

    def describe(self) -> str:
        """The cache in a line: its records, tokens and bytes; where a student re-reads its first tokens,
        each one's reach and reads (and the limit, the cache that would hold all the students read)."""
        held = f"{format_quantity(self.tokens)} tokens: {format_bytes(self.bytes)}"
        if self.capped:
            each = ", ".join(f"{name.removeprefix('student ')} its first {format_quantity(reach)} {tokens / reach:.3g}x"
                             for name, reach, tokens in self.rereads)
            limit = "" if self.limit is None else f"--cache-storage {format_bytes(self.limit)}; "
            held += (f" ({limit}all {format_quantity(self.needed_tokens)} read: "
                     f"{format_bytes(self.needed_tokens * self.bytes_per_token)}); re-read: {each} (distill "
                     "--unique-tokens; losses after repetition)")
        else:
            held += ", the most any student reads"
        return (f"logit cache: top-{self.top_k} of {self.vocab_size:,} ids ({self.bytes_per_token} bytes/token) x {held}; "
                f"sampled (--samples {self.samples}, unbiased) {self.sampled_bytes_per_token} bytes/token: "
                f"{format_bytes(self.tokens * self.sampled_bytes_per_token)}")

    def to_dict(self) -> dict:
        return {"top_k": self.top_k, "vocab_size": self.vocab_size, "bytes_per_token": self.bytes_per_token,
                "tokens": self.tokens, "needed_tokens": self.needed_tokens, "bytes": self.bytes,
                "limit_bytes": self.limit, "capped": self.capped, "reads": self.reads, "note": TOP_K_FREE,
                "rereads": [{"student": name, "reach": reach, "tokens": tokens, "reads": tokens / reach}
                            for name, reach, tokens in self.rereads],
                "sampled": {"samples": self.samples, "bytes_per_token": self.sampled_bytes_per_token,
                            "bytes": self.tokens * self.sampled_bytes_per_token}}


def cache_tokens(vocab_size: int, top_k: int, limit: float | None, fewest: float,
                 why: str = "a run is planned on") -> float:
    """The most tokens a cache of `limit` bytes holds (inf: no limit), refused in one line where it holds
    fewer than `fewest` (`why`: the fewest tokens the planner plans a run on, or the fewest unique tokens
    the law prices a re-read cache at) or `top_k` is not below the vocabulary (`cache-logits` refuses it:
    that is the full distribution)."""
    if vocab_size < 2:   # no top-k of one id leaves any out: no cache to price
        raise ParameterError("vocab_size", f"{{}} {vocab_size} (the teacher's vocabulary) has no id to leave out of a "
                             "top-k cache: give the teacher's vocabulary, at least 2 ids")
    if top_k >= vocab_size:
        raise ParameterError(("cache_top_k", "vocab_size"), f"{{}} {top_k} keeps all {vocab_size:,} ids of the "
                             f"teacher's vocabulary ({{}} or the teacher's), which `cache-logits` refuses: give "
                             f"{vocab_size - 1} or less")
    if limit is None:
        return math.inf
    per = bytes_per_token(vocab_size, top_k)
    if limit / per < fewest:
        held, least = format_quantity_pair(limit / per, fewest)
        raise ParameterError("cache_storage", f"{{}} {format_bytes(limit)} holds {held} tokens of top-{top_k} "
                             f"predictions ({per} bytes each), below the {least} {why}: raise it, or plan online "
                             "targets (--targets online)")
    return limit / per


def cache_storage(names: list[str], costs: FamilyCosts, vocab_size: int, top_k: int,
                  limit: float | None) -> CacheStorage:
    """The cache a family's students read (`costs`: each one's tokens D_i and reach), within `limit` bytes."""
    per = bytes_per_token(vocab_size, top_k)
    rereads = tuple((name, reach, tokens) for name, reach, tokens in zip(names, costs.reach, costs.tokens)
                    if reach < tokens * (1 - 1e-12))
    return CacheStorage(top_k, vocab_size, per, max(costs.reach), max(costs.tokens), limit, DEFAULT_SAMPLES,
                        sampled_bytes_per_token(vocab_size, DEFAULT_SAMPLES), rereads)
