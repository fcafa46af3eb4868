"""Wrappers as configuration: rl-baselines3-zoo's ``env_wrapper`` entry, applied to the PettingZoo parallel env.

An entry is a list whose items are ``module.function`` strings or one-key mappings ``{module.function: {kwargs}}``,
applied in order (the first is innermost): ``env = function(env, **kwargs)``. SuperSuit's wrappers are the usual
ones (``supersuit.color_reduction_v0``, ``supersuit.resize_v1``, ``supersuit.frame_stack_v1``, ``supersuit.dtype_v0``),
PettingZoo's and a user's own work alike, so long as they take a parallel env and return one::

    env_wrapper:
      - supersuit.color_reduction_v0: {mode: B}
      - supersuit.resize_v1: {x_size: 84, y_size: 84}
      - supersuit.frame_stack_v1: {stack_size: 3}

The entry is part of a run's settings (``config.yml``, the model file), so every process that builds the env (the
solvers' copies, workers on other machines, the regret evaluator, a resumed run, ``load``) builds the same one. A saved
file only makes us import wrapper modules of the packages we know (:data:`TRUSTED_WRAPPER_PACKAGES`) and modules
already imported: importing a module runs its code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from pettingzoo import ParallelEnv

from sb3_neppo.envs.registry import make_env
from sb3_neppo.errors import ConfigError, first_line

TRUSTED_WRAPPER_PACKAGES = ("supersuit", "pettingzoo", "mpe2", "sb3_neppo")
FORM = "a list of module.function or {module.function: {kwargs}} (e.g. [supersuit.dtype_v0: {dtype: float32}])"


def parse_wrappers(spec: Any) -> list[tuple[str, dict[str, Any]]]:
    """``[(module.function, kwargs), ...]`` of an ``env_wrapper`` entry (None or [] for none); anything else is one
    line."""
    if spec is None:
        return []
    if isinstance(spec, (str, dict)):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ConfigError(f"env_wrapper must be {FORM}, got {spec!r}")
    out = []
    for item in spec:
        if isinstance(item, str):
            name, kwargs = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            ((name, kwargs),) = item.items()
            kwargs = {} if kwargs is None else kwargs
        else:
            raise ConfigError(f"env_wrapper must be {FORM}; the item {item!r} is neither")
        if not isinstance(name, str) or "." not in name.replace(":", ".") or not isinstance(kwargs, dict):
            raise ConfigError(f"env_wrapper must be {FORM}; the item {item!r} is not")
        out.append((name, dict(kwargs)))
    return out


def _module_of(name: str) -> tuple[str, str]:
    module, sep, function = name.partition(":")
    return (module, function) if sep else tuple(name.rsplit(".", 1))  # type: ignore[return-value]


def _resolve(name: str) -> Callable[..., Any]:
    module_name, function = _module_of(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"env_wrapper {name}: cannot import {module_name} ({first_line(exc)})") from None
    try:
        wrapper = getattr(module, function, None)
    except ImportError:  # a module's __getattr__ (SuperSuit's) may raise for a name it does not have
        wrapper = None
    if not callable(wrapper):
        raise ConfigError(f"env_wrapper {name}: {module_name} has no function {function}")
    return wrapper


def apply_wrappers(env: ParallelEnv, spec: Any) -> ParallelEnv:
    """``env`` wrapped by each item of ``spec`` in order; a wrapper that fails or does not return a parallel env is one
    line naming it."""
    for name, kwargs in parse_wrappers(spec):
        wrapper = _resolve(name)
        try:
            wrapped = wrapper(env, **kwargs)
        except Exception as exc:  # the wrapper's own error, whatever it raises: one line naming it
            text = f"{type(exc).__name__}: {first_line(exc)}" if str(exc) else type(exc).__name__
            raise ConfigError(f"env_wrapper {name}({kwargs or ''}) failed on this env: {text}") from None
        if not isinstance(wrapped, ParallelEnv):
            raise ConfigError(
                f"env_wrapper {name} returned a {type(wrapped).__name__}, not a PettingZoo ParallelEnv: give wrappers that "
                "take a parallel env and return one (SuperSuit's and PettingZoo's parallel wrappers do)"
            )
        env = wrapped
    return env


def make_wrapped_env(env_id: str, env_kwargs: dict[str, Any], spec: Any) -> ParallelEnv:
    """The env ``env_id`` builds, wrapped by ``spec`` (a picklable factory with ``functools.partial``)."""
    return apply_wrappers(make_env(env_id, env_kwargs), spec)


def check_wrappers_importable(spec: Any, source: Any) -> None:
    """A saved file (``source``) names wrapper modules: only those of :data:`TRUSTED_WRAPPER_PACKAGES` and modules
    already imported may be imported on its word; for others the caller imports the module first."""
    for name, _ in parse_wrappers(spec):
        module = _module_of(name)[0]
        if module.split(".")[0] not in TRUSTED_WRAPPER_PACKAGES and module not in sys.modules:
            raise ConfigError(
                f"{source} names the env wrapper module {module}; importing it runs its code, so import it yourself "
                "before loading (or give it on the command line with -params env_wrapper:...) to allow it"
            )
