"""Env backends: how the solvers step one env, chosen once per env by :func:`backend_for`.

A backend makes what the SB3 solvers, the baselines and the regret evaluator train and evaluate on:

* :meth:`EnvBackend.vec_env`: the multi-agent VecEnv (a slot per copy and agent) paid φ_w or the agents' own rewards;
* :meth:`EnvBackend.frozen_others_vec_env`: a best response's VecEnv, one agent acting, the others frozen;
* :meth:`EnvBackend.evaluation_episodes`: the rollout evaluator's episodes on common random numbers;

and says what of the env's random state a checkpoint must keep (:attr:`EnvBackend.vmas_random_state`).
:class:`PettingZooBackend` steps copies of any PettingZoo parallel env; an env whose ``unwrapped`` has
``sb3_neppo_backend(env_fn, env)`` brings its own (VMAS scenarios: batched worlds, :class:`~sb3_neppo.envs.vmas.VmasBackend`).
Nothing outside the backends asks which kind of env it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from pettingzoo import ParallelEnv
from stable_baselines3.common.vec_env import VecEnv

from sb3_neppo.envs.frozen import FrozenOthersEnv, FrozenOthersVecEnv, JointActor
from sb3_neppo.envs.rollouts import EnvCopyEpisodes, EvaluationEpisodes
from sb3_neppo.envs.vec import MultiAgentVecEnv, ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.potentials import Potential

EnvFn = Callable[[], ParallelEnv]


class EnvBackend(ABC):
    """What the solvers build on one env (see the module docstring).

    :param env_fn: builds one copy of the env.
    :param env: a copy ``env_fn`` already built (used where the backend needs one first; None: built when needed).
    """

    vmas_random_state: ClassVar[bool] = False
    """Whether VMAS's own random state (``vmas_random_state``) is part of a run's random state, so that checkpoints
    must save and restore it."""
    batched: ClassVar[bool] = False
    """Whether each VecEnv is one batched env (its memory one env's) rather than env copies."""

    def __init__(self, env_fn: EnvFn, env: ParallelEnv | None = None, device: str = "cpu"):
        self.env_fn = env_fn
        self._env = env
        self.device = device  # where batched worlds run (VMAS: the networks' device); env copies ignore it

    @property
    def env(self) -> ParallelEnv:
        """The backend's copy of the env (built at the first use when none was given)."""
        if self._env is None:
            self._env = self.env_fn()
        return self._env

    @abstractmethod
    def vec_env(self, n_envs: int, view: AgentView | None = None, potential: Potential | None = None) -> MultiAgentVecEnv:
        """The multi-agent VecEnv of ``n_envs`` copies (or worlds), every slot paid ``potential`` when given, else its
        agent's own reward."""

    @abstractmethod
    def frozen_others_vec_env(
        self, agent: str, others: JointActor, n_envs: int, deterministic: bool = False, view: AgentView | None = None
    ) -> VecEnv:
        """A VecEnv of ``n_envs`` slots in which ``agent`` acts (paid its own true reward) and every other agent plays
        ``others``; assign its ``others`` to change that joint policy between trainings."""

    @abstractmethod
    def evaluation_episodes(self, n_episodes: int, deterministic: bool, view: AgentView | None = None) -> EvaluationEpisodes:
        """``n_episodes`` evaluation episodes played together (every agent sampling its action unless
        ``deterministic``)."""


class PettingZooBackend(EnvBackend):
    """Copies of a PettingZoo parallel env (any env, VMAS scenarios included), stepped one by one in Python.

    The frozen-others VecEnvs of all agents step the same ``n_envs`` copies (the backend's env and ``n_envs - 1`` more,
    built at the first call), each agent through frozen-others envs of its own.
    """

    def __init__(self, env_fn: EnvFn, env: ParallelEnv | None = None, device: str = "cpu"):
        super().__init__(env_fn, env, device)
        self._copies: list[ParallelEnv] = []

    def vec_env(self, n_envs: int, view: AgentView | None = None, potential: Potential | None = None) -> MultiAgentVecEnv:
        return ParallelVecEnv(self.env_fn, n_envs, view, potential)

    def frozen_others_vec_env(
        self, agent: str, others: JointActor, n_envs: int, deterministic: bool = False, view: AgentView | None = None
    ) -> VecEnv:
        if not self._copies:
            self._copies = [self.env] + [self.env_fn() for _ in range(n_envs - 1)]
        return FrozenOthersVecEnv([(lambda e=e: FrozenOthersEnv(e, agent, others, deterministic, view)) for e in self._copies])

    def evaluation_episodes(self, n_episodes: int, deterministic: bool, view: AgentView | None = None) -> EvaluationEpisodes:
        return EnvCopyEpisodes(self.env_fn, n_episodes, deterministic)


def backend_for(env: ParallelEnv, env_fn: EnvFn, device: str = "cpu") -> EnvBackend:
    """The backend of ``env`` (built by ``env_fn``): the env's own where its ``unwrapped`` brings one
    (``sb3_neppo_backend(env_fn, env, device)``: VMAS scenarios, whose worlds run on ``device``, a torch device), else
    :class:`PettingZooBackend`."""
    own = getattr(env.unwrapped, "sb3_neppo_backend", None)
    return own(env_fn, env, device) if callable(own) else PettingZooBackend(env_fn, env, device)


def make_vec_env(
    env_fn: EnvFn,
    n_envs: int,
    view: AgentView | None = None,
    potential: Potential | None = None,
    env: ParallelEnv | None = None,
    device: str = "cpu",
) -> MultiAgentVecEnv:
    """The multi-agent SB3 VecEnv (a slot per copy and agent) of ``env_fn``'s env on its backend
    (:meth:`EnvBackend.vec_env`): ``n_envs`` batched worlds for a VMAS scenario, else ``n_envs`` copies. Slots pay
    ``potential`` when given, else each agent's own reward. ``env``: an env ``env_fn`` already built (saves building
    one). ``device``: where batched worlds run (a torch device: the networks')."""
    env = env if env is not None else env_fn()
    return backend_for(env, env_fn, device).vec_env(n_envs, view, potential)
