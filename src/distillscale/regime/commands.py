"""`distillscale experiment large-batch`: reproduce Hoffer et al. 2017 on MNIST-1D."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import typer
from pydantic import model_validator

from distillscale.cli_options import CommandSettings, command, option
from distillscale.console import Table, console, err_console, print_json
from distillscale.errors import UserError

if TYPE_CHECKING:
    from distillscale.regime.experiment import LargeBatchResult, RegimeRun

experiment_app = typer.Typer(help="Reproduction experiments that check the science on real data.",
                             no_args_is_help=True)


def parse_milestones(text: str) -> tuple[float, ...]:
    """'10,15' -> (10.0, 15.0); '' -> no milestones."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"malformed --milestones {text!r}: give epochs separated by commas, "
                        f"e.g. 10,15") from None


def prepare_out_dir(out: Path, overwrite: bool) -> Path:
    """Refuse a directory that is not an experiment's, and an earlier experiment unless asked to;
    return the results path."""
    from distillscale.io import check_output_dir

    check_output_dir(out, is_ours=lambda path: (path / "results.json").is_file(),
                     what="large-batch experiment directory")
    results = out / "results.json"
    if results.exists() and not overwrite:
        raise UserError(f"{results} already exists: pass --overwrite to replace it, "
                        f"or choose another --out")
    return results


class LargeBatchSettings(CommandSettings):
    """`distillscale experiment large-batch`."""

    command_path: ClassVar[str] = "experiment large-batch"

    small_batch: int = option(32, help="batch size of the reference run")
    large_batch: int = option(512, help="batch size of the large-batch runs")
    ghost_batch: int | None = option(None, help="Ghost BN batch size (default: the small batch size)")
    epochs: int = option(20, help="epochs of the small-batch run")
    milestones: str = option("10,15", help="epochs at which the LR is divided by 10, e.g. 10,15")
    lr: float = option(0.05, help="learning rate of the small-batch run")
    weight_decay: float = option(5e-4, help="SGD weight decay")
    seeds: int = option(3, help="runs per regime (seeds 0..N-1)")
    num_samples: int = option(5120, help="MNIST-1D samples generated (80% train, 20% test)")
    channels: int = option(16, help="convolution channels of the classifier")
    threads: int = option(1, help="torch CPU threads; one is fastest for these small models on a busy machine")
    out: Path = option(Path("runs/large-batch"), help="directory for results.json and the weight-distance plot")
    plot_format: str = option("png", help="png or svg")
    overwrite: bool = option(False, help="replace results already in --out")
    as_json: bool = option(False, flag="--json", help="print the results as JSON")

    @model_validator(mode="after")
    def _checked(self) -> "LargeBatchSettings":
        if self.plot_format not in ("png", "svg"):
            raise UserError(f"unknown --plot-format {self.plot_format!r}: use png or svg")
        if self.threads < 1:
            raise UserError(f"--threads must be a positive integer, got {self.threads}")
        return self


@experiment_app.command("large-batch")
@command(LargeBatchSettings)
def large_batch_command(s: LargeBatchSettings) -> None:
    """Train a BatchNorm CNN on MNIST-1D in five regimes (SB, LB, +sqrt LR, +Ghost BN, +regime
    adaptation) and report test accuracy and the weight distance vs log(updates)."""
    from distillscale.io import atomic_write_json
    from distillscale.regime.experiment import plot_weight_distance, run_large_batch_experiment

    config = _experiment_config(s)
    results_path = prepare_out_dir(s.out, s.overwrite)
    plot_path = s.out / f"weight_distance.{s.plot_format}"
    result = run_large_batch_experiment(config, on_run=_print_run)
    record = {**result.to_dict(), "files": {"results": str(results_path), "plot": str(plot_path)}}
    plot_weight_distance(result, plot_path)
    atomic_write_json(results_path, record)
    if s.as_json:
        print_json(record)
        return
    console.print(results_table(result))
    console.print(record["verdict"]["text"])
    console.print(f"results: {results_path}\nplot: {plot_path}")


def _experiment_config(s: LargeBatchSettings):
    """The experiment's settings from the flags; torch's threads set to --threads."""
    import torch

    from distillscale.regime.experiment import LargeBatchConfig

    torch.set_num_threads(s.threads)
    return LargeBatchConfig(milestones=parse_milestones(s.milestones), **s.model_dump(include={
        "small_batch", "large_batch", "ghost_batch", "epochs", "lr", "weight_decay", "seeds", "num_samples", "channels"}))


def _print_run(run: RegimeRun) -> None:
    err_console.print(f"{run.regime:>4} seed {run.seed}: test accuracy {100 * run.test_accuracy:.1f}% after "
                      f"{run.updates} updates ({run.seconds:.1f} s)", highlight=False)


def results_table(result: LargeBatchResult) -> Table:
    config = result.config
    table = Table(title=f"Large-batch training, MNIST-1D, {config.seeds} seed(s), "
                        f"{result.seconds:.0f} s",
                  caption="SB small batch; LB large batch; each row below adds one remedy: "
                          "+LR sqrt LR scaling, +GBN Ghost BN, +RA regime adaptation")
    for column in ("regime", "batch", "LR", "epochs", "updates", "test acc. (± std)", "vs SB",
                   "train acc."):
        table.add_column(column, justify="left" if column == "regime" else "right")
    reference = result.summaries[0].test_accuracy_mean
    for summary in result.summaries:
        regime = summary.regime
        table.add_row(regime.name, str(regime.batch_size), f"{regime.lr:.3g}", f"{regime.epochs:g}",
                      str(summary.updates),
                      f"{100 * summary.test_accuracy_mean:.1f} ± {100 * summary.test_accuracy_std:.1f}%",
                      f"{100 * (summary.test_accuracy_mean - reference):+.1f}",
                      f"{100 * summary.train_accuracy_mean:.1f}%")
    return table
