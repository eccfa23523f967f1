"""A server's URL in messages, records and child processes: its credentials shown as ***, never on a
child's command line (`ps` shows it to every user), whole again in the child from its environment."""

from __future__ import annotations

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
