"""How long a served teacher is waited for, one meaning in every command that asks one (`distill
--teacher-url`, `loss URL`, `plan --teacher-model URL`, `teacher --candidates URL`): each request
--teacher-timeout seconds in all, its whole answer included (`model.served.request_json` holds it to
that), a failed one tried --teacher-retries more times with exponential backoff, so that a server that
never answers is given up after (retries + 1) x timeout + `backoff_seconds(retries)` at most. The
flags' help is written here, once.

    limits = RequestLimits.given(timeout=None, retries=0)   # the defaults where not given
    limits.argv()                                            # the flags for a child command
"""

from __future__ import annotations

from dataclasses import dataclass

from distillscale.errors import UserError

# A served teacher's requests: each given --teacher-timeout seconds in all (its whole answer included),
# a failed one tried again after a backoff of 0.5 s, doubling up to 8 s, TEACHER_RETRIES more times.
DEFAULT_TEACHER_TIMEOUT = 60.0
MAX_TEACHER_TIMEOUT = 86_400.0   # a socket's timeout must fit a C timeval; a day is more than any answer needs
TEACHER_RETRIES = 4
MAX_TEACHER_RETRIES = 20
BACKOFF_SECONDS = 0.5  # the first retry waits this long, each later one twice as long ...
MAX_BACKOFF_SECONDS = 8.0  # ... up to this


def backoff_seconds(retries: int, backoff: float = BACKOFF_SECONDS) -> float:
    """The waits between `retries` + 1 tries, in all."""
    return sum(min(MAX_BACKOFF_SECONDS, backoff * 2 ** attempt) for attempt in range(retries))


TEACHER_TIMEOUT_HELP = (
    f"with a served teacher: seconds one request may take in all, its whole answer included (default "
    f"{DEFAULT_TEACHER_TIMEOUT:g}, at most a day); with the default --teacher-retries a server that never answers is "
    f"given up after at most {TEACHER_RETRIES + 1} x this + {backoff_seconds(TEACHER_RETRIES):g} s")
TEACHER_RETRIES_HELP = (
    f"with a served teacher: retries of a failed request (default {TEACHER_RETRIES}), with exponential backoff from "
    f"{BACKOFF_SECONDS:g} s (at most {MAX_BACKOFF_SECONDS:g} s apart)")


@dataclass(frozen=True)
class RequestLimits:
    """How long a served teacher is waited for: each request `timeout` seconds in all (its whole answer
    included), a failed one tried `retries` more times with backoff."""

    timeout: float = DEFAULT_TEACHER_TIMEOUT
    retries: int = TEACHER_RETRIES

    @classmethod
    def given(cls, timeout: float | None, retries: int | None) -> "RequestLimits":
        """The limits of --teacher-timeout and --teacher-retries, each its default where not given."""
        return cls(DEFAULT_TEACHER_TIMEOUT if timeout is None else timeout,
                   TEACHER_RETRIES if retries is None else retries)

    def longest(self) -> float:
        """The most seconds a request is waited for, its tries and the backoffs between them together."""
        return (self.retries + 1) * self.timeout + backoff_seconds(self.retries)

    def argv(self) -> list[str]:
        """The flags that give these limits to another distillscale command."""
        return ["--teacher-timeout", repr(float(self.timeout)), "--teacher-retries", str(self.retries)]


def timeout_option():
    """The --teacher-timeout of every command that asks a served teacher (one flag, one meaning)."""
    from distillscale.cli_options import option

    return option(None, above=0, max=MAX_TEACHER_TIMEOUT, help=TEACHER_TIMEOUT_HELP)


def retries_option():
    """The --teacher-retries of every command that asks a served teacher."""
    from distillscale.cli_options import option

    return option(None, min=0, max=MAX_TEACHER_RETRIES, help=TEACHER_RETRIES_HELP)


def check_limits_used(timeout: float | None, retries: int | None, served: bool, given_as: str,
                      misspelled: bool = False) -> None:
    """--teacher-timeout or --teacher-retries given where no teacher is served (`given_as`: what would
    name one), refused in one line: they would change nothing. `misspelled`: what was given meant a
    server's URL and is not one (`urls.misspelled_url`): that is said where it is read, not this."""
    for flag, value in (("--teacher-timeout", timeout), ("--teacher-retries", retries)):
        if value is not None and not served and not misspelled:
            raise UserError(f"{flag} is for a served teacher: give {given_as} as its URL, or leave {flag} out")
