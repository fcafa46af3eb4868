"""Run folders: ``<log folder>/<algo>/<env>_<n>`` (rl-baselines3-zoo's layout), one live process each.

A run folder belongs to the command that made it (``command.txt``). The same command again continues the newest of
its folders that has no ``summary.json`` (a killed run); it has started once ``args.yml`` exists. While a process works
in a folder it holds an ``fcntl.flock`` on ``<folder>/.lock`` (the kernel drops it when the process dies, so a killed
run never leaves a stale lock); a second process that finds the folder locked is told who holds it. Finding or making
the folder happens under a lock on ``<log folder>/.lock``, so two identical commands started at the same moment
never both take one folder, nor both make a new one for the same run.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sb3_neppo.atomic import atomic_open, write_json_atomic, write_yaml_atomic
from sb3_neppo.errors import ConfigError
from sb3_neppo.hyperparams_files import yaml_load

LOCK_NAME = ".lock"
STARTED = "args.yml"  # written once a run has started: from then on the folder is resumed, never started afresh
CHECKPOINT = "checkpoint.zip"  # the training state after the last iteration (round boundary); gone once the run ends


class FolderLock:
    """An exclusive ``flock`` on ``path`` (created if missing), recording its holder (host, pid, time) in the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, block: bool = True) -> bool:
        """Take the lock (``block=False``: only if it is free); True if this process now holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it."""
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class RunInUse(ConfigError):
    """The run folder this command would continue is held by a live process."""

    def __init__(self, folder: Path, holder: str):
        self.folder, self.holder = folder, holder
        super().__init__(
            f"{folder} is in use by {holder}: the same command is running there; wait for it to finish (or stop it), "
            "or give another -f to start a separate run"
        )

    def __reduce__(self):  # raised in a worker process (benchmarks' pools), it must cross back whole
        return type(self), (self.folder, self.holder)


@dataclass
class RunFolder:
    """A claimed run folder: this process holds its lock until :meth:`release`."""

    path: Path
    resuming: bool  # the run had started before (args.yml exists): continue it
    lock: FolderLock

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, traceback: Any) -> None:
        """Release the folder; after a :class:`~sb3_neppo.errors.ConfigError` (bad input found once the folder was made),
        remove a new folder that has no checkpoint: nothing of that attempt is kept."""
        if isinstance(exc, ConfigError) and not self.resuming and not self.checkpoint.exists():
            self.discard()
        self.release()

    def discard(self) -> None:
        """Remove the folder of a run that never got anywhere (bad input found after it was made)."""
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def first_args(self) -> dict[str, Any]:
        """The arguments the run's first attempt recorded (``args.yml``; empty for a new run)."""
        return read_yaml(self.path / STARTED) if self.resuming else {}

    def record_start(self, config: dict[str, Any], args: dict[str, Any]) -> None:
        """A new run starts: its resolved settings (``config.yml``), then its arguments (``args.yml``: from now on the
        folder is resumed)."""
        write_yaml_atomic(self.path / "config.yml", config)
        write_yaml_atomic(self.path / STARTED, args)

    def finish(self, model: Any, summary: dict[str, Any]) -> None:
        """The run ends: the final model, ``summary.json`` (which marks the run finished), and no checkpoint."""
        model.save(self.path / "model.zip")
        write_json_atomic(self.path / "summary.json", summary)
        self.checkpoint.unlink(missing_ok=True)


def _safe_name(env_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", env_id)


def _numbered(base: Path, env_id: str) -> list[tuple[int, Path]]:
    safe = _safe_name(env_id)
    pattern = re.compile(rf"{re.escape(safe)}_(\d+)")
    return [(int(m.group(1)), p) for p in base.glob(f"{safe}_*") if (m := pattern.fullmatch(p.name))]


def next_run_folder(log_folder: Path, algo: str, env_id: str, create: bool = True) -> Path:
    """``<log folder>/<algo>/<env>_<n>`` with n one more than the largest existing run (zoo layout)."""
    base = Path(log_folder) / algo
    while True:
        folder = base / f"{_safe_name(env_id)}_{max((n for n, _ in _numbered(base, env_id)), default=0) + 1}"
        if not create:
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:  # made by someone else just now: take the next number
            continue


def find_unfinished_run(log_folder: Path, algo: str, env_id: str, command: str) -> Path | None:
    """The newest run folder made by exactly ``command`` that has no ``summary.json`` yet (a killed run)."""
    candidates = []
    for n, folder in _numbered(Path(log_folder) / algo, env_id):
        command_file = folder / "command.txt"
        if command_file.exists() and not (folder / "summary.json").exists():
            try:
                if command_file.read_text().strip() == command:
                    candidates.append((n, folder))
            except OSError:
                continue
    return max(candidates)[1] if candidates else None


def claim_run_folder(log_folder: Path, algo: str, env_id: str, command: str) -> RunFolder:
    """The folder this command works in, locked: its unfinished run if it has one (resumed once it has started),
    else a new one (with ``command.txt`` written). Raises :class:`RunInUse` if a live process holds it."""
    try:
        (Path(log_folder) / algo).mkdir(parents=True, exist_ok=True)
        base_lock = FolderLock(Path(log_folder) / LOCK_NAME)
        base_lock.acquire()
    except OSError as exc:
        raise ConfigError(f"cannot write to the log folder {log_folder}: {exc.strerror}; give a writable -f") from None
    try:
        folder = find_unfinished_run(log_folder, algo, env_id, command)
        if folder is not None:
            lock = FolderLock(folder / LOCK_NAME)
            if not lock.acquire(block=False):
                raise RunInUse(folder, lock.holder())
            started = (folder / STARTED).exists()
            for entry in folder.iterdir():
                if not started and entry.name not in (LOCK_NAME, "command.txt"):  # killed before it started: afresh
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                elif entry.name.startswith(".") and entry.name.endswith(".tmp"):  # an atomic write cut short by a kill
                    entry.unlink()
            return RunFolder(folder, started, lock)
        folder = next_run_folder(log_folder, algo, env_id)
        lock = FolderLock(folder / LOCK_NAME)
        lock.acquire()
        with atomic_open(folder / "command.txt") as fh:
            fh.write(command + "\n")
        return RunFolder(folder, False, lock)
    finally:
        base_lock.release()


def read_yaml(path: Path) -> dict:
    """A run folder's YAML record (``args.yml``), or one line if it is damaged."""
    try:
        data = yaml_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path} ({type(exc).__name__}); restore it, or give another -f to start anew") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a mapping of arguments; restore it, or give another -f to start anew")
    return data
