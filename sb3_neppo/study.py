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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from sb3_neppo.errors import ConfigError

Key = tuple[int, int, int]  # (iteration, direction, sign)
JOURNAL_NAME = "study.journal"


def open_storage(url: str | None, folder: Path) -> BaseStorage:
    """``None``: the embedded journal file ``<folder>/study.journal``; a path ending in ``.journal``/``.log``: that
    journal file; anything else: an Optuna RDB URL (``sqlite:///...``, ``postgresql://user:pw@host/db``)."""
    try:
        if url is None or url.endswith((".journal", ".log")):
            path = folder / JOURNAL_NAME if url is None else Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise ValueError("not a storage URL")
        return RDBStorage(url)
    except Exception as exc:  # SQLAlchemy/driver errors come in many classes; one line is what the user needs
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot open Optuna storage {url!r}: {reason}; give sqlite:///file.db, postgresql://user:pw@host/db or a "
            "file.journal path"
        ) from None


def _plain(value: Any) -> Any:
    """JSON-able copy (numpy scalars and arrays become Python numbers and lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
) -> optuna.Study:
    """Create the study, or load it if it exists with the same ``settings`` (else a one-line error, nothing written)."""
    settings = _plain(settings)
    try:
        existing = storage.get_study_id_from_name(study_name)
    except KeyError:
        existing = None
    if existing is not None:
        stored = storage.get_study_user_attrs(existing).get("settings")
        if stored != settings:
            diffs = sorted(k for k in set(stored or {}) | set(settings) if (stored or {}).get(k) != settings.get(k))
            raise ConfigError(
                f"study '{study_name}' was created with other settings ({', '.join(diffs)} differ); use the same command "
                "to resume it, or another --study-name"
            )
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="minimize", sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:
        message = f"study '{study_name}' was created by another process just now; run the command again to join it"
        raise ConfigError(message) from None
    study.set_user_attr("settings", settings)
    return study


class StudyRecorder:
    """Records NePPO's solves as trials of ``study`` and answers which ones already completed (see the module doc).

    A solve is added as one complete trial once it is done (a single storage write), so a killed process never leaves
    a half-written trial behind: the solve it was in the middle of is simply done again.
    """

    def __init__(self, study: optuna.Study):
        self.study = study
        self.completed: dict[Key, optuna.trial.FrozenTrial] = {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self.adopt(trial)

    def lookup(self, key: Key) -> tuple[float, int] | None:
        """(L_β, env steps) of a completed solve, or None."""
        trial = self.completed.get(key)
        return None if trial is None else (float(trial.value), int(trial.user_attrs.get("env_steps", 0)))

    def adopt(self, trial: optuna.trial.FrozenTrial) -> None:
        """Know of a solve that another process recorded (a job of :mod:`sb3_neppo.distributed`)."""
        self.completed[trial_key(trial)] = trial

    def record(self, key: Key, w, objective: float, F, F_se, regret, env_steps: int) -> None:
        iteration, direction, sign = key
        attrs = {"iteration": iteration, "direction": direction, "sign": sign, "w": w, "F": F, "F_se": F_se}
        attrs.update(regret=regret, env_steps=env_steps)
        trial = optuna.trial.create_trial(value=float(objective), user_attrs=_plain(attrs))
        self.study.add_trial(trial)
        self.completed[key] = trial
