"""The baselines NePPO is compared with, built from SB3 parts and scored by the same regret evaluator: IPPO, MAPPO and
MADDPG (see each module)."""

from __future__ import annotations

import importlib

from sb3_neppo.archive import saved_algo
from sb3_neppo.baselines.base import MultiAgentAlgorithm
from sb3_neppo.config import BaselineConfig
from sb3_neppo.errors import ConfigError

BASELINES = {"ippo": "sb3_neppo.baselines.ippo:IPPO", "mappo": "sb3_neppo.baselines.mappo:MAPPO"}
BASELINES["maddpg"] = "sb3_neppo.baselines.maddpg:MADDPG"


def baseline_class(algo: str) -> type[MultiAgentAlgorithm]:
    """The class of baseline ``algo`` (one of :data:`BASELINES`)."""
    if algo not in BASELINES:
        raise ConfigError(f"unknown baseline '{algo}'; choose one of {', '.join(BASELINES)}")
    module, name = BASELINES[algo].split(":")
    return getattr(importlib.import_module(module), name)


def load_baseline(path, env: str | None = None) -> MultiAgentAlgorithm:
    """Load a saved baseline of any kind (its ``data.json`` names the algorithm); ``env``: see ``load``."""
    return baseline_class(saved_algo(path)).load(path, env=env)


__all__ = ["BASELINES", "BaselineConfig", "MultiAgentAlgorithm", "baseline_class", "load_baseline", "saved_algo"]
