"""How a teacher is named on the command line: `--teacher NAME=PATH` (a mixture's named teacher) and
`--teacher-url` (a server's /v1 base, and the URL as messages and records may show it)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path


def teacher_name(path: Path) -> str | None:
    """The NAME of a --teacher given as NAME=PATH (a word of letters, digits, _ or -), else None."""
    match = re.fullmatch(r"([A-Za-z0-9_-]+)=(.+)", str(path))
    return match.group(1) if match else None


def teacher_location(path: Path | None) -> Path | None:
    """The PATH of a --teacher given as NAME=PATH, or `path` itself."""
    if path is None:
        return None
    match = re.fullmatch(r"([A-Za-z0-9_-]+)=(.+)", str(path))
    return Path(match.group(2)) if match else path


def teacher_api_base(url: str) -> str:
    """The server's `/v1` base from what the user gave (the server, its /v1, or its /v1/completions);
    ValueError for anything that is not an http(s) URL with a host."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{redacted_url(url)!r} is not an http(s) URL of a server: give e.g. "
                         f"http://127.0.0.1:8000/v1")
    try:
        parsed.port  # noqa: B018 (raises for a port out of range or not a number)
    except ValueError:
        raise ValueError(f"{redacted_url(url)!r} has no valid port: give e.g. http://127.0.0.1:8000/v1") from None
    path = parsed.path.rstrip("/")
    for suffix in ("/completions", "/models"):
        path = path.removesuffix(suffix)
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def redacted_url(url: str) -> str:
    """`url` as a message or a record may show it: the user name and password of its authority (all
    before its last @) replaced by *** (https://user:secret@host/v1 -> https://***@host/v1), also in
    text that does not parse as a URL."""
    return re.sub(r"(^|//|\s)[^/\s]*@", r"\1***@", url)
