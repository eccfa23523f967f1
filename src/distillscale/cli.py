"""The `distillscale` command. Each layer defines its commands in its own `commands` module;
this file only assembles them and turns bad input (`UserError` and click's usage errors) into one
line on stderr and exit status 2."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from importlib.metadata import PackageNotFoundError, version

import typer

try:  # typer >= 0.22 bundles its own copy of click and raises that copy's exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer uses click itself
    from click import exceptions as click_exceptions

from distillscale.cli_options import is_path_parameter, version_option
from distillscale.console import visible
from distillscale.data.commands import data_app
from distillscale.errors import ParameterError, UserError
from distillscale.helptext import narrow_help, reflow_help
from distillscale.laws.commands import fit_app, predict_app
from distillscale.laws.hyperparameters.commands import fit_hyperparameters_command, predict_hyperparameters_command
from distillscale.planning.commands import (
    capacity_gap_command,
    distill_map_command,
    plan_command,
    teacher_command,
)
from distillscale.regime.commands import experiment_app
from distillscale.report.commands import demo_command, report_command
from distillscale.serve.commands import serve_command, serve_teacher_command
from distillscale.sweeps.commands import sweep_app
from distillscale.sweeps.ladder import ladder_command
from distillscale.sweeps.executors import WORKER_COMMAND, die_with_runner, serve_jobs
from distillscale.training.commands import train_command
from distillscale.training.distill_command import distill_command
from distillscale.evaluation.commands import eval_command, fit_downstream_command
from distillscale.evaluation.loss_command import loss_command
from distillscale.training.export_command import export_hf_command
from distillscale.training.prune_command import prune_command
from distillscale.training.logit_cache.commands import cache_logits_command
from distillscale.urls import redacted_text

narrow_help()  # --help stays readable at 80 columns
app = typer.Typer(
    name="distillscale",
    help="Plan and run knowledge distillation of language models with scaling laws.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _package_version() -> str:
    try:
        return version("distillscale")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        print(f"distillscale {_package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(version_flag: bool = version_option(_show_version)) -> None:
    """Plan and run knowledge distillation of language models with scaling laws."""


predict_app.command("hyperparameters")(predict_hyperparameters_command)
fit_app.command("hyperparameters")(fit_hyperparameters_command)
fit_app.command("downstream")(fit_downstream_command)
app.add_typer(predict_app, name="predict")
app.add_typer(fit_app, name="fit")
app.add_typer(data_app, name="data")
app.add_typer(sweep_app, name="sweep")
app.add_typer(experiment_app, name="experiment")
app.command("plan")(plan_command)
app.command("distill-map")(distill_map_command)
app.command("teacher")(teacher_command)
app.command("capacity-gap")(capacity_gap_command)
app.command("serve")(serve_command)
app.command("serve-teacher")(serve_teacher_command)
app.command("train")(train_command)
app.command("distill")(distill_command)
app.command("cache-logits")(cache_logits_command)
app.command("export-hf")(export_hf_command)
app.command("eval")(eval_command)
app.command("loss")(loss_command)
app.command("prune")(prune_command)
app.command("report")(report_command)
app.command("demo")(demo_command)
app.command("ladder")(ladder_command)


def _serve_sweep_jobs() -> int:
    """A local sweep's worker process (`distillscale --sweep-worker LOG_DIR`, started by the local
    executor, not a user's command): runs the commands it is sent, one after another, in this process
    (sweeps/executors.py), each corpus prepared once. LOG_DIR only names its sweep in ps."""
    from distillscale.data.prepare import reusing_prepared

    die_with_runner()
    with reusing_prepared():
        serve_jobs(_worker_run)
    return 0


def _worker_run(args: list[str]) -> int:
    """One run in a worker. torch.compile starts from an empty dynamo cache, as in a process of its own:
    a trunk compiled by an earlier run (its guards, shapes made dynamic by it, its recompile count)
    would give this run other kernels than a run launched alone. Inductor's caches (in memory and on
    disk) still make the compile warm. After the run, the GPU memory it left cached goes back to the
    device, as at a process's exit: runs of other workers may share the GPU."""
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()
    try:
        return main(args)
    finally:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            import gc

            gc.collect()
            torch.cuda.empty_cache()


# The optional extras (pyproject.toml [project.optional-dependencies]) and what each brings: a command
# that needs a missing one says which to install. torch and pandas come with both `fit` (the law
# fitter alone) and `engine` (training, which `demo` and sweeps fit too).
MODULE_EXTRAS = {"torch": "engine", "safetensors": "engine", "tokenizers": "engine", "transformers": "engine",
                 "filelock": "engine", "tomli_w": "engine", "pandas": "engine", "datasets": "hf-data",
                 "pyarrow": "hf-data", "matplotlib": "figures", "submitit": "slurm", "tensorboard": "tensorboard",
                 "mnist1d": "experiments", "lm_eval": "eval"}
FIT_COMMANDS = ("fit", "report")  # their torch and pandas: the `fit` extra


def _missing_extra(exc: ModuleNotFoundError, args: list[str]) -> str | None:
    """The one line for a module of an extra that is not installed (None: not one of theirs)."""
    module = (exc.name or "").split(".")[0]
    if module not in MODULE_EXTRAS:
        return None
    command = " ".join(_command_path(args))
    extra = "fit" if command.split(" ")[0] in FIT_COMMANDS and module in ("torch", "pandas") else MODULE_EXTRAS[module]
    return (f"`distillscale {command}` needs {module}, which is not installed: install the {extra} extra, "
            f"pip install 'distillscale[{extra}]' (or 'distillscale[all]')")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (tests call this directly)."""
    args = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    if args[:1] == [WORKER_COMMAND] and len(args) == 2:
        return _serve_sweep_jobs()
    die_with_runner()  # a run of a local sweep ends with its runner
    empty = _empty_path(args)
    if empty:
        return _fail(f"{empty} is empty: give a path (an empty value is often an unset shell variable; "
                     "write . for the current directory)")
    try:
        # The command tree is built once per process (typer rebuilds it on every `app(...)`: 0.1-0.5 s
        # of signature parsing per call, which in-process callers such as the tests paid each time).
        result = _command_tree().main(args=args, prog_name="distillscale", standalone_mode=False)
    except ParameterError as exc:  # a library call's argument: name the flag that gave it
        return _fail(exc.for_cli(_flags_of(args, exc.params)))
    except UserError as exc:
        return _fail(str(exc))
    except click_exceptions.NoArgsIsHelpError as exc:
        # `distillscale` or `distillscale fit` alone asks for help, which is not an error.
        print(exc.format_message())
        return 0
    except click_exceptions.UsageError as exc:
        return _fail(_usage_error_message(exc))
    except click_exceptions.ClickException as exc:  # e.g. a file click could not open
        return _fail(exc.format_message())
    except ModuleNotFoundError as exc:  # the core install: a command of an extra not installed
        message = _missing_extra(exc, args)
        if message is None:
            raise
        return _fail(message)
    except PermissionError as exc:   # an unreadable input or an unwritable output, said as every refusal is
        return _fail(_permission_message(exc))
    except typer.Exit as exc:
        return _interrupted(args) if exc.exit_code == INTERRUPTED else exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted(args)
    # In-process, typer turns Ctrl-C (KeyboardInterrupt) into the returned status 130.
    code = result if isinstance(result, int) else 0
    return _interrupted(args) if code == INTERRUPTED else code


def _permission_message(exc: PermissionError) -> str:
    """A file or directory this user may not read or write, in one line: which, and how to go on. Where a
    directory on the way may not be opened, that directory (not a file inside it, which may not exist)."""
    if exc.filename is None:
        where = "a file"
    else:
        blocked = _closed_directory(Path(exc.filename))
        if blocked is not None:
            return (f"permission denied on the directory {blocked}: this user may not open it; make it readable "
                    "(chmod u+rx), or give another path")
        where = exc.filename
    return (f"permission denied on {where}: this user may not read or write it (or the directory holding it); "
            "make it readable (or writable), or give another path")


def _closed_directory(path: Path) -> Path | None:
    """The directory on the way to `path` this user may not enter (None: the way is open, or `path` is
    not there at all): the nearest one reached."""
    try:
        os.stat(path)
    except PermissionError:
        return next((parent for parent in path.parents if _reached(parent)), None)
    except OSError:
        return None
    return None


def _reached(path: Path) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


@functools.cache
def _command_tree():
    tree = typer.main.get_command(app)
    reflow_help(tree)
    return tree


def _command_path(argv: list[str]) -> list[str]:
    """The names of the command (and subcommand) that `argv` runs: ["fit", "supervised"]."""
    command, path = _command_tree(), []
    for arg in argv:
        if not (hasattr(command, "commands") and arg in command.commands):
            break
        command = command.commands[arg]
        path.append(arg)
    return path


def _flags_of(argv: list[str], params: tuple[str, ...]) -> dict[str, str]:
    """How a library error names its parameters on this command line: each as its flag where the
    command has one (`unique_tokens` -> --unique-tokens), else as the library calls it, never as a
    flag the command does not have (`L_T` is no --L-T)."""
    command = _command_tree()
    for name in _command_path(argv):
        command = command.commands[name]
    options = {opt for param in getattr(command, "params", []) for opt in param.opts}
    flags = {}
    for param in params:
        flag = "--" + param.replace("_", "-").replace(".", "-")
        flags[param] = flag if flag in options else param
    return flags


def _empty_path(argv: list[str]) -> str | None:
    """The flag (or argument) of the command in `argv` that takes a path and is given as "": a path
    option would read it as the current directory."""
    command = _command_tree()
    args = list(argv)
    while args and hasattr(command, "commands") and args[0] in command.commands:
        command = command.commands[args.pop(0)]

    params = getattr(command, "params", [])
    path_options = {opt for param in params if is_path_parameter(param) and param.param_type_name == "option"
                    for opt in param.opts}
    takes_value = {opt for param in params if param.param_type_name == "option" and not param.is_flag
                   for opt in param.opts}
    path_arguments = [param.name.upper() for param in params
                      if is_path_parameter(param) and param.param_type_name == "argument"]
    for i, arg in enumerate(args):
        flag, equals, value = arg.partition("=")
        if equals and value == "" and flag in path_options:
            return flag
        if arg != "":
            continue
        before = args[i - 1] if i else ""
        if before in path_options:
            return before
        if before not in takes_value and path_arguments:
            return " or ".join(path_arguments)
    return None


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


# The commands that keep what they did as they go, so that running them again resumes.
RESUMING = {("train",), ("distill",), ("sweep", "run"), ("demo",), ("loss",), ("cache-logits",), ("prune",)}


def _interrupted(args: list[str] | None = None) -> int:
    """Ctrl-C: what was kept. A command that resumes says so, only as far as it kept something (a run's
    last checkpoint, a sweep's finished runs, a measurement's finished batches)."""
    path = tuple(_command_path(args or []))
    resumes = any(path[:len(command)] == command for command in RESUMING)
    print("distillscale: interrupted" + ("; run the same command again to go on from what it kept (its last "
                                         "checkpoint, finished runs or measured batches, if it got that far)"
                                         if resumes else ": nothing was kept"), file=sys.stderr)
    return INTERRUPTED


def _fail(message: str, code: int = 2) -> int:
    print(f"distillscale: error: {visible(redacted_text(' '.join(message.split())))}", file=sys.stderr)
    return code


def _usage_error_message(exc) -> str:
    """Click's usage error as one line: what is wrong, the closest valid name, where help is."""
    message = exc.message.rstrip(".")
    possibilities = getattr(exc, "possibilities", None)
    if possibilities:  # a misspelled option: click's close matches, the closest first
        message += f"; did you mean {possibilities[0]}?"
    elif hasattr(exc, "format_message"):
        message = exc.format_message().rstrip(".")
    if exc.ctx is not None:
        message += f" (see: {exc.ctx.command_path} --help)"
    return message


def run() -> None:
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A rank of a multi-process run (torchrun) ends here, its process group already destroyed: skip
        # the interpreter's teardown, where FSDP2 and Distributed Checkpoint on gloo (torch 2.13, CPU)
        # can leave a C++ thread that aborts the process ("terminate called without an active
        # exception", status -6) after a run that succeeded or refused cleanly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # `torchrun ... -m distillscale.cli train ...`
    run()
