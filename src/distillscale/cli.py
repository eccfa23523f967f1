"""The `distillscale` command. Each layer defines its commands in its own `commands` module;
this file only assembles them and turns `UserError` into one line and exit status 2."""

from __future__ import annotations

import sys

import click
import typer

from distillscale.data.commands import data_app
from distillscale.errors import UserError
from distillscale.laws.commands import fit_app, predict_app
from distillscale.model.commands import export_hf_command
from distillscale.planning.commands import (
    capacity_gap_command,
    distill_map_command,
    plan_command,
    teacher_command,
)
from distillscale.regime.commands import experiment_app
from distillscale.report.commands import demo_command, report_command
from distillscale.sweeps.commands import sweep_app
from distillscale.training.commands import train_command
from distillscale.training.distill_command import distill_command
from distillscale.training.logit_cache.commands import cache_logits_command

app = typer.Typer(
    name="distillscale",
    help="Plan and run knowledge distillation of language models with scaling laws.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(predict_app, name="predict")
app.add_typer(fit_app, name="fit")
app.add_typer(data_app, name="data")
app.add_typer(sweep_app, name="sweep")
app.add_typer(experiment_app, name="experiment")
app.command("plan")(plan_command)
app.command("distill-map")(distill_map_command)
app.command("teacher")(teacher_command)
app.command("capacity-gap")(capacity_gap_command)
app.command("train")(train_command)
app.command("distill")(distill_command)
app.command("cache-logits")(cache_logits_command)
app.command("export-hf")(export_hf_command)
app.command("report")(report_command)
app.command("demo")(demo_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (tests call this directly)."""
    try:
        result = app(args=argv, prog_name="distillscale", standalone_mode=False)
    except UserError as exc:
        print(f"distillscale: error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        print("distillscale: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("distillscale: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":  # `torchrun ... -m distillscale.cli train ...`
    run()
