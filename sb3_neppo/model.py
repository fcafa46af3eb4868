"""The base of every multi-agent model (NePPO and the baselines), as SB3's ``BaseAlgorithm`` is of its algorithms.

:class:`MultiAgentModel` owns what they share: the env (an id or a PettingZoo instance) and the seed, the agents and
the normal-form game where there is one, ``predict``, the summary's skeleton, the callback protocol and the
``learn(total_timesteps=None, callback=None, progress_bar=False)`` signature; :mod:`sb3_neppo.archive` is their one
file format.

**Callbacks**: ``callback(log, model)`` is called after every iteration (NePPO) or round (the baselines); returning
False stops training. A list of callbacks is called in order (as SB3's ``CallbackList``), and training stops if any
returns False. ``log`` is a mapping of that iteration's numbers (:class:`~sb3_neppo.neppo.IterationLog` also has
them as attributes).
"""

from __future__ import annotations

import functools
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from pettingzoo import ParallelEnv

from sb3_neppo.assembly import env_factory, game_of, resolve_env
from sb3_neppo.config import check_seed
from sb3_neppo.envs.games import NormalFormGame
from sb3_neppo.envs.masks import masks_of
from sb3_neppo.envs.wrapping import apply_wrappers
from sb3_neppo.errors import NePPODeprecationWarning
from sb3_neppo.policy import Memory
from sb3_neppo.version import __version__

Callback = Callable[[Any, "MultiAgentModel"], "bool | None"]


def iterations_first_deprecated(learn: Callable) -> Callable:
    """For NePPO's ``learn``: a number given first (positionally) is ``n_iterations``, as before ``learn`` took
    ``total_timesteps`` first as SB3's does, with a one-line warning; for this release only."""

    @functools.wraps(learn)
    def wrapper(self, *args: Any, **kwargs: Any):
        if args and args[0] is not None and "n_iterations" not in kwargs:
            warnings.warn(
                f"{type(self).__name__}.learn({args[0]}) runs {args[0]} outer iterations, as before, but learn() takes "
                f"total_timesteps first now, as SB3's does: write learn(n_iterations={args[0]}), or "
                "learn(total_timesteps=...) for an env-step budget (the old form goes in the next release)",
                NePPODeprecationWarning,
                stacklevel=2,
            )
            kwargs["n_iterations"], args = args[0], (None, *args[1:])
        return learn(self, *args, **kwargs)

    return wrapper


class MultiAgentModel(ABC):
    """A model trained on a PettingZoo parallel env (or a VMAS scenario, or a normal-form game) that ends in a joint
    policy.

    Subclasses set ``algo`` (the command line's name) and implement :meth:`learn`, :meth:`_act`, :meth:`strategies`,
    :meth:`summary`, :meth:`save` and :meth:`load`.
    """

    algo: ClassVar[str]
    env_id: str | None
    env_kwargs: dict
    env: ParallelEnv
    env_fn: Callable[[], ParallelEnv]
    agents: list[str]
    game: NormalFormGame | None
    seed: int
    num_timesteps: int
    wall_time_s: float

    def _set_env(self, env: ParallelEnv | str, env_kwargs: dict | None, seed: int | None) -> None:
        """The env (built from its id through the registry), a picklable factory of fresh copies, the agents, the game
        and the run's seed (drawn when None)."""
        self.env_id, self.env_kwargs, self.env = resolve_env(env, env_kwargs)
        self.env_fn = env_factory(self.env_id, self.env_kwargs, self.env)
        self.agents = list(self.env.possible_agents)
        self.game = game_of(self.env)
        self.seed = check_seed(seed)

    def _wrap_env(self, wrappers: list) -> None:
        """Wrap the env by the settings' ``env_wrapper`` (:mod:`sb3_neppo.envs.wrapping`); its copies are built so."""
        if wrappers:
            self.env = apply_wrappers(self.env, wrappers)
            self.env_fn = env_factory(self.env_id, self.env_kwargs, self.env, wrappers)
            self.agents = list(self.env.possible_agents)

    # --- training -------------------------------------------------------------------------------------------------------

    @abstractmethod
    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | Sequence[Callback] | None = None,
        progress_bar: bool = False,
    ):
        """Train on (``total_timesteps`` env steps more, every agent's step of a joint step counted once; None: what
        the settings say), calling ``callback`` as the module doc says; return the model."""

    @staticmethod
    def _callbacks(callback: Callback | Sequence[Callback] | None) -> list[Callback]:
        return [] if callback is None else [callback] if callable(callback) else list(callback)

    @staticmethod
    def _call(callbacks: list[Callback], log: Any, model: MultiAgentModel) -> bool:
        """Whether training goes on after ``callbacks`` saw ``log`` (each is called, in order, until one says stop)."""
        return not any(cb(log, model) is False for cb in callbacks)

    # --- the joint policy -----------------------------------------------------------------------------------------------

    @abstractmethod
    def _act(self, observation: dict, deterministic: bool, memory: Memory | None = None, masks=None) -> dict[str, Any]:
        """Each agent's action under the trained joint policy (recurrent policies: from and into ``memory``; maskable
        ones within ``masks``, agent -> its own action mask)."""

    @abstractmethod
    def strategies(self) -> list[np.ndarray] | None:
        """In a normal-form game, each agent's mixed strategy; None in a Markov game."""

    def predict(
        self,
        observation: dict | None = None,
        state: Memory | None = None,
        episode_start: bool | None = None,
        deterministic: bool = True,
        action_masks: dict[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, Any], Memory]:
        """SB3-style: each agent's action for a dict of observations, one per agent (optional in a normal-form game,
        whose observation is fixed), and the recurrent state to pass at the next step of the episode (a
        :class:`~sb3_neppo.policy.Memory`; feed-forward policies ignore it). ``state=None`` or ``episode_start``
        starts from the zero state, as at an episode's start. A maskable policy (MaskablePPO) acts within each agent's
        ``action_masks`` (agent -> 0/1 per action; default: the ``action_mask`` of an observation dict that has one)."""
        if observation is None:
            if self.game is None:
                raise ValueError("predict() needs a dict of observations, one per agent")
            observation = self.env.reset(seed=self.seed)[0]
        memory = state if state is not None else Memory()
        if episode_start:
            memory.forget()
        masks = {**masks_of(observation, None), **{a: np.asarray(m, bool) for a, m in (action_masks or {}).items()}}
        return self._act(observation, deterministic, memory, masks), memory

    # --- reports --------------------------------------------------------------------------------------------------------

    def _summary_head(self, iterations: int, **fields: Any) -> dict[str, Any]:
        """The fields every ``summary.json`` starts with (``fields`` go after ``agents``)."""
        out = {"algo": self.algo, "version": __version__, "env": self.env_id, "env_kwargs": self.env_kwargs}
        out.update(seed=self.seed, agents=self.agents, **fields)
        out.update(iterations=iterations, env_steps=self.num_timesteps, wall_time_s=round(self.wall_time_s, 4))
        return out

    def _regret_fields(self, regret: np.ndarray | None, method: str | None) -> dict[str, Any]:
        """``regret`` (agent -> exact regret), ``max_regret`` and, when known, ``regret_method``."""
        if regret is None:
            return {"regret": None, "max_regret": None}
        values = dict(zip(self.agents, regret.tolist()))
        return {"regret": values, "max_regret": max(values.values()), "regret_method": method}

    def _strategy_fields(self, strategies: list[np.ndarray] | None) -> dict[str, Any]:
        """A normal-form game's ``strategies`` and ``action_names`` (nothing in a Markov game)."""
        if strategies is None:
            return {}
        names = {a: list(n) for a, n in zip(self.agents, self.game.action_names)}
        return {"strategies": {a: x.tolist() for a, x in zip(self.agents, strategies)}, "action_names": names}

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """The run summary (the schema of ``summary.json``)."""

    # --- files ----------------------------------------------------------------------------------------------------------

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (:mod:`sb3_neppo.archive`'s format) atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike, env: ParallelEnv | str | None = None, **kwargs: Any) -> MultiAgentModel:
        """A saved model, read safely; ``env``: its env (an instance, or the saved id to allow importing its module)."""

    def close(self) -> None:
        """Release what the model holds open (worker processes, envs)."""
        self.env.close()
