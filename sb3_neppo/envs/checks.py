"""The one check of what a PettingZoo parallel env returns, used on every path that steps one (the potential-reward
wrapper, :class:`~sb3_neppo.envs.vec.ParallelVecEnv`, :class:`~sb3_neppo.envs.frozen.FrozenOthersEnv`, the evaluation
rollouts): an observation of the wrong shape or with a NaN/inf, a NaN/inf reward, or no reward for an agent that acted
is one :class:`~sb3_neppo.errors.ConfigError` line naming the agent and the step (:class:`StepChecker`), never a
traceback from deep inside; and one line for anything that is not a parallel env (:func:`check_parallel_env`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from sb3_neppo.envs.observations import FlatObservation, misfit
from sb3_neppo.errors import ConfigError


def check_parallel_env(env) -> None:
    """One clear error for anything that is not a PettingZoo ``ParallelEnv`` (an AEC env, a Gymnasium env, ...)."""
    if isinstance(env, AECEnv) or not isinstance(env, ParallelEnv):
        raise ConfigError(
            f"{type(env).__name__} is not a PettingZoo ParallelEnv; use the module's parallel_env() "
            "(or pettingzoo.utils.conversions.aec_to_parallel)"
        )


def where(step: int) -> str:
    """``at reset`` or ``at step t after reset`` (t counts ``env.step()`` calls since the last reset, from 1)."""
    return "at reset" if step == 0 else f"at step {step} after reset"


_NOT_A_BOX = object()


class StepChecker:
    """Checks what a PettingZoo parallel env returns, so a misbehaving env is one line naming the agent and the step.

    Every path that steps a parallel env (the potential-reward wrapper, the vector env, the frozen-others env, the
    rollout evaluator) goes through these checks: each observation has its space's shape and is finite (a Box space),
    or lies in its space (Discrete, MultiDiscrete, MultiBinary; a Dict or Tuple part by part, its Box parts by shape and
    finiteness), each reward is a finite number, and every agent that acted (it was in ``env.agents`` and was given an
    action) got a reward. An agent that has left the episode (no longer in ``env.agents``) is given no action and owes
    no reward.

    Steps are counted from 1 after each reset (``step=0``: the observations ``reset()`` returned).

    :param env: the (unwrapped or wrapped) parallel env; only its agents and spaces are read.
    """

    def __init__(self, env: ParallelEnv):
        check_parallel_env(env)
        self.possible_agents = list(env.possible_agents)
        self.index = {a: i for i, a in enumerate(self.possible_agents)}
        self.obs_spaces = {a: env.observation_space(a) for a in self.possible_agents}
        self.flat = {a: FlatObservation(a, space) for a, space in self.obs_spaces.items()}  # one line for a bad space
        # a Box agent's shape; _NOT_A_BOX (equal to no shape) sends every observation of another space to _check_shape
        self.obs_shapes = {a: s.shape if isinstance(s, spaces.Box) else _NOT_A_BOX for a, s in self.obs_spaces.items()}
        self._all_box = all(isinstance(s, spaces.Box) for s in self.obs_spaces.values())

    def observations(self, observations: Mapping, step: int, finite: bool = True) -> None:
        """Each agent's observation fits its space (see the class doc); with ``finite``, no Box observation has a NaN or
        infinite value (the parts of a Dict or Tuple observation are always checked)."""
        shapes = self.obs_shapes
        for agent, obs in observations.items():
            if getattr(obs, "shape", None) != shapes.get(agent, _NOT_A_BOX):
                self._check_shape(agent, obs, step)
        if finite and observations:
            values = observations.values()
            if not self._all_box:
                values = [o for a, o in observations.items() if shapes[a] is not _NOT_A_BOX]
            flat = [obs.reshape(-1) if isinstance(obs, np.ndarray) else np.ravel(obs) for obs in values]
            if flat and not np.isfinite(np.concatenate(flat)).all():
                for agent, obs in observations.items():
                    self._check_finite(agent, obs, step)

    def _check_shape(self, agent: str, obs, step: int) -> None:
        if agent not in self.index:
            raise ConfigError(
                f"the env returned an observation for {agent!r} {where(step)}, which is not one of its possible_agents "
                f"({', '.join(map(str, self.possible_agents))})"
            )
        expected = self.obs_shapes[agent]
        if expected is _NOT_A_BOX:
            problem = misfit(self.obs_spaces[agent], obs)
            if problem is not None:
                raise ConfigError(
                    f"the env returned an observation for {agent} {where(step)} that {problem}; an agent's observations "
                    f"must lie in its observation_space({agent!r}), {self.obs_spaces[agent]}"
                )
            return
        try:
            shape = np.shape(obs)
        except ValueError:  # a ragged nested list
            shape = "ragged"
        if shape != expected:
            raise ConfigError(
                f"the env returned an observation of shape {shape} for {agent} {where(step)}, but "
                f"observation_space({agent!r}).shape is {expected}; an agent's observations must keep its space's shape"
            )

    def _check_finite(self, agent: str, obs, step: int) -> None:
        if self.obs_shapes[agent] is _NOT_A_BOX:
            return
        bad = ~np.isfinite(np.asarray(obs, dtype=np.float64).reshape(-1))
        if bad.any():
            first = int(np.argmax(bad))
            raise ConfigError(
                f"the env returned a non-finite observation for {agent} {where(step)} ({int(bad.sum())} of {bad.size} "
                f"values are NaN or infinite, the first at flat index {first}); fix the env so observations stay finite"
            )

    def rewards(self, rewards: Mapping, acted: Iterable[str] = (), step: int = 0) -> np.ndarray:
        """The reward vector over ``possible_agents`` (0 for agents that did not act); one line for a reward that is
        not a finite number, a reward for an unknown agent, or an agent in ``acted`` that got no reward."""
        out = np.zeros(len(self.possible_agents))
        index = self.index
        for agent, r in rewards.items():
            try:
                finite = math.isfinite(r)
            except TypeError:
                raise ConfigError(f"the env returned a reward for {agent} {where(step)} that is not a number: {r!r}") from None
            if not finite:
                raise ConfigError(
                    f"the env returned a non-finite reward for {agent}: {r} {where(step)}; fix the env or clip its rewards"
                )
            i = index.get(agent)
            if i is None:
                raise ConfigError(
                    f"the env returned a reward for {agent!r} {where(step)}, which is not one of its possible_agents "
                    f"({', '.join(map(str, self.possible_agents))})"
                )
            out[i] = r
        for agent in acted:
            if agent not in rewards:
                raise ConfigError(
                    f"the env returned no reward for {agent} {where(step)}, although {agent} acted (it was in env.agents "
                    "and was given an action); every agent that acts must be in the step's rewards dict"
                )
        return out
