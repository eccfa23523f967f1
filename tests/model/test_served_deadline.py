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
    """A small text file and a byte-level BPE tokenizer (tokenizer.json) trained on it, in `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    data = folder / "corpus.txt"
    data.write_text("".join(f"line {i} of a few words of text to prepare.\n" for i in range(300)))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer.train([str(data)], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
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
