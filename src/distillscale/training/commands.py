"""`distillscale train`: train one model from scratch on a corpus, into a resumable run directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from distillscale.console import console, print_json, warn
from distillscale.cli_options import with_config_options
from distillscale.training.config import TrainConfig
from distillscale.training.records import RunResult
from distillscale.units import format_quantity


def train_command(config: Path | None = None, as_json: bool = False, **settings) -> int:
    """Train a model of the family on a corpus (supervised next-token prediction).

    The run directory --out gets config.json, model.safetensors, tokenizer.json, state/ and metrics.jsonl.

    result.json comes last; the same command run again resumes an interrupted run from its last checkpoint.

    Several processes: torchrun --nproc_per_node N -m distillscale.cli train ...
    """
    from distillscale.settings import load_config
    from distillscale.training.recipe import train

    return report(train(load_config(TrainConfig, config, settings)), as_json, _print_summary)


train_command = with_config_options(train_command, TrainConfig, json_help="print result.json instead of a summary")


def report(result: RunResult, as_json: bool, print_summary: Callable[[RunResult], None]) -> int:
    """Print a finished run (result.json, or the summary of a completed run) and return the exit
    status. Under torchrun rank 0 alone prints; every rank returns the same status."""
    if os.environ.get("RANK", "0") != "0":
        return 0 if result.completed else 1
    if as_json:
        print_json(result.to_json())
    elif result.completed:
        print_summary(result)
    return exit_status(result)


def exit_status(result: RunResult) -> int:
    """0 for a completed run; for a diverged one, warn what happened and what to change, and 1."""
    if result.completed:
        return 0
    kept = (f"the checkpoint of step {result.checkpoint_step} is kept" if result.checkpoint_step
            else "no checkpoint had been saved")
    warn(f"training diverged at step {result.diverged_at_step} (loss {result.diverged_loss:.4g}, "
         f"gradient norm {result.diverged_grad_norm:.4g}); {kept}: lower --lr or raise --warmup-steps")
    return 1


def _print_summary(result: RunResult) -> None:
    console.print(
        f"trained {format_quantity(result.non_embedding_params)} non-embedding parameters "
        f"({format_quantity(result.total_params)} total) on {format_quantity(result.tokens)} tokens, "
        f"{format_quantity(result.flops)} FLOPs: validation loss "
        f"{result.val_loss:.4f} nats/token, "
        f"{format_quantity(result.tokens_per_second)} tokens/s", highlight=False)
