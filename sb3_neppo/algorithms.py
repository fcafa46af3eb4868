"""The on-policy algorithms the SB3 solvers and the PPO baselines train with (``solver_kwargs.algo`` / ``br_algo``).

A name is one of :data:`ALGORITHMS` (``PPO``, ``A2C``, ``TRPO``, ``RecurrentPPO``, ``MaskablePPO``, with or without
their package: ``sb3_contrib.TRPO``) or a ``module.Class`` path to any subclass of SB3's ``OnPolicyAlgorithm``. A
module outside SB3 and sb3-contrib is imported only when it is already imported (a settings file, like a saved model,
may not make us run a module's code): import it before building the model.

Each algorithm takes its own keyword arguments: the settings' ``ppo`` mapping holds them. Where it holds one of the
paper's PPO defaults the algorithm does not take (A2C has no ``clip_range``), that default is left out, as is the
minibatch sized from the env (``batch_size``) for an algorithm without minibatches (:func:`fit_kwargs`); a key the
user set that the algorithm does not take is one line.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_neppo.errors import ConfigError

ALGORITHMS = {
    "PPO": "stable_baselines3.PPO",
    "A2C": "stable_baselines3.A2C",
    "TRPO": "sb3_contrib.TRPO",
    "RecurrentPPO": "sb3_contrib.RecurrentPPO",
    "MaskablePPO": "sb3_contrib.MaskablePPO",
}
TRUSTED_PACKAGES = ("stable_baselines3", "sb3_contrib")
SET_BY_US = ("env", "policy", "seed", "_init_setup_model")  # the solvers give these; settings may not
SIZED = ("batch_size",)  # sized from the env by sb3_neppo.defaults whatever the algorithm: left out where not taken


def algorithm_class(name: str, where: str = "solver_kwargs.algo") -> type[OnPolicyAlgorithm]:
    """The class ``name`` names (see the module docstring); anything else is one line listing the choices."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} must be an algorithm name ({', '.join(ALGORITHMS)}), got {name!r}")
    path = ALGORITHMS.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    choices = f"use one of {', '.join(ALGORITHMS)} or a module.Class path to an on-policy SB3 algorithm"
    if not module_name:
        raise ConfigError(f"{where}: unknown algorithm {name!r}; {choices}")
    if module_name.split(".")[0] not in TRUSTED_PACKAGES and module_name not in sys.modules:
        raise ConfigError(
            f"{where}: {name} is in module {module_name}, which is not imported; importing it runs its code, so import it "
            "yourself first (python -c is not enough: the process that builds the model must import it)"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name} for {name!r} ({exc}); {choices}") from None
    if not (inspect.isclass(cls) and issubclass(cls, OnPolicyAlgorithm)):
        raise ConfigError(f"{where}: {name!r} is not an on-policy SB3 algorithm (OnPolicyAlgorithm subclass); {choices}")
    return cls


def algorithm_params(cls: type[OnPolicyAlgorithm]) -> dict[str, inspect.Parameter]:
    """The keyword arguments ``cls`` takes from settings (all of its constructor's but :data:`SET_BY_US`)."""
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self" and n not in SET_BY_US}


def default_policy(cls: type[OnPolicyAlgorithm]) -> str:
    """``MlpLstmPolicy`` for a recurrent algorithm (``RecurrentPPO``), else ``MlpPolicy``."""
    aliases = getattr(cls, "policy_aliases", {})
    return "MlpLstmPolicy" if "MlpLstmPolicy" in aliases else "MlpPolicy"


def reads_images(policy: str) -> bool:
    """Whether the SB3 policy named ``policy`` is a CNN policy (``CnnPolicy``, ``CnnLstmPolicy``): it reads images."""
    return policy.startswith("Cnn")


def reads_dicts(policy: str) -> bool:
    """Whether the SB3 policy named ``policy`` is a multi-input policy (``MultiInputPolicy``, ...): it reads Dicts."""
    return policy.startswith("MultiInput")


def check_policy(cls: type[OnPolicyAlgorithm], policy: str, where: str = "solver_kwargs.policy") -> None:
    """One line when ``policy`` is not one of ``cls``'s policy names."""
    aliases = list(getattr(cls, "policy_aliases", {}))
    if policy not in aliases:
        raise ConfigError(f"{where}: {cls.__name__} has no policy {policy!r}; its policies are {', '.join(aliases)}")


def fit_kwargs(
    kwargs: Mapping[str, Any], cls: type[OnPolicyAlgorithm], defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``kwargs`` for ``cls``: a key it does not take is left out where its value is ``defaults``' (one of the paper's
    PPO settings) or the key is :data:`SIZED`, and one line otherwise (the user set it)."""
    params = algorithm_params(cls)
    out, refused = {}, []
    for key, value in kwargs.items():
        if key in params:
            out[key] = value
        elif key not in SIZED and (key not in defaults or defaults[key] != value):
            refused.append(key)
    if refused:
        raise ConfigError(
            f"bad {cls.__name__} argument in {where}: {', '.join(map(str, refused))} is not an argument of "
            f"{cls.__name__}; it takes: {', '.join(params)}"
        )
    return out


def is_recurrent(policy: Any) -> bool:
    """Whether ``policy`` keeps a hidden state between steps (sb3-contrib's recurrent policies)."""
    return hasattr(policy, "lstm_actor")
