"""SuperSuit and PettingZoo wrappers as configuration (``env_wrapper``): in every process that builds the env."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import supersuit
import yaml
from mpe2 import simple_spread_v3

from sb3_neppo import IPPO, NePPO
from sb3_neppo.envs.wrapping import apply_wrappers, parse_wrappers
from sb3_neppo.errors import ConfigError

STACK = [{"supersuit.dtype_v0": {"dtype": "float32"}}, {"supersuit.frame_stack_v1": {"stack_size": 2}}]
SMALL = {"n_envs": 2, "eval_episodes": 3, "ppo": {"n_steps": 8, "batch_size": 16, "n_epochs": 2}}


def test_wrappers_apply_in_order_and_bad_entries_are_one_line():
    env = apply_wrappers(simple_spread_v3.parallel_env(max_cycles=8), STACK)
    assert env.observation_space("agent_0").shape == (36,)  # 18 values, two frames
    assert parse_wrappers("supersuit.dtype_v0") == [("supersuit.dtype_v0", {})]
    cases = [
        (3, "env_wrapper must be a list of module.function"),
        (["dtype_v0"], "is not"),
        ([{"supersuit.dtype_v0": 3}], "is not"),
        (["supersuit.no_such_wrapper"], "supersuit has no function no_such_wrapper"),
        (["no_such_package.wrap"], "cannot import no_such_package"),
        (
            [{"supersuit.frame_stack_v1": {"stack_sizes": 2}}],
            "env_wrapper supersuit.frame_stack_v1({'stack_sizes': 2}) failed",
        ),
        (["pettingzoo.utils.conversions.parallel_to_aec"], "returned a"),  # an AEC env: not a parallel-env wrapper
    ]
    for spec, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            apply_wrappers(simple_spread_v3.parallel_env(max_cycles=8), spec)
        assert "\n" not in str(info.value)


def test_an_env_wrapper_entry_and_a_supersuit_wrapped_instance_give_the_same_numbers(tmp_path):
    kwargs = dict(solver_kwargs=SMALL, seed=3, n_directions=1)
    by_entry = NePPO("mpe2.simple_spread_v3", env_kwargs={"max_cycles": 8}, env_wrapper=STACK, **kwargs)
    wrapped = supersuit.frame_stack_v1(supersuit.dtype_v0(simple_spread_v3.parallel_env(max_cycles=8), "float32"), 2)
    by_hand = NePPO(wrapped, **kwargs)
    for model in (by_entry, by_hand):
        model.learn(n_iterations=1)
    np.testing.assert_array_equal(by_entry.result.F.mean, by_hand.result.F.mean)
    assert by_entry.env.observation_space("agent_0").shape == (36,) and by_entry.config.env_wrapper == STACK
    by_entry.save(tmp_path / "m.zip")  # load rebuilds the wrapped env from the saved entry: the networks fit it
    loaded = NePPO.load(tmp_path / "m.zip")
    assert loaded.env.observation_space("agent_0").shape == (36,)
    observations = loaded.env.reset(seed=5)[0]
    for agent, action in by_entry.predict(observations)[0].items():
        np.testing.assert_array_equal(action, loaded.predict(observations)[0][agent])
    ippo = IPPO("mpe2.simple_spread_v3", {"max_cycles": 8}, {"env_wrapper": STACK, "n_envs": 2}, seed=0).learn(32)
    ippo.save(tmp_path / "ippo.zip")
    assert IPPO.load(tmp_path / "ippo.zip").env.observation_space("agent_0").shape == (36,)


def test_a_file_alone_never_imports_a_wrapper_module_of_its_choosing(tmp_path, monkeypatch):
    (tmp_path / "sidewrap.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('imported').write_text('yes')\ndef same(env):\n    return env\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = NePPO("mpe2.simple_spread_v3", env_kwargs={"max_cycles": 8}, solver_kwargs=SMALL, seed=0, n_directions=1)
    model.learn(n_iterations=1)
    model.save(tmp_path / "m.zip")
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    data = json.loads(members["data.json"])
    data["config"]["env_wrapper"] = ["sidewrap.same"]
    members["data.json"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "tampered.zip", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ConfigError, match="names the env wrapper module sidewrap; importing it runs its code"):
        NePPO.load(tmp_path / "tampered.zip")
    assert not (tmp_path / "imported").exists()


ARGS = ["--env", "mpe2.simple_spread_v3", "--env-kwargs", "max_cycles:8", "--seed", "2"]
PARAMS = [
    "-params",
    "n_iterations:4",
    "env_wrapper:[supersuit.dtype_v0: {dtype: float32}, supersuit.frame_stack_v1: {stack_size: 2}]",
    "solver_kwargs:{n_envs: 2, eval_episodes: 3, ppo: {n_steps: 8, batch_size: 16, n_epochs: 2}}",
]


def _train(folder: Path, *extra: str, params: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sb3_neppo.train", *ARGS, *PARAMS, *params, *extra, "-f", str(folder)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_the_entry_is_recorded_and_used_by_a_resumed_run_and_by_load(tmp_path):
    assert _train(tmp_path / "alone").wait(timeout=300) == 0
    folder = tmp_path / "killed" / "neppo" / "mpe2.simple_spread_v3_1"
    proc = _train(tmp_path / "killed")
    deadline = time.time() + 240
    while not ((folder / "progress.csv").exists() and len((folder / "progress.csv").read_text().splitlines()) > 2):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _train(tmp_path / "killed")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "Resuming" in out, err
    alone = json.loads((tmp_path / "alone" / "neppo" / "mpe2.simple_spread_v3_1" / "summary.json").read_text())
    again = json.loads((folder / "summary.json").read_text())
    assert again["F"] == alone["F"] and again["potential"]["params"] == alone["potential"]["params"]
    assert yaml.safe_load((folder / "config.yml").read_text())["env_wrapper"] == STACK
    assert NePPO.load(folder / "model.zip").env.observation_space("agent_0").shape == (36,)


@pytest.mark.slow
def test_a_joined_worker_builds_the_wrapped_env(tmp_path, postgres_url):
    name = f"wrap-{uuid.uuid4().hex[:12]}"
    shared = ["--storage", postgres_url, "--study-name", name]
    worker = _train(tmp_path / "worker", *shared, "--join", params=("n_directions:4",))
    time.sleep(3)
    coordinator = _train(tmp_path / "coordinator", *shared, params=("n_directions:4",))
    out, err = coordinator.communicate(timeout=600)
    assert coordinator.returncode == 0, err
    worker_out, worker_err = worker.communicate(timeout=120)
    assert worker.returncode == 0, worker_err
    assert int(worker_out.split("this worker solved ")[1].split()[0]) >= 1  # its policies fit the stacked observations
