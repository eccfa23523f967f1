"""`distillscale eval RUN_OR_HF_DIR --tasks T1,T2`: a model's lm-eval-harness scores, as eval.json
beside the run's result.json (training/lm_eval_run.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import Table, console, print_json


class EvalSettings(CommandSettings):
    """`distillscale eval`."""

    command_path: ClassVar[str] = "eval"

    model_dir: Path = argument(help="a finished `distillscale train`/`distill` run (exported to a temporary "
                                    "Hugging Face directory first) or a Hugging Face model directory")
    tasks: str = option(..., help="lm-eval task names separated by commas, e.g. arc_easy,hellaswag (local ones "
                                  "from --include-path too)")
    limit: int | None = option(None, min=1, help="score only the first N examples of each task (a quick check; "
                                                 "the scores are then not the benchmark's)")
    batch_size: int = option(1, min=1, help="examples per forward pass")
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="auto, cpu or cuda")
    include_path: Path | None = option(None, help="a directory of lm-eval task YAML files (your own tasks, "
                                                  "offline), lm-eval's --include_path")
    out: Path | None = option(None, help="where to write the scores (default: eval.json in the model directory)")
    overwrite: bool = option(False, help="replace an eval.json written by an earlier `distillscale eval`")
    as_json: bool = option(False, flag="--json", help="print JSON")


@command(EvalSettings)
def eval_command(s: EvalSettings) -> None:
    """Score a run or a Hugging Face model on lm-eval-harness tasks (the eval extra), in this process.

    The scores are those `lm_eval --model hf --model_args pretrained=DIR` gives for the exported model. eval.json holds, per task and metric: the value, its standard error, the examples scored, the lm-eval version and a hash of the task's config.
    """
    from distillscale.io import atomic_write_json, check_output_file
    from distillscale.training.distributed import resolve_device
    from distillscale.training.lm_eval_run import (
        check_model_dir,
        default_output,
        is_eval_file,
        parse_tasks,
        run_lm_eval,
    )

    tasks = parse_tasks(s.tasks)
    import lm_eval  # noqa: F401  (the eval extra: named in one line before any work when missing)

    check_model_dir(s.model_dir)
    out = check_output_file(s.out or default_output(s.model_dir), overwrite=s.overwrite, is_ours=is_eval_file,
                            inputs=[s.model_dir], what="file written by `distillscale eval`")
    record = run_lm_eval(s.model_dir, tasks, limit=s.limit, batch_size=s.batch_size,
                         device=resolve_device(s.device).type, include_path=s.include_path)
    atomic_write_json(out, record.to_json())
    if s.as_json:
        print_json(record.to_json())
        return
    table = Table(title=f"lm-eval {record.lm_eval_version} on {s.model_dir} (written to {out})")
    for column in ("task", "metric", "value", "stderr", "n"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for score in record.scores:
        stderr = "-" if score.stderr is None else f"{score.stderr:.4f}"
        table.add_row(score.task, score.metric, f"{score.value:.4f}", stderr, str(score.n))
    console.print(table)
