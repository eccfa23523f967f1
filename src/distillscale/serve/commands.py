"""`distillscale serve`: the interactive planner page on a local web server."""

from __future__ import annotations

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
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
