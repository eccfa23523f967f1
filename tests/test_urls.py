"""A server's URL in messages, records and child processes: its credentials shown as ***, never on a
child's command line (`ps` shows it to every user), whole again in the child from its environment."""

from __future__ import annotations

import json

import pytest

from distillscale.errors import ParameterError, UserError
from distillscale.urls import SERVER_URL_ENV, for_child, redacted_text, restored

SECRET = "http://me:pa55-w0rd@127.0.0.1:8000/v1"


def test_every_url_in_a_message_loses_its_credentials_and_other_at_signs_stay():
    text = f"--law {SECRET}: unknown; also HTTPS://a:b@host/x, the path model@v2 and mail me@example.org"
    assert redacted_text(text) == ("--law http://***@127.0.0.1:8000/v1: unknown; also HTTPS://***@host/x, the path "
                                   "model@v2 and mail me@example.org")


@pytest.mark.parametrize("error", [UserError(f"unknown law {SECRET!r}: use a preset"),
                                   ParameterError("law", "unknown {} {value!r}", value=SECRET)])
def test_no_user_error_carries_a_urls_password_however_it_was_written(error):
    assert "pa55-w0rd" not in str(error) and "http://***@127.0.0.1:8000/v1" in str(error)


@pytest.mark.parametrize("args, words", [(("plan", "--law", f"{SECRET}/law.json", "--compute", "1e20",
                                           "--student-params", "1B"), "unknown law"),
                                         (("data", "prepare", "--data", f"{SECRET}/corpus"), "does not exist")])
def test_the_error_lines_of_a_law_or_data_given_as_a_url_hide_its_password(cli, tmp_path, monkeypatch, args, words):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path))
    code, out, err = cli(*args)
    assert code == 2 and words in err and "pa55-w0rd" not in out + err and "http://***@127.0.0.1:8000" in err, err


def test_a_child_gets_the_url_redacted_on_its_command_line_and_whole_in_its_environment(monkeypatch):
    argument, environment = for_child(SECRET)
    assert argument == "http://***@127.0.0.1:8000/v1" and environment == {SERVER_URL_ENV: SECRET}
    monkeypatch.setenv(SERVER_URL_ENV, SECRET)
    assert restored(argument) == SECRET
    # only the URL the environment's redacts to: another server, port or path is left as given
    for other in ("http://***@127.0.0.2:8000/v1", "http://***@127.0.0.1:8001/v1", "https://***@127.0.0.1:8000/v1"):
        assert restored(other) == other
    assert for_child("http://127.0.0.1:8000/v1") == ("http://127.0.0.1:8000/v1", {})
    assert for_child("/models/teacher") == ("/models/teacher", {})


def test_a_multi_node_launch_pickles_and_runs_only_redacted_urls_and_the_rank_restores_them(monkeypatch, tmp_path):
    """The job's pickled arguments and each node's torchrun command hold `***`; the submitter's
    environment (which sbatch hands on) holds the whole URLs, and the config a rank builds reads them
    whole again; two users of one server cannot both be handed on, and are refused."""
    import sys
    import types

    from distillscale.sweeps.multinode import MultiNodeRun, submit, torchrun_argv
    from distillscale.training.config import DistillConfig

    other = "https://reader:t0ken@teacher.example:8443/v1"
    submitted = {}

    class Executor:
        def __init__(self, folder, cluster=None):
            pass

        def update_parameters(self, **parameters):
            pass

        def submit(self, function, run):
            submitted.update(run=run, environment=dict(__import__("os").environ))
            return "job"

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=Executor))
    monkeypatch.delenv(SERVER_URL_ENV, raising=False)
    argv = ("distill", "--teacher-url", SECRET, f"--teacher-url={other}", "--out", str(tmp_path / "run"))
    assert submit(MultiNodeRun(argv=argv, nodes=2, procs_per_node=1), tmp_path / "jobs") == "job"
    sent = submitted["run"].argv
    assert sent == ("distill", "--teacher-url", "http://***@127.0.0.1:8000/v1",
                    "--teacher-url=https://***@teacher.example:8443/v1", "--out", str(tmp_path / "run"))
    assert "pa55-w0rd" not in " ".join(torchrun_argv(submitted["run"], "node0", "1"))
    assert submitted["environment"][SERVER_URL_ENV].splitlines() == [SECRET, other]
    assert SERVER_URL_ENV not in __import__("os").environ  # the submitter's own environment as it was

    monkeypatch.setenv(SERVER_URL_ENV, submitted["environment"][SERVER_URL_ENV])
    config = DistillConfig(out=tmp_path / "run", n_layers=2, tokens="1M", top_k=20, tokenizer="gpt2",
                            teacher_url=[sent[2], sent[3].partition("=")[2]])
    assert config.teacher_urls() == [SECRET, other]
    assert "pa55-w0rd" not in json.dumps(config.record())  # config.json

    twice = ("distill", "--teacher-url", SECRET, "--teacher-url", SECRET.replace("pa55-w0rd", "other"))
    with pytest.raises(UserError, match="two URLs with different credentials"):
        submit(MultiNodeRun(argv=twice, nodes=1, procs_per_node=1), tmp_path / "jobs")


@pytest.mark.parametrize("given, shown", [
    ("HTTP://me:secret@host:8000/v1", "HTTP://***@host:8000/v1"),
    ("Https://me:secret@host/v1", "Https://***@host/v1"),
    ("http://me:pa ss word@host/v1", "http://***@host/v1"),
    ("http://me:p@ss@host/v1/models", "http://***@host/v1/models"),
])
def test_any_case_of_scheme_is_a_url_and_a_password_with_spaces_is_hidden_whole(given, shown):
    from distillscale.urls import is_url, redacted_text, redacted_url

    assert is_url(given) and redacted_url(given) == shown
    assert redacted_text(f"the server {given} refused") == f"the server {shown} refused"
