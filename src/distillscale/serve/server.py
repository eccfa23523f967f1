"""The planner page's local web server (standard library only).

    GET  /                  the page (static/index.html), its script and style from static/
    GET  /api/laws          the laws to choose from
    POST /api/plan          the controls (PlanQuery as JSON) -> the plan, its text, command, figures
    POST /api/curve         the controls and a student size -> student loss against budget

Every request gets a JSON answer with its status (see `http.JSONHandler`): 400 for a malformed
request or a bad control, 404 for an unknown path, 405 for a wrong method, 411 without
Content-Length, 413 for a body over 64 KB, 415 for a body that is not JSON. It binds 127.0.0.1 by
default: the planner is for the person at this machine.
"""

from __future__ import annotations

import mimetypes
from http import HTTPStatus
from http.server import ThreadingHTTPServer

from distillscale.errors import UserError
from distillscale.serve.api import Planner, PlanQuery, static_dir
from distillscale.serve.http import JSONHandler, RequestError, listen
from distillscale.units import Quantity, parse_quantity

STATIC_FILES = {"/": "index.html", "/app.js": "app.js", "/charts.js": "charts.js", "/style.css": "style.css"}
API = ("/api/plan", "/api/curve")


def make_server(planner: Planner, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the page on host:port (port 0: any free one); serve it with serve_forever()."""

    class Handler(JSONHandler):
        GET_PATHS = frozenset({*STATIC_FILES, "/api/laws"})
        POST_PATHS = frozenset(API)

        def error_payload(self, message: str, status: HTTPStatus) -> dict:
            return {"ok": False, "errors": {"plan": message}}

        def get(self) -> None:
            path = self.route()
            if path == "/api/laws":
                return self.send_json(planner.laws_info())
            name = STATIC_FILES.get(path)
            if name is None:
                return self.not_allowed()
            body = (static_dir() / name).read_bytes()
            self.send_body(body, mimetypes.guess_type(name)[0] or "application/octet-stream")

        def post(self) -> None:
            path = self.route()
            if path not in API:
                return self.not_allowed()
            data = self.json_body()
            try:
                query = PlanQuery.from_json(data, extra=("student_params",) if path == "/api/curve" else (),
                                            default_law=planner.default)
                if path == "/api/curve":
                    student = parse_quantity(str(data.get("student_params", "")), "student_params", kind=Quantity.PARAMS)
            except UserError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed request: {exc}") from None
            answer = planner.update(query) if path == "/api/plan" else planner.compute_curve(query, student)
            self.send_json(answer, HTTPStatus.OK if answer.get("ok") else HTTPStatus.BAD_REQUEST)

    return listen(Handler, host, port)
