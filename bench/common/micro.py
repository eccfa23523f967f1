"""The micro family of the demo (report/micro_sweep.toml) as one place for the bench scripts: its
settings, and one training run of it in this process (one thread, the default corpus)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from distillscale.training.config import TrainConfig
from distillscale.training.recipe import train
from distillscale.training.records import RunResult

# The demo's [data] and [model] sections, as train settings.
FAMILY = {"vocab_size": 512, "seq_len": 128, "aspect_ratio": 24, "head_dim": 24, "batch_size": 16,
          "eval_every": 0, "eval_tokens": 65_536, "save_every": 500, "device": "cpu"}


def micro_run(**settings: Any) -> RunResult:
    """Train one model of the family (settings override it) in a temporary run directory; returns its
    result."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        return train(TrainConfig(out=Path(tmp) / "run", **{**FAMILY, **settings}), progress=False)
