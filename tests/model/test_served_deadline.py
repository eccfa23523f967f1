"""A request to a served teacher is given --teacher-timeout seconds in all, its whole answer included:
a server that trickles its answer (a byte now and then, each well within the socket's timeout) is given
up as a silent one is, in every command that asks one through the shared exchange (`loss`, `teacher
--candidates`, `plan --teacher-model`, `distill --teacher-url`), and the retries are bounded and said.
The servers here listen on 127.0.0.1 and stop on their own."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from distillscale.model.served import ServerError, request_json

BYTE_EVERY = 0.25   # seconds between the trickling server's bytes: far within any socket timeout here
TIMEOUT = 1.0       # the request's time in all


class Trickling:
    """A server on 127.0.0.1 that answers every request one byte every BYTE_EVERY seconds (the status
    line and headers too, with `headers_first` False), for at most `seconds`, then closes."""

    def __init__(self, headers_first: bool = True, seconds: float = 30.0):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.headers_first, self.seconds = headers_first, seconds
        self.stopped = threading.Event()
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            self.requests += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        body = b'{"object": "list", "data": [{"id": "m"}]}' + b" " * 400
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        with connection:
            connection.settimeout(2)
            try:
                connection.recv(65536)
                if self.headers_first:
                    connection.sendall(head)
                ends = time.monotonic() + self.seconds
                for byte in (body if self.headers_first else head + body):
                    if self.stopped.is_set() or time.monotonic() > ends:
                        return
                    connection.sendall(bytes([byte]))
                    time.sleep(BYTE_EVERY)
            except OSError:
                return

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


def corpus_and_tokenizer(folder):
    """A small corpus (six text files: each split takes whole documents) and a byte-level BPE tokenizer
    (tokenizer.json) trained on it, in `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    data = folder / "corpus"
    data.mkdir()
    for j in range(6):
        (data / f"part{j}.txt").write_text("".join(f"line {i} of a few words of text to prepare.\n"
                                                   for i in range(50 * j, 50 * j + 50)))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer.train(sorted(str(path) for path in data.iterdir()), trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(folder / "tokenizer.json"))
    return data, folder / "tokenizer.json"


@pytest.fixture
def trickling(request):
    server = Trickling(headers_first=getattr(request, "param", True))
    yield server
    server.stop()


@pytest.mark.parametrize("trickling", [True, False], ids=["body", "headers"], indirect=True)
def test_a_trickled_answer_is_given_up_at_the_requests_time_in_all(trickling):
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"no answer within --teacher-timeout 1 s") as error:
        request_json("GET", trickling.url + "/models", None, timeout=TIMEOUT)
    took = time.monotonic() - started
    assert error.value.retry and TIMEOUT * 0.9 < took < TIMEOUT + 1.5, took


def test_a_timely_answer_is_not_cut(monkeypatch):
    """The deadline ends nothing that finishes in time: a quick server's answer is read whole."""
    monkeypatch.setattr("tests.model.test_served_deadline.BYTE_EVERY", 0.0)
    server = Trickling()
    try:
        assert request_json("GET", server.url + "/models", None, timeout=5.0)["data"][0]["id"] == "m"
    finally:
        server.stop()


def test_the_retry_budget_is_bounded_and_said():
    from distillscale.model.teacher_limits import TEACHER_TIMEOUT_HELP, RequestLimits, backoff_seconds

    assert backoff_seconds(4) == 0.5 + 1 + 2 + 4 and backoff_seconds(6) == 0.5 + 1 + 2 + 4 + 8 + 8
    assert "given up after at most 5 x this + 7.5 s" in TEACHER_TIMEOUT_HELP
    assert RequestLimits(1.0, 1).argv() == ["--teacher-timeout", "1.0", "--teacher-retries", "1"]


def test_the_client_gives_up_a_trickling_server_within_its_budget_and_says_it(trickling):
    from distillscale.errors import UserError
    from distillscale.training.remote_teacher import TeacherClient

    client = TeacherClient(trickling.url, top_k=1, timeout=TIMEOUT, retries=1, backoff=0.01)
    started = time.monotonic()   # (after torch's import)
    with pytest.raises(UserError, match=r"no answer within --teacher-timeout 1 s.*after 2 tries \([0-9]+ s: each try at "
                                        r"most --teacher-timeout 1 s, 0\.01 s of backoff between\)") as error:
        client.connect()
    assert time.monotonic() - started < 2 * TIMEOUT + 1.5 and "\n" not in str(error.value)


@pytest.mark.parametrize("command", [
    ("plan", "--teacher-model", "{url}", "--student-params", "100M", "--compute", "1e20"),
    ("teacher", "--candidates", "{url}", "--student-params", "100M", "--compute", "1e20"),
    ("loss", "{url}", "--data", "{data}", "--tokenizer", "{tokenizer}", "--json"),
], ids=["plan", "teacher", "loss"])
def test_every_command_that_asks_a_server_gives_a_trickling_one_up_in_one_line(
        cli, trickling, command, tmp_path, monkeypatch):
    """`plan` and `teacher` take --teacher-timeout and --teacher-retries as `distill` does; before, they
    waited as long as the server trickled, `loss` 5 x 60 s for a silent one."""
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    data, tokenizer = corpus_and_tokenizer(tmp_path)
    args = [part.format(url=trickling.url, data=data, tokenizer=tokenizer) for part in command]
    started = time.monotonic()
    code, out, err = cli(*args, "--teacher-timeout", TIMEOUT, "--teacher-retries", 0)
    took = time.monotonic() - started
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # the server trickles for 30 s: a request bounded per read only lasts that long
    assert "no answer within --teacher-timeout 1 s" in err and took < 20, (took, err)


@pytest.mark.slow
def test_distill_gives_a_trickling_server_up_in_one_line(cli, trickling, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    data, tokenizer = corpus_and_tokenizer(tmp_path)
    started = time.monotonic()
    code, _, err = cli("distill", "--teacher-url", trickling.url, "--top-k", 4, "--tokenizer", tokenizer, "--data", data,
                       "--out", tmp_path / "run", "--n-layers", 1, "--tokens", 512, "--seq-len", 16, "--batch-size", 4,
                       "--device", "cpu", "--teacher-timeout", TIMEOUT, "--teacher-retries", 0)
    assert code == 2 and "no answer within --teacher-timeout 1 s" in err, err
    assert time.monotonic() - started < 20


def test_a_request_that_waits_says_what_it_waits_for_and_each_retry(trickling):
    """A trickling server holds each try up to --teacher-timeout: the wait is said once a try has gone
    `notice` seconds without its answer, and each retry before it is made (`distill --teacher-url` printed
    nothing for 120 s of a 307 s budget)."""
    from distillscale.model.served import Tally, exchange
    from distillscale.model.teacher_limits import RequestLimits

    said, tally = [], Tally()
    with pytest.raises(ServerError, match=r"after 2 tries") as error:
        exchange("GET", trickling.url + "/models", None, RequestLimits(TIMEOUT, 1), tally=tally, say=said.append,
                 notice=0.3, backoff=0.01)
    assert error.value.spent and (tally.requests, tally.retried) == (2, 1)
    waits = [line for line in said if line.startswith("waiting for the teacher server at")]
    assert len(waits) == 2 and "no whole answer after 0.3 s (try 1 of 2, each at most --teacher-timeout 1 s; " \
                               "given up after 2 s in all)" in waits[0]
    assert any("failed (no answer within --teacher-timeout 1 s" in line and "try 2 of 2 in 0.01 s" in line
               for line in said)


def test_the_client_says_its_waits_on_stderr(trickling, monkeypatch, capsys):
    from distillscale.errors import UserError
    from distillscale.training.remote_teacher import TeacherClient

    monkeypatch.setattr("distillscale.model.served.WAIT_NOTICE_SECONDS", 0.3)
    with pytest.raises(UserError):
        TeacherClient(trickling.url, top_k=1, timeout=TIMEOUT, retries=0, backoff=0.01).connect()
    assert "waiting for the teacher server at" in " ".join(capsys.readouterr().err.split())


class Flaky:
    """A server on 127.0.0.1 whose first answer is 503, the next ones a model card."""

    def __init__(self):
        import http.server
        import json

        self.requests = 0
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                flaky.requests += 1
                body = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()
                self.send_response(503 if flaky.requests == 1 else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_plan_asks_a_served_teacher_as_distill_does_retrying_what_may_pass():
    """One policy: the planner's question to a served teacher (its model card) is retried as the
    training client's are (`plan --teacher-model URL` never retried before)."""
    from distillscale.errors import UserError
    from distillscale.model.served import served_model
    from distillscale.model.teacher_limits import RequestLimits

    server = Flaky()
    try:
        assert served_model(server.url, "--teacher-model", RequestLimits(5.0, 1)).name == "m"
        assert server.requests == 2
    finally:
        server.stop()
    server = Flaky()
    try:
        with pytest.raises(UserError, match=r"--teacher-model .*after 1 try"):
            served_model(server.url, "--teacher-model", RequestLimits(5.0, 0))
    finally:
        server.stop()
