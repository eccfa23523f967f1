"""The planner page's local web server (standard library only).

    GET  /                  the page (static/index.html), its script and style from static/
    GET  /api/laws          the laws to choose from
    POST /api/plan          the controls (PlanQuery as JSON) -> the plan, its text, command, figures
    POST /api/curve         the controls and a student size -> student loss against budget

Every request gets a JSON answer with its status: 400 for a malformed request or a bad control,
404 for an unknown path, 405 for a wrong method, 411 without Content-Length, 413 for a body over
64 KB, 415 for a body that is not JSON. It binds 127.0.0.1 by default: the planner is for the
person at this machine.
"""

from __future__ import annotations

import json
import math
import mimetypes
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from distillscale.errors import UserError
from distillscale.serve.api import Planner, PlanQuery, static_dir
from distillscale.units import parse_quantity

STATIC_FILES = {"/": "index.html", "/app.js": "app.js", "/charts.js": "charts.js", "/style.css": "style.css"}
API = ("/api/plan", "/api/curve")
MAX_BODY = 64 * 1024  # a query is a few hundred bytes
JSON_TYPES = ("application/json", "text/plain", "")  # text/plain: a fetch() without a content type


class RequestError(Exception):
    """A request the server answers with `status` and a message, before any planning."""

    def __init__(self, status: HTTPStatus, message: str, allow: str | None = None):
        super().__init__(message)
        self.status, self.allow = status, allow


def make_server(planner: Planner, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the page on host:port (port 0: any free one); serve it with serve_forever()."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # seconds a client may stall mid-request (a short body, a half-sent header)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(self._get)

        def do_POST(self) -> None:  # noqa: N802
            self._answer(self._post)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(self._not_allowed)

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD  # noqa: N815

        def _answer(self, handle) -> None:
            try:
                handle()
            except RequestError as exc:
                if exc.status >= 400 and exc.status != HTTPStatus.NOT_FOUND:
                    self.close_connection = True  # the body may be unread
                self._json({"ok": False, "errors": {"plan": str(exc)}}, exc.status,
                           {"Allow": exc.allow} if exc.allow else None)
            except Exception as exc:  # noqa: BLE001 (a bug: answered, not a dropped connection)
                self.close_connection = True
                self._json({"ok": False, "errors": {"plan": f"internal error: {type(exc).__name__}"}},
                           HTTPStatus.INTERNAL_SERVER_ERROR)

        def _route(self) -> str:
            return self.path.split("?")[0]

        def _not_allowed(self) -> None:
            path = self._route()
            if path in API:
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} answers POST only", "POST")
            if path in STATIC_FILES or path == "/api/laws":
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} answers GET only", "GET")
            raise RequestError(HTTPStatus.NOT_FOUND, f"nothing at {path}")

        def _get(self) -> None:
            path = self._route()
            if path == "/api/laws":
                return self._json(planner.laws_info())
            name = STATIC_FILES.get(path)
            if name is None:
                return self._not_allowed()
            body = (static_dir() / name).read_bytes()
            self._send(body, mimetypes.guess_type(name)[0] or "application/octet-stream")

        def _post(self) -> None:
            path = self._route()
            if path not in API:
                return self._not_allowed()
            data = self._body()
            try:
                query = PlanQuery.from_json(data, extra=("student_params",) if path == "/api/curve" else (),
                                            default_law=planner.default)
                if path == "/api/curve":
                    student = parse_quantity(str(data.get("student_params", "")), "student_params")
            except UserError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed request: {exc}") from None
            answer = planner.update(query) if path == "/api/plan" else planner.compute_curve(query, student)
            self._json(answer, HTTPStatus.OK if answer.get("ok") else HTTPStatus.BAD_REQUEST)

        def _body(self):
            """The request's JSON value, read within Content-Length (at most MAX_BODY bytes)."""
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind not in JSON_TYPES:
                raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                   f"the body must be JSON (Content-Type: application/json), not {kind}")
            given = self.headers.get("Content-Length")
            if given is None:
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "give the body's length in Content-Length")
            if not given.strip().isdigit():
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"Content-Length must be a number of bytes, got {given[:40]!r}")
            length = int(given)
            if length > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"the body is {length} bytes; a query is at most {MAX_BODY}")
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

        def _json(self, payload: dict, status: HTTPStatus = HTTPStatus.OK, headers: dict | None = None) -> None:
            self._send(json.dumps(_plain(payload), allow_nan=False).encode(), "application/json", status, headers)

        def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK,
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

    try:
        return ThreadingHTTPServer((host, port), Handler)
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
