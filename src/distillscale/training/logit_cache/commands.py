"""`distillscale cache-logits`: run a teacher once over the student's tokens and store its top-k or samples."""

from __future__ import annotations

from distillscale.cli_options import with_config_options
from distillscale.console import console, print_json
from distillscale.training.logit_cache.config import CacheConfig
from distillscale.units import format_quantity


def cache_logits_command(as_json: bool = False, **settings) -> int:
    """Run a teacher once over the student's training tokens and store its top-k predictions, or
    (--targets sampled --samples K) K ids drawn from its distribution, unbiased for forward KL.

    Writes shard-*.bin (the top-k ids, Elias-Fano coded, and their log-probabilities as 8-bit codes;
    or the sampled ids, Elias-Fano coded, and the teacher's entropy),
    tokenizer.json and, last, cache.json (teacher identity and validation loss, data fingerprint,
    encoding, bytes per token, one-time teacher FLOPs) to --out. An interrupted run keeps its
    finished shards when the same command is run again. Train from it with
    `distillscale distill --teacher-cache OUT`.
    """
    from distillscale.settings import load_config
    from distillscale.training.logit_cache.writer import cache_logits

    manifest = cache_logits(load_config(CacheConfig, None, settings))
    if as_json:
        print_json(manifest)
    else:
        _print_summary(manifest)
    return 0


def _print_summary(manifest: dict) -> None:
    teacher = manifest["teacher"]
    if manifest.get("targets") == "sampled":
        what = f"{manifest['samples']} samples per position of the predictions"
        mass = f"mass of the sampled ids {manifest['mean_sampled_mass']:.3f}"
    else:
        what, mass = f"the top-{manifest['top_k']} predictions", f"top-k mass {manifest['mean_top_k_mass']:.3f}"
    console.print(
        f"cached {what} of a {format_quantity(teacher['non_embedding_params'])}"
        f"-parameter teacher (validation loss {teacher['teacher_val_loss']:.4f} nats/token) on "
        f"{format_quantity(manifest['tokens'])} tokens of the {manifest['split']} split: "
        f"{manifest['bytes_per_token']:.0f} bytes/token, {mass}, "
        f"one-time cost {format_quantity(manifest['flops'])} FLOPs", highlight=False)


# The cache's tokenizer is the teacher's.
cache_logits_command = with_config_options(cache_logits_command, CacheConfig, leave_out=frozenset({"vocab_size"}),
                                           json_help="print cache.json instead of a summary")
