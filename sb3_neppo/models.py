"""Every multi-agent model by the name the command line gives it (``neppo``, ``ippo``, ``mappo``, ``maddpg``): its class,
its settings on an env, and loading a saved one of any kind (the archive names its algorithm)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sb3_neppo import defaults
from sb3_neppo.archive import saved_algo
from sb3_neppo.baselines import BASELINES, baseline_class
from sb3_neppo.envs.registry import make_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.model import MultiAgentModel
from sb3_neppo.neppo import NePPO

ALGOS = ("neppo", *BASELINES)


def model_class(algo: str) -> type[MultiAgentModel]:
    """The class of model ``algo`` (one of :data:`ALGOS`)."""
    if algo == "neppo":
        return NePPO
    if algo not in BASELINES:
        raise ConfigError(f"unknown algorithm '{algo}'; choose one of {', '.join(ALGOS)}")
    return baseline_class(algo)


def load_model(path: str | os.PathLike, env: Any = None, **kwargs: Any) -> MultiAgentModel:
    """Load a saved model of any kind (its ``data.json`` names the algorithm); ``env``: see each class's ``load``."""
    return model_class(saved_algo(path)).load(path, env=env, **kwargs)


def settings_for(
    env_id: str, algo: str = "neppo", env_kwargs: Mapping[str, Any] | None = None, given=None, path=None
) -> dict[str, Any]:
    """The complete settings of ``algo`` on the env ``env_id`` builds (benchmarks and tests use this)."""
    env = make_env(env_id, dict(env_kwargs or {}))
    try:
        if algo == "neppo":
            return defaults.neppo_settings(env, env_id, given or {}, path)
        return defaults.baseline_settings(algo, model_class(algo).config_class, env, env_id, given or {}, path)
    finally:
        env.close()
