"""`distillscale serve`: the interactive planner page on a local web server; `distillscale
serve-teacher`: a teacher's log-probabilities over an OpenAI-compatible completions endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import console
from distillscale.errors import UserError
from distillscale.laws.lawset import LAW_HELP, NO_BIAS_CORRECTION_HELP
from distillscale.planning.downstream import DOWNSTREAM_LAW_HELP


PORT_HELP = "port to listen on (0: any free one)"
HOST_HELP = "address to bind (default: this machine only)"


class ServeSettings(CommandSettings):
    """`distillscale serve`."""

    command_path: ClassVar[str] = "serve"

    law: list[str] = option([], help=f"{LAW_HELP} to offer beside the presets (repeatable; the first is selected)")
    downstream_law: Path | None = option(None, help=DOWNSTREAM_LAW_HELP)
    hyperparameter_law: list[str] = option([], help="a hyperparameter law file (`distillscale fit hyperparameters "
                                                    "--out`) to offer beside the presets for each run's lr and batch "
                                                    "(repeatable; the first is selected)")
    teacher_model: list[Path] = option([], help="a teacher's directory (a run, or a Hugging Face causal LM with its "
                                                "tokenizer) to offer as the existing teacher, planned as `plan "
                                                "--teacher-model` plans it (repeatable)")
    trust_remote_code: bool = option(False, help="let a --teacher-model run its own code to be counted")
    port: int = option(8765, min=0, max=65535, help=PORT_HELP)
    host: str = option("127.0.0.1", help=HOST_HELP)
    no_bias_correction: bool = option(False, help=NO_BIAS_CORRECTION_HELP)


@command(ServeSettings)
def serve_command(s: ServeSettings) -> None:
    """Start the interactive planner page: move the budget, student, scenario and teacher, and see
    the plan, the U-curve, loss against compute and the FLOP split update."""
    from distillscale.serve.api import Planner
    from distillscale.serve.server import make_server

    server = make_server(Planner(s.law, s.downstream_law, s.hyperparameter_law,
                                 bias_correction=not s.no_bias_correction, teacher_models=s.teacher_model,
                                 trust_remote_code=s.trust_remote_code), s.host, s.port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    console.print(f"planner page at {address} (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    _serve_until_interrupted(server)


def _device(value: object) -> object:
    if value not in ("auto", "cpu", "cuda"):
        raise UserError(f"Invalid value for --device: {value!r} is not a device: use auto, cpu or cuda "
                        "(see: distillscale serve-teacher --help)")
    return value


class ServeTeacherSettings(CommandSettings):
    """`distillscale serve-teacher`."""

    command_path: ClassVar[str] = "serve-teacher"

    teacher: Path = argument(help="a finished `distillscale train` run directory, or a local Hugging Face "
                                  "causal-LM directory")
    port: int = option(8000, min=0, max=65535, help=PORT_HELP)
    host: str = option("127.0.0.1", help=HOST_HELP)
    top_k: int = option(20, min=1, help="the most log-probabilities a request may ask for per position "
                                        "(vLLM's --max-logprobs)")
    device: Annotated[str, AfterValidator(_device)] = option("auto", help="auto, cpu or cuda")
    trust_remote_code: bool = option(False, help="let a Hugging Face teacher run its own model code")


@command(ServeTeacherSettings)
def serve_teacher_command(s: ServeTeacherSettings) -> None:
    """Serve a teacher over the OpenAI-compatible completions API, as vLLM serves one: POST
    /v1/completions with token-id prompts, "echo": true, "max_tokens": 0 and "logprobs": K answers
    each position's top-K log-probabilities (tokens as "token_id:<id>" when asked with
    "return_tokens_as_token_ids": true); GET /v1/models names the model. `distill --teacher-url`
    reads it. It scores prompts and never generates."""
    from distillscale.serve.teacher import TeacherService, make_teacher_server
    from distillscale.training.distributed import resolve_device

    service = TeacherService(s.teacher, s.top_k, resolve_device(s.device), s.trust_remote_code)
    server = make_teacher_server(service, s.host, s.port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}/v1"
    console.print(f"teacher {service.name} at {address} (model {service.name!r}, top-{s.top_k} "
                  f"log-probabilities; Ctrl-C to stop)", highlight=False, soft_wrap=True)
    _serve_until_interrupted(server)


def _serve_until_interrupted(server) -> None:
    """Serve until Ctrl-C, then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
