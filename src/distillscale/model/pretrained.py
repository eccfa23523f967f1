"""A model to start from (`--student-init DIR`): a run directory or a pruned model (model_config.json
beside model.safetensors), or a Hugging Face Llama / Qwen3 directory (imported exactly, `hf_import`).
Other Hugging Face architectures (`hf_import.is_generic_hf`) are trained as they are through
AutoModelForCausalLM: training/hf_student.py, not here.

    config = pretrained_config("runs/pruned")       # its shape, without reading the weights
    model = load_start(path, config)                # config: the shape, possibly at a smaller vocabulary

A start may have more output rows than the run's tokenizer has ids (Hugging Face models pad their
embeddings to a multiple of 64 or 128): the run keeps the first rows, those of the tokenizer's ids.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from distillscale.errors import UserError, path_kind
from distillscale.model.checkpoint import CONFIG_FILE, load_config, load_pretrained
from distillscale.model.config import ModelConfig
from distillscale.model.hf_import import hf_model_config, import_hf, is_hf_directory, read_hf_config


def pretrained_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of the model in `path`, or a one-line refusal saying what `path` should be."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"--student-init {path} {path_kind(path)}, not a directory: give a run directory, "
                        f"a `distillscale prune` output or a Hugging Face causal-LM directory")
    if (path / CONFIG_FILE).is_file():
        return load_config(path)
    if is_hf_directory(path):
        return hf_model_config(path)
    if (path / "config.json").is_file():  # there, but not a model's: say what is wrong with it
        read_hf_config(path)  # unreadable JSON, or not an object: one line
        raise UserError(f"--student-init {path}/config.json has no model_type: it is not a Hugging Face model's "
                        f"config; give a run directory, a `distillscale prune` output or a Hugging Face causal-LM "
                        f"directory")
    raise UserError(f"--student-init {path} holds neither {CONFIG_FILE} (a run directory) nor a Hugging Face "
                    f"config.json: give a run directory, a `distillscale prune` output or a Hugging Face causal-LM directory")


def start_config(path: str | os.PathLike, vocab_size: int, max_seq_len: int) -> ModelConfig:
    """The shape a run starting from `path` trains: the start's, at the tokenizer's `vocab_size` (no
    more than the start's rows) and the run's context."""
    config = pretrained_config(path)
    check_output_rows(path, config.vocab_size, vocab_size)
    if max_seq_len > config.max_seq_len:  # as the generic path refuses it (`training.hf_student`)
        raise UserError(f"--seq-len {max_seq_len} is longer than the context of --student-init {path} "
                        f"({config.max_seq_len} tokens): use --seq-len {config.max_seq_len} or less")
    return ModelConfig(**(config.model_dump() | {"vocab_size": vocab_size, "max_seq_len": max_seq_len}))


def padding_rows(vocab_size: int) -> int:
    """How many output rows past a tokenizer's ids a model may have as padding (Hugging Face models pad
    to a multiple of 64 to 256; Qwen2.5's 151,936 rows over 151,665 ids): 256, or 2% of a large vocabulary."""
    return max(256, vocab_size // 50)


def check_output_rows(path: str | os.PathLike, rows: int | None, vocab_size: int) -> None:
    """Refuse, in one line, a start (`--student-init path`) of `rows` output rows for a tokenizer of
    `vocab_size` ids: fewer rows than ids; or, when no tokenizer is saved beside it to compare with
    (`tokenizer_of`), more rows than padding explains: a model trained with another tokenizer, whose
    first rows would be taken for this tokenizer's ids."""
    if rows is None:
        return
    if rows < vocab_size:
        raise UserError(f"the tokenizer has {vocab_size} token ids but --student-init {path} predicts only {rows}: "
                        f"use the tokenizer that model was trained with, or a model with the tokenizer's vocabulary")
    if rows - vocab_size > padding_rows(vocab_size) and tokenizer_of(path) is None:
        raise UserError(f"--student-init {path} has {rows:,} output rows but no saved tokenizer, and this run's "
                        f"tokenizer has {vocab_size:,} ids: it was trained with another tokenizer, so its first "
                        f"rows would stand for other tokens; use the tokenizer it was trained with (--tokenizer), "
                        f"or save that tokenizer in {path}")


def tokenizer_of(path: str | os.PathLike) -> Path | None:
    """The tokenizer saved with the model in `path` (tokenizer.json or a Hugging Face tokenizer
    directory), None when there is none."""
    path = Path(path).expanduser()
    if (path / "tokenizer_config.json").is_file():
        return path
    if (path / "tokenizer.json").is_file():
        return path / "tokenizer.json"
    return None


@torch.no_grad()
def load_start(path: str | os.PathLike, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of the model in `path` as a state dict of `Transformer(config)` (`config` from
    `start_config`: the output rows past its vocab_size are dropped)."""
    path = Path(path).expanduser()
    model = load_pretrained(path) if (path / CONFIG_FILE).is_file() else import_hf(path)
    state = model.state_dict()
    for name in ("embed.weight", "lm_head.weight"):
        state[name] = state[name][:config.vocab_size]
    return state
