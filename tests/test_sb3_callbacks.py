"""Drop-in SB3 callbacks: true per-agent returns and periodic regret, composed with CallbackList in a user's PPO."""

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from sb3_neppo.callbacks import NePPOCallback, RegretCallback, TrueReturnCallback
from sb3_neppo.envs import make_env
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import ConvexCombinationPotential, StateMixerPotential
from sb3_neppo.regret import RegretConfig


def tag():
    return make_env("mpe2.simple_tag_v3", {"max_cycles": 10})


class _SumTrueRewards(BaseCallback):
    """An independent tally: each slot's true rewards summed per episode, from the per-step infos."""

    def __init__(self, n_agents: int):
        super().__init__()
        self.n, self.running, self.finished = n_agents, None, []

    def _on_step(self) -> bool:
        infos, dones = self.locals["infos"], self.locals["dones"]
        if self.running is None:
            self.running = np.zeros(len(infos))
        self.running += [info["true_reward"] for info in infos]
        for k in np.flatnonzero(dones):
            self.finished.append((k % self.n, self.running[k]))
            self.running[k] = 0.0
        return True


@pytest.mark.slow
def test_true_returns_and_regret_callbacks_compose_in_a_users_ppo():
    torch.set_num_threads(1)
    env = tag()
    potential = StateMixerPotential(4, StepEncoder(env).state_dim)
    venv = ParallelVecEnv(tag, 2, potential=potential)  # pays the potential: the true returns differ from it
    true_returns = TrueReturnCallback()
    regret = RegretCallback(tag, eval_freq=200, config=RegretConfig(br_timesteps=200, eval_episodes=4, curve_points=1))
    tally = _SumTrueRewards(4)
    model = PPO("MlpPolicy", venv, n_steps=50, batch_size=100, seed=0)
    model.learn(4 * 400, callback=CallbackList([true_returns, regret, tally]))
    # one row per rollout (50 steps x 2 copies = 100 env steps, 8 slots = 400 SB3 steps): its 10 episodes' mean
    assert [steps for steps, _ in true_returns.history] == [100, 200, 300, 400]
    finished = np.array(tally.finished)
    for i, agent in enumerate(venv.agents):
        ours = finished[finished[:, 0] == i, 1]
        assert true_returns.history[-1][1][agent] == pytest.approx(ours[-10:].mean())
    # evaluated at 200 and 400 env steps; each report's max is the max of its raw per-agent regrets
    assert [steps for steps, _ in regret.reports] == [200, 400]
    for _, report in regret.reports:
        assert report.max_regret == max(report.regret.values()) and set(report.regret) == set(venv.agents)
        assert all(row.br_env_steps >= 2 * 200 for row in report.agents)


def test_callbacks_need_a_multi_agent_vec_env_and_a_positive_frequency():
    with pytest.raises(ConfigError, match="eval_freq must be an integer >= 1"):
        RegretCallback(tag, eval_freq=0)
    from stable_baselines3.common.env_util import make_vec_env

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), n_steps=16, batch_size=16)
    with pytest.raises(ConfigError, match="needs a ParallelVecEnv or VmasVecEnv"):
        model.learn(16, callback=TrueReturnCallback())


@pytest.mark.slow
def test_neppo_callback_moves_the_potential_a_users_ppo_trains_on():
    """Every 2 rollouts of the user's PPO, one outer iteration: the VecEnv's own potential module takes the
    zeroth-order step (from w = 0: |w| = step size x clipped gradient norm), and F is logged per agent."""
    torch.set_num_threads(1)
    env = tag()
    potential = StateMixerPotential(4, StepEncoder(env).state_dim)
    venv = ParallelVecEnv(tag, 2, potential=potential)
    neppo = NePPOCallback(n_rollouts=2, neppo_kwargs={"lr": 0.01}, seed=3)
    true_returns = TrueReturnCallback()
    model = PPO("MlpPolicy", venv, n_steps=20, batch_size=160, n_epochs=2, seed=0)
    w0 = potential.get_flat_params().copy()
    model.learn(4 * 160, callback=CallbackList([neppo, true_returns]))
    assert len(neppo.logs) == 2 and len(true_returns.history) == 4
    first, last = neppo.logs
    assert np.linalg.norm(neppo.iterates[0] - w0) == pytest.approx(0.01 * min(first.grad_norm, 10.0), rel=1e-6)
    np.testing.assert_array_equal(potential.get_flat_params(), neppo.iterates[1])  # the module the VecEnv pays moved
    assert neppo.neppo.potential is potential and first.env_steps > 0 and np.isfinite(last.F).all()
    with pytest.raises(ConfigError, match="needs a VecEnv that pays a potential"):
        PPO("MlpPolicy", ParallelVecEnv(tag, 1), n_steps=8, batch_size=32).learn(32, callback=NePPOCallback(1))


@pytest.mark.slow
def test_neppo_callback_takes_the_regret_weights_step_on_a_tied_convex_potential():
    """outer_step regret_weights in neppo_kwargs: each outer iteration is one solve at w from the user's policy, and the
    VecEnv's convex potential moves each role's logit by lr x (its largest F_i less the roles' mean), clipped."""
    torch.set_num_threads(1)
    env = tag()
    potential = ConvexCombinationPotential(len(env.possible_agents), env.possible_agents, tie="role")  # adversaries | agent_0
    venv = ParallelVecEnv(tag, 2, potential=potential)
    neppo = NePPOCallback(n_rollouts=1, neppo_kwargs={"outer_step": "regret_weights", "lr": 0.5, "max_grad_norm": 1.0})
    model = PPO("MlpPolicy", venv, n_steps=20, batch_size=160, n_epochs=2, seed=0)
    model.learn(3 * 160, callback=neppo)
    assert len(neppo.logs) == 3 and neppo.neppo.iteration_cost()["solves"] == 1
    for log, w_after in zip(neppo.logs, neppo.iterates):
        F = np.asarray(log.F)
        worst = np.array([F[:3].max(), F[3]])
        d = worst - worst.mean()
        d = d / max(1.0, np.linalg.norm(d))  # clipped to max_grad_norm 1
        np.testing.assert_allclose(w_after, log.w + 0.5 * d, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(potential.get_flat_params(), neppo.iterates[-1])  # what the VecEnv pays moved
    assert np.abs(potential.get_flat_params()).sum() > 0
