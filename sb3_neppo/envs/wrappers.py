"""The potential-reward wrapper: a PettingZoo parallel env whose every agent is paid φ_w(s, a, r).

The global state s is the env's ``state()`` where it has one that returns an array of numbers (mpe2 and the matrix games
do), else the concatenation of the agents' observations in ``possible_agents`` order, each flattened as the shared
policy sees it (:class:`FlatObservation`), zero-filled for agents no longer present (the MAPPO convention). An env whose
``state`` is missing, an attribute rather than a method (PettingZoo's parallel tutorial stores ``self.state =
observations``), raises, or returns something else falls back to the observations.
Actions enter φ as a ``[N, A]`` array: a Discrete action as a one-hot, a Box action flattened, zero-padded to the widest
agent; an env whose ``unwrapped`` has ``potential_action(agent, action) -> vector`` (the matrix games: the mixed
strategy an action plays) decides that encoding itself. Each agent's true reward stays available for evaluation:
``infos[agent]`` gets ``true_reward``, and the per-step record ``true_rewards`` (vector over ``possible_agents``),
``state`` (s_t, the state the action was taken in) and ``potential`` (φ), from which Φ for any other w can be
recomputed without new env steps.

:class:`StepChecker` is the one check of what an env returns, used on every path that steps a parallel env (this
wrapper, :class:`~sb3_neppo.envs.vec.ParallelVecEnv`, :class:`~sb3_neppo.envs.frozen.FrozenOthersEnv`, the rollout
evaluator): an observation of the wrong shape or with a NaN/inf, a NaN/inf reward, or no reward for an agent that acted
is one :class:`~sb3_neppo.errors.ConfigError` line naming the agent and the step, never a traceback from deep inside.

Observations may have any space SB3's MLP preprocessing reads: Box, Discrete, MultiDiscrete, MultiBinary, and Dict or
Tuple spaces of them (:class:`FlatObservation`); any other space is one line when the env is wrapped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.spaces.utils import flatdim, flatten, flatten_space
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper
from stable_baselines3.common.preprocessing import is_image_space

from sb3_neppo.errors import ConfigError, first_line
from sb3_neppo.potentials import Potential, warn_if_large


def _action_width(space: spaces.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise ConfigError(f"action space {space} is not supported by the potential wrapper; use Discrete or Box actions")


def _action_vector(space: spaces.Space, action, width: int) -> np.ndarray:
    out = np.zeros(width)
    if isinstance(space, spaces.Discrete):
        out[int(action) - int(space.start)] = 1.0
    else:
        flat = np.asarray(action, dtype=np.float64).reshape(-1)
        out[: flat.size] = flat
    return out


def check_parallel_env(env) -> None:
    """One clear error for anything that is not a PettingZoo ``ParallelEnv`` (an AEC env, a Gymnasium env, ...)."""
    if isinstance(env, AECEnv) or not isinstance(env, ParallelEnv):
        raise ConfigError(
            f"{type(env).__name__} is not a PettingZoo ParallelEnv; use the module's parallel_env() "
            "(or pettingzoo.utils.conversions.aec_to_parallel)"
        )


def where(step: int) -> str:
    """``at reset`` or ``at step t after reset`` (t counts ``env.step()`` calls since the last reset, from 1)."""
    return "at reset" if step == 0 else f"at step {step} after reset"


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


def _misfit(space: spaces.Space, obs, path: str = "") -> str | None:
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
    return next((bad for key, sub in _parts(space) if (bad := _misfit(sub, obs[key], f"{path}[{key!r}]")) is not None), None)


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


_NOT_A_BOX = object()


class StepChecker:
    """Checks what a PettingZoo parallel env returns, so a misbehaving env is one line naming the agent and the step.

    Every path that steps a parallel env (:class:`PotentialRewardWrapper`, the vector env, the frozen-others env, the
    rollout evaluator) goes through these checks: each observation has its space's shape and is finite (a Box space),
    or lies in its space (Discrete, MultiDiscrete, MultiBinary; a Dict or Tuple part by part, its Box parts by shape and
    finiteness), each reward is a finite number, and every agent that acted (it was in ``env.agents`` and was given an
    action) got a reward. An agent that has left the episode (no longer in ``env.agents``) is given no action and owes
    no reward.

    Steps are counted from 1 after each reset (``step=0``: the observations ``reset()`` returned).

    :param env: the (unwrapped or wrapped) parallel env; only its agents and spaces are read.
    """

    def __init__(self, env: ParallelEnv):
        check_parallel_env(env)
        self.possible_agents = list(env.possible_agents)
        self.index = {a: i for i, a in enumerate(self.possible_agents)}
        self.obs_spaces = {a: env.observation_space(a) for a in self.possible_agents}
        self.flat = {a: FlatObservation(a, space) for a, space in self.obs_spaces.items()}  # one line for a bad space
        # a Box agent's shape; _NOT_A_BOX (equal to no shape) sends every observation of another space to _check_shape
        self.obs_shapes = {a: s.shape if isinstance(s, spaces.Box) else _NOT_A_BOX for a, s in self.obs_spaces.items()}
        self._all_box = all(isinstance(s, spaces.Box) for s in self.obs_spaces.values())

    def observations(self, observations: Mapping, step: int, finite: bool = True) -> None:
        """Each agent's observation fits its space (see the class doc); with ``finite``, no Box observation has a NaN or
        infinite value (the parts of a Dict or Tuple observation are always checked)."""
        shapes = self.obs_shapes
        for agent, obs in observations.items():
            if getattr(obs, "shape", None) != shapes.get(agent, _NOT_A_BOX):
                self._check_shape(agent, obs, step)
        if finite and observations:
            values = observations.values()
            if not self._all_box:
                values = [o for a, o in observations.items() if shapes[a] is not _NOT_A_BOX]
            flat = [obs.reshape(-1) if isinstance(obs, np.ndarray) else np.ravel(obs) for obs in values]
            if flat and not np.isfinite(np.concatenate(flat)).all():
                for agent, obs in observations.items():
                    self._check_finite(agent, obs, step)

    def _check_shape(self, agent: str, obs, step: int) -> None:
        if agent not in self.index:
            raise ConfigError(
                f"the env returned an observation for {agent!r} {where(step)}, which is not one of its possible_agents "
                f"({', '.join(map(str, self.possible_agents))})"
            )
        expected = self.obs_shapes[agent]
        if expected is _NOT_A_BOX:
            problem = _misfit(self.obs_spaces[agent], obs)
            if problem is not None:
                raise ConfigError(
                    f"the env returned an observation for {agent} {where(step)} that {problem}; an agent's observations "
                    f"must lie in its observation_space({agent!r}), {self.obs_spaces[agent]}"
                )
            return
        try:
            shape = np.shape(obs)
        except ValueError:  # a ragged nested list
            shape = "ragged"
        if shape != expected:
            raise ConfigError(
                f"the env returned an observation of shape {shape} for {agent} {where(step)}, but "
                f"observation_space({agent!r}).shape is {expected}; an agent's observations must keep its space's shape"
            )

    def _check_finite(self, agent: str, obs, step: int) -> None:
        if self.obs_shapes[agent] is _NOT_A_BOX:
            return
        bad = ~np.isfinite(np.asarray(obs, dtype=np.float64).reshape(-1))
        if bad.any():
            first = int(np.argmax(bad))
            raise ConfigError(
                f"the env returned a non-finite observation for {agent} {where(step)} ({int(bad.sum())} of {bad.size} "
                f"values are NaN or infinite, the first at flat index {first}); fix the env so observations stay finite"
            )

    def rewards(self, rewards: Mapping, acted: Iterable[str] = (), step: int = 0) -> np.ndarray:
        """The reward vector over ``possible_agents`` (0 for agents that did not act); one line for a reward that is
        not a finite number, a reward for an unknown agent, or an agent in ``acted`` that got no reward."""
        out = np.zeros(len(self.possible_agents))
        index = self.index
        for agent, r in rewards.items():
            try:
                finite = math.isfinite(r)
            except TypeError:
                raise ConfigError(f"the env returned a reward for {agent} {where(step)} that is not a number: {r!r}") from None
            if not finite:
                raise ConfigError(
                    f"the env returned a non-finite reward for {agent}: {r} {where(step)}; fix the env or clip its rewards"
                )
            i = index.get(agent)
            if i is None:
                raise ConfigError(
                    f"the env returned a reward for {agent!r} {where(step)}, which is not one of its possible_agents "
                    f"({', '.join(map(str, self.possible_agents))})"
                )
            out[i] = r
        for agent in acted:
            if agent not in rewards:
                raise ConfigError(
                    f"the env returned no reward for {agent} {where(step)}, although {agent} acted (it was in env.agents "
                    "and was given an action); every agent that acts must be in the step's rewards dict"
                )
        return out


class StepEncoder(StepChecker):
    """Turns one parallel-env step into the arrays a potential reads: state ``[S]``, actions ``[N, A]``, rewards ``[N]``.

    Shared by :class:`PotentialRewardWrapper`, the vector env and the rollout evaluator, so all define s, a and r the
    same way (and check the env's steps the same way: :class:`StepChecker`).

    :param env: the (unwrapped or wrapped) parallel env; it is reset once to learn where the state comes from.
    """

    def __init__(self, env: ParallelEnv):
        super().__init__(env)
        self.action_spaces = {a: env.action_space(a) for a in self.possible_agents}
        # an env may say how a potential should read its actions (the matrix games: as mixed strategies)
        self._encode = getattr(env.unwrapped, "potential_action", None)
        if self._encode is not None:
            self.action_dim = max(len(self._encode(a, s.sample())) for a, s in self.action_spaces.items())
        else:
            self.action_dim = max(_action_width(s) for s in self.action_spaces.values())
        self._obs_offsets = np.cumsum([0, *(self.flat[a].size for a in self.possible_agents)])
        observations, _ = env.reset()
        self.observations(observations, 0)
        probe = _env_state(env)
        self.has_state = probe is not None
        self.state_dim = int(probe.size) if probe is not None else int(self._obs_offsets[-1])

    def state(self, env: ParallelEnv, observations: dict, out: np.ndarray | None = None, step: int = 0) -> np.ndarray:
        """The global state ``[S]``: ``env.state()``, else the observations flattened and concatenated (zeros for absent
        agents); written into ``out`` when given (e.g. a float32 row of a preallocated log), else a new float64 array."""
        if out is None:
            out = np.empty(self.state_dim)
        if self.has_state:
            value = np.asarray(env.state()).reshape(-1)
            if value.size != out.size:
                raise ConfigError(
                    f"env.state() returned {value.size} values {where(step)}, but {out.size} when the env was first reset; "
                    "the global state must keep its size"
                )
            out[:] = value
            return out
        out[:] = 0.0
        offsets = self._obs_offsets
        for agent, obs in observations.items():
            i = self.index[agent]
            out[offsets[i] : offsets[i + 1]] = self.flat[agent](obs)
        return out

    def actions(self, actions: dict) -> np.ndarray:
        out = np.zeros((len(self.possible_agents), self.action_dim))
        for agent, action in actions.items():
            if self._encode is not None:
                vector = np.asarray(self._encode(agent, action), dtype=np.float64)
                out[self.index[agent], : vector.size] = vector
            else:
                out[self.index[agent]] = _action_vector(self.action_spaces[agent], action, self.action_dim)
        return out

    def check_potential(self, potential: Potential) -> None:
        """Fail with one line if ``potential`` cannot read this env's state, actions and rewards."""
        n = len(self.possible_agents)
        try:
            zeros = np.zeros((1, self.state_dim)), np.zeros((1, n, self.action_dim)), np.zeros((1, n))
            out = potential_values(potential, *zeros)
        except ConfigError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ConfigError(
                f"the potential does not fit this env (state {self.state_dim}, {n} agents, actions {self.action_dim}): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if out.shape != (1,):
            raise ConfigError(f"the potential must return one value per batch row, got shape {out.shape}")
        warn_if_large(potential)


_STATE_WARNED: set[tuple[type, str]] = set()


def _env_state(env: ParallelEnv) -> np.ndarray | None:
    """``env.state()`` as an array of numbers, or None where the env has no usable one (the observations stand in).

    None, silently, when ``state`` is missing, not callable (PettingZoo's parallel tutorial stores ``self.state =
    observations``, a dict, over the method) or raises ``NotImplementedError`` (the base class's); None with a one-line
    warning (once per env class) when it raises anything else or returns something that is not a non-empty array of
    finite numbers.
    """
    state = getattr(env, "state", None)
    if not callable(state):
        return None
    try:
        value = state()
    except NotImplementedError:
        return None
    except Exception as exc:
        if isinstance(exc, (AttributeError, TypeError)) and not callable(getattr(env.unwrapped, "state", None)):
            return None  # a wrapper forwarding to an env whose state is an attribute (the tutorial's dict)
        reason = f"raised {type(exc).__name__}: {first_line(exc)}"
    else:
        try:
            array = np.asarray(value)
            numeric = array.dtype.kind in "biuf" and array.size > 0 and bool(np.isfinite(array).all())
        except (TypeError, ValueError):
            numeric = False
        if numeric:
            return array
        reason = f"returned {type(value).__name__} {value!r:.40}, not an array of finite numbers"
    if (type(env.unwrapped), reason) in _STATE_WARNED:  # once per env class: every solver builds its own encoder
        return None
    _STATE_WARNED.add((type(env.unwrapped), reason))
    warnings.warn(
        f"env.state() {reason}; the potential reads the agents' observations, concatenated, as the global state", stacklevel=2
    )
    return None


def potential_values(
    potential: Potential, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, encoded: bool = False
) -> np.ndarray:
    """φ_w for a batch of steps ``[B, S], [B, N, A], [B, N] -> [B]``, in one torch call (no env steps). With
    ``encoded``, ``states`` are already the potential's state features (:meth:`Potential.encode_state`)."""
    dtype = next(potential.parameters()).dtype
    tensors = [torch.as_tensor(x, dtype=dtype) for x in (states, actions, rewards)]
    with torch.no_grad():
        return (potential.forward_encoded(*tensors) if encoded else potential(*tensors)).double().numpy()


class PotentialRewardWrapper(BaseParallelWrapper):
    """Replace every agent's reward by the shared potential reward φ_w(s, a, r) (see the module docstring).

    :param env: a PettingZoo ``ParallelEnv``.
    :param potential: the potential; the wrapper keeps a reference, so updating w on the module takes effect at once.
    """

    def __init__(self, env: ParallelEnv, potential: Potential):
        self.encoder = StepEncoder(env)
        super().__init__(env)
        self.potential = potential
        self.possible_agents = self.encoder.possible_agents
        self.action_dim = self.encoder.action_dim
        self.state_dim = self.encoder.state_dim
        self._state: np.ndarray | None = None  # s_t: set by reset(), so step() before reset() is caught
        self._t = 0  # steps since the last reset (for the env-fault messages)
        self.encoder.check_potential(potential)

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        self.encoder.observations(observations, 0)
        self._state = self.encoder.state(self.env, observations)
        self._t = 0
        return observations, infos

    def step(self, actions: dict):
        if self._state is None:
            raise RuntimeError("step() before reset(): call reset() first")
        state = self._state
        acting = [a for a in self.env.agents if a in actions]
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        self._t += 1
        self.encoder.observations(observations, self._t)
        reward_vector = self.encoder.rewards(rewards, acting, self._t)
        phi = self.potential_reward(state[None], self.encoder.actions(actions)[None], reward_vector[None])[0]
        self._state = self.encoder.state(self.env, observations)
        new_infos = {}
        for agent in rewards:
            info = dict(infos.get(agent, {}))
            info.update(true_reward=float(rewards[agent]), true_rewards=reward_vector, state=state, potential=float(phi))
            new_infos[agent] = info
        return observations, {a: float(phi) for a in rewards}, terminations, truncations, new_infos

    def potential_reward(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """φ_w for a batch of logged steps ``[B, S], [B, N, A], [B, N] -> [B]`` (no env steps)."""
        return potential_values(self.potential, states, actions, rewards)
