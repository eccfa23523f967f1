"""`distillscale train`: train one model from scratch on a corpus, into a resumable run directory."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from distillscale.console import console, print_json, warn
from distillscale.units import format_quantity


def train_command(
    out: Path = typer.Option(None, "--out", help="run directory (created; re-run the same command to resume)"),
    n_layers: int = typer.Option(None, "--n-layers", help="depth L; d_model = aspect ratio x L"),
    aspect_ratio: int = typer.Option(None, "--aspect-ratio", help="d_model / n_layers (default: 128)"),
    tokens: str = typer.Option(None, "--tokens", help="training tokens, e.g. 50M"),
    tokens_per_param: str = typer.Option(None, "--tokens-per-param",
                                         help="training tokens per non-embedding parameter, e.g. 20"),
    data: Path = typer.Option(None, "--data", help="corpus: text/.jsonl/.parquet files, a glob or a "
                                                   "datasets directory (default: Python's standard library)"),
    text_field: str = typer.Option(None, "--text-field", help="field holding the text (default: text)"),
    max_bytes: str = typer.Option(None, "--max-bytes", help="read at most this much text, e.g. 20M"),
    val_fraction: float = typer.Option(None, "--val-fraction", help="documents held out (default: 0.05)"),
    vocab_size: int = typer.Option(None, "--vocab-size", help="BPE vocabulary to train (default: 8192)"),
    tokenizer: Path = typer.Option(None, "--tokenizer", help="tokenizer.json or a tokenizer directory"),
    split: str = typer.Option(None, "--split", help="training half: teacher or student (default: teacher)"),
    head_dim: int = typer.Option(None, "--head-dim", help="attention head size (default: 128)"),
    tie_embeddings: bool = typer.Option(None, "--tie-embeddings/--no-tie-embeddings",
                                        help="share input and output embeddings (default: no)"),
    mup: bool = typer.Option(None, "--mup/--no-mup", help="muP parametrisation (default: on)"),
    seq_len: int = typer.Option(None, "--seq-len", help="tokens per sequence (default: 256)"),
    batch_size: int = typer.Option(None, "--batch-size",
                                   help="sequences per micro-batch, over all processes (default: 32)"),
    grad_accum: int = typer.Option(None, "--grad-accum", help="micro-batches per step (default: 1)"),
    reference_batch_size: int = typer.Option(
        None, "--reference-batch-size",
        help="global batch (sequences) that --lr and the schedule were tuned at: --lr is scaled to this "
             "run's batch size x grad accum by --lr-scaling (default: none, --lr as given)"),
    lr_scaling: str = typer.Option(None, "--lr-scaling",
                                   help="sqrt (Hoffer et al. 2017), linear or none (default: sqrt)"),
    regime_adaptation: bool = typer.Option(
        None, "--regime-adaptation/--no-regime-adaptation",
        help="make as many updates as --reference-batch-size would on the token budget, i.e. train on "
             "batch / reference batch times more tokens (default: off)"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate (muP base) (default: 0.01)"),
    min_lr_ratio: float = typer.Option(None, "--min-lr-ratio", help="final lr / peak lr (default: 0.001)"),
    warmup_steps: int = typer.Option(None, "--warmup-steps",
                                     help="(default: 10% of the steps, at most 2000)"),
    schedule: str = typer.Option(None, "--schedule",
                                 help="cosine, or wsd: warmup, constant, then a cooldown (default: cosine)"),
    cooldown_fraction: float = typer.Option(None, "--cooldown-fraction",
                                            help="wsd: share of the steps in the cooldown (default: 0.2)"),
    cooldown_shape: str = typer.Option(None, "--cooldown-shape", help="wsd: linear or 1-sqrt (default: 1-sqrt)"),
    fork_tokens: str = typer.Option(None, "--fork-tokens",
                                    help="wsd: budgets of this run's forks, e.g. 1M,2M: keeps the state "
                                         "where each one's cooldown starts"),
    fork_from: Path = typer.Option(None, "--fork-from",
                                   help="wsd: a run with this run's budget in its --fork-tokens: start "
                                        "from its stable phase and train the cooldown only"),
    weight_decay: float = typer.Option(None, "--weight-decay",
                                       help="per-step decay at peak lr, independent of lr (default: 1e-4)"),
    grad_clip: float = typer.Option(None, "--grad-clip", help="max gradient norm, 0 = off (default: 1.0)"),
    z_loss: float = typer.Option(None, "--z-loss", help="z-loss weight (default: 1e-4)"),
    seed: int = typer.Option(None, "--seed", help="initialisation and batch order (default: 0)"),
    eval_every: int = typer.Option(None, "--eval-every",
                                   help="steps between validations, 0 = only at the end (default: 250)"),
    eval_tokens: str = typer.Option(None, "--eval-tokens",
                                    help="validation tokens per evaluation (default: the whole split)"),
    save_every: int = typer.Option(None, "--save-every", help="steps between checkpoints (default: 100)"),
    log_every: int = typer.Option(None, "--log-every", help="steps between metrics lines (default: 10)"),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (default: auto)"),
    bf16: bool = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (default: on CUDA only)"),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: off)"),
    overwrite: bool = typer.Option(None, "--overwrite", help="replace a finished or different run in --out"),
    config: Path = typer.Option(None, "--config", help="TOML file of settings (keys = flag names); "
                                                       "flags given here override it"),
    as_json: bool = typer.Option(False, "--json", help="print result.json instead of a summary"),
) -> int:
    """Train a model of the family on a corpus (supervised next-token prediction).

    The run directory --out gets config.json, model.safetensors, tokenizer.json, state/ and metrics.jsonl.

    result.json comes last; the same command run again resumes an interrupted run from its last checkpoint.

    Several processes: torchrun --nproc_per_node N -m distillscale.cli train ...
    """
    flags = {key: value for key, value in locals().items() if key not in ("config", "as_json")}
    from distillscale.training.config import load_train_config
    from distillscale.training.recipe import train

    result = train(load_train_config(config, flags))
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone reports
        return 0 if result["status"] == "completed" else 1
    if as_json:
        print_json(result)
    else:
        _print_summary(result)
    return exit_status(result)


def exit_status(result: dict) -> int:
    """0 for a completed run; for a diverged one, warn what happened and what to change, and 1."""
    if result["status"] == "completed":
        return 0
    kept = (f"the checkpoint of step {result['checkpoint_step']} is kept" if result["checkpoint_step"]
            else "no checkpoint had been saved")
    warn(f"training diverged at step {result['diverged_at_step']} (loss {result['diverged_loss']:.4g}, "
         f"gradient norm {result['diverged_grad_norm']:.4g}); {kept}: lower --lr or raise --warmup-steps")
    return 1


def _print_summary(result: dict) -> None:
    if result["status"] != "completed":
        return
    console.print(
        f"trained {format_quantity(result['non_embedding_params'])} non-embedding parameters "
        f"({format_quantity(result['total_params'])} total) on {format_quantity(result['tokens'])} tokens, "
        f"{format_quantity(result['flops'])} FLOPs: validation loss "
        f"[bold]{result['val_loss']:.4f}[/bold] nats/token, "
        f"{format_quantity(result['tokens_per_second'])} tokens/s", highlight=False)
