"""`distillscale experiment large-batch`: reproduce Hoffer et al. 2017 on MNIST-1D."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from distillscale.console import Table, console, err_console, print_json
from distillscale.errors import UserError

if TYPE_CHECKING:
    from distillscale.regime.experiment import LargeBatchResult, RunResult

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


@experiment_app.command("large-batch")
def large_batch_command(
    small_batch: int = typer.Option(32, "--small-batch", help="batch size of the reference run"),
    large_batch: int = typer.Option(512, "--large-batch", help="batch size of the large-batch runs"),
    ghost_batch: int | None = typer.Option(
        None, "--ghost-batch", help="Ghost BN batch size (default: the small batch size)"),
    epochs: int = typer.Option(20, "--epochs", help="epochs of the small-batch run"),
    milestones: str = typer.Option("10,15", "--milestones",
                                   help="epochs at which the LR is divided by 10, e.g. 10,15"),
    lr: float = typer.Option(0.05, "--lr", help="learning rate of the small-batch run"),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", help="SGD weight decay"),
    seeds: int = typer.Option(3, "--seeds", help="runs per regime (seeds 0..N-1)"),
    num_samples: int = typer.Option(5120, "--num-samples",
                                    help="MNIST-1D samples generated (80% train, 20% test)"),
    channels: int = typer.Option(16, "--channels", help="convolution channels of the classifier"),
    threads: int = typer.Option(1, "--threads",
                                help="torch CPU threads; one is fastest for these small models "
                                     "on a busy machine"),
    out: Path = typer.Option(Path("runs/large-batch"), "--out",
                             help="directory for results.json and the weight-distance plot"),
    plot_format: str = typer.Option("png", "--plot-format", help="png or svg"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace results already in --out"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Train a BatchNorm CNN on MNIST-1D in five regimes (SB, LB, +sqrt LR, +Ghost BN, +regime
    adaptation) and report test accuracy and the weight distance vs log(updates)."""
    from distillscale.io import atomic_write_json
    from distillscale.regime.experiment import (LargeBatchConfig, plot_weight_distance,
                                                run_large_batch_experiment)

    if plot_format not in ("png", "svg"):
        raise UserError(f"unknown --plot-format {plot_format!r}: use png or svg")
    if threads < 1:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    config = LargeBatchConfig(
        small_batch=small_batch, large_batch=large_batch, ghost_batch=ghost_batch, epochs=epochs,
        milestones=parse_milestones(milestones), lr=lr, weight_decay=weight_decay, seeds=seeds,
        num_samples=num_samples, channels=channels)
    results_path = prepare_out_dir(out, overwrite)
    plot_path = out / f"weight_distance.{plot_format}"

    import torch

    torch.set_num_threads(threads)

    def report(run: RunResult) -> None:
        err_console.print(f"{run.regime:>4} seed {run.seed}: test accuracy "
                          f"{100 * run.test_accuracy:.1f}% after {run.updates} updates "
                          f"({run.seconds:.1f} s)", highlight=False)

    result = run_large_batch_experiment(config, on_run=report)
    record = {**result.to_dict(), "files": {"results": str(results_path), "plot": str(plot_path)}}
    plot_weight_distance(result, plot_path)
    atomic_write_json(results_path, record)

    if as_json:
        print_json(record)
        return
    console.print(results_table(result))
    console.print(record["verdict"]["text"])
    console.print(f"results: {results_path}\nplot: {plot_path}")


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
