"""What a potential reads of a parallel-env step: the global state ``[S]``, the joint action ``[N, A]`` and the reward
vector ``[N]`` (:class:`StepEncoder`, which also checks the step: :class:`~sb3_neppo.envs.checks.StepChecker`), and
φ_w of a batch of such steps in one torch call (:func:`potential_values`).

The global state s is the env's ``state()`` where it has one that returns an array of numbers (mpe2 and the matrix games
do), else the concatenation of the agents' observations in ``possible_agents`` order, each flattened as the shared
policy sees it (:class:`~sb3_neppo.envs.observations.FlatObservation`), zero-filled for agents no longer present (the
MAPPO convention). An env whose ``state`` is missing, an attribute rather than a method (PettingZoo's parallel tutorial
stores ``self.state = observations``), raises, or returns something else falls back to the observations.
Actions enter φ as a ``[N, A]`` array: a Discrete action as a one-hot, a Box action flattened, zero-padded to the widest
agent; an env whose ``unwrapped`` has ``potential_action(agent, action) -> vector`` (the matrix games: the mixed
strategy an action plays) decides that encoding itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sb3_neppo.envs.checks import StepChecker, where
from sb3_neppo.envs.masks import has_masks
from sb3_neppo.errors import ConfigError, first_line
from sb3_neppo.potentials import Potential, warn_if_large


def _action_width(space: spaces.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise ConfigError(f"action space {space} is not supported by the potential wrapper; use Discrete or Box actions")


class StepEncoder(StepChecker):
    """Turns one parallel-env step into the arrays a potential reads: state ``[S]``, actions ``[N, A]``, rewards ``[N]``.

    Shared by the potential-reward wrapper, the vector envs and the evaluation rollouts, so all define s, a and r the
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
        observations, infos = env.reset()
        self.observations(observations, 0)
        self.masked = has_masks(observations, infos)  # every agent gives action masks (sb3_neppo.envs.masks)
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
        """One step's joint action ``[N, A]`` from the env actions ``{agent: action}`` (zeros for an agent not in it)."""
        out = np.zeros((len(self.possible_agents), self.action_dim))
        for agent, action in actions.items():
            i = self.index[agent]
            self.agent_actions(agent, [action], out=out[i : i + 1])
        return out

    def agent_actions(self, agent: str, actions, out: np.ndarray | None = None) -> np.ndarray:
        """A batch of ``agent``'s env actions ``[B, ...]`` (in its own action space) as the potential reads them,
        ``[B, A]``: the env's ``potential_action`` where it has one, else a one-hot (Discrete) or the flat action (Box),
        zero-padded; written into ``out`` (zeros) when given."""
        if out is None:
            out = np.zeros((len(actions), self.action_dim))
        space = self.action_spaces[agent]
        if self._encode is not None:
            for b, action in enumerate(actions):
                vector = np.asarray(self._encode(agent, action), dtype=np.float64)
                out[b, : vector.size] = vector
        elif isinstance(space, spaces.Discrete):
            out[np.arange(len(actions)), np.asarray(actions, np.int64).reshape(-1) - int(space.start)] = 1.0
        else:
            flat = np.asarray(actions, np.float64).reshape(len(actions), -1)
            out[:, : flat.shape[1]] = flat
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
