"""Drop-in SB3 callbacks for any SB3 training on this library's multi-agent VecEnvs; each composes with ``CallbackList``.

* :class:`TrueReturnCallback` logs every agent's true episode return (what the game pays it, not the potential or
  shared reward the VecEnv trains on) after each rollout.
* :class:`RegretCallback` runs the regret evaluator (:mod:`sb3_neppo.evaluation`) on the model's shared policy every
  ``eval_freq`` env steps. Best-response training is expensive: nothing runs unless you add it.

Both read :class:`~sb3_neppo.envs.vec.ParallelVecEnv` or :class:`~sb3_neppo.envs.vmas.VmasVecEnv` (slot k is agent
k mod N), also under SB3 VecEnv wrappers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pettingzoo import ParallelEnv
from stable_baselines3.common.callbacks import BaseCallback

from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.vmas import VmasVecEnv
from sb3_neppo.errors import ConfigError
from sb3_neppo.evaluation import RegretConfig, RegretEvaluator, RegretReport
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.solvers.sb3 import SB3SolverConfig


def _multi_agent_env(callback: BaseCallback) -> ParallelVecEnv | VmasVecEnv:
    venv = callback.training_env.unwrapped
    if not isinstance(venv, (ParallelVecEnv, VmasVecEnv)):
        raise ConfigError(f"{type(callback).__name__} needs a ParallelVecEnv or VmasVecEnv (got {type(venv).__name__})")
    return venv


class TrueReturnCallback(BaseCallback):
    """Logs ``true_return/<agent>``, each agent's mean true episode return over the episodes that ended in the last
    rollout, to the model's logger (TensorBoard, CSV, stdout: whatever it writes to); keeps them in ``history`` as
    ``(env steps, {agent: mean})``."""

    def __init__(self, verbose: int = 0):
        super().__init__(verbose)
        self.agents: list[str] = []
        self.history: list[tuple[int, dict[str, float]]] = []
        self._returns: dict[str, list[float]] = {}

    def _init_callback(self) -> None:
        self.agents = list(_multi_agent_env(self).agents)
        self._returns = {a: [] for a in self.agents}

    def _on_step(self) -> bool:
        n = len(self.agents)
        for k, info in enumerate(self.locals["infos"]):
            episode = info.get("episode")
            if episode is not None and "true_r" in episode:
                self._returns[self.agents[k % n]].append(float(episode["true_r"]))
        return True

    def _on_rollout_end(self) -> None:
        means = {a: float(np.mean(v)) for a, v in self._returns.items() if v}
        for agent, value in means.items():
            self.logger.record(f"true_return/{agent}", value)
        if means:
            self.history.append((int(_multi_agent_env(self).env_steps), means))
        self._returns = {a: [] for a in self.agents}


class RegretCallback(BaseCallback):
    """Every ``eval_freq`` env steps, the regret of the model's shared policy (every agent playing it) by best-response
    training; logs ``regret/<agent>`` and ``regret/max`` and keeps each :class:`RegretReport` in ``reports``.

    :param env_fn: builds the parallel env the VecEnv steps (the best responses train on copies of it).
    :param eval_freq: env steps (one step of one env copy or world) between evaluations.
    :param config: the evaluator's settings (budget, episodes, deterministic play, ...).
    :param solver_config: PPO settings of the best responses and γ (default: the model's own: network, rollout length,
        minibatch, epochs, learning rate, γ, GAE λ, entropy; as many env copies or worlds as the training VecEnv).
    """

    def __init__(
        self,
        env_fn: Callable[[], ParallelEnv],
        eval_freq: int,
        config: RegretConfig | None = None,
        solver_config: SB3SolverConfig | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1:
            raise ConfigError(f"eval_freq must be an integer >= 1 env steps (got {eval_freq!r})")
        self.env_fn, self.eval_freq = env_fn, eval_freq
        self.config = config if config is not None else RegretConfig()
        self.solver_config = solver_config
        self.reports: list[tuple[int, RegretReport]] = []
        self._next = eval_freq
        self._evaluator: RegretEvaluator | None = None

    def _init_callback(self) -> None:
        venv = _multi_agent_env(self)
        solver_config = self.solver_config
        if solver_config is None:  # the model's own PPO settings and network (so a best response can start from π_i)
            m = self.model
            n_envs = venv.n_copies if isinstance(venv, ParallelVecEnv) else venv.n_worlds
            ppo = dict(n_steps=m.n_steps, batch_size=min(m.batch_size, m.n_steps * n_envs), n_epochs=m.n_epochs)
            ppo.update(learning_rate=m.learning_rate, gae_lambda=m.gae_lambda, ent_coef=m.ent_coef)
            ppo.update(policy_kwargs=m.policy_kwargs)
            solver_config = SB3SolverConfig(n_envs=n_envs, gamma=m.gamma, ppo=ppo)
        self._evaluator = RegretEvaluator(self.env_fn, venv.view, solver_config, self.config)

    def _on_step(self) -> bool:
        steps = int(_multi_agent_env(self).env_steps)
        if steps >= self._next:
            self._next = steps - steps % self.eval_freq + self.eval_freq
            joint = PolicyProfile.shared(self._evaluator.view, frozen_copy(self.model.policy))
            report = self._evaluator.evaluate(joint)
            self.reports.append((steps, report))
            for row in report.agents:
                self.logger.record(f"regret/{row.agent}", row.regret)
            self.logger.record("regret/max", report.max_regret)
            if self.verbose:
                low, high = report.max_ci
                print(f"env steps {steps}: max regret {report.max_regret:+.4g} CI [{low:.4g}, {high:.4g}]")
        return True
