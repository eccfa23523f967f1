"""What a server says about the model it serves, and one JSON exchange with it: the model card of
`GET /v1/models` (vLLM's and `distillscale serve-teacher`'s; serve-teacher adds its own description,
`ServedCard`: the model's size, FLOPs per token and tokenizer), validated before anything uses it;
`served_model(url)` asks for it as the planner does for a teacher given as a URL, and the training
client (`training.remote_teacher.TeacherClient`) asks the same way: every request through `exchange`,
one policy of retries, each try's time and what it waits for said. A URL is taken as
given (`api_base`, `server_url`: the server, its /v1 base or an endpoint under it; anything else is
refused in one line), and every exchange is given its timeout in all, its whole answer included
(`request_json`: a server that trickles its answer is given up as a silent one is;
`model.teacher_limits` says how long and how many times).

A user name and password in the URL go as HTTP Basic authorization to that URL's origin (scheme, host
and port) only: a redirect elsewhere (another host or port, https to http) is followed without them
(urllib alone copies the header to wherever it is sent). Sent over plain http to a host that is not
this machine, they are said once first: anyone on the way can read them."""

from __future__ import annotations

import base64
import functools
import http.client
import ipaddress
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distillscale.errors import UserError
from distillscale.jsontext import json_text
from distillscale.model.teacher_limits import BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, RequestLimits, backoff_seconds
from distillscale.urls import redacted_url

MIN_PROMPT_TOKENS = 3  # the shortest window a run sends: seq_len 2, plus the token after it


class ServerError(Exception):
    """A failed exchange with the server; `retry` says whether trying again may help."""

    def __init__(self, message: str, retry: bool, spent: bool = False):
        super().__init__(message)
        self.retry, self.spent = retry, spent   # `spent`: every try of `exchange` failed


class ServedFlops(BaseModel):
    """A served teacher's forward FLOPs per token at context c: base + per_context_token x c."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    base: int = Field(ge=0)
    per_context_token: int = Field(ge=0)


class ServedCard(BaseModel):
    """distillscale's own description of a served model (the card's "distillscale" entry, which
    `serve-teacher` adds and vLLM does not), validated before anything uses it; entries it does not
    use are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    non_embedding_params: int | None = Field(None, ge=1)
    total_params: int | None = Field(None, ge=1)
    forward_flops_per_token: ServedFlops | None = None
    flops_method: str | None = None
    max_logprobs: int | None = Field(None, ge=1)
    vocab_size: int | None = Field(None, ge=1)
    tokenizer_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # of tokenizer.json as a whole
    tokenizer_identity: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # `TokenizerIdentity.sha256`
    tokenizer_parts: dict[str, str] | None = None  # `TokenizerIdentity.parts`

    def tokenizer_difference(self, corpus) -> str | None:
        """How the served tokenizer differs from a prepared corpus's (`corpus`: a PreparedData), naming
        what differs where the server says its parts (`serve-teacher` does); None: the same, or the
        server does not say (vLLM)."""
        from distillscale.data.loss_identity import corpus_tokenizer_identity, parts_differ

        identity = corpus_tokenizer_identity(corpus)
        if self.tokenizer_identity is not None:
            if self.tokenizer_identity == identity.sha256:
                return None
            differ = (parts_differ(identity.parts, self.tokenizer_parts) if self.tokenizer_parts and identity.parts
                      else None)
            if differ == []:  # the parts that decide ids agree (an identity of another version's parts)
                return None
            what = " and ".join(differ) if differ else "tokenizer"
            return f"another {what}: identity sha256 {self.tokenizer_identity[:12]}, the corpus's {identity.sha256[:12]}"
        if self.tokenizer_sha256 is not None and self.tokenizer_sha256 != corpus.tokenizer_hash:
            return f"sha256 {self.tokenizer_sha256[:12]}, the corpus's {corpus.tokenizer_hash[:12]}"
        return None


@dataclass(frozen=True)
class ServedModel:
    """What the server's `GET /v1/models` says about the model it serves (the first one listed).
    `about` is distillscale's own description (`serve-teacher` adds it; vLLM does not)."""

    name: str
    max_model_len: int | None = None
    about: ServedCard = field(default_factory=ServedCard)


def validated_card(answer: Any, where: str) -> ServedModel:
    """The served model of a `GET /v1/models` answer (its first card), or a one-line UserError naming
    the server and the first entry that is missing or wrong (a wrong type, a size that is not a
    positive integer, a max_model_len too short for any prompt)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) \
            or not isinstance(data[0].get("id"), str) or not data[0]["id"]:
        raise UserError(f"the teacher server at {where} answered no model list ({_preview(answer)}): is it an "
                        f"OpenAI-compatible server (vLLM, `distillscale serve-teacher`)?")
    first = data[0]
    length = first.get("max_model_len")
    if length is not None and (type(length) is not int or length < MIN_PROMPT_TOKENS):
        raise UserError(f"the teacher server at {where} states max_model_len {shown(length)}, not a number of "
                        f"tokens of at least {MIN_PROMPT_TOKENS}: fix the server's --max-model-len")
    about = first.get("distillscale", {})
    try:
        card = ServedCard.model_validate(about if about is not None else {})
    except ValidationError as exc:
        error = exc.errors()[0]
        entry = ".".join(["distillscale", *(str(part) for part in error["loc"])])
        raise UserError(f"the teacher server at {where} describes its model wrongly: {entry} "
                        f"{shown(error.get('input'))}: {error['msg'].lower()}; fix or restart the "
                        f"server") from None
    return ServedModel(first["id"], length, card)


class _Deadline:
    """The end of one request's time: when it passes, every connection the request opened is shut, so
    that a server that trickles its answer (a byte now and then, each within the socket's timeout)
    cannot hold it longer."""

    def __init__(self, seconds: float):
        self.passed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.passed:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)   # a read blocked on it returns: the request ends now
    except OSError:
        pass


_REQUEST = threading.local()   # the deadline of the request this thread makes now


@functools.cache
def _bounded(connection: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    """`connection` whose sockets are shut when the current request's deadline passes."""

    class Bounded(connection):
        def connect(self) -> None:
            super().connect()
            deadline = getattr(_REQUEST, "deadline", None)
            if deadline is not None:
                deadline.watch(self.sock)

    return Bounded


class _BoundedHandler:
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_bounded(http_class), req, **kwargs)


class _BoundedHTTPHandler(_BoundedHandler, urllib.request.HTTPHandler):
    pass


class _BoundedHTTPSHandler(_BoundedHandler, urllib.request.HTTPSHandler):
    pass


def request_json(method: str, url: str, data: bytes | None, timeout: float,
                 timeout_flag: str = "--teacher-timeout") -> Any:
    """One JSON exchange with a server, given `timeout` seconds in all (connecting, sending and its whole
    answer: a server that trickles its answer is given up as a silent one is): its answer, or a
    ServerError saying in one line what failed and whether trying again may help (no answer in time,
    a 5xx or 429, malformed JSON). A user name and password in the URL (https://user:secret@host/v1)
    go as HTTP Basic authorization."""
    url, authorization = _credentials(url)
    if authorization:
        _warn_in_clear(url)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json",
                                              **authorization})
    late = ServerError(f"no answer within {timeout_flag} {timeout:g} s, the time a request is given in all",
                       retry=True)
    deadline = _REQUEST.deadline = _Deadline(timeout)
    try:
        with _opener().open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise late if deadline.passed else _http_error(exc, url, bool(authorization)) from None
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as exc:
        raise late if deadline.passed else _unreachable(exc, late) from None
    finally:
        deadline.cancel()
        _REQUEST.deadline = None
    if deadline.passed:   # an answer without its length, cut at the deadline
        raise late
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ServerError(f"malformed JSON in the answer ({_preview(raw)})", retry=True) from None


def _unreachable(exc: BaseException, late: ServerError) -> ServerError:
    """A request that got no answer, as one line: why (`late`: no answer in time)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return late
    if isinstance(reason, ConnectionRefusedError):
        return ServerError("connection refused: nothing listens there", retry=True)
    if isinstance(reason, socket.gaierror):
        return ServerError(f"unknown host ({reason.strerror})", retry=True)
    if isinstance(exc, urllib.error.URLError):
        return ServerError(f"unreachable ({reason})", retry=True)
    return ServerError(f"the connection broke ({type(exc).__name__}: {exc})", retry=True)


def _http_error(exc: urllib.error.HTTPError, url: str, authorized: bool) -> ServerError:
    """An error answer as one line: who answered (the server a redirect led to, when not `url`'s), where a
    redirect this request does not follow points, and for a 401 how to give credentials."""
    message = _error_message(exc)
    answered = getattr(exc, "url", None) or url
    by = "" if answered == url else f" from {redacted_url(answered)}, where {redacted_url(url)} redirected it"
    if 300 <= exc.code < 400:
        location = exc.headers.get("Location") if exc.headers is not None else None
        target = redacted_url(urllib.parse.urljoin(answered, location)) if location else "no address given"
        return ServerError(f"redirected (HTTP {exc.code}{by}) to {target}, which a request with a body is not sent "
                           "on to: give that URL instead", retry=False)
    if exc.code == 401:
        how = ("the user name and password in the URL were refused: check them" if authorized else
               "the server asks for a user name and password: give them in the URL, http(s)://USER:PASSWORD@HOST/v1 "
               "(a character of them that is not a letter or digit, %-encoded)")
        return ServerError(f"refused (HTTP 401{by}: {message}); {how}", retry=False)
    retry = exc.code >= 500 or exc.code in (408, 429)
    return ServerError(f"HTTP {exc.code}{by}: {message}" if retry else f"refused (HTTP {exc.code}{by}: {message})",
                       retry=retry)


def _preview(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else json.dumps(value)[:200]
    text = " ".join(text.split())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The server's own message of an error answer (OpenAI's {"error": {"message"}}, vLLM's
    {"message"}), on one line."""
    try:
        answer = json.loads(exc.read())
    except (OSError, ValueError, http.client.HTTPException):
        return exc.reason or ""
    error = answer.get("error", answer) if isinstance(answer, dict) else {}
    message = error.get("message") if isinstance(error, dict) else error
    return " ".join(str(message or exc.reason or "").split())[:300]


def shown(value: Any) -> str:
    """A value of an answer as its JSON text, on one line, cut at 40 characters."""
    text = " ".join(json_text(value).split())
    return text[:40] + ("..." if len(text) > 40 else "")




def _credentials(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without its user name and password, the Authorization header they make; {} without)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.username is None and parsed.password is None:
        return url, {}
    host = parsed.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parsed.username or "") + ":" + urllib.parse.unquote(parsed.password or "")
    token = base64.b64encode(user.encode()).decode("ascii")
    return urllib.parse.urlunsplit(parsed._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port its scheme's default where none is written: what
    credentials are given for."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:   # not a URL a request is made to (`api_base` refuses it first): no origin
        return "", "", None
    scheme = parsed.scheme.lower()
    return scheme, (parsed.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class _SameOriginAuthorization(urllib.request.HTTPRedirectHandler):
    """Redirects followed as urllib follows them, but the Authorization header kept only while the
    new URL has the origin the credentials were given for (urllib copies it to any host)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(new.full_url) != origin(req.full_url):
            new.remove_header("Authorization")
        return new


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_SameOriginAuthorization, _BoundedHTTPHandler, _BoundedHTTPSHandler)


# The origins whose clear-text credentials were said, passed on to child processes (which would say
# them again) in this environment variable.
SAID_IN_CLEAR_ENV = "DISTILLSCALE_SAID_IN_CLEAR"


def in_clear_warning(url: str, credentials: bool | None = None) -> str | None:
    """The warning that `url`'s user name and password go unencrypted over plain http to a host other
    than this machine (None: https, no credentials, this machine, or said already); once said, never
    again for that origin, in this process or its children. A plan takes it into its warnings (its text
    and --json) instead of letting the request print it."""
    import os

    scheme, host, port = origin(url)
    key = f"{scheme}://{host}:{port}"
    said = set(os.environ.get(SAID_IN_CLEAR_ENV, "").split())
    if scheme != "http" or key in said:
        return None
    if credentials is None:   # said by the URL itself (a request's URL has them taken out: said by the caller)
        parsed = urllib.parse.urlsplit(url)   # a URL with an origin: parses
        credentials = parsed.username is not None or parsed.password is not None
    if not credentials or _is_this_machine(host):
        return None
    os.environ[SAID_IN_CLEAR_ENV] = " ".join(sorted(said | {key}))
    return (f"the user name and password of {redacted_url(url)} go unencrypted over plain http to {host}: anyone "
            "on the network between can read them; serve the teacher over https (or reach it through an SSH "
            "tunnel to 127.0.0.1)")


def _warn_in_clear(url: str) -> None:
    """Say once per origin that credentials go unencrypted to a host other than this machine (`url`: the
    request's, its credentials taken out into the Authorization header)."""
    message = in_clear_warning(url, credentials=True)
    if message is not None:
        from distillscale.console import warn

        warn(message)


@functools.lru_cache(maxsize=64)
def _is_this_machine(host: str) -> bool:
    """Whether `host` is this machine: a loopback name or address, or one of its own addresses (one this
    machine can bind a socket to)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), None)}
    except (OSError, UnicodeError):
        return False
    for address in addresses:
        try:
            if ipaddress.ip_address(address.split("%")[0]).is_loopback:
                return True
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((address, 0))
            return True
        except (OSError, ValueError):
            continue
    return False


API_SUFFIXES = ("/completions", "/models")   # the endpoints a client asks under the /v1 base


def api_base(url: str) -> str:
    """The server's `/v1` base from what the user gave, taken as given: the server itself (no path: its
    /v1), its /v1 base (behind any prefix, http://host/teacher/v1) or one of its endpoints under it
    (/v1/completions, /v1/models); ValueError, in one line, for anything else: not an http(s) URL with
    a host and port, a query or fragment, or a path that names no endpoint (/api, /v1/chat/completions),
    which a client that appended /v1 to it would ask in the wrong place."""
    text = url.strip()
    shown = repr(redacted_url(text))
    example = "give e.g. http://127.0.0.1:8000/v1"
    try:
        parsed = urllib.parse.urlsplit(text)
    except ValueError:   # e.g. an IPv6 host without its closing bracket
        raise ValueError(f"{shown} has no valid host: {example} (an IPv6 address in brackets: "
                         "http://[::1]:8000/v1)") from None
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{shown} is not an http(s) URL of a server: {example}")
    try:
        parsed.port  # noqa: B018 (raises for a port out of range or not a number)
    except ValueError:
        if "@" in text.partition("://")[2].partition(parsed.netloc)[2]:   # user:pa/ss@host: a / ends the host early
            raise ValueError(f"{shown} has a user name or password with a / ? or # in it: %-encode it (%2F, %3F, "
                             "%23)") from None
        raise ValueError(f"{shown} has no valid port: {example}") from None
    if parsed.query or parsed.fragment or text.endswith(("?", "#")):
        raise ValueError(f"{shown} has a ?query or #fragment, which a server's API base has not: {example}")
    path = parsed.path.rstrip("/")
    for suffix in API_SUFFIXES:
        if path.endswith("/v1" + suffix):
            path = path.removesuffix(suffix)
    if not path:
        path = "/v1"
    if not path.endswith("/v1"):
        raise ValueError(f"{shown} names no endpoint of an OpenAI-compatible server (its path {parsed.path} is not "
                         f"its /v1 base): give the server's /v1 base as it serves it, e.g. "
                         f"{parsed.scheme}://{redacted_url(parsed.netloc)}/v1")
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def server_url(url: str, given_as: str) -> str:
    """`api_base(url)`, or a one-line UserError naming `given_as` (the flag or argument the URL came by):
    every command that takes a server's URL checks it here before anything else reads it."""
    try:
        return api_base(url)
    except ValueError as exc:
        raise UserError(f"{given_as} {exc}") from None


def served_model(url: str, given_as: str, limits: RequestLimits = RequestLimits()) -> ServedModel:
    """The model the server at `url` serves (its first card, validated), asked under `limits` as every
    request to a served teacher is (`exchange`: retried, each try --teacher-timeout seconds in all); a
    one-line UserError naming `given_as` (the flag) when the URL is not a server's or it does not answer."""
    endpoint = server_url(url, given_as)
    where = f"{redacted_url(endpoint)}/models"
    try:
        answer = exchange("GET", endpoint + "/models", None, limits)
    except ServerError as exc:
        raise UserError(f"{given_as} {redacted_url(url)}: asked {where}: {exc}") from None
    return validated_card(answer, where)


# A try that has waited this long for its whole answer says so (once a try): a trickling server can hold
# each for --teacher-timeout seconds, and the tries (retries + 1) x that.
WAIT_NOTICE_SECONDS = 15.0


@dataclass
class Tally:
    """The requests sent and the retries among them, counted across exchanges (a run's record)."""

    requests: int = 0
    retried: int = 0


def exchange(method: str, url: str, data: bytes | None, limits: RequestLimits, parse=lambda answer: answer,
             tally: Tally | None = None, say=None, notice: float | None = None,
             backoff: float = BACKOFF_SECONDS) -> Any:
    """One request to a served teacher under `limits`, the one policy of every command that asks one
    (`distill --teacher-url`, `loss URL`, `plan --teacher-model URL`, `teacher --candidates URL`): each try
    given `limits.timeout` seconds in all (`request_json`), one that fails in a way that may pass (no
    answer, a timeout, a 5xx or 429, a malformed answer: `parse` raises ServerError(retry=True) too)
    tried `limits.retries` more times with exponential backoff. What it waits for is said (`say`, one
    line; default: a warning): a try still waiting after `notice` seconds (WAIT_NOTICE_SECONDS), and each retry (`backoff`: the
    first retry's wait, doubling). Its answer parsed; a ServerError for a refused request (4xx) or, once
    the tries are spent (`spent`), naming them and the time they took."""
    import time

    say, notice = say or _say_waiting, WAIT_NOTICE_SECONDS if notice is None else notice
    tally = tally if tally is not None else Tally()
    shown, tries = redacted_url(url), limits.retries + 1
    started = time.monotonic()
    failure: ServerError | None = None
    for attempt in range(tries):
        if attempt:
            tally.retried += 1
            wait = min(MAX_BACKOFF_SECONDS, backoff * 2 ** (attempt - 1))
            say(f"the teacher server at {shown} failed ({failure}): try {attempt + 1} of {tries} in {wait:g} s")
            time.sleep(wait)
        tally.requests += 1
        waiting = threading.Timer(notice, say, [
            f"waiting for the teacher server at {shown}: no whole answer after {notice:g} s (try {attempt + 1} of "
            f"{tries}, each at most --teacher-timeout {limits.timeout:g} s; given up after "
            f"{limits.longest():.0f} s in all)"])
        waiting.daemon = True
        waiting.start()
        try:
            return parse(request_json(method, url, data, limits.timeout))
        except ServerError as exc:
            if not exc.retry:
                raise
            failure = exc
        finally:
            waiting.cancel()
    spent = (f"{time.monotonic() - started:.0f} s: each try at most --teacher-timeout {limits.timeout:g} s"
             + (f", {backoff_seconds(limits.retries, backoff):g} s of backoff between" if limits.retries else ""))
    raise ServerError(f"{failure} after {tries} {'tries' if tries > 1 else 'try'} ({spent})", retry=False, spent=True)


def _say_waiting(message: str) -> None:
    from distillscale.console import warn

    warn(message)
