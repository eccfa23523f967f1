"""`distillscale serve-teacher`: a teacher (a distillscale run or a local Hugging Face causal LM,
loaded as `distill --teacher` loads it) behind the OpenAI-compatible legacy completions API in the
form vLLM serves it, so `distill --teacher-url` reads it as it would read vLLM:

    GET  /v1/models        {"object": "list", "data": [{"id", "object": "model", "max_model_len", ...,
                            "distillscale": {size, FLOPs, tokenizer hash, max_logprobs}}]}
    POST /v1/completions   {"model", "prompt": [ids] or [[ids], ...], "max_tokens": 0, "echo": true,
                            "logprobs": k, "return_tokens_as_token_ids": true}
                           -> {"object": "text_completion", "choices": [{"index", "text", "logprobs":
                               {"tokens", "token_logprobs", "top_logprobs", "text_offset"},
                               "finish_reason": "length"}], "usage": {...}}

It scores prompts and never generates: `max_tokens` must be 0 and `echo` true. Position 0 has no
prediction (null log-probabilities, as in vLLM); position j > 0 gives log p(prompt[j] | prompt[:j])
and the k most likely tokens' log-probabilities (the prompt token is added when it is not among
them, as vLLM does), over the whole vocabulary at temperature 1. Tokens are "token_id:<id>" with
`return_tokens_as_token_ids` (the interoperable form: `distill --teacher-url` asks for it), else
the tokenizer's text of each id. Errors are OpenAI's {"error": {"message", "type", "code"}} with a
4xx status. The model reads prompt[:-1] only, so a prompt may be one token longer than its context.
"""

from __future__ import annotations

import threading
import time
import uuid
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from distillscale.data.loss_identity import tokenizer_identity
from distillscale.data.tokenizer import load_tokenizer, tokenizer_hash, tokenizer_vocab_size
from distillscale.errors import UserError
from distillscale.serve.http import JSONHandler, RequestError, listen
from distillscale.training.kd_settings import chunk_tokens
from distillscale.training.top_k import teacher_log_probs
from distillscale.training.remote_teacher import TOKEN_ID_PREFIX
from distillscale.training.teachers import Teacher, find_teacher, load_teacher

COMPLETIONS, MODELS = "/v1/completions", "/v1/models"
MAX_PROMPT_TOKENS = 1 << 20  # tokens of all prompts of one request


class TeacherService:
    """A loaded teacher answering completions requests (one forward pass at a time)."""

    def __init__(self, path: Path, top_k: int = 20, device: torch.device = torch.device("cpu"),
                 trust_remote_code: bool = False, name: str | None = None):
        source = find_teacher(path, trust_remote_code, given_as="serve-teacher's TEACHER argument")
        self.tokenizer = None if source.tokenizer_path is None else load_tokenizer(source.tokenizer_path)[0]
        self.identity = None if self.tokenizer is None else tokenizer_identity(self.tokenizer, str(source.tokenizer_path))
        vocab_size = 1 if self.tokenizer is None else tokenizer_vocab_size(self.tokenizer)
        self.teacher: Teacher = load_teacher(source, vocab_size, device, 1, trust_remote_code)
        if self.tokenizer is None:  # no tokenizer to say how many ids are real: all output rows are
            self.teacher.vocab_size = self.teacher.info.output_rows
        self.vocab_size = self.teacher.vocab_size
        if top_k > self.vocab_size:
            raise UserError(f"--top-k {top_k} is more than the teacher's {self.vocab_size} token ids: use --top-k "
                            f"{self.vocab_size} or less")
        self.device, self.top_k = device, top_k
        self.name = name or str(path)
        self.created = int(time.time())
        self._lock = threading.Lock()

    @property
    def context(self) -> int | None:
        return self.teacher.info.context

    def models(self) -> dict:
        info = self.teacher.info
        # Any teacher (the family's, a generic Hugging Face model's): matmul FLOPs plus attention linear in the context
        base = info.count.forward_flops_per_token(0)
        flops = {"base": base, "per_context_token": info.count.forward_flops_per_token(1) - base}
        about = {"kind": info.kind, "path": info.path, "non_embedding_params": info.non_embedding_params,
                 "total_params": info.total_params, "forward_flops_per_token": flops,
                 "flops_method": info.flops_method, "vocab_size": self.vocab_size, "max_logprobs": self.top_k,
                 "tokenizer_sha256": None if self.tokenizer is None else tokenizer_hash(self.tokenizer),
                 "tokenizer_identity": None if self.identity is None else self.identity.sha256,
                 "tokenizer_parts": None if self.identity is None else self.identity.parts}
        card = {"id": self.name, "object": "model", "created": self.created, "owned_by": "distillscale",
                "root": self.name, "parent": None, "permission": [],
                "max_model_len": None if self.context is None else self.context + 1, "distillscale": about}
        return {"object": "list", "data": [card]}

    def completions(self, request: Any) -> dict:
        """The completions answer for a request (a JSON value), or a RequestError (400 or 404)."""
        prompts, k, as_ids = self._read(request)
        results = self._score(prompts, k)
        choices = []
        for index, (prompt, (own, tops)) in enumerate(zip(prompts, results)):
            tokens = [self._token(token, as_ids) for token in prompt]
            top_logprobs = [None] + [{self._token(token, as_ids): value for token, value in top} for top in tops]
            offsets, offset = [], 0
            for token in tokens:
                offsets.append(offset)
                offset += len(token)
            text = "" if self.tokenizer is None else self.tokenizer.decode(prompt, skip_special_tokens=False)
            choices.append({"index": index, "text": text, "finish_reason": "length", "stop_reason": None,
                            "prompt_logprobs": None,
                            "logprobs": {"text_offset": offsets, "token_logprobs": [None, *own], "tokens": tokens,
                                         "top_logprobs": top_logprobs}})
        used = sum(len(prompt) for prompt in prompts)
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0}}

    def _read(self, request: Any) -> tuple[list[list[int]], int, bool]:
        if not isinstance(request, dict):
            raise _bad("the request must be a JSON object")
        model = request.get("model")
        if model is not None and model != self.name:
            raise RequestError(HTTPStatus.NOT_FOUND, f"the model `{model}` does not exist: this server serves "
                                                     f"`{self.name}` (GET /v1/models)")
        if request.get("echo") is not True or request.get("max_tokens") != 0:
            raise _bad("serve-teacher scores prompts and does not generate: send \"echo\": true and "
                       "\"max_tokens\": 0")
        k = request.get("logprobs")
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= self.top_k:
            raise _bad(f"logprobs must be a whole number from 0 to {self.top_k} (this server's --top-k), got "
                       f"{k!r}")
        as_ids = request.get("return_tokens_as_token_ids", False)
        if not isinstance(as_ids, bool):
            raise _bad("return_tokens_as_token_ids must be true or false")
        prompt = request.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
            prompts = prompt
        elif isinstance(prompt, list) and prompt and not any(isinstance(p, list) for p in prompt):
            prompts = [prompt]
        else:
            raise _bad("prompt must be a non-empty list of token ids, or a list of such lists (serve-teacher "
                       "takes token ids, not text)")
        total = 0
        for number, ids in enumerate(prompts):
            if not ids or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.vocab_size
                                  for t in ids):
                raise _bad(f"prompt {number} must be a non-empty list of token ids from 0 to {self.vocab_size - 1}")
            if self.context is not None and len(ids) > self.context + 1:
                raise _bad(f"prompt {number} has {len(ids)} tokens; this teacher reads at most {self.context} "
                           f"(prompts of up to {self.context + 1} tokens)")
            total += len(ids)
        if total > MAX_PROMPT_TOKENS:
            raise _bad(f"the prompts hold {total} tokens; send at most {MAX_PROMPT_TOKENS} per request")
        return prompts, k, as_ids

    @torch.inference_mode()
    def _score(self, prompts: list[list[int]], k: int) -> list[tuple[list[float], list[list[tuple[int, float]]]]]:
        """Per prompt: log p of each token after the first, and the top-k (id, log p) after each prefix
        (plus the prompt's own token when it is not among them). Prompts of one length are batched."""
        results: list = [None] * len(prompts)
        by_length: dict[int, list[int]] = {}
        for index, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(index)
        for length, indices in by_length.items():
            if length == 1:
                for index in indices:
                    results[index] = ([], [])
                continue
            ids = torch.tensor([prompts[i] for i in indices], dtype=torch.long, device=self.device)
            with self._lock:
                hidden = self.teacher.hidden_states(ids[:, :-1]).flatten(0, 1)
                targets = ids[:, 1:].flatten()
                own, top_values, top_ids = [], [], []
                chunk = chunk_tokens(self.teacher.vocab_size)  # positions whose [chunk, V] logits exist at once
                for start in range(0, len(hidden), chunk):
                    log_probs = teacher_log_probs(self.teacher.head(hidden[start:start + chunk]), overwrite=True)
                    own.append(log_probs.gather(-1, targets[start:start + chunk, None]).squeeze(-1))
                    values, chosen = log_probs.topk(k, dim=-1)
                    top_values.append(values)
                    top_ids.append(chosen)
            own = torch.cat(own).view(len(indices), length - 1).tolist()
            top_values = torch.cat(top_values).view(len(indices), length - 1, k).tolist()
            top_ids = torch.cat(top_ids).view(len(indices), length - 1, k).tolist()
            for row, index in enumerate(indices):
                tops = []
                for j in range(length - 1):
                    top = list(zip(top_ids[row][j], top_values[row][j]))
                    token = prompts[index][j + 1]
                    if token not in top_ids[row][j]:
                        top.append((token, own[row][j]))
                    tops.append(top)
                results[index] = (own[row], tops)
        return results

    def _token(self, token: int, as_ids: bool) -> str:
        if as_ids or self.tokenizer is None:
            return f"{TOKEN_ID_PREFIX}{token}"
        return self.tokenizer.decode([token], skip_special_tokens=False)


def _bad(message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message)


def make_teacher_server(service: TeacherService, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server of `service` on host:port (port 0: any free one); serve it with serve_forever()."""

    class Handler(JSONHandler):
        GET_PATHS = frozenset({MODELS})
        POST_PATHS = frozenset({COMPLETIONS})
        MAX_BODY = 64 * 1024 * 1024  # a batch of long prompts as JSON numbers
        timeout = 60

        def error_payload(self, message: str, status: HTTPStatus) -> dict:
            kind = "NotFoundError" if status == HTTPStatus.NOT_FOUND else (
                "InternalServerError" if status >= 500 else "BadRequestError")
            return {"error": {"message": message, "type": kind, "param": None, "code": int(status)}}

        def get(self) -> None:
            if self.route() != MODELS:
                return self.not_allowed()
            self.send_json(service.models())

        def post(self) -> None:
            if self.route() != COMPLETIONS:
                return self.not_allowed()
            self.send_json(service.completions(self.json_body()))

    return listen(Handler, host, port)

