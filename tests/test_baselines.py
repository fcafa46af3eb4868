"""The baselines (IPPO, MAPPO) on real games: the paper's alpha = 0 MAPPO failure, SB3 equivalence, CLI and evaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from sb3_neppo import evaluate, train
from sb3_neppo.baselines.ippo import IPPO
from sb3_neppo.baselines.mappo import MAPPO, CentralisedVecEnv
from sb3_neppo.envs import AgentView, ParallelVecEnv, make_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.solvers.lockstep import LockstepPPO

torch.set_num_threads(1)

SMALL_PPO = {"n_steps": 25, "batch_size": 200, "n_epochs": 2, "learning_rate": 7e-4, "policy_kwargs": {"net_arch": [32]}}


def test_lockstep_with_one_learner_is_sb3_ppo_learn_bit_for_bit():
    """One learner on every slot collects and trains exactly as ``PPO.learn`` on the same VecEnv (time-limit endings
    bootstrapped, same random numbers): the weights after two updates are identical."""
    env_fn = lambda: make_env("mpe2.simple_adversary_v3")  # noqa: E731
    view = AgentView(env_fn())
    reference = PPO("MlpPolicy", ParallelVecEnv(env_fn, 4, view), seed=3, **SMALL_PPO)
    reference.learn(2 * 25 * reference.n_envs)
    venv = ParallelVecEnv(env_fn, 4, view)
    learners = LockstepPPO(venv, [range(venv.num_envs)], SMALL_PPO, seed=3)
    for update in range(2):
        learners.collect()
        learners.train(1.0 - update / 2)
    ours = learners.models[0].policy.state_dict()
    for key, value in reference.policy.state_dict().items():
        assert torch.equal(value, ours[key]), key


@pytest.mark.slow
def test_alpha0_mappo_fails_as_in_the_paper_and_ippo_and_neppo_do_not(tmp_path):
    """alpha = 0 (unique NE (A1, B1)): MAPPO's summed reward is highest at (A2, B1), where player 0 gains 0.5 by
    switching to A1 (the paper's Table 1: 0.500); IPPO and NePPO reach the NE."""
    regret = {}
    for algo in ("mappo", "ippo", "neppo"):
        argv = ["--algo", algo, "--env", "matrix-alpha", "--seed", "0", "-f", str(tmp_path)]
        argv += ["--env-kwargs", "alpha:0", "mixed:false"] if algo != "neppo" else ["--env-kwargs", "alpha:0"]
        folder = train.run(argv)
        summary = json.loads((folder / "summary.json").read_text())
        regret[algo] = summary["max_regret"]
        if algo == "mappo":
            assert summary["strategies"]["player_0"][1] > 0.99 and summary["strategies"]["player_1"][0] > 0.99  # (A2, B1)
            assert summary["regret"]["player_0"] == pytest.approx(0.5, abs=0.01)
    assert regret["mappo"] == pytest.approx(0.5, abs=0.01)
    assert regret["ippo"] < 0.01 and regret["neppo"] < 0.01


def test_centralised_env_pays_the_team_total_and_shows_the_state():
    env_fn = lambda: make_env("mpe2.simple_adversary_v3")  # noqa: E731
    view = AgentView(env_fn())
    venv = CentralisedVecEnv(ParallelVecEnv(env_fn, 2, view), 3, view.obs_dim)
    venv.seed(0)
    obs = venv.reset()
    width = view.observation_space.shape[0]
    for _ in range(25):
        actions = np.random.default_rng(0).integers(5, size=venv.num_envs)
        new_obs, rewards, dones, infos = venv.step(actions)
        true = np.array([i["true_reward"] for i in infos]).reshape(2, 3)
        np.testing.assert_allclose(rewards.reshape(2, 3), np.repeat(true.sum(1, keepdims=True), 3, 1), rtol=1e-6)
        for c in range(2):  # every slot's state part is the copy's local observations, concatenated
            local = np.concatenate([new_obs[c * 3 + i, : view.obs_dim] for i in range(3)])
            for i in range(3):
                np.testing.assert_array_equal(new_obs[c * 3 + i, width:], local)
        obs = new_obs
    assert dones.all() and all(i["terminal_observation"].shape == obs.shape[1:] for i in infos)


def test_mappo_actor_ignores_the_state_and_is_exported_as_an_mlp_policy():
    model = MAPPO("mpe2.simple_adversary_v3", None, {"n_envs": 2, "ppo": SMALL_PPO}, seed=0)
    model.learn(200)
    policy = model.model.policy
    width = model.view.observation_space.shape[0]
    obs = torch.as_tensor(np.random.default_rng(1).normal(size=(5, policy.observation_space.shape[0])), dtype=torch.float32)
    shuffled = obs.clone()
    shuffled[:, width:] = torch.flip(obs[:, width:], [0])
    with torch.no_grad():
        logits = policy.get_distribution(obs).distribution.logits
        assert torch.allclose(logits, policy.get_distribution(shuffled).distribution.logits)
        assert not torch.allclose(policy.predict_values(obs), policy.predict_values(shuffled))
        exported = model.joint_policy().policies["agent_0"].get_distribution(obs[:, :width]).distribution.logits
    torch.testing.assert_close(exported, policy.get_distribution(obs).distribution.logits)


@pytest.mark.parametrize("share, n_learners", [("agent", 3), ("role", 2), ("all", 1)])
def test_ippo_parameter_sharing(share, n_learners):
    model = IPPO("mpe2.simple_adversary_v3", None, {"n_envs": 2, "share": share, "ppo": SMALL_PPO}, seed=0)
    model.learn(100)
    actors = model.actors()
    assert len({id(p) for p in actors.values()}) == n_learners
    assert (actors["agent_0"] is actors["agent_1"]) == (share != "agent")
    assert (actors["agent_0"] is actors["adversary_0"]) == (share == "all")


def test_same_seed_same_numbers_and_save_load(tmp_path):
    runs = [IPPO("mpe2.simple_adversary_v3", None, {"n_envs": 2, "ppo": SMALL_PPO}, seed=4).learn(300) for _ in range(2)]
    for a, b in zip(*(r.get_weights()["learners"] for r in runs)):
        for key in a:
            assert torch.equal(a[key], b[key])
    runs[0].save(tmp_path / "m.zip")
    loaded = IPPO.load(tmp_path / "m.zip")
    obs = make_env("mpe2.simple_adversary_v3").reset(seed=9)[0]
    assert loaded.predict(obs)[0] == runs[0].predict(obs)[0]
    assert (loaded.num_timesteps, loaded.returns) == (runs[0].num_timesteps, runs[0].returns)
    with pytest.raises(ConfigError, match="holds a ippo model, not mappo"):
        MAPPO.load(tmp_path / "m.zip")


@pytest.mark.slow
def test_baseline_run_on_vmas_is_scored_by_the_evaluator(tmp_path):
    """A MAPPO run on the batched VMAS backend writes the run folder; the evaluator trains best responses from scratch
    and from each agent's exported actor and fills summary.json."""
    argv = ["--algo", "mappo", "--env", "vmas:simple_adversary", "-n", "3200", "--seed", "0", "-f", str(tmp_path)]
    folder = train.run([*argv, "-params", "n_envs:16"])
    progress = (folder / "progress.csv").read_text().splitlines()
    assert progress[0].split(",") == ["iteration", "env_steps", "return_adversary_0", "return_agent_0", "return_agent_1"]
    assert int(progress[-1].split(",")[1]) == 3200
    report = evaluate.run([str(folder), "--br-timesteps", "800", "--eval-episodes", "16"])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["algo"] == "mappo" and summary["max_regret"] == report.max_regret == max(report.regret.values())
    assert summary["regret_budget"] == {a: 1600 for a in ("adversary_0", "agent_0", "agent_1")}
    assert np.isfinite(list(report.regret.values())).all()


def test_bad_baseline_input_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--storage is for --algo neppo only"):
        train.run(["--algo", "ippo", "--env", "matrix-alpha", "--storage", "x.db", "-f", str(tmp_path)])
    with pytest.raises(ConfigError, match="share must be one of"):
        train.run(["--algo", "ippo", "--env", "matrix-alpha", "-params", "share:team", "-f", str(tmp_path)])
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        train.run(["--algo", "mappo", "--env", "matrix-alpha", "-params", "share:agent", "-f", str(tmp_path)])
