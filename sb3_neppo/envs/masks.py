"""Action masks the PettingZoo way: an ``action_mask`` entry in an agent's observation dict (PettingZoo's classic games)
or in its info dict, a 0/1 vector over its Discrete actions (1: allowed). MaskablePPO (sb3-contrib) reads them through
an env's ``action_masks()``; the frozen agents and the evaluation episodes sample from masked distributions too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sb3_neppo.errors import ConfigError

MASK_KEY = "action_mask"


def agent_mask(observation: Any, info: Any) -> np.ndarray | None:
    """The agent's mask (bool ``[n]``) from its observation dict or else its info dict; None where neither has one."""
    for source in (observation, info):
        if isinstance(source, Mapping) and MASK_KEY in source:
            return np.asarray(source[MASK_KEY]).astype(bool).reshape(-1)
    return None


def has_masks(observations: Mapping, infos: Mapping | None) -> bool:
    """Whether every agent of a reset's ``observations`` comes with a mask (see :func:`agent_mask`)."""
    return bool(observations) and len(masks_of(observations, infos)) == len(observations)


def masks_of(observations: Mapping, infos: Mapping | None) -> dict[str, np.ndarray]:
    """The masks of the agents in ``observations`` that have one."""
    infos = infos or {}
    out = {}
    for agent, obs in observations.items():
        mask = agent_mask(obs, infos.get(agent))
        if mask is not None:
            out[agent] = mask
    return out


def check_masks_given(algorithm: type, masked: bool, where: str = "solver_kwargs.algo") -> None:
    """One line when ``algorithm`` is MaskablePPO and the env gives no masks."""
    if algorithm.__name__ == "MaskablePPO" and not masked:
        raise ConfigError(
            f"{where} MaskablePPO needs action masks, and this env gives none: the PettingZoo way is an "
            f"'{MASK_KEY}' (0/1 per action) in each agent's observation dict or info dict; use PPO for an env without masks"
        )
