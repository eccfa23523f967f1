"""A measurement's record and where it is kept beyond the cache: the record built from the scored
windows, the windows of an unfinished measurement kept beside the cache's entry so it resumes, and the
`--out` file of `distillscale loss`.

    done, seconds = resumed(cache.partial(key), n_windows)    # ([], 0.0) when nothing was kept
    keep_partial(cache.partial(key), n_windows, nats, seconds)
    record = measured_record(target, runner, identity, nats, window_bytes, seq_len, max_tokens, scorer, seconds)
    out = loss_output(model, "loss.json", overwrite=False); write_loss(out, record, overwrite=False)

The record itself, the cache and its key are `data.loss_record`'s.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distillscale.data.loss_identity import LossIdentity, bits_per_byte
from distillscale.data.loss_record import LossRecord, model_fingerprint
from distillscale.errors import UserError
from distillscale.urls import is_url, restored

if TYPE_CHECKING:
    from distillscale.evaluation.model_argument import ScoredModel
    from distillscale.evaluation.scoring import ScoringRunner


def resumed(partial: Path, windows: int) -> tuple[list[float], float]:
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


def keep_partial(partial: Path, windows: int, nats: list[float], seconds: float) -> None:
    """Keep the nats of the windows scored so far, and the seconds they took, for `resumed`."""
    from distillscale.io import atomic_write_json

    atomic_write_json(partial, {"windows": windows, "nats": nats, "seconds": seconds})


def measured_record(target: ScoredModel, runner: ScoringRunner, identity: LossIdentity, nats: np.ndarray,
                    window_bytes: np.ndarray, seq_len: int, max_tokens: int | None, scorer, seconds: float) -> LossRecord:
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
    same_model = path.is_file() and is_loss_file(path) and _same_model(LossRecord.load(path), model)
    return check_output_file(path, overwrite=overwrite or same_model, is_ours=is_loss_file,
                             inputs=[] if is_url(model) else [model], what="loss file written by `distillscale loss`")


def _same_model(kept: LossRecord, model: str | Path) -> bool:
    """Whether a loss file holds this model's record: the same server (its URL, credentials aside), the
    same directory (its weights replaced since, or not), or the same files elsewhere."""
    from distillscale.urls import redacted_url

    if is_url(model):
        return kept.model == redacted_url(restored(str(model)))
    path = Path(model).expanduser()
    return kept.model == str(path.resolve()) or kept.model_fingerprint == model_fingerprint(path)


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
