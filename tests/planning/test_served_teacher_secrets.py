"""A served teacher's password, given in its URL (http://user:password@host:port/v1), is sent to that
server as HTTP Basic authorization and nowhere else: after `loss`, `plan --teacher-model` and `teacher
--candidates` (as text, --json and --out), no output, no file written and nothing in distillscale's
cache holds it, no child process has it on its command line, and a later call that gives no password
finds the measurement without it. Where a served teacher meets the measurement cache, a model's
identity is its weights' content: weights rewritten with their old size and time are measured anew.
A real `serve-teacher` on 127.0.0.1 that refuses requests without the password."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

import distillscale as ds
from distillscale.data.loss_record import LossRecord
from distillscale.errors import UserError
from distillscale.planning.served_teacher import ServedAs, served_teacher
from distillscale.urls import SERVER_URL_ENV
from tests.planning.test_teacher_model_plan import law, teacher  # noqa: F401 (the module's fixtures)
from tests.training.test_served_teacher import Serving

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

PASSWORD = "pa55-w0rd"
TOKEN = base64.b64encode(f"me:{PASSWORD}".encode()).decode()   # what the Authorization header carries
LEAKS = (PASSWORD, TOKEN)


def guarded(teacher_dir):
    """`serve-teacher` of `teacher_dir` on 127.0.0.1 answering only requests with the password while
    `.guard["on"]` (401 otherwise)."""
    from distillscale.serve.teacher import TeacherService, make_teacher_server

    httpd = make_teacher_server(TeacherService(teacher_dir, top_k=4))
    guard = {"on": True}
    served = httpd.RequestHandlerClass

    class Guarded(served):
        def _answer(self, handle):
            if guard["on"] and self.headers.get("Authorization") != f"Basic {TOKEN}":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super()._answer(handle)

    httpd.RequestHandlerClass = Guarded
    serving = Serving(httpd)
    serving.guard = guard
    return serving


@pytest.mark.slow
def test_no_output_file_cache_or_child_command_line_holds_a_served_teachers_password(
        cli, teacher, law, cache_dir, tmp_path, monkeypatch):   # noqa: F811 (fixtures)
    exported, _ = teacher
    path, prepared = law
    children = []
    popen = subprocess.Popen

    def spy(command, *args, **kwargs):   # every child process `plan` and `teacher` start
        children.append((list(command), dict(kwargs.get("env") or os.environ)))
        return popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    serving = guarded(exported)
    bare = serving.url                                   # http://127.0.0.1:PORT/v1
    url = bare.replace("http://", f"http://me:{PASSWORD}@")
    shown = bare.replace("http://", "http://***@")
    outputs, files = [], []

    def run(*args):
        code, out, err = cli(*args)
        assert code == 0, err
        outputs.append(out + err)
        return out

    try:
        law_args = ("--law", path, "--student-params", "20K")
        files.append(tmp_path / "loss.json")
        record = json.loads(run("loss", url, "--data", prepared.directory, "--seq-len", "32", "--json",
                                "--out", files[-1]))
        assert record["model"] == shown and record["model_kind"] == "server"
        assert f"Loss of {shown}" in " ".join(run("loss", url, "--data", prepared.directory, "--seq-len", "32").split())
        plan = json.loads(run("plan", *law_args, "--compute", "1e13", "--teacher-model", url, "--json"))
        assert plan["teacher_model"]["url"] == shown and plan["teacher_model"]["loss"] == record["nats_per_token"]
        assert plan["teacher_model"]["loss_record"]["model"] == shown
        run("plan", *law_args, "--compute", "1e13", "--teacher-model", url)
        ranking = json.loads(run("teacher", *law_args, "--compute", "1e12", "--candidates", url, "--json"))
        assert ranking["candidates"][0]["name"] == shown
        # without the password the server refuses: the children above had it, though not on their command line
        code, _, err = cli("plan", *law_args, "--compute", "1e13", "--teacher-model", bare)
        assert code == 2 and "HTTP 401" in err, err
        outputs.append(err)
        serving.guard["on"] = False   # a server that asks for none: the kept measurement, and no password in it
        later = json.loads(run("plan", *law_args, "--compute", "1e13", "--teacher-model", bare, "--json"))
        assert later["teacher_model"]["loss"] == record["nats_per_token"]
        # kept in the cache: said so, and named after the URL asked (not the one that measured it)
        assert later["teacher_model"]["loss_source"].startswith("measured through the server, from distillscale's cache")
        assert later["teacher_model"]["loss_record"]["model"] == bare
        serving.guard["on"] = True
        # from Python: the plan keeps the URL redacted (its repr, its command line); an upper-case scheme is a URL
        planned = ds.plan(path, compute=1e13, student_params=20e3, teacher_model=url.replace("http://", "HTTP://"))
        outputs += [repr(planned), planned.as_cli_command(), planned.to_json()]
        assert planned.settings.teacher_model == shown.replace("http://", "HTTP://")
    finally:
        serving.stop()
    given = [command[command.index("loss") + 1] for command, _ in children]
    assert set(given) == {shown, bare, shown.replace("http://", "HTTP://")} and given.count(shown) >= 3   # plan twice
    # and teacher with it, then without, then from Python (an upper-case scheme)
    for command, environment in children:
        assert not any(leak in part for part in command for leak in LEAKS), command
        assert environment.get(SERVER_URL_ENV) in (url, url.replace("http://", "HTTP://"), None)
    assert any(environment.get(SERVER_URL_ENV) == url for _, environment in children)
    written = [file for file in files if file.is_file()] + [file for file in cache_dir.rglob("*") if file.is_file()]
    assert len(written) > len(files) >= 1 and any("losses" in file.parts for file in written)
    for text in outputs + [file.read_bytes().decode("utf-8", "replace") for file in written]:
        assert not any(leak in text for leak in LEAKS)


def test_a_record_never_holds_a_urls_credentials_also_one_read_back_from_an_older_file(tmp_path):
    """A cache file written before credentials were kept out of records is read back without them."""
    kept = {"model": f"http://me:{PASSWORD}@127.0.0.1:9/v1", "model_kind": "server", "model_fingerprint": "served:x",
            "losses": {}, "nats_per_token": 3.0, "standard_error": 0.1, "bits_per_byte": None,
            "bits_per_byte_standard_error": None, "tokens": 64, "bytes": None, "windows": 2, "seq_len": 32,
            "max_tokens": None, "device": "server http://***@127.0.0.1:9/v1", "dtype": "as served", "seconds": 1.0,
            "tokens_per_second": 64.0, "created": "2026-11-28T00:00:00+00:00", "format": "distillscale.loss/1"}
    (tmp_path / "old.json").write_text(json.dumps(kept))
    record = LossRecord.load(tmp_path / "old.json")
    assert record.model == "http://***@127.0.0.1:9/v1" and PASSWORD not in record.model_dump_json()


def test_the_advice_for_a_server_that_states_no_size_follows_how_it_was_given():
    """`served_teacher` is told how the teacher was given as a typed ServedAs (its flag and advice)."""
    import http.server
    import threading

    class Bare(http.server.BaseHTTPRequestHandler):   # what vLLM's /v1/models says: no size, no tokenizer
        def do_GET(self):  # noqa: N802
            body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 64}]})
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Bare)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    laws = ds.load_laws("busbridge2025")
    try:
        for given_as, words in ((ServedAs.TEACHER_MODEL, "--teacher-params N with the --teacher-loss"),
                                (ServedAs.CANDIDATES, "a CSV row with its teacher_params")):
            with pytest.raises(UserError) as error:
                served_teacher(url, laws, 32, given_as=given_as)
            assert str(error.value).startswith(f"{given_as.flag} {url}: the server does not state") and \
                words in str(error.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_weights_rewritten_with_their_old_size_and_time_are_measured_anew(cli, teacher, law, tmp_path):  # noqa: F811
    """`rsync -a`, `touch -r`, an archive unpacked with its times: the old loss was returned."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    exported, _ = teacher
    _, prepared = law
    model = tmp_path / "model"
    shutil.copytree(exported, model)
    args = ("--data", prepared.directory, "--seq-len", "32", "--max-tokens", "2k", "--json")
    code, out, err = cli("loss", model, *args)
    assert code == 0, err
    first = json.loads(out)
    weights = model / "model.safetensors"
    before = os.stat(weights)
    with safe_open(str(weights), "pt") as stored:   # the same header, so the same size
        metadata = stored.metadata()
    save_file({name: (value * 1.7).contiguous() for name, value in load_file(str(weights)).items()}, str(weights),
              metadata=metadata)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(weights)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    code, out, err = cli("loss", model, *args)
    assert code == 0, err
    again = json.loads(out)
    assert again["model_fingerprint"] != first["model_fingerprint"]
    assert abs(again["nats_per_token"] - first["nats_per_token"]) > 1e-3   # the new weights' own loss
