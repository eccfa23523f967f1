"""A password given with a server's address is never shown, however the address was written (a
user:password@, or a secret in its query string: ?api_key=, token=, key=, password=, access_token=,
sig=): a URL
whose password holds an unencoded / (hidden up to the last @), and a slightly malformed URL (a leading
space, htp://, ftp://, ws://, http:/, http:alice:pw@) that a command takes for a path. Every command
that takes a URL or a model is checked: nothing it prints (stdout and stderr), writes or keeps in the
cache holds the password, and it refuses in one line, exit 2, without a traceback; a URL that does not
parse (an IPv6 host without its bracket) included."""

from __future__ import annotations

import pytest

from distillscale.errors import UserError
from distillscale.urls import redacted_text, redacted_url
from tests.model.test_served_deadline import corpus_and_tokenizer

SECRET = "S3CRET-pw"

FORMS = [
    f" http://alice:{SECRET}@127.0.0.1:9/v1",     # a leading space
    f"htp://alice:{SECRET}@127.0.0.1:9/v1",
    f"ftp://alice:{SECRET}@127.0.0.1:9/v1",
    f"ws://alice:{SECRET}@127.0.0.1:9/v1",
    f"http:/alice:{SECRET}@127.0.0.1:9/v1",
    f"http:alice:{SECRET}@127.0.0.1:9/v1",
    f"http://alice:pa/{SECRET}@127.0.0.1:9/v1",   # an unencoded / in the password
    f"http://alice:{SECRET}/x@127.0.0.1:9/v1",
    f"http://alice:{SECRET}@[::1:9/v1",           # an IPv6 host without its closing bracket
    "http://[::1:9/v1",                            # (urllib's ValueError was a traceback in plan and teacher)
    f"HTTP://alice:{SECRET}@127.0.0.1:9/v1/chat/completions",
    # a secret in the query string: an API key, a token, a password, a signed URL's signature
    f"http://127.0.0.1:9/v1?api_key={SECRET}",
    f"http://127.0.0.1:9/v1?model=m&token={SECRET}",
    f"http://127.0.0.1:9/v1?KEY={SECRET}&x=1",
    f"http://127.0.0.1:9/v1?password={SECRET}#top",
    f"https://127.0.0.1:9/v1?access_token={SECRET}",
    f"http://127.0.0.1:9/v1?X-Amz-Signature={SECRET}&sig={SECRET}",
]

TINY = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "16", "--tokens", "512", "--seq-len", "16",
        "--batch-size", "4", "--eval-tokens", "256", "--eval-every", "0", "--device", "cpu")

COMMANDS = {
    "plan": ("plan", "--teacher-model", "{url}", "--student-params", "100M", "--compute", "1e20"),
    "plan-json": ("plan", "--teacher-model", "{url}", "--student-params", "100M", "--compute", "1e20", "--json"),
    "loss": ("loss", "{url}", "--data", "{data}", "--tokenizer", "{tokenizer}"),
    "teacher": ("teacher", "--candidates", "{url}", "--student-params", "100M", "--compute", "1e20"),
    "distill-teacher": ("distill", "--teacher", "{url}", "--data", "{data}", "--out", "{out}", *TINY),
    "distill-teacher-url": ("distill", "--teacher-url", "{url}", "--top-k", "4", "--tokenizer", "{tokenizer}",
                            "--data", "{data}", "--out", "{out}", "--teacher-retries", "0", *TINY),
    "demo": ("demo", "--teacher", "{url}", "--data", "{data}", "--quick", "--out", "{out}"),
}


def _files_holding(root, secret: str) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_and_tokenizer(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("form", FORMS, ids=range(len(FORMS)))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_command_shows_or_keeps_a_password_however_the_url_is_written(cli, corpus, tmp_path, monkeypatch,
                                                                         command, form):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("distillscale.model.teacher_limits.TEACHER_RETRIES", 0, raising=False)   # `loss`: refused once
    data, tokenizer = corpus
    args = [part.format(url=form, data=data, tokenizer=tokenizer, out=tmp_path / "out") for part in COMMANDS[command]]
    code, out, err = cli(*args)
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line]   # (a well-formed URL: the corpus prepared first)
    assert len(errors) == 1 and err.strip().splitlines()[-1].startswith("distillscale: error: "), err
    assert SECRET not in out + err, err
    assert "pa/" not in err or "***" in err, err   # the part of a password before its / too
    assert _files_holding(tmp_path, SECRET) == []


@pytest.mark.parametrize("form", FORMS, ids=range(len(FORMS)))
def test_one_redaction_hides_the_password_in_a_value_and_in_any_text_that_echoes_it(form):
    from pathlib import Path

    assert SECRET not in redacted_url(form) and "alice" not in redacted_url(form)
    for text in (f"error: --x {form!r} does not exist", f"model {Path(form)} and {Path.cwd() / form.strip()}",
                 f'{{"url": "{form}"}}'):
        assert SECRET not in redacted_text(text) and "alice" not in redacted_text(text), redacted_text(text)
    assert redacted_text("the path model@v2 and mail me@example.org") == "the path model@v2 and mail me@example.org"


def test_a_settings_or_a_scored_models_repr_holds_no_password():
    from distillscale.evaluation.model_argument import scored_model
    from distillscale.planning.options import PlanSettings
    from distillscale.training.config import DistillConfig

    url = f"http://alice:pa/{SECRET}@127.0.0.1:9/v1"
    fine = f"http://alice:{SECRET}@127.0.0.1:9/v1"
    keyed = f"http://127.0.0.1:9/v1?api_key={SECRET}"
    shown = [repr(PlanSettings(compute=1e20, student_params=1e8, teacher_model=f"ws://alice:{SECRET}@host/v1")),
             repr(PlanSettings(compute=1e20, student_params=1e8, teacher_model=keyed)),
             repr(PlanSettings(compute=1e20, student_params=1e8, teacher_model=url)),
             repr(DistillConfig(out="runs/x", n_layers=2, tokens="1M", top_k=20, tokenizer="tok.json",
                                teacher_url=fine)),
             repr(scored_model(fine, False, None))]
    assert all(SECRET not in text for text in shown), shown
    for refuse in (lambda: DistillConfig(out="runs/x", n_layers=2, tokens="1M", top_k=20, tokenizer="tok.json",
                                         teacher_url=keyed), lambda: scored_model(keyed, False, None)):
        with pytest.raises(UserError) as refused:   # a server's API base has no query: refused, the key not said
            refuse()
        assert SECRET not in str(refused.value) and "api_key=***" in str(refused.value)


@pytest.mark.parametrize("form", [form for form in FORMS if not form.strip().lower().startswith(("http://", "https://"))])
@pytest.mark.parametrize("command", [COMMANDS["plan"], ("loss", "{url}", "--data", "{data}"), COMMANDS["distill-teacher"],
                                     COMMANDS["teacher"]], ids=["plan", "loss", "distill", "teacher"])
def test_an_address_taken_for_a_path_is_said_not_to_be_a_servers_url(cli, corpus, tmp_path, monkeypatch, command, form):
    monkeypatch.setenv("DISTILLSCALE_CACHE", str(tmp_path / "cache"))
    args = [part.format(url=form, data=corpus[0], out=tmp_path / "out") for part in command]
    code, _, err = cli(*args)
    assert code == 2 and "nor is it a server's URL, which starts with http:// or https://" in err, err
