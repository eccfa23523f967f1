"""`distillscale distill`: train a student from a teacher's distribution, into a resumable run directory.

Its options are the settings of `DistillConfig`: every setting of `train` (model, budget,
optimisation, data, hardware) plus the teacher and the KD objective, declared once in the config.
"""

from __future__ import annotations

from pathlib import Path

from distillscale.console import console, print_json
from distillscale.cli_options import with_config_options
from distillscale.training.commands import exit_status, report
from distillscale.training.config import DISTILL_LEFT_OUT, DistillConfig
from distillscale.training.records import RunResult
from distillscale.units import format_quantity


def distill_command(config: Path | None = None, as_json: bool = False, generations: int | None = None,
                    **settings) -> int:
    """Distil a teacher into a student of the family (knowledge distillation).

    The student trains on the half of the corpus its run teacher did not train on (--split teacher: the teacher's own half, for self-distillation or distillation on a fixed pool; result.json's teacher.student_read and the summary say so), with the teacher's tokenizer, to minimise (1 - lambda) CE + lambda KD + lambda_z z-loss. result.json adds the teacher (its validation loss on the same split, its size), the KD settings and the teacher's forward FLOPs; val_loss is the student's cross-entropy against the data.

    With --teacher-cache the student reads the cache's windows and its top-k or sampled predictions instead (teacher FLOPs 0 for the run; the cache's one-time cost is in its cache.json). With --teacher-url (and --top-k K, --tokenizer) it reads the teacher's top-K log-probabilities from an OpenAI-compatible completions server (`distillscale serve-teacher`, vLLM). Top-k targets (--top-k, a top-k cache, a server) keep the teacher's tail mass outside the k ids as one more category; the run measures the teacher's top-k mass on its first tokens, warns when it is low and records it in result.json (top_k_targets); a server that fails is retried, then the run stops (exit 2) with its checkpoints intact.

    A --tokenizer other than the teacher's runs cross-tokenizer distillation (positions aligned on the text; ULD's sorted-probability term plus exact KL on the shared tokens), a mode result.json states: the distillation law was fitted for a shared vocabulary. With --on-policy-fraction lambda a share lambda of the batches are the student's own continuations of corpus prompts (sampled with a KV cache), the KD loss on those tokens alone; result.json's on_policy section records the generated tokens and the FLOPs of generation.

    Given several times, --teacher distils from the teachers' weighted mixture in probability space (--teacher-weight, one per teacher; equal by default), or, as --teacher NAME=PATH with --teacher-route FIELD, from the teacher that each document's jsonl/parquet FIELD names; several --teacher-url merge their servers' top-k on the union of ids; every teacher speaks the student's tokenizer, and result.json records each one's loss, FLOPs and weight (see docs/guides/teacher_mixtures.md).

    Interrupted runs resume when the same command is run again; with --generations K, a self-distillation chain into OUT/generation-1 .. generation-K.
    """
    from distillscale.settings import load_config
    from distillscale.training.chain import distill_chain
    from distillscale.training.distillation import distill

    loaded = load_config(DistillConfig, config, settings)
    if generations is None:
        return report(distill(loaded), as_json, _print_summary)
    return report_chain(distill_chain(loaded, generations), loaded.out, as_json, generations)


distill_command = with_config_options(distill_command, DistillConfig, leave_out=DISTILL_LEFT_OUT,
                                      json_help="print result.json instead of a summary (with --generations, every "
                                                "generation's, in one object)")


def _print_summary(result: RunResult) -> None:
    teacher = result.teacher
    flops = ("from the logit cache, no teacher FLOPs" if result.teacher_cache is not None
             else "with the teacher's forward passes")
    size = ("" if teacher.non_embedding_params is None
            else f"{format_quantity(teacher.non_embedding_params)}-parameter ")
    teachers = (teacher.model_extra or {}).get("teachers") if teacher.kind == "mixture" else None
    if teachers:
        route = (teacher.model_extra or {}).get("route")
        size = f"{'routed' if route else 'weighted'} mixture of {len(teachers)} teachers, as one "
    if result.teacher_server is not None:
        server = result.teacher_server
        size += f"served ({server.url}, top-{server.top_k}) "
        if not teacher.flops:
            flops = "the served teacher's FLOPs not counted (the server does not state them)"
    console.print(
        f"distilled a {size}teacher (validation loss "
        f"{teacher.teacher_val_loss:.4f} nats/token) into {format_quantity(result.non_embedding_params)} "
        f"non-embedding parameters on {format_quantity(result.tokens)} tokens, "
        f"{format_quantity(result.flops)} FLOPs {flops}: student validation loss "
        f"{result.val_loss:.4f} nats/token, "
        f"{format_quantity(result.tokens_per_second)} tokens/s", highlight=False)
    if teacher.student_read_its_text:
        console.print(teacher.describe_shared_text(result.unique_tokens), highlight=False)
    for each in teachers or []:
        share = "token share" if (teacher.model_extra or {}).get("route") else "weight"
        console.print(f"  {each.get('name') or each['path']}: {share} {each['weight']:.3g}, validation loss "
                      f"{each['teacher_val_loss']:.4f} nats/token, {format_quantity(each['flops'])} FLOPs",
                      highlight=False)
    if result.teacher_server is not None:
        server = result.teacher_server
        tail = "" if server.mean_tail_mass is None else f"; tail mass outside the top {server.top_k}: " \
            f"{server.mean_tail_mass:.4f} on average"
        console.print(f"teacher server: {server.requests} requests, {server.retries} retries this session{tail}",
                      highlight=False)
    if result.top_k_targets is not None:
        targets = result.top_k_targets
        console.print(f"top-{targets.top_k} targets: the teacher's top-{targets.top_k} mass {targets.mean_top_k_mass:.3f} "
                      f"on the first {targets.checked_tokens:,} tokens; tail {targets.tail}"
                      f"{' and in the loss' if targets.tail_in_loss else ', dropped (--no-top-k-tail)'}",
                      highlight=False)
    if result.on_policy is not None:
        on_policy = result.on_policy
        start = f" after the first {on_policy.start:.0%} of the steps" if on_policy.start else ""
        console.print(f"on-policy: {on_policy.sequences:,} sequences continued by the student (--on-policy-fraction "
                      f"{on_policy.fraction:g} of the batches{start}), {format_quantity(on_policy.generated_tokens)} "
                      f"tokens generated ({format_quantity(on_policy.generation_flops)} FLOPs, included above)",
                      highlight=False)
    if result.distillation is not None and result.distillation.mode == "cross-tokenizer":
        console.print(f"mode: cross-tokenizer ({result.distillation.note})", highlight=False)


def report_chain(results: list[RunResult], out: Path, as_json: bool, asked: int | None = None) -> int:
    """Print a chain's generations (`training.chain`): one line each, its loss, its teacher's and the change,
    in nats/token of the tokenizer and validation text named first, and the generations an earlier, longer
    run left beyond the `asked` ones; or, with --json, all of it as one object. The exit status is the last
    generation's (1 when it diverged)."""
    import os

    from distillscale.console import warn
    from distillscale.training.chain import generation_dir, generation_records, later_generations, later_generations_note
    from distillscale.training.run_dir import RunDirectory

    if os.environ.get("RANK", "0") != "0":
        return 0 if results[-1].completed else 1
    identity = RunDirectory(generation_dir(out, 1)).loss_identity()
    units = identity.describe() if identity is not None else "nats/token"
    records = generation_records(results, out)
    asked = len(results) if asked is None else asked
    note = later_generations_note(out, asked)
    if note is not None:
        warn(note)
    if as_json:
        print_json({"unit": "nats/token", "losses": units,
                    "generations": [record.to_json(result) for record, result in zip(records, results)],
                    "kept_beyond": [str(generation_dir(out, g)) for g in later_generations(out, asked)]})
        return exit_status(results[-1])
    console.print(f"{len(records)} generation{'s' * (len(records) > 1)} in {generation_dir(out, 1)} .. "
                  f"generation-{len(records)}; validation losses in {units}:", highlight=False)
    for record in records:
        loss = "diverged" if record.val_loss is None else f"loss {record.val_loss:.4f}"
        change = "" if record.change is None else f", change {record.change:+.4f}"
        console.print(f"generation {record.generation}: {loss}, its teacher's {record.teacher_val_loss:.4f}"
                      f"{change} nats/token", highlight=False)
    if results[-1].completed and results[-1].teacher.student_read_its_text:
        console.print(results[-1].teacher.describe_shared_text(results[-1].unique_tokens), highlight=False)
    return exit_status(results[-1])
