"""Envs that misbehave while stepping: every path that steps a PettingZoo parallel env says so in one line that names
the agent and the step (the vector env, the frozen-others env, the potential wrapper, the rollout evaluator, the CLI)."""

import inspect
import textwrap

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3 import PPO

from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.envs.frozen import FrozenOthersEnv
from sb3_neppo.envs.potential_reward import PotentialRewardWrapper
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.potentials import ConvexCombinationPotential
from sb3_neppo.solvers.sb3 import RolloutEvaluator
from sb3_neppo.train import main


class Walk(ParallelEnv):
    """Two walkers on a line for ``max_cycles`` steps (each observes its position, the step and a constant; paid its
    move). At step ``at`` (0: at reset) the env does ``fault`` to ``culprit``:

    * ``missing_reward``: leaves the culprit out of the rewards dict although it acted;
    * ``shape``: gives the culprit a 4-value observation (its space has 3) from then on;
    * ``nan`` / ``inf``: puts a NaN / an infinity in the culprit's observation;
    * ``huge``: gives the culprit a finite observation that float32 (what SB3's policy reads) cannot hold.

    With ``leave_at``, walker_1 terminates at that step and leaves the episode (legitimate: no action, no reward and no
    observation for it after that).
    """

    metadata = {"name": "walk_v0"}
    render_mode = None

    def __init__(self, fault=None, at=3, culprit="walker_1", max_cycles=5, leave_at=None):
        self.possible_agents = ["walker_0", "walker_1"]
        self.agents = []
        self.fault, self.at, self.culprit, self.max_cycles, self.leave_at = fault, at, culprit, max_cycles, leave_at

    def observation_space(self, agent):
        return spaces.Box(-100.0, 100.0, (3,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(3)

    def _observations(self):
        obs = {a: np.array([self.pos[a], self.t, 1.0], np.float32) for a in self.agents}
        if self.t >= self.at and self.fault == "shape" and self.culprit in obs:
            obs[self.culprit] = np.zeros(4, np.float32)
        if self.t == self.at and self.fault in ("nan", "inf") and self.culprit in obs:
            obs[self.culprit][1] = np.nan if self.fault == "nan" else np.inf
        if self.t == self.at and self.fault == "huge" and self.culprit in obs:
            obs[self.culprit] = np.array([0.0, 1e39, 1.0])  # finite, but beyond float32
        return obs

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        self.pos = {a: 0.0 for a in self.agents}
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        for agent in self.agents:
            self.pos[agent] += float(actions[agent]) - 1.0
        rewards = {a: float(actions[a]) - 1.0 for a in self.agents}
        terminations = {a: a == "walker_1" and self.t == self.leave_at for a in self.agents}
        truncations = {a: self.t >= self.max_cycles for a in self.agents}
        if self.t == self.at and self.fault == "missing_reward":
            del rewards[self.culprit]
        obs = self._observations()
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, {a: {} for a in obs}


FAULTS = [
    ("missing_reward", 3, "no reward for walker_1 at step 3 after reset, although walker_1 acted"),
    ("shape", 3, "observation of shape (4,) for walker_1 at step 3 after reset, but observation_space('walker_1').shape"),
    ("shape", 0, "observation of shape (4,) for walker_1 at reset, but observation_space('walker_1').shape is (3,)"),
    ("nan", 3, "non-finite observation for walker_1 at step 3 after reset (1 of 3 values are NaN or infinite"),
    ("inf", 2, "non-finite observation for walker_1 at step 2 after reset (1 of 3 values are NaN or infinite"),
]


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def shared_profile(make):
    """π^Φ: a freshly initialised SB3 PPO policy shared by both walkers."""
    venv = ParallelVecEnv(make, 1)
    model = PPO("MlpPolicy", venv, seed=0, n_steps=8, batch_size=8)
    return PolicyProfile.shared(venv.view, frozen_copy(model.policy))


@pytest.mark.parametrize("fault, at, message", FAULTS)
def test_vector_env_names_the_agent_and_the_step(fault, at, message):
    with pytest.raises(ConfigError) as info:
        venv = ParallelVecEnv(lambda: Walk(fault, at), 2)
        venv.seed(0)
        venv.reset()
        for _ in range(5):
            venv.step(np.full(venv.num_envs, 2))
    assert message in _one_line(info)


def test_vector_env_names_an_observation_float32_cannot_hold():
    venv = ParallelVecEnv(lambda: Walk("huge", 2), 2)
    venv.seed(0)
    venv.reset()
    venv.step(np.full(4, 2))
    with pytest.raises(ConfigError) as info:
        venv.step(np.full(4, 2))
    assert "observation for walker_1 at step 2 after reset with values beyond float32's range" in _one_line(info)


@pytest.mark.parametrize("learner", ["walker_0", "walker_1"])
@pytest.mark.parametrize("fault, at, message", FAULTS)
def test_frozen_others_env_names_the_agent_and_the_step(fault, at, message, learner):
    """The culprit is the learning agent or one of the frozen others: either way the env is at fault."""
    profile = shared_profile(Walk)
    env = FrozenOthersEnv(Walk(fault, at), learner, profile, view=profile.view)
    with pytest.raises(ConfigError) as info:
        env.reset(seed=0)
        for _ in range(5):
            env.step(2)
    assert message in _one_line(info)


@pytest.mark.parametrize("fault, at, message", FAULTS)
def test_potential_wrapper_names_the_agent_and_the_step(fault, at, message):
    with pytest.raises(ConfigError) as info:
        env = PotentialRewardWrapper(Walk(fault, at), ConvexCombinationPotential(2))
        env.reset(seed=0)
        for _ in range(5):
            env.step({a: 2 for a in env.agents})
    assert message in _one_line(info)


@pytest.mark.parametrize("fault, at, message", FAULTS)
def test_rollout_evaluator_names_the_agent_and_the_step(fault, at, message):
    torch.set_num_threads(1)
    joint = shared_profile(Walk)
    with pytest.raises(ConfigError) as info:
        evaluator = RolloutEvaluator(lambda: Walk(fault, at), SB3SolverConfig(eval_episodes=2))
        evaluator.estimate(ConvexCombinationPotential(2), joint, seed=0)
    assert message in _one_line(info)


def test_nan_in_a_frozen_agents_observation_is_caught_before_the_policy_reads_it():
    """Without the check, the frozen policy's forward pass fails in torch's distribution validation (a tensor dump)."""
    profile = shared_profile(Walk)
    env = FrozenOthersEnv(Walk("nan", 2, culprit="walker_1"), "walker_0", profile, view=profile.view)
    env.reset(seed=0)
    env.step(2)
    with pytest.raises(ConfigError, match="non-finite observation for walker_1 at step 2 after reset"):
        env.step(2)


def test_agents_that_leave_mid_episode_are_not_faults_but_a_missing_reward_later_is():
    """walker_1 terminates at step 2 and is absent from the rewards of steps 3 on (fine); walker_0, still in the
    episode, gets no reward at step 4 (a fault): every path names walker_0 and step 4, never the walker that left."""
    make = lambda: Walk("missing_reward", 4, "walker_0", leave_at=2)  # noqa: E731
    message = "no reward for walker_0 at step 4 after reset, although walker_0 acted"
    venv = ParallelVecEnv(make, 2, AgentView(make(), agent_indicator=False))
    venv.seed(0)
    venv.reset()
    dones = [venv.step(np.full(4, 2))[2].tolist() for _ in range(3)]
    assert dones == [[False] * 4, [False, True, False, True], [False] * 4]  # walker_1's slots: done when it leaves
    with pytest.raises(ConfigError, match=message):
        venv.step(np.full(4, 2))
    profile = shared_profile(Walk)
    env = FrozenOthersEnv(make(), "walker_0", profile, view=profile.view)
    env.reset(seed=0)
    assert [env.step(2)[1] for _ in range(3)] == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match=message):
        env.step(2)
    wrapper = PotentialRewardWrapper(make(), ConvexCombinationPotential(2))
    wrapper.reset(seed=0)
    for _ in range(3):
        *_, infos = wrapper.step({a: 2 for a in wrapper.agents})
    assert infos["walker_0"]["true_rewards"].tolist() == [1.0, 0.0]  # the gone walker is paid nothing
    with pytest.raises(ConfigError, match=message):
        wrapper.step({a: 2 for a in wrapper.agents})
    with pytest.raises(ConfigError, match=message):
        RolloutEvaluator(make, SB3SolverConfig(eval_episodes=2)).rollouts(profile, seed=0)


def _env_module(tmp_path, monkeypatch, package: str, body: str) -> str:
    """A user's env module ``<package>.walk_v0`` in ``tmp_path`` (importable by its dotted path, as the CLI takes it)."""
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "walk_v0.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{package}.walk_v0"


def test_cli_run_on_a_misbehaving_env_is_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys):
    header = "import numpy as np\nfrom gymnasium import spaces\nfrom pettingzoo import ParallelEnv\n\n\n"
    factory = '\n\ndef parallel_env(**kwargs):\n    return Walk("missing_reward", 3, "walker_0", **kwargs)\n'
    env_id = _env_module(tmp_path, monkeypatch, "faulty_walk", header + textwrap.dedent(inspect.getsource(Walk)) + factory)
    params = "solver_kwargs:{n_envs: 2, eval_episodes: 2, ppo: {n_steps: 8, batch_size: 16, n_epochs: 1}}"
    argv = ["--env", env_id, "--seed", "0", "-f", str(tmp_path / "logs"), "-params", "n_iterations:1", params]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the env returned no reward for walker_0 at step 3 after reset, although walker_0 acted")
    assert err.count("\n") == 1
