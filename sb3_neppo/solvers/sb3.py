"""The sampled slots of Algorithm 1: SB3 PPO on the potential-reward VecEnv, PPO best responses, rollout estimates.

* :class:`PPOCooperativeSolver` — one shared PPO policy (agent indicator in its observation) trained for K1 PPO
  updates on :class:`~sb3_neppo.envs.vec.ParallelVecEnv` (or, for VMAS scenarios, the batched
  :class:`~sb3_neppo.envs.vmas.VmasVecEnv`) paid φ_w; each solve starts from the warm start's weights with a fresh
  optimiser, so both branches of a direction start from the same state.
* :class:`PPOBestResponseSolver` — per agent, PPO for K2 updates on
  :class:`~sb3_neppo.envs.frozen.FrozenOthersEnv` copies (the agent's own true reward, the others frozen), started
  from the previous best response or from the agent's cooperative policy.
* :class:`RolloutEvaluator` — J_i and Φ_w by rollouts of π^Φ and of every (BR_i, π^Φ_-i) on the same episode seeds
  and the same per-episode random numbers (common random numbers), discounted by γ. Φ for any w is recomputed from
  the logged steps (:meth:`Rollouts.potential_returns`) without new env steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pettingzoo import ParallelEnv
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_neppo.config import dataclass_from_dict
from sb3_neppo.envs.frozen import FrozenOthersEnv, FrozenOthersVecEnv
from sb3_neppo.envs.registry import check_arguments, make_vec_env
from sb3_neppo.envs.vec import AgentView, ParallelVecEnv
from sb3_neppo.envs.vmas import VmasFrozenOthersVecEnv, VmasParallelEnv, VmasVecEnv
from sb3_neppo.envs.wrappers import StepEncoder, potential_values
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import PolicyProfile, draw_noise, frozen_copy
from sb3_neppo.potentials import Potential
from sb3_neppo.solvers.base import BestResponseSolver, CooperativeSolver, Estimate, PolicyEvaluator, Solvers

EnvFn = Callable[[], ParallelEnv]
BR_WARM_STARTS = ("previous", "cooperative", "scratch")


@dataclass
class SB3SolverConfig:
    """Settings of the SB3 solvers (``solver_kwargs`` in ``hyperparams/neppo.yml``).

    :param n_envs: env copies stepped together by each PPO (the cooperative VecEnv has ``n_envs × n_agents`` slots).
    :param coop_updates: K1, PPO updates (rollout + optimisation) per cooperative solve.
    :param br_updates: K2, PPO updates per best response.
    :param br_warm_start: ``previous`` (the agent's last best response; its cooperative policy the first time),
        ``cooperative`` (always the agent's cooperative policy) or ``scratch``.
    :param eval_episodes: episodes per joint policy in the rollout estimates.
    :param gamma: discount of J_i and Φ_w (and PPO's, unless ``ppo`` sets it).
    :param deterministic: frozen agents and evaluation rollouts play the most likely action instead of sampling.
    :param agent_indicator: one-hot agent id in the shared policy's observation (null: when there are 2+ agents).
    :param squash_actions: reach bounded Box actions through a sigmoid (see :class:`~sb3_neppo.envs.vec.AgentView`).
    :param ppo: keyword arguments of ``stable_baselines3.PPO`` (``n_steps`` is per env copy).
    :param br_ppo: overrides of ``ppo`` for the best responses (keep the network the same to warm-start from π^Φ).
    :param br_log_std: with Box actions, restart a warm-started best response's exploration at this Gaussian log-std
        (null: keep the warm start's). A warm start whose noise has shrunk around one action cannot see a better one
        far away; fresh noise can.
    """

    n_envs: int = 8
    coop_updates: int = 2
    br_updates: int = 2
    br_warm_start: str = "previous"
    eval_episodes: int = 16
    gamma: float = 0.99
    deterministic: bool = False
    agent_indicator: bool | None = None
    squash_actions: bool = True
    ppo: dict[str, Any] = field(default_factory=dict)
    br_ppo: dict[str, Any] = field(default_factory=dict)
    br_log_std: float | None = None

    def __post_init__(self) -> None:
        check_arguments(inspect.signature(SB3SolverConfig).parameters.values(), vars(self), "solver_kwargs.")
        for key in ("n_envs", "coop_updates", "br_updates", "eval_episodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"solver_kwargs.{key} must be an integer >= 1, got {value!r}")
        if self.br_warm_start not in BR_WARM_STARTS:
            choices = ", ".join(BR_WARM_STARTS)
            raise ConfigError(f"solver_kwargs.br_warm_start must be one of {choices}, got {self.br_warm_start!r}")
        if not 0.0 < float(self.gamma) <= 1.0:
            raise ConfigError(f"solver_kwargs.gamma must be in (0, 1], got {self.gamma!r}")
        for key in ("ppo", "br_ppo"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"solver_kwargs.{key} must be a mapping of PPO arguments, got {getattr(self, key)!r}")
            check_ppo_kwargs(getattr(self, key), f"solver_kwargs.{key}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SB3SolverConfig:
        return dataclass_from_dict(cls, values, "solver_kwargs key")

    def ppo_kwargs(self, best_response: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``PPO`` for the cooperative solver or (``best_response``) the best responses."""
        return {"gamma": self.gamma, **self.ppo, **(self.br_ppo if best_response else {})}


PPO_PARAMS = {
    name: param
    for name, param in inspect.signature(PPO.__init__).parameters.items()
    if name not in ("self", "_init_setup_model")
}
AT_LEAST_ONE = ("n_steps", "batch_size", "n_epochs")


def check_ppo_kwargs(kwargs: Mapping[str, Any], where: str) -> None:
    """One line for a PPO argument SB3 would reject late or with a traceback: an unknown name, a value of the wrong
    type (checked against ``PPO``'s annotations: ``learning_rate: abc``, ``n_epochs: 2.5``), ``n_steps``,
    ``batch_size`` or ``n_epochs`` below 1 (SB3 fails mid-training on ``n_epochs: 0``), or env/policy/seed."""
    if "env" in kwargs or "policy" in kwargs or "seed" in kwargs:
        raise ConfigError(f"{where} may not set env, policy or seed: NePPO sets them")
    unknown = sorted(set(kwargs) - set(PPO_PARAMS))
    if unknown:
        raise ConfigError(
            f"bad PPO argument in {where}: {', '.join(map(str, unknown))} is not an argument of stable_baselines3.PPO; "
            f"it takes: {', '.join(p for p in PPO_PARAMS if p not in ('env', 'policy', 'seed'))}"
        )
    check_arguments([PPO_PARAMS[k] for k in kwargs], kwargs, f"bad PPO argument: {where}.")
    for key in AT_LEAST_ONE:
        if key in kwargs and kwargs[key] < 1:
            raise ConfigError(f"bad PPO argument: {where}.{key} must be >= 1, got {kwargs[key]!r}")


def _make_ppo(env, kwargs: dict[str, Any], seed: int) -> PPO:
    """SB3 PPO on ``env``; a value SB3 refuses while building (an assertion on ``n_steps``/``batch_size``, an invalid
    learning rate, a bad ``policy_kwargs`` network) is one line naming the arguments."""
    try:
        return PPO("MlpPolicy", env, seed=seed, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        message = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"bad PPO argument in solver_kwargs ({given}): {type(exc).__name__}: {message}") from None


def start_from(model: PPO, policy: ActorCriticPolicy | dict) -> None:
    """Load weights into ``model`` and give it a fresh optimiser, so every solve from one warm start starts alike."""
    state = policy if isinstance(policy, dict) else policy.state_dict()
    try:
        model.policy.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"cannot warm-start: the networks differ ({str(exc).splitlines()[0]})") from None
    model.policy.optimizer = model.policy.optimizer_class(
        model.policy.parameters(), lr=model.lr_schedule(1.0), **model.policy.optimizer_kwargs
    )


def _learn(model: PPO, updates: int, seed: int) -> int:
    """K PPO updates from ``seed``; returns the SB3 timesteps taken."""
    model.set_random_seed(seed)
    model.learn(total_timesteps=updates * model.n_steps * model.n_envs, reset_num_timesteps=True)
    return model.num_timesteps


class _Seeded:
    """A slot's seeds: ``reseed`` sets the next solve's seed; without it, each solve draws one from its own generator."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)
        self._seed: int | None = None

    def reseed(self, seed: int) -> None:
        self._seed = int(seed)

    def _next_seed(self) -> int:
        return self._seed if self._seed is not None else int(self._rng.integers(2**31 - 1))


class PPOCooperativeSolver(_Seeded, CooperativeSolver):
    """π^Φ: one shared SB3 PPO policy trained on the potential-reward VecEnv (see the module docstring)."""

    def __init__(self, env_fn: EnvFn, config: SB3SolverConfig, seed: int = 0):
        super().__init__(seed)
        self.config = config
        env = env_fn()
        view = AgentView(env, config.agent_indicator, config.squash_actions)
        self.venv: ParallelVecEnv | VmasVecEnv = make_vec_env(env_fn, config.n_envs, view, env=env)  # VMAS: batched worlds
        self.view = self.venv.view
        self.model = _make_ppo(self.venv, config.ppo_kwargs(), seed)
        self.initial_state = {k: v.clone() for k, v in self.model.policy.state_dict().items()}

    def solve(self, potential: Potential, warm_start: PolicyProfile | None) -> PolicyProfile:
        if self.venv.potential is not potential:
            self.venv.encoder.check_potential(potential)
            self.venv.potential = potential
        shared = next(iter(warm_start.policies.values())) if warm_start is not None else self.initial_state
        start_from(self.model, shared)
        _learn(self.model, self.config.coop_updates, self._next_seed())
        return PolicyProfile.shared(self.view, frozen_copy(self.model.policy))

    def profile_from_state(self, state: dict) -> PolicyProfile:
        """A joint policy with the shared network's weights ``state`` (e.g. loaded from a saved model)."""
        start_from(self.model, state)
        return PolicyProfile.shared(self.view, frozen_copy(self.model.policy))

    @property
    def env_steps(self) -> int:
        return self.venv.env_steps


class PPOBestResponseSolver(_Seeded, BestResponseSolver):
    """BR_i: SB3 PPO for agent i on frozen-others envs with agent i's true reward (see the module docstring)."""

    def __init__(self, env_fn: EnvFn, view: AgentView, config: SB3SolverConfig, seed: int = 0):
        super().__init__(seed)
        self.env_fn, self.view, self.config = env_fn, view, config
        self.models: dict[str, PPO] = {}
        self.initial_states: dict[str, dict] = {}
        self._steps = 0

    def model(self, agent: str, joint: PolicyProfile) -> PPO:
        """``agent``'s PPO on its frozen-others VecEnv (built once per agent), the others now playing ``joint``."""
        if agent not in self.models:
            env = self.env_fn()
            if isinstance(env.unwrapped, VmasParallelEnv):  # n_envs worlds, the frozen agents of all in one forward
                venv = VmasFrozenOthersVecEnv(
                    env.unwrapped, agent, joint, self.config.n_envs, self.config.deterministic, self.view
                )
            else:
                copies = [env] + [self.env_fn() for _ in range(self.config.n_envs - 1)]
                venv = FrozenOthersVecEnv(
                    [(lambda e=e: FrozenOthersEnv(e, agent, joint, self.config.deterministic, self.view)) for e in copies]
                )
            self.models[agent] = _make_ppo(venv, self.config.ppo_kwargs(best_response=True), 0)
            self.initial_states[agent] = {k: v.clone() for k, v in self.models[agent].policy.state_dict().items()}
        model = self.models[agent]
        if isinstance(model.env, VmasFrozenOthersVecEnv):
            model.env.others = joint
        else:
            for env in model.env.envs:
                env.unwrapped.others = joint
        return model

    def solve(self, agent: str, joint: PolicyProfile, warm_start: ActorCriticPolicy | None) -> ActorCriticPolicy:
        model = self.model(agent, joint)
        mode = self.config.br_warm_start
        if mode == "scratch":
            start_from(model, self.initial_states[agent])
        elif mode == "previous" and warm_start is not None:
            start_from(model, warm_start)
        else:
            start_from(model, joint.policies[agent])
        if self.config.br_log_std is not None and mode != "scratch" and hasattr(model.policy, "log_std"):
            with torch.no_grad():
                model.policy.log_std.fill_(float(self.config.br_log_std))
        seed = self._next_seed() + self.view.index[agent]
        self._steps += _learn(model, self.config.br_updates, seed)
        return frozen_copy(model.policy)

    @property
    def env_steps(self) -> int:
        return self._steps


@dataclass
class Rollouts:
    """Logged episodes: per episode, states ``[T, S]``, actions ``[T, N, A]`` and reward vectors ``[T, N]``."""

    states: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[np.ndarray]
    gamma: float

    def _discount(self, values: np.ndarray) -> np.ndarray:
        """Per-episode discounted sums of per-step ``values`` (steps of all episodes concatenated)."""
        lengths = [len(r) for r in self.rewards]
        weights = np.concatenate([self.gamma ** np.arange(n) for n in lengths])
        starts = np.cumsum([0, *lengths[:-1]])
        weighted = values * (weights if values.ndim == 1 else weights[:, None])
        return np.add.reduceat(weighted, starts, axis=0)

    def returns(self) -> np.ndarray:
        """J_i per episode ``[E, N]``."""
        return self._discount(np.concatenate(self.rewards))

    def potential_returns(self, potential: Potential) -> np.ndarray:
        """Φ_w per episode ``[E]`` for any potential, from the logged steps in one batched call (no env steps)."""
        steps = (np.concatenate(x) for x in (self.states, self.actions, self.rewards))
        phi = potential_values(potential, *steps)
        return self._discount(phi)


class RolloutEvaluator(_Seeded, PolicyEvaluator):
    """J_i and Φ_w of π^Φ and each deviation by rollouts on common random numbers (see the module docstring)."""

    def __init__(self, env_fn: EnvFn, config: SB3SolverConfig, seed: int = 0):
        super().__init__(seed)
        self.config = config
        self.envs = [env_fn() for _ in range(config.eval_episodes)]
        self.encoder = StepEncoder(self.envs[0])
        self._steps = 0

    def rollouts(self, profile: PolicyProfile, seed: int) -> Rollouts:
        """One episode per env copy, all stepped together; episode e uses env seed ``seed + e`` and its own generator."""
        n_ep = len(self.envs)
        rngs = [np.random.default_rng([seed, e]) for e in range(n_ep)]
        obs = [env.reset(seed=seed + e)[0] for e, env in enumerate(self.envs)]
        for o in obs:
            self.encoder.observations(o, 0)
        logs: list[tuple[list, list, list]] = [([], [], []) for _ in range(n_ep)]
        active = [e for e in range(n_ep) if self.envs[e].agents]
        while active:
            present = [{a: o for a, o in obs[e].items() if a in self.envs[e].agents} for e in active]
            joint = profile.act_batch(present, self.config.deterministic, [rngs[e] for e in active])
            for e, actions in zip(active, joint):
                env = self.envs[e]
                state = self.encoder.state(env, obs[e])
                obs[e], rewards, _, _, _ = env.step(actions)
                t = len(logs[e][0]) + 1  # this episode's step, counted from 1 after reset
                self.encoder.observations(obs[e], t)
                logs[e][0].append(state)
                logs[e][1].append(self.encoder.actions(actions))
                logs[e][2].append(self.encoder.rewards(rewards, actions, t))
                self._steps += 1
            active = [e for e in active if self.envs[e].agents]
        return Rollouts(*([np.array(log[k]) for log in logs] for k in range(3)), gamma=self.config.gamma)

    def estimate(self, potential: Potential, profile: PolicyProfile, seed: int) -> Estimate:
        rollouts = self.rollouts(profile, seed)
        steps = sum(len(r) for r in rollouts.rewards)
        return Estimate(rollouts.returns(), rollouts.potential_returns(potential), steps, rollouts)

    def evaluate(
        self, potential: Potential, joint: PolicyProfile, deviations: Mapping[str, ActorCriticPolicy]
    ) -> tuple[Estimate, dict[str, Estimate]]:
        seed = self._next_seed()
        at_joint = self.estimate(potential, joint, seed)
        return at_joint, {a: self.estimate(potential, joint.with_agent(a, br), seed) for a, br in deviations.items()}

    @property
    def env_steps(self) -> int:
        return self._steps


class VmasRolloutEvaluator(RolloutEvaluator):
    """:class:`RolloutEvaluator` on the batched VMAS backend: the ``eval_episodes`` episodes of a joint policy run as
    that many worlds of one VMAS batch, every agent of every world acting in one forward pass per distinct policy.

    Common random numbers as on the PettingZoo path: the worlds start from ``reset(seed=seed)`` whatever the policy, and
    world e samples its agents' actions from its own generator ``(seed, e)``, agents in order, so a deviation changes
    only the deviating agent's actions (with one world it plays the very episode of :class:`RolloutEvaluator`).
    """

    def __init__(self, env: VmasParallelEnv, config: SB3SolverConfig, view: AgentView, seed: int = 0):
        _Seeded.__init__(self, seed)
        self.config = config
        self.venv = VmasVecEnv(env, config.eval_episodes, view)
        self.view = view

    def rollouts(self, profile: PolicyProfile, seed: int) -> Rollouts:
        venv, n_ep, n = self.venv, self.venv.n_worlds, self.venv.n_agents
        rngs = [np.random.default_rng([seed, e]) for e in range(n_ep)]
        venv.seed(seed)
        obs = venv.reset().reshape(n_ep, n, -1)
        logs: list[tuple[list, list, list]] = [([], [], []) for _ in range(n_ep)]
        running = np.ones(n_ep, dtype=bool)
        while running.any():
            noise = None
            if not self.config.deterministic:  # world e's agents, in order, from world e's generator
                parts = [draw_noise(rng, n, self.view.action_space) for rng in rngs]
                noise = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])  # [E, N], [E, N, D]
            actions = profile.policy_actions(obs, self.view.agents, noise)
            next_obs, _, dones, _ = venv.step(actions.reshape(n_ep * n, *actions.shape[2:]))
            states, encoded, rewards = venv.last_step
            for e in np.flatnonzero(running):
                logs[e][0].append(states[e])
                logs[e][1].append(encoded[e])
                logs[e][2].append(rewards[e])
            running &= ~dones.reshape(n_ep, n)[:, 0]  # a world that ends is reset: its later steps are another episode
            obs = next_obs.reshape(n_ep, n, -1)
        return Rollouts(*([np.array(log[k]) for log in logs] for k in range(3)), gamma=self.config.gamma)

    @property
    def env_steps(self) -> int:
        return self.venv.env_steps


def rollout_evaluator(env_fn: EnvFn, config: SB3SolverConfig, view: AgentView, seed: int = 0) -> RolloutEvaluator:
    """The rollout evaluator for ``env_fn``'s env: batched worlds for a VMAS scenario, env copies otherwise."""
    env = env_fn()
    if isinstance(env.unwrapped, VmasParallelEnv):
        return VmasRolloutEvaluator(env.unwrapped, config, view, seed)
    return RolloutEvaluator(env_fn, config, seed)


def sb3_solvers(env_fn: EnvFn, config: SB3SolverConfig | Mapping[str, Any] | None = None, seed: int = 0) -> Solvers:
    """The three sampled slots for the parallel env built by ``env_fn``."""
    if not isinstance(config, SB3SolverConfig):
        config = SB3SolverConfig.from_dict(config)
    cooperative = PPOCooperativeSolver(env_fn, config, seed)
    return Solvers(
        cooperative=cooperative,
        best_response=PPOBestResponseSolver(env_fn, cooperative.view, config, seed + 1),
        evaluator=rollout_evaluator(env_fn, config, cooperative.view, seed + 2),
        exact=False,
    )
