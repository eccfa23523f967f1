"""What the servers of `serve` share (standard library only): a request handler that answers every
request with JSON and its status, reads a JSON body within Content-Length, and turns a bad request
into a 4xx answer; and `listen`, which binds host:port or says in one line why it cannot.

A server subclasses `JSONHandler`, names its paths in `GET_PATHS` and `POST_PATHS`, answers them in
`get` and `post`, and words its errors in `error_payload`.
"""

from __future__ import annotations

import json
import math
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from distillscale.errors import UserError

JSON_TYPES = ("application/json", "text/plain", "")  # text/plain: a fetch() without a content type


class RequestError(Exception):
    """A request the server answers with `status` and a message, before any work."""

    def __init__(self, status: HTTPStatus, message: str, allow: str | None = None):
        super().__init__(message)
        self.status, self.allow = status, allow


class JSONHandler(BaseHTTPRequestHandler):
    """Every answer is JSON with its status: 400 for a malformed request, 404 for an unknown path,
    405 for a wrong method, 411 without Content-Length, 413 for a body over MAX_BODY bytes, 415 for
    a body that is not JSON, 500 (with the exception's type only) for a bug."""

    timeout = 10  # seconds a client may stall mid-request (a short body, a half-sent header)
    GET_PATHS: frozenset[str] = frozenset()
    POST_PATHS: frozenset[str] = frozenset()
    MAX_BODY = 64 * 1024

    def get(self) -> None:
        self.not_allowed()

    def post(self) -> None:
        self.not_allowed()

    def error_payload(self, message: str, status: HTTPStatus) -> dict:
        return {"error": message}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(self.get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self.post)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(self.not_allowed)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD  # noqa: N815

    def _answer(self, handle) -> None:
        try:
            handle()
        except RequestError as exc:
            if exc.status >= 400 and exc.status != HTTPStatus.NOT_FOUND:
                self.close_connection = True  # the body may be unread
            self.send_json(self.error_payload(str(exc), exc.status), exc.status,
                           {"Allow": exc.allow} if exc.allow else None)
        except Exception as exc:  # noqa: BLE001 (a bug: answered, not a dropped connection)
            self.close_connection = True
            self.send_json(self.error_payload(f"internal error: {type(exc).__name__}",
                                              HTTPStatus.INTERNAL_SERVER_ERROR),
                           HTTPStatus.INTERNAL_SERVER_ERROR)

    def route(self) -> str:
        return self.path.split("?")[0]

    def not_allowed(self) -> None:
        path = self.route()
        if path in self.POST_PATHS:
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} answers POST only", "POST")
        if path in self.GET_PATHS:
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} answers GET only", "GET")
        raise RequestError(HTTPStatus.NOT_FOUND, f"nothing at {path}")

    def json_body(self):
        """The request's JSON value, read within Content-Length (at most MAX_BODY bytes)."""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind not in JSON_TYPES:
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"the body must be JSON (Content-Type: application/json), not {kind}")
        given = self.headers.get("Content-Length")
        if given is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "give the body's length in Content-Length")
        if not (given.strip().isascii() and given.strip().isdigit()):  # "²".isdigit(), but int("²") fails
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"Content-Length must be a number of bytes, got {given[:40]!r}")
        length = int(given)
        if length > self.MAX_BODY:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the body is {length} bytes; a request is at most {self.MAX_BODY}")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive: {length} bytes "
                               "announced in Content-Length") from None
        if len(raw) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(raw)} of {length} bytes")
        try:
            return json.loads(raw.decode("utf-8") or "{}", parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed request: the body is not JSON ({exc})") \
                from None

    def send_json(self, payload: dict, status: HTTPStatus = HTTPStatus.OK, headers: dict | None = None) -> None:
        self.send_body(json.dumps(_plain(payload), allow_nan=False).encode(), "application/json", status, headers)

    def send_body(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK,
                  headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except ConnectionError:  # the client left (e.g. after sending a body refused unread)
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # quiet: the terminal shows the address
        pass


def listen(handler: type[JSONHandler], host: str, port: int) -> ThreadingHTTPServer:
    """A threading server of `handler` on host:port (port 0: any free one), or a one-line UserError."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except socket.gaierror:
        raise UserError(f"cannot serve on --host {host}: no such address on this machine or network "
                        "(e.g. 127.0.0.1 or 0.0.0.0)") from None
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            raise UserError(f"cannot listen on {host}:{port}: the port is in use; choose another --port") from None
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}): check --host (an address of this "
                        "machine) and --port (1024 and above need no privileges)") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _plain(value):
    """The payload with numpy values as JSON's, and NaN and infinity (which JSON lacks) as null."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
