"""`prune_teacher(config)`: a student pruned from its teacher, written as a directory that
`distill --student-init` starts from (see model/pruning.py for the importance scores and the cuts).

The teacher is a finished run of the family or a Llama/Qwen3 Hugging Face directory (imported
exactly); the calibration batches are windows of the corpus the student will train on (by default,
as for `distill`, the other half of a run teacher's corpus), read with the teacher's tokenizer.

The output directory (created; an existing path is refused, never written into):
    model.safetensors, model_config.json   the pruned model (`load_pretrained` reads it)
    tokenizer.json                         the teacher's tokenizer
    prune.json                             PruneRecord: teacher, method, kept units, exact N and FLOPs
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from distillscale.data import prepare_data
from distillscale.errors import UserError
from distillscale.io import atomic_write_json, check_output_dir
from distillscale.model import load_pretrained, save_pretrained
from distillscale.model.pruning import PruneTarget, importance, prune, target_for_params
from distillscale.training.distributed import resolve_device
from distillscale.training.prune_config import (PruneConfig, calibration_input_tokens, calibration_window,
                                                importance_flops)
from distillscale.training.run_dir import PRUNE_RECORD as RECORD_FILE, input_paths
from distillscale.training.teachers import find_teacher, resolve_student_data, same_tokenizer

SCHEMA_VERSION = 2  # 2: gradient importance counted as 2 forward passes (the backward computes no weight gradients)
STAGING_PREFIX = ".tmp-prune-"  # + host-pid-: the directory the output is built in, renamed to --out when done


class ShapeRecord(BaseModel):
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    non_embedding_params: int
    total_params: int
    forward_flops_per_token: int  # exact (ModelConfig.forward_flops_per_token) at `seq_len`


class PruneRecord(BaseModel):
    """prune.json: what was pruned from which teacher, how, and the exact size of the result."""

    schema_version: int = SCHEMA_VERSION
    teacher: str
    importance: str
    depth_by: str
    calibration_tokens: int
    seq_len: int
    data_fingerprint: str
    teacher_shape: ShapeRecord
    pruned_shape: ShapeRecord
    kept_blocks: list[int]
    flops: int = Field(description="FLOPs of the importance pass: 2 (gradient: forward and activation "
                                   "gradients, the weights frozen) or 1 (activation) x the teacher's forward "
                                   "FLOPs per token x calibration tokens")


def _shape(config, seq_len: int) -> ShapeRecord:
    return ShapeRecord(n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
                       n_kv_heads=config.n_kv_heads, d_ff=config.d_ff,
                       non_embedding_params=config.non_embedding_params, total_params=config.total_params,
                       forward_flops_per_token=config.forward_flops_per_token(seq_len))


def prune_teacher(config: PruneConfig, progress: bool = False) -> PruneRecord:
    """Prune `config.teacher` to the asked shape and write `config.out`; returns prune.json's record."""
    out = Path(config.out)
    if out.exists() or out.is_symlink():
        raise UserError(f"{out} exists: prune writes a new directory; choose another --out")
    source = find_teacher(config.teacher, config.trust_remote_code, given_as="prune's TEACHER argument")
    if config.tokenizer is not None and source.tokenizer_path is not None \
            and not same_tokenizer(source.tokenizer_path, config.tokenizer):
        raise UserError(f"--tokenizer {config.tokenizer} is not the teacher's ({source.tokenizer_path}): a pruned "
                        f"student keeps the teacher's embeddings, so it speaks the teacher's tokenizer; leave "
                        f"out --tokenizer")
    config = resolve_student_data(config, source)
    # the output rule: not inside the corpus, the teacher or the tokenizer (they would read the new files)
    check_output_dir(out, is_ours=lambda path: False, inputs=input_paths(config), what="pruned model")
    if source.kind == "run":
        teacher = load_pretrained(source.path)
    else:
        from distillscale.model.hf_import import import_hf

        teacher = import_hf(source.path)  # refuses, in one line, what it cannot import exactly
    target = (target_for_params(teacher.config, int(config.params)) if config.params is not None
              else PruneTarget(config.n_layers, config.d_model, config.n_heads, config.d_ff))
    target.resolve(teacher.config)  # shape errors before the data is read
    context = teacher.config.max_seq_len
    if config.seq_len is not None and config.seq_len > context:
        raise UserError(f"--seq-len {config.seq_len} is longer than the teacher's context ({context} tokens): give "
                        f"--seq-len {context} or less, or leave it out")
    config = config.model_copy(update={"seq_len": calibration_window(config.seq_len, context)})

    data = prepare_data(config.data_config(), progress=progress)
    if data.vocab_size > teacher.config.vocab_size:
        raise UserError(f"the tokenizer has {data.vocab_size} ids but the teacher only {teacher.config.vocab_size} "
                        f"rows: it is not the teacher's tokenizer")
    device = resolve_device(config.device)
    teacher = teacher.to(device)
    scores = importance(teacher, calibration_batches(data.split(config.split), config, device), config.importance)
    pruned, kept = prune(teacher, target, scores, config.depth_by)

    record = PruneRecord(
        teacher=str(source.path), importance=config.importance, depth_by=config.depth_by,
        calibration_tokens=scores.tokens, seq_len=config.seq_len, data_fingerprint=data.fingerprint,
        teacher_shape=_shape(teacher.config, config.seq_len), pruned_shape=_shape(pruned.config, config.seq_len),
        kept_blocks=kept["blocks"],
        flops=importance_flops(config.importance, teacher.config.forward_flops_per_token(config.seq_len),
                               scores.tokens))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=out.parent))
    try:
        save_pretrained(pruned.cpu(), staging)
        shutil.copyfile(data.directory / "tokenizer.json", staging / "tokenizer.json")
        atomic_write_json(staging / RECORD_FILE, record.model_dump())
        try:
            staging.rename(out)  # fails, rather than merging, when `out` appeared meanwhile
        except OSError:
            raise UserError(f"{out} appeared while pruning: choose another --out") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def remove_stale_staging(directory: Path) -> None:
    """Remove the staging directories that `prune` processes of this host left in `directory` when they
    were killed (their process is gone); those of live processes, or of other hosts, stay."""
    mine = f"{STAGING_PREFIX}{socket.gethostname()}-"
    for leftover in directory.glob(f"{STAGING_PREFIX}*"):
        pid = leftover.name.removeprefix(mine).split("-", 1)[0]
        if not leftover.name.startswith(mine) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except OSError:  # alive, someone else's
            pass


def calibration_batches(tokens: np.ndarray, config: PruneConfig, device: torch.device):
    """Windows of `seq_len` + 1 tokens drawn at random (seeded) from `tokens`, batch_size at a time:
    (inputs, next-token targets), calibration_tokens inputs in all (at least one window)."""
    windows = calibration_input_tokens(config.calibration_tokens, config.seq_len) // config.seq_len
    if len(tokens) <= config.seq_len:
        raise UserError(f"the {config.split} split holds {len(tokens)} tokens, less than one calibration window "
                        f"of {config.seq_len}: use more data or a smaller --seq-len")
    starts = np.random.default_rng(config.seed).integers(0, len(tokens) - config.seq_len, size=windows)
    for first in range(0, windows, config.batch_size):
        chunk = np.stack([tokens[s:s + config.seq_len + 1] for s in starts[first:first + config.batch_size]])
        chunk = torch.from_numpy(chunk.astype(np.int64)).to(device)
        yield chunk[:, :-1], chunk[:, 1:]
