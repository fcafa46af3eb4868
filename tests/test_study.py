"""The outer loop as an Optuna study: trials per solve, resume after SIGKILL, bad storage and settings."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sb3_neppo.storage import JOURNAL_NAME, open_storage
from sb3_neppo.train import main

ITERATIONS = 60
ARGS = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "--seed", "3", "-params", f"n_iterations:{ITERATIONS}"]


def _train(log_folder: Path, storage: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sb3_neppo.train", *ARGS, *storage, "-f", str(log_folder)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_a_killed_run_resumes_with_every_completed_trial_exactly_once(tmp_path, request, backend):
    if backend == "journal":  # the embedded default: study.journal in the run folder
        storage, name, url = [], None, None
    else:  # a real PostgreSQL server; a fresh study name per test run (the database outlives it)
        url, name = request.getfixturevalue("postgres_url"), f"killed-{uuid.uuid4().hex[:12]}"
        storage = ["--storage", url, "--study-name", name]

    def _trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
        where = open_storage(url, folder)
        return optuna.load_study(study_name=name or folder.name, storage=where).get_trials(deepcopy=False)

    reference = _train(tmp_path / "reference", [])  # uninterrupted, on the default storage: the numbers do not depend on it
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    proc = _train(tmp_path / "killed", storage)
    folder = tmp_path / "killed" / "neppo" / "matrix-alpha_1"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it for real, mid-run, once a dozen iterations have been written
        progress = folder / "progress.csv"
        if progress.exists() and len(progress.read_text().splitlines()) > 12:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (folder / "summary.json").exists()
    killed_complete = [t for t in _trials(folder) if t.state == TrialState.COMPLETE]
    assert 0 < len(killed_complete) < 1 + ITERATIONS  # exact solvers: a trial per iterate

    resumed = _train(tmp_path / "killed", storage)  # the same command again
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "Resuming" in out
    trials = _trials(folder)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [(t.user_attrs["iteration"], t.user_attrs["direction"], t.user_attrs["sign"]) for t in complete]
    assert len(keys) == len(set(keys)) == 1 + ITERATIONS  # every iterate's solve once, none twice
    assert all(t.number in {c.number for c in complete} for t in killed_complete)  # nothing completed was lost
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)  # at most the in-flight one redone
    summary = json.loads((folder / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "neppo" / "matrix-alpha_1" / "summary.json").read_text())
    assert summary["iterations"] == expected["iterations"] == ITERATIONS
    np.testing.assert_array_equal(summary["potential"]["params"], expected["potential"]["params"])  # same numbers
    rows = (folder / "progress.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, ITERATIONS + 1))  # no row lost or repeated
    assert not (folder / "checkpoint.zip").exists() and (folder / JOURNAL_NAME).exists() == (url is None)


def test_trials_store_w_f_and_regret_and_study_settings_are_checked(tmp_path, capsys):
    args = ["--env", "matrix-alpha", "--seed", "0", "-params", "n_iterations:2", "n_directions:1", "-f", str(tmp_path)]
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    assert main([*args, "--storage", storage, "--study-name", "shared"]) == 0
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 1 + 2  # the start and each iterate: with exact solvers branches are redone, not stored
    centre = [t for t in trials if t.user_attrs["sign"] == 0][-1]
    assert centre.value == pytest.approx(max(centre.user_attrs["F"]), abs=1e-3)  # L_beta ~ max F at beta = 1e4
    assert len(centre.user_attrs["w"]) == 2 and len(centre.user_attrs["regret"]) == 2
    # the same study name with other settings: one line, and nothing written
    assert main([*args, "--storage", storage, "--study-name", "shared", "-params", "delta:0.05"]) == 2
    err = capsys.readouterr().err
    assert "study 'shared' was created with other settings (config differ)" in err and err.count("\n") == 1
    assert len(optuna.load_study(study_name="shared", storage=storage).get_trials()) == 3
    assert len(list((tmp_path / "neppo").iterdir())) == 1  # the refused attempt left no run folder


@pytest.mark.parametrize(
    "storage, message",
    [
        ("not-a-url", "cannot open Optuna storage 'not-a-url'"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open Optuna storage 'postgresql://nobody@127.0.0.1:1/none'"),
    ],
)
def test_bad_storage_is_one_clear_line(tmp_path, capsys, storage, message):
    assert main(["--env", "matrix-alpha", "--storage", storage, "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "neppo").exists() or not any((tmp_path / "neppo").iterdir())


def test_two_workers_on_a_postgresql_study_match_one_worker_on_the_journal(tmp_path, postgres_url):
    args = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.6", "--seed", "5", "-params", "n_iterations:3", "n_directions:2"]
    name = f"workers-{uuid.uuid4().hex[:12]}"
    assert main([*args, "--n-workers", "2", "--storage", postgres_url, "--study-name", name, "-f", str(tmp_path / "pg")]) == 0
    assert main([*args, "-f", str(tmp_path / "journal")]) == 0
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    keys = {(t.user_attrs["iteration"], t.user_attrs["direction"], t.user_attrs["sign"]) for t in trials}
    assert len(trials) == len(keys) == 1 + 3  # exact solvers: one trial per iterate
    summaries = [tmp_path / d / "neppo" / "matrix-alpha_1" / "summary.json" for d in ("pg", "journal")]
    pg, journal = (json.loads(path.read_text()) for path in summaries)
    assert pg["potential"]["params"] == journal["potential"]["params"] and pg["study"]["name"] == name
