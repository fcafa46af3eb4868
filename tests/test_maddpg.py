"""MADDPG on real games: it learns the dominant equilibrium of a normal-form game, improves a cooperative MPE team,
runs on VMAS, stores episode ends right, is reproducible and saves/loads exactly, and rejects bad settings in one line."""

import math

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from stable_baselines3 import PPO

from sb3_neppo.baselines.maddpg import MADDPG, MADDPGConfig
from sb3_neppo.envs.registry import make_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.hyperparams_files import HYPERPARAMS_DIR
from sb3_neppo.models import settings_for
from sb3_neppo.solvers.sb3 import start_from

torch.set_num_threads(1)

SMALL = {"n_envs": 2, "train_freq": 25, "gradient_steps": 2, "batch_size": 32, "buffer_size": 1000, "learning_starts": 0}


def mean_return(model: MADDPG, episodes: int = 10) -> float:
    """Mean true return (over agents and fixed-seed episodes) of the model's deterministic joint policy."""
    profile, env = model.joint_policy(), make_env(model.env_id, model.env_kwargs)
    total = 0.0
    for episode in range(episodes):
        obs, _ = env.reset(seed=1000 + episode)
        while env.agents:
            obs, rewards, _, _, _ = env.step(profile.act(obs, deterministic=True))
            total += sum(rewards.values())
    return total / episodes / len(model.agents)


def test_prisoners_dilemma_pure_actions_learns_to_defect():
    config = settings_for("prisoners-dilemma", "maddpg")
    budget = config.pop("n_timesteps")
    model = MADDPG("prisoners-dilemma", {"mixed": False}, config, seed=0).learn(budget)
    summary = model.summary()
    assert summary["action_names"]["player_0"][1] == "D"
    assert all(p[1] >= 0.9 for p in summary["strategies"].values()), summary["strategies"]
    assert summary["regret_method"] == "exact" and summary["max_regret"] < 0.3
    assert summary["env_steps"] == budget == 4000 and summary["iterations"] == 4000 // 16


@pytest.mark.slow
def test_mpe2_simple_spread_team_improves():
    """4000 env steps with a high replay ratio (16 updates per 100 env steps): the deterministic team's mean return
    over 10 fixed-seed episodes improves by 7 to 23 on seeds 0-5 (seeds that start from standing still, about -34,
    are the hard ones); 5 is asserted."""
    config = {"n_envs": 4, "gradient_steps": 16, "batch_size": 256, "buffer_size": 10_000, "learning_starts": 500, "lr": 1e-3}
    model = MADDPG("mpe2.simple_spread_v3", {}, config, seed=1)
    before = mean_return(model)
    logs = []
    model.learn(4000, callback=lambda log, _: logs.append(log))
    after = mean_return(model)
    assert after > before + 5, (before, after)
    assert logs[0]["critic_loss"] is None and logs[-1]["critic_loss"] is not None  # updates wait for learning_starts
    assert set(model.returns) == set(model.agents) and all(-100 < r < 0 for r in model.returns.values())


def test_episode_ends_time_limit_bootstraps_termination_does_not():
    # mpe2 ends episodes by truncation (max_cycles): no stored transition is terminal, and the last step of an
    # episode stores the terminal observation as next observation, not the next episode's first one
    model = MADDPG("mpe2.simple_spread_v3", {"max_cycles": 5}, {**SMALL, "train_freq": 5}, seed=0)
    first = model._last_obs.copy()
    assert model.learn(1).num_timesteps == 2 * 5
    buffer, n, obs_dim = model.buffer, len(model.agents), model.view.obs_dim
    assert buffer.size == 2 * 5 and not buffer.terminals[: buffer.size].any()
    assert np.array_equal(buffer.obs[:2], first[:, :obs_dim].reshape(2, n, obs_dim))
    assert np.array_equal(buffer.next_obs[:8], buffer.obs[2:10])  # rows: step-major, copy-minor
    next_episode = model._last_obs[:, :obs_dim].reshape(2, n, obs_dim)
    assert not np.isclose(buffer.next_obs[8:10], next_episode).all(axis=2).any()  # the fifth step: terminal obs
    assert set(model.returns) == set(model.agents)
    # a normal-form game ends by termination: every transition is terminal (no bootstrap)
    game = MADDPG("prisoners-dilemma", {"mixed": False}, {**SMALL, "train_freq": 3}, seed=0).learn(1)
    assert game.buffer.size == 6 and game.buffer.terminals[:6].all()
    assert set(np.unique(game.buffer.rewards[:6])) <= {0.0, 1.0, 3.0, 5.0}


@pytest.mark.parametrize("continuous", [False, True])
def test_vmas_simple_spread_trains_and_acts_in_its_spaces(continuous):
    env_kwargs = {"max_steps": 25, "continuous_actions": continuous}
    ppo = {"n_steps": 25, "batch_size": 200, "policy_kwargs": {"net_arch": [64]}}
    model = MADDPG("vmas:simple_spread", env_kwargs, {**SMALL, "n_envs": 8, "noise_std": 0.3, "ppo": ppo}, seed=0)
    start = {k: v.clone() for k, v in model.actors()[model.agents[0]].state_dict().items()}
    model.learn(3 * 8 * 25)
    assert model.num_rounds == 3 and model.num_timesteps == 600
    assert set(model.returns) == set(model.agents)  # every round ends one episode of every world
    trained = model.actors()[model.agents[0]].state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)
    env = make_env("vmas:simple_spread", env_kwargs)
    obs, _ = env.reset(seed=3)
    profile = model.joint_policy()
    for deterministic in (True, False):
        actions = profile.act(obs, deterministic, np.random.default_rng(0))
        assert set(actions) == set(env.possible_agents)
        for agent, action in actions.items():
            space = env.action_space(agent)
            assert isinstance(space, spaces.Box if continuous else spaces.Discrete)
            assert space.contains(np.asarray(action, space.dtype) if continuous else int(action))
    # the regret evaluator's best response (PPO with the config's network) warm-starts from an actor
    best_response = PPO("MlpPolicy", model.venv, **ppo)
    start_from(best_response, model.actors()[model.agents[1]])
    obs_t = torch.as_tensor(model.venv.reset()[:4])
    assert torch.equal(
        best_response.policy.get_distribution(obs_t).mode(), profile.policies[model.agents[1]].get_distribution(obs_t).mode()
    )
    if continuous:  # the exported Gaussian explores as the actor did
        policy = profile.policies[model.agents[0]]
        assert torch.allclose(policy.log_std, torch.full_like(policy.log_std, math.log(0.3)))


def test_same_seed_same_weights_and_save_load_round_trip(tmp_path):
    def run(seed):
        return MADDPG("mpe2.simple_spread_v3", {"max_cycles": 25}, SMALL, seed=seed).learn(2 * 50)

    a, b, c = run(5), run(5), run(6)
    weights_a, weights_b, weights_c = a.get_weights(), b.get_weights(), c.get_weights()
    assert set(weights_a) == {"actors", "target_actors", "critics", "target_critics"}

    def flat(weights):
        return [t for group in weights.values() for state in group.values() for t in state.values()]

    assert all(torch.equal(x, y) for x, y in zip(flat(weights_a), flat(weights_b), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(flat(weights_a), flat(weights_c), strict=True))
    assert a.returns == b.returns

    a.save(tmp_path / "maddpg")
    loaded = MADDPG.load(tmp_path / "maddpg.zip")
    assert all(torch.equal(x, y) for x, y in zip(flat(weights_a), flat(loaded.get_weights()), strict=True))
    env = make_env("mpe2.simple_spread_v3", {"max_cycles": 25})
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert a.predict(obs)[0] == loaded.predict(obs)[0]
    keys = ("algo", "env", "env_kwargs", "seed", "iterations", "env_steps", "returns", "hyperparams")
    summary, loaded_summary = a.summary(), loaded.summary()
    assert {k: summary[k] for k in keys} == {k: loaded_summary[k] for k in keys}
    assert loaded_summary["iterations"] == 2 and loaded_summary["env_steps"] == 100
    assert loaded.learn(50).summary()["env_steps"] == 150  # training goes on from the loaded weights and counters


@pytest.mark.parametrize(
    "values, key",
    [
        ({"tau": 0}, "tau"),
        ({"tau": 1.5}, "tau"),
        ({"batch_size": 0}, "batch_size"),
        ({"buffer_size": 8, "n_envs": 16}, "buffer_size"),
        ({"lr": -0.01}, "lr"),
        ({"maddpg_gamma": 1.2}, "maddpg_gamma"),
        ({"train_freq": 2.5}, "train_freq"),
        ({"gradient_steps": True}, "gradient_steps"),
        ({"learning_starts": -1}, "learning_starts"),
        ({"noise_std": 0}, "noise_std"),
        ({"gumbel_temperature": "hot"}, "gumbel_temperature"),
        ({"critic_net_arch": [64, 0]}, "critic_net_arch"),
        ({"max_grad_norm": 0}, "max_grad_norm"),
        ({"n_envs": 0}, "n_envs"),
        ({"buffer": 10}, "buffer"),
    ],
)
def test_bad_config_is_one_line(values, key):
    with pytest.raises(ConfigError, match=rf"^(unknown hyperparameter )?{key}\b") as info:
        MADDPGConfig.from_dict(values)
    assert "\n" not in str(info.value)


def test_hyperparams_file():
    data = yaml.safe_load((HYPERPARAMS_DIR / "maddpg.yml").read_text())
    for env_id in set(data) - {"default", "normal-form"}:  # every env's entry is a valid config with a budget
        config = settings_for(env_id, "maddpg")
        assert config.pop("n_timesteps") >= 1
        MADDPGConfig.from_dict(config)
    default = MADDPGConfig.from_dict({k: v for k, v in data["default"].items() if k != "n_timesteps"})
    paper = {"buffer_size": 1_000_000, "batch_size": 1024, "lr": 0.01, "maddpg_gamma": 0.95, "tau": 0.01}
    assert {k: getattr(default, k) for k in paper} == paper
    assert settings_for("vmas:simple_tag", "maddpg")["n_envs"] == 64
    assert settings_for("mpe2.simple_tag_v3", "maddpg")["ppo"]["policy_kwargs"] == {"net_arch": [64]}
    config = {k: v for k, v in data["normal-form"].items() if k != "n_timesteps"}
    with pytest.raises(ConfigError, match="^tau must be in"):
        MADDPG("prisoners-dilemma", config={**config, "tau": 0})
