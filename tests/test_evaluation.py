"""The regret evaluator: best responses against frozen others, raw gains with bootstrap CIs, the CLI and its files."""

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3 import PPO

from sb3_neppo import NePPO
from sb3_neppo.config import REGRET_SELECTION_SEED, SB3SolverConfig
from sb3_neppo.envs.games import alpha_game
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.evaluate import evaluate_model, main
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.regret import RegretConfig, RegretEvaluator, bootstrap_ci
from sb3_neppo.train import main as train_main

MATRIX_SOLVER = {
    "n_envs": 8,
    "coop_updates": 1,
    "br_updates": 1,
    "eval_episodes": 4,
    "gamma": 1.0,
    "ppo": {"n_steps": 16, "batch_size": 128, "policy_kwargs": {"net_arch": []}},
    "br_ppo": {"learning_rate": 0.05, "ent_coef": 0.0},
}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.slow
def test_best_response_regret_agrees_with_the_exact_regret_on_a_normal_form_game():
    """Pure-action alpha game, a PPO joint policy near 50/50: PPO best responses against the sampled others, paired
    sampled episodes; the exact regret of the policy's strategies lies inside each agent's 95 % interval."""
    model = NePPO(
        "matrix-alpha", env_kwargs={"alpha": 0.4, "mixed": False}, solver="sb3", solver_kwargs=MATRIX_SOLVER, seed=0
    ).learn(n_iterations=1)
    exact = evaluate_model(model)
    assert exact.method == "exact" and exact.regret["player_0"] > 0.1  # far from an equilibrium: a real test
    config = RegretConfig(br_timesteps=2048, eval_episodes=1000, deterministic=False)
    sampled = evaluate_model(model, config, best_response=True)
    assert sampled.method == "best-response"
    for row in sampled.agents:
        assert row.ci[0] <= exact.regret[row.agent] <= row.ci[1], (row.agent, row.ci, exact.regret[row.agent])
        assert row.br_env_steps == 2 * 2048
    assert sampled.max_ci[0] <= exact.max_regret <= sampled.max_ci[1]


def test_bootstrap_intervals_cover_the_mean_and_the_max_resamples_rows_together():
    rng = np.random.default_rng(0)
    gains = rng.normal([0.0, 1.0], 0.5, size=(400, 2))
    per_agent, of_max = bootstrap_ci(gains, 0.95, 2000, seed=1)
    for column, (low, high) in zip(gains.T, per_agent):
        se = column.std() / np.sqrt(len(column))
        assert low < column.mean() < high and high - low == pytest.approx(3.92 * se, rel=0.15)
    assert of_max[0] == pytest.approx(per_agent[1][0], abs=0.02)  # agent 1's gain is the max in every resample


@pytest.mark.slow
def test_evaluate_cli_scores_a_trained_run_and_fills_its_summary(tmp_path, capsys):
    """regret.json and summary.json of an mpe2 run agree with each other and with the raw per-agent numbers; the kept
    best response is the checkpoint with the best return on the selection episodes."""
    argv = ["--env", "mpe2.simple_adversary_v3", "-params", "n_iterations:1", "--seed", "0", "-f", str(tmp_path)]
    assert train_main(argv) == 0
    run = next((tmp_path / "neppo").iterdir())
    before = json.loads((run / "summary.json").read_text())
    assert main([str(run), "--br-timesteps", "2400", "--eval-episodes", "16"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "regret.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["regret"] == report["regret"] and summary["max_regret"] == report["max_regret"]
    assert summary["regret_method"] == "best-response" and summary["F"] == before["F"]  # the rest untouched
    assert report["max_regret"] == max(report["regret"].values())
    low, high = report["max_regret_ci"]
    assert low <= report["max_regret"] <= high
    for agent, row in report["agents"].items():
        assert row["ci"][0] <= row["regret"] <= row["ci"][1]
        assert row["br_return"] - row["base_return"] == pytest.approx(row["regret"])  # raw, not clipped
        assert row["start"] in ("scratch", "warm") and summary["regret_budget"][agent] == row["br_env_steps"] >= 4800
        assert [len(c) for c in row["curves"].values()] == [6, 6]
        kept_at = max(row["curves"][row["start"]], key=lambda point: point[1])[0]  # the first best selection return
        assert row["kept_at"] == kept_at and f"kept {row['start']} at {kept_at} env steps" in out
        if row["start"] == "warm" and max(r for _, r in row["curves"]["warm"]) == row["curves"]["warm"][0][1]:
            assert row["regret"] == 0.0 and row["ci"] == [0.0, 0.0]  # π_i itself kept: no gain, exactly
    assert report["settings"]["br_timesteps"] == 2400 and report["settings"]["deterministic"] is True


@pytest.mark.slow
def test_a_warm_best_response_starts_at_the_agents_own_return(tmp_path):
    """VMAS backend: the warm start's first curve point is π_i's own return on the selection episodes."""
    model = NePPO(
        "vmas:simple_tag",
        env_kwargs={"max_steps": 10},
        solver="sb3",
        solver_kwargs={"n_envs": 4, "coop_updates": 1, "br_updates": 1, "eval_episodes": 4, "ppo": {"n_steps": 10}},
        n_directions=1,
        seed=0,
    ).learn(n_iterations=1)
    coop = model.solvers.cooperative
    config = RegretConfig(br_timesteps=80, eval_episodes=8, starts=("warm",), curve_points=2)
    evaluator = RegretEvaluator(model.env_fn, coop.view, coop.config, config)
    report = evaluator.evaluate(model.result.policy, ["agent_0"])
    own = evaluator.rollouts.rollouts(model.result.policy, REGRET_SELECTION_SEED).returns()[:, coop.view.index["agent_0"]]
    row = report.agents[0]
    assert row.curves["warm"][0] == (0, pytest.approx(own.mean()))
    assert [a.agent for a in report.agents] == ["agent_0"] and row.br_env_steps == 80


def test_evaluator_bad_input_is_one_line(tmp_path, capsys):
    empty = tmp_path / "run"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    model = NePPO("matrix-alpha", seed=0).learn(n_iterations=1)
    model.save(empty / "model.zip")
    for argv, message in (
        ([str(empty), "--agents", "nobody"], "no agent 'nobody'"),
        ([str(empty), "--br-timesteps", "0"], "br_timesteps must be an integer >= 1"),
        ([str(tmp_path / "missing")], "no such run folder"),
        ([str(empty), "--starts", "best"], "starts must be one or both of"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.strip().count("\n") == 0, err
    assert main([str(empty), "--best-response"]) == 2
    assert "needs a run trained with the sb3 solver" in capsys.readouterr().err


class RepeatedGame(ParallelEnv):
    """The alpha game played ``steps`` times with a constant observation: a Markov game whose regret at a stationary
    mixed profile is exactly ``steps`` x the one-shot regret (γ = 1)."""

    metadata = {"name": "repeated_alpha"}

    def __init__(self, steps: int = 3):
        self.game, self.steps = alpha_game(0.4), steps
        self.possible_agents = ["player_0", "player_1"]
        self.agents: list[str] = []

    def observation_space(self, agent):
        return spaces.Box(0.0, 1.0, (1,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.ones(1, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        payoffs = self.game.payoffs[:, int(actions["player_0"]), int(actions["player_1"])]
        self.t += 1
        done = self.t >= self.steps
        rewards = {a: float(p) for a, p in zip(self.possible_agents, payoffs)}
        observations = {a: np.ones(1, np.float32) for a in self.possible_agents}
        flags = {a: done for a in self.possible_agents}
        if done:
            self.agents = []
        return observations, rewards, {a: False for a in flags}, flags, {a: {} for a in flags}


@pytest.mark.slow
def test_best_response_regret_of_a_markov_game_is_its_exact_value():
    """Three rounds of the alpha game, both players mixing (0.7, 0.3) and (0.4, 0.6) every round: each agent's regret
    is 3 x its one-shot regret, and the evaluator's 99 % interval (sampled play, PPO best responses, 2,000 paired
    episodes) contains it."""
    view = AgentView(RepeatedGame())
    policy = PPO("MlpPolicy", ParallelVecEnv(RepeatedGame, 1, view), policy_kwargs={"net_arch": []}, seed=0).policy
    strategies = [np.array([0.7, 0.3]), np.array([0.4, 0.6])]
    with torch.no_grad():  # input: [constant 1, indicator player_0, indicator player_1]
        policy.action_net.weight.copy_(torch.tensor(np.stack([np.zeros(2), *np.log(strategies)], axis=1)))
        policy.action_net.bias.zero_()
    joint = PolicyProfile.shared(view, frozen_copy(policy))
    exact = 3 * alpha_game(0.4).regret(strategies)
    solver = SB3SolverConfig(n_envs=8, gamma=1.0, ppo=MATRIX_SOLVER["ppo"], br_ppo=MATRIX_SOLVER["br_ppo"])
    config = RegretConfig(br_timesteps=3000, eval_episodes=2000, deterministic=False, confidence=0.99)
    report = RegretEvaluator(RepeatedGame, view, solver, config).evaluate(joint)
    for row, value in zip(report.agents, exact):
        assert row.ci[0] <= value <= row.ci[1], (row.agent, row.ci, value)
    assert exact.min() > 0.15  # a real gap to find for each agent
