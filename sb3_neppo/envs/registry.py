"""Env ids -> PettingZoo parallel envs.

Built-in ids are the normal-form games (``matrix``, ``matrix-alpha``, ``prisoners-dilemma``, ``stag-hunt``,
``matching-pennies``). ``vmas:<scenario>`` is a VMAS scenario (``vmas:simple_tag``; see :mod:`sb3_neppo.envs.vmas`).
Any other id containing a dot is read as an importable module path with a ``parallel_env`` factory (e.g.
``mpe2.simple_tag_v3``), PettingZoo's convention.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from pettingzoo import ParallelEnv
from stable_baselines3.common.vec_env import VecEnv

from sb3_neppo.envs.games import NormalFormGame
from sb3_neppo.envs.matrix import (
    MatrixGameEnv,
    alpha_env,
    matching_pennies_env,
    prisoners_dilemma_env,
    stag_hunt_env,
)
from sb3_neppo.envs.vec import AgentView, ParallelVecEnv
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import Potential


def matrix_env(payoffs=None, mixed: bool = True, agents=None, action_names=None) -> MatrixGameEnv:
    """Any normal-form game from its payoff array ``(n, k_1, ..., k_n)``."""
    if payoffs is None:
        raise ConfigError("env 'matrix' needs its payoffs: --env-kwargs payoffs:'[[[3,0],[5,1]],[[3,5],[0,1]]]'")
    return MatrixGameEnv(NormalFormGame(payoffs, agents=tuple(agents or ()), action_names=tuple(action_names or ())), mixed)


ENVS: dict[str, Callable[..., ParallelEnv]] = {
    "matrix": matrix_env,
    "matrix-alpha": alpha_env,
    "prisoners-dilemma": prisoners_dilemma_env,
    "stag-hunt": stag_hunt_env,
    "matching-pennies": matching_pennies_env,
}


def _call_with_kwargs(env_id: str, factory: Callable[..., Any], kwargs: dict) -> Any:
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ConfigError(
                f"env '{env_id}' takes no argument {', '.join(unknown)}; it accepts: {', '.join(params) or 'none'}"
            )
    return factory(**kwargs)


def make_env(env_id: str, env_kwargs: dict | None = None) -> ParallelEnv:
    """Create the PettingZoo parallel env named ``env_id`` with keyword arguments ``env_kwargs``."""
    kwargs = dict(env_kwargs or {})
    if env_id in ENVS:
        return _call_with_kwargs(env_id, ENVS[env_id], kwargs)
    if env_id.startswith("vmas:"):
        from sb3_neppo.envs.vmas import VmasParallelEnv  # vmas is an optional dependency

        return VmasParallelEnv(env_id.removeprefix("vmas:"), **kwargs)
    if "." not in env_id:
        raise ConfigError(
            f"unknown env id '{env_id}': use one of {', '.join(sorted(ENVS))}, or an importable PettingZoo module path "
            "such as mpe2.simple_tag_v3"
        )
    try:
        module = importlib.import_module(env_id)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import env module '{env_id}' ({exc}); check the spelling or pip install its package"
        ) from None
    factory = getattr(module, "parallel_env", None)
    if not callable(factory):
        raise ConfigError(f"module '{env_id}' has no parallel_env() factory; give a PettingZoo parallel env module")
    env = _call_with_kwargs(env_id, factory, kwargs)
    if not isinstance(env, ParallelEnv):
        raise ConfigError(f"'{env_id}'.parallel_env() returned {type(env).__name__}, not a PettingZoo ParallelEnv")
    return env


def make_vec_env(
    env_fn: Callable[[], ParallelEnv],
    n_envs: int,
    view: AgentView | None = None,
    potential: Potential | None = None,
    env: ParallelEnv | None = None,
) -> VecEnv:
    """The multi-agent SB3 VecEnv (a slot per copy and agent) of ``env_fn``'s env: ``n_envs`` batched worlds in one
    :class:`~sb3_neppo.envs.vmas.VmasVecEnv` for a VMAS scenario, else ``n_envs`` copies in a
    :class:`~sb3_neppo.envs.vec.ParallelVecEnv`. Slots pay ``potential`` when given, else each agent's own reward.
    ``env``: an env ``env_fn`` already built (saves building one)."""
    env = env if env is not None else env_fn()
    if type(env.unwrapped).__name__ == "VmasParallelEnv":
        from sb3_neppo.envs.vmas import VmasVecEnv

        return VmasVecEnv(env.unwrapped, n_envs, view, potential)
    return ParallelVecEnv(env_fn, n_envs, view, potential)
