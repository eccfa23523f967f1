"""The planner page's local web server (standard library only).

    GET  /                  the page (static/index.html), its script and style from static/
    GET  /api/laws          the laws to choose from
    POST /api/plan          the controls (PlanQuery as JSON) -> the plan, its text, command, figures
    POST /api/curve         the controls and a student size -> student loss against budget

It binds 127.0.0.1 by default: the planner is for the person at this machine.
"""

from __future__ import annotations

import json
import math
import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from distillscale.errors import UserError
from distillscale.serve.api import Planner, PlanQuery, static_dir

STATIC_FILES = {"/": "index.html", "/app.js": "app.js", "/charts.js": "charts.js", "/style.css": "style.css"}
MAX_BODY = 64 * 1024  # a query is a few hundred bytes


def make_server(planner: Planner, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the page on host:port (port 0: any free one); serve it with serve_forever()."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/api/laws":
                return self._json(planner.laws_info())
            name = STATIC_FILES.get(self.path.split("?")[0])
            if name is None:
                return self._json({"error": f"no page at {self.path}"}, HTTPStatus.NOT_FOUND)
            body = (static_dir() / name).read_bytes()
            self._send(body, mimetypes.guess_type(name)[0] or "application/octet-stream")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if self.path not in ("/api/plan", "/api/curve") or length > MAX_BODY:
                return self._json({"error": f"no API at {self.path}"}, HTTPStatus.NOT_FOUND)
            try:
                data = json.loads(self.rfile.read(length) or b"{}")
                query = PlanQuery.from_json(data)
            except (json.JSONDecodeError, TypeError, AttributeError) as exc:
                return self._json({"ok": False, "errors": {"plan": f"malformed request: {exc}"}},
                                  HTTPStatus.BAD_REQUEST)
            if self.path == "/api/plan":
                return self._json(planner.update(query))
            try:
                student = float(data.get("student_params"))
            except (TypeError, ValueError):
                return self._json({"ok": False, "errors": {"plan": "give student_params"}},
                                  HTTPStatus.BAD_REQUEST)
            self._json(planner.compute_curve(query, student))

        def _json(self, payload: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(json.dumps(_plain(payload), allow_nan=False).encode(), "application/json", status)

        def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # quiet: the terminal shows the address
            pass

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None


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
