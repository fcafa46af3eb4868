"""The one exception users see for bad input, and how the command lines report it."""

import sys
from collections.abc import Callable


class ConfigError(ValueError):
    """Bad user input: the message is one line that says what is wrong and how to fix it.

    The command line prints it as ``error: <message>`` with no traceback and exits with status 2.
    """


def run_command(run: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run a command line's ``run(argv)``: a :class:`ConfigError` is one line on stderr and exit status 2, Ctrl-C 130."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
