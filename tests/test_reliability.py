"""Kills, races, torn files and a fresh machine: a run survives them, and records what ran."""

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sb3_neppo import NePPO
from sb3_neppo.errors import ConfigError
from sb3_neppo.storage import JOURNAL_NAME, open_storage
from sb3_neppo.train import main

ALPHA = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "--seed", "3"]


def _train(cwd: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sb3_neppo.train", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _trial_keys(storage, name: str) -> list[tuple]:
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [(t.user_attrs["iteration"], t.user_attrs["direction"], t.user_attrs["sign"]) for t in trials]


def _numbers(folder: Path) -> dict:
    """What a run computed (not when or how fast): the summary's numbers and progress.csv without wall times."""
    summary = json.loads((folder / "summary.json").read_text())
    keep = ("iterations", "objective", "F", "F_se", "regret", "max_regret", "strategies", "potential", "seed")
    return {"summary": {k: summary[k] for k in keep}, "progress": (folder / "progress.csv").read_text()}


@pytest.mark.slow
def test_four_runs_started_at_once_on_a_brand_new_postgresql_database_all_succeed(tmp_path, fresh_postgres_url):
    """Optuna creates its schema on first open; four processes doing it at once on a new database collided before."""
    storage = ["--storage", fresh_postgres_url]
    procs = [_train(tmp_path, *ALPHA, "-params", "n_iterations:2", *storage, "--study-name", f"four-{i}") for i in range(4)]
    results = [_finish(p) for p in procs]
    assert [rc for rc, _, _ in results] == [0] * 4, [err for _, _, err in results]
    expected = [(0, 0, 0), (1, 0, 0), (2, 0, 0)]  # exact solvers: a trial per iterate
    for i in range(4):
        assert sorted(_trial_keys(fresh_postgres_url, f"four-{i}")) == sorted(expected)


@pytest.mark.slow
def test_four_runs_started_at_once_on_a_new_sqlite_file_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    procs = [
        _train(tmp_path, *ALPHA, "-params", "n_iterations:1", "--storage", url, "--study-name", f"s{i}") for i in range(4)
    ]
    results = [_finish(p) for p in procs]
    assert [rc for rc, _, _ in results] == [0] * 4, [err for _, _, err in results]
    assert all(len(_trial_keys(url, f"s{i}")) == 2 for i in range(4))  # the solves at w0 and w1


@pytest.mark.slow
def test_kill_9_at_any_moment_with_a_relative_log_folder_resumes_to_the_uninterrupted_numbers(tmp_path):
    """Twenty SIGKILLs at random moments (start-up, study creation, mid-journal-write, checkpointing), each followed by
    the same command with the default relative ``-f logs`` until the run finishes: it never hangs, and every run ends
    with the numbers of a run that was never killed, each trial key once, in one run folder."""
    args = [*ALPHA, "-params", "n_iterations:60"]
    reference = tmp_path / "reference"
    reference.mkdir()
    rc, _, err = _finish(_train(reference, *args))
    assert rc == 0, err
    expected = _numbers(reference / "logs" / "neppo" / "matrix-alpha_1")
    rng = np.random.default_rng(0)
    kills, runs = 0, 0
    while kills < 20:
        cwd = tmp_path / f"killed-{runs}"
        cwd.mkdir()
        folder = cwd / "logs" / "neppo" / "matrix-alpha_1"
        while True:
            proc = _train(cwd, *args)
            if kills < 20:
                time.sleep(rng.uniform(0.1, 3.0))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    if (folder / "summary.json").exists():  # killed after the run had finished: nothing to resume
                        break
                    continue
            rc, out, err = _finish(proc, timeout=120)  # a resume that hung on a stale lock would time out here
            assert rc == 0, err
            break
        runs += 1
        assert sorted(p.name for p in (cwd / "logs" / "neppo").iterdir()) == ["matrix-alpha_1"]  # one run, resumed
        assert _numbers(folder) == expected
        keys = _trial_keys(open_storage(None, folder), folder.name)
        assert len(keys) == len(set(keys)) == 1 + 60
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no half-written file left behind


def _killed_run(cwd: Path, args: list[str], rows: int) -> Path:
    """Start ``args`` in ``cwd`` and SIGKILL it once progress.csv has ``rows`` rows."""
    proc = _train(cwd, *args)
    folder = cwd / "logs" / "neppo" / "matrix-alpha_1"
    deadline = time.time() + 120
    while time.time() < deadline:
        progress = folder / "progress.csv"
        if progress.exists() and len(progress.read_text().splitlines()) > rows:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (folder / "summary.json").exists()
    return folder


@pytest.mark.slow
def test_a_torn_last_journal_record_is_dropped_and_the_run_resumes_to_the_same_result(tmp_path):
    args = [*ALPHA, "-params", "n_iterations:30"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference.mkdir(), killed.mkdir()
    assert _finish(_train(reference, *args))[0] == 0
    folder = _killed_run(killed, args, rows=8)
    journal = folder / JOURNAL_NAME
    complete = journal.read_bytes()
    with journal.open("ab") as fh:  # what a kill in the middle of a write leaves: half a record, no newline
        fh.write(complete.splitlines(keepends=True)[-1][:37])
    rc, out, err = _finish(_train(killed, *args))
    assert rc == 0, err
    assert "ended in a torn record" in err and err.count("torn record") == 1
    assert _numbers(folder) == _numbers(reference / "logs" / "neppo" / "matrix-alpha_1")
    keys = _trial_keys(open_storage(None, folder), folder.name)
    assert len(keys) == len(set(keys)) == 1 + 30


@pytest.mark.slow
def test_an_emptied_or_damaged_journal_is_refused_and_the_run_folder_kept(tmp_path):
    args = [*ALPHA, "-params", "n_iterations:30"]
    folder = _killed_run(tmp_path, args, rows=5)
    journal = folder / JOURNAL_NAME
    lines = journal.read_bytes().splitlines(keepends=True)

    def contents() -> dict[str, bytes]:
        """The folder's files, less its lock and the temporary file of an atomic write the kill cut short (the next
        claim of the folder removes that one, as it should)."""
        stale = lambda name: name.startswith(".") and name.endswith(".tmp")  # noqa: E731
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock" and not stale(p.name)}

    before = contents()

    journal.write_bytes(b"")  # emptied by accident
    rc, out, err = _finish(_train(tmp_path, *args))
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "is missing or empty" in err and "restore it" in err
    journal.write_bytes(b"".join(lines[:3] + [b"not json at all\n"] + lines[3:]))  # damaged in the middle
    rc, out, err = _finish(_train(tmp_path, *args))
    assert rc == 2 and err.count("\n") == 1 and "line 4 is not an Optuna journal record" in err
    journal.write_bytes(b"".join(lines))
    assert contents() == before  # nothing else was touched
    assert _finish(_train(tmp_path, *args))[0] == 0  # with the journal restored, it resumes


@pytest.mark.slow
def test_two_identical_commands_at_once_do_not_share_a_run(tmp_path):
    """The second finds the run folder held by the first: it says who holds it and exits 2; the study gets each trial
    once."""
    args = [*ALPHA, "-params", "n_iterations:60"]
    first, second = _train(tmp_path, *args), _train(tmp_path, *args)
    (rc1, _, err1), (rc2, _, err2) = _finish(first), _finish(second)
    assert sorted([rc1, rc2]) == [0, 2], (err1, err2)
    err = err1 if rc1 == 2 else err2
    assert err.startswith("error: ") and "is in use by" in err and f"pid {first.pid if rc1 == 0 else second.pid}" in err
    folders = list((tmp_path / "logs" / "neppo").iterdir())
    assert [f.name for f in folders] == ["matrix-alpha_1"]
    keys = _trial_keys(open_storage(None, folders[0]), "matrix-alpha_1")
    assert len(keys) == len(set(keys)) == 1 + 60


@pytest.mark.slow
def test_two_identical_commands_on_one_postgresql_study_record_each_trial_once(tmp_path, postgres_url):
    args = [*ALPHA, "-params", "n_iterations:10", "--storage", postgres_url, "--study-name", f"twice-{os.getpid()}"]
    results = [_finish(p) for p in [_train(tmp_path, *args), _train(tmp_path, *args)]]
    assert sorted(rc for rc, _, _ in results) == [0, 2], [err for _, _, err in results]
    keys = _trial_keys(postgres_url, f"twice-{os.getpid()}")
    assert len(keys) == len(set(keys)) == 1 + 10


def test_dash_i_applies_every_override_and_records_only_what_it_applied(tmp_path, capsys):
    base = ["--env", "matrix-alpha", "-f", str(tmp_path)]
    assert main([*base, "--env-kwargs", "alpha:0.4", "--seed", "1", "-params", "n_iterations:5"]) == 0
    model_zip = str(tmp_path / "neppo" / "matrix-alpha_1" / "model.zip")
    capsys.readouterr()
    refused = [
        (["--env-kwargs", "alpha:0.9"], "drop --env-kwargs"),
        (["--seed", "2"], "drop --seed"),
        (["-params", "potential:convex"], "cannot change potential"),
        (["-params", "solver:sb3"], "cannot change solver"),
        (["-yaml", "other.yml"], "give changes with -params, not -yaml"),
    ]
    for extra, message in refused:
        assert main([*base, "-i", model_zip, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "neppo").iterdir()) == ["matrix-alpha_1"]  # refused: no folder

    assert (
        main([*base, "-i", model_zip, "--env-kwargs", "alpha:0.4", "-params", "lr:0.2", "n_directions:3", "n_iterations:4"])
        == 0
    )
    folder = tmp_path / "neppo" / "matrix-alpha_2"
    config, summary = yaml.safe_load((folder / "config.yml").read_text()), json.loads((folder / "summary.json").read_text())
    assert config["lr"] == summary["hyperparams"]["lr"] == 0.2 and config["n_directions"] == 3 and config["n_iterations"] == 4
    assert summary["env_kwargs"] == {"alpha": 0.4} and summary["iterations"] == 9
    args = yaml.safe_load((folder / "args.yml").read_text())
    assert args["env_kwargs"] == {"alpha": 0.4} and args["seed"] == summary["seed"] == 1
    rows = list(csv.DictReader((folder / "progress.csv").read_text().splitlines()))
    assert [int(r["iteration"]) for r in rows] == [6, 7, 8, 9]
    assert float(rows[0]["step_size"]) == pytest.approx(0.2 / np.sqrt(6))  # lr 0.2 really ran (η_t = lr / √(t + 1))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-params", "beta:.inf"], "beta must be a finite number > 0"),
        (["-params", "lr:.nan"], "lr must be a finite number >= 0"),
        (["-params", "lr:1e300"], "the step of iteration 0 took w out of range"),
        (["-n", "100"], "an env-step budget (-n) needs the sampled (sb3) solvers"),
        (["--seed", "-1"], "--seed must be in [0, 2**31)"),
        (["--seed", str(2**32)], "--seed must be in [0, 2**31)"),
        (["--num-threads", "100000"], "--num-threads must be in 1.."),
    ],
)
def test_runs_that_cannot_work_are_one_line_and_leave_no_run_folder(tmp_path, capsys, extra, message):
    assert main([*ALPHA[:4], *extra, "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "neppo").exists() or not any((tmp_path / "neppo").iterdir())
    assert main([*ALPHA[:4], *extra, "-f", str(tmp_path)]) == 2  # the same command again: the same line, not "Resuming"
    assert "Resuming" not in capsys.readouterr().out


def test_unwritable_folders_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for extra in (["-f", str(blocker / "logs")], ["-f", str(tmp_path), "-tb", str(blocker / "tb")]):
        assert main([*ALPHA, "-params", "n_iterations:1", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot write to the") and err.count("\n") == 1


def test_seeds_outside_the_range_are_one_line_from_python_too():
    for seed in (-1, 2**31, 2**40, 1.5, True):
        with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 2\*\*31\)"):
            NePPO("matrix-alpha", seed=seed)


def test_workers_on_exact_solvers_are_ignored_with_a_warning_and_change_no_number(tmp_path, capsys):
    args = [*ALPHA, "-params", "n_iterations:5"]
    assert main([*args, "-f", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="--n-workers 8 ignored: the exact solvers") as record:
        assert main([*args, "--n-workers", "8", "-f", str(tmp_path / "eight")]) == 0
    assert len(record) == 1
    assert _numbers(tmp_path / "one" / "neppo" / "matrix-alpha_1") == _numbers(tmp_path / "eight" / "neppo" / "matrix-alpha_1")


def test_results_are_written_with_the_usual_file_mode(tmp_path):
    assert main([*ALPHA, "-params", "n_iterations:1", "-f", str(tmp_path)]) == 0
    folder = tmp_path / "neppo" / "matrix-alpha_1"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("summary.json", "model.zip", "config.yml", "args.yml", "progress.csv", "command.txt"):
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def _tamper(path: Path, member: str, content: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[member] = content
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_damaged_or_tampered_model_files_are_one_line(tmp_path, capsys):
    assert main([*ALPHA, "-params", "n_iterations:2", "-f", str(tmp_path)]) == 0
    good = tmp_path / "neppo" / "matrix-alpha_1" / "model.zip"
    pickled = pickle.dumps(OSError("an object, not tensors"))  # what weights_only refuses to build
    cases = [
        ("data.json", b"{not json", "cannot load NePPO model"),
        ("data.json", b'{"env_id": "matrix-alpha"}', "data.json has no valid env_kwargs"),
        ("potential.pt", pickled, "holds something other than tensors"),
        ("potential.pt", b"garbage", "cannot load NePPO model"),
    ]
    for member, content, message in cases:
        bad = tmp_path / f"bad-{len(message)}-{member}.zip"
        bad.write_bytes(good.read_bytes())
        _tamper(bad, member, content)
        with pytest.raises(ConfigError, match="cannot load NePPO model") as info:
            NePPO.load(bad)
        assert message in str(info.value) and "weights_only" not in str(info.value) and "\n" not in str(info.value)
        assert main(["--env", "matrix-alpha", "-i", str(bad), "-f", str(tmp_path / "continued")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "weights_only" not in err


def test_a_model_file_cannot_make_load_import_a_module_of_its_choosing(tmp_path, monkeypatch):
    (tmp_path / "sidepkg").mkdir()
    (tmp_path / "sidepkg" / "__init__.py").write_text("")
    (tmp_path / "sidepkg" / "game.py").write_text(
        "from pathlib import Path\nPath(__file__).parents[1].joinpath('imported').write_text('yes')\n"
        "from sb3_neppo.envs.matrix import alpha_env\nparallel_env = alpha_env\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = NePPO("matrix-alpha", seed=0)
    model.learn(n_iterations=1)
    path = tmp_path / "model.zip"
    model.save(path)
    data = json.loads(zipfile.ZipFile(path).read("data.json"))
    data.update(env_id="sidepkg.game", env_kwargs={"alpha": 0.0})
    _tamper(path, "data.json", json.dumps(data).encode())
    with pytest.raises(ConfigError, match="names the env module sidepkg.game; importing it runs its code"):
        NePPO.load(path)
    assert not (tmp_path / "imported").exists()
    loaded = NePPO.load(path, env="sidepkg.game")  # the caller names it: allowed
    assert (tmp_path / "imported").exists() and loaded.env_id == "sidepkg.game"


IPPO = ["--algo", "ippo", "--env", "mpe2.simple_tag_v3", "-n", "4000", "--seed", "1", "-params", "checkpoint_freq:1000"]


@pytest.mark.slow
def test_a_killed_baseline_run_resumes_from_its_checkpoint_to_the_uninterrupted_numbers(tmp_path):
    """A killed IPPO run used to start over in a new folder; now the same command continues from its last checkpoint
    (every checkpoint_freq env steps) and ends as the run that was never killed, in the same folder."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference.mkdir(), killed.mkdir()
    assert _finish(_train(reference, *IPPO))[0] == 0
    folder = killed / "logs" / "ippo" / "mpe2.simple_tag_v3_1"
    proc = _train(killed, *IPPO)
    deadline = time.time() + 120
    while not (folder / "checkpoint.zip").exists() or len((folder / "progress.csv").read_text().splitlines()) < 5:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rc, out, err = _finish(_train(killed, *IPPO))
    assert rc == 0, err
    assert "Resuming" in out and "round 3" in out  # from the boundary at 1,000 env steps (round 3 of 400 env steps)
    assert sorted(p.name for p in (killed / "logs" / "ippo").iterdir()) == ["mpe2.simple_tag_v3_1"]
    done = reference / "logs" / "ippo" / "mpe2.simple_tag_v3_1"
    assert (folder / "progress.csv").read_text() == (done / "progress.csv").read_text()
    ours, theirs = (json.loads((f / "summary.json").read_text()) for f in (folder, done))
    assert ours["returns"] == theirs["returns"] and ours["env_steps"] == theirs["env_steps"] == 4000
    weights = [zipfile.ZipFile(f / "model.zip").read("weights.pt") for f in (folder, done)]
    assert weights[0] == weights[1]


@pytest.mark.slow
def test_two_identical_baseline_commands_at_once_do_not_share_a_run(tmp_path):
    results = [_finish(p) for p in [_train(tmp_path, *IPPO), _train(tmp_path, *IPPO)]]
    assert sorted(rc for rc, _, _ in results) == [0, 2], [err for _, _, err in results]
    assert "is in use by" in next(err for rc, _, err in results if rc == 2)
    assert [p.name for p in (tmp_path / "logs" / "ippo").iterdir()] == ["mpe2.simple_tag_v3_1"]


def test_dash_i_on_a_baseline_applies_params_and_refuses_what_it_cannot_change(tmp_path, capsys):
    base = ["--algo", "ippo", "--env", "matrix-alpha", "-f", str(tmp_path)]
    assert main([*base, "-n", "200", "--seed", "1", "-params", "n_envs:2"]) == 0
    model_zip = str(tmp_path / "ippo" / "matrix-alpha_1" / "model.zip")
    for extra, message in ((["--env-kwargs", "alpha:0.9"], "drop --env-kwargs"), (["--seed", "7"], "drop --seed")):
        assert main([*base, "-n", "100", "-i", model_zip, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main([*base, "-n", "100", "-i", model_zip, "-params", "n_envs:4", "ppo:{learning_rate: 0.001}"]) == 0
    config = yaml.safe_load((tmp_path / "ippo" / "matrix-alpha_2" / "config.yml").read_text())
    summary = json.loads((tmp_path / "ippo" / "matrix-alpha_2" / "summary.json").read_text())
    assert config["n_envs"] == summary["hyperparams"]["n_envs"] == 4 and config["ppo"]["learning_rate"] == 0.001
    assert summary["seed"] == 1 and summary["env_steps"] > 200


def test_a_record_torn_by_another_writer_is_cut_before_the_next_append(tmp_path):
    """A process sharing a journal is killed mid-write while this one runs: its half record is cut, not appended to."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="shared", storage=open_storage(None, tmp_path))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    with (tmp_path / JOURNAL_NAME).open("ab") as fh:
        fh.write(b'{"op_code": 5, "worker_id": "dead-')
    with pytest.warns(UserWarning, match="ended in a torn record"):
        study.add_trial(optuna.trial.create_trial(value=2.0))
    again = optuna.load_study(study_name="shared", storage=open_storage(None, tmp_path))
    assert [t.value for t in again.trials] == [1.0, 2.0]
