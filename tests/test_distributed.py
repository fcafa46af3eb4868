"""Workers on other machines: processes that run the same command against the same PostgreSQL study join the run."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from sb3_neppo.distributed import decode_state, encode_state
from sb3_neppo.storage import open_rdb

ITERATIONS, DIRECTIONS = 8, 2
SB3 = "solver_kwargs:{n_envs: 2, br_updates: 1, eval_episodes: 4, ppo: {n_steps: 25, batch_size: 50, n_epochs: 4}}"
ARGS = ["--env", "mpe2.simple_tag_v3", "--env-kwargs", "max_cycles:25", "--seed", "4"]
ARGS += ["-params", f"n_iterations:{ITERATIONS}", f"n_directions:{DIRECTIONS}", "delta:0.05", "lr:0.5", SB3]


def _start(folder, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sb3_neppo.train", *ARGS, *extra, "-f", str(folder)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_warm_states_survive_the_storage_encoding():
    state = ({"w": torch.arange(6.0).reshape(2, 3)}, {"a": {"b": torch.ones(2)}})
    chunks, numpy = encode_state(state)
    out = decode_state(chunks, numpy)
    assert not numpy and torch.equal(out[0]["w"], state[0]["w"]) and torch.equal(out[1]["a"]["b"], torch.ones(2))
    strategies = ([np.array([0.25, 0.75]), np.array([1.0, 0.0])], {"A": np.array([0.0, 1.0])})
    chunks, numpy = encode_state(strategies)
    out = decode_state(chunks, numpy)
    assert numpy and np.array_equal(out[0][0], strategies[0][0]) and np.array_equal(out[1]["A"], [0.0, 1.0])
    big = {"w": torch.randn(40_000)}  # ~200 KB: several chunks
    chunks, _ = encode_state(big)
    assert len(chunks) > 2 and torch.equal(decode_state(chunks, False)["w"], big["w"])


@pytest.mark.slow
def test_workers_on_other_machines_join_and_a_dead_one_is_replaced(tmp_path, postgres_url):
    """A coordinator and two workers started before it with ``--join`` (other log folders: other machines) share the
    branches of a PostgreSQL study. The first worker is SIGKILLed while it holds a branch: the run waits for that branch
    until the heartbeat timeout, then it is solved again. The run ends with every solve complete once and the numbers
    of a single process on the default journal."""
    name = f"join-{uuid.uuid4().hex[:12]}"
    shared = ["--storage", postgres_url, "--study-name", name, "--heartbeat-timeout", "10"]
    doomed = _start(tmp_path / "machine-b", *shared, "--join")
    helper = _start(tmp_path / "machine-c", *shared, "--join", "--n-workers", "2")  # a machine with two processes
    time.sleep(5)  # the workers wait for the study
    reference = _start(tmp_path / "alone")  # side by side with the shared run: it slows it, and changes no number
    coordinator = _start(tmp_path / "coordinator", *shared)
    storage = open_rdb(postgres_url)  # the coordinator and workers may be creating the schema right now

    def study_exists() -> bool:
        try:
            return storage.get_study_id_from_name(name) is not None
        except KeyError:
            return False

    _wait_until(study_exists)
    study = optuna.load_study(study_name=name, storage=storage)

    def doomed_holds_a_branch() -> bool:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any(f":{doomed.pid}:" in t.system_attrs.get("worker", "") for t in running)

    _wait_until(doomed_holds_a_branch)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    out, err = coordinator.communicate(timeout=600)
    assert coordinator.returncode == 0, err
    helper_out, err = helper.communicate(timeout=120)
    assert helper.returncode == 0, err
    assert "Joining study" in helper_out and "The run has finished" in helper_out
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [(t.user_attrs["iteration"], t.user_attrs["direction"], t.user_attrs["sign"]) for t in complete]
    assert len(keys) == len(set(keys)) == ITERATIONS * 2 * DIRECTIONS + 1  # every solve once (iterate_solve: final)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(f":{doomed.pid}:" in t.system_attrs["worker"] for t in failed)  # only the dead one's branch
    assert {t.system_attrs["worker"].split(":")[1] for t in complete if "worker" in t.system_attrs} >= {
        str(coordinator.pid),
        str(helper.pid),
    }  # branches were solved both by the coordinator and by the machine that joined
    solved = int(helper_out.split("this worker solved ")[1].split()[0])
    assert solved >= 1

    alone = json.loads((tmp_path / "alone" / "neppo" / "mpe2.simple_tag_v3_1" / "summary.json").read_text())
    together = json.loads((tmp_path / "coordinator" / "neppo" / "mpe2.simple_tag_v3_1" / "summary.json").read_text())
    assert together["iterations"] == alone["iterations"] == ITERATIONS
    np.testing.assert_array_equal(together["potential"]["params"], alone["potential"]["params"])
    assert together["F"] == alone["F"] and together["env_steps"] == alone["env_steps"]
    assert "neppo:neppo@" not in json.dumps(together) and together["study"]["storage"].count("***") == 1  # no password
    assert not (tmp_path / "machine-b" / "neppo").exists()  # joining writes no run folder


def test_joining_with_other_settings_or_a_finished_run_is_one_line(tmp_path, postgres_url, capsys):
    from sb3_neppo.train import main

    name = f"exact-{uuid.uuid4().hex[:12]}"
    args = ["--env", "matrix-alpha", "--seed", "0", "-params", "n_iterations:2", "n_directions:1", "--storage", postgres_url]
    assert main([*args, "--study-name", name, "-f", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main([*args, "--study-name", name, "-f", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"study '{name}' takes no workers" in err and err.count("\n") == 1
    assert main([*args, "--study-name", name, "-f", str(tmp_path / "b"), "--env-kwargs", "alpha:0.1"]) == 2
    err = capsys.readouterr().err
    assert "created with other settings (env_kwargs differ)" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--heartbeat-timeout", "0"], "--heartbeat-timeout must be > 0"),
        (["--heartbeat-timeout", "-1"], "--heartbeat-timeout must be > 0"),
        (["--join"], "--join needs the run's --storage and --study-name"),
    ],
)
def test_bad_worker_flags(tmp_path, capsys, args, message):
    from sb3_neppo.train import main

    assert main(["--env", "matrix-alpha", *args, "-f", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
