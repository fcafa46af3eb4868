"""The parts of a NePPO run built from what the user names: the env (an id or an instance), the potential (a name or an
instance) and the solver bundle (``auto``, ``exact``, ``sb3`` or a :class:`~sb3_neppo.solvers.base.Solvers`).

NePPO asks this module for its parts and never imports a solver family itself; everything returned is picklable where
workers need it (the env factory is a ``functools.partial``)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from pettingzoo import ParallelEnv

from sb3_neppo.config import NePPOConfig
from sb3_neppo.envs.checks import check_parallel_env
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.games import NormalFormGame
from sb3_neppo.envs.matrix import MatrixGameEnv
from sb3_neppo.envs.registry import make_env
from sb3_neppo.envs.wrapping import make_wrapped_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import Potential, build_potential
from sb3_neppo.solvers.base import Solvers
from sb3_neppo.solvers.exact import exact_solvers
from sb3_neppo.solvers.sb3 import sb3_solvers

SOLVERS = ("auto", "exact", "sb3")


def resolve_env(env: ParallelEnv | str, env_kwargs: dict | None) -> tuple[str | None, dict, ParallelEnv]:
    """(env id, env kwargs, env instance): ids are built through the registry; matrix games get an id that rebuilds them."""
    if isinstance(env, str):
        kwargs = dict(env_kwargs or {})
        return env, kwargs, make_env(env, kwargs)
    check_parallel_env(env)
    inner = env.unwrapped
    if isinstance(inner, MatrixGameEnv):
        game = inner.game
        kwargs = {
            "payoffs": game.payoffs.tolist(),
            "mixed": inner.mixed,
            "agents": list(game.agents),
            "action_names": [list(a) for a in game.action_names],
        }
        return "matrix", kwargs, env
    return None, {}, env


def env_factory(
    env_id: str | None, env_kwargs: dict, env: ParallelEnv, wrappers: list | None = None
) -> Callable[[], ParallelEnv]:
    """Builds fresh copies of the env: from its id (wrapped by ``wrappers``, :mod:`sb3_neppo.envs.wrapping`), else by
    copying the instance, wrapped already (picklable either way)."""
    if env_id is not None and wrappers:
        return functools.partial(make_wrapped_env, env_id, env_kwargs, list(wrappers))
    if env_id is not None:
        return functools.partial(make_env, env_id, env_kwargs)
    return functools.partial(copy.deepcopy, env)


def game_of(env: ParallelEnv) -> NormalFormGame | None:
    """The normal-form game ``env`` plays, or None for a Markov game."""
    return env.unwrapped.game if isinstance(env.unwrapped, MatrixGameEnv) else None


def make_potential(potential: Potential | str, env: ParallelEnv, kwargs: dict[str, Any]) -> Potential:
    """The potential: an instance as it is, or one built by name (``auto``: quadratic for normal-form games, the state
    mixer otherwise) sized from the env (agents, state width, actions)."""
    if isinstance(potential, Potential):
        return potential
    game = game_of(env)
    name = potential
    if name == "auto":
        name = "quadratic" if game is not None else "state_mixer"
    return build_potential(
        name,
        n_agents=len(env.possible_agents),
        state_dim=StepEncoder(env).state_dim,  # env.state(), or the observations concatenated
        n_actions=game.n_actions if game is not None else None,
        agents=list(env.possible_agents),
        **kwargs,
    )


def make_solvers(
    solver: Solvers | str,
    env: ParallelEnv,
    env_id: str | None,
    env_fn: Callable[[], ParallelEnv],
    config: NePPOConfig,
    seed: int,
) -> Solvers:
    """The solver bundle: an instance as it is, or the named one (``auto``: exact for a normal-form game, sb3 else)."""
    if isinstance(solver, Solvers):
        return solver
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver '{solver}': use auto, exact or sb3")
    game = game_of(env)
    if solver == "exact" and game is None:
        raise ConfigError(f"solver 'exact' needs a normal-form game; '{env_id}' is not one (use sb3)")
    if solver == "sb3" or game is None:
        return sb3_solvers(env_fn, config.solver_kwargs, seed=seed)
    if config.solver_kwargs:
        raise ConfigError("solver_kwargs are settings of the sb3 solver; drop them or set solver: sb3")
    env.reset(seed=seed)
    return exact_solvers(game, env.state(), seed=seed)
