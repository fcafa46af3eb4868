"""Observation spaces as SB3's MLP preprocessing reads them: which spaces it reads, how one observation (or a batch)
flattens into the float32 vector a policy sees (:class:`FlatObservation`), and what is wrong with an observation that
does not lie in its space (:func:`misfit`, for the step checks of :mod:`sb3_neppo.envs.checks`).

Observations may have any space SB3's MLP preprocessing reads: Box, Discrete, MultiDiscrete, MultiBinary, and Dict or
Tuple spaces of them; any other space is one line when the env is first read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.spaces.utils import flatdim, flatten, flatten_space
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

from sb3_neppo.errors import ConfigError

OBSERVATION_LEAVES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def _parts(space: spaces.Space) -> list[tuple[object, spaces.Space]]:
    """A Dict's ``(key, subspace)`` or a Tuple's ``(index, subspace)`` pairs, in the order ``gymnasium.spaces.utils.flatten``
    concatenates them."""
    return list(space.spaces.items()) if isinstance(space, spaces.Dict) else list(enumerate(space.spaces))


def _unsupported(space: spaces.Space) -> spaces.Space | None:
    """The first part of ``space`` that SB3's MLP preprocessing cannot read (None: it reads every part)."""
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        return next((bad for _, sub in _parts(space) if (bad := _unsupported(sub)) is not None), None)
    return None if isinstance(space, OBSERVATION_LEAVES) else space


def _image_scale(space: spaces.Space) -> np.ndarray:
    """Per flat value, what SB3's preprocessing multiplies it by: 1/255 in images (uint8, values 0..255), else 1."""
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        return np.concatenate([_image_scale(sub) for _, sub in _parts(space)] or [np.ones(0, np.float32)])
    scale = 1.0 / 255.0 if is_image_space(space, check_channels=False) else 1.0
    return np.full(flatdim(space), scale, np.float32)


def misfit(space: spaces.Space, obs, path: str = "") -> str | None:
    """What is wrong with ``obs`` as an element of ``space`` (a non-Box space or a part of one), or None."""
    at = f" at {path}" if path else ""
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, Mapping):
            return f"is a {type(obs).__name__}{at}, not a dict with the keys {list(space.spaces)}"
        missing = [key for key in space.spaces if key not in obs]
        if missing:
            return f"has no key {missing[0]!r}{at}"
    elif isinstance(space, spaces.Tuple):
        if not isinstance(obs, Sequence) or isinstance(obs, str) or len(obs) != len(space.spaces):
            return f"is {obs!r:.60}{at}, not a tuple of {len(space.spaces)} parts"
    elif isinstance(space, spaces.Box):
        try:
            shape = np.shape(obs)
        except ValueError:  # a ragged nested list
            shape = "ragged"
        if shape != space.shape:
            return f"has shape {shape}{at}, but its space's shape is {space.shape}"
        if not np.isfinite(np.asarray(obs, dtype=np.float64)).all():
            return f"has NaN or infinite values{at}"
        return None
    else:
        try:
            inside = bool(space.contains(obs))
        except (TypeError, ValueError):
            inside = False
        return None if inside else f"is {obs!r:.60}{at}, which is not in {space}"
    return next((bad for key, sub in _parts(space) if (bad := misfit(sub, obs[key], f"{path}[{key!r}]")) is not None), None)


class FlatObservation:
    """One agent's observations as SB3's preprocessing feeds an MLP, as one flat float32 vector.

    ``gymnasium.spaces.utils.flatten`` does exactly what SB3 does: a Discrete observation becomes a one-hot, a
    MultiDiscrete one a one-hot per entry, MultiBinary and Box observations are flattened, and Dict/Tuple observations
    are flattened part by part and concatenated (Dict keys in the space's order). Images (3-D uint8 Box with values
    0..255) are scaled to [0, 1], as SB3 does for its policies, and stay flattened (no CNN). Any other space (Graph,
    Text, Sequence, ...) is one line.

    :param agent: the agent (for the error message).
    :param space: its observation space.
    """

    def __init__(self, agent: str, space: spaces.Space):
        bad = _unsupported(space)
        if bad is not None:
            raise ConfigError(
                f"the observation space of {agent} is {space}, and {type(bad).__name__} observations are not something "
                "an SB3 policy reads; give the env Box, Discrete, MultiDiscrete or MultiBinary observations (or a Dict or "
                "Tuple of them), e.g. with a PettingZoo/SuperSuit observation wrapper"
            )
        self.space = space
        self.is_box = isinstance(space, spaces.Box)
        flat = flatten_space(space)
        self.size = int(flat.shape[0])
        scale = _image_scale(space)
        self.scale = None if np.all(scale == 1.0) else scale
        self.low = flat.low.astype(np.float32) * (1.0 if self.scale is None else self.scale)
        self.high = flat.high.astype(np.float32) * (1.0 if self.scale is None else self.scale)

    def __call__(self, obs) -> np.ndarray:
        """The flat float32 vector ``[size]`` of one observation (may share memory with a Box observation)."""
        flat = np.asarray(obs, np.float32).reshape(-1) if self.is_box else np.asarray(flatten(self.space, obs), np.float32)
        return flat if self.scale is None else flat * self.scale

    def batch(self, observations) -> np.ndarray:
        """The flat float32 vectors ``[B, size]`` of a batch of observations (a Box space: an array ``[B, *shape]``;
        another space: a sequence of observations)."""
        if not self.is_box:
            return np.stack([self(obs) for obs in observations]).reshape(len(observations), self.size)
        flat = np.asarray(observations, np.float32).reshape(len(observations), self.size)
        return flat if self.scale is None else flat * self.scale


def is_image(space: spaces.Space) -> bool:
    """Whether ``space`` holds images a CNN policy reads: a uint8 Box with values 0..255, of shape ``(H, W)`` (one
    channel, e.g. after SuperSuit's ``color_reduction_v0``), ``(H, W, C)`` or ``(C, H, W)``."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) not in (2, 3):
        return False
    return bool(np.all(space.low == 0) and np.all(space.high == 255))


class ImageObservation:
    """One agent's image observations, channel-first as SB3's CNN policies read them: ``(H, W)`` gains a channel axis,
    ``(H, W, C)`` is transposed (the smallest axis is the channels, SB3's rule), ``(C, H, W)`` stays. Values stay uint8
    0..255: SB3's policies divide them by 255.

    :param agent: the agent (for the error message).
    :param space: its observation space (one line if it is not an image: :func:`is_image`).
    """

    def __init__(self, agent: str, space: spaces.Space):
        if not is_image(space):
            raise ConfigError(
                f"a CNN policy needs image observations (a uint8 Box with values 0..255 of shape (H, W), (H, W, C) or "
                f"(C, H, W)), and {agent}'s are {space}; use MlpPolicy, or make them images with a wrapper"
            )
        shape = space.shape
        self.channel_last = len(shape) == 3 and not is_image_space_channels_first(space)
        if len(shape) == 2:
            self.shape = (1, *shape)
        else:
            self.shape = (shape[2], shape[0], shape[1]) if self.channel_last else tuple(shape)

    def __call__(self, obs) -> np.ndarray:
        """One observation as ``[C, H, W]`` uint8."""
        return self.batch(np.asarray(obs)[None])[0]

    def batch(self, observations: np.ndarray) -> np.ndarray:
        """A batch ``[B, *space.shape]`` as ``[B, C, H, W]`` uint8 (a view where no copy is needed)."""
        observations = np.asarray(observations)
        if observations.ndim == 3:
            return observations[:, None]
        return observations.transpose(0, 3, 1, 2) if self.channel_last else observations
