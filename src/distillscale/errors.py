"""The exception types for bad user input.

Library code raises `UserError` with a one-line message that says what is wrong and how to fix it;
the CLI prints it without a traceback and exits with status 2. When the bad input is one argument of
a library call, `ParameterError` names it: as the Python parameter (`executor`) from Python, as the
flag (`--executor`) from the command line.
"""


class UserError(ValueError):
    """Bad input from the user (file, flag, config). The message is shown as is."""


class ParameterError(UserError):
    """A bad value of the parameter `param`; `template` says what is wrong with `{}` where the
    parameter's name goes: ParameterError("compute", "{} must be positive, got -1"). A message about
    how parameters combine names several: ParameterError(("teacher.tokens", "teacher.loss"),
    "give exactly one of {} or {}"); a field of a record argument is dotted (`teacher.loss`)."""

    def __init__(self, param: str | tuple[str, ...], template: str):
        self.params = (param,) if isinstance(param, str) else tuple(param)
        self.param = self.params[0]
        self.template = template
        super().__init__(template.format(*self.params))

    def for_cli(self, flags: dict[str, str] | None = None) -> str:
        """The message naming the flags: `flags` maps parameters to flags whose name differs from
        --the-parameter (dots and underscores become hyphens: teacher.loss -> --teacher-loss)."""
        return self.template.format(*((flags or {}).get(param) or "--" + param.replace("_", "-").replace(".", "-")
                                      for param in self.params))
