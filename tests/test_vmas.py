"""VMAS scenarios behind the PettingZoo API: the API test, seeding, truncation, and NePPO end to end."""

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

from sb3_neppo import NePPO
from sb3_neppo.envs import make_env
from sb3_neppo.errors import ConfigError


@pytest.mark.parametrize("continuous", [False, True])
def test_vmas_scenarios_pass_the_pettingzoo_parallel_api_test(continuous):
    env = make_env("vmas:simple_tag", {"max_steps": 10, "continuous_actions": continuous})
    parallel_api_test(env, num_cycles=30)
    assert env.possible_agents == ["adversary_0", "adversary_1", "adversary_2", "agent_0"]


def test_vmas_episodes_are_seeded_and_end_by_truncation():
    env = make_env("vmas:simple_world_comm", {"max_steps": 5})
    assert [env.observation_space(a).shape[0] for a in env.possible_agents] == [60, 60, 60, 60, 56, 56]

    def episode(seed: int) -> tuple[list, list]:
        observations, _ = env.reset(seed=seed)
        starts, rewards, steps = observations["agent_0"], [], 0
        rng = np.random.default_rng(0)
        while env.agents:
            actions = {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
            _, reward, terminated, truncated, _ = env.step(actions)
            rewards.append(reward["agent_0"])
            steps += 1
        assert steps == 5 and all(truncated.values()) and not any(terminated.values())
        return starts.tolist(), rewards

    assert episode(3) == episode(3)  # the start and the whole episode are a function of the seed
    assert episode(3)[0] != episode(4)[0]


def test_neppo_runs_on_a_vmas_scenario():
    torch.set_num_threads(1)
    config = dict(n_envs=2, br_updates=1, eval_episodes=3, ppo=dict(n_steps=8, batch_size=32, n_epochs=2))
    model = NePPO("vmas:simple_tag", env_kwargs={"max_steps": 8}, solver_kwargs=config, seed=0, delta=0.05, n_directions=1)
    model.learn(1)
    summary = model.summary()
    assert summary["env"] == "vmas:simple_tag" and summary["env_steps"] > 0
    assert np.isfinite(list(summary["F"].values())).all() and np.isfinite(summary["potential"]["params"]).all()
    assert summary["potential"]["class"] == "StateMixerPotential"


def test_bad_vmas_scenario_is_one_line():
    with pytest.raises(ConfigError, match="no VMAS scenario 'simple_tagg'"):
        make_env("vmas:simple_tagg")
    with pytest.raises(ConfigError, match="max_steps must be >= 1"):
        make_env("vmas:simple_tag", {"max_steps": 0})
