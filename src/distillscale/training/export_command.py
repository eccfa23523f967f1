"""`distillscale export-hf RUN_DIR OUT_DIR`: hand a trained model to the Hugging Face ecosystem.

Here rather than in model/ (where the export itself is) because a run's completeness is the run
directory's to say: a run that did not finish is refused, as `distill --teacher` refuses it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import Table, console, print_json
from distillscale.units import format_quantity


class ExportSettings(CommandSettings):
    """`distillscale export-hf`."""

    command_path: ClassVar[str] = "export-hf"

    run_dir: Path = argument(help="run directory (model.safetensors, model_config.json, tokenizer.json)")
    out_dir: Path = argument(help="directory to write the Hugging Face model and tokenizer to")
    overwrite: bool = option(False, help="replace the files of an earlier export in OUT_DIR (files you added there "
                                         "stay; a directory that is not an export is never written into)")
    as_json: bool = option(False, flag="--json", help="print JSON")


@command(ExportSettings)
def export_hf_command(s: ExportSettings) -> None:
    """Export a trained model as a directory that AutoModelForCausalLM and AutoTokenizer load."""
    from distillscale.model.hf_export import export_hf
    from distillscale.training.run_dir import completed_result, is_run_dir

    if s.run_dir.is_dir() and is_run_dir(s.run_dir):  # a model saved by save_pretrained alone has no result
        completed_result(s.run_dir, "run", then=", then export it")

    summary = export_hf(s.run_dir, s.out_dir, overwrite=s.overwrite)
    if s.as_json:
        print_json(summary)
        return
    table = Table(title=f"Exported {s.run_dir} to {s.out_dir}", show_header=False)
    table.add_row("architecture", summary["architecture"])
    table.add_row("non-embedding parameters", format_quantity(summary["non_embedding_params"]))
    table.add_row("total parameters", format_quantity(summary["total_params"]))
    table.add_row("vocabulary", f"{summary['vocab_size']} tokens (eos {summary['eos_token']})")
    table.add_row("tied embeddings", "yes" if summary["tie_word_embeddings"] else "no")
    console.print(table)
