"""A model's cross-entropy on a corpus: what `distillscale loss` measures and `plan --teacher-model`
reads.

    record = evaluate_loss("models/qwen", "corpus/")       # a LossRecord (loss.json)
    record.nats_per_token, record.standard_error, record.bits_per_byte, record.losses.describe()

The measurement, step by step, each step its own module:

1. what the model argument names (`evaluation.model_argument`): a distillscale run, a local Hugging
   Face causal LM (loaded as `distill` loads a teacher) or a served teacher's URL;
2. the text (`evaluation.loss_data`): the validation split of the corpus prepared with the model's own
   tokenizer, or of a prepared directory given as it is; a served model connected and identified
   (`evaluation.served_model`);
3. the windows and where the model runs (`evaluation.scoring`): those every run's evaluation reads,
   so on a run with its own context and evaluation cap, its recorded val_loss again;
4. the key (`data.loss_record.MeasurementKey`: the model, tokenizer, text, windows, device and
   precision) and distillscale's cache of measurements, never the model's or corpus's directory: asked
   again, the kept record is returned (`from_cache`, measured when its `created` says);
5. else scored (`evaluation.scoring`, its cost checked first: `evaluation.cost`), resumed from the
   windows an interrupted measurement kept, and the record built and kept (`evaluation.kept_loss`).

The loss is the mean over the scored tokens in nats/token, its standard error that of the mean over
the windows (each a sample of `seq_len` tokens), and both in bits per byte at the split's bytes per
token (`data.loss_identity`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distillscale.console import err_console
from distillscale.data.loss_identity import LossIdentity, prepared_loss_identity
from distillscale.data.loss_record import LossRecord, MeasurementCache, MeasurementKey
from distillscale.errors import UserError
from distillscale.evaluation.kept_loss import keep_partial, measured_record, resumed
from distillscale.evaluation.loss_data import named_identity, scored_data
from distillscale.evaluation.model_argument import ScoredModel, scored_model
from distillscale.evaluation.scoring import (ScoringRunner, make_scorer, score_windows, scoring_runner,
                                             scoring_windows)
from distillscale.evaluation.served_model import connect_served
from distillscale.model.teacher_limits import RequestLimits
from distillscale.urls import redacted_text

if TYPE_CHECKING:
    from distillscale.data.prepared import PreparedData


def evaluate_loss(model: str | Path, data: str | Path | None = None, *, tokenizer: str | Path | None = None,
                  seq_len: int | None = None, max_tokens: int | None = None, batch_size: int = 8,
                  device: str = "auto", trust_remote_code: bool = False, max_bytes: int | None = None,
                  val_fraction: float | None = None, seed: int | None = None, progress: bool = True,
                  limits: RequestLimits = RequestLimits(), other_corpus: bool = False) -> LossRecord:
    """The cross-entropy of `model` (a run or Hugging Face directory, or a server's URL) on the
    validation split of `data` (a corpus, prepared with the model's tokenizer with `max_bytes`,
    `val_fraction` and `seed` as `data prepare` takes them; or a prepared directory; default for a
    run: its own corpus as it trained), in windows of `seq_len` tokens (default: a run's own, else
    2048 within the model's context), at most `max_tokens` of them (default: a run's own cap, else
    the whole split). `tokenizer`: a server's (default: the prepared directory's). A measurement
    kept in distillscale's cache is returned with `from_cache` set (`created`: when it was measured).
    `other_corpus`: a run's `data` shares no text with the run's corpus (split on its own, not checked). A
    server is waited for as `limits` say (--teacher-timeout, --teacher-retries)."""
    target = scored_model(model, trust_remote_code, tokenizer)
    prepared = scored_data(target, data, max_bytes, val_fraction, seed, progress, other_corpus)
    identity = named_identity(prepared_loss_identity(prepared), target)
    client = connect_served(target, prepared, limits) if target.kind == "server" else None
    seq_len, max_tokens = scoring_windows(target, seq_len, max_tokens, progress, client)
    runner = scoring_runner(target, prepared, device, client)
    key = MeasurementKey.of(runner.fingerprint, identity, seq_len, max_tokens, runner.device_kind, runner.precision)
    cache = MeasurementCache(warn=lambda message: err_console.print(f"loss: {redacted_text(message)}",
                                                                     highlight=False, soft_wrap=True))
    found = cache.find(key)
    if found is not None:   # named as asked: the same model kept under another path or URL is this one now
        return found.model_copy(update={"from_cache": True, "model": target.location})
    return _measure(target, prepared, identity, seq_len, max_tokens, batch_size, runner, trust_remote_code, key,
                    cache, progress)


def _measure(target: ScoredModel, prepared: PreparedData, identity: LossIdentity, seq_len: int,
             max_tokens: int | None, batch_size: int, runner: ScoringRunner, trust_remote_code: bool,
             key: MeasurementKey, cache: MeasurementCache, progress: bool) -> LossRecord:
    """Score the windows not yet kept, build the record and keep it under `key`."""
    from distillscale.data import eval_windows

    tokens = prepared.split("val")
    windows = eval_windows(len(tokens), seq_len, max_tokens)
    if not len(windows):
        raise UserError(f"the validation split holds {len(tokens)} tokens, fewer than one window of {seq_len} + 1: use "
                        "a shorter --seq-len or a larger corpus")
    scorer = make_scorer(target, prepared, seq_len, len(windows), runner, trust_remote_code, progress)
    cache.writable_root()
    partial = cache.partial(key)
    done, earlier_seconds = resumed(partial, len(windows))
    start = time.perf_counter()

    def keep(nats: list[float]) -> None:
        keep_partial(partial, len(windows), nats, earlier_seconds + time.perf_counter() - start)

    nats = score_windows(scorer, tokens, windows, seq_len, max_tokens, batch_size, done, keep, progress)
    seconds = earlier_seconds + time.perf_counter() - start
    # the bytes behind each window's targets (tokens first+1 .. first+seq_len), from one cumulative sum
    behind = np.concatenate([[0], np.cumsum(np.asarray(prepared.token_bytes("val"), dtype=np.int64))])
    firsts = np.asarray(windows, dtype=np.int64) * seq_len
    window_bytes = (behind[firsts + seq_len + 1] - behind[firsts + 1]).astype(np.float64)
    record = measured_record(target, runner, identity, nats, window_bytes, seq_len, max_tokens, scorer, seconds)
    cache.save(key, record)
    return record
