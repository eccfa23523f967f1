"""A URL as the user gave it: whether a value is one (`is_url`), and how a message or a record may
show it (`redacted_url`; `redacted_text` for every URL in a message: never with its credentials). A
child process is given a credentialed URL outside its argument list (`for_child`, `restored`):
`ps` shows a process's arguments to every user of the machine."""

from __future__ import annotations

import os
import re

# Credentialed URLs handed to a child process: its arguments are the redacted URLs, this variable the
# whole ones, one per line (`for_child`, `for_child_argv`, `restored`).
SERVER_URL_ENV = "DISTILLSCALE_SERVER_URL"


def is_url(value: object) -> bool:
    """Whether a value was given as a server's URL (http:// or https://, in any case), not a path."""
    return str(value).lower().startswith(("http://", "https://"))


def redacted_url(url: str) -> str:
    """`url` as a message or a record may show it: the user name and password of its authority (all
    before its last @ ahead of the path, spaces and all) replaced by *** (https://user:secret@host/v1 ->
    https://***@host/v1), also in text that does not parse as a URL."""
    if is_url(url):
        scheme, rest = url.split("://", 1)
        authority, slash, path = rest.partition("/")
        return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}" if "@" in authority else url
    return re.sub(r"(^|//|\s)[^/\s]*@", r"\1***@", url)


def redacted_text(text: str) -> str:
    """Free text (a message) with the credentials of every http(s) URL in it (any case; a password with
    spaces too, up to the last @ before the path on its line) replaced by ***; other words with an @ (a
    path, an address) left as written."""
    return re.sub(r"(https?://)[^/\n]*@", r"\1***@", text, flags=re.IGNORECASE)


def has_credentials(url: str) -> bool:
    return redacted_url(url) != url


def for_child(url: str) -> tuple[str, dict[str, str]]:
    """(`url` as a child process's argument: redacted, the environment entries that carry it whole
    to the child: {} for a URL without credentials). The child restores it with `restored`."""
    (argument,), environment = for_child_argv([url])
    return argument, environment


def for_child_argv(argv: list[str] | tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """`argv` with every credentialed URL redacted (an argument, or the value of `--flag=URL`), and the
    environment entries that carry them whole to the child ({} when none has credentials). Two
    credentialed URLs that redact alike (one server, two users) cannot be told apart there: refused."""
    args, whole = [], {}
    for arg in argv:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if is_url(value) and has_credentials(value):
            shown = redacted_url(value)
            if whole.get(shown, value) != value:
                raise ValueError(f"two URLs with different credentials for {shown}: a child process cannot be "
                                 f"given both; give the server once")
            whole[shown] = value
            arg = f"{flag}{eq}{shown}"
        args.append(arg)
    return args, ({SERVER_URL_ENV: "\n".join(whole.values())} if whole else {})


def restored(url: str) -> str:
    """A URL given as `for_child` or `for_child_argv` made it: whole again from the environment where
    a URL there redacts to it (the same scheme, host, port and path); else `url` as given."""
    if not is_url(url):
        return url
    for whole in os.environ.get(SERVER_URL_ENV, "").splitlines():
        if whole != url and redacted_url(whole) == url:
            return whole
    return url
