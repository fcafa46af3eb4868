"""The common shape of the baselines: a multi-agent algorithm built from SB3 parts that returns a joint policy.

Every baseline ends in the same currency as NePPO: a :class:`~sb3_neppo.policy.PolicyProfile` of SB3
``ActorCriticPolicy`` actors on the shared :class:`~sb3_neppo.envs.vec.AgentView` (padded observations, agent
indicator), with the network of the best responses' PPO. So the regret evaluator scores NePPO and the baselines alike,
and warm-starts each agent's best response from that agent's own actor.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pettingzoo import ParallelEnv
from stable_baselines3.common.policies import ActorCriticPolicy
from tqdm.auto import tqdm

from sb3_neppo import __version__
from sb3_neppo.config import dataclass_from_dict
from sb3_neppo.envs.matrix import MatrixGameEnv, strategy_from_action
from sb3_neppo.envs.registry import make_env
from sb3_neppo.envs.vec import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.io import atomic_open
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.solvers.sb3 import SB3SolverConfig

Callback = Callable[[dict, "MultiAgentAlgorithm"], Any]


@dataclass
class BaselineConfig:
    """Settings every baseline has (its ``hyperparams/<algo>.yml`` entry adds its own).

    :param n_envs: env copies (VMAS: worlds) stepped together.
    :param gamma: discount of the agents' returns J_i in reports and in the regret evaluator.
    :param squash_actions: reach bounded Box actions through a sigmoid (see :class:`~sb3_neppo.envs.vec.AgentView`).
    :param ppo: keyword arguments of ``stable_baselines3.PPO``: the learners' (PPO baselines) and the regret
        evaluator's best responses' (all baselines); ``n_steps`` is per env copy.
    """

    n_envs: int = 16
    gamma: float = 0.99
    squash_actions: bool = True
    ppo: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.n_envs, bool) or not isinstance(self.n_envs, int) or self.n_envs < 1:
            raise ConfigError(f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be a number in (0, 1], got {self.gamma!r}")
        if not isinstance(self.squash_actions, bool):
            raise ConfigError(f"squash_actions must be true or false, got {self.squash_actions!r}")
        if not isinstance(self.ppo, dict) or {"env", "policy", "seed"} & set(self.ppo):
            raise ConfigError(f"ppo must be a mapping of PPO arguments other than env, policy and seed, got {self.ppo!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None):
        return dataclass_from_dict(cls, values, "hyperparameter")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def role_of(agent: str) -> str:
    """An agent's role: its name without the trailing ``_<number>`` (``adversary_2`` -> ``adversary``)."""
    head, _, tail = agent.rpartition("_")
    return head if head and tail.isdigit() else agent


class MultiAgentAlgorithm(ABC):
    """A baseline multi-agent algorithm on a PettingZoo parallel env or VMAS scenario (SB3-style API).

    Subclasses set ``algo`` and ``config_class`` and implement :meth:`_setup`, :meth:`_train_round` (one round of
    training: an update or a batch of updates), :meth:`actors` and the weights they save.

    :param env: env id (see :func:`sb3_neppo.envs.make_env`).
    :param env_kwargs: the env's keyword arguments.
    :param config: the algorithm's settings (a mapping of its config dataclass's keys, or the dataclass).
    :param seed: random seed (None: drawn, and recorded).
    :param verbose: 1: one line per logged round.
    """

    algo: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, env: str, env_kwargs: Mapping | None = None, config: Any = None, seed: int | None = None, verbose=0):
        self.env_id, self.env_kwargs = env, dict(env_kwargs or {})
        self.config = config if isinstance(config, self.config_class) else self.config_class.from_dict(config)
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        self.verbose = verbose
        self.env = self._env_fn()()
        self.agents: list[str] = list(self.env.possible_agents)
        self.view = AgentView(self.env, squash=self.config.squash_actions)
        self.num_timesteps = 0
        self.num_rounds = 0
        self.wall_time_s = 0.0
        self.returns: dict[str, float] = {}  # mean true episode return per agent, last logged round
        self._progress_remaining = 1.0
        self._setup()

    # --- what a baseline provides ------------------------------------------------------------------------------------

    @abstractmethod
    def _setup(self) -> None:
        """Build the env(s), networks and optimisers (called once by ``__init__``)."""

    @abstractmethod
    def _train_round(self) -> dict[str, Any]:
        """Collect and learn one round; return a log with at least ``env_steps`` (this round's) and ``returns``
        (agent -> mean true return of the episodes that ended in it; may be empty)."""

    @abstractmethod
    def actors(self) -> dict[str, ActorCriticPolicy]:
        """Each agent's current actor (the same object for agents that share one), as a policy on ``self.view``."""

    @abstractmethod
    def get_weights(self) -> dict[str, Any]:
        """Every trained tensor, as nested dicts of tensors (what :meth:`save` writes)."""

    @abstractmethod
    def set_weights(self, weights: dict[str, Any]) -> None:
        """Restore :meth:`get_weights`' output."""

    # --- the shared machinery ----------------------------------------------------------------------------------------

    def _env_fn(self) -> Callable[[], ParallelEnv]:
        env_id, kwargs = self.env_id, self.env_kwargs
        return lambda: make_env(env_id, kwargs)

    def learn(self, total_timesteps: int, callback: Callback | None = None, progress_bar: bool = False):
        """Train for ``total_timesteps`` more env steps (every copy's step counts; stops after the round that crosses
        it). ``callback(log, model)`` is called after every round; returning False stops training."""
        if int(total_timesteps) != total_timesteps or total_timesteps < 1:
            raise ConfigError(f"total_timesteps must be an integer >= 1 (got {total_timesteps})")
        start, start_steps = time.perf_counter(), self.num_timesteps
        bar = tqdm(total=int(total_timesteps), desc=self.algo.upper(), unit="env-step", disable=not progress_bar)
        try:
            while self.num_timesteps - start_steps < total_timesteps:
                self._progress_remaining = 1.0 - (self.num_timesteps - start_steps) / total_timesteps  # SB3 schedules
                log = self._train_round()
                self.num_timesteps += int(log["env_steps"])
                self.num_rounds += 1
                if log["returns"]:
                    self.returns = {a: float(r) for a, r in log["returns"].items()}
                log = {**log, "round": self.num_rounds, "total_env_steps": self.num_timesteps}
                bar.update(min(self.num_timesteps - start_steps, total_timesteps) - bar.n)
                if self.returns:
                    bar.set_postfix({a: f"{r:.3g}" for a, r in list(self.returns.items())[:4]})
                if self.verbose:
                    tqdm.write(self._format(log))
                if callback is not None and callback(log, self) is False:
                    break
        finally:
            bar.close()
            self.wall_time_s += time.perf_counter() - start
        return self

    def _format(self, log: dict) -> str:
        returns = " ".join(f"{a}={r:.3f}" for a, r in log["returns"].items())
        return f"{self.algo} round {log['round']}: {log['total_env_steps']} env steps  {returns}"

    def joint_policy(self) -> PolicyProfile:
        """The trained joint policy, frozen (training on never changes it)."""
        copies: dict[int, ActorCriticPolicy] = {}  # one copy per distinct actor: agents that share one still do
        for policy in self.actors().values():
            if id(policy) not in copies:
                copies[id(policy)] = frozen_copy(policy)
        return PolicyProfile(self.view, {a: copies[id(p)] for a, p in self.actors().items()})

    def predict(self, observation: dict | None = None, deterministic: bool = True) -> tuple[dict[str, Any], None]:
        """SB3-style: each agent's action for a dict of observations (optional in a normal-form game)."""
        if observation is None:
            if self.game is None:
                raise ValueError("predict() needs a dict of observations, one per agent")
            observation = self.env.reset(seed=self.seed)[0]
        rng = None if deterministic else np.random.default_rng(self.seed)
        return PolicyProfile(self.view, self.actors()).act(observation, deterministic, rng), None

    @property
    def game(self):
        """The normal-form game this env plays, or None for a Markov game."""
        env = self.env.unwrapped
        return env.game if isinstance(env, MatrixGameEnv) else None

    def strategies(self) -> list[np.ndarray] | None:
        """In a normal-form game, each agent's mixed strategy (its action probabilities, or in mixed mode the strategy
        its most likely action plays); None in a Markov game."""
        game = self.game
        if game is None:
            return None
        profile = PolicyProfile(self.view, self.actors())
        obs = self.env.reset(seed=self.seed)[0]
        if not self.env.unwrapped.mixed:
            return [profile.action_probabilities(a, obs[a]) for a in self.agents]
        actions = profile.act(obs, deterministic=True)
        return [strategy_from_action(actions[a], k) for a, k in zip(self.agents, game.n_actions)]

    def regret_solver_config(self) -> SB3SolverConfig:
        """The best responses' PPO for the regret evaluator: this baseline's PPO settings and network, so a best
        response can start from an agent's actor."""
        return SB3SolverConfig(n_envs=self.config.n_envs, gamma=self.config.gamma, ppo=dict(self.config.ppo))

    def summary(self) -> dict[str, Any]:
        """The run summary (the schema of NePPO's ``summary.json`` where the fields mean the same)."""
        out: dict[str, Any] = {
            "algo": self.algo,
            "version": __version__,
            "env": self.env_id,
            "env_kwargs": self.env_kwargs,
            "seed": self.seed,
            "agents": self.agents,
            "iterations": self.num_rounds,
            "env_steps": self.num_timesteps,
            "wall_time_s": round(self.wall_time_s, 4),
            "returns": self.returns,
            "regret": None,
            "max_regret": None,
            "hyperparams": self.config.to_dict(),
        }
        strategies = self.strategies()
        if strategies is not None:
            regret = self.game.regret(strategies)
            out.update(regret=dict(zip(self.agents, regret.tolist())), max_regret=float(regret.max()), regret_method="exact")
            out["strategies"] = {a: x.tolist() for a, x in zip(self.agents, strategies)}
            out["action_names"] = {a: list(n) for a, n in zip(self.agents, self.game.action_names)}
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a zip file atomically: ``data.json`` (settings, counters) and ``weights.pt``."""
        path = Path(path)
        path = path if path.suffix == ".zip" else path.with_suffix(".zip")
        data = {
            "algo": self.algo,
            "version": __version__,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "num_timesteps": self.num_timesteps,
            "num_rounds": self.num_rounds,
            "wall_time_s": self.wall_time_s,
            "returns": self.returns,
        }
        buffer = io.BytesIO()
        torch.save(self.get_weights(), buffer)
        with atomic_open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("data.json", json.dumps(data, indent=2))
            archive.writestr("weights.pt", buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Load a saved model (weights only, read safely: ``torch.load(weights_only=True)``)."""
        data, weights = read_archive(path)
        if data.get("algo") != cls.algo:
            raise ConfigError(f"{path} holds a {data.get('algo', 'neppo')} model, not {cls.algo}")
        model = cls(data["env_id"], data["env_kwargs"], data["config"], data["seed"])
        model.set_weights(weights)
        model.num_timesteps, model.num_rounds = int(data["num_timesteps"]), int(data["num_rounds"])
        model.wall_time_s, model.returns = float(data["wall_time_s"]), dict(data["returns"])
        return model

    def close(self) -> None:
        """Release the env this model reads its spaces from (subclasses also close their training envs)."""
        self.env.close()


def saved_algo(path: str | os.PathLike) -> str:
    """The algorithm a saved model's ``data.json`` names (``neppo`` for NePPO models, which do not name it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("data.json")).get("algo", "neppo")
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot load model {path}: {exc}") from None


def read_archive(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(data.json, weights.pt)`` of a saved baseline; one line if the file is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data.json"))
            weights = torch.load(io.BytesIO(archive.read("weights.pt")), weights_only=True)
    except (OSError, KeyError, RuntimeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot load model {path}: {exc}") from None
    return data, weights
