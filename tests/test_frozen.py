"""The frozen-others env, the policy profile, and the PPO best-response solver on real games."""

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from mpe2 import simple_tag_v3
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_neppo.envs.frozen import FrozenOthersEnv, FrozenOthersVecEnv
from sb3_neppo.envs.matrix import prisoners_dilemma_env
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import PolicyProfile, frozen_copy


def tag():
    return simple_tag_v3.parallel_env(max_cycles=10)


def shared_profile(make, seed=0, **view_kwargs):
    """A joint policy from a freshly initialised SB3 PPO policy (its weights depend on the seed)."""
    venv = ParallelVecEnv(make, 1, AgentView(make(), **view_kwargs))
    model = PPO("MlpPolicy", venv, seed=seed, n_steps=8, batch_size=8)
    return PolicyProfile.shared(venv.view, frozen_copy(model.policy)), model


@pytest.mark.parametrize("use_view", [False, True])
def test_frozen_others_env_passes_gymnasium_check_env(use_view):
    profile, _ = shared_profile(tag)
    env = FrozenOthersEnv(tag(), "agent_0", profile, view=profile.view if use_view else None)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == ((16 + 4,) if use_view else (14,))


def test_sampled_others_are_reproducible_per_seed_and_deterministic_others_are_modes():
    profile, _ = shared_profile(tag)
    runs = []
    for seed in (7, 7, 8):
        env = FrozenOthersEnv(tag(), "agent_0", profile)
        obs, _ = env.reset(seed=seed)
        runs.append(np.concatenate([env.step(0)[0] for _ in range(10)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    observations, _ = tag().reset(seed=0)
    others = {a: o for a, o in observations.items() if a != "agent_0"}
    modes = profile.act(others, deterministic=True)
    for agent, obs in others.items():
        assert modes[agent] == int(np.argmax(profile.action_probabilities(agent, obs)))


def test_frozen_agents_do_not_change_while_a_best_response_trains():
    torch.set_num_threads(1)
    profile, model = shared_profile(tag)
    frozen = profile.policies["adversary_0"]
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    observations, _ = tag().reset(seed=0)
    actions_before = [profile.act(observations, True)]
    env = DummyVecEnv([lambda: FrozenOthersEnv(tag(), "agent_0", profile, view=profile.view) for _ in range(2)])
    br = PPO("MlpPolicy", env, seed=0, n_steps=32, batch_size=32, learning_rate=1e-2)
    br.policy.load_state_dict(model.policy.state_dict())  # warm start from the shared policy: same network
    br.learn(256)
    for key, value in frozen.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert profile.act(observations, True) == actions_before[0]
    assert all(not p.requires_grad for p in frozen.parameters())
    changed = any(not torch.equal(a, b) for a, b in zip(br.policy.state_dict().values(), before.values()))
    assert changed  # the best response itself did learn


def test_best_response_to_a_frozen_policy_in_the_prisoners_dilemma_is_defect():
    """Whatever the other plays, D is strictly dominant: a PPO best response must find it."""
    torch.set_num_threads(1)
    make = lambda: prisoners_dilemma_env(mixed=False)  # noqa: E731
    profile, _ = shared_profile(make, seed=1)
    agent = profile.view.agents[0]
    env = DummyVecEnv([lambda: FrozenOthersEnv(make(), agent, profile, view=profile.view) for _ in range(4)])
    br = PPO("MlpPolicy", env, seed=0, n_steps=32, batch_size=64, learning_rate=3e-3)
    br.learn(2048)
    probs = profile.with_agent(agent, br.policy).action_probabilities(agent, np.ones(1, np.float32))
    assert probs[1] > 0.9  # action 1 = D


def test_bad_agent_name_is_one_clear_line():
    profile, _ = shared_profile(tag)
    with pytest.raises(ConfigError, match="agent 'nobody' is not in this env"):
        FrozenOthersEnv(tag(), "nobody", profile)


def test_batched_frozen_others_give_the_same_numbers_as_one_by_one():
    profile, _ = shared_profile(tag)
    make = [lambda: FrozenOthersEnv(tag(), "agent_0", profile) for _ in range(3)]
    batched, single = FrozenOthersVecEnv(make), DummyVecEnv(make)
    rng = np.random.default_rng(0)
    for venv in (batched, single):
        venv.seed(4)
    out = [batched.reset().ravel()], [single.reset().ravel()]
    for _ in range(12):  # past the 10-step episodes: auto-reset included
        actions = rng.integers(0, 5, size=3)
        for trace, venv in zip(out, (batched, single)):
            obs, rewards, dones, _ = venv.step(actions)
            trace.append(np.concatenate([obs.ravel(), rewards, dones]))
    np.testing.assert_array_equal(np.concatenate(out[0]), np.concatenate(out[1]))
