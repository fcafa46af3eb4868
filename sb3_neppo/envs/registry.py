"""Env ids -> PettingZoo parallel envs.

Built-in ids are the normal-form games (``matrix``, ``matrix-alpha``, ``prisoners-dilemma``, ``stag-hunt``,
``matching-pennies``); they take precedence. ``vmas:<scenario>`` is a VMAS scenario (``vmas:simple_tag``; see
:mod:`sb3_neppo.envs.vmas`). Any other id is a user's env, importable from ``sys.path`` or the current directory:

* ``package.module`` or a top-level ``module`` (``my_rps``, for ``my_rps.py`` in the current directory): a module with
  a ``parallel_env`` factory (e.g. ``mpe2.simple_tag_v3``), PettingZoo's convention;
* ``package.module:function``: any function (or class) that returns a PettingZoo ``ParallelEnv``. This is also the id a
  saved model records to rebuild such an env later.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import numbers
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

from pettingzoo import AECEnv, ParallelEnv

from sb3_neppo.arguments import check_arguments
from sb3_neppo.envs.games import NormalFormGame
from sb3_neppo.envs.matrix import (
    MatrixGameEnv,
    alpha_env,
    matching_pennies_env,
    prisoners_dilemma_env,
    stag_hunt_env,
)
from sb3_neppo.errors import ConfigError


def matrix_env(payoffs=None, mixed: bool = True, agents=None, action_names=None) -> MatrixGameEnv:
    """Any normal-form game from its payoff array ``(n, k_1, ..., k_n)``."""
    if payoffs is None:
        raise ConfigError("env 'matrix' needs its payoffs: --env-kwargs payoffs:'[[[3,0],[5,1]],[[3,5],[0,1]]]'")
    agents, action_names = () if agents is None else agents, () if action_names is None else action_names
    game = NormalFormGame(payoffs, agents=agents, action_names=action_names)
    return MatrixGameEnv(game, mixed)


ENVS: dict[str, Callable[..., ParallelEnv]] = {
    "matrix": matrix_env,
    "matrix-alpha": alpha_env,
    "prisoners-dilemma": prisoners_dilemma_env,
    "stag-hunt": stag_hunt_env,
    "matching-pennies": matching_pennies_env,
}


EPISODE_LENGTHS = {"max_cycles": "PettingZoo's episode length", "max_steps": "VMAS's episode length"}


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message (at file:line)`` of an exception raised in a user's code."""
    text = (str(exc).splitlines() or [""])[0]
    frames = traceback.extract_tb(exc.__traceback__)
    at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames and not isinstance(exc, SyntaxError) else ""
    return f"{type(exc).__name__}: {text}{at}"


def _check_episode_length(env_id: str, kwargs: dict, key: str) -> None:
    """``max_cycles`` (PettingZoo) or ``max_steps`` (VMAS), when given, must be an integer >= 1."""
    if key in kwargs:
        value = kwargs[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(
                f"env '{env_id}': {key} ({EPISODE_LENGTHS[key]} in steps) must be an integer >= 1, got {value!r}; "
                f"e.g. --env-kwargs {key}:25"
            )


def _signature(factory: Callable[..., Any], module: Any = None) -> list[inspect.Parameter] | None:
    """The parameters ``factory`` accepts; for a ``parallel_env(**kwargs)``, those of the module's ``raw_env``
    (PettingZoo's convention), if it has a plain signature. None when unknown."""
    for candidate in (factory, getattr(module, "raw_env", None)):
        try:
            params = list(inspect.signature(candidate).parameters.values())
        except (TypeError, ValueError):
            continue
        if not any(p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL) for p in params):
            return [p for p in params if p.name != "self"]
    return None


def _call_with_kwargs(
    env_id: str, factory: Callable[..., Any], kwargs: dict, module: Any = None, users: bool | None = None
) -> Any:
    """``factory(**kwargs)``: an argument it does not take is one line naming it. For a user's factory (``users``;
    default: when ``module``, the user's env module whose ``raw_env`` may give the signature, is given), anything else
    the factory raises is one line too, naming the env and its arguments."""
    signature = _signature(factory, module)
    if signature is not None:
        check_arguments(signature, kwargs, f"env '{env_id}': ")
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ConfigError(
                f"env '{env_id}' takes no argument {', '.join(unknown)}; it accepts: {', '.join(params) or 'none'}"
            )
    if not (module is not None if users is None else users):
        return factory(**kwargs)
    try:
        return factory(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:
        match = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        if match and match.group(1) in kwargs:
            known = f"; it accepts: {', '.join(p.name for p in signature) or 'none'}" if signature is not None else ""
            raise ConfigError(f"env '{env_id}' takes no argument {match.group(1)}{known}") from None
        raise ConfigError(_rejected(env_id, kwargs, exc, factory)) from None
    except Exception as exc:
        raise ConfigError(_rejected(env_id, kwargs, exc, factory)) from None


def _rejected(env_id: str, kwargs: dict, exc: Exception, factory: Callable[..., Any]) -> str:
    if not kwargs:
        return f"env '{env_id}': {getattr(factory, '__name__', 'the factory')}() raised {_describe(exc)}"
    given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"env '{env_id}' rejected its arguments ({given}): {_describe(exc)}; check --env-kwargs"


def _current_directory_on_path() -> None:
    """A user's env module may sit in the current directory, as ``python -m`` (which puts it first on ``sys.path``)
    finds it; a console script does not, so it is appended (after everything installed, which it never shadows)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def _import_env_module(module_name: str, env_id: str | None = None) -> Any:
    """The user's env module ``module_name`` (a dotted path, or a top-level name), or one line saying why it cannot be
    imported (``env_id``: the env id it comes from, for the message)."""
    env_id = module_name if env_id is None else env_id
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"env id '{env_id}' is not a module path: give an absolute dotted path of Python names such as "
            "mpe2.simple_tag_v3 (no leading or doubled dots), or package.module:function"
        )
    _current_directory_on_path()
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import env module '{module_name}' ({exc}); check the spelling or pip install its package"
        ) from None
    except Exception as exc:  # a SyntaxError, or anything the module raises while it runs
        raise ConfigError(f"cannot import env module '{module_name}': {_describe(exc)}; fix the module") from None


def _is_top_level_module(name: str) -> bool:
    """Whether ``name`` is an importable top-level module (from ``sys.path`` or the current directory)."""
    if not name.isidentifier():
        return False
    _current_directory_on_path()
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


TRUSTED_ENV_PACKAGES = ("mpe2", "pettingzoo", "vmas", "sb3_neppo")


def check_importable(env_id: str | None, source) -> None:
    """A saved file (``source``) may name an env module; importing it runs its code, so a file alone only makes us
    import modules of the env packages we know and modules already imported. The caller allows others by naming the
    env itself (``load(path, env="my.module")``, ``--env my.module``)."""
    if env_id is None or env_id.startswith("vmas:") or env_id in ENVS:
        return
    module = env_id.partition(":")[0]
    if module.split(".")[0] in TRUSTED_ENV_PACKAGES or module in sys.modules:
        return
    raise ConfigError(
        f"{source} names the env module {module}; importing it runs its code, so pass env={env_id!r} to load "
        f"(or --env {env_id}) to allow it"
    )


def make_env(env_id: str, env_kwargs: dict | None = None) -> ParallelEnv:
    """Create the PettingZoo parallel env named ``env_id`` with keyword arguments ``env_kwargs``."""
    kwargs = dict(env_kwargs or {})
    if env_id in ENVS:
        return _call_with_kwargs(env_id, ENVS[env_id], kwargs)
    if env_id.startswith("vmas:"):
        from sb3_neppo.envs.vmas import VmasParallelEnv  # vmas is an optional dependency

        _check_episode_length(env_id, kwargs, "max_steps")
        return VmasParallelEnv(env_id.removeprefix("vmas:"), **kwargs)
    if ":" in env_id:
        return _from_factory(env_id, kwargs)
    if "." not in env_id and not _is_top_level_module(env_id):
        raise ConfigError(
            f"unknown env id '{env_id}': use one of {', '.join(sorted(ENVS))}, an importable PettingZoo module path "
            "such as mpe2.simple_tag_v3 (or my_env, for a my_env.py with a parallel_env() in the current directory), or "
            "package.module:function for a function that returns a ParallelEnv"
        )
    module = _import_env_module(env_id)
    factory = getattr(module, "parallel_env", None)
    if not callable(factory):
        raise ConfigError(
            f"module '{env_id}' has no parallel_env() factory; give a PettingZoo parallel env module, or name the "
            f"function that builds the env: --env {env_id}:<function>"
        )
    _check_episode_length(env_id, kwargs, "max_cycles")
    return _parallel(_call_with_kwargs(env_id, factory, kwargs, module), f"'{env_id}'.parallel_env()")


def _from_factory(env_id: str, kwargs: dict) -> ParallelEnv:
    """The env ``package.module:function`` builds (``function(**kwargs)``), or one line saying why not."""
    module_name, _, name = env_id.partition(":")
    if not name.isidentifier():
        raise ConfigError(
            f"env id '{env_id}' does not name a function after the ':'; write package.module:function, e.g. my_envs:make_rps"
        )
    module = _import_env_module(module_name, env_id)
    factory = getattr(module, name, None)
    if factory is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        listed = ", ".join(public[:12]) + (", ..." if len(public) > 12 else "")
        raise ConfigError(f"module '{module_name}' has no function {name!r} (env id '{env_id}'); it has: {listed or 'none'}")
    if not callable(factory):
        raise ConfigError(f"'{env_id}' names {factory!r:.40}, not a function that returns a ParallelEnv")
    _check_episode_length(env_id, kwargs, "max_cycles")
    return _parallel(_call_with_kwargs(env_id, factory, kwargs, users=True), f"'{env_id}'")


def _parallel(env: Any, made_by: str) -> ParallelEnv:
    """``env`` if it is a PettingZoo ParallelEnv; else one line saying what ``made_by`` returned instead."""
    if isinstance(env, ParallelEnv) and not isinstance(env, AECEnv):
        return env
    hint = " (an AEC env: wrap it with pettingzoo.utils.conversions.aec_to_parallel)" if isinstance(env, AECEnv) else ""
    raise ConfigError(f"{made_by} returned {type(env).__name__}, not a PettingZoo ParallelEnv{hint}")
