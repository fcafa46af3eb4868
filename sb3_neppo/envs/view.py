"""How one shared policy sees and drives agents whose spaces may differ (:class:`AgentView`): padding, the agent
indicator, wrap-round Discrete actions and sigmoid-squashed Box actions, written once on batches ``[B, ...]`` and used
by every path (the env copies of :mod:`sb3_neppo.envs.vec` and :mod:`sb3_neppo.envs.frozen`, the batched worlds of
:mod:`sb3_neppo.envs.vmas`, the joint policies of :mod:`sb3_neppo.policy`); one observation or action is a batch of one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sb3_neppo.algorithms import reads_dicts, reads_images
from sb3_neppo.envs.checks import check_parallel_env
from sb3_neppo.envs.observations import FlatObservation, ImageObservation, is_image
from sb3_neppo.errors import ConfigError

SQUASH_BOUND = 10.0
INDICATOR_KEY = "agent_indicator"  # the agent indicator's part of a Dict view


def _padded_bounds(flats) -> tuple[np.ndarray, np.ndarray]:
    """The bounds of flat observations zero-padded to the widest: the lowest low and highest high per value."""
    flats = list(flats)
    size = max(f.size for f in flats)
    low = np.min([np.pad(f.low, (0, size - f.size)) for f in flats], axis=0)
    high = np.max([np.pad(f.high, (0, size - f.size)) for f in flats], axis=0)
    return low, high


def take(batch: np.ndarray | dict[str, np.ndarray], index) -> np.ndarray | dict[str, np.ndarray]:
    """``batch[index]`` of a batch of observations: an array, or a dict of arrays (a Dict view's), part by part."""
    return {k: v[index] for k, v in batch.items()} if isinstance(batch, dict) else batch[index]


def stack(rows: list) -> np.ndarray | dict[str, np.ndarray]:
    """One batch of observations from single ones (arrays, or dicts of arrays)."""
    if rows and isinstance(rows[0], dict):
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return np.stack(rows)


def merge_rows(batch: np.ndarray | dict[str, np.ndarray], rows: int) -> np.ndarray | dict[str, np.ndarray]:
    """A batch ``[A, B, ...]`` as ``[rows = A·B, ...]`` (a dict of such batches, part by part)."""
    if isinstance(batch, dict):
        return {k: v.reshape(rows, *v.shape[2:]) for k, v in batch.items()}
    return batch.reshape(rows, *batch.shape[2:])


class AgentView:
    """How one shared policy sees and drives agents whose spaces may differ.

    Observations are flattened as SB3's preprocessing does for an MLP (:class:`~sb3_neppo.envs.observations.FlatObservation`:
    Discrete and MultiDiscrete one-hot, Box and MultiBinary flattened, images scaled to [0, 1], Dict and Tuple part by
    part), zero-padded to the widest agent and (with ``agent_indicator``) followed by a one-hot of the agent, so agents
    whose spaces differ, even in kind, share one Box. Discrete actions are padded to the largest ``n`` (an action an
    agent does not have wraps round: ``a mod n_i``); Box actions to the widest agent (extra dims ignored, the rest
    clipped to the agent's bounds). When every agent has the same 1-D Box observation space and there is no indicator,
    observations pass through unchanged.

    With ``images`` (a CNN policy: ``CnnPolicy``, ``CnnLstmPolicy``), observations stay images, channel-first uint8
    ``[C, H, W]`` as SB3's CNN policies read them (:class:`~sb3_neppo.envs.observations.ImageObservation`; SB3 divides
    them by 255), followed by one channel per agent, 255 in the agent's own and 0 in the others', the way SuperSuit's
    ``agent_indicator_v0`` marks images. Every agent must see images of one size: images are not padded.

    With ``dicts`` (a multi-input policy: ``MultiInputPolicy``, ``MultiInputLstmPolicy``), Dict observations stay
    Dicts with the agents' keys (the same for every agent): an image part stays an image (channel-first uint8, one size
    for every agent), any other part is flattened and zero-padded to the widest agent, and the agent indicator is one
    more part, ``agent_indicator`` (a one-hot). SB3's ``CombinedExtractor`` reads them: a CNN per image, the rest flat.

    With ``squash`` (the default), bounded Box dimensions are reached through a sigmoid: the policy acts on
    u ∈ [-10, 10] (SB3 needs finite bounds; sigmoid(10) = 1 - 5e-5) and ``low + (high - low) · sigmoid(u)`` goes to
    the env. SB3 PPO otherwise clips a Gaussian sample to the bounds, and a mean that has drifted past a bound gets no
    gradient back (every sample clips to the same action): a cooperative policy then stops tracking a potential whose
    optimum moves back inside.

    :param env: the parallel env (only its spaces are read).
    :param agent_indicator: append the one-hot agent id (None: when there is more than one agent).
    :param squash: map bounded Box actions through a sigmoid (see above).
    :param images: keep image observations as images (see above; one line for an agent whose are not images).
    :param dicts: keep Dict observations as Dicts (see above; one line for an agent whose are not Dicts).
    """

    def __init__(
        self,
        env: ParallelEnv,
        agent_indicator: bool | None = None,
        squash: bool = True,
        images: bool = False,
        dicts: bool = False,
    ):
        check_parallel_env(env)
        self.agents = list(env.possible_agents)
        self.index = {a: i for i, a in enumerate(self.agents)}
        self.agent_indicator = len(self.agents) > 1 if agent_indicator is None else bool(agent_indicator)
        self.squash = bool(squash)
        self.obs_spaces = {a: env.observation_space(a) for a in self.agents}
        self.act_spaces = {a: env.action_space(a) for a in self.agents}
        self.flat = {a: FlatObservation(a, space) for a, space in self.obs_spaces.items()}  # one line for a bad space
        self.images = {a: ImageObservation(a, space) for a, space in self.obs_spaces.items()} if images else None
        self.parts: dict[str, dict[str, FlatObservation | ImageObservation]] | None = None  # key -> agent -> reader
        if dicts:
            self.observation_space: spaces.Space = self._dict_space()
        else:
            self.observation_space = self._image_space() if self.images else self._flat_space()
        self.action_space = self._joint_action_space()

    @classmethod
    def for_policy(cls, env: ParallelEnv, policy: str, agent_indicator: bool | None = None, squash: bool = True) -> AgentView:
        """The view an SB3 policy named ``policy`` reads: images for a CNN policy, Dicts for a multi-input one, else
        flat."""
        return cls(env, agent_indicator, squash, images=reads_images(policy), dicts=reads_dicts(policy))

    def _flat_space(self) -> spaces.Box:
        own_low, own_high = _padded_bounds(self.flat.values())
        self.obs_dim = own_low.size
        width = self.obs_dim + (len(self.agents) if self.agent_indicator else 0)
        low, high = np.zeros(width, np.float32), np.ones(width, np.float32)
        low[: self.obs_dim], high[: self.obs_dim] = own_low, own_high
        return spaces.Box(low, high, dtype=np.float32)

    def _one_image_shape(self, images: dict[str, ImageObservation], part: str = "") -> tuple[int, int, int]:
        shapes = {a: image.shape for a, image in images.items()}
        first = self.agents[0]
        differing = next((a for a in self.agents if shapes[a] != shapes[first]), None)
        if differing is not None:
            raise ConfigError(
                f"the agents' images{part} differ in size ({first}: {'×'.join(map(str, shapes[first]))}, {differing}: "
                f"{'×'.join(map(str, shapes[differing]))} channel-first), and images are not padded; give every agent images "
                "of one size, e.g. env_wrapper: [supersuit.resize_v1: {x_size: 84, y_size: 84}]"
            )
        return shapes[first]

    def _image_space(self) -> spaces.Box:
        channels, height, width = self._one_image_shape(self.images)
        self.obs_dim = channels  # the image's own channels; the agent indicator's follow
        total = channels + (len(self.agents) if self.agent_indicator else 0)
        if total >= min(height, width):
            raise ConfigError(
                f"images of {height}×{width} pixels with {total} channels ({channels} and {total - channels} of the agent "
                f"indicator) would be read as channel-last by SB3; use larger images (supersuit.resize_v1) or fewer channels"
            )
        return spaces.Box(0, 255, (total, height, width), dtype=np.uint8)

    def _dict_space(self) -> spaces.Dict:
        first = self.agents[0]
        for agent, space in self.obs_spaces.items():
            if not isinstance(space, spaces.Dict):
                raise ConfigError(
                    f"a multi-input policy needs Dict observations, and {agent}'s are {space}; use MlpPolicy (or CnnPolicy "
                    "for images)"
                )
        keys = list(self.obs_spaces[first].spaces)
        other = next((a for a in self.agents if list(self.obs_spaces[a].spaces) != keys), None)
        if other is not None:
            raise ConfigError(
                f"a multi-input policy needs the same Dict keys for every agent; {first} has {keys}, {other} "
                f"{list(self.obs_spaces[other].spaces)}: use MlpPolicy, which flattens them"
            )
        if self.agent_indicator and INDICATOR_KEY in keys:
            raise ConfigError(f"the observations have a key {INDICATOR_KEY!r}, which the agent indicator adds; rename it")
        self.parts, out = {}, {}
        for key in keys:
            subs = {a: self.obs_spaces[a][key] for a in self.agents}
            if all(is_image(s) for s in subs.values()):
                images = {a: ImageObservation(f"{a}[{key!r}]", s) for a, s in subs.items()}
                self.parts[key] = images
                out[key] = spaces.Box(0, 255, self._one_image_shape(images, f" at {key!r}"), dtype=np.uint8)
            else:
                flats = {a: FlatObservation(a, s) for a, s in subs.items()}
                self.parts[key] = flats
                out[key] = spaces.Box(*_padded_bounds(flats.values()), dtype=np.float32)
        if self.agent_indicator:
            out[INDICATOR_KEY] = spaces.Box(0.0, 1.0, (len(self.agents),), dtype=np.float32)
        self.obs_dim = 0
        return spaces.Dict(out)

    def _joint_action_space(self) -> spaces.Space:
        acts = list(self.act_spaces.values())
        if all(isinstance(s, spaces.Discrete) for s in acts):
            return spaces.Discrete(max(int(s.n) for s in acts))
        if all(isinstance(s, spaces.Box) for s in acts):
            dim = max(int(np.prod(s.shape)) for s in acts)
            low = np.min([np.pad(s.low.reshape(-1), (0, dim - s.low.size), constant_values=np.inf) for s in acts], axis=0)
            high = np.max([np.pad(s.high.reshape(-1), (0, dim - s.high.size), constant_values=-np.inf) for s in acts], axis=0)
            if self.squash:
                bounded = np.isfinite(low) & np.isfinite(high)
                low, high = np.where(bounded, -SQUASH_BOUND, low), np.where(bounded, SQUASH_BOUND, high)
            return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        raise ConfigError(
            "agents mix Discrete and Box actions, which one shared policy cannot drive; make them all Discrete or all Box "
            "(mpe2: continuous_actions=False or True)"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one observation as the shared policy sees it: ``(W,)``, or ``(C, H, W)`` for images (a Dict
        has none: its parts have theirs)."""
        return tuple(self.observation_space.shape or ())

    @property
    def width(self) -> int:
        """Values in the shared policy's observation: the widest agent's, then the agent indicator's (a Dict: all its
        parts')."""
        if self.parts is not None:
            return sum(int(np.prod(s.shape)) for s in self.observation_space.spaces.values())
        return int(np.prod(self.observation_space.shape))

    def empty(self, *batch: int) -> np.ndarray | dict[str, np.ndarray]:
        """Zeroed observations ``[*batch, *shape]`` in the view's dtype (float32; uint8 for images; a Dict: a dict of
        them)."""
        if self.parts is not None:
            return {k: np.zeros((*batch, *s.shape), s.dtype) for k, s in self.observation_space.spaces.items()}
        return np.zeros((*batch, *self.shape), self.observation_space.dtype)

    # --- the rules, on batches [B, ...] ----------------------------------------------------------------------------------

    def pad(self, agent: str, own: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A batch of ``agent``'s observations as the shared policy sees them: flat ones ``[B, d]``
        (:class:`~sb3_neppo.envs.observations.FlatObservation`'s; zeros for a gone agent), ``[B, W]`` float32,
        zero-padded to the widest agent, then (with ``agent_indicator``) the agent's one-hot; images ``[B, C, H, W]``
        (:class:`~sb3_neppo.envs.observations.ImageObservation`'s), followed by the indicator's channels. Written into
        ``out`` when given."""
        if out is None:
            out = self.empty(len(own))
        else:
            out[:] = 0
        out[:, : own.shape[1]] = own
        if self.agent_indicator:
            out[:, self.obs_dim + self.index[agent]] = 255 if self.images else 1.0
        return out

    def observe_batch(self, agent: str, observations, out: np.ndarray | None = None) -> np.ndarray:
        """The shared policy's view ``[B, *shape]`` of a batch of ``agent``'s observations: an array ``[B, *shape]`` of a
        Box space, or a sequence in which None is the all-zero observation of a gone agent (a Dict view: a dict of
        such batches, one per part)."""
        if self.parts is not None:
            return self._observe_dicts(agent, observations, out)
        if self.images:
            image = self.images[agent]
            if isinstance(observations, np.ndarray):
                return self.pad(agent, image.batch(observations), out)
            rows = np.zeros((len(observations), *image.shape), np.uint8)
            for b, obs in enumerate(observations):
                if obs is not None:
                    rows[b] = image(obs)
            return self.pad(agent, rows, out)
        flat = self.flat[agent]
        if isinstance(observations, np.ndarray):
            return self.pad(agent, flat.batch(observations), out)
        rows = np.zeros((len(observations), flat.size), np.float32)
        for b, obs in enumerate(observations):
            if obs is not None:
                rows[b] = flat(obs)
        return self.pad(agent, rows, out)

    def _observe_dicts(self, agent: str, observations, out: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if out is None:
            out = self.empty(len(observations))
        for key, readers in self.parts.items():
            part, reader = out[key], readers[agent]
            part[:] = 0
            for b, obs in enumerate(observations):
                if obs is None:
                    continue
                if isinstance(reader, ImageObservation):
                    part[b] = reader(obs[key])
                else:
                    part[b, : reader.size] = reader(obs[key])
        if self.agent_indicator:
            out[INDICATOR_KEY][:] = 0.0
            out[INDICATOR_KEY][:, self.index[agent]] = 1.0
        return out

    def env_actions(self, agent: str, actions: np.ndarray) -> np.ndarray:
        """A batch ``[B, ...]`` of the shared policy's actions as ``agent``'s own: Discrete, ``[B]`` int64
        (:meth:`wrap`); Box, the flat actions ``[B, d]`` in float64 (:meth:`box_actions`)."""
        space = self.act_spaces[agent]
        actions = np.asarray(actions)
        if isinstance(space, spaces.Discrete):
            return self.wrap(space, actions.reshape(len(actions), -1)[:, 0].astype(np.int64))
        return self.box_actions(agent, actions.reshape(len(actions), -1).astype(np.float64))

    def joint_mask(self, agent: str, mask: np.ndarray | None) -> np.ndarray:
        """``agent``'s action mask (bool ``[n_i]``; None: every action allowed) over the shared policy's Discrete
        actions ``[n]``: an action beyond the agent's own is masked, so a masked policy never wraps round."""
        n = int(self.action_space.n)
        if mask is None:
            return np.ones(n, bool)
        own = int(self.act_spaces[agent].n)
        if mask.shape != (own,):
            raise ConfigError(f"the action mask of {agent} has {mask.size} entries, but {agent} has {own} actions")
        if not mask.any():
            raise ConfigError(f"the action mask of {agent} allows no action; a mask must allow at least one")
        out = np.zeros(n, bool)
        out[:own] = mask
        return out

    @staticmethod
    def wrap(space: spaces.Discrete, index):
        """The shared policy's Discrete action ``index`` (an int, or an int array of a batch) as an action of ``space``:
        an action the agent does not have wraps round, ``start + index mod n``."""
        return int(space.start) + index % int(space.n)

    def box_actions(self, agent: str, actions: np.ndarray) -> np.ndarray:
        """A batch ``[B, D]`` of the shared policy's Box actions as ``agent``'s own flat actions ``[B, d]`` (extra dims
        dropped, bounded dims squashed, clipped to the bounds)."""
        space = self.act_spaces[agent]
        flat = actions[:, : int(np.prod(space.shape))]
        low, high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
        if self.squash:
            bounded = np.isfinite(low) & np.isfinite(high)
            squashed = low + (high - low) / (1.0 + np.exp(-np.clip(flat, -60.0, 60.0)))
            flat = np.where(bounded, squashed, flat)
        return np.clip(flat, low, high)

    # --- one observation, one action (a batch of one) --------------------------------------------------------------------

    def observe(self, agent: str, obs) -> np.ndarray:
        """The shared policy's view of ``agent``'s observation (``obs=None``: the all-zero observation of a gone agent)."""
        if self.images or self.parts is not None:
            return take(self.observe_batch(agent, [obs]), 0)
        flat = self.flat[agent]
        row = np.zeros((1, flat.size), np.float32) if obs is None else flat(obs)[None]
        return self.pad(agent, row)[0]

    def env_action(self, agent: str, action) -> Any:
        """The shared policy's action for ``agent``, made valid in the agent's own action space."""
        space = self.act_spaces[agent]
        if isinstance(space, spaces.Discrete):
            return self.wrap(space, int(np.asarray(action).reshape(-1)[0]))
        flat = self.box_actions(agent, np.asarray(action, np.float64).reshape(1, -1))[0]
        return flat.reshape(space.shape).astype(space.dtype)
