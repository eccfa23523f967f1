"""`distillscale prune TEACHER --out DIR`: a student pruned from its teacher (MiniMA, Minitron), which
`distill --student-init DIR` then distils from it."""

from __future__ import annotations

from pathlib import Path

from distillscale.cli_options import with_config_options
from distillscale.console import console, print_json
from distillscale.training.prune_config import PruneConfig
from distillscale.units import format_quantity


NAMES = {"teacher": "TEACHER"}  # how errors name the settings: the teacher is the argument


def prune_command(teacher: Path, config: Path | None = None, as_json: bool = False, **settings) -> int:
    """Prune a teacher into a smaller student of the family, to distil with `distill --student-init OUT`.

    Importance is measured on calibration windows of the corpus (by default the student's half of a run teacher's corpus): first-order |dL/dmask| of heads, FFN neurons and hidden channels (MiniMA, the default) or activation magnitudes (Minitron), normalised per layer.

    Depth: the blocks that change the residual stream least are dropped (--depth-by importance), or the last ones (--depth-by last). The shape is given by --n-layers, --d-model, --n-heads, --d-ff (each at most the teacher's), or as a parameter count (--params).

    OUT (created; an existing path is refused) holds the pruned model, the teacher's tokenizer and prune.json with the pruned model's exact parameters and FLOPs per token.
    """
    from distillscale.settings import load_config
    from distillscale.training.pruning import prune_teacher

    record = prune_teacher(load_config(PruneConfig, config, settings | {"teacher": teacher}, NAMES), progress=True)
    if as_json:
        print_json(record.model_dump())
        return 0
    before, after = record.teacher_shape, record.pruned_shape
    console.print(
        f"pruned {format_quantity(before.non_embedding_params)} -> {format_quantity(after.non_embedding_params)} "
        f"non-embedding parameters (L {before.n_layers}->{after.n_layers}, d_model {before.d_model}->{after.d_model}, "
        f"heads {before.n_heads}->{after.n_heads}, d_ff {before.d_ff}->{after.d_ff}) by {record.importance} "
        f"importance on {format_quantity(record.calibration_tokens)} tokens; "
        f"{format_quantity(after.forward_flops_per_token)} forward FLOPs per token at {record.seq_len}",
        highlight=False)
    return 0


# The tokenizer is the teacher's; the teacher is the argument.
prune_command = with_config_options(
    prune_command, PruneConfig, json_help="print prune.json instead of a summary",
    leave_out=frozenset({"vocab_size", "teacher", "unique_tokens"}),
    arguments={"teacher": "a finished `distillscale train` run, or a Llama/Qwen3 Hugging Face directory"})
