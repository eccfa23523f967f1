"""`distillscale serve`: the interactive planner page on a local web server; `distillscale
serve-teacher`: a teacher's log-probabilities over an OpenAI-compatible completions endpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from distillscale.console import console
from distillscale.laws.lawset import LAW_HELP


def serve_command(
    law: list[str] = typer.Option([], "--law", help=f"{LAW_HELP} to offer beside the presets "
                                                    "(repeatable; the first is selected)"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="port to listen on (0: any free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
) -> None:
    """Start the interactive planner page: move the budget, student, scenario and teacher, and see
    the plan, the U-curve, loss against compute and the FLOP split update."""
    from distillscale.serve.api import Planner
    from distillscale.serve.server import make_server

    server = make_server(Planner(law), host, port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    console.print(f"planner page at {address} (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    _serve_until_interrupted(server)


def serve_teacher_command(
    teacher: Path = typer.Argument(..., help="a finished `distillscale train` run directory, or a local Hugging "
                                             "Face causal-LM directory"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="port to listen on (0: any free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
    top_k: int = typer.Option(20, "--top-k", min=1, help="the most log-probabilities a request may ask for per "
                                                         "position (vLLM's --max-logprobs)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                           help="let a Hugging Face teacher run its own model code"),
) -> None:
    """Serve a teacher over the OpenAI-compatible completions API, as vLLM serves one: POST
    /v1/completions with token-id prompts, "echo": true, "max_tokens": 0 and "logprobs": K answers
    each position's top-K log-probabilities (tokens as "token_id:<id>" when asked with
    "return_tokens_as_token_ids": true); GET /v1/models names the model. `distill --teacher-url`
    reads it. It scores prompts and never generates."""
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"{device!r} is not a device: use auto, cpu or cuda", param_hint="--device")
    from distillscale.serve.teacher import TeacherService, make_teacher_server
    from distillscale.training.distributed import resolve_device

    service = TeacherService(teacher, top_k, resolve_device(device), trust_remote_code)
    server = make_teacher_server(service, host, port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}/v1"
    console.print(f"teacher {service.name} at {address} (model {service.name!r}, top-{top_k} log-probabilities; "
                  f"Ctrl-C to stop)", highlight=False, soft_wrap=True)
    _serve_until_interrupted(server)


def _serve_until_interrupted(server) -> None:
    """Serve until Ctrl-C, then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
