"""The one exception type for bad user input.

Library code raises `UserError` with a one-line message that says what is wrong and how to fix it;
the CLI prints it without a traceback and exits with status 2.
"""


class UserError(ValueError):
    """Bad input from the user (file, flag, config). The message is shown as is."""
