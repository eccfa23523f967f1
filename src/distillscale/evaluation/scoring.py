"""Scoring a model window by window: the windows' length and cap, where and how the model runs, and
its nats per window, a loaded model's or a server's.

    seq_len, max_tokens = scoring_windows(target, None, None, progress=True, client=None)
    runner = scoring_runner(target, prepared, device="auto")       # device, precision, identity
    scorer = make_scorer(target, prepared, seq_len, n_windows, runner, trust_remote_code, progress)
    nats = score_windows(scorer, tokens, windows, seq_len, max_tokens, batch_size, done=[], keep=print)

The windows are those every run's evaluation reads (`data.eval_windows`): on a run with its own
context and evaluation cap, its recorded val_loss again. A loaded model computes the cross-entropy of
every token in float32 logits as a run's own evaluation does; a server gives the log-probabilities of
the tokens themselves, exact. The scores so far are handed to `keep` every SAVE_EVERY_SECONDS and on Ctrl-C, so an
interrupted measurement resumes (`evaluation.kept_loss`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from distillscale.console import err_console
from distillscale.evaluation.served_model import served_context, served_fingerprint

if TYPE_CHECKING:
    import torch

    from distillscale.data.prepared import PreparedData
    from distillscale.evaluation.model_argument import ScoredModel

DEFAULT_SEQ_LEN = 2048       # windows of a model that is not a run (at most its context)
SAVE_EVERY_SECONDS = 30.0    # an unfinished measurement's windows are kept this often


def scoring_windows(target: ScoredModel, seq_len: int | None, max_tokens: int | None, progress: bool,
                    client=None) -> tuple[int, int | None]:
    """(context, evaluation cap): a run's own unless given; else DEFAULT_SEQ_LEN; within the model's
    context either way, a local model's or a server's (`client`: a window and the token after it, at
    most its max_model_len): a longer one asked for is shortened to it, said (the default, said among
    the progress lines)."""
    context = target.size.context if target.size is not None else served_context(client)
    if target.kind == "run":
        from distillscale.training.run_dir import RunDirectory

        stored = RunDirectory(Path(target.location)).recorded_config()  # a train or distill run's; prune's: None
        if stored is not None:
            seq_len, max_tokens = seq_len or stored.seq_len, max_tokens if max_tokens is not None else stored.eval_tokens
    asked, seq_len = seq_len, seq_len or DEFAULT_SEQ_LEN
    if context is not None and seq_len > context:
        if asked is not None or progress:
            err_console.print(f"loss: the model takes at most {context} tokens of context: measured in windows of "
                              f"{context}, not {asked or f'the default {seq_len}'}", highlight=False, soft_wrap=True)
        seq_len = context
    return seq_len, max_tokens


@dataclass(frozen=True)
class ScoringRunner:
    """Where and how the model runs: its device, precision and identity as the cache keys them (a
    served model: what the server says it serves and its answers on probe tokens, asked on every use)."""

    fingerprint: str
    device_kind: str                # cpu, cuda or server
    precision: str                  # float32, bf16 autocast or as served
    device: Any = None              # a torch.device (local)
    autocast: bool = False
    client: Any = None              # a TeacherClient (served)


def scoring_runner(target: ScoredModel, prepared: PreparedData, device: str, client=None) -> ScoringRunner:
    """Where `target` runs: on `device` (auto: a GPU where there is one), under a run's own autocast; a
    server (`client`) as it serves."""
    if target.kind == "server":
        return ScoringRunner(served_fingerprint(client, prepared), "server", "as served", client=client)
    from distillscale.training.distributed import resolve_device
    from distillscale.training.evaluation import default_bf16

    where = resolve_device(device)
    autocast = _run_bf16(target) if target.kind == "run" else default_bf16(where)
    return ScoringRunner(target.fingerprint, where.type, "bf16 autocast" if autocast else "float32", where, autocast)


def _run_bf16(target: ScoredModel) -> bool:
    """A run's own autocast (its val_loss was measured under it): on the CPU never."""
    import torch

    from distillscale.training.run_dir import RunDirectory

    run = RunDirectory(Path(target.location))
    return torch.cuda.is_available() and run.recorded_config() is not None and run.stored_plan().bf16


def make_scorer(target: ScoredModel, prepared: PreparedData, seq_len: int, n_windows: int, runner: ScoringRunner,
                trust_remote_code: bool, progress: bool):
    """The scorer of `target`: a server's, or the model loaded on the runner's device once its cost is
    known to fit (`evaluation.cost`, said among the progress lines)."""
    if target.kind == "server":
        return ServedScorer(runner.client)
    import torch

    from distillscale.evaluation.cost import estimate_cost
    from distillscale.training.teachers import load_teacher

    estimate = estimate_cost(target.size, seq_len * n_windows, seq_len, prepared.vocab_size, runner.device)
    estimate.check(target.location)
    if progress:
        err_console.print(f"loss: scoring {seq_len * n_windows:,} tokens takes {estimate.describe()}", highlight=False,
                          soft_wrap=True)
    teacher = load_teacher(target.source, prepared.vocab_size, runner.device, seq_len, trust_remote_code,
                           dtype=torch.float32)
    return LocalScorer(teacher, runner.device, runner.autocast)


class LocalScorer:
    """A loaded model's nats per window: its trunk on a batch, then the cross-entropy of every token in
    float32 logits (as a run's own evaluation computes it), the head applied `chunk` tokens at a time
    (`kd_settings.chunk_tokens`: a bounded slice of logits however large the vocabulary), summed per window."""

    def __init__(self, teacher, device: torch.device, autocast: bool):
        from distillscale.training.kd_settings import chunk_tokens

        self.teacher, self.torch_device, self.autocast = teacher, device, autocast
        self.chunk = chunk_tokens(teacher.vocab_size)
        self.device = str(device)
        self.dtype = "float32 weights" + (" under bf16 autocast" if autocast else "")

    def __call__(self, inputs, targets) -> list[float]:
        import torch

        from torch.nn import functional

        from distillscale.training.evaluation import bf16_autocast

        inputs, targets = inputs.to(self.torch_device), targets.to(self.torch_device)
        with torch.no_grad(), bf16_autocast(self.torch_device, self.autocast):
            hidden = self.teacher.hidden_states(inputs).flatten(0, -2)
            flat = targets.flatten()
            nats = torch.cat([functional.cross_entropy(self.teacher.head(hidden[first:first + self.chunk]).float(),
                                                       flat[first:first + self.chunk], reduction="none")
                              for first in range(0, len(flat), self.chunk)])
        return nats.double().view(targets.shape).sum(dim=1).tolist()


class ServedScorer:
    """A server's nats per window: minus the log-probabilities it gives the tokens themselves."""

    def __init__(self, client):
        self.client, self.device, self.dtype = client, f"server {client.base}", "as served"

    def __call__(self, inputs, targets) -> list[float]:
        import torch

        answer = self.client.top_logprobs(torch.cat([inputs, targets[:, -1:]], dim=1))
        return (-answer.token_log_probs.double().sum(dim=1)).tolist()


def score_windows(scorer, tokens: np.ndarray, windows: np.ndarray, seq_len: int, max_tokens: int | None,
                  batch_size: int, done: list[float], keep: Callable[[list[float]], None], progress: bool) -> np.ndarray:
    """The nats of every window (its seq_len targets summed), in order; `done`: those of an earlier,
    interrupted measurement, kept; the rest scored in batches, handed to `keep` every SAVE_EVERY_SECONDS
    and on Ctrl-C (then re-raised)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from distillscale.data import iter_eval_batches

    resumed = len(done) // batch_size
    nats = list(done[:resumed * batch_size])  # whole batches: resumed at a batch's start
    saved = time.monotonic()
    with Progress(TextColumn("scoring windows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, disable=not progress, transient=True) as display:
        task = display.add_task("score", total=len(windows), completed=len(nats))
        try:
            for index, (inputs, targets) in enumerate(iter_eval_batches(tokens, seq_len, batch_size, max_tokens)):
                if index < resumed:
                    continue
                nats.extend(scorer(inputs, targets))
                display.update(task, completed=len(nats))
                if time.monotonic() - saved > SAVE_EVERY_SECONDS:
                    saved = time.monotonic()
                    keep(nats)
        except KeyboardInterrupt:   # Ctrl-C: what was scored is kept, whenever it comes
            _keep_interrupted(nats, len(windows), keep)
            raise
    return np.asarray(nats, dtype=np.float64)


def _keep_interrupted(nats: list[float], windows: int, keep: Callable[[list[float]], None]) -> None:
    """Keep the windows scored before an interruption and say so (or that none was)."""
    if not nats:
        err_console.print("scoring interrupted before a window was scored: nothing kept", highlight=False)
        return
    keep(nats)
    err_console.print(f"scoring interrupted: the {len(nats):,} of {windows:,} windows scored are kept; the same "
                      "command resumes from them", highlight=False, soft_wrap=True)
