"""Drop-in SB3 callbacks for any SB3 training on this library's multi-agent VecEnvs; each composes with ``CallbackList``.

* :class:`TrueReturnCallback` logs every agent's true episode return (what the game pays it, not the potential or
  shared reward the VecEnv trains on) after each rollout.
* :class:`RegretCallback` runs the regret evaluator (:mod:`sb3_neppo.regret`) on the model's shared policy every
  ``eval_freq`` env steps. Best-response training is expensive: nothing runs unless you add it.
* :class:`NePPOCallback` turns a user's own ``PPO.learn()`` on a potential-reward VecEnv into NePPO: every N rollouts
  one outer iteration of Algorithm 1 moves the potential the VecEnv pays.

All read a :class:`~sb3_neppo.envs.vec.MultiAgentVecEnv` (:class:`~sb3_neppo.envs.vec.ParallelVecEnv`, VMAS's batched
worlds; slot k is agent k mod N), also under SB3 VecEnv wrappers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from pettingzoo import ParallelEnv
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from sb3_neppo.config import NePPOConfig, SB3SolverConfig
from sb3_neppo.envs.vec import MultiAgentVecEnv
from sb3_neppo.errors import ConfigError
from sb3_neppo.neppo import IterationLog, NePPO
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.regret import RegretConfig, RegretEvaluator, RegretReport


def _multi_agent_env(callback: BaseCallback) -> MultiAgentVecEnv:
    venv = callback.training_env.unwrapped
    if not isinstance(venv, MultiAgentVecEnv):
        raise ConfigError(f"{type(callback).__name__} needs a ParallelVecEnv or VmasVecEnv (got {type(venv).__name__})")
    return venv


def model_solver_config(model: BaseAlgorithm, venv: MultiAgentVecEnv) -> SB3SolverConfig:
    """Solver settings from a user's PPO: its network, rollout length, minibatch, epochs, learning rate, γ, GAE λ,
    clipping, entropy and value coefficients, and as many env copies (or worlds) as its VecEnv; so best responses can
    start from its policy. Each is set explicitly: what is left out would come from the paper's PPO settings
    (:data:`~sb3_neppo.config.PAPER_PPO`, the solvers' defaults), not from the user's PPO."""
    n_envs = venv.n_copies
    m = model
    ppo = dict(n_steps=m.n_steps, batch_size=min(m.batch_size, m.n_steps * n_envs), n_epochs=m.n_epochs)
    ppo.update(learning_rate=m.learning_rate, gamma=m.gamma, gae_lambda=m.gae_lambda, ent_coef=m.ent_coef)
    ppo.update(vf_coef=m.vf_coef, max_grad_norm=m.max_grad_norm, clip_range=float(m.clip_range(1.0)))
    ppo["policy_kwargs"] = {**m.policy_kwargs, "net_arch": m.policy.net_arch}  # SB3's default net when none was given
    return SB3SolverConfig(n_envs=n_envs, coop_updates=1, br_updates=1, gamma=m.gamma, ppo=ppo)


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
        solver_config = self.solver_config if self.solver_config is not None else model_solver_config(self.model, venv)
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


class NePPOCallback(BaseCallback):
    """NePPO inside a user's own ``PPO.learn()`` on a multi-agent VecEnv (env copies or VMAS worlds) that pays a potential.

    The user's PPO is the cooperative solver: it trains on φ_w as usual. Every ``n_rollouts`` rollouts the callback runs
    one outer iteration of Algorithm 1 (:meth:`NePPO.step`) warm-started from the model's current policy: the branches
    w ± δu (one PPO update each on φ_{w±δu}, from that policy), the best responses, F and L_β, and the zeroth-order
    step, which changes the potential the VecEnv pays from the next rollout on (``outer_step: regret_weights`` in
    ``neppo_kwargs``, on a convex potential: one solve at w and the regret-weights step instead). ``logs`` keeps each
    iteration's :class:`IterationLog` (F and L_β of the branch the next iteration starts from), ``iterates`` each new
    w; ``neppo/L_beta``, ``neppo/max_F`` and ``F/<agent>`` go to the model's logger.

    :param n_rollouts: rollouts of the user's PPO between outer iterations.
    :param neppo_kwargs: NePPO settings (outer_step, delta, lr, n_directions, beta, max_grad_norm, ...; default: the mpe2
        entries of ``hyperparams/neppo.yml``, with one PPO update per branch and best response).
    :param solver_kwargs: the branches' solver settings (default: the model's own PPO settings and VecEnv size).
    :param seed: seed of the directions and solver seeds.
    """

    def __init__(
        self,
        n_rollouts: int,
        neppo_kwargs: dict | None = None,
        solver_kwargs: dict | None = None,
        seed: int = 0,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if isinstance(n_rollouts, bool) or not isinstance(n_rollouts, int) or n_rollouts < 1:
            raise ConfigError(f"n_rollouts must be an integer >= 1 (got {n_rollouts!r})")
        self.n_rollouts, self.seed = n_rollouts, seed
        defaults = NePPOConfig().to_dict()  # the Markov-game outer loop (the paper's Simple World Comm settings)
        keep = ("outer_step", "delta", "lr", "lr_schedule", "n_directions", "beta", "max_grad_norm", "shrink_z")
        self.neppo_kwargs = {**{k: defaults[k] for k in keep}, **(neppo_kwargs or {})}
        self.solver_kwargs = solver_kwargs
        self.neppo: NePPO | None = None
        self.logs: list[IterationLog] = []
        self.iterates: list[np.ndarray] = []  # w after each iteration (what the VecEnv pays from then on)
        self._rollouts = 0

    def _init_callback(self) -> None:
        venv = _multi_agent_env(self)
        if venv.potential is None:
            raise ConfigError("NePPOCallback needs a VecEnv that pays a potential (ParallelVecEnv(..., potential=...))")
        env = venv.env
        solver_kwargs = self.solver_kwargs
        if solver_kwargs is None:
            solver_kwargs = dataclasses.asdict(model_solver_config(self.model, venv))
        solver_kwargs = {**solver_kwargs, "agent_indicator": venv.view.agent_indicator}
        self.neppo = NePPO(
            env,
            potential=venv.potential,  # the very module the VecEnv pays: the step moves it
            solver="sb3",
            solver_kwargs=solver_kwargs,
            iterate_solve="final",
            seed=self.seed,
            **self.neppo_kwargs,
        )

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._rollouts += 1
        if self._rollouts % self.n_rollouts:
            return
        neppo = self.neppo
        best_responses = {a: p.state_dict() for a, p in neppo.best_responses.items()}
        neppo.set_warm_state((self.model.policy.state_dict(), best_responses))
        log = neppo.step()
        self.logs.append(log)
        self.iterates.append(neppo.potential.get_flat_params().copy())
        self.logger.record("neppo/L_beta", log.objective)
        self.logger.record("neppo/max_F", float(log.F.max()))
        for agent, value in zip(neppo.agents, log.F):
            self.logger.record(f"F/{agent}", float(value))
        if self.verbose:
            print(f"NePPO iteration {log.iteration}: L_beta {log.objective:.4g}, |w| {np.linalg.norm(log.w):.4g}")
