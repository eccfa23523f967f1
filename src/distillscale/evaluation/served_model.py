"""A served model as a measurement sees it: the server connected and its tokenizer checked against
the corpus's, the longest window it scores, and its identity as the measurement cache keys it.

    client = connect_served(target, prepared)             # a TeacherClient; refused if another tokenizer
    served_context(client)                                # its max_model_len less one, or None
    served_fingerprint(client, prepared)                  # "served:<hash>" of what it serves now

A URL says nothing of what stands behind it: the identity is what the server says it serves and its
answers on the validation split's first PROBE_TOKENS tokens, asked on every use, so another model at
the same address is measured anew.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

from distillscale.errors import UserError
from distillscale.model.teacher_limits import RequestLimits

if TYPE_CHECKING:
    from distillscale.data.prepared import PreparedData
    from distillscale.evaluation.model_argument import ScoredModel

PROBE_TOKENS = 32  # the validation split's first tokens, whose served log-probabilities identify the model


def connect_served(target: ScoredModel, prepared: PreparedData, limits: RequestLimits = RequestLimits()):
    """The server's client, connected: what it serves known (its context: `served_context`), its tokenizer
    the corpus's; each request given `limits` (--teacher-timeout, --teacher-retries)."""
    from distillscale.training.remote_teacher import TeacherClient

    client = TeacherClient(target.address, top_k=1, timeout=limits.timeout, retries=limits.retries,
                           vocab_size=prepared.vocab_size)
    model = client.connect()
    why = model.about.tokenizer_difference(prepared)
    if why is not None:
        raise UserError(f"the server at {client.base} speaks another tokenizer than the corpus's ({why}): prepare the "
                        "corpus with the served model's tokenizer (--tokenizer)")
    return client


def served_context(client) -> int | None:
    """The longest window a server scores: its max_model_len less the token after the window (None: not stated)."""
    limit = None if client is None else client.model.max_model_len
    return None if limit is None else limit - 1


def served_fingerprint(client, prepared: PreparedData) -> str:
    """What the server serves now: its model's name and card, and its most likely token and the
    log-probability (to 0.1 nats) it gives each of the validation split's first PROBE_TOKENS tokens.
    Another model at the same address answers otherwise, so its loss is measured anew."""
    import torch

    probe = torch.as_tensor(np.asarray(prepared.split("val")[:PROBE_TOKENS + 1], dtype=np.int64))[None]
    answer = client.top_logprobs(probe)
    about = client.model.about.model_dump(mode="json", exclude_none=True)
    seen = [client.model.name, about, answer.ids[0, :, 0].tolist(),
            [round(float(value), 1) for value in answer.token_log_probs[0]]]
    return "served:" + hashlib.sha256(json.dumps(seen, sort_keys=True).encode("utf-8")).hexdigest()[:20]
