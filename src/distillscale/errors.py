"""The exception types for bad user input.

Library code raises `UserError` with a one-line message that says what is wrong and how to fix it;
the CLI prints it without a traceback and exits with status 2. When the bad input is one argument of
a library call, `ParameterError` names it: as the Python parameter (`executor`) from Python, as the
flag (`--executor`) from the command line.
"""

from __future__ import annotations

import string


class UserError(ValueError):
    """Bad input from the user (file, flag, config). The message is shown as is, but for the
    credentials of a server's URL in it (http://user:secret@host -> http://***@host): no message
    carries them, however it was written."""

    def __init__(self, message: object = "", *args):
        from distillscale.urls import redacted_text

        super().__init__(redacted_text(str(message)), *args)


class ParameterError(UserError):
    """A bad value of the parameter `param`; `template` says what is wrong with `{}` where the
    parameter's name goes: ParameterError("compute", "{} must be positive, got -1"). A message about
    how parameters combine names several: ParameterError(("teacher.tokens", "teacher.loss"),
    "give exactly one of {} or {}"); a field of a record argument is dotted (`teacher.loss`).

    The template is code, never user text: a value the user gave goes in as a keyword and a named
    field, ParameterError("scenario", "unknown {} {value!r}", value=scenario), so that braces in it
    (`{a}`, `{}`) are shown as typed instead of being read as fields."""

    def __init__(self, param: str | tuple[str, ...], template: str, **values):
        self.params = (param,) if isinstance(param, str) else tuple(param)
        self.param = self.params[0]
        self.template = template
        self.values = values
        super().__init__(self._render(self.params))

    def for_cli(self, flags: dict[str, str] | None = None) -> str:
        """The message naming the flags: `flags` maps parameters to flags whose name differs from
        --the-parameter (dots and underscores become hyphens: teacher.loss -> --teacher-loss)."""
        return self._render(tuple((flags or {}).get(param) or "--" + param.replace("_", "-").replace(".", "-")
                                  for param in self.params))

    NAME = "\x00name\x00"  # stands for the parameter in a message written by other code

    @classmethod
    def about(cls, param: str, message: str) -> "ParameterError":
        """The error for a message that names the parameter as ParameterError.NAME (a check that is
        told `flag=ParameterError.NAME`); the rest of the message is kept as written, braces too."""
        return cls(param, message.replace("{", "{{").replace("}", "}}").replace(cls.NAME, "{}"))

    def renamed(self, names: dict[str, str]) -> "ParameterError":
        """The same error about a parameter a caller knows under another name (`names`: old to new)."""
        return ParameterError(tuple(names.get(param, param) for param in self.params), self.template, **self.values)

    def _render(self, names: tuple[str, ...]) -> str:
        try:
            return self.template.format(*names, **self.values)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError):
            # A template built with user text in it: show the stray fields as written.
            return _Lenient().format(self.template, *names, **self.values)


class _Lenient(string.Formatter):
    """str.format that leaves a field it cannot fill as it was written (`{a}`, `{}`, `{0!x}`)."""

    def vformat(self, format_string, args, kwargs):
        out, auto = [], 0
        try:
            parsed = list(self.parse(format_string))
        except ValueError:  # unbalanced braces: fill only the bare `{}`
            pieces = format_string.split("{}")
            names = iter(args)
            return pieces[0] + "".join(str(next(names, "{}")) + piece for piece in pieces[1:])
        for literal, field, spec, conversion in parsed:
            out.append(literal)
            if field is None:
                continue
            written = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            try:
                if field == "":
                    auto += 1
                    value = args[auto - 1]
                else:
                    value, _ = self.get_field(field, args, kwargs)
                out.append(self.format_field(self.convert_field(value, conversion), spec or ""))
            except (KeyError, IndexError, ValueError, AttributeError, TypeError):
                out.append(written)
        return "".join(out)


def path_kind(path) -> str:
    """What is at `path`, for a message saying why it cannot be used: "does not exist" (and, for an
    address taken for a path, ws:/host or http:alice:pw@host, that a server's URL starts with http://
    or https://), "is a file", "is a directory" or "is not a regular file"."""
    import os
    import re

    if not os.path.lexists(path):
        if re.search(r"(^|/)\s*[A-Za-z][A-Za-z0-9+.-]*:(/|[^/]*@)", str(path)):
            return "does not exist (nor is it a server's URL, which starts with http:// or https://)"
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory"
    return "is a file" if os.path.isfile(path) else "is not a regular file"
