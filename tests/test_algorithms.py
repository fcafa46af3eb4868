"""Any on-policy SB3 / sb3-contrib algorithm as an inner solver: solver_kwargs.algo, br_algo and policy; recurrent
policies carry their hidden state through the frozen-others envs, the rollout estimates and the regret evaluator."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from mpe2 import simple_spread_v3

from examples.cue_game import CueGame
from sb3_neppo import NePPO
from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import Memory
from sb3_neppo.regret import RegretConfig, RegretEvaluator
from sb3_neppo.solvers.sb3 import rollout_evaluator

ROOT = Path(__file__).resolve().parents[1]
FEED_FORWARD_CEILING = 2 * (0.99 + 0.99**2 + 0.99**3) / 2  # the cue game: no feed-forward joint policy gets more
SMALL = {"learning_rate": 3e-3, "policy_kwargs": {"net_arch": [32]}}
RECURRENT = {
    "algo": "RecurrentPPO",
    "n_envs": 8,
    "ppo": {**SMALL, "policy_kwargs": {"net_arch": [32], "lstm_hidden_size": 16}},
}
FEED_FORWARD = {"n_envs": 8, "ppo": SMALL}
LSTM = "ppo: {n_epochs: 2, policy_kwargs: {net_arch: [64], lstm_hidden_size: 32}}"  # recurrent training is slow on a CPU
RECURRENT_CLI = f"solver_kwargs:{{algo: sb3_contrib.RecurrentPPO, policy: MlpLstmPolicy, n_envs: 2, eval_episodes: 2, {LSTM}}}"


def test_the_paper_ppo_defaults_an_algorithm_does_not_take_are_left_out():
    a2c = SB3SolverConfig(algo="A2C").algo_kwargs()
    assert "clip_range" not in a2c and "n_epochs" not in a2c and "batch_size" not in a2c
    assert a2c["n_steps"] == 25 and a2c["ent_coef"] == 0.02
    trpo = SB3SolverConfig(algo="sb3_contrib.TRPO").algo_kwargs()
    assert "ent_coef" not in trpo and trpo["batch_size"] == 400
    # a best-response algorithm of its own takes only the keys of ppo it has, then br_ppo
    config = SB3SolverConfig(ppo={"clip_range": 0.1, "n_steps": 16}, br_algo="A2C", br_ppo={"use_rms_prop": False})
    assert config.algo_kwargs()["clip_range"] == 0.1
    br = config.algo_kwargs(best_response=True)
    assert "clip_range" not in br and br["n_steps"] == 16 and br["use_rms_prop"] is False
    assert config.n_steps(best_response=True) == 16
    assert SB3SolverConfig(algo="RecurrentPPO").policy_name() == "MlpLstmPolicy"
    assert SB3SolverConfig(br_algo="RecurrentPPO").policy_name(best_response=True) == "MlpLstmPolicy"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"algo": "DQN"}, "solver_kwargs.algo: unknown algorithm 'DQN'; use one of PPO, A2C, TRPO"),
        ({"br_algo": "stable_baselines3.SAC"}, "solver_kwargs.br_algo: 'stable_baselines3.SAC' is not an on-policy"),
        ({"algo": "mypackage.MyPPO"}, "which is not imported; importing it runs its code"),
        ({"algo": "RecurrentPPO", "policy": "MlpPolicy"}, "RecurrentPPO has no policy 'MlpPolicy'; its policies are MlpLstm"),
        ({"algo": "A2C", "ppo": {"clip_range": 0.1}}, "bad A2C argument in solver_kwargs.ppo: clip_range is not an argument"),
        ({"br_algo": "A2C", "br_ppo": {"n_epochs": 3}}, "bad A2C argument in solver_kwargs.br_ppo: n_epochs"),
        ({"algo": "A2C", "ppo": {"n_steps": "many"}}, "bad A2C argument: solver_kwargs.ppo.n_steps"),
    ],
)
def test_bad_algorithm_settings_are_one_line(settings, message):
    with pytest.raises(ConfigError) as info:
        SB3SolverConfig.from_dict(settings)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "policy, message",
    [
        ("CnnPolicy", "a CNN policy needs image observations (a uint8 Box with values 0..255"),
        ("MultiInputPolicy", "a multi-input policy needs Dict observations, and agent_0's are Box"),
    ],
)
def test_a_policy_that_does_not_fit_the_observations_is_one_line(policy, message):
    with pytest.raises(ConfigError) as info:
        NePPO(simple_spread_v3.parallel_env(), seed=0, solver_kwargs={"policy": policy, "n_envs": 2})
    assert message in str(info.value) and "\n" not in str(info.value)


def _returns(model: NePPO) -> np.ndarray:
    """J_i of the model's π^Φ on 256 episodes of the rollout evaluator (its recurrent states kept per episode)."""
    config = SB3SolverConfig(**{**asdict(model.solvers.config), "eval_episodes": 256})
    return rollout_evaluator(CueGame, config, model.result.policy.view).rollouts(model.result.policy, 123).returns().mean(0)


@pytest.mark.slow
def test_a_recurrent_cooperative_solver_and_the_evaluator_remember_what_feed_forward_cannot(tmp_path):
    recurrent = NePPO(CueGame(), seed=0, solver_kwargs=RECURRENT).learn(total_timesteps=15_000)
    feed_forward = NePPO(CueGame(), seed=0, solver_kwargs=FEED_FORWARD).learn(total_timesteps=10_000)
    # the evaluator scores the recurrent π^Φ far above what any feed-forward joint policy can get
    assert (_returns(recurrent) > FEED_FORWARD_CEILING + 1.5).all(), _returns(recurrent)
    assert (_returns(feed_forward) <= FEED_FORWARD_CEILING + 0.4).all(), _returns(feed_forward)  # 4 SE of 256 cues
    # predict carries the state SB3-style (a fresh state each step forgets the cue); a loaded model plays alike
    recurrent.save(tmp_path / "cue.zip")
    loaded = NePPO.load(tmp_path / "cue.zip", env=CueGame())
    remembering, forgetting = _match_rate(recurrent, True), _match_rate(recurrent, False)
    assert remembering > 0.7 and forgetting <= 0.6, (remembering, forgetting)  # forgetting: chance, 0.5
    assert _match_rate(loaded, True) == remembering


def _match_rate(model: NePPO, keep_state: bool, episodes: int = 20) -> float:
    """The share of paid (blank) steps at which an agent's action matched the cue, acting by ``predict``."""
    matched, paid = 0.0, 0
    for seed in range(episodes):
        env = CueGame()
        obs, _ = env.reset(seed=seed)
        actions, state = model.predict(obs)
        assert isinstance(state, Memory)
        while env.agents:
            obs, rewards, *_ = env.step(actions)
            if env.t > 1:
                matched, paid = matched + rewards["a"] / 2, paid + 1
            if env.agents:
                actions, state = model.predict(obs, state=state if keep_state else None)
    return matched / paid


@pytest.mark.slow
def test_a_recurrent_best_response_gains_what_a_feed_forward_one_cannot():
    model = NePPO(CueGame(), seed=0, solver_kwargs=FEED_FORWARD).learn(total_timesteps=10_000)
    reports = {}
    for algo, ppo in (("PPO", SMALL), ("RecurrentPPO", RECURRENT["ppo"])):
        solver = SB3SolverConfig(**{**asdict(model.solvers.config), "br_algo": algo, "br_ppo": ppo})
        config = RegretConfig(br_timesteps=6000, eval_episodes=32, starts=("scratch",), bootstrap=200)
        evaluator = RegretEvaluator(CueGame, model.result.policy.view, solver, config)
        reports[algo] = evaluator.evaluate(model.result.policy, ["a"])
    ff, rec = reports["PPO"].agents[0], reports["RecurrentPPO"].agents[0]
    assert rec.base_return == ff.base_return  # the same frozen joint policy, the same episodes
    # remembering the cue is worth 0.5 × 2.94 to agent a whatever b plays; a feed-forward response cannot gain it
    assert rec.br_return > ff.br_return + 0.6, (rec, ff)
    assert rec.regret > 1.0 and rec.ci[0] > ff.regret
    assert reports["RecurrentPPO"].settings["algo"] == "RecurrentPPO"
    assert reports["RecurrentPPO"].settings["policy"] == "MlpLstmPolicy"


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, algo",
    [
        (RECURRENT_CLI, "RecurrentPPO"),
        ("solver_kwargs:{br_algo: A2C, n_envs: 2, eval_episodes: 2}", "A2C"),
    ],
)
def test_the_command_line_trains_with_another_algorithm_on_simple_spread(tmp_path, settings, algo):
    cmd = [sys.executable, "-m", "sb3_neppo.train", "--env", "mpe2.simple_spread_v3", "-n", "1200", "--seed", "0"]
    done = subprocess.run([*cmd, "-params", settings, "-f", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = (tmp_path / "neppo").iterdir()
    recorded = yaml.safe_load((folder / "config.yml").read_text())["solver_kwargs"]
    assert algo in (recorded["algo"].split(".")[-1], recorded["br_algo"])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["iterations"] >= 1 and all(np.isfinite(v) for v in summary["F"].values())
    evaluated = subprocess.run(
        [sys.executable, "-m", "sb3_neppo.evaluate", str(folder), "--br-timesteps", "400", "--eval-episodes", "4",
         "--agents", "agent_0", "--starts", "scratch"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    regret = json.loads((folder / "regret.json").read_text())
    assert np.isfinite(regret["max_regret"]) and regret["settings"]["algo"] == (recorded["br_algo"] or recorded["algo"])


@pytest.mark.parametrize("baseline", ["ippo", "mappo"])
def test_the_ppo_baselines_train_with_another_algorithm_and_save_their_settings(tmp_path, baseline):
    from sb3_neppo.models import load_model, model_class

    cls = model_class(baseline)
    for algo in ("A2C", "TRPO"):
        model = cls("mpe2.simple_spread_v3", {"max_cycles": 8}, {"algo": algo, "n_envs": 2}, seed=0).learn(64)
        assert {type(m).__name__ for m in model.learners.models} == {algo}
        assert model.regret_solver_config().algorithm().__name__ == algo  # the evaluator's best responses too
        model.save(tmp_path / f"{algo}.zip")  # A2C writes its optimizer into policy_kwargs: never into the settings
        assert load_model(tmp_path / f"{algo}.zip").config.algo == algo
