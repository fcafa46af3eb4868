"""The ParallelEnv -> SB3 VecEnv adapter on real mpe2 games: seeding, truncation, padding, indicator, leaving agents."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from mpe2 import simple_tag_v3, simple_world_comm_v3
from pettingzoo import ParallelEnv
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from sb3_neppo.envs.potential_reward import PotentialRewardWrapper
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import ConvexCombinationPotential


def tag(max_cycles=25):
    return simple_tag_v3.parallel_env(max_cycles=max_cycles)


def _play(venv, seed, n_steps):
    rng = np.random.default_rng(123)
    venv.seed(seed)
    out = [venv.reset()]
    for _ in range(n_steps):
        out.append(venv.step(rng.integers(0, 5, size=venv.num_envs))[0])
    return np.stack(out)


def test_seeding_makes_runs_reproducible():
    a = _play(ParallelVecEnv(tag, 3), seed=0, n_steps=30)
    b = _play(ParallelVecEnv(tag, 3), seed=0, n_steps=30)
    c = _play(ParallelVecEnv(tag, 3), seed=1, n_steps=30)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # copies get different seeds (no duplicated worlds): copy 0 and copy 1 start apart
    n = 4
    assert not np.allclose(a[0, :n], a[0, n : 2 * n])


def test_ppo_with_seed_is_reproducible_and_counts_agent_steps():
    params = []
    for _ in range(2):
        torch.set_num_threads(1)
        venv = ParallelVecEnv(tag, 2)
        model = PPO("MlpPolicy", venv, seed=3, n_steps=16, batch_size=64, n_epochs=1)
        model.learn(16 * venv.num_envs)
        params.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
        assert venv.num_envs == 2 * 4 and venv.env_steps == 2 * 16  # SB3 timesteps = agents x env steps
        assert model.num_timesteps == 4 * venv.env_steps
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)


def test_time_limit_is_a_truncation_with_terminal_observation():
    venv = ParallelVecEnv(lambda: tag(max_cycles=5), 2)
    venv.seed(0)
    venv.reset()
    for t in range(5):
        obs, rewards, dones, infos = venv.step(np.zeros(venv.num_envs, dtype=int))
        assert dones.all() == (t == 4)
    assert all(info["TimeLimit.truncated"] for info in infos)
    assert all(info["episode"]["l"] == 5 for info in infos)
    assert all(info["terminal_observation"].shape == venv.observation_space.shape for info in infos)
    # the copies were reset: the returned observations are first observations of new episodes
    assert not np.allclose(obs, np.stack([info["terminal_observation"] for info in infos]))


def test_get_attr_env_method_and_sb3_wrappers_work():
    venv = ParallelVecEnv(tag, 2)
    assert venv.get_attr("render_mode") == [None] * 8
    assert venv.env_method("state", indices=[0])[0].shape == (62,)
    VecMonitor(venv).reset()  # needs get_attr / seeding, which SuperSuit's ConcatVecEnv lacks


def test_padding_and_agent_indicator_on_world_comm():
    venv = ParallelVecEnv(lambda: simple_world_comm_v3.parallel_env(max_cycles=5), 1)
    n = 6
    assert venv.observation_space.shape == (34 + n,) and venv.action_space == spaces.Discrete(20)
    venv.seed(0)
    obs = venv.reset()
    np.testing.assert_array_equal(obs[:, 34:], np.eye(n))  # one-hot agent indicator
    good = venv.agents.index("agent_0")
    assert np.all(obs[good, 28:34] == 0)  # the 28-dim observation, zero-padded to 34
    view = venv.view
    assert view.env_action("agent_0", 7) == 2 and view.env_action("leadadversary_0", 19) == 19
    venv.step(np.full(n, 19))  # out-of-range actions of 5-action agents wrap round instead of crashing


def test_identical_agents_pass_through_without_padding():
    view = AgentView(simple_tag_v3.parallel_env(), agent_indicator=False)
    obs = np.arange(14, dtype=np.float32)
    assert view.observation_space.shape == (16,)  # adversaries see 16, the good agent 14
    assert np.all(view.observe("agent_0", obs)[14:] == 0)
    with pytest.raises(ConfigError, match="mix Discrete and Box"):
        AgentView(_MixedActions())


def test_potential_reward_matches_the_wrapper_and_true_rewards_are_kept():
    potential = ConvexCombinationPotential(4)
    potential.set_flat_params(np.array([0.1, 0.2, 0.3, 0.4]))
    weights = potential.describe()["weights"]  # softmax of the parameters
    venv = ParallelVecEnv(tag, 1, AgentView(tag(), agent_indicator=False), potential=potential)
    wrapped = PotentialRewardWrapper(tag(), potential)
    venv.seed(5)
    venv.reset()
    wrapped.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        actions = rng.integers(0, 5, size=4)
        _, rewards, _, infos = venv.step(actions)
        _, w_rewards, _, _, w_infos = wrapped.step(dict(zip(wrapped.possible_agents, actions.tolist())))
        np.testing.assert_allclose(rewards, [w_rewards[a] for a in wrapped.possible_agents], rtol=1e-6)
        true = [w_infos[a]["true_reward"] for a in wrapped.possible_agents]
        np.testing.assert_allclose([info["true_reward"] for info in infos], true, rtol=1e-6)
        np.testing.assert_allclose(rewards, np.dot(weights, true), rtol=1e-5)


class _MixedActions(ParallelEnv):
    """Two agents, one with Discrete and one with Box actions (only spaces are read)."""

    possible_agents = ["a", "b"]
    metadata = {"name": "mixed_actions"}

    def observation_space(self, agent):
        return spaces.Box(-1, 1, (2,))

    def action_space(self, agent):
        return spaces.Discrete(3) if agent == "a" else spaces.Box(-1, 1, (2,))


class _Race(ParallelEnv):
    """A small real game in which agents leave at different times: agent k finishes (terminates) after k + 1 steps."""

    metadata = {"name": "race_v0"}

    def __init__(self, n=3):
        self.possible_agents = [f"runner_{k}" for k in range(n)]
        self.agents = []

    def observation_space(self, agent):
        return spaces.Box(0, 10, (1,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.array([0.0], np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        obs = {a: np.array([self.t], np.float32) for a in self.agents}
        rewards = {a: float(actions[a]) for a in self.agents}
        terms = {a: self.possible_agents.index(a) + 1 <= self.t for a in self.agents}
        truncs = {a: False for a in self.agents}
        self.agents = [a for a in self.agents if not terms[a]]
        return obs, rewards, terms, truncs, {a: {} for a in obs}


def test_agents_that_leave_early_get_black_death_until_the_episode_ends():
    venv = ParallelVecEnv(_Race, 1, AgentView(_Race(), agent_indicator=False))
    venv.seed(0)
    venv.reset()
    obs, rewards, dones, infos = venv.step(np.ones(3, dtype=int))
    assert dones.tolist() == [True, False, False] and not infos[0]["TimeLimit.truncated"]
    assert infos[0]["episode"] == {"r": 1.0, "l": 1, "true_r": 1.0}
    obs, rewards, dones, infos = venv.step(np.ones(3, dtype=int))
    assert obs[0, 0] == 0 and rewards[0] == 0  # gone: zero observation, no reward
    assert dones.tolist() == [False, True, False]
    obs, rewards, dones, infos = venv.step(np.ones(3, dtype=int))
    assert dones.tolist() == [True, True, True]  # the episode ends: every slot is done and the copy resets
    assert infos[2]["episode"]["l"] == 3 and "episode" not in infos[0]
    np.testing.assert_array_equal(obs[:, 0], 0.0)
