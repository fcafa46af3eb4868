"""The one exception users see for bad input, and how the command lines report it."""

import argparse
import sys
import warnings
from collections.abc import Callable


class ConfigError(ValueError):
    """Bad user input: the message is one line that says what is wrong and how to fix it.

    The command line prints it as ``error: <message>`` with no traceback and exits with status 2.
    """


def first_line(exc: BaseException) -> str:
    """An exception's message, one line (its type when it has none): what a one-line error may quote of it."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def run_command(run: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run a command line's ``run(argv)``: a :class:`ConfigError` is one line on stderr and exit status 2, Ctrl-C 130;
    warnings are one line each (``warning: ...``)."""
    warnings.formatwarning = _one_line
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (a ConfigError), not a usage dump."""

    def error(self, message: str) -> None:  # one line, no usage dump
        raise ConfigError(f"{message} (see --help)")


class NePPODeprecationWarning(FutureWarning):
    """A use of sb3_neppo that keeps working for this release and goes in the next (shown by default, as users should
    see it: a ``FutureWarning``)."""
