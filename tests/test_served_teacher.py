"""A teacher behind a server, over real HTTP on 127.0.0.1 (no mocks): `serve-teacher` answers the
OpenAI-compatible completions request as vLLM does, `distill --teacher-url` reads it with retries
and timeouts, and a student distilled through the server matches one distilled from the same
teacher in process with the same top-k."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from distillscale.errors import UserError
from distillscale.serve.teacher import TeacherService, make_teacher_server
from distillscale.training.remote_teacher import TeacherClient

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

K = 8
SHAPE = ("--aspect-ratio", "64", "--head-dim", "32", "--seq-len", "32", "--batch-size", "8",
         "--eval-tokens", "1k", "--eval-every", "0", "--device", "cpu", "--max-bytes", "300k")
TEACHER = ("--n-layers", "2", "--tokens", "10k", "--vocab-size", "320", *SHAPE)
STUDENT = ("--n-layers", "1", "--tokens", "2k", "--top-k", str(K), "--save-every", "2", "--log-every", "1", *SHAPE)


def run_cli(*args) -> None:
    from distillscale.cli import main

    assert main([str(a) for a in args]) == 0


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Serving:
    """A server in a thread on 127.0.0.1 (port 0 unless given); `stop()` closes it."""

    def __init__(self, httpd: ThreadingHTTPServer):
        self.httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    run_cli("train", "--out", out, *TEACHER)
    return out


@pytest.fixture(scope="module")
def service(teacher):
    return TeacherService(teacher, top_k=K)


@pytest.fixture(scope="module")
def served(service):
    serving = Serving(make_teacher_server(service))
    yield serving
    serving.stop()


@pytest.fixture(scope="module")
def in_process(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "in-process"
    run_cli("distill", "--teacher", teacher, "--out", out, *STUDENT)
    return out


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_served_top_k_equals_the_teacher_in_process(served, service):
    prompts = torch.randint(0, 320, (3, 17), generator=torch.Generator().manual_seed(0))
    client = TeacherClient(served.url, K)
    answer = client.top_logprobs(prompts)
    with torch.no_grad():
        log_probs = service.teacher.head(service.teacher.hidden_states(prompts[:, :-1])).float().log_softmax(-1)
    values, ids = log_probs.topk(K, dim=-1)
    assert torch.equal(answer.ids, ids)
    assert torch.allclose(answer.log_probs, values, atol=1e-6)
    own = log_probs.gather(-1, prompts[:, 1:, None]).squeeze(-1)
    assert torch.allclose(answer.token_log_probs.float(), own, atol=1e-6)
    assert client.requests == 2 and client.retried == 0  # GET /v1/models, one POST for the 3 prompts
    assert client.model.name == str(service.name) and client.model.about["max_logprobs"] == K


def test_the_answer_has_the_vllm_completions_shape(served):
    status, answer = post(served.url, {"model": None, "prompt": [5, 6, 7], "max_tokens": 0, "echo": True,
                                       "logprobs": 2, "return_tokens_as_token_ids": True})
    assert status == 200 and answer["object"] == "text_completion"
    choice = answer["choices"][0]
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == ["token_id:5", "token_id:6", "token_id:7"]
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    for j in (1, 2):  # the top 2, plus the prompt's own token when it is not among them
        top = logprobs["top_logprobs"][j]
        assert len(top) in (2, 3) and logprobs["tokens"][j] in top
        assert top[logprobs["tokens"][j]] == logprobs["token_logprobs"][j]
    assert logprobs["text_offset"] == [0, 10, 20]
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3, "completion_tokens": 0}
    with urllib.request.urlopen(served.url + "/models", timeout=10) as response:
        models = json.loads(response.read())
    assert models["object"] == "list" and models["data"][0]["object"] == "model"


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": [1, 2], "max_tokens": 16, "echo": True, "logprobs": 2}, 400, "does not generate"),
    ({"prompt": "some text", "max_tokens": 0, "echo": True, "logprobs": 2}, 400, "token ids"),
    ({"prompt": [1, 2], "max_tokens": 0, "echo": True, "logprobs": K + 1}, 400, "logprobs must be"),
    ({"prompt": [[1, 2], [99999]], "max_tokens": 0, "echo": True, "logprobs": 2}, 400, "prompt 1"),
    ({"model": "other", "prompt": [1, 2], "max_tokens": 0, "echo": True, "logprobs": 2}, 404, "does not exist"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_requests_get_a_4xx_json_error(served, body, status, words):
    got, answer = post(served.url, body)
    assert got == status and words in answer["error"]["message"] and answer["error"]["code"] == status


def test_distilled_through_the_server_matches_the_teacher_in_process(served, teacher, in_process, tmp_path):
    out = tmp_path / "served"
    run_cli("distill", "--teacher-url", served.url, "--tokenizer", teacher / "tokenizer.json", "--out", out, *STUDENT)
    local, remote = metrics(in_process), metrics(out)
    assert [m["step"] for m in local] == [m["step"] for m in remote] == list(range(1, 9))
    difference = max(abs(a["loss"] - b["loss"]) for a, b in zip(local, remote))
    assert difference < 1e-4, difference
    local_result = json.loads((in_process / "result.json").read_text())
    result = json.loads((out / "result.json").read_text())
    print(f"served vs in process: training loss within {difference:.3g}, validation loss within "
          f"{abs(result['val_loss'] - local_result['val_loss']):.3g} nats/token")
    assert abs(result["val_loss"] - local_result["val_loss"]) < 1e-4
    assert result["teacher"]["kind"] == "server" and result["teacher"]["path"] == served.url
    assert result["teacher"]["teacher_val_loss"] == pytest.approx(local_result["teacher"]["teacher_val_loss"],
                                                                  abs=1e-5)
    assert result["flops"] == local_result["flops"]  # the server states the teacher's FLOPs per token
    record = result["teacher_server"]
    assert record["top_k"] == K and record["retries"] == 0 and record["positions"] > 8 * 8 * 32
    assert 0 < record["mean_tail_mass"] < 1 and "kept in the loss" in record["tail_mass"]
    targets = result["top_k_targets"]
    assert targets["path"] == "served" and targets["tail"] == "known" and targets["top_k"] == K
    assert targets["mean_top_k_mass"] == pytest.approx(local_result["top_k_targets"]["mean_top_k_mass"], abs=1e-5)


class Garbage(BaseHTTPRequestHandler):
    """Answers every request with `body` (bytes) after `delay` seconds."""

    body, delay = b"{not json", 0.0

    def do_GET(self):  # noqa: N802
        self._garbage()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._garbage()

    def _garbage(self):
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except ConnectionError:
            pass

    def log_message(self, *args):
        pass


def garbage_server(body: bytes, delay: float = 0.0) -> Serving:
    handler = type("Handler", (Garbage,), {"body": body, "delay": delay})
    return Serving(ThreadingHTTPServer(("127.0.0.1", 0), handler))


@pytest.mark.parametrize("body, words", [
    (b"{not json", "malformed JSON"),
    (json.dumps({"object": "list", "data": [{"id": "m"}], "choices": [{"index": 0}]}).encode(), "wrong shape"),
])
def test_a_malformed_answer_is_retried_then_one_line(body, words):
    serving = garbage_server(body)
    try:
        client = TeacherClient(serving.url, K, retries=2, backoff=0.01)
        with pytest.raises(UserError, match=words) as error:
            client.top_logprobs(torch.zeros(1, 4, dtype=torch.long))
        assert "\n" not in str(error.value) and "after 3 tries" in str(error.value)
        assert client.retried == 2
    finally:
        serving.stop()


def test_a_server_that_does_not_answer_in_time_is_retried_then_one_line():
    serving = garbage_server(b"{}", delay=1.0)
    try:
        client = TeacherClient(serving.url, K, timeout=0.2, retries=1, backoff=0.01)
        started = time.perf_counter()
        with pytest.raises(UserError, match=r"no answer within --teacher-timeout 0.2 s.*after 2 tries"):
            client.connect()
        assert time.perf_counter() - started < 1.0
    finally:
        serving.stop()


def test_a_server_that_dies_mid_run_stops_the_run_which_resumes(cli, service, teacher, in_process, tmp_path):
    """The server dies after the teacher's validation, the top-k check and three training batches: the run stops
    with one line (exit 2), its checkpoint intact; restarted on the same port, the same command
    resumes it to the loss of the uninterrupted in-process run."""
    serving = Serving(make_teacher_server(service))
    calls, completions = [0], service.completions

    def dying(request):
        calls[0] += 1
        if calls[0] == 4 + 1 + 3 + 1:  # 4 validation requests (1k tokens, 8 windows each), the top-k check, 3 steps
            threading.Thread(target=serving.stop).start()
            raise ConnectionAbortedError("the server died")
        return completions(request)

    out = tmp_path / "resumed"
    args = ("distill", "--teacher-url", serving.url, "--tokenizer", teacher / "tokenizer.json", "--out", out,
            "--teacher-retries", "2", *STUDENT)
    service.completions = dying
    try:
        code, _, err = cli(*args)
    finally:
        del service.completions
    last = err.strip().splitlines()[-1]  # the lines before it are the progress of steps 1..3
    assert code == 2 and last.startswith("distillscale: error: the teacher server") and "Traceback" not in err, err
    assert "after 3 tries" in last and "resumes" in last
    assert not (out / "result.json").exists()
    state = torch.load(out / "state" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == 2  # the last checkpoint before the server died (--save-every 2)
    serving = Serving(make_teacher_server(service, port=serving.port))
    try:
        code, _, err = cli(*args)
    finally:
        serving.stop()
    assert code == 0, err
    local, resumed = metrics(in_process), metrics(out)
    assert [m["step"] for m in resumed] == list(range(1, 9))  # steps 3..8 once: the log was cut back
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(local, resumed)) < 1e-4
    result = json.loads((out / "result.json").read_text())
    assert abs(result["val_loss"] - json.loads((in_process / "result.json").read_text())["val_loss"]) < 1e-4


@pytest.mark.parametrize("url, words", [
    ("not a url", "not an http(s) URL"),
    ("http://127.0.0.1:99999/v1", "no valid port"),
    ("http://127.0.0.1:1/v1", "connection refused"),
])
def test_a_bad_or_unreachable_url_is_one_line_and_exit_2(cli, teacher, tmp_path, url, words):
    out = tmp_path / "student"
    code, _, err = cli("distill", "--teacher-url", url, "--tokenizer", teacher / "tokenizer.json", "--out", out,
                       "--teacher-retries", "0", *STUDENT)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not out.exists()


def test_teacher_url_needs_top_k_and_the_tokenizer(cli, teacher, tmp_path):
    code, _, err = cli("distill", "--teacher-url", "http://127.0.0.1:1/v1", "--out", tmp_path / "s",
                       "--tokenizer", teacher / "tokenizer.json", "--tokens", "2k", "--n-layers", "1")
    assert code == 2 and "--top-k" in err
    code, _, err = cli("distill", "--teacher-url", "http://127.0.0.1:1/v1", "--teacher", teacher,
                       "--out", tmp_path / "s", "--top-k", "4", "--tokens", "2k", "--n-layers", "1")
    assert code == 2 and "not --teacher and --teacher-url" in err


@pytest.mark.slow
def test_a_hugging_face_teacher_is_served_over_its_tokenizer_ids(tmp_path):
    """A Llama with its output layer padded to 384 rows behind a 320-id tokenizer: the server ranks
    the tokenizer's ids only, as `distill --teacher` does in process."""
    import inspect

    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from distillscale.data.tokenizer import END_OF_TEXT, train_byte_level_bpe

    directory = tmp_path / "hf"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer = train_byte_level_bpe([inspect.getsource(json) * 50], vocab_size=320)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(directory)
    serving = Serving(make_teacher_server(TeacherService(directory, top_k=K)))
    try:
        client = TeacherClient(serving.url, K, vocab_size=320)
        prompts = torch.randint(0, 320, (2, 9), generator=torch.Generator().manual_seed(1))
        answer = client.top_logprobs(prompts)
        assert client.model.max_model_len == 65 and client.model.about["kind"] == "hf"
    finally:
        serving.stop()
    with torch.no_grad():
        logits = LlamaForCausalLM.from_pretrained(directory)(prompts[:, :-1]).logits[..., :320]
    values, ids = logits.float().log_softmax(-1).topk(K, dim=-1)
    assert torch.equal(answer.ids, ids) and torch.allclose(answer.log_probs, values, atol=1e-5)


@pytest.mark.slow
def test_serve_teacher_command_prints_its_address_and_serves(teacher):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "distillscale.cli", "serve-teacher", str(teacher), "--port", "0",
                               "--top-k", "4", "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert line.startswith("teacher ") and " at http://127.0.0.1:" in line, line + server.stderr.read()
        url = line.split(" at ")[1].split()[0]
        client = TeacherClient(url, 4)
        answer = client.top_logprobs(torch.tensor([[1, 2, 3]]))
        assert answer.ids.shape == (1, 2, 4) and client.model.name == str(teacher)
        with pytest.raises(UserError, match="--top-k 5 is more than"):
            TeacherClient(url, 5).connect()
    finally:
        server.terminate()
        server.wait(timeout=10)
