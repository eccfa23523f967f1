"""`distillscale cache-logits`: run a teacher once over the student's tokens and store its top-k."""

from __future__ import annotations

from pathlib import Path

import typer

from distillscale.console import console, print_json
from distillscale.units import format_quantity


def cache_logits_command(
    teacher: Path = typer.Option(None, "--teacher", help="a finished `distillscale train` run directory, "
                                                         "or a local Hugging Face causal-LM directory"),
    out: Path = typer.Option(None, "--out", help="cache directory (re-run the same command to resume)"),
    top_k: int = typer.Option(None, "--top-k", help="teacher predictions kept per position, e.g. 128"),
    tokens: str = typer.Option(None, "--tokens", help="cache the first TOKENS of the split, e.g. 50M "
                                                      "(default: the whole split)"),
    split: str = typer.Option(None, "--split", help="half to cache: student or teacher (default: the half a "
                                                    "run teacher did not train on, else student)"),
    seq_len: int = typer.Option(None, "--seq-len", help="window length; students use the same (default: 256)"),
    batch_size: int = typer.Option(None, "--batch-size", help="windows per teacher forward pass (default: 32)"),
    shard_tokens: str = typer.Option(None, "--shard-tokens", help="tokens per shard file (default: 1048576, "
                                                                "about 300 MB at k = 128 for a 32k vocabulary)"),
    data: Path = typer.Option(None, "--data", help="corpus, as for train (default: a run teacher's corpus, "
                                                   "else Python's standard library)"),
    text_field: str = typer.Option(None, "--text-field", help="field holding the text (default: text)"),
    max_bytes: str = typer.Option(None, "--max-bytes", help="read at most this much text, e.g. 20M"),
    val_fraction: float = typer.Option(None, "--val-fraction", help="documents held out (default: 0.05)"),
    tokenizer: Path = typer.Option(None, "--tokenizer", help="the teacher's tokenizer, for a teacher saved "
                                                             "without one (default: the teacher's)"),
    eval_tokens: str = typer.Option(None, "--eval-tokens", help="validation tokens for the teacher's loss "
                                                                "(default: the whole split)"),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (default: auto)"),
    trust_remote_code: bool = typer.Option(None, "--trust-remote-code",
                                           help="let a Hugging Face teacher run its own model code"),
    overwrite: bool = typer.Option(None, "--overwrite", help="replace a cache of other settings in --out"),
    as_json: bool = typer.Option(False, "--json", help="print cache.json instead of a summary"),
) -> int:
    """Run a teacher once over the student's training tokens and store its top-k predictions.

    Writes shard-*.bin (the top-k ids, Elias-Fano coded, and their log-probabilities as 8-bit codes),
    tokenizer.json and, last, cache.json (teacher identity and validation loss, data fingerprint,
    encoding, bytes per token, one-time teacher FLOPs) to --out. An interrupted run keeps its
    finished shards when the same command is run again. Train from it with
    `distillscale distill --teacher-cache OUT`.
    """
    flags = {key: value for key, value in locals().items() if key != "as_json"}
    from distillscale.training.config import load_train_config
    from distillscale.training.logit_cache.writer import CacheConfig, cache_logits

    manifest = cache_logits(load_train_config(None, flags, CacheConfig))
    if as_json:
        print_json(manifest)
    else:
        teacher = manifest["teacher"]
        console.print(
            f"cached the top-{manifest['top_k']} predictions of a {format_quantity(teacher['non_embedding_params'])}"
            f"-parameter teacher (validation loss {teacher['teacher_val_loss']:.4f} nats/token) on "
            f"{format_quantity(manifest['tokens'])} tokens of the {manifest['split']} split: "
            f"{manifest['bytes_per_token']:.0f} bytes/token, top-k mass {manifest['mean_top_k_mass']:.3f}, "
            f"one-time cost {format_quantity(manifest['flops'])} FLOPs", highlight=False)
    return 0
