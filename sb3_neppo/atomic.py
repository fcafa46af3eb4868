"""Atomic writes of results: a reader never sees a half-written file, a crash never destroys the previous one."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is synced and renamed over ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open applies the umask (0644 as a rule), as a plain open() does; tempfile.mkstemp would make the file 0600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    with atomic_open(path) as fh:
        fh.write(json.dumps(data, indent=2) + "\n")


def write_yaml_atomic(path: str | os.PathLike, data: Any) -> None:
    with atomic_open(path) as fh:
        fh.write(yaml.safe_dump(data, sort_keys=False))


def read_lines(path: str | os.PathLike) -> list[str]:
    """The complete lines of a text file a killed process may have torn (a last line with no newline is dropped)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return lines[:-1]  # the part after the last newline is empty, or torn
