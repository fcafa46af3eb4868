"""Where the networks run: --device / device= checked against the machine, in one line when it does not have it."""

import numpy as np
import pytest
import torch

from sb3_neppo import IPPO, MADDPG, NePPO
from sb3_neppo.errors import ConfigError
from sb3_neppo.train import main

SMALL = {"n_envs": 2, "eval_episodes": 3, "ppo": {"n_steps": 8, "batch_size": 16, "n_epochs": 2}}
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def test_device_cpu_runs_where_auto_does_and_gives_its_numbers():
    kwargs = dict(env_kwargs={"max_cycles": 8}, solver_kwargs=SMALL, seed=1, n_directions=1)
    auto = NePPO("mpe2.simple_spread_v3", **kwargs).learn(n_iterations=1)
    cpu = NePPO("mpe2.simple_spread_v3", device="cpu", **kwargs).learn(n_iterations=1)
    assert cpu.config.solver_kwargs["device"] == "cpu" and auto.config.solver_kwargs["device"] == "auto"
    assert next(iter(cpu.result.policy.policies.values())).device.type == "cpu"
    if not torch.cuda.is_available():  # auto is the CPU here
        np.testing.assert_array_equal(auto.result.F.mean, cpu.result.F.mean)
    ippo = IPPO("mpe2.simple_spread_v3", {"max_cycles": 8}, {"n_envs": 2, "device": "cpu"}, seed=0).learn(32)
    assert ippo.actors()["agent_0"].device.type == "cpu"


@NO_GPU
def test_cuda_on_a_machine_without_one_is_one_line(tmp_path, capsys):
    for argv in (["--env", "mpe2.simple_spread_v3"], ["--algo", "ippo", "--env", "mpe2.simple_spread_v3", "-n", "100"]):
        assert main([*argv, "--device", "cuda", "-f", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --device cuda: this machine has no CUDA GPU") and err.count("\n") == 1
        assert err.endswith("give cpu or auto as --device instead\n")
    assert not any(tmp_path.iterdir())  # refused before anything was written
    with pytest.raises(ConfigError, match="device cuda: this machine has no CUDA GPU"):
        NePPO("mpe2.simple_spread_v3", device="cuda")
    with pytest.raises(ConfigError, match="this machine has no CUDA GPU"):
        IPPO("mpe2.simple_spread_v3", None, {"device": "cuda"})
    with pytest.raises(ConfigError, match="this machine has no CUDA GPU"):
        MADDPG("prisoners-dilemma", None, {"device": "cuda"})


def test_a_device_that_is_no_device_is_one_line(tmp_path, capsys):
    assert main(["--env", "mpe2.simple_spread_v3", "-params", "solver_kwargs:{device: gpu}", "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "solver_kwargs.device must be auto, cpu, cuda or cuda:N, got 'gpu'" in err and err.count("\n") == 1
    assert main(["--env", "mpe2.simple_spread_v3", "--device", "tpu", "-f", str(tmp_path)]) == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_vmas_worlds_run_on_the_networks_device():
    pytest.importorskip("vmas")
    small = {**SMALL, "coop_updates": 1}
    model = NePPO("vmas:simple_spread", env_kwargs={"max_steps": 8}, device="cpu", solver_kwargs=small, seed=0, n_directions=1)
    model.learn(n_iterations=1)
    solvers = model.solvers
    worlds = [solvers.cooperative.venv.world, *(v.joint.world for v in solvers.best_response._venvs.values())]
    worlds.append(solvers.evaluator.episodes.venv.world)
    assert {str(w.device) for w in worlds} == {"cpu"} and np.isfinite(model.result.F.mean).all()
    ippo = IPPO("vmas:simple_spread", {"max_steps": 8}, {"n_envs": 2, "device": "cpu"}, seed=0)
    assert str(ippo.learners.venv.world.device) == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vmas_worlds_and_networks_on_cuda_train_and_give_finite_numbers():
    pytest.importorskip("vmas")
    model = NePPO(
        "vmas:simple_spread", env_kwargs={"max_steps": 8}, device="cuda", solver_kwargs=SMALL, seed=0, n_directions=1
    )
    model.learn(n_iterations=1)
    assert model.solvers.cooperative.venv.world.device.type == "cuda" and np.isfinite(model.result.F.mean).all()
    assert next(iter(model.result.policy.policies.values())).device.type == "cuda"
