"""Values checked against a callable's annotations: ``maybe`` for a bool or ``abc`` for an integer is one line, not silently
truthy or a traceback from deep inside. Shared by the env arguments, the PPO arguments and the solver settings."""

from __future__ import annotations

import collections.abc
import inspect
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sb3_neppo.errors import ConfigError

NAMED_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "None": type(None), "dict": dict}
DESCRIPTIONS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    type(None): "null",
    collections.abc.Callable: "a callable",
}


def _leaves(annotation: Any) -> list | None:
    """The alternatives of a parameter's annotation (``int | None`` -> [int, NoneType]), a string annotation included;
    None (nothing is checked) unless each is one of DESCRIPTIONS' types (``dict[str, Any]`` counts as ``dict``)."""
    if isinstance(annotation, str):
        parts = [part.strip() for part in annotation.split("|")]
        return [NAMED_TYPES[part] for part in parts] if all(part in NAMED_TYPES for part in parts) else None
    if annotation is None:
        return [type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        leaves = [_leaves(arg) for arg in typing.get_args(annotation)]
        return None if any(leaf is None for leaf in leaves) else [x for leaf in leaves for x in leaf]
    origin = typing.get_origin(annotation) or annotation
    return [origin] if origin in DESCRIPTIONS else None


def _fits(value: Any, leaf: type) -> bool:
    """Whether ``value`` is a ``leaf``: a bool is no number, an integer is a float, a callable fits ``Callable``."""
    if isinstance(value, (bool, np.bool_)):
        return leaf is bool
    if leaf in (int, float):
        return isinstance(value, numbers.Integral if leaf is int else numbers.Real)
    if leaf is collections.abc.Callable:
        return callable(value)
    return isinstance(value, Mapping if leaf is dict else leaf)


def check_arguments(params: Iterable[inspect.Parameter], kwargs: Mapping[str, Any], prefix: str) -> None:
    """Each argument in ``kwargs`` whose parameter is annotated with plain types (``bool``, ``int``, ``float | None``,
    ``float | Callable``, ``dict[...]``, ...) must be one of them: ``maybe`` for a bool, ``true`` for a number or ``abc``
    for an integer is one line ``<prefix><name> must be ..., got ...``, not silently truthy or a traceback from
    inside. Shared by the env arguments and the PPO arguments of the SB3 solvers."""
    for param in params:
        if param.name not in kwargs or param.annotation is inspect.Parameter.empty:
            continue
        leaves, value = _leaves(param.annotation), kwargs[param.name]
        if leaves is not None and not any(_fits(value, leaf) for leaf in leaves):
            expected = " or ".join(DESCRIPTIONS[leaf] for leaf in leaves)
            raise ConfigError(f"{prefix}{param.name} must be {expected}, got {value!r}")
