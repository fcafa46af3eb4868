"""VMAS scenarios behind the PettingZoo API: the API test, seeding, truncation, and NePPO end to end."""

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test
from stable_baselines3 import PPO

from sb3_neppo import NePPO, StateMixerPotential
from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.envs import make_env
from sb3_neppo.envs.backend import backend_for
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.frozen import FrozenOthersEnv
from sb3_neppo.envs.potential_reward import PotentialRewardWrapper
from sb3_neppo.envs.view import AgentView
from sb3_neppo.envs.vmas import VmasFrozenOthersVecEnv, VmasVecEnv
from sb3_neppo.errors import ConfigError
from sb3_neppo.models import settings_for
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.solvers.sb3 import RolloutEvaluator


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


@pytest.mark.slow
def test_neppo_runs_on_a_vmas_scenario():
    torch.set_num_threads(1)
    config = dict(n_envs=2, br_updates=1, eval_episodes=3, ppo=dict(n_steps=8, batch_size=32, n_epochs=2))
    model = NePPO("vmas:simple_spread", env_kwargs={"max_steps": 8}, solver_kwargs=config, seed=0, delta=0.05, n_directions=1)
    model.learn(n_iterations=1)
    summary = model.summary()
    assert summary["env"] == "vmas:simple_spread" and summary["env_steps"] > 0
    assert np.isfinite(list(summary["F"].values())).all() and np.isfinite(summary["potential"]["params"]).all()
    assert summary["potential"]["class"] == "StateMixerPotential"  # simple_spread keeps the paper's settings


@pytest.mark.slow
@pytest.mark.parametrize("env, kwargs", [("vmas:simple_tag", {"max_steps": 8}), ("mpe2.simple_tag_v3", {"max_cycles": 8})])
def test_best_responses_train_on_br_n_envs_copies_and_the_budget_counts_them(env, kwargs):
    torch.set_num_threads(1)
    config = dict(n_envs=4, br_n_envs=1, eval_episodes=2, ppo=dict(n_steps=8, batch_size=32, n_epochs=2))
    model = NePPO(
        env, env_kwargs=kwargs, solver_kwargs=config, seed=0, potential="convex", delta=0.05, outer_step="zeroth_order"
    )
    assert model.config.solver_kwargs["br_ppo"] == {"batch_size": 8}  # capped at the best response's rollout of 1 × 8
    cost = model.iteration_cost()
    n = len(model.agents)
    assert cost["cooperative"] == 4 * 8 and cost["best_responses"] == n * 1 * 8
    model.learn(n_iterations=1)
    best_response = model.solvers.best_response
    assert {m.n_envs for m in best_response.models.values()} == {1} and model.solvers.cooperative.model.n_envs == 4 * n
    assert best_response.env_steps == 3 * n * 8  # two branch solves and the final one, 8 steps per agent each
    assert model.summary()["env_steps"] == model.solvers.env_steps <= cost["iteration"] + cost["solve"]
    assert np.isfinite(list(model.summary()["F"].values())).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, kwargs, start",
    [  # VMAS's simple_tag pays nothing without a catch: its F is 0 in short episodes, so its dense simple_adversary
        ("vmas:simple_adversary", {"max_steps": 8}, [0.5, 0.25, 0.25]),  # the adversary, then two good agents
        ("mpe2.simple_tag_v3", {"max_cycles": 8}, [0.2, 0.2, 0.2, 0.4]),  # three adversaries, then the good agent
    ],
)
def test_convex_potential_tied_within_roles_moves_one_weight_per_role(env, kwargs, start, tmp_path):
    torch.set_num_threads(1)
    config = dict(n_envs=4, eval_episodes=4, ppo=dict(n_steps=8, batch_size=32, n_epochs=2))
    tied = dict(
        potential="convex", potential_kwargs={"tie": "role", "weights": start}, outer_step="zeroth_order", delta=0.5, lr=1.0
    )
    model = NePPO(env, env_kwargs=kwargs, solver_kwargs=config, seed=0, **tied).learn(n_iterations=2)
    weights = model.summary()["potential"]["weights"]
    tied = [[w for w, s in zip(weights, start) if s == value] for value in sorted(set(start))]
    assert model.potential.dim == 2 and all(len(set(group)) == 1 for group in tied)  # w: one logit per role
    assert sum(weights) == pytest.approx(1.0) and np.abs(np.subtract(weights, start)).max() > 1e-4  # and it moved
    model.save(tmp_path / "tied.zip")
    loaded = NePPO.load(tmp_path / "tied.zip")
    assert loaded.potential.get_config()["tie"] == "role" and loaded.summary()["potential"]["weights"] == weights


def test_the_mixed_vmas_games_default_to_the_convex_potential_tied_within_roles():
    # hyperparams/neppo.yml: what did best at 1 M env steps (docs/table2-replication.md) on Simple World Comm, Tag and
    # Adversary; the cooperative ones keep the paper's potential settings, and all keep 64 worlds with minibatch 400
    mixed = [settings_for(f"vmas:{s}") for s in ("simple_world_comm", "simple_tag", "simple_adversary")]
    tied = ("convex", {"tie": "role"}, "regret_weights")
    assert all((s["potential"], s["potential_kwargs"], s["outer_step"]) == tied for s in mixed)
    assert [s["lr"] for s in mixed] == [0.4, 0.1, 0.1]  # each game's step, as measured there
    spread = settings_for("vmas:simple_spread")
    assert spread["outer_step"] == "zeroth_order"
    assert (spread["potential"], spread["potential_kwargs"], spread["delta"], spread["lr"]) == ("auto", {}, 0.0005, 0.01)
    assert {s["solver_kwargs"]["n_envs"] for s in (*mixed, spread)} == {64}
    assert {s["solver_kwargs"]["ppo"]["batch_size"] for s in (*mixed, spread)} == {400}
    dims = [NePPO(f"vmas:{s}", seed=0).potential.dim for s in ("simple_world_comm", "simple_tag", "simple_adversary")]
    assert dims == [3, 2, 2]  # one logit per role: leader, adversaries, good agents; adversaries, good agents


def test_bad_vmas_scenario_is_one_line():
    with pytest.raises(ConfigError, match="no VMAS scenario 'simple_tagg'"):
        make_env("vmas:simple_tagg")
    with pytest.raises(ConfigError, match=r"max_steps \(VMAS's episode length in steps\) must be an integer >= 1"):
        make_env("vmas:simple_tag", {"max_steps": 0})


@pytest.mark.parametrize("continuous", [False, True])
def test_vmas_vec_env_steps_the_worlds_the_pettingzoo_path_steps(continuous):
    """One batched world and the PettingZoo env on the same seed and actions: the same observations (through the same
    AgentView), true rewards, truncation, and the potential reward of the potential wrapper."""
    kwargs = {"max_steps": 6, "continuous_actions": continuous}
    env = make_env("vmas:simple_world_comm", kwargs)
    potential = StateMixerPotential(len(env.possible_agents), StepEncoder(env).state_dim)
    torch.nn.init.normal_(potential.mixer.weight, std=0.05)  # not the uniform mix: agents weigh differently
    venv = VmasVecEnv(env, n_worlds=1, potential=potential)
    reference = PotentialRewardWrapper(make_env("vmas:simple_world_comm", kwargs), potential)
    view = venv.view
    venv.seed(7)
    obs = venv.reset()
    ref_obs, _ = reference.reset(seed=7)
    rng = np.random.default_rng(0)
    for t in range(6):
        np.testing.assert_allclose(obs, np.stack([view.observe(a, ref_obs[a]) for a in env.possible_agents]), atol=1e-6)
        actions = (
            np.stack([view.action_space.sample() for _ in env.possible_agents])
            if continuous
            else rng.integers(0, view.action_space.n, len(env.possible_agents))
        )
        obs, rewards, dones, infos = venv.step(actions)
        joint = {a: view.env_action(a, actions[i]) for i, a in enumerate(env.possible_agents)}
        ref_obs, ref_rewards, _, truncated, ref_infos = reference.step(joint)
        np.testing.assert_allclose(rewards, [ref_rewards[a] for a in env.possible_agents], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            [i["true_reward"] for i in infos], [ref_infos[a]["true_reward"] for a in env.possible_agents]
        )
        assert dones.all() == (t == 5) and all(truncated.values()) == (t == 5)
    assert all(i["TimeLimit.truncated"] and i["episode"]["l"] == 6 for i in infos)
    assert venv.env_steps == 6


@pytest.mark.parametrize("continuous", [False, True])
def test_vmas_frozen_others_vec_env_plays_the_episodes_of_the_frozen_others_env(continuous):
    """One batched world and FrozenOthersEnv on the PettingZoo path, same seed, the others playing their most likely
    action: the same observations and rewards for the learning agent, step for step."""
    kwargs = {"max_steps": 5, "continuous_actions": continuous}
    env = make_env("vmas:simple_tag", kwargs)
    view = AgentView(env)
    model = PPO("MlpPolicy", VmasVecEnv(env, 2, view), n_steps=8, batch_size=16, seed=0)
    others = PolicyProfile.shared(view, frozen_copy(model.policy))
    batched = VmasFrozenOthersVecEnv(env, "agent_0", others, n_worlds=1, deterministic=True, view=view)
    single = FrozenOthersEnv(make_env("vmas:simple_tag", kwargs), "agent_0", others, deterministic=True, view=view)
    batched.seed(3)
    obs = batched.reset()
    ref, _ = single.reset(seed=3)
    for t in range(5):
        np.testing.assert_allclose(obs[0], ref, atol=1e-6)
        action = view.action_space.sample()
        obs, rewards, dones, infos = batched.step(np.array([action]))
        ref, reward, terminated, truncated, _ = single.step(action)
        assert rewards[0] == pytest.approx(reward, abs=1e-6) and dones[0] == (terminated or truncated) == (t == 4)
    assert infos[0]["TimeLimit.truncated"] and batched.env_steps == 5


@pytest.mark.parametrize("deterministic", [False, True])
def test_vmas_rollout_evaluator_plays_the_episode_of_the_pettingzoo_evaluator(deterministic):
    """One evaluation world on the batched backend and the PettingZoo evaluator, same seed, sampled or not: the same
    returns and Φ for π and for a deviation (common random numbers hold across the two backends)."""
    kwargs = {"max_steps": 6}
    env = make_env("vmas:simple_tag", kwargs)
    config = SB3SolverConfig(eval_episodes=1, deterministic=deterministic, gamma=0.95)
    view = AgentView(env)
    model = PPO("MlpPolicy", VmasVecEnv(env, 2, view), n_steps=8, batch_size=16, seed=0)
    joint = PolicyProfile.shared(view, frozen_copy(model.policy))
    deviation = PPO("MlpPolicy", VmasVecEnv(env, 2, view), n_steps=8, batch_size=16, seed=1).policy
    potential = StateMixerPotential(4, StepEncoder(env).state_dim)
    torch.nn.init.normal_(potential.mixer.weight, std=0.05)
    batched = RolloutEvaluator(lambda: env, config, view=view, backend=backend_for(env, lambda: env))  # batched worlds
    single = RolloutEvaluator(lambda: make_env("vmas:simple_tag", kwargs), config)  # env copies
    for profile in (joint, joint.with_agent("agent_0", frozen_copy(deviation))):
        a, b = batched.estimate(potential, profile, seed=5), single.estimate(potential, profile, seed=5)
        np.testing.assert_allclose(a.returns, b.returns, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a.potential, b.potential, rtol=1e-6, atol=1e-6)
    assert batched.env_steps == single.env_steps == 12


def test_vmas_worlds_that_end_at_different_times_restart_alone():
    """VMAS balance ends a world when its package falls, so worlds end at different steps: each ended world reports
    its own episode (length, return = the sum of its rewards since it last ended), restarts alone, the rest go on."""
    env = make_env("vmas:balance", {"max_steps": 60})
    venv = VmasVecEnv(env, 8)
    n = venv.n_agents
    venv.seed(0)
    obs = venv.reset()
    rng = np.random.default_rng(0)
    since, steps, ends = np.zeros(venv.num_envs), np.zeros(venv.num_envs, dtype=int), []
    for t in range(90):
        obs, paid, dones, infos = venv.step(rng.integers(venv.action_space.n, size=venv.num_envs))
        since += [info["true_reward"] for info in infos]
        steps += 1
        per_world = dones.reshape(-1, n)
        assert (per_world.all(axis=1) == per_world.any(axis=1)).all()  # a world's agents end together
        for k in np.flatnonzero(dones):
            episode = infos[k]["episode"]
            assert episode["l"] == steps[k] and episode["true_r"] == pytest.approx(since[k]) == episode["r"]
            assert not np.array_equal(infos[k]["terminal_observation"], obs[k])  # the world restarted
            ends.append((t, k // n, episode["l"], infos[k]["TimeLimit.truncated"]))
            since[k], steps[k] = 0.0, 0
    terminated = [(t, world, length) for t, world, length, cut in ends if not cut]
    assert len({length for _, _, length in terminated}) >= 3 and all(length < 60 for _, _, length in terminated)
    assert any(sum(s == t for s, *_ in ends) < 8 for t, _, _ in terminated)  # some worlds end, the others go on
    truncated = [length for _, _, length, cut in ends if cut]  # the others' clocks ran on: cut at exactly 60 steps
    assert truncated and all(length == 60 for length in truncated)


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [False, True])
def test_vmas_rollout_evaluator_ends_an_episode_where_its_world_terminates(deterministic):
    """On balance a world can end before max_steps: the batched evaluator's episode stops there, as the PettingZoo
    evaluator's does (same returns and lengths on the same seeds)."""
    kwargs = {"max_steps": 60}
    env = make_env("vmas:balance", kwargs)
    config = SB3SolverConfig(eval_episodes=1, deterministic=deterministic, gamma=0.95)
    view = AgentView(env)
    model = PPO("MlpPolicy", VmasVecEnv(env, 2, view), n_steps=8, batch_size=48, seed=0)
    joint = PolicyProfile.shared(view, frozen_copy(model.policy))
    batched = RolloutEvaluator(lambda: env, config, view=view, backend=backend_for(env, lambda: env))  # batched worlds
    single = RolloutEvaluator(lambda: make_env("vmas:balance", kwargs), config)  # env copies
    lengths = []
    for seed in range(4):
        a, b = batched.rollouts(joint, seed), single.rollouts(joint, seed)
        lengths.append(len(a.rewards[0]))
        assert len(b.rewards[0]) == lengths[-1]
        np.testing.assert_allclose(a.returns(), b.returns(), rtol=1e-6, atol=1e-6)
    assert min(lengths) < 60
