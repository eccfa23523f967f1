"""A teacher behind a server: its top-k log-probabilities read over an OpenAI-compatible
completions endpoint (the legacy `POST /v1/completions` that vLLM serves, and
`distillscale serve-teacher`), so a large teacher runs on its own machines.

The request scores windows of token ids without generating anything:

    {"model": M, "prompt": [[ids], ...], "max_tokens": 0, "echo": true, "logprobs": k,
     "return_tokens_as_token_ids": true}

and each choice's `logprobs` holds, per prompt position j, `tokens[j]`, `token_logprobs[j]`
(log p(prompt[j] | prompt[:j]); null at j = 0) and `top_logprobs[j]` (null at j = 0, else a dict of
the k most likely tokens' log-probabilities; vLLM adds the prompt token when it is not among them).
Token ids travel as "token_id:<id>" strings (vLLM's `return_tokens_as_token_ids`): decoded token
text is not interoperable, since different ids can decode to the same string and collide as keys.
A window of seq_len + 1 tokens gives the teacher's prediction after each of the first seq_len
tokens: positions 1..seq_len. The teacher never reads the last token, but a vLLM server needs
--max-model-len >= seq_len + 1 to accept the prompt.

What a server's top-k cannot give: how the teacher's mass outside the k ids spreads over the other
ids. Its total is known: the log-probabilities are normalised over the whole vocabulary (vLLM's
log-softmax), so the tail mass is 1 - sum(top-k probabilities), rounded by the server (bf16 on a
GPU, then JSON). The loss keeps it as one "everything else" category (`losses.py`, through
`sparse_distillation_loss`, as top-k logit caches and `--top-k` with a local teacher do). A row whose
probabilities add up to a little more than 1 is rounding, divided by its sum; more than that is refused
(`training.top_k.MASS_ROUNDING`, the one definition of rounding for the check and the loss).
result.json records the mean tail mass and, in `top_k_targets`, the check made before training.

Components: `TeacherClient` (HTTP with batching, timeouts and bounded exponential-backoff retries
over `model.served`'s exchange and model card; every failure a one-line UserError),
`ServedTeacherSampler` (training batches with the teacher's top-k, fetched by the prefetch worker
ahead of the step), `ServedTeacherObjective`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distillscale.data import TokenSampler, iter_eval_batches
from distillscale.errors import UserError
from distillscale.model.served import ServedModel, ServerError, Tally, exchange, validated_card
from distillscale.model.teacher_limits import (BACKOFF_SECONDS, DEFAULT_TEACHER_TIMEOUT, TEACHER_RETRIES,
                                               RequestLimits)
from distillscale.model.served import shown as _shown
from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.losses import LossOutput, sparse_distillation_loss
from distillscale.training.objective import ObjectiveRecord
from distillscale.training.on_policy import generation_plan
from distillscale.training.records import DistillationRecord, TeacherRecord, TeacherServerRecord
from distillscale.urls import redacted_url
from distillscale.training.teacher_options import teacher_api_base as api_base
from distillscale.training.top_k import CHECK_TOKENS, MASS_ROUNDING, TAIL_KNOWN, check_top_k_mass, without_rounding

TOKEN_ID_PREFIX = "token_id:"  # vLLM's form of a token when asked for return_tokens_as_token_ids
MAX_ENTRIES_PER_REQUEST = 1 << 20  # prompts x positions x k per request: about 40 MB of JSON
TAIL_NOTE = ("a server gives the teacher's k most likely ids only: the tail mass outside them is 1 - their "
             "probabilities (normalised log-probabilities, as rounded by the server), kept in the loss as one "
             "'everything else' category; how it spreads over the other ids is unknown")


@dataclass
class TopK:
    """The teacher's top-k at every predicted position of a batch of prompts [B, L]: ids and
    log-probabilities [B, L - 1, k] (sorted, most likely first), and the log-probability of the
    prompt's own next token [B, L - 1]."""

    ids: torch.Tensor
    log_probs: torch.Tensor
    token_log_probs: torch.Tensor


class TeacherClient:
    """The completions endpoint of one server, read with batching, `timeout` seconds per request in all
    (its whole answer included) and up to `retries` retries with exponential backoff, so that a request
    is given up after (retries + 1) x timeout and the backoffs at most; counts its requests, retries and positions."""

    def __init__(self, url: str, top_k: int, timeout: float = DEFAULT_TEACHER_TIMEOUT, retries: int = TEACHER_RETRIES,
                 backoff: float = BACKOFF_SECONDS, vocab_size: int | None = None):
        # `endpoint` is where requests go; `base` is what messages and records show (without a password)
        try:
            endpoint = api_base(url)
        except ValueError as exc:   # not a server's URL: a bad port, a broken IPv6 host, no host
            raise UserError(str(exc)) from None
        self.url, self.endpoint, self.vocab_size = url, endpoint, vocab_size
        self.base = redacted_url(self.endpoint)
        self.top_k, self.timeout, self.retries, self.backoff = top_k, timeout, retries, backoff
        self.model: ServedModel | None = None
        self._tally, self.say = Tally(), None   # requests and retries; `say`: where waits are said (None: warned)
        self.prompts = self.positions = 0
        self.top_k_mass = 0.0  # summed over the positions

    # -- the two endpoints --------------------------------------------------------------------

    def connect(self) -> ServedModel:
        """Ask `GET /v1/models` which model the server serves (retried like every request); the model
        card is validated before anything uses it (`validated_card`)."""
        self.model = validated_card(self._exchange("GET", "/models", None), f"{self.base}/models")
        limit = self.model.about.max_logprobs
        if limit is not None and limit < self.top_k:
            raise UserError(f"--top-k {self.top_k} is more than the teacher server at {self.base} gives "
                            f"({limit} log-probabilities per position): use --top-k {limit} or less, or "
                            f"restart serve-teacher with --top-k {self.top_k}")
        return self.model

    def top_logprobs(self, prompts: torch.Tensor) -> TopK:
        """The teacher's top-k after each prefix of each prompt (token ids [B, L], L >= 2), in as
        many requests as the size of the answers needs."""
        if self.model is None:
            self.connect()
        prompts = prompts.cpu()
        n, length = prompts.shape
        per_request = max(1, min(n, MAX_ENTRIES_PER_REQUEST // max(1, (length - 1) * (self.top_k + 1))))
        parts = [self._request(prompts[first:first + per_request]) for first in range(0, n, per_request)]
        return TopK(*(torch.cat([getattr(part, name) for part in parts])
                      for name in ("ids", "log_probs", "token_log_probs")))

    # -- internals ----------------------------------------------------------------------------

    def _request(self, prompts: torch.Tensor) -> TopK:
        body = {"model": self.model.name, "prompt": prompts.tolist(), "max_tokens": 0, "echo": True,
                "logprobs": self.top_k, "temperature": 0.0, "return_tokens_as_token_ids": True}
        answer = self._exchange("POST", "/completions", body, parse=lambda a: self._parse(a, prompts))
        self.prompts += len(prompts)
        self.positions += answer.ids.numel() // self.top_k
        self.top_k_mass += answer.log_probs.double().exp().sum().item()
        return answer

    def _parse(self, answer: Any, prompts: torch.Tensor) -> TopK:
        """The answer as tensors, or a ServerError naming the first thing wrong with it."""
        return validated_answer(answer, prompts.shape, self.top_k, self.vocab_size)

    def _exchange(self, method: str, path: str, body: dict | None, parse=lambda answer: answer):
        """One request under the one policy of every served teacher (`model.served.exchange`: retried on
        what may pass, what it waits for said); a one-line UserError once the retries are spent or for a
        refused request (4xx)."""
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        try:
            return exchange(method, self.endpoint + path, data, RequestLimits(self.timeout, self.retries), parse,
                            tally=self._tally, say=self.say, backoff=self.backoff)
        except ServerError as exc:
            if exc.spent:
                raise UserError(f"the teacher server at {url} failed ({exc}): start or fix it (e.g. `distillscale "
                                f"serve-teacher RUN_DIR --port P`) and run the same command again; the run resumes "
                                "from its last checkpoint") from None
            raise UserError(f"teacher server {url}: {exc}") from None

    @property
    def requests(self) -> int:
        return self._tally.requests

    @property
    def retried(self) -> int:
        return self._tally.retried

    def record(self) -> TeacherServerRecord:
        model = self.model or ServedModel(name="?")
        mass = self.top_k_mass / self.positions if self.positions else None
        return TeacherServerRecord(url=self.base, model=model.name, top_k=self.top_k, requests=self.requests,
                                   retries=self.retried, prompts=self.prompts, positions=self.positions,
                                   mean_top_k_mass=mass, mean_tail_mass=None if mass is None else max(0.0, 1.0 - mass),
                                   timeout_seconds=self.timeout, max_retries=self.retries, tail_mass=TAIL_NOTE)


def _shape(what: str) -> ServerError:
    return ServerError(f"an answer of the wrong shape: {what}", retry=True)


def served_teacher_loss(client: TeacherClient, tokens: np.ndarray, seq_len: int, batch_size: int,
                      max_tokens: int | None) -> float:
    """The teacher's cross-entropy (nats/token) on the windows `evaluate` reads, from the
    log-probabilities the server gives the tokens themselves (exact, not top-k)."""
    nats, count = 0.0, 0
    for inputs, targets in iter_eval_batches(tokens, seq_len, batch_size, max_tokens):
        answer = client.top_logprobs(torch.cat([inputs, targets[:, -1:]], dim=1))
        nats -= answer.token_log_probs.sum().item()
        count += targets.numel()
    return nats / count


class ServedTeacherSampler(TokenSampler):
    """A `TokenSampler` whose batches also carry the served teacher's top-k ids and
    log-probabilities at every position ([B, seq_len, k] each), read by the prefetch worker."""

    def __init__(self, client: TeacherClient, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        super().__init__(tokens, seq_len, batch_size, seed)
        self.client = client

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        inputs, targets = super().batch(step, rank, world_size)
        answer = self.client.top_logprobs(torch.cat([inputs, targets[:, -1:]], dim=1))
        return inputs, targets, answer.ids.to(torch.int32), answer.log_probs


class ServedOnPolicySampler(ServedTeacherSampler):
    """`ServedTeacherSampler`'s batches plus `OnPolicySampler`'s plan (`generation_plan`) for on-policy
    distillation through a server. The micro-batches that `on_policy(index)` names are generated by
    the student inside the step and scored there (`ServedRolloutObjective`): their corpus windows are
    not sent, and their top-k slots are left empty (zeros)."""

    on_policy = staticmethod(lambda index: False)  # set once the run's schedule is known

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        plan = generation_plan(self.seed, step, self.first_row(step, rank, world_size))
        if not self.on_policy(step):
            return (*super().batch(step, rank, world_size), plan)
        inputs, targets = TokenSampler.batch(self, step, rank, world_size)
        empty = torch.zeros((*inputs.shape, self.client.top_k))
        return inputs, targets, empty.to(torch.int32), empty, plan


class ServedRolloutObjective:
    """The on-policy loss through a server: the student's rollout (inputs, targets with IGNORE_INDEX
    outside the continuation) is sent for scoring in the step, by the run's client (same retries,
    timeouts and one-line errors, counted in its record), and distilled from its top-k as a corpus
    batch is (`ServedTeacherObjective`, with on-policy batches' loss settings)."""

    def __init__(self, scorer: "ServedTeacherObjective"):
        self.scorer = scorer

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        # the teacher never reads a window's last token: any id completes the prompt (here the one before it)
        answer = self.scorer.client.top_logprobs(torch.cat([inputs, inputs[:, -1:]], dim=1))
        device = inputs.device
        return self.scorer(model, inputs, targets, answer.ids.to(device), answer.log_probs.to(device))


class ServedTeacherObjective:
    """The distillation objective with the teacher's top-k read from a server (the batches bring
    them, see `ServedTeacherSampler`): `sparse_distillation_loss`, as for top-k logit caches."""

    def __init__(self, client: TeacherClient, loss_config: DistillationLossConfig, teacher_val_loss: float,
                 flops_method: str):
        self.client = client
        self.loss_config = loss_config
        self.teacher_val_loss = teacher_val_loss
        self.flops_method = flops_method
        self.extra_flops_per_token = 0  # set by `count_teacher_flops` when the server states them
        self.top_k_targets = None  # the top-k check's record (`check_top_k`)

    def check_top_k(self, tokens: np.ndarray, seq_len: int, batch_size: int, report: bool = True) -> None:
        """The served teacher's top-k mass on the first `CHECK_TOKENS` of the student's data."""
        windows = [torch.cat([inputs, targets[:, -1:]], 1)
                   for inputs, targets in iter_eval_batches(tokens, seq_len, batch_size, CHECK_TOKENS)]
        log_probs = self.client.top_logprobs(torch.cat(windows)).log_probs  # one request
        self.top_k_targets = check_top_k_mass(log_probs, self.client.top_k, "served", "known", TAIL_KNOWN,
                                              self.loss_config.top_k_tail, report)

    def count_teacher_flops(self, seq_len: int) -> None:
        """The teacher's forward FLOPs per token at `seq_len`, when the server states them
        (serve-teacher does, as base + per_context_token x seq_len)."""
        flops = self.client.model.about.forward_flops_per_token if self.client.model else None
        if flops is not None:
            self.extra_flops_per_token = flops.base + flops.per_context_token * seq_len

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, teacher_ids: torch.Tensor,
                 teacher_log_probs: torch.Tensor) -> LossOutput:
        student_hidden = model.hidden_states(inputs).flatten(0, 1)
        return sparse_distillation_loss(student_hidden, model.head, teacher_ids, teacher_log_probs,
                                        targets.flatten(), self.loss_config)

    def record(self, tokens: int) -> ObjectiveRecord:
        model = self.client.model or ServedModel(name="?")
        about = model.about
        known = self.extra_flops_per_token > 0
        teacher = TeacherRecord(
            path=self.client.base, kind="server", teacher_val_loss=self.teacher_val_loss,
            non_embedding_params=about.non_embedding_params, total_params=about.total_params,
            forward_flops_per_token=self.extra_flops_per_token if known else None,
            flops=self.extra_flops_per_token * tokens,
            flops_method=about.flops_method if known else
            "not stated by the server: the teacher's FLOPs are not counted", model=model.name)
        method = (f"{self.flops_method}; plus the served teacher's forward pass on every training token, "
                  f"teacher.forward_flops_per_token x tokens, as the server states it" if known else
                  f"{self.flops_method}; the served teacher's forward passes are not counted (the server does "
                  f"not state its FLOPs)")
        return ObjectiveRecord(teacher=teacher, distillation=DistillationRecord(**self.loss_config.model_dump()),
                               teacher_server=self.client.record(), top_k_targets=self.top_k_targets,
                               flops_method=method)


# -- validation: one pass over what a server says, before anything uses it -------------------------

MAX_TOKEN_ID_DIGITS = 18  # ids beyond int64 are refused before they reach an array
LOG_PROB_TOLERANCE = 1e-3  # a log-probability up to this (rounded from ~0) is taken as 0


def validated_answer(answer: Any, shape: tuple[int, int], k: int, vocab_size: int | None) -> TopK:
    """The teacher's top-k of a completions answer for `shape` = (prompts, tokens per prompt), or a
    ServerError naming the first thing wrong: each prompt answered by exactly one choice (indices
    0..n-1, integers, not booleans), every position's entries canonical "token_id:<id>" keys with
    ids inside the vocabulary, log-probabilities finite numbers <= 0 whose probabilities sum to at
    most 1 (a sum up to 1 + MASS_ROUNDING is rounding: the row comes back divided by it), and the
    prompt tokens' own log-probabilities too."""
    n, length = shape
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        raise _shape(f"{len(choices) if isinstance(choices, list) else 'no'} choices for {n} prompts")
    ids = np.zeros((n, length - 1, k), dtype=np.int64)
    log_probs = np.zeros((n, length - 1, k), dtype=np.float32)
    token_log_probs = np.zeros((n, length - 1), dtype=np.float64)
    seen = set()
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        if type(index) is not int or not 0 <= index < n:
            raise _shape(f"a choice with index {_shown(index)}, not an integer in 0..{n - 1}")
        if index in seen:
            raise _shape(f"two choices with index {index}: each prompt must be answered once")
        seen.add(index)
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict):
            raise _shape(f"choice {index} has no logprobs")
        tops, own = logprobs.get("top_logprobs"), logprobs.get("token_logprobs")
        if not isinstance(tops, list) or not isinstance(own, list) or len(tops) != length or len(own) != length:
            raise _shape(f"choice {index} scores {len(tops) if isinstance(tops, list) else 'no'} positions "
                         f"of its {length}-token prompt (echo true, max_tokens 0)")
        for j in range(1, length):
            where = f"choice {index} position {j}"
            top = tops[j]
            if not isinstance(top, dict) or len(top) < k:
                raise _shape(f"{where} has {len(top) if isinstance(top, dict) else 'no'} top log-probabilities, "
                             f"not {k}")
            entries = sorted(((_log_prob(value, where), _token_id(key, where)) for key, value in top.items()),
                             reverse=True)
            if len({token for _, token in entries}) != len(entries):
                raise _shape(f"{where} lists one token id twice")
            mass = math.fsum(math.exp(value) for value, _ in entries)
            if mass > 1 + MASS_ROUNDING:  # more than rounding (`training.top_k`)
                raise _shape(f"{where} has top log-probabilities whose probabilities sum to {mass:.3g}, more than 1")
            token_log_probs[index, j - 1] = _log_prob(own[j], f"{where}'s token_logprobs")
            ids[index, j - 1] = [token for _, token in entries[:k]]
            log_probs[index, j - 1] = without_rounding([value for value, _ in entries[:k]], mass)
    if vocab_size is not None and ids.max() >= vocab_size:
        raise ServerError(f"the served teacher predicts token id {ids.max()}, beyond the {vocab_size} ids "
                          f"of this run's tokenizer: give the teacher's tokenizer with --tokenizer", retry=False)
    return TopK(torch.from_numpy(ids), torch.from_numpy(log_probs), torch.from_numpy(token_log_probs))


def _token_id(key: Any, where: str) -> int:
    """The id of a "token_id:<id>" key, written canonically (ASCII digits, no leading zero)."""
    digits = key[len(TOKEN_ID_PREFIX):] if isinstance(key, str) and key.startswith(TOKEN_ID_PREFIX) else ""
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_TOKEN_ID_DIGITS
            and (digits == "0" or not digits.startswith("0"))):
        raise _shape(f"{where}: token {_shown(key)} is not of the form 'token_id:<id>' (the server must "
                     f"honour return_tokens_as_token_ids, as vLLM does)")
    return int(digits)


def _log_prob(value: Any, where: str) -> float:
    """A log-probability: a finite JSON number <= 0 (up to LOG_PROB_TOLERANCE of rounding)."""
    if type(value) not in (int, float) or not math.isfinite(value) or value > LOG_PROB_TOLERANCE:
        raise _shape(f"{where}: log-probability {_shown(value)} is not a finite number <= 0")
    return float(value)
