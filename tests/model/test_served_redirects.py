"""HTTP Basic credentials of a served teacher's URL go to the origin they were given for only: a
redirect to another host or port, or from https to http, is followed without them (urllib copies a
header set on the request to wherever a redirect points); over plain http to another machine they are
said once before they are sent. Two real servers on 127.0.0.1, in threads, stopped by the test."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from distillscale.model import served
from distillscale.model.served import ServerError, request_json, served_model
from distillscale.model.teacher_limits import RequestLimits

TOKEN = "Basic " + base64.b64encode(b"me:pa55-w0rd").decode()
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 64}]}).encode()


def serving(redirect_to=None):
    """A server on 127.0.0.1 that records the Authorization of every request; with `redirect_to(path)`,
    it answers /v1/... with a 302 there, else with a model list. Returns (server, its base, what it saw)."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        timeout = 5

        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            if redirect_to is not None and self.path.startswith("/v1/"):
                self.send_response(302)
                self.send_header("Location", redirect_to(self.path))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(MODELS)))
            self.end_headers()
            self.wfile.write(MODELS)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}", seen


@pytest.fixture
def servers():
    started = []

    def start(redirect_to=None):
        server, where, seen = serving(redirect_to)
        started.append(server)
        return where, seen

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_port_is_followed_without_the_credentials(servers):
    other, seen_there = servers()
    first, seen_first = servers(lambda path: f"http://{other}/elsewhere{path}")
    assert served_model(f"http://me:pa55-w0rd@{first}/v1", "--teacher-model", RequestLimits(timeout=10)).name == "m"
    assert seen_first == [("/v1/models", TOKEN)]             # the origin they were given for has them
    assert seen_there == [("/elsewhere/v1/models", None)]    # the other origin never saw them


def test_a_redirect_to_another_host_is_followed_without_the_credentials(servers):
    other, seen_there = servers()
    port = other.rpartition(":")[2]
    first, _ = servers(lambda path: f"http://localhost:{port}{path.replace('/v1/', '/v2/')}")  # 127.0.0.1 -> localhost
    request_json("GET", f"http://me:pa55-w0rd@{first}/v1/models", None, timeout=10)
    assert seen_there == [("/v2/models", None)]


def test_a_redirect_within_the_origin_keeps_them(servers):
    holder = {}
    first, seen = servers(lambda path: f"http://{holder['first']}/moved{path}")
    holder["first"] = first
    request_json("GET", f"http://me:pa55-w0rd@{first}/v1/models", None, timeout=10)
    assert seen == [("/v1/models", TOKEN), ("/moved/v1/models", TOKEN)]


@pytest.mark.parametrize("new, kept", [("http://teacher.example:443/v1/models", False),   # https -> http
                                       ("https://teacher.example/v1/models", True),
                                       ("https://teacher.example:8443/v1/models", False),
                                       ("https://other.example/v1/models", False)])
def test_from_https_to_http_the_credentials_are_dropped(new, kept):
    """Without a TLS server here: the redirect handler itself, on the request urllib would send."""
    handler = served._SameOriginAuthorization()
    request = urllib.request.Request("https://teacher.example/v1/models", headers={"Authorization": TOKEN})
    redirected = handler.redirect_request(request, None, 302, "Found", {}, new)
    assert redirected.has_header("Authorization") == kept and redirected.full_url == new


def test_credentials_over_plain_http_to_another_machine_are_said_once_before_they_go(monkeypatch):
    events = []

    class Opener:
        def open(self, request, timeout):
            events.append(("sent", request.full_url, request.get_header("Authorization") is not None))
            raise urllib.error.URLError(ConnectionRefusedError())

    monkeypatch.setattr(served, "_opener", lambda: Opener())
    monkeypatch.setattr("distillscale.console.warn", lambda message: events.append(("warned", message)))
    monkeypatch.delenv(served.SAID_IN_CLEAR_ENV, raising=False)
    for url in ("http://me:pa55-w0rd@10.1.2.3:8000/v1/models", "http://me:pa55-w0rd@10.1.2.3:8000/v1/completions",
                "https://me:pa55-w0rd@10.1.2.3:8000/v1/models", "http://me:pa55-w0rd@127.0.0.1:8000/v1/models",
                "http://me:pa55-w0rd@localhost:8000/v1/models", "http://10.1.2.4:8000/v1/models"):
        with pytest.raises(ServerError, match="connection refused"):
            request_json("GET", url, None, timeout=1)
    warned = [event for event in events if event[0] == "warned"]
    assert len(warned) == 1 and events[0] == warned[0] and events[1][0] == "sent"   # said first, once
    message = warned[0][1]
    assert "to 10.1.2.3" in message and "http://10.1.2.3:8000/v1/models" in message and "pa55-w0rd" not in message
    assert "\n" not in message and "https" in message


def test_said_once_in_this_process_and_its_children_and_never_of_this_machines_own_address(monkeypatch):
    """The warning is said once per origin, and a child process (a measurement) does not say it again; this
    machine's own address (not only loopback) is no other machine."""
    import os
    import socket
    import subprocess
    import sys

    monkeypatch.delenv(served.SAID_IN_CLEAR_ENV, raising=False)
    assert served.in_clear_warning("http://me:pw@10.1.2.3:8000/v1") is not None
    assert served.in_clear_warning("http://me:pw@10.1.2.3:8000/v1") is None
    child = subprocess.run([sys.executable, "-c", "from distillscale.model.served import in_clear_warning; "
                            "print(in_clear_warning('http://me:pw@10.1.2.3:8000/v1'))"],
                           capture_output=True, text=True, env=dict(os.environ), check=True)
    assert child.stdout.strip() == "None"
    assert served.in_clear_warning(f"http://me:pw@{socket.gethostname()}:8000/v1") is None
    assert served.in_clear_warning("http://me:pw@10.1.2.4:8000/v1").count("another machine") == 0


def _answering(code: int, location: str | None = None, body: bytes = b"{}"):
    class Handler(BaseHTTPRequestHandler):
        timeout = 5

        def do_GET(self):  # noqa: N802
            self.send_response(code)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("code", [307, 308])
def test_a_redirect_a_request_with_a_body_does_not_follow_says_where_it_points(code):
    server, where = _answering(code, "http://elsewhere.example:9000/v1/completions")
    try:
        with pytest.raises(ServerError) as error:
            request_json("POST", f"http://{where}/v1/completions", b"{}", timeout=5)
        said = str(error.value)
        assert f"redirected (HTTP {code})" in said and "http://elsewhere.example:9000/v1/completions" in said
        assert "refused" not in said and not error.value.retry
    finally:
        server.shutdown()
        server.server_close()


def test_an_error_after_a_redirect_names_the_server_that_answered(servers):
    other, there = _answering(404, body=json.dumps({"error": {"message": "no such model"}}).encode())
    first, _ = servers(lambda path: f"http://{there}/moved{path}")
    try:
        with pytest.raises(ServerError) as error:
            request_json("GET", f"http://{first}/v1/models", None, timeout=5)
        said = str(error.value)
        assert f"from http://{there}/moved/v1/models, where http://{first}/v1/models redirected it" in said
        assert "no such model" in said
    finally:
        other.shutdown()
        other.server_close()


def test_a_401_says_how_to_give_credentials(cli):
    server, where = _answering(401, body=json.dumps({"error": {"message": "unauthorized"}}).encode())
    try:
        code, _, err = cli("plan", "--student-params", "546M", "--compute", "1e21", "--teacher-model",
                           f"http://{where}/v1")
        assert code == 2 and "http(s)://USER:PASSWORD@HOST/v1" in err and "refused (HTTP 401" in err
        code, _, err = cli("plan", "--student-params", "546M", "--compute", "1e21", "--teacher-model",
                           f"http://me:secret@{where}/v1")
        assert code == 2 and "the user name and password in the URL were refused" in err and "secret" not in err
    finally:
        server.shutdown()
        server.server_close()
