"""Model checkpoints: `model.safetensors` (weights) beside `model_config.json` (the ModelConfig)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from distillscale.errors import UserError
from distillscale.io import atomic_write, atomic_write_json
from distillscale.model.config import ModelConfig
from distillscale.model.transformer import Transformer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"


def save_pretrained(model: Transformer, directory: str | os.PathLike) -> None:
    """Write the weights, then the config, each atomically (a tied matrix is stored once)."""
    directory = Path(directory)
    atomic_write(directory / WEIGHTS_FILE,
                 lambda tmp: safetensors.torch.save_model(model, tmp, metadata={"format": "pt"}))
    atomic_write_json(directory / CONFIG_FILE, model.config.model_dump())


def load_config(directory: str | os.PathLike) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: point to a directory written by save_pretrained (a run directory)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): restore it or re-save the model") from None
    if not isinstance(values, dict):
        raise UserError(f"{path} must hold a JSON object of model settings")
    try:
        return ModelConfig(**values)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Transformer:
    """Build the model described by `model_config.json` and load `model.safetensors` into it."""
    config = load_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{weights} is missing: point to a directory written by save_pretrained (a run directory)")
    model = Transformer(config)
    try:
        safetensors.torch.load_model(model, weights, strict=True)
    except SafetensorError as exc:
        raise UserError(f"{weights} is not a readable safetensors file ({exc})") from None
    except RuntimeError as exc:
        summary = " ".join(str(exc).split())
        raise UserError(f"{weights} does not match {CONFIG_FILE}: {summary[:300]}") from None
    return model.to(device)
