"""NePPO's outer loop as an Optuna study: every evaluated branch is a trial, so a run is stored, resumable and
inspectable with ``optuna-dashboard``.

A trial is one solve at one parameter vector: a branch w ± δu_j of iteration t (``sign`` ±1, ``direction`` j) or the
solve at the iterate itself (``sign`` 0, ``direction`` 0). Its value is L_β; its user attributes hold ``iteration``,
``direction``, ``sign``, ``w``, ``F``, ``F_se``, ``regret`` (null where it needs the regret evaluator) and ``env_steps``.
The study's user attributes hold the settings the run was created with; opening it with other settings is an error.

Resuming: the run folder holds ``checkpoint.zip`` (the model after its last completed iteration, written atomically).
On restart the checkpoint is loaded and the iteration in progress is replayed: a branch whose trial already completed
is not solved again (its stored L_β is used, and its env steps are counted), so at most the in-flight solve is redone
and no completed trial is duplicated. (The solve at the new iterate is redone if the kill came after its trial but
before the checkpoint: the next iteration warm-starts from its policy. It is not recorded twice.)
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from sb3_neppo.branch import Key, Solve, plain
from sb3_neppo.errors import ConfigError, first_line

JOURNAL_NAME = "study.journal"


def open_storage(url: str | None, folder: Path) -> BaseStorage:
    """``None``: the embedded journal file ``<folder>/study.journal``; a path ending in ``.journal``/``.log``: that
    journal file (:func:`open_journal`); anything else: an Optuna RDB URL (``sqlite:///...``,
    ``postgresql://user:pw@host/db``), opened safely while other processes create its schema (:func:`open_rdb`)."""
    try:
        if url is None or url.endswith((".journal", ".log")):
            return open_journal(folder / JOURNAL_NAME if url is None else Path(url))
        if "://" not in url:
            raise ValueError("not a storage URL")
        return open_rdb(url)
    except ConfigError:
        raise
    except Exception as exc:  # SQLAlchemy/driver errors come in many classes; one line is what the user needs
        raise ConfigError(
            f"cannot open Optuna storage {display_url(url)!r}: {first_line(exc)}; give sqlite:///file.db, "
            "postgresql://user:pw@host/db or a file.journal path"
        ) from None


# --- RDB storages: schema creation under concurrency -------------------------------------------------------------------

# What a database says when another process is creating Optuna's schema at the same moment (PostgreSQL: a table or its
# row type created twice, alembic_version stamped twice; SQLite: the same, or the file locked by the other writer).
_SCHEMA_RACES = ("already exists", "duplicate", "unique", "database is locked", "deadlock detected")


def open_rdb(url: str, timeout: float = 120.0) -> RDBStorage:
    """``RDBStorage(url)``, retried with jittered backoff while another process creates the schema.

    Optuna 5 creates its tables, its version row and alembic's stamp on first open, with no lock: several processes
    opening a brand-new database at once collide (``relation "alembic_version" already exists``, a unique violation on
    ``pg_type``, ``database is locked``). Every step is idempotent once it has happened, so the loser of a race simply
    opens again; any other error is raised at once.
    """
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        try:
            return RDBStorage(url)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if not any(s in str(exc).lower() for s in _SCHEMA_RACES) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(2 * delay, 2.0)


# --- journal files: kills, torn records, stale locks --------------------------------------------------------------------


class FlockJournalLock:
    """An ``fcntl.flock`` on ``<journal>.flock``: the kernel releases it when its holder dies, so a killed process never
    leaves a stale lock behind (Optuna's default symlink lock does: given a relative path its link dangles and the next
    opener spins forever; given an absolute one it waits out a 30 s grace period). It has the ``acquire``/``release``
    of Optuna's journal locks (their base class is private). One descriptor per thread, so the heartbeat thread of
    :mod:`sb3_neppo.distributed` and the main thread exclude each other too."""

    def __init__(self, journal: str):
        self.path = journal + ".flock"
        self._held = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd = getattr(self._held, "fd", None)
        if fd is None:
            raise RuntimeError("release() without acquire()")
        self._held.fd = None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class SafeJournalFileBackend(JournalFileBackend):
    """Optuna's journal file, made safe against kills: an absolute path, a lock that dies with its holder
    (:class:`FlockJournalLock`), and a torn last record (a writer killed mid-line) cut off, with a warning, before
    anything is appended after it. (Optuna's reader skips a torn final line, but its writer appends to it, and the
    merged line makes every later read fail.)"""

    def __init__(self, path: Path):
        self.path = os.path.abspath(path)
        self.lock = FlockJournalLock(self.path)
        super().__init__(self.path, self.lock)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with self._locked(), open(self.path, "rb+") as fh:
            fh.seek(self._drop_torn_tail(fh))
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def repair(self) -> None:
        """Cut off a torn last record now (under the lock), so that what is read is what stays."""
        with self._locked(), open(self.path, "rb+") as fh:
            self._drop_torn_tail(fh)

    def _drop_torn_tail(self, fh) -> int:
        """Truncate the open journal after its last newline if a record follows it (with a warning); its new end."""
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return end
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return end
        start = end
        while start > 0:  # back to the byte after the last newline
            step = min(start, 1 << 16)
            fh.seek(start - step)
            cut = fh.read(step).rfind(b"\n")
            if cut >= 0:
                start = start - step + cut + 1
                break
            start -= step
        fh.truncate(start)
        fh.flush()
        os.fsync(fh.fileno())
        warnings.warn(
            f"{self.path} ended in a torn record (a process was killed while writing it): dropped its last "
            f"{end - start} bytes; the solve it recorded is redone",
            stacklevel=3,
        )
        return start


def open_journal(path: Path) -> JournalStorage:
    """The Optuna journal file at ``path`` (created if missing), safe against kills (:class:`SafeJournalFileBackend`).

    A journal that cannot be read back (a damaged record before the last one, or a file that is not a journal) is one
    line, never a silent new study."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = SafeJournalFileBackend(path)
    backend.repair()
    try:
        return JournalStorage(backend)
    except (ValueError, KeyError, TypeError, AttributeError):  # json.JSONDecodeError is a ValueError
        raise ConfigError(
            f"the journal {path} is damaged ({_first_bad_record(path)}) and cannot be read back; restore it from a copy, "
            "or start a new run (another -f or --storage)"
        ) from None


def _first_bad_record(path: Path) -> str:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError
            except ValueError:
                return f"line {number} is not an Optuna journal record"
    return "its records do not make a valid study history"


def trial_key(trial: optuna.trial.FrozenTrial) -> Key:
    """The (iteration, direction, sign) of a solve's trial."""
    attrs = trial.user_attrs
    return int(attrs["iteration"]), int(attrs["direction"]), int(attrs["sign"])


def display_url(url: str | None) -> str | None:
    """A storage URL fit to print or store: the password masked."""
    if url is None or "://" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: nothing to mask
        return url


def stored_settings(storage: BaseStorage, study_name: str) -> dict[str, Any] | None:
    """The settings a study was created with (None if there is no such study)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id).get("settings", {})


def open_study(
    storage: BaseStorage,
    study_name: str,
    settings: Mapping[str, Any],
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> tuple[optuna.Study, bool]:
    """``(study, created)``: the study created, or loaded if it exists with the same ``settings`` (else a one-line
    error, nothing written). A study without settings and trials (its creator was killed between the two writes) is
    taken over."""
    settings = plain(settings)
    try:
        existing = storage.get_study_id_from_name(study_name)
    except KeyError:
        existing = None
    if existing is not None:
        stored = storage.get_study_user_attrs(existing).get("settings")
        if stored is None and not storage.get_all_trials(existing, deepcopy=False):
            storage.set_study_user_attr(existing, "settings", settings)
        elif stored != settings:
            diffs = sorted(k for k in set(stored or {}) | set(settings) if (stored or {}).get(k) != settings.get(k))
            raise ConfigError(
                f"study '{study_name}' was created with other settings ({', '.join(diffs)} differ); use the same command "
                "to resume it, or another --study-name"
            )
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner), False
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="minimize", sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:
        message = f"study '{study_name}' was created by another process just now; run the command again to join it"
        raise ConfigError(message) from None
    study.set_user_attr("settings", settings)
    return study, True


class StudyRecorder:
    """Records NePPO's solves as trials of ``study`` and answers which ones already completed (see the module doc): the
    one place a run's solves are written and, on resume, read back.

    A solve is added as one complete trial once it is done (a single storage write), so a killed process never leaves
    a half-written trial behind: the solve it was in the middle of is simply done again. A solve that is a trial already
    (a job of :mod:`sb3_neppo.distributed`'s queue) is not added again.
    """

    def __init__(self, study: optuna.Study):
        self.study = study
        self.completed: dict[Key, Solve] = {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if "iteration" in trial.user_attrs:
                self.completed[trial_key(trial)] = Solve.from_trial(trial)

    def lookup(self, key: Key) -> Solve | None:
        """The record of a completed solve (numbers only), or None."""
        return self.completed.get(key)

    def record(self, solve: Solve) -> None:
        if not solve.stored:
            self.study.add_trial(optuna.trial.create_trial(value=float(solve.objective), user_attrs=solve.attrs()))
        self.completed[solve.key] = solve.numbers()
