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
    """Whether a value was given as a server's URL (http:// or https://, in any case, spaces around it
    ignored), not a path."""
    return str(value).strip().lower().startswith(("http://", "https://"))


def misspelled_url(value: object) -> bool:
    """Whether a value meant as a server's URL is not one: a scheme and a slash (http:/host, htp://host,
    ftp://host/v1) where no such path exists. A message then blames the value, not a flag that needs a
    URL beside it (--teacher-timeout)."""
    text = str(value).strip()
    return (not is_url(text) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", text) is not None
            and not os.path.lexists(os.path.expanduser(text)))


# A scheme and the slashes after it (http://, ws://, http:/): what a redaction keeps before the ***.
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*:/+"
PLACEHOLDER = "USER:PASSWORD"   # what a message shows where the user's go (http(s)://USER:PASSWORD@HOST/v1)


# Query parameters whose value is a secret (an API key, a token, a password, a signed URL's
# signature): shown and stored as ***, as a user:password@ is (`?api_key=sk-1` -> `?api_key=***`).
_SECRET_PARAMETERS = (r"(?:api[_-]?key|apikey|key|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|"
                      r"token|password|passwd|pwd|pass|secret|client[_-]?secret|sig|signature|auth|authorization|"
                      r"credentials?|session[_-]?token|x-amz-signature|x-amz-credential|x-amz-security-token|"
                      r"x-goog-signature|x-goog-credential|code)")
_SECRET_QUERY = re.compile(rf"([?&;]{_SECRET_PARAMETERS}=)[^&#;\s'\"]*?(?=[&#;\s'\"),]|:(?:\s|$)|$)",
                           re.IGNORECASE)


def _query_redacted(text: str) -> str:
    """`text` with the value of every secret query parameter (`_SECRET_PARAMETERS`) as ***."""
    return _SECRET_QUERY.sub(r"\1***", text)


def redacted_url(url: str) -> str:
    """A value the user gave (a URL, or anything else) as a message, a record or a cache may show it:
    every secret query parameter's value (?api_key=, token=, sig= ...) and whatever stands between its
    scheme's slashes and its LAST @ replaced by *** (a password with a
    space or an unencoded / is hidden whole: https://user:pa/ss@host/v1 -> https://***@host/v1); a
    value without a scheme but with a user:password@ (http:alice:pw@host) from its start. A path with
    an @ and no colon before it (model@v2) is left as written."""
    text = _query_redacted(str(url))
    at = text.rfind("@")
    if at < 0:
        return text
    scheme = re.match(r"\s*" + _SCHEME, text)
    if scheme is not None and scheme.end() <= at:
        return f"{text[:scheme.end()]}***{text[at:]}"
    return f"***{text[at:]}" if ":" in text[:at] else text


def redacted_text(text: str) -> str:
    """Free text (a message, a warning, a line of JSON) with every secret query parameter's value and
    every user:password@ in it replaced by ***: after any scheme's slashes up to the @ (a password with spaces too, up to the last @ before a
    / on its line), and in any word with a colon before its last @ (a password with a /, a URL taken as
    a path: ws:/alice:pw@host, http:alice:pw@host) up to that @. Other words with an @ (a path, an
    address) are left as written, and so is the PLACEHOLDER of a message's example."""
    text = re.sub(f"({_SCHEME})(?!{PLACEHOLDER}@)[^/\n]*@", r"\1***@", _query_redacted(str(text)))
    return re.sub(r"\S+@\S*", _redacted_word, text)


def _redacted_word(match: re.Match) -> str:
    word = match.group(0)
    at = word.rfind("@")
    schemes = [found.end() for found in re.finditer(_SCHEME, word[:at])]
    start = schemes[-1] if schemes else len(word) - len(word.lstrip("'\"([<{`"))
    if re.fullmatch(rf"([\w()]*://)?{PLACEHOLDER}", word[start:at]) or (not schemes and ":" not in word[:at]):
        return word
    return f"{word[:start]}***{word[at:]}"


def redacted_value(value):
    """A value of a record or a setting as its repr may show it: a string or path through
    `redacted_url`, a list or tuple item by item; anything else as it is."""
    if isinstance(value, (list, tuple)):
        return type(value)(redacted_value(item) for item in value)
    if isinstance(value, (str, os.PathLike)) and ("@" in str(value) or _SECRET_QUERY.search(str(value))):
        shown = redacted_url(str(value))
        return value if shown == str(value) else shown
    return value


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
