"""A model's cross-entropy on a corpus: what `distillscale loss` measures and `plan --teacher-model`
reads.

    record = evaluate_loss("models/qwen", "corpus/")       # a LossRecord (loss.json)
    record.nats_per_token, record.standard_error, record.bits_per_byte, record.losses.describe()

The model is a distillscale run, a local Hugging Face causal LM (loaded as `distill` loads a teacher:
`training.teachers`) or a served teacher's URL (`training.remote_teacher`: the log-probabilities the
server gives the tokens themselves, exact). The text is the validation split of the corpus prepared
with the model's own tokenizer (`data prepare`'s split, the one a sweep on that corpus validates on),
or of a prepared directory given as it is. The windows are those every run's evaluation reads
(`data.eval_windows`): on a run with its own context and evaluation cap, its recorded val_loss again.

The loss is the mean over the scored tokens in nats/token, its standard error that of the mean over
the windows (each a sample of `seq_len` tokens), and both in bits per byte at the split's bytes per
token (`data.loss_identity`). A measurement is kept in distillscale's cache (`data.loss_record`),
keyed by the model, tokenizer, text, windows, device and precision, never in the model's or corpus's
directory, so asking again costs nothing; an interrupted one resumes from the windows it had scored.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distillscale.console import err_console
from distillscale.data.loss_identity import (LossIdentity, bits_per_byte, corpus_tokenizer_identity,
                                             prepared_loss_identity, tokenizer_identity)
from distillscale.data.loss_record import LossRecord, MeasurementCache, MeasurementKey, model_fingerprint
from distillscale.data.trained_split import TrainedSplit
from distillscale.errors import UserError
from distillscale.urls import is_url, redacted_url, restored

if TYPE_CHECKING:
    import torch

    from distillscale.data.prepared import PreparedData
    from distillscale.model.sizes import ModelSize

DEFAULT_SEQ_LEN = 2048       # windows of a model that is not a run (at most its context)
SAVE_EVERY_SECONDS = 30.0    # an unfinished measurement's windows are kept this often
MEMORY_HEADROOM = 0.9        # refuse a model whose estimate passes this share of the memory available


@dataclass(frozen=True)
class _Model:
    """The model to score: where it is (as records and messages show it: a URL without its
    credentials; `address`: where a server is asked, credentials and all), what it is, its tokenizer
    and identity."""

    location: str
    kind: str                        # run, hf or server
    tokenizer: Path | None
    fingerprint: str
    size: ModelSize | None = None    # None for a server
    source: Any = None               # its TeacherSource (a directory)
    address: str | None = None       # a server's URL as given (its credentials with it): never shown


def evaluate_loss(model: str | Path, data: str | Path | None = None, *, tokenizer: str | Path | None = None,
                  seq_len: int | None = None, max_tokens: int | None = None, batch_size: int = 8,
                  device: str = "auto", trust_remote_code: bool = False, max_bytes: int | None = None,
                  val_fraction: float | None = None, seed: int | None = None, progress: bool = True) -> LossRecord:
    """The cross-entropy of `model` (a run or Hugging Face directory, or a server's URL) on the
    validation split of `data` (a corpus, prepared with the model's tokenizer with `max_bytes`,
    `val_fraction` and `seed` as `data prepare` takes them; or a prepared directory; default for a
    run: its own corpus as it trained), in windows of `seq_len` tokens (default: a run's own, else
    DEFAULT_SEQ_LEN within the model's context), at most `max_tokens` of them (default: a run's own
    cap, else the whole split). `tokenizer`: a server's (default: the prepared directory's)."""
    target = _model(model, trust_remote_code, tokenizer)
    prepared = _data(target, data, max_bytes, val_fraction, seed, progress)
    identity = _named(prepared_loss_identity(prepared), target)
    client = _served_client(target, prepared) if target.kind == "server" else None
    seq_len, max_tokens = _windows(target, seq_len, max_tokens, progress, client)
    runner = _runner(target, prepared, seq_len, device, client)
    key = MeasurementKey.of(runner.fingerprint, identity, seq_len, max_tokens, runner.device_kind, runner.precision)
    cache = MeasurementCache(warn=lambda message: err_console.print(f"loss: {message}", highlight=False,
                                                                     soft_wrap=True))
    found = cache.find(key)
    if found is not None:
        return found
    return _measure(target, prepared, identity, seq_len, max_tokens, batch_size, runner, trust_remote_code, key,
                    cache, progress)


def check_model(model: str | Path, trust_remote_code: bool = False, tokenizer: str | Path | None = None) -> None:
    """Refuse, in one line, a model `evaluate_loss` cannot score (before anything is written)."""
    _model(model, trust_remote_code, tokenizer)


# -- the model and its data -----------------------------------------------------------------------

def _model(model: str | Path, trust_remote_code: bool, tokenizer: str | Path | None) -> _Model:
    from distillscale.model.sizes import model_size
    from distillscale.training.teachers import find_teacher

    if is_url(model):
        address = restored(str(model))  # a parent's `for_child` URL is whole again here
        shown = redacted_url(address)
        return _Model(shown, "server", None if tokenizer is None else Path(tokenizer).expanduser(),
                      hashlib.sha256(shown.encode()).hexdigest()[:20], address=address)
    if tokenizer is not None:
        raise UserError("--tokenizer is a served model's: a model directory is scored with the tokenizer saved in it")
    size = model_size(model, trust_remote_code, given_as="model")  # a clear refusal first (remote code, not a model)
    source = find_teacher(model, trust_remote_code, given_as="MODEL")
    if source.tokenizer_path is None:
        raise UserError(f"model {source.path} has no tokenizer (tokenizer.json or tokenizer_config.json): a loss is "
                        "measured in the model's own tokens; save its tokenizer there (tokenizer.save_pretrained(DIR))")
    return _Model(str(source.path), source.kind, source.tokenizer_path, model_fingerprint(source.path), size, source)


def _data(target: _Model, data: str | Path | None, max_bytes: int | None, val_fraction: float | None,
          seed: int | None, progress: bool) -> PreparedData:
    """The prepared corpus to score on, its tokenizer the model's."""
    from distillscale.data import DataConfig, prepare_data
    from distillscale.data.loss_identity import is_prepared_dir
    from distillscale.data.prepared import open_prepared

    split = {"max_bytes": max_bytes, "val_fraction": val_fraction, "seed": seed}
    given = {key: value for key, value in split.items() if value is not None}
    trained = TrainedSplit.of_run(target.location, role="model") if target.kind == "run" else None
    if data is not None and is_prepared_dir(data):
        if given:
            raise UserError(f"--data {data} is prepared already: its split is fixed; leave out --max-bytes, "
                            "--val-fraction and --seed (they split a corpus)")
        prepared = open_prepared(data)
        if trained is not None:
            trained.check(DataConfig.model_validate(prepared.manifest["config"]), who=f"--data {data}",
                          fix="measure the model on its own corpus as it trained: leave out --data")
    elif data is not None:
        if target.tokenizer is None:
            raise UserError(f"a served model's loss needs its tokenizer to prepare --data {data}: give --tokenizer "
                            "(the tokenizer the server's model speaks), or a corpus prepared with it")
        config = DataConfig(path=str(data), tokenizer=str(target.tokenizer), **given)
        prepared = prepare_data(_as_trained(trained, config, given), progress)
    elif target.kind == "run":
        prepared = prepare_data(_as_trained(trained, _run_data(target, given), given), progress)
    else:
        raise UserError("give --data: the corpus to measure the model's loss on (a directory, file or glob of text; "
                        "or a corpus prepared by `distillscale data prepare`)")
    _check_tokenizer(target, prepared, data)
    return prepared


def _named(identity: LossIdentity, target: _Model) -> LossIdentity:
    """The identity with its tokenizer named as the model's own (checked to give the corpus's ids: `_data`),
    not as whichever tokenizer of the same ids first prepared the corpus; a server's without --tokenizer,
    as the corpus names it."""
    if target.tokenizer is None:
        return identity
    return identity.model_copy(update={"tokenizer": identity.tokenizer.model_copy(update={"name": str(target.tokenizer)})})


def _as_trained(trained: TrainedSplit | None, config, given: dict):
    """`config` split as the run `trained` split its corpus where `given` says nothing (the rule every
    reader of a run's corpus follows: `data.trained_split`), refused in one line where it says otherwise."""
    if trained is None:
        return config
    config = trained.as_trained(config, given=given)
    trained.check(config, who="the measurement", fix="leave out --max-bytes, --val-fraction and --seed to split it "
                                                     "as the model did")
    return config


def _run_data(target: _Model, given: dict):
    """A run's own corpus, split as it was (what its val_loss was measured on)."""
    from distillscale.training.run_dir import RunDirectory

    recorded = RunDirectory(Path(target.location)).recorded_data()
    if recorded is None:
        raise UserError(f"run {target.location} records no data settings: give --data, the corpus to measure on")
    return recorded[0].model_copy(update=given)


def _check_tokenizer(target: _Model, prepared: PreparedData, data) -> None:
    """The prepared corpus speaks the model's tokenizer (every token the same id)."""
    from distillscale.data.tokenizer import load_tokenizer

    if target.tokenizer is None:  # a server scored on a prepared corpus: its tokenizer is the corpus's
        return
    why = tokenizer_identity(load_tokenizer(target.tokenizer)[0], str(target.tokenizer)).differs(
        corpus_tokenizer_identity(prepared))
    if why is not None:
        raise UserError(f"--data {data} was prepared with another tokenizer than the model's ({target.tokenizer}: "
                        f"{why}): a loss is measured in the model's own tokens; give the corpus itself, or prepare "
                        f"it with `distillscale data prepare --tokenizer {target.location}`")


def _windows(target: _Model, seq_len: int | None, max_tokens: int | None, progress: bool,
             client=None) -> tuple[int, int | None]:
    """(context, evaluation cap): a run's own unless given; else DEFAULT_SEQ_LEN; within the model's
    context either way, a local model's or a server's (`client`: a window and the token after it, at
    most its max_model_len): a longer one asked for is shortened to it, said (the default, said among
    the progress lines)."""
    context = target.size.context if target.size is not None else _served_context(client)
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


def _served_context(client) -> int | None:
    """The longest window a server scores: its max_model_len less the token after the window (None: not stated)."""
    limit = None if client is None else client.model.max_model_len
    return None if limit is None else limit - 1


# -- how the model runs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Runner:
    """Where and how the model runs: its device, precision and identity as the cache keys them (a
    served model: what the server says it serves and its answers on probe tokens, asked on every use)."""

    fingerprint: str
    device_kind: str                # cpu, cuda or server
    precision: str                  # float32, bf16 autocast or as served
    device: Any = None              # a torch.device (local)
    autocast: bool = False
    client: Any = None              # a TeacherClient (served)


PROBE_TOKENS = 32  # the validation split's first tokens, whose served log-probabilities identify the model


def _runner(target: _Model, prepared: PreparedData, seq_len: int, device: str, client=None) -> _Runner:
    if target.kind == "server":
        return _Runner(_served_fingerprint(client, prepared), "server", "as served", client=client)
    from distillscale.training.distributed import resolve_device
    from distillscale.training.evaluation import default_bf16

    where = resolve_device(device)
    autocast = _run_bf16(target) if target.kind == "run" else default_bf16(where)
    return _Runner(target.fingerprint, where.type, "bf16 autocast" if autocast else "float32", where, autocast)


def _served_client(target: _Model, prepared: PreparedData):
    """The server's client, connected: what it serves known (its context: `_served_context`), its tokenizer
    the corpus's."""
    from distillscale.training.remote_teacher import TeacherClient

    client = TeacherClient(target.address, top_k=1, vocab_size=prepared.vocab_size)
    model = client.connect()
    why = model.about.tokenizer_difference(prepared)
    if why is not None:
        raise UserError(f"the server at {client.base} speaks another tokenizer than the corpus's ({why}): prepare the "
                        "corpus with the served model's tokenizer (--tokenizer)")
    return client


def _served_fingerprint(client, prepared: PreparedData) -> str:
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


# -- measuring --------------------------------------------------------------------------------------

def _measure(target: _Model, prepared: PreparedData, identity: LossIdentity, seq_len: int, max_tokens: int | None,
             batch_size: int, runner: _Runner, trust_remote_code: bool, key: MeasurementKey, cache: MeasurementCache,
             progress: bool) -> LossRecord:
    from distillscale.data import eval_windows

    tokens = prepared.split("val")
    windows = eval_windows(len(tokens), seq_len, max_tokens)
    if not len(windows):
        raise UserError(f"the validation split holds {len(tokens)} tokens, fewer than one window of {seq_len} + 1: use "
                        "a shorter --seq-len or a larger corpus")
    scorer = _scorer(target, prepared, seq_len, len(windows), runner, trust_remote_code, progress)
    cache.writable_root()
    partial = cache.partial(key)
    done, earlier_seconds = _resumed(partial, len(windows))
    start = time.perf_counter()
    nats = _score(scorer, tokens, windows, seq_len, max_tokens, batch_size, done, earlier_seconds, partial, progress)
    seconds = earlier_seconds + time.perf_counter() - start
    # the bytes behind each window's targets (tokens first+1 .. first+seq_len), from one cumulative sum
    behind = np.concatenate([[0], np.cumsum(np.asarray(prepared.token_bytes("val"), dtype=np.int64))])
    firsts = np.asarray(windows, dtype=np.int64) * seq_len
    window_bytes = (behind[firsts + seq_len + 1] - behind[firsts + 1]).astype(np.float64)
    record = _record(target, runner, identity, nats, window_bytes, seq_len, max_tokens, scorer, seconds)
    cache.save(key, record)
    return record


def _record(target: _Model, runner: _Runner, identity: LossIdentity, nats: np.ndarray, window_bytes: np.ndarray,
            seq_len: int, max_tokens: int | None, scorer, seconds: float) -> LossRecord:
    """The record of a measurement: per window its nats (summed over its targets) and the bytes of
    their source text. The loss is the mean over the tokens, in bits per byte the nats over the bytes
    (`bits_per_byte`: a ratio), each with the standard error of its mean over windows (the ratio's by
    the delta method: the bytes' variation from window to window counted)."""
    count = len(nats) * seq_len
    mean = float(nats.sum() / count)
    n_bytes = float(window_bytes.sum())
    error = float((nats / seq_len).std(ddof=1) / math.sqrt(len(nats))) if len(nats) > 1 else None  # one: no spread
    bits = bits_per_byte(mean, count, n_bytes)
    bits_error = None
    if bits is not None and len(nats) > 1:
        ratio = nats.sum() / n_bytes  # nats per byte
        residual = nats - ratio * window_bytes
        spread = float(residual.std(ddof=1) / math.sqrt(len(nats)))
        bits_error = spread / float(window_bytes.mean()) / math.log(2)
    return LossRecord(
        model=target.location, model_kind=target.kind, model_fingerprint=runner.fingerprint, losses=identity,
        nats_per_token=mean, standard_error=error, bits_per_byte=bits, bits_per_byte_standard_error=bits_error,
        tokens=count, bytes=n_bytes or None, windows=len(nats), seq_len=seq_len, max_tokens=max_tokens,
        device=scorer.device, dtype=scorer.dtype, seconds=seconds, tokens_per_second=count / max(seconds, 1e-9),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _score(scorer, tokens: np.ndarray, windows: np.ndarray, seq_len: int, max_tokens: int | None, batch_size: int,
           done: list[float], earlier_seconds: float, partial: Path, progress: bool) -> np.ndarray:
    """The nats of every window (its seq_len targets summed), in order; `done`: those of an earlier,
    interrupted measurement, kept (with the `earlier_seconds` it took); the rest scored in batches,
    kept every SAVE_EVERY_SECONDS."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from distillscale.data import iter_eval_batches
    from distillscale.io import atomic_write_json

    resumed = len(done) // batch_size
    nats = list(done[:resumed * batch_size])  # whole batches: resumed at a batch's start
    start = saved = time.monotonic()
    with Progress(TextColumn("scoring windows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, disable=not progress, transient=True) as display:
        task = display.add_task("score", total=len(windows), completed=len(nats))
        for index, (inputs, targets) in enumerate(iter_eval_batches(tokens, seq_len, batch_size, max_tokens)):
            if index < resumed:
                continue
            nats.extend(scorer(inputs, targets))
            display.update(task, completed=len(nats))
            if time.monotonic() - saved > SAVE_EVERY_SECONDS:
                saved = time.monotonic()
                atomic_write_json(partial, {"windows": len(windows), "nats": nats,
                                            "seconds": earlier_seconds + saved - start})
    return np.asarray(nats, dtype=np.float64)


def _resumed(partial: Path, windows: int) -> tuple[list[float], float]:
    """(the window nats an interrupted measurement kept, the seconds it took): empty when none, or of
    another window count."""
    try:
        kept = json.loads(partial.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], 0.0
    nats = kept.get("nats") if isinstance(kept, dict) and kept.get("windows") == windows else None
    if not (isinstance(nats, list) and len(nats) <= windows):
        return [], 0.0
    seconds = kept.get("seconds")
    return [float(value) for value in nats], float(seconds) if isinstance(seconds, (int, float)) else 0.0


class _LocalScorer:
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


class _ServedScorer:
    """A server's nats per window: minus the log-probabilities it gives the tokens themselves."""

    def __init__(self, client):
        self.client, self.device, self.dtype = client, f"server {client.base}", "as served"

    def __call__(self, inputs, targets) -> list[float]:
        import torch

        answer = self.client.top_logprobs(torch.cat([inputs, targets[:, -1:]], dim=1))
        return (-answer.token_log_probs.double().sum(dim=1)).tolist()


def _scorer(target: _Model, prepared: PreparedData, seq_len: int, n_windows: int, runner: _Runner,
            trust_remote_code: bool, progress: bool):
    if target.kind == "server":
        return _ServedScorer(runner.client)
    import torch

    from distillscale.training.teachers import load_teacher

    estimate = estimate_cost(target.size, seq_len * n_windows, seq_len, prepared.vocab_size, runner.device)
    estimate.check(target.location)
    if progress:
        err_console.print(f"loss: scoring {seq_len * n_windows:,} tokens takes {estimate.describe()}", highlight=False,
                          soft_wrap=True)
    teacher = load_teacher(target.source, prepared.vocab_size, runner.device, seq_len, trust_remote_code,
                           dtype=torch.float32)
    return _LocalScorer(teacher, runner.device, runner.autocast)


def _run_bf16(target: _Model) -> bool:
    """A run's own autocast (its val_loss was measured under it): on the CPU never."""
    import torch

    from distillscale.training.run_dir import RunDirectory

    run = RunDirectory(Path(target.location))
    return torch.cuda.is_available() and run.recorded_config() is not None and run.stored_plan().bf16


# -- what it will cost -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CostEstimate:
    """What scoring will take: memory (float32 weights and one window's logits and activations) against
    what the device has, and time at the device's matmul rate measured now."""

    memory_bytes: float
    available_bytes: float | None
    flops: float
    flops_per_second: float
    device: str

    @property
    def seconds(self) -> float:
        return self.flops / self.flops_per_second

    def describe_memory(self) -> str:
        available = "" if self.available_bytes is None else f" of {_size(self.available_bytes)} available"
        return f"about {_size(self.memory_bytes)}{available} on {self.device}"

    def describe(self) -> str:
        return (f"{self.describe_memory()} and about {_duration(self.seconds)} "
                f"({self.flops:.3g} FLOPs at {self.flops_per_second / 1e9:,.0f} GFLOP/s measured now)")

    @property
    def fits(self) -> bool:
        """Whether the memory estimate is within MEMORY_HEADROOM of what the device has (or that is not known)."""
        return self.available_bytes is None or self.memory_bytes <= MEMORY_HEADROOM * self.available_bytes

    def check(self, model: str) -> None:
        if not self.fits:
            raise UserError(f"model {model} needs {self.describe()}: too large for this machine; measure it on one with "
                            "more memory (a GPU: --device cuda), or serve it and give its URL")


def estimate_cost(size: ModelSize, tokens: int, seq_len: int, vocab_size: int, device: torch.device) -> CostEstimate:
    """The cost of scoring `tokens` tokens in windows of `seq_len` with the model of `size` on `device`."""
    activations = 4.0 * seq_len * (vocab_size + 16 * _width(size)) * 2
    return CostEstimate(memory_bytes=4.0 * size.total_params + activations, available_bytes=_available_memory(device),
                        flops=float(size.forward_flops_per_token(seq_len)) * tokens,
                        flops_per_second=_matmul_rate(device), device=str(device))


def _width(size: ModelSize) -> int:
    return int(getattr(size.count, "d_model", 0) or math.sqrt(max(size.non_embedding_params, 1) / 12))


def _available_memory(device: torch.device) -> float | None:
    import torch

    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _matmul_rate(device: torch.device) -> float:
    """FLOP/s of a float32 matmul on `device` now (a few milliseconds on a CPU)."""
    import torch

    a = torch.randn(256, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    torch.matmul(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(4):
        torch.matmul(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 4 * 2.0 * 256 * 1024 * 1024 / max(time.perf_counter() - start, 1e-9)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.0f} MB" if n_bytes < 1e9 else f"{n_bytes / 1e9:,.1f} GB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:,.1f} hours"


# -- loss.json ---------------------------------------------------------------------------------------

def loss_output(model: str | Path, out: str | Path | None, overwrite: bool) -> Path | None:
    """Where `distillscale loss` writes its record: `out` only (None: nowhere; the measurement is kept
    in distillscale's cache either way, never in the model's directory), checked before the work: a
    file there is replaced with --overwrite, or when it is a record of the same model (the same
    measurement again writes the same record; another split is refused once measured)."""
    from distillscale.data.loss_record import is_loss_file
    from distillscale.io import check_output_file

    if out is None:
        return None
    path = Path(out)
    same_model = path.is_file() and is_loss_file(path) and not is_url(model) and \
        LossRecord.load(path).model_fingerprint == model_fingerprint(Path(model).expanduser())
    return check_output_file(path, overwrite=overwrite or same_model, is_ours=is_loss_file,
                             inputs=[] if is_url(model) else [model], what="loss file written by `distillscale loss`")


def write_loss(path: Path | None, record: LossRecord, overwrite: bool) -> None:
    """Write the record to `path` (None: nowhere); over a record of the same model on another split or
    context only with --overwrite."""
    if path is None:
        return
    if path.is_file() and not overwrite:
        kept = LossRecord.load(path)
        if (kept.losses, kept.seq_len, kept.max_tokens) != (record.losses, record.seq_len, record.max_tokens):
            raise UserError(f"--out {path} holds this model's loss on {kept.losses.describe()} at context {kept.seq_len} "
                            f"(this one is kept in distillscale's cache): pass --overwrite to replace it, or give "
                            "another --out")
    record.save(path)
