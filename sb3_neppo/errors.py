"""The one exception users see for bad input."""


class ConfigError(ValueError):
    """Bad user input: the message is one line that says what is wrong and how to fix it.

    The command line prints it as ``error: <message>`` with no traceback and exits with status 2.
    """
