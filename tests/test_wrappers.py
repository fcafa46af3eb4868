"""The potential-reward wrapper on real mpe2 games."""

import numpy as np
import pytest
from mpe2 import simple_tag_v3, simple_world_comm_v3
from pettingzoo.test import parallel_api_test
from pettingzoo.utils.wrappers import BaseParallelWrapper

from sb3_neppo.envs.potential_reward import PotentialRewardWrapper
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import ConvexCombinationPotential, StateMixerPotential


def world_comm(**kwargs):
    return simple_world_comm_v3.parallel_env(continuous_actions=True, max_cycles=10, **kwargs)


def tag():
    return simple_tag_v3.parallel_env(max_cycles=10)  # discrete actions


def _rollout(env, seed, n_steps=8):
    """Seeded random actions (drawn from a separate generator, so the same actions hit both envs)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    steps = []
    for _ in range(n_steps):
        actions = {}
        for agent in env.agents:
            space = env.action_space(agent)
            space.seed(int(rng.integers(2**31)))
            actions[agent] = space.sample()
        steps.append((actions, *env.step(actions)))
    return steps


@pytest.mark.parametrize("make, potential", [(world_comm, StateMixerPotential(6, 192)), (tag, ConvexCombinationPotential(4))])
def test_parallel_api(make, potential):
    parallel_api_test(PotentialRewardWrapper(make(), potential), num_cycles=25)


def test_zero_init_pays_the_average_and_keeps_true_rewards():
    wrapped = PotentialRewardWrapper(tag(), ConvexCombinationPotential(4))
    plain = _rollout(tag(), seed=3)
    for (_, _, true, *_), (_, _, phi, _, _, infos) in zip(plain, _rollout(wrapped, seed=3)):
        agents = list(true)
        assert [infos[a]["true_reward"] for a in agents] == pytest.approx([true[a] for a in agents])
        assert [phi[a] for a in agents] == pytest.approx([np.mean([true[b] for b in agents])] * len(agents))


def test_state_mixer_reward_recomputes_from_logged_steps():
    potential = StateMixerPotential(6, 192).double()
    rng = np.random.default_rng(0)
    potential.set_flat_params(rng.normal(scale=0.05, size=potential.dim))
    env = PotentialRewardWrapper(world_comm(), potential)
    W = potential.mixer.weight.detach().numpy()
    b = potential.mixer.bias.detach().numpy()
    logged = []
    for _, _, rewards, _, _, infos in _rollout(env, seed=1):
        info = infos["agent_0"]
        logits = W @ info["state"] + b
        weights = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert rewards["agent_0"] == pytest.approx(float(weights @ info["true_rewards"]), abs=1e-12)
        assert len(set(rewards.values())) == 1  # one shared reward
        logged.append(info)
    # Φ for another w, from the log alone
    potential.set_flat_params(np.zeros(potential.dim))
    states = np.stack([i["state"] for i in logged])
    rewards = np.stack([i["true_rewards"] for i in logged])
    recomputed = env.potential_reward(states, np.zeros((len(logged), 6, env.action_dim)), rewards)
    assert recomputed == pytest.approx(rewards.mean(1))


class _NoState(BaseParallelWrapper):
    """An env without state(), as many PettingZoo envs are."""

    def state(self):
        raise NotImplementedError


def test_without_state_the_global_state_is_the_concatenated_observations():
    env = PotentialRewardWrapper(_NoState(world_comm()), ConvexCombinationPotential(6))
    assert env.state_dim == 4 * 34 + 2 * 28
    observations, _ = env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    *_, infos = env.step(actions)
    assert infos["agent_1"]["state"] == pytest.approx(np.concatenate([observations[a] for a in env.possible_agents]))


class _NaNReward(BaseParallelWrapper):
    def step(self, actions):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        return obs, {**rewards, "agent_0": float("nan")}, terms, truncs, infos


def test_bad_input_is_one_clear_line():
    with pytest.raises(ConfigError, match="not a PettingZoo ParallelEnv; use the module's parallel_env()"):
        PotentialRewardWrapper(simple_tag_v3.env(), ConvexCombinationPotential(4))
    with pytest.raises(ConfigError, match="the state has 192 values but the state-mixer potential was built for 10"):
        PotentialRewardWrapper(world_comm(), StateMixerPotential(6, 10))
    with pytest.raises(ConfigError, match="potential does not fit this env"):
        PotentialRewardWrapper(world_comm(), ConvexCombinationPotential(3))
    env = PotentialRewardWrapper(_NaNReward(tag()), ConvexCombinationPotential(4))
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="non-finite reward for agent_0: nan"):
        env.step({a: 0 for a in env.agents})
