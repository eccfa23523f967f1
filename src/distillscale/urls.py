"""A URL as the user gave it: whether a value is one (`is_url`), and how a message or a record may
show it (`redacted_url`: never with its credentials)."""

from __future__ import annotations

import re


def is_url(value: object) -> bool:
    """Whether a value was given as a server's URL (http:// or https://), not a path."""
    return str(value).startswith(("http://", "https://"))


def redacted_url(url: str) -> str:
    """`url` as a message or a record may show it: the user name and password of its authority (all
    before its last @) replaced by *** (https://user:secret@host/v1 -> https://***@host/v1), also in
    text that does not parse as a URL."""
    return re.sub(r"(^|//|\s)[^/\s]*@", r"\1***@", url)
