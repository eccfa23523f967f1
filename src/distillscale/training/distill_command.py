"""`distillscale distill`: train a student from a teacher's distribution, into a resumable run directory.

The command takes every option of `train` (model, budget, optimisation, data, hardware, --config,
--json), so the two stay in step; its own options name the teacher and the KD objective.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from distillscale.console import console, print_json
from distillscale.training.commands import exit_status, train_command
from distillscale.units import format_quantity

# Fixed by the teacher: students train on the student half of the corpus, with the teacher's tokenizer.
_TRAIN_OPTIONS_LEFT_OUT = {"split", "vocab_size"}


def distill_command(
    teacher: Path = typer.Option(None, "--teacher", help="a finished `distillscale train` run directory, "
                                                         "or a local Hugging Face causal-LM directory"),
    teacher_cache: Path = typer.Option(None, "--teacher-cache",
                                       help="a `distillscale cache-logits` directory, instead of --teacher: "
                                            "the teacher's cached top-k, no teacher in memory"),
    trust_remote_code: bool = typer.Option(None, "--trust-remote-code",
                                           help="let a Hugging Face teacher run its own model code"),
    kd: str = typer.Option(None, "--kd", help="divergence: forward-kl, reverse-kl or jsd (default: forward-kl)"),
    temperature: float = typer.Option(None, "--temperature",
                                      help="tau: both distributions softened by it, KD scaled by tau^2 "
                                           "(default: 1)"),
    kd_weight: float = typer.Option(None, "--kd-weight",
                                    help="lambda: loss = (1 - lambda) CE + lambda KD + z-loss (default: 1)"),
    top_k: int = typer.Option(None, "--top-k", help="keep the teacher's k most likely tokens per position "
                                                    "(default: all)"),
    jsd_beta: float = typer.Option(None, "--jsd-beta", help="teacher weight in the JSD mixture (default: 0.5)"),
    loss_chunk_size: int = typer.Option(None, "--loss-chunk-size",
                                        help="tokens whose logits are computed at once (default: 1024)"),
    tokenizer: Path = typer.Option(None, "--tokenizer",
                                   help="the teacher's tokenizer, for a teacher saved without one "
                                        "(default: the teacher's)"),
    data: Path = typer.Option(None, "--data", help="corpus, as for train (default: a run teacher's corpus, "
                                                   "else Python's standard library)"),
    **train_options,
) -> int:
    """Distil a teacher into a student of the family (knowledge distillation).

    The student trains on the student half of the corpus (the teacher trained on the other half),
    with the teacher's tokenizer, to minimise (1 - lambda) CE + lambda KD + lambda_z z-loss.
    result.json adds the teacher (its validation loss on the same split, its size), the KD settings
    and the teacher's forward FLOPs; val_loss is the student's cross-entropy against the data.
    With --teacher-cache the student reads the cache's windows and top-k predictions instead
    (teacher FLOPs 0 for the run; the cache's one-time cost is in its cache.json).
    Interrupted runs resume when the same command is run again.
    """
    config_file, as_json = train_options.pop("config"), train_options.pop("as_json")
    flags = {key: value for key, value in locals().items()
             if key not in ("train_options", "config_file", "as_json")} | train_options
    from distillscale.training.config import load_train_config
    from distillscale.training.distillation import DistillConfig, distill

    result = distill(load_train_config(config_file, flags, DistillConfig))
    if as_json:
        print_json(result)
    elif result["status"] == "completed":
        _print_summary(result)
    return exit_status(result)


def _with_train_options(command):
    """Give `command` the options of `train` that it does not define itself (typer reads the
    options from the signature; the values arrive in `**train_options`)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    names = {p.name for p in own} | _TRAIN_OPTIONS_LEFT_OUT
    shared = [p for p in inspect.signature(train_command, eval_str=True).parameters.values()
              if p.name not in names]
    command.__signature__ = inspect.Signature(own + shared)
    return command


distill_command = _with_train_options(distill_command)


def _print_summary(result: dict) -> None:
    teacher = result["teacher"]
    flops = ("from the logit cache, no teacher FLOPs" if "teacher_cache" in result
             else "with the teacher's forward passes")
    console.print(
        f"distilled a {format_quantity(teacher['non_embedding_params'])}-parameter teacher (validation loss "
        f"{teacher['teacher_val_loss']:.4f} nats/token) into {format_quantity(result['non_embedding_params'])} "
        f"non-embedding parameters on {format_quantity(result['tokens'])} tokens, "
        f"{format_quantity(result['flops'])} FLOPs {flops}: student validation loss "
        f"[bold]{result['val_loss']:.4f}[/bold] nats/token, "
        f"{format_quantity(result['tokens_per_second'])} tokens/s", highlight=False)
