"""A teacher behind a server, over real HTTP on 127.0.0.1 (no mocks): `serve-teacher` answers the
OpenAI-compatible completions request as vLLM does, `distill --teacher-url` reads it with retries
and timeouts, and a student distilled through the server matches one distilled from the same
teacher in process with the same top-k: to the last bit, since both make the teacher's top-k rows by
the same computation on the same shapes (`training.top_k.top_k_rows`; the server's numbers travel as exact JSON
decimals), so no CPU's kernels and no sampled token can tell the two paths apart."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from distillscale.errors import UserError
from distillscale.training.top_k import teacher_log_probs
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


def same_losses(local: list[dict], remote: list[dict]) -> bool:
    """Whether two runs' logged steps have the same training losses to the last bit (the largest gap
    is printed when they do not: the paths compute differently somewhere)."""
    gap = max(abs(a["loss"] - b["loss"]) for a, b in zip(local, remote, strict=True))
    print(f"training losses apart by at most {gap:.3g} nats/token")
    return gap == 0


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.last_bits  # two paths equal to the last bit: held under CI's second set of kernels too
def test_served_top_k_equals_the_teacher_in_process(served, service):
    prompts = torch.randint(0, 320, (3, 17), generator=torch.Generator().manual_seed(0))
    client = TeacherClient(served.url, K)
    answer = client.top_logprobs(prompts)
    with torch.no_grad():
        log_probs = teacher_log_probs(service.teacher.head(service.teacher.hidden_states(prompts[:, :-1])))
    values, ids = log_probs.topk(K, dim=-1)
    # exactly the teacher's numbers: float32 values travel as JSON decimals that read back to the same bits
    assert torch.equal(answer.ids, ids)
    assert torch.equal(answer.log_probs, values)
    own = log_probs.gather(-1, prompts[:, 1:, None]).squeeze(-1)
    assert torch.equal(answer.token_log_probs.float(), own)
    assert client.requests == 2 and client.retried == 0  # GET /v1/models, one POST for the 3 prompts
    assert client.model.name == str(service.name) and client.model.about.max_logprobs == K


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


@pytest.mark.last_bits  # two paths equal to the last bit: held under CI's second set of kernels too
def test_distilled_through_the_server_matches_the_teacher_in_process(served, teacher, in_process, tmp_path):
    out = tmp_path / "served"
    run_cli("distill", "--teacher-url", served.url, "--tokenizer", teacher / "tokenizer.json", "--out", out, *STUDENT)
    local, remote = metrics(in_process), metrics(out)
    assert [m["step"] for m in local] == [m["step"] for m in remote] == list(range(1, 9))
    assert same_losses(local, remote)
    local_result = json.loads((in_process / "result.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert result["val_loss"] == local_result["val_loss"]
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


def die_then_resume(cli, service, serving, dying, args, out, reference, checkpoint_step: int) -> dict:
    """Run `args` while the server answers through `dying` (which stops it mid-run): exit 2 with one
    line and the checkpoint of `checkpoint_step` intact; then restart the server on its port and run
    again: the run resumes to the metrics and validation loss of `reference`, to the last bit. Returns
    the resumed run's result.json."""
    service.completions = dying
    try:
        code, _, err = cli(*args)
    finally:
        del service.completions
    last = err.strip().splitlines()[-1]  # the lines before it are the progress of the steps before
    assert code == 2 and last.startswith("distillscale: error: the teacher server") and "Traceback" not in err, err
    assert "after 3 tries" in last and "resumes" in last
    assert not (out / "result.json").exists()
    state = torch.load(out / "state" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == checkpoint_step
    serving = Serving(make_teacher_server(service, port=serving.port))
    try:
        code, _, err = cli(*args)
    finally:
        serving.stop()
    assert code == 0, err
    local, resumed = metrics(reference), metrics(out)
    assert [m["step"] for m in resumed] == list(range(1, 9))  # the steps after the checkpoint once: the log was cut back
    assert same_losses(local, resumed)
    result = json.loads((out / "result.json").read_text())
    assert result["val_loss"] == json.loads((reference / "result.json").read_text())["val_loss"]
    return result


@pytest.mark.last_bits  # two paths equal to the last bit: held under CI's second set of kernels too
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
    # 2: the last checkpoint before the server died (--save-every 2)
    die_then_resume(cli, service, serving, dying, args, out, in_process, checkpoint_step=2)


@pytest.mark.parametrize("url, words", [
    ("not a url", "not an http(s) URL"),
    ("http://127.0.0.1:99999/v1", "no valid port"),
    ("http://127.0.0.1:1/v1", "connection refused"),
])
def test_a_bad_or_unreachable_url_is_one_line_and_exit_2(cli, teacher, tmp_path, url, words):
    out = tmp_path / "student"
    code, _, err = cli("distill", "--teacher-url", url, "--tokenizer", teacher / "tokenizer.json", "--out", out,
                       "--teacher-retries", "0", *STUDENT)
    # One line of error; the data's preparation prints its progress first when no earlier test prepared it,
    # and the corpus's split warnings at every use of it.
    lines = [line for line in err.strip().splitlines()
             if "━" not in line and not line.startswith(("prepared ", "warning: "))]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
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
        assert client.model.max_model_len == 65 and client.model.about.kind == "hf"
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


# -- G3: what a server says is validated in one pass before anything uses it ---------------------

def served_answer(service, prompts: torch.Tensor) -> dict:
    return service.completions({"model": service.name, "prompt": prompts.tolist(), "max_tokens": 0, "echo": True,
                                "logprobs": K, "return_tokens_as_token_ids": True})


def first_top(answer: dict, choice: int = 0) -> dict:
    return answer["choices"][choice]["logprobs"]["top_logprobs"][1]


def renamed(top: dict, old: str, new: str) -> dict:
    return {new if key == old else key: value for key, value in top.items()}


def non_canonical(answer):  # one id spelt with a leading zero: token_id:05 next to token_id:5
    top = first_top(answer)
    key = next(key for key in top if key != "token_id:0")
    answer["choices"][0]["logprobs"]["top_logprobs"][1] = renamed(top, key, key.replace(":", ":0"))


def superscript(answer):  # "²".isdigit() is true, int("²") fails
    top = first_top(answer)
    answer["choices"][0]["logprobs"]["top_logprobs"][1] = renamed(top, next(iter(top)), "token_id:²")


TAMPERED = {
    "a positive log-probability of the prompt token": (
        lambda a: a["choices"][0]["logprobs"]["token_logprobs"].__setitem__(2, 5.0), "not a finite number <= 0"),
    "a NaN log-probability": (
        lambda a: a["choices"][1]["logprobs"]["token_logprobs"].__setitem__(1, float("nan")), "NaN"),
    "a log-probability written as a string": (
        lambda a: first_top(a).update({next(iter(first_top(a))): "-0.5"}), "not a finite number <= 0"),
    "one id spelt two ways": (non_canonical, "is not of the form 'token_id:<id>'"),
    "a superscript digit": (superscript, "is not of the form 'token_id:<id>'"),
    "an id beyond int64": (lambda a: first_top(a).update({"token_id:" + "9" * 30: -20.0}),
                           "is not of the form 'token_id:<id>'"),
    # 8 or 9 entries (the token's own is added where it is not among the top 8, as the weights decide)
    "top-k log-probabilities all 0": (lambda a: first_top(a).update(dict.fromkeys(first_top(a), 0.0)),
                                      "sum to [89], more than 1"),
    "every choice with index 0": (lambda a: a["choices"][1].update(index=0), "two choices with index 0"),
    "a boolean index": (lambda a: a["choices"][1].update(index=True), "not an integer in 0..1"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_served_answer_that_is_not_a_distribution_is_refused(service, case):
    from distillscale.training.remote_teacher import ServerError, validated_answer

    prompts = torch.randint(0, 300, (2, 5), generator=torch.Generator().manual_seed(0))
    good = served_answer(service, prompts)
    validated_answer(json.loads(json.dumps(good)), tuple(prompts.shape), K, 320)  # the untouched answer passes
    tamper, words = TAMPERED[case]
    answer = json.loads(json.dumps(good))
    tamper(answer)
    with pytest.raises(ServerError, match=words):
        validated_answer(answer, tuple(prompts.shape), K, 320)


def _distil_with_replaced(cli, served, service, teacher, tmp_path, name, replacement):
    """Distil through the served teacher while its service's method `name` is `replacement`."""
    setattr(service, name, replacement)
    try:
        return cli("distill", "--teacher-url", served.url, "--tokenizer", teacher / "tokenizer.json",
                   "--out", tmp_path / "s", "--teacher-retries", "0", *STUDENT)
    finally:
        delattr(service, name)


def test_a_served_teacher_with_positive_log_probabilities_stops_the_run_in_one_line(cli, served, service, teacher,
                                                                                     tmp_path):
    """It gave "teacher validation loss -5.0000" and trained on it."""
    completions = service.completions

    def positive(request):
        answer = completions(request)
        for choice in answer["choices"]:
            own = choice["logprobs"]["token_logprobs"]
            own[1:] = [5.0] * (len(own) - 1)
        return answer

    code, _, err = _distil_with_replaced(cli, served, service, teacher, tmp_path, "completions", positive)
    last = err.strip().splitlines()[-1]  # the lines before it: preparing the student's data
    assert code == 2 and last.startswith(f"distillscale: error: the teacher server at {served.url}"), err
    assert "log-probability 5.0 is not a finite number <= 0" in last and "Traceback" not in err
    assert "-5.0000" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("change, words", [
    ({"distillscale": {"non_embedding_params": "lots"}}, 'distillscale.non_embedding_params "lots"'),
    ({"distillscale": {"non_embedding_params": 0}}, "distillscale.non_embedding_params 0"),
    ({"distillscale": {"forward_flops_per_token": {"base": -1, "per_context_token": 2}}},
     "distillscale.forward_flops_per_token.base -1"),
    ({"distillscale": {"max_logprobs": True}}, "distillscale.max_logprobs true"),
    ({"distillscale": "yes"}, 'distillscale "yes"'),
    ({"max_model_len": 0}, "states max_model_len 0"),
    ({"max_model_len": "65"}, 'states max_model_len "65"'),
])
def test_a_served_model_card_is_validated_before_the_run(cli, served, service, teacher, tmp_path, change, words):
    """A card with "non_embedding_params": "lots" crashed with a pydantic traceback after the run
    trained; max_model_len 0 advised --seq-len -1."""
    models = service.models

    def card():
        answer = models()
        first = answer["data"][0]
        for key, value in change.items():
            first[key] = {**first[key], **value} if isinstance(value, dict) else value
        return answer

    code, _, err = _distil_with_replaced(cli, served, service, teacher, tmp_path, "models", card)
    last = err.strip().splitlines()[-1]  # the lines before it: preparing the student's data
    assert code == 2 and "Traceback" not in err, err
    assert last.startswith(f"distillscale: error: the teacher server at {served.url}/models") and words in last, err
    assert not (tmp_path / "s").exists()


def test_a_student_of_a_served_teacher_trains_on_its_unique_tokens_subset(served, teacher, tmp_path):
    """G1: the served teacher's sampler draws from --unique-tokens' subset, as the default one does."""
    run_cli("distill", "--teacher-url", served.url, "--tokenizer", teacher / "tokenizer.json", "--out", tmp_path / "s",
            *STUDENT, "--unique-tokens", "2048")
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    assert result["unique_tokens"] == 2048 and result["epochs"] == pytest.approx(result["tokens"] / 2048)


@pytest.mark.parametrize("length", ["\u00b2", "\u0663"])  # a superscript two, an Arabic-Indic three
def test_a_content_length_of_non_ascii_digits_is_a_400(served, length):
    """str.isdigit() accepts them and int() does not: the server answered 500."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/completions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", length.encode("utf-8"))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 400 and "Content-Length" in json.loads(response.read())["error"]["message"]
    finally:
        connection.close()


@pytest.mark.parametrize("timeout, words", [("inf", "finite number"), ("1e300", "less than or equal to 86400")])
def test_a_teacher_timeout_too_long_for_a_socket_is_one_line(cli, teacher, tmp_path, timeout, words):
    """--teacher-timeout inf reached the socket as an OverflowError traceback."""
    code, _, err = cli("distill", "--teacher-url", "http://127.0.0.1:1/v1", "--tokenizer", teacher / "tokenizer.json",
                       "--out", tmp_path / "s", "--teacher-timeout", timeout, *STUDENT)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--teacher-timeout" in err and words in err, err


@pytest.mark.parametrize("url", ["http://user:s3cret@127.0.0.1:1/v1", "user:s3cret@127.0.0.1:1/v1",
                                 "http://user:s3cret@127.0.0.1:99999/v1"])
def test_a_password_in_the_teacher_url_is_never_printed_or_recorded(cli, teacher, tmp_path, url):
    code, out, err = cli("distill", "--teacher-url", url, "--tokenizer", teacher / "tokenizer.json",
                         "--out", tmp_path / "s", "--teacher-retries", "0", *STUDENT)
    assert code == 2 and "s3cret" not in out + err and "***@" in err, err
    client = TeacherClient("http://user:s3cret@127.0.0.1:1/v1", K)
    assert client.record().url == "http://***@127.0.0.1:1/v1" and "s3cret" in client.endpoint


class NeedsPassword(Garbage):
    """A model list behind HTTP Basic authorization (user "me", password "s3cr@t"); records what it was asked."""

    body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 64}]}).encode()
    asked: list = []

    def do_GET(self):  # noqa: N802
        self.asked.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"me:s3cr@t").decode():
            self.send_response(401)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self._garbage()


def test_a_user_and_password_in_the_teacher_url_go_as_basic_authorization():
    """The URL's credentials (percent-encoded as a URL writes them) reach the server as HTTP Basic
    authorization, never as part of the host; without them the server's refusal is one line."""
    from distillscale.model.served import served_model

    serving = Serving(ThreadingHTTPServer(("127.0.0.1", 0), NeedsPassword))
    try:
        port = serving.port
        model = TeacherClient(f"http://me:s3cr%40t@127.0.0.1:{port}/v1", K, retries=0).connect()
        assert model.name == "m" and NeedsPassword.asked[-1][0] == "/v1/models"
        assert served_model(f"http://me:s3cr%40t@127.0.0.1:{port}", "--teacher-model").name == "m"
        with pytest.raises(UserError, match="HTTP 401") as error:
            served_model(f"http://127.0.0.1:{port}/v1", "--teacher-model")
        assert "\n" not in str(error.value)
    finally:
        serving.stop()


def test_config_json_keeps_no_password_and_a_new_password_still_resumes(teacher, tmp_path):
    """config.json (and the resume hash) held the --teacher-url password in clear."""
    from distillscale.training.config import DistillConfig

    def config(password):
        return DistillConfig(teacher_url=f"http://user:{password}@127.0.0.1:1/v1", top_k=K, n_layers=1,
                             tokens=2560, tokenizer=teacher / "tokenizer.json", out=tmp_path / "s")

    record = config("s3cret").record()
    assert record["teacher_url"] == "http://***@127.0.0.1:1/v1" and "s3cret" not in json.dumps(record)
    assert config("s3cret").hash() == config("rotated").hash()
    assert config("s3cret").differing_keys(config("rotated")) == []
    assert DistillConfig.model_validate(record).hash() == config("s3cret").hash()  # the stored config reads back


def test_serve_teacher_names_its_own_argument_for_a_missing_teacher(cli, tmp_path):
    code, _, err = cli("serve-teacher", tmp_path / "nope")
    assert code == 2 and "serve-teacher's TEACHER argument" in err and "--teacher" not in err, err


ON_POLICY = ("--on-policy-fraction", "0.5", "--on-policy-prompt-tokens", "8",
             "--on-policy-continuation-tokens", "8")


@pytest.fixture(scope="module")
def on_policy_in_process(teacher, tmp_path_factory):
    """On-policy from the teacher in process, with the same --top-k K targets as the served path."""
    out = tmp_path_factory.mktemp("runs") / "on-policy-in-process"
    run_cli("distill", "--teacher", teacher, "--out", out, *STUDENT, *ON_POLICY)
    return out


@pytest.mark.last_bits  # two paths equal to the last bit: held under CI's second set of kernels too
def test_on_policy_through_the_server_matches_the_teacher_in_process(served, teacher, on_policy_in_process, tmp_path):
    out = tmp_path / "served-on-policy"
    run_cli("distill", "--teacher-url", served.url, "--tokenizer", teacher / "tokenizer.json", "--out", out,
            *STUDENT, *ON_POLICY)
    local, remote = metrics(on_policy_in_process), metrics(out)
    assert [m["step"] for m in local] == [m["step"] for m in remote] == list(range(1, 9))
    # the same student after every step, so the same rollouts: a token drawn differently would move a loss by 1e-2
    assert same_losses(local, remote)
    result = json.loads((out / "result.json").read_text())
    local_result = json.loads((on_policy_in_process / "result.json").read_text())
    assert result["val_loss"] == local_result["val_loss"]
    on_policy = result["on_policy"]
    assert on_policy["generated_tokens"] == local_result["on_policy"]["generated_tokens"] == 4 * 8 * 8
    record = result["teacher_server"]
    # GET /models, 4 validation requests, the top-k check, 4 corpus batches and 4 rollouts (the corpus windows
    # of on-policy batches are not sent), each one request
    assert record["requests"] == 1 + 4 + 1 + 4 + 4 and record["retries"] == 0
    assert 0 < record["mean_tail_mass"] < 1 and "kept in the loss" in record["tail_mass"]
    # the top-k check is kept beside the on-policy record (it was dropped for on-policy runs, in process too)
    assert result["top_k_targets"]["path"] == "served" and local_result["top_k_targets"]["path"] == "in-process"


@pytest.mark.last_bits  # two paths equal to the last bit: held under CI's second set of kernels too
def test_a_server_that_dies_mid_on_policy_run_stops_it_and_it_resumes(cli, service, teacher, on_policy_in_process,
                                                                      tmp_path):
    """The server dies while scoring the student's third rollout (step 6): the run stops with one line
    (exit 2), its checkpoint of step 4 intact; restarted, the same command resumes it (rollouts regenerated
    from seed, step and rank, and scored again) to the loss of the uninterrupted in-process run."""
    serving = Serving(make_teacher_server(service))
    rollouts, completions = [0], service.completions

    def dying(request):
        # a rollout is sent with its last token repeated (the teacher never reads it); a corpus batch is not
        if all(prompt[-1] == prompt[-2] for prompt in request["prompt"]):
            rollouts[0] += 1
            if rollouts[0] == 3:
                threading.Thread(target=serving.stop).start()
                raise ConnectionAbortedError("the server died")
        return completions(request)

    out = tmp_path / "resumed-on-policy"
    args = ("distill", "--teacher-url", serving.url, "--tokenizer", teacher / "tokenizer.json", "--out", out,
            "--teacher-retries", "2", *STUDENT, *ON_POLICY)
    result = die_then_resume(cli, service, serving, dying, args, out, on_policy_in_process, checkpoint_step=4)
    assert result["on_policy"]["generated_tokens"] == 4 * 8 * 8


def _rescaled(completions, total: float):
    """`completions` with every position's top-K log-probabilities (the prompt token's, added when it is not
    among them, left out) rescaled to probabilities summing to `total`: a confident teacher, as rounded."""
    def answer(request):
        result = completions(request)
        for choice in result["choices"]:
            tops = choice["logprobs"]["top_logprobs"]
            for j, top in enumerate(tops[1:], 1):
                top = dict(sorted(top.items(), key=lambda item: -item[1])[:K])
                shift = math.log(total / math.fsum(math.exp(value) for value in top.values()))
                tops[j] = {key: value + shift for key, value in top.items()}
        return result
    return answer


def test_a_served_top_k_rounded_above_one_keeps_an_empty_tail(cli, served, service, teacher, tmp_path):
    """M4: the validator took sums up to 1.02 as rounding, the loss took those above 1.001 as unnormalised
    and moved most of a confident row into the tail ("estimated", mean top-k mass 0.4-0.8), while
    teacher_server said the tail was 0. One rule now: such a row is the row divided by its sum."""
    runs = {}
    for total in (1.0, 1.015):
        _distil_with_replaced(cli, served, service, teacher, tmp_path / str(total), "completions",
                              _rescaled(service.completions, total))
        runs[total] = tmp_path / str(total) / "s"
    result = json.loads((runs[1.015] / "result.json").read_text())
    targets, record = result["top_k_targets"], result["teacher_server"]
    assert targets["tail"] == "known" and targets["mean_top_k_mass"] == pytest.approx(1.0, abs=1e-6), targets
    assert record["mean_tail_mass"] == pytest.approx(0.0, abs=1e-6), record
    assert [m["loss"] for m in metrics(runs[1.015])] == pytest.approx([m["loss"] for m in metrics(runs[1.0])],
                                                                      abs=1e-5)
    from distillscale.training.remote_teacher import ServerError, validated_answer

    prompts = torch.tensor([[1, 2, 3]])
    with pytest.raises(ServerError, match="sum to 1.03, more than 1"):  # beyond rounding: refused
        validated_answer(_rescaled(lambda request: served_answer(service, prompts), 1.03)(None), (1, 3), K, 320)
