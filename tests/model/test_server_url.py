"""A server's URL is taken as given: the server itself (its /v1 then), its /v1 base (behind any prefix)
or an endpoint under it; a path that names no endpoint, a query or a fragment is refused in one line
instead of being appended to (http://host/api was asked at http://host/api/v1/completions)."""

from __future__ import annotations

import pytest

from distillscale.errors import UserError
from distillscale.model.served import api_base, server_url


@pytest.mark.parametrize("given, base", [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/completions", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/models/", "http://127.0.0.1:8000/v1"),
    ("https://me:pw@host/teacher/v1/completions", "https://me:pw@host/teacher/v1"),
    (" http://[::1]:8000/v1 ", "http://[::1]:8000/v1"),
])
def test_a_url_that_names_the_server_or_an_endpoint_is_taken_as_given(given, base):
    assert api_base(given) == base


@pytest.mark.parametrize("given, words", [
    ("http://127.0.0.1:8000/api", "names no endpoint"),
    ("http://127.0.0.1:8000/v2", "names no endpoint"),
    ("http://127.0.0.1:8000/completions", "names no endpoint"),
    ("http://127.0.0.1:8000/v1/chat/completions", "names no endpoint"),
    ("http://127.0.0.1:8000/v1/completions/extra", "names no endpoint"),
    ("http://127.0.0.1:8000/v1?key=1", "?query or #fragment"),
    ("http://127.0.0.1:8000/v1#top", "?query or #fragment"),
    ("http://[::1:8000/v1", "no valid host"),
    ("http://127.0.0.1:99999/v1", "no valid port"),
    ("http://me:pa/ss@127.0.0.1:8000/v1", "%-encode it"),
    ("ws://127.0.0.1:8000/v1", "not an http(s) URL"),
])
def test_any_other_url_is_refused_in_one_line_naming_the_flag(given, words):
    with pytest.raises(UserError, match="^--teacher-url ") as error:
        server_url(given, "--teacher-url")
    said = str(error.value)
    assert words in said and "\n" not in said and "pa/ss" not in said and "ss@" not in said, said
