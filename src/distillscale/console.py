"""Terminal output shared by all commands: rich consoles, JSON printing, warnings."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def printable(text: str) -> str:
    """User text made safe to print on a terminal: control characters (an ANSI escape sequence in a
    law's name or a file name, a NUL, a carriage return) are shown escaped (\\x1b), not acted on.
    Tabs and newlines stay."""
    return "".join(char if char in "\t\n" or not _is_control(char) else ascii(char)[1:-1] for char in text)


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=lambda o: o.tolist()) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {printable(message)}", highlight=False, soft_wrap=True)
